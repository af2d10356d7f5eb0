//! Rollouts under simulated traffic, decided by the real engine or by a
//! peer's default rule, and the scenarios they run.

use std::time::Duration;

use canaryd::engine::evidence::counts::Snapshot;
use canaryd::engine::{
    CountsQueries, CountsReading, Inconclusive, Input, Observation, Phase, RolloutState, Timestamp,
    TrackCounts, counts_needed, decide,
};
use canaryd::spec::model::DeploySpec;
use rand::RngExt;
use rand::rngs::StdRng;

use crate::traffic::{self, Arm, Counters};

/// How a rollout ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Promoted,
    RolledBack,
    /// Neither within three times the strategy's nominal time.
    Undecided,
}

/// One simulated rollout's outcome.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub end: End,
    /// Seconds from the fault's onset (or the start, when there is none) to the end.
    pub seconds: f64,
    /// Whether the fault had started when the rollout ended.
    pub fault_started: bool,
}

/// A scenario: what both tracks do over time.
#[derive(Clone, Copy, Debug)]
pub struct Scenario {
    pub name: &'static str,
    /// A regression (should be rolled back) rather than a healthy canary.
    pub regression: bool,
    pub stable: Arm,
    /// The canary before its fault.
    pub healthy: Arm,
    /// The canary once the fault is on (`None`: no fault).
    pub faulty: Option<Arm>,
    /// The step (0-based) during which the fault starts, at a random time;
    /// `None`: from the start.
    pub onset_in_step: Option<usize>,
    /// Errors ramp from `healthy` to `faulty` over this many seconds from the start.
    pub drift_seconds: Option<f64>,
    /// Over-dispersed traffic (volume and error rate vary minute to minute).
    pub bursty: bool,
    /// Share of scrapes missed, plus a 2-minute Prometheus outage.
    pub missing: f64,
}

impl Scenario {
    fn canary(&self, t: f64, onset: Option<f64>, error_factor: f64) -> Arm {
        let mut arm = match (self.faulty, self.drift_seconds, onset) {
            (Some(f), Some(d), _) => {
                let k = (t / d).min(1.0);
                Arm {
                    error_rate: self.healthy.error_rate
                        + k * (f.error_rate - self.healthy.error_rate),
                    p99: self.healthy.p99 + k * (f.p99 - self.healthy.p99),
                }
            }
            (Some(f), None, Some(on)) if t >= on => f,
            _ => self.healthy,
        };
        arm.error_rate = (arm.error_rate * error_factor).min(1.0);
        arm
    }
}

/// What decides a rollout.
pub trait Rule {
    /// Seconds between looks.
    fn interval(&self) -> f64;
    /// The canary's share of traffic now (0–1).
    fn weight(&self) -> f64;
    /// The step now (0-based).
    fn step(&self) -> usize;
    /// A look at the tracks' counters (or a failed read); returns the end, if reached.
    fn look(&mut self, t: f64, read: Result<(&Counters, &Counters), ()>) -> Option<End>;
}

