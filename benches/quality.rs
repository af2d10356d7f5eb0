//! Statistical quality: thousands of simulated rollouts per scenario and
//! traffic level, decided by the real engine (`canaryd::engine::decide`) and,
//! on the same simulated traffic, by Flagger's and Argo Rollouts' default
//! rules. Reports rolled back / promoted / undecided shares and the median
//! and p95 time to the decision (from the fault's onset for regressions).
//!
//! `cargo bench --bench quality [-- --runs N] [--only SCENARIO] [--strategy seed|fast]`
//! (default 2,000 rollouts per cell; a few minutes on two cores). `--strategy
//! seed` runs the seed and the seed with early success (`min_duration: 2m` on
//! step 1), and ends with a table comparing them cell by cell.

#[path = "quality/sim.rs"]
mod sim;
#[path = "quality/traffic.rs"]
mod traffic;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use canaryd::engine::evidence;
use canaryd::spec::decode::decode;
use canaryd::spec::model::DeploySpec;
use canaryd::spec::policy::PolicySet;
use rand::SeedableRng;
use rand::rngs::StdRng;
use sim::{Canaryd, End, Outcome, Peer, PeerKind, Scenario};
use statrs::distribution::{Binomial, DiscreteCDF};
use traffic::Arm;

const SEED_FILE: &str = include_str!("../deploy/checkout.yaml");
const RATES: [f64; 3] = [20.0, 100.0, 1000.0];

fn arm(error_rate: f64, p99_ms: f64) -> Arm {
    Arm {
        error_rate,
        p99: p99_ms / 1000.0,
    }
}

fn scenarios() -> Vec<Scenario> {
    let healthy = arm(0.005, 150.0);
    let base = Scenario {
        name: "",
        regression: false,
        stable: healthy,
        healthy,
        faulty: None,
        onset_in_step: None,
        drift_seconds: None,
        bursty: false,
        missing: 0.0,
    };
    vec![
        Scenario {
            name: "A/A healthy (0.5%, p99 150ms)",
            ..base
        },
        Scenario {
            name: "A/A near the gate (p99 180ms vs 200ms)",
            stable: arm(0.005, 180.0),
            healthy: arm(0.005, 180.0),
            ..base
        },
        Scenario {
            name: "gross: 25% errors",
            regression: true,
            faulty: Some(arm(0.25, 150.0)),
            ..base
        },
        Scenario {
            name: "subtle: 1% → 2% errors",
            regression: true,
            stable: arm(0.01, 150.0),
            healthy: arm(0.01, 150.0),
            faulty: Some(arm(0.02, 150.0)),
            ..base
        },
        Scenario {
            name: "latency: p99 150 → 300ms",
            regression: true,
            faulty: Some(arm(0.005, 300.0)),
            ..base
        },
        Scenario {
            name: "onset mid-step 2: 0.5% → 10% errors",
            regression: true,
            faulty: Some(arm(0.10, 150.0)),
            onset_in_step: Some(1),
            ..base
        },
        Scenario {
            name: "slow drift: 0.5% → 5% errors over 30m",
            regression: true,
            faulty: Some(arm(0.05, 150.0)),
            drift_seconds: Some(1800.0),
            ..base
        },
        Scenario {
            name: "bursty A/A (traffic and errors over-dispersed)",
            bursty: true,
            ..base
        },
        Scenario {
            name: "missing scrapes A/A (10% missed + 2m outage)",
            missing: 0.1,
            ..base
        },
    ]
}

fn spec(analysis: &str) -> DeploySpec {
    spec_text(&SEED_FILE.replace("  rollback:\n", &format!("{analysis}  rollback:\n")))
}

fn spec_text(text: &str) -> DeploySpec {
    decode("checkout.yaml", text, &PolicySet::builtin())
        .spec
        .expect("the seed file decodes")
}

/// The seed with early success on step 1: `min_duration: 2m` of its 10m.
fn seed_early() -> DeploySpec {
    spec_text(&SEED_FILE.replacen(
        "      duration: 10m\n",
        "      duration: 10m\n      min_duration: 2m\n",
        1,
    ))
}

/// The strategy early success is compared with, and the early one.
const SEED: &str = "seed (interval 10s)";
const EARLY: &str = "seed + min_duration: 2m on step 1";