/// Runs one rollout of `scenario` at `rate` requests/s under `rule`.
pub fn run(
    rule: &mut dyn Rule,
    scenario: &Scenario,
    rate: f64,
    nominal: f64,
    step_seconds: &[f64],
    rng: &mut StdRng,
) -> Outcome {
    let mut app = (Counters::default(), Counters::default());
    let mut scraped = app.clone();
    let mut t = 0.0;
    let mut onset: Option<f64> = match (scenario.faulty, scenario.onset_in_step) {
        (Some(_), None) => Some(0.0),
        _ => None,
    };
    let mut step_seen = usize::MAX;
    let (mut burst, mut error_factor, mut minute) = (1.0, 1.0, -1.0);
    let outage = (nominal * 0.4, nominal * 0.4 + 120.0);
    let stable_bins = scenario.stable.bins();
    let mut last_canary = scenario.healthy;
    let mut canary_bins = last_canary.bins();
    if let Some(end) = rule.look(0.0, Ok((&scraped.0, &scraped.1))) {
        return Outcome {
            end,
            seconds: 0.0,
            fault_started: onset.is_some(),
        };
    }
    loop {
        let step = rule.step();
        if step != step_seen {
            step_seen = step;
            if scenario.onset_in_step == Some(step) && onset.is_none() {
                let d = step_seconds.get(step).copied().unwrap_or(600.0);
                onset = Some(t + 60.0 + rng.random::<f64>() * (d - 120.0).max(0.0));
            }
        }
        let dt = rule.interval();
        // Slices of a second when scrapes can be missed, else the whole interval.
        let slice = if scenario.missing > 0.0 {
            1.0f64.min(dt)
        } else {
            dt
        };
        let mut done = 0.0;
        while done < dt - 1e-9 {
            let now = t + done + slice;
            if scenario.bursty && (now / 60.0).floor() != minute {
                minute = (now / 60.0).floor();
                burst = traffic::burst(rng, 1.0);
                error_factor = traffic::burst(rng, 8.0);
            }
            let arm = scenario.canary(now, onset, error_factor);
            if arm.p99 != last_canary.p99 {
                canary_bins = arm.bins();
            }
            last_canary = arm;
            let mut stable_arm = scenario.stable;
            stable_arm.error_rate = (stable_arm.error_rate * error_factor).min(1.0);
            let n = traffic::arrivals(rng, rate, slice, burst);
            let (nc, ns) = traffic::split(rng, n, rule.weight());
            app.0.add(&traffic::serve(rng, nc, &arm, &canary_bins));
            app.1
                .add(&traffic::serve(rng, ns, &stable_arm, &stable_bins));
            if !traffic::missed(rng, scenario.missing) {
                scraped = app.clone();
            }
            done += slice;
        }
        t += dt;
        let down = scenario.missing > 0.0 && t >= outage.0 && t < outage.1;
        let read = if down {
            Err(())
        } else {
            Ok((&scraped.0, &scraped.1))
        };
        let from = onset.filter(|o| *o <= t).unwrap_or(0.0);
        if let Some(end) = rule.look(t, read) {
            return Outcome {
                end,
                seconds: t - from,
                fault_started: onset.is_some_and(|o| o <= t),
            };
        }
        if t > 3.0 * nominal {
            return Outcome {
                end: End::Undecided,
                seconds: t - from,
                fault_started: onset.is_some_and(|o| o <= t),
            };
        }
    }
}

// === canaryd: the real engine ===

/// The real engine on a deploy spec.
pub struct Canaryd<'a> {
    pub spec: &'a DeploySpec,
    pub state: RolloutState,
    start: Timestamp,
}

impl<'a> Canaryd<'a> {
    pub fn new(spec: &'a DeploySpec) -> Canaryd<'a> {
        let start = Timestamp::from_millis(1_800_000_000_000);
        Canaryd {
            spec,
            state: RolloutState::new(spec, start),
            start,
        }
    }
}

fn snapshot(c: &Counters) -> Snapshot {
    Snapshot {
        requests: c.requests,
        errors: Some(c.errors),
        buckets: c.buckets(),
    }
}

impl Rule for Canaryd<'_> {
    fn interval(&self) -> f64 {
        self.spec.strategy.analysis.interval.as_secs_f64()
    }

    fn weight(&self) -> f64 {
        self.state.weight.percent() / 100.0
    }

    fn step(&self) -> usize {
        self.state.step
    }

    fn look(&mut self, t: f64, read: Result<(&Counters, &Counters), ()>) -> Option<End> {
        let now = self.start.plus(Duration::from_secs_f64(t));
        let track = |c: Option<&Counters>| TrackCounts {
            snapshot: c.map(snapshot).ok_or(Inconclusive::ProviderError {
                message: "Prometheus is down".into(),
            }),
            queries: CountsQueries::default(),
        };
        let counts = counts_needed(self.spec, &self.state).map(|_| CountsReading {
            canary: track(read.ok().map(|r| r.0)),
            stable: track(read.ok().map(|r| r.1)),
        });
        let obs = Observation {
            canary_ready: true,
            measurements: Vec::new(),
            counts,
        };
        let d = decide(self.spec, &self.state, &Input::Tick(obs), now).ok()?;
        self.state = d.state;
        match self.state.phase {
            Phase::Promoted => Some(End::Promoted),
            Phase::RolledBack | Phase::Aborted => Some(End::RolledBack),
            _ => None,
        }
    }
}