struct Cell {
    rolled_back: f64,
    promoted: f64,
    undecided: f64,
    median: f64,
    p95: f64,
}

fn summarize(outcomes: &[Outcome], scenario: &Scenario) -> Cell {
    let n = outcomes.len() as f64;
    let share = |e: End| outcomes.iter().filter(|o| o.end == e).count() as f64 / n * 100.0;
    // Time to the decision users wait for: a rollback of a regression, a
    // promotion of a healthy canary.
    let wanted = if scenario.regression {
        End::RolledBack
    } else {
        End::Promoted
    };
    let mut times: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.end == wanted && (!scenario.regression || o.fault_started))
        .map(|o| o.seconds)
        .collect();
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if times.is_empty() {
            f64::NAN
        } else {
            times[((times.len() - 1) as f64 * p).round() as usize]
        }
    };
    Cell {
        rolled_back: share(End::RolledBack),
        promoted: share(End::Promoted),
        undecided: share(End::Undecided),
        median: pct(0.5),
        p95: pct(0.95),
    }
}

fn minutes(s: f64) -> String {
    if s.is_nan() {
        "–".into()
    } else if s < 120.0 {
        format!("{s:.0}s")
    } else {
        format!("{:.1}m", s / 60.0)
    }
}

/// The fixed-sample one-sided exact binomial test that knows the effect:
/// the smallest n with power ≥ 80% at level `alpha` for `p1` against `p0`.
fn oracle_n(p0: f64, p1: f64, alpha: f64) -> u64 {
    let mut n = 50u64;
    loop {
        let null = Binomial::new(p0, n).expect("binomial");
        let mut c = 0u64;
        while null.sf(c) > alpha {
            c += 1;
        }
        // Reject when X > c: P(X > c | p0) ≤ α.
        let alt = Binomial::new(p1, n).expect("binomial");
        if alt.sf(c) >= 0.8 {
            return n;
        }
        n += (n / 50).max(1);
    }
}

fn run_cell<'a>(
    make: &(dyn Fn() -> Box<dyn sim::Rule + 'a> + Sync),
    scenario: &Scenario,
    rate: f64,
    runs: usize,
    nominal: f64,
    steps: &[f64],
    seed: u64,
) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut all: Vec<Outcome> = Vec::with_capacity(runs);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= runs {
                            break;
                        }
                        let mut rng = StdRng::seed_from_u64(
                            seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                        );
                        let mut rule = make();
                        out.push(sim::run(
                            rule.as_mut(),
                            scenario,
                            rate,
                            nominal,
                            steps,
                            &mut rng,
                        ));
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            all.extend(h.join().expect("worker"));
        }
    });
    all
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let runs: usize = flag("--runs").and_then(|v| v.parse().ok()).unwrap_or(2000);
    let only = flag("--only");
    let strategies: Vec<(&str, DeploySpec)> = [
        (SEED, spec("")),
        (EARLY, seed_early()),
        (
            "fast (interval 1s, window 30s)",
            spec("  analysis:\n    interval: 1s\n    window: 30s\n"),
        ),
    ]
    .into_iter()
    .filter(|(name, _)| flag("--strategy").is_none_or(|s| name.starts_with(s.as_str())))
    .collect();
    println!("# Statistical quality: {runs} simulated rollouts per cell\n");
    // canaryd's cells of the seed and the early strategy, for the comparison.
    let mut ours_by: Vec<(&str, usize, f64, Cell)> = Vec::new();
    for (name, spec) in &strategies {
        let steps: Vec<f64> = spec
            .strategy
            .steps
            .iter()
            .map(|s| s.duration.unwrap_or(Duration::ZERO).as_secs_f64())
            .collect();
        let nominal: f64 =
            steps.iter().sum::<f64>() + spec.strategy.analysis.interval.as_secs_f64();
        let peer_steps: Vec<(f64, f64)> = spec
            .strategy
            .steps
            .iter()
            .map(|s| {
                (
                    s.weight.percent() / 100.0,
                    s.duration.unwrap_or(Duration::ZERO).as_secs_f64(),
                )
            })
            .collect();
        let budget = evidence::budget(spec);
        println!("## Strategy: {name}\n");
        println!(
            "false-rollback budget α = {:.2}% (per gate {:.3}%), detector horizon {} intervals\n",
            spec.strategy.analysis.alpha() * 100.0,
            budget.against * 100.0,
            budget.horizon
        );
        println!(
            "| scenario | req/s | canaryd rolled back | promoted | undecided | median | p95 | Flagger rolled back | median | Argo rolled back | median | oracle |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        for (si, scenario) in scenarios().iter().enumerate() {
            if only
                .as_ref()
                .is_some_and(|o| !scenario.name.contains(o.as_str()))
            {
                continue;
            }
            for &rate in &RATES {
                let seed = 1000 * si as u64 + rate as u64;
                let engine = |/* fresh per rollout */| -> Box<dyn sim::Rule + '_> { Box::new(Canaryd::new(spec)) };
                let ours = summarize(
                    &run_cell(&engine, scenario, rate, runs, nominal, &steps, seed),
                    scenario,
                );
                // The peers have no early success: their rules on the early
                // strategy are those on the seed.
                let peer_runs = if *name == EARLY { 0 } else { runs };
                let flagger = || -> Box<dyn sim::Rule + '_> {
                    Box::new(Peer::new(PeerKind::Flagger, peer_steps.clone()))
                };
                let f = summarize(
                    &run_cell(&flagger, scenario, rate, peer_runs, nominal, &steps, seed),
                    scenario,
                );
                let argo = || -> Box<dyn sim::Rule + '_> {
                    Box::new(Peer::new(PeerKind::Argo, peer_steps.clone()))
                };
                let a = summarize(
                    &run_cell(&argo, scenario, rate, peer_runs, nominal, &steps, seed),
                    scenario,
                );
                let canary_rate = rate * peer_steps[0].0;
                let oracle = match scenario.name {
                    n if n.starts_with("subtle") => Some(oracle_n(0.01, 0.02, budget.against)),
                    n if n.starts_with("latency") => Some(oracle_n(
                        0.01,
                        scenario.faulty.expect("fault").slower_than(0.2),
                        budget.against,
                    )),
                    _ => None,
                };
                let oracle = oracle.map_or("".into(), |n| {
                    format!("{} ({n} req)", minutes(n as f64 / canary_rate))
                });
                let peers = if peer_runs == 0 {
                    "as seed | | as seed | ".to_string()
                } else {
                    format!(
                        "{:.1}% | {} | {:.1}% | {}",
                        f.rolled_back,
                        minutes(f.median),
                        a.rolled_back,
                        minutes(a.median)
                    )
                };
                println!(
                    "| {} | {rate:.0} | {:.1}% | {:.1}% | {:.1}% | {} | {} | {peers} | {oracle} |",
                    scenario.name,
                    ours.rolled_back,
                    ours.promoted,
                    ours.undecided,
                    minutes(ours.median),
                    minutes(ours.p95),
                );
                if *name == SEED || *name == EARLY {
                    ours_by.push((name, si, rate, ours));
                }
            }
        }
        println!();
    }
    compare_early(&ours_by);
}

/// Early success against the seed, cell by cell (when both ran): what a
/// healthy canary saves, and whether regressions are promoted more often.
fn compare_early(cells: &[(&str, usize, f64, Cell)]) {
    let find = |name: &str, si: usize, rate: f64| {
        cells
            .iter()
            .find(|(n, s, r, _)| *n == name && *s == si && *r == rate)
            .map(|c| &c.3)
    };
    let rows: Vec<(usize, f64, &Cell, &Cell)> = cells
        .iter()
        .filter(|(n, ..)| *n == SEED)
        .filter_map(|&(_, si, rate, ref seed)| Some((si, rate, seed, find(EARLY, si, rate)?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let scenarios = scenarios();
    println!("## Early success: {SEED} vs {EARLY}\n");
    println!(
        "| scenario | req/s | seed promoted | rolled back | median | p95 | early promoted | rolled back | median | p95 | median saved |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (si, rate, a, b) in rows {
        let scenario = &scenarios[si];
        let saved = if scenario.regression {
            "".to_string()
        } else {
            minutes(a.median - b.median)
        };
        println!(
            "| {} | {rate:.0} | {:.1}% | {:.1}% | {} | {} | {:.1}% | {:.1}% | {} | {} | {saved} |",
            scenario.name,
            a.promoted,
            a.rolled_back,
            minutes(a.median),
            minutes(a.p95),
            b.promoted,
            b.rolled_back,
            minutes(b.median),
            minutes(b.p95),
        );
    }
    println!();
}