// === Peers' default rules, as plain functions ===

/// Flagger (interval 1m, threshold 5: failed checks are cumulative) or Argo
/// Rollouts (measurements every 1m, failureLimit 0: the first failed
/// measurement aborts), on the seed's gates, steps and durations, with
/// point estimates over the last minute as their Prometheus queries give.
pub struct Peer {
    pub kind: PeerKind,
    steps: Vec<(f64, f64)>,
    step: usize,
    elapsed: f64,
    failed: u32,
    /// Consecutive failed queries (Argo's `consecutiveErrorLimit` 4: the 5th aborts).
    errors: u32,
    last: Option<(Counters, Counters)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerKind {
    Flagger,
    Argo,
}

impl Peer {
    /// `steps`: (weight 0–1, duration seconds).
    pub fn new(kind: PeerKind, steps: Vec<(f64, f64)>) -> Peer {
        Peer {
            kind,
            steps,
            step: 0,
            elapsed: 0.0,
            failed: 0,
            errors: 0,
            last: None,
        }
    }

    /// The seed's checks on a minute's counts: error rate and p99 (NaN
    /// without requests), step 1's promotion gates and the abort conditions.
    fn passes(&self, c: &Counters) -> bool {
        let err = c.errors / c.requests; // NaN without traffic, like 0/0 in PromQL
        let p99 = quantile(c, 0.99);
        let mut ok = err <= 0.02 && p99 <= 0.5;
        if self.step == 0 {
            ok = ok && err < 0.01 && p99 < 0.2;
        }
        ok
    }
}

/// `histogram_quantile` over a minute's bins (NaN without requests).
fn quantile(c: &Counters, q: f64) -> f64 {
    let b = c.buckets();
    let total = b.last().map_or(0.0, |x| x.1);
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut prev = (0.0, 0.0);
    for (le, count) in b {
        if count >= rank {
            if le.is_infinite() {
                return prev.0;
            }
            let w = count - prev.1;
            return prev.0 + (le - prev.0) * if w > 0.0 { (rank - prev.1) / w } else { 1.0 };
        }
        prev = (le, count);
    }
    f64::NAN
}

impl Rule for Peer {
    fn interval(&self) -> f64 {
        60.0
    }

    fn weight(&self) -> f64 {
        self.steps.get(self.step).map_or(1.0, |s| s.0)
    }

    fn step(&self) -> usize {
        self.step
    }

    fn look(&mut self, _t: f64, read: Result<(&Counters, &Counters), ()>) -> Option<End> {
        let pass = match (&read, &self.last) {
            (Ok((c, _)), Some((lc, _))) => {
                let mut d = (*c).clone();
                d.requests -= lc.requests;
                d.errors -= lc.errors;
                for (a, b) in d.bins.iter_mut().zip(lc.bins) {
                    *a -= b;
                }
                Some(self.passes(&d))
            }
            (Ok(_), None) => None, // the first look only starts the window
            // Prometheus down: Flagger counts a failed check; Argo counts a
            // measurement error and aborts on the fifth in a row.
            (Err(()), _) if self.kind == PeerKind::Argo => {
                self.errors += 1;
                return (self.errors > 4).then_some(End::RolledBack);
            }
            (Err(()), _) => Some(false),
        };
        self.errors = 0;
        if let Ok((c, s)) = read {
            self.last = Some((c.clone(), s.clone()));
        }
        let pass = pass?;
        if !pass {
            self.failed += 1;
            let limit = match self.kind {
                PeerKind::Flagger => 5,
                PeerKind::Argo => 1,
            };
            if self.failed >= limit {
                return Some(End::RolledBack);
            }
            return None;
        }
        self.elapsed += 60.0;
        let (_, duration) = self.steps[self.step];
        if self.elapsed >= duration {
            if self.step + 1 >= self.steps.len() {
                return Some(End::Promoted);
            }
            self.step += 1;
            self.elapsed = 0.0;
        }
        None
    }
}
