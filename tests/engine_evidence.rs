//! The engine's evidence rules tick by tick in simulated time: abort
//! conditions as change detectors, promotion gates on positive evidence,
//! steps extended while evidence is missing, no data and the warm-up,
//! latency thresholds between histogram bounds, comparisons with the stable
//! version, and gates judged on single readings.
//!
//! Counts are exact expectations (tests/common), so every run is the same.

mod common;

use std::time::Duration;

use canaryd::engine::evidence::{BoundSide, Counted, Method};
use canaryd::engine::{
    Action, Command, Effect, GateResult, Inconclusive, PauseReason, Phase, Reason, Verdict,
};
use canaryd::spec::units::Weight;
use common::{Counters, SEED_FILE, Sim, World, seed_with_analysis, spec, weight};

const MIN: Duration = Duration::from_secs(60);

fn seed() -> Sim {
    Sim::new(spec(SEED_FILE))
}

/// Starts the seed rollout and runs it healthy to step `step` (0-based).
fn at_step(step: usize) -> Sim {
    let mut sim = seed();
    let healthy = World::healthy();
    sim.tick_now(&healthy);
    sim.tick_until(&healthy, 1000, |s| s.state.step == step);
    sim
}

/// The seed file with step 1's promotion gates replaced by `gates` (YAML
/// list items, 8-space indented) and extra analysis lines.
fn with_step1_gates(gates: &str, analysis: &str) -> Sim {
    let text = SEED_FILE
        .replace(
            "        - error_rate_less_than: 1%\n        - latency_p99_less_than: 200ms\n",
            gates,
        )
        .replace(
            "  rollback:\n",
            &format!("  analysis:\n{analysis}\n  rollback:\n"),
        );
    Sim::new(spec(&text))
}

fn gate<'a>(gates: &'a [GateResult], name: &str) -> &'a GateResult {
    gates
        .iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("gate {name} judged in {gates:#?}"))
}

/// Ticks until a decision of `action` is recorded; returns the ticks taken.
fn ticks_until_action(sim: &mut Sim, world: &World, action: Action, max: usize) -> usize {
    let before = sim.log.len();
    for n in 1..=max {
        sim.tick(world);
        if sim.log[before..].iter().any(|r| r.action == action) {
            return n;
        }
    }
    panic!("no {action} within {max} ticks: {:#?}", sim.log.last());
}

// === Abort conditions: change detectors ===

#[test]
fn an_error_rate_breach_rolls_back_at_once_at_every_step() {
    for step in 0..3 {
        let mut sim = at_step(step);
        sim.tick(&World::healthy().with("error_rate", 0.05));
        assert_eq!(sim.state.phase, Phase::RolledBack, "step {step}");
        assert_eq!(
            sim.last_effects()[0],
            Effect::SetWeight {
                weight: Weight::ZERO
            },
            "weight 0 comes first"
        );
        let record = sim.last_record();
        assert_eq!((record.action, record.step), (Action::Rollback, step + 1));
        assert!(
            record.reason.starts_with(
                "abort condition error_rate > 2% breached: 5% errors over 1,000 requests since "
            ),
            "{}",
            record.reason
        );
        assert!(
            record.reason.contains("(99.75% lower bound "),
            "{}",
            record.reason
        );
        let Reason::AbortCondition {
            gate,
            value,
            threshold,
            evidence,
            ..
        } = &record.detail
        else {
            panic!("unexpected reason {:?}", record.detail);
        };
        assert_eq!(
            (gate.as_str(), value.as_str(), threshold.as_str()),
            ("error_rate > 2%", "5%", "2%")
        );
        assert!(evidence.is_some());
        let judged = gate_of(record, "error_rate > 2%");
        let e = judged.evidence.as_deref().expect("evidence");
        assert_eq!(
            (e.method, e.events, e.requests),
            (Method::Detector, 50.0, 1000.0)
        );
        let bound = e.bound.expect("a lower bound");
        assert_eq!(bound.side, BoundSide::Lower);
        assert!(bound.value > 0.02 && bound.value < 0.05, "{bound:?}");
    }
}

fn gate_of<'a>(r: &'a canaryd::engine::DecisionRecord, name: &str) -> &'a GateResult {
    gate(&r.gates, name)
}

#[test]
fn a_latency_breach_alone_rolls_back() {
    let mut sim = at_step(1);
    sim.tick(&World::healthy().with("latency_p99", 0.75));
    assert_eq!(sim.state.phase, Phase::RolledBack);
    let reason = &sim.last_record().reason;
    assert!(
        reason.starts_with("abort condition latency_p99 > 500ms breached: 7.11% of 1,000 requests slower than 500ms since "),
        "{reason}"
    );
}

#[test]
fn the_rollback_alert_follows_the_record_which_follows_weight_zero() {
    let mut sim = at_step(0);
    sim.tick(&World::healthy().with("error_rate", 0.5));
    let kinds: Vec<&str> = sim
        .last_effects()
        .iter()
        .map(|e| match e {
            Effect::SetWeight { .. } => "weight",
            Effect::Record(_) => "record",
            Effect::Notify(_) => "notify",
            Effect::Finalize { .. } => "finalize",
        })
        .collect();
    assert_eq!(kinds, ["weight", "record", "notify"]);
}

#[test]
fn one_noisy_interval_at_low_traffic_is_not_a_breach() {
    // 2 errors in 10 requests reads as 20%, ten times the 2% abort
    // condition: a point estimate would roll back; 10 requests prove nothing.
    let mut sim = at_step(0);
    let quiet = World::healthy().requests(10.0);
    sim.ticks(3, &quiet);
    sim.tick(&quiet.clone().with("error_rate", 0.2));
    sim.ticks(3, &quiet);
    assert_eq!(sim.state.phase, Phase::Progressing);
    assert!(!sim.log.iter().any(|r| r.action == Action::Rollback));
}

#[test]
fn a_fault_that_starts_late_is_caught_as_fast_as_one_present_from_the_start() {
    // 3% errors against the 2% abort condition: a small breach that needs
    // several intervals of evidence. After 15 minutes of healthy history in
    // the step, the detector needs no more of it than at the step's start.
    // Step 2 has no promotion gates: only the abort condition judges.
    let bad = World::healthy().with("error_rate", 0.03);
    let mut fresh = at_step(1);
    let from_start = ticks_until_action(&mut fresh, &bad, Action::Rollback, 100);
    let mut late = at_step(1);
    late.ticks(90, &World::healthy());
    let after_history = ticks_until_action(&mut late, &bad, Action::Rollback, 100);
    assert!(
        from_start > 1,
        "a small breach needs more than one interval"
    );
    assert!(
        after_history <= from_start + 1,
        "late fault: {after_history} intervals, from the start: {from_start}"
    );
}

#[test]
fn consecutive_breaches_delay_an_evidence_rollback_by_that_many_intervals() {
    // A detector's evidence does not vanish at the next good minute: with
    // `consecutive_breaches: 3` it must stay breached on three ticks.
    let mut sim = Sim::new(seed_with_analysis("    consecutive_breaches: 3"));
    let bad = World::healthy().with("error_rate", 0.05);
    sim.tick_now(&World::healthy());
    sim.tick(&bad);
    assert!(sim.last_record().reason.ends_with("(1/3 consecutive)"));
    sim.tick(&bad);
    assert!(sim.last_record().reason.ends_with("(2/3 consecutive)"));
    sim.tick(&bad);
    assert_eq!(sim.state.phase, Phase::RolledBack);
}

#[test]
fn consecutive_breaches_of_a_reading_gate_must_be_in_a_row() {
    let text = SEED_FILE
        .replace(
            "      - error_rate_greater_than: 2%\n      - latency_p99_greater_than: 500ms\n",
            "      - queue_depth_greater_than: 100\n        query: sum(queue_depth{service=\"{{service}}\"})\n",
        )
        .replace("  rollback:\n", "  analysis:\n    consecutive_breaches: 3\n  rollback:\n");
    let mut sim = Sim::new(spec(&text));
    let ok = World::healthy().with("queue_depth", 10.0);
    let deep = World::healthy().with("queue_depth", 150.0);
    sim.tick_now(&ok);
    for w in [&deep, &deep, &ok, &deep, &deep] {
        sim.tick(w);
        assert_eq!(sim.state.phase, Phase::Progressing);
    }
    assert_eq!(
        sim.last_record().reason,
        "abort condition queue_depth > 100 breached: value 150 (2/3 consecutive)"
    );
    sim.tick(&deep);
    assert_eq!(sim.state.phase, Phase::RolledBack);
}

#[test]
fn a_failed_read_between_breaching_ticks_does_not_reset_their_count() {
    let mut sim = Sim::new(seed_with_analysis("    consecutive_breaches: 2"));
    sim.tick_now(&World::healthy());
    sim.tick(&World::healthy().with("error_rate", 0.05));
    sim.tick(&World::healthy().inconclusive("counts", Inconclusive::Timeout));
    assert_eq!(sim.state.phase, Phase::RolledBack, "{:#?}", sim.log);
}

#[test]
fn abort_conditions_are_watched_while_paused() {
    let mut sim = at_step(1);
    sim.command(Command::Pause).expect("pausable");
    sim.tick(&World::healthy().with("error_rate", 0.05));
    assert_eq!(sim.state.phase, Phase::RolledBack);
}

// === Promotion gates: positive evidence ===

#[test]
fn a_promotion_gate_passes_only_on_evidence_that_the_canary_is_within_it() {
    let sim = at_step(1);
    let advance = sim
        .log
        .iter()
        .find(|r| r.action == Action::Advance)
        .expect("step 1 advanced");
    for name in ["error_rate < 1%", "latency_p99 < 200ms"] {
        let g = gate_of(advance, name);
        assert_eq!(g.verdict, Verdict::Pass, "{name}");
        let e = g.evidence.as_deref().expect("evidence");
        let bound = e.bound.expect("an upper bound");
        assert_eq!(
            (e.method, bound.side),
            (Method::Sequential, BoundSide::Upper)
        );
        assert!(bound.value < 0.01, "{name}: {bound:?}");
        assert_eq!(bound.confidence, 0.99);
    }
}

#[test]
fn one_bad_interval_is_not_a_failure_but_conclusive_evidence_is() {
    let mut sim = seed();
    sim.tick_now(&World::healthy());
    // 1.5% errors fails `error_rate < 1%` and stays under the 2% abort.
    let failing = World::healthy().with("error_rate", 0.015);
    sim.tick(&failing);
    assert_eq!(sim.state.counters.failures, 0);
    let g = gate(
        &sim.last.as_ref().expect("decided").gates,
        "error_rate < 1%",
    );
    assert_eq!(g.verdict, Verdict::Undecided);
    let ticks = ticks_until_action(&mut sim, &failing, Action::Rollback, 100);
    assert!(ticks > 2, "took {ticks} intervals");
    let reason = &sim.last_record().reason;
    assert!(
        reason.starts_with("promotion gate error_rate < 1% failed: 1.5% errors over ")
            && reason.contains(" requests since the step began (99.75% lower bound "),
        "{reason}"
    );
}

#[test]
fn a_failure_limit_waits_for_that_many_failing_ticks() {
    let mut sim = Sim::new(seed_with_analysis("    failure_limit: 3"));
    sim.tick_now(&World::healthy());
    let failing = World::healthy().with("error_rate", 0.018);
    let first = ticks_until_action(&mut sim, &failing, Action::Hold, 100);
    assert!(first > 1);
    assert_eq!(sim.state.counters.failures, 1);
    assert!(
        sim.last_record()
            .reason
            .ends_with("(failure 1/3 in this step)")
    );
    sim.ticks(2, &failing);
    assert_eq!(sim.state.phase, Phase::RolledBack);
}

#[test]
fn a_failed_promotion_gate_keeps_its_step_from_advancing() {
    let mut sim = Sim::new(seed_with_analysis("    failure_limit: 1000"));
    sim.tick_now(&World::healthy());
    let slow = World::healthy().with("latency_p99", 0.3);
    sim.ticks(200, &slow); // well past 10 minutes
    assert_eq!(
        (sim.state.phase, sim.state.step, sim.router),
        (Phase::Progressing, 0, weight(5))
    );
    sim.ticks(3, &World::healthy());
    assert_eq!(
        sim.state.step, 0,
        "conclusive failing evidence is not undone by a good minute"
    );
}

#[test]
fn a_failing_gate_counts_even_while_another_gate_cannot_be_judged() {
    // No histogram bound at or above 45s: that abort condition waits.
    let text = SEED_FILE.replace(
        "latency_p99_greater_than: 500ms",
        "latency_p99_greater_than: 45s",
    );
    let mut sim = Sim::new(spec(&text));
    sim.tick_now(&World::healthy());
    sim.tick(&World::healthy());
    let g = gate(
        &sim.last.as_ref().expect("decided").gates,
        "latency_p99 > 45s",
    );
    assert!(
        matches!(
            &g.verdict,
            Verdict::Inconclusive {
                reason: Inconclusive::Waiting { .. }
            }
        ),
        "{g:#?}"
    );
    ticks_until_action(
        &mut sim,
        &World::healthy().with("error_rate", 0.018),
        Action::Rollback,
        100,
    );
}

#[test]
fn promotion_evidence_starts_afresh_at_each_step_while_abort_detectors_go_on() {
    let text = SEED_FILE.replace(
        "    - deploy: 50%\n      duration: 20m\n",
        "    - deploy: 50%\n      duration: 20m\n      metrics:\n        - error_rate_less_than: 1%\n",
    );
    let mut sim = Sim::new(spec(&text));
    sim.tick_now(&World::healthy());
    sim.tick_until(&World::healthy(), 1000, |s| s.state.step == 1);
    let detector_intervals = |s: &Sim| {
        s.state
            .evidence
            .gates
            .iter()
            .find(|g| g.gate == canaryd::engine::GateRef::Abort(0))
            .map(|g| match &g.against.test {
                canaryd::engine::evidence::Test::Detector(d) => d.intervals,
                _ => 0,
            })
            .expect("abort evidence")
    };
    let before = detector_intervals(&sim);
    sim.tick(&World::healthy());
    let g = gate(
        &sim.last.as_ref().expect("decided").gates,
        "error_rate < 1%",
    );
    assert_eq!(g.evidence.as_deref().expect("evidence").requests, 1000.0);
    assert_eq!(detector_intervals(&sim), before + 1);
}

// === Not enough evidence ===

/// 4 canary requests per tick without errors: 10 minutes give 240, a pass
/// at 99% confidence needs about 700.
fn trickle() -> World {
    World::healthy()
        .requests(4.0)
        .with("error_rate", 0.0)
        .with("latency_p99", 0.05)
}

#[test]
fn at_low_traffic_a_step_waits_for_its_evidence_then_pauses_and_resumes_when_it_arrives() {
    let mut sim = seed();
    sim.tick_now(&trickle());
    sim.tick_until(&trickle(), 200, |s| s.state.step_elapsed >= 10 * MIN);
    sim.tick(&trickle());
    let waiting = sim.last_record();
    assert_eq!((waiting.action, sim.state.step), (Action::Hold, 0));
    assert!(
        waiting
            .reason
            .starts_with("step 1 ran its duration; waiting up to 10m more for evidence on "),
        "{}",
        waiting.reason
    );
    // Recorded once, not every tick.
    let holds = sim.log.len();
    sim.ticks(20, &trickle());
    assert_eq!(sim.log.len(), holds);
    // 20 minutes in all: the no-data policy (hold) pauses and alerts.
    let paused = ticks_until_action(&mut sim, &trickle(), Action::Pause, 100);
    assert!(paused > 30);
    assert_eq!(sim.state.pause, Some(PauseReason::Evidence));
    assert!(
        sim.last_record()
            .reason
            .contains("without conclusive evidence")
    );
    assert!(matches!(sim.last_effects().last(), Some(Effect::Notify(_))));
    assert_eq!(
        sim.router,
        weight(5),
        "the weight is held while evidence accrues"
    );
    // The evidence arrives while paused: resume and advance at once.
    ticks_until_action(&mut sim, &trickle(), Action::Advance, 200);
    let n = sim.log.len();
    assert_eq!(
        (sim.log[n - 2].action, sim.log[n - 2].reason.as_str()),
        (Action::Resume, "the promotion gates passed; continuing")
    );
    assert_eq!((sim.state.step, sim.router), (1, weight(50)));
}

#[test]
fn with_no_data_rollback_a_step_without_evidence_rolls_back_after_its_extension() {
    let mut sim = Sim::new(seed_with_analysis(
        "    no_data: rollback\n    max_extension: 2m",
    ));
    sim.tick_now(&trickle());
    ticks_until_action(&mut sim, &trickle(), Action::Rollback, 200);
    assert_eq!(
        sim.elapsed(),
        12 * MIN,
        "10 minutes, then 2 more for evidence"
    );
    assert!(matches!(
        sim.last_record().detail,
        Reason::NotEnoughEvidence { step: 1, .. }
    ));
}

#[test]
fn with_no_data_ignore_a_step_without_evidence_advances_and_says_so() {
    let mut sim = Sim::new(seed_with_analysis(
        "    no_data: ignore\n    max_extension: 1m",
    ));
    sim.tick_now(&trickle());
    ticks_until_action(&mut sim, &trickle(), Action::Advance, 200);
    let n = sim.log.len();
    assert_eq!(sim.log[n - 2].action, Action::IgnoreNoData);
    assert!(matches!(
        sim.log[n - 2].detail,
        Reason::NotEnoughEvidence { .. }
    ));
}

// === No data and the warm-up ===

#[test]
fn a_canary_without_data_is_never_promoted() {
    let mut sim = seed();
    let empty = World::healthy().without_data();
    sim.tick_now(&empty);
    sim.ticks(2000, &empty); // 5.5 hours
    assert_eq!(
        (sim.state.phase, sim.state.pause),
        (Phase::Paused, Some(PauseReason::NoData))
    );
    assert_eq!((sim.state.step, sim.router), (0, weight(5)));
    assert!(!sim.log.iter().any(|r| r.action == Action::Advance));
}

#[test]
fn a_canary_that_never_reports_is_judged_no_data_two_windows_after_its_first_weight() {
    let mut sim = seed();
    let empty = World::healthy().without_data();
    sim.tick_now(&empty);
    sim.ticks(11, &empty); // 110 s: within two 1m windows, Prometheus may not have scraped it
    assert_eq!(sim.log.len(), 1, "only the start: {:#?}", sim.log);
    sim.tick(&empty);
    assert_eq!(sim.last_record().action, Action::Hold);
    assert_eq!(
        sim.last_record().reason,
        "inconclusive: error_rate > 2%: no data (1/6 ticks)"
    );
}

#[test]
fn a_canary_whose_first_scrape_comes_late_is_judged_a_window_after_its_data_starts() {
    let mut sim = seed();
    let empty = World::healthy().without_data();
    sim.tick_now(&empty);
    sim.ticks(3, &empty); // 30 s before Prometheus first shows its requests
    sim.ticks(6, &World::healthy().requests(20.0)); // the window since its data began
    assert_eq!(sim.log.len(), 1, "warming up: {:#?}", sim.log);
    sim.ticks(6, &empty); // its traffic stops: a whole window without requests
    assert_eq!(
        sim.last_record().reason,
        "inconclusive: error_rate > 2%: no data (1/6 ticks)"
    );
}

#[test]
fn missing_data_holds_then_pauses_at_the_limit_and_alerts_once() {
    let mut sim = seed();
    let empty = World::healthy().without_data();
    sim.tick_now(&empty);
    sim.ticks(16, &empty); // two windows of warm-up, then 5 inconclusive ticks
    assert_eq!(sim.state.phase, Phase::Progressing);
    assert_eq!(
        sim.last_record().reason,
        "inconclusive: error_rate > 2%: no data (5/6 ticks)"
    );
    sim.tick(&empty);
    assert_eq!(
        (sim.state.phase, sim.last_record().action),
        (Phase::Paused, Action::Pause)
    );
    assert!(matches!(sim.last_effects().last(), Some(Effect::Notify(_))));
    let decisions = sim.log.len();
    sim.ticks(20, &empty);
    assert_eq!(
        sim.log.len(),
        decisions,
        "a held rollout does not flood the log"
    );
}

#[test]
fn a_rollout_paused_for_missing_data_resumes_when_data_returns() {
    let mut sim = seed();
    sim.tick_now(&World::healthy());
    sim.tick_until(&World::healthy().without_data(), 50, |s| {
        s.state.phase == Phase::Paused
    });
    sim.tick(&World::healthy());
    assert_eq!(
        (sim.state.phase, sim.last_record().action),
        (Phase::Progressing, Action::Resume)
    );
    assert_eq!(sim.last_record().reason, "data returned; continuing");
}

#[test]
fn the_rollback_no_data_policy_rolls_back_at_the_limit() {
    let mut sim = Sim::new(seed_with_analysis(
        "    no_data: rollback\n    inconclusive_limit: 3",
    ));
    sim.tick_now(&World::healthy());
    let ticks = ticks_until_action(
        &mut sim,
        &World::healthy().without_data(),
        Action::Rollback,
        50,
    );
    assert_eq!(
        ticks, 14,
        "two windows of warm-up (no data ever), then 3 inconclusive ticks"
    );
    assert_eq!(
        sim.last_effects()[0],
        Effect::SetWeight {
            weight: Weight::ZERO
        }
    );
}

#[test]
fn the_ignore_no_data_policy_advances_and_logs_every_ignored_tick() {
    let mut sim = Sim::new(seed_with_analysis(
        "    no_data: ignore\n    inconclusive_limit: 2",
    ));
    let failing_reads = World::healthy().inconclusive("counts", Inconclusive::Timeout);
    sim.tick_now(&World::healthy());
    sim.tick_until(&failing_reads, 1000, |s| s.state.phase == Phase::Promoted);
    let ignored = sim
        .log
        .iter()
        .filter(|r| r.action == Action::IgnoreNoData)
        .count();
    assert!(ignored > 100, "every ignored tick is logged, got {ignored}");
}

#[test]
fn provider_errors_and_too_few_requests_are_inconclusive_never_a_pass() {
    let cases = [
        World::healthy().requests(3.0),
        World::healthy().inconclusive(
            "counts",
            Inconclusive::ProviderError {
                message: "503".into(),
            },
        ),
        World::healthy().inconclusive("counts", Inconclusive::Timeout),
        World::healthy().inconclusive("counts", Inconclusive::AmbiguousSeries { series: 2 }),
    ];
    for world in cases {
        let mut sim = Sim::new(seed_with_analysis("    inconclusive_limit: 1000"));
        sim.tick_now(&World::healthy());
        sim.ticks(200, &world);
        assert_eq!(
            (sim.state.phase, sim.state.step),
            (Phase::Progressing, 0),
            "{world:?}"
        );
        let gates = &sim.last.as_ref().expect("decided").gates;
        assert!(
            gates
                .iter()
                .all(|g| matches!(g.verdict, Verdict::Inconclusive { .. })),
            "{world:?}: {gates:#?}"
        );
    }
}

#[test]
fn too_few_requests_reports_how_many_were_seen_and_needed() {
    let mut sim = seed();
    sim.tick_now(&World::healthy());
    sim.tick_until(&World::healthy().requests(3.0), 20, |s| s.log.len() > 1);
    assert_eq!(
        sim.last_record().reason,
        "inconclusive: error_rate > 2%: 18 requests in the window, 20 needed (1/6 ticks)"
    );
}

#[test]
fn a_counter_reset_drops_one_interval_and_keeps_the_evidence() {
    let mut sim = at_step(0);
    sim.ticks(3, &World::healthy());
    let before = gate(
        &sim.last.as_ref().expect("decided").gates,
        "error_rate < 1%",
    )
    .evidence
    .as_deref()
    .expect("evidence")
    .requests;
    // The canary restarted: its counters start again from 0.
    sim.canary_counts = Counters::default();
    sim.tick(&World::healthy());
    let after_reset = gate(
        &sim.last.as_ref().expect("decided").gates,
        "error_rate < 1%",
    )
    .evidence
    .as_deref()
    .expect("evidence")
    .requests;
    assert_eq!(
        after_reset, before,
        "the interval with the reset is dropped"
    );
    sim.tick(&World::healthy());
    let later = gate(
        &sim.last.as_ref().expect("decided").gates,
        "error_rate < 1%",
    )
    .evidence
    .as_deref()
    .expect("evidence")
    .requests;
    assert_eq!(later, before + 1000.0);
    assert_eq!(sim.state.phase, Phase::Progressing);
}

// === Latency thresholds between histogram bounds ===

#[test]
fn a_latency_threshold_between_histogram_bounds_is_judged_at_the_conservative_bound() {
    // 180ms lies between the 150ms and 200ms bounds: passing needs fewer
    // than 1% slower than 150ms; failing, more than 1% slower than 200ms.
    let mut sim = with_step1_gates(
        "        - latency_p99_less_than: 180ms\n",
        "    interval: 10s",
    );
    sim.tick_now(&World::healthy());
    sim.tick(&World::healthy().with("latency_p99", 0.12));
    let g = gate(
        &sim.last.as_ref().expect("decided").gates,
        "latency_p99 < 180ms",
    );
    let e = g.evidence.as_deref().expect("evidence");
    assert_eq!(
        e.counted,
        Counted::SlowerThan { seconds: 0.15 },
        "leaning to pass: {e:#?}"
    );
    let mut slow = with_step1_gates(
        "        - latency_p99_less_than: 180ms\n",
        "    interval: 10s",
    );
    slow.tick_now(&World::healthy());
    slow.tick(&World::healthy().with("latency_p99", 0.4));
    let g = gate(
        &slow.last.as_ref().expect("decided").gates,
        "latency_p99 < 180ms",
    );
    let e = g.evidence.as_deref().expect("evidence");
    assert_eq!(
        e.counted,
        Counted::SlowerThan { seconds: 0.2 },
        "leaning to fail: {e:#?}"
    );
}

// === Comparisons with the stable version ===

#[test]
fn a_canary_as_good_as_stable_passes_a_ratio_gate_and_one_twice_as_bad_fails_it() {
    let gates = "        - error_rate_less_than: stable * 1.5\n";
    let same = World::healthy()
        .with("error_rate", 0.01)
        .stable_errors(0.01);
    let mut sim = with_step1_gates(gates, "    interval: 10s");
    sim.tick_now(&same);
    sim.tick_until(&same, 200, |s| s.state.step == 1);
    let twice = World::healthy()
        .with("error_rate", 0.02)
        .stable_errors(0.01);
    let mut sim = with_step1_gates(gates, "    interval: 10s");
    sim.tick_now(&twice);
    ticks_until_action(&mut sim, &twice, Action::Rollback, 100);
    let g = gate_of(sim.last_record(), "error_rate < stable * 1.5");
    let e = g.evidence.as_deref().expect("evidence");
    assert_eq!(e.counted, Counted::ErrorRatio);
    assert!(e.estimate.is_some_and(|r| (r - 2.0).abs() < 0.01), "{e:#?}");
    assert!(
        sim.last_record().reason.contains("ratio 2"),
        "{}",
        sim.last_record().reason
    );
}

#[test]
fn a_points_above_stable_gate_tests_the_canary_against_the_stable_versions_bound() {
    let gates = "        - error_rate_less_than: stable + 0.5%\n";
    let close = World::healthy()
        .with("error_rate", 0.011)
        .stable_errors(0.01);
    let mut sim = with_step1_gates(gates, "    interval: 10s");
    sim.tick_now(&close);
    sim.tick_until(&close, 300, |s| s.state.step == 1);
    let far = World::healthy()
        .with("error_rate", 0.019)
        .stable_errors(0.01);
    let mut sim = with_step1_gates(gates, "    interval: 10s");
    sim.tick_now(&far);
    ticks_until_action(&mut sim, &far, Action::Rollback, 100);
}

#[test]
fn an_abort_condition_relative_to_stable_rolls_back_a_canary_far_worse_than_stable() {
    let text = SEED_FILE.replace(
        "      - error_rate_greater_than: 2%\n",
        "      - error_rate_greater_than: stable * 3\n",
    );
    let mut sim = Sim::new(spec(&text));
    sim.tick_now(&World::healthy());
    sim.tick_until(&World::healthy(), 200, |s| s.state.step == 1);
    let bad = World::healthy()
        .with("error_rate", 0.03)
        .stable_errors(0.005);
    ticks_until_action(&mut sim, &bad, Action::Rollback, 20);
    let reason = &sim.last_record().reason;
    assert!(
        reason.starts_with("abort condition error_rate > stable * 3 breached: canary ")
            && reason.contains(" vs stable 0.5% over "),
        "{reason}"
    );
}

#[test]
fn a_latency_gate_relative_to_stable_is_judged_at_a_bound_from_the_stable_quantile() {
    let gates = "        - latency_p99_less_than: stable * 1.2\n";
    let fast = World::healthy().with("latency_p99", 0.06);
    let mut sim = with_step1_gates(gates, "    interval: 10s");
    sim.tick_now(&fast);
    sim.tick_until(&fast, 200, |s| s.state.step == 1);
    let slow = World::healthy().with("latency_p99", 0.4);
    let mut sim = with_step1_gates(gates, "    interval: 10s");
    sim.tick_now(&slow);
    ticks_until_action(&mut sim, &slow, Action::Rollback, 100);
}

// === Gates on single readings (their own query) ===

const QUEUE_GATE: &str = "        - queue_depth_less_than: 100\n          query: sum(queue_depth{service=\"{{service}}\", version=\"{{version}}\"})\n";

#[test]
fn a_gate_with_its_own_query_is_judged_on_each_reading_and_counts_failures_cumulatively() {
    let mut sim = with_step1_gates(QUEUE_GATE, "    interval: 10s");
    let ok = World::healthy().with("queue_depth", 10.0);
    let deep = World::healthy().with("queue_depth", 150.0);
    sim.tick_now(&ok);
    sim.tick(&deep);
    sim.tick(&ok);
    sim.tick(&deep);
    assert_eq!(
        (sim.state.phase, sim.state.counters.failures),
        (Phase::Progressing, 2)
    );
    assert_eq!(
        sim.last_record().reason,
        "promotion gate queue_depth < 100 failed: value 150 (failure 2/3 in this step)"
    );
    sim.ticks(10, &ok);
    sim.tick(&deep);
    assert_eq!(
        sim.state.phase,
        Phase::RolledBack,
        "the third failure in the step rolls back"
    );
}

#[test]
fn reading_failures_are_counted_per_step() {
    let mut sim = with_step1_gates(QUEUE_GATE, "    interval: 10s");
    let ok = World::healthy().with("queue_depth", 10.0);
    sim.tick_now(&ok);
    sim.ticks(2, &World::healthy().with("queue_depth", 150.0));
    sim.tick_until(&ok, 1000, |s| s.state.step == 1);
    assert_eq!(sim.state.counters.failures, 0);
}

#[test]
fn nan_and_infinite_readings_are_inconclusive_never_a_pass() {
    for value in [f64::NAN, f64::INFINITY] {
        let mut sim = with_step1_gates(QUEUE_GATE, "    inconclusive_limit: 1000");
        sim.tick_now(&World::healthy());
        sim.ticks(100, &World::healthy().with("queue_depth", value));
        assert_eq!((sim.state.phase, sim.state.step), (Phase::Progressing, 0));
        let g = gate(
            &sim.last.as_ref().expect("decided").gates,
            "queue_depth < 100",
        );
        assert!(matches!(g.verdict, Verdict::Inconclusive { .. }), "{g:#?}");
    }
}

// === The decision log ===

#[test]
fn decisions_carry_each_gate_with_query_value_threshold_verdict_and_evidence() {
    let mut sim = at_step(0);
    ticks_until_action(
        &mut sim,
        &World::healthy().with("error_rate", 0.018),
        Action::Rollback,
        50,
    );
    let r = sim.last_record();
    let g = gate_of(r, "error_rate < 1%");
    assert_eq!(g.query, "errors / requests");
    assert_eq!((g.threshold.as_str(), &g.verdict), ("1%", &Verdict::Fail));
    assert!(g.value.is_some_and(|v| (v - 0.018).abs() < 1e-9));
    let e = g.evidence.as_deref().expect("evidence");
    assert!(e.requests >= 3000.0 && (e.events / e.requests - 0.018).abs() < 1e-9);
    assert!(
        e.bound
            .is_some_and(|b| b.side == BoundSide::Lower && b.value > 0.01 && b.value < 0.018)
    );
    assert!(e.log_e >= e.log_needed);
    assert_eq!(gate_of(r, "error_rate > 2%").verdict, Verdict::Pass);
    assert_eq!(
        r.gates.len(),
        4,
        "two abort conditions and two promotion gates"
    );
}

#[test]
fn data_returning_on_the_final_step_with_a_failing_gate_resumes_but_does_not_promote() {
    // Found by the property test: a rollout paused for no data on its last
    // step (no duration) was promoted on the tick its data came back, even
    // though that data failed the step's gate.
    let text = SEED_FILE.replace(
        "    - deploy: 100%\n",
        "    - deploy: 100%\n      metrics:\n        - latency_p99_less_than: 200ms\n",
    );
    let mut sim = Sim::new(spec(&text));
    sim.tick_until(&World::healthy(), 10_000, |s| s.state.step == 2);
    sim.tick_until(&World::healthy().without_data(), 100, |s| {
        s.state.pause == Some(PauseReason::NoData)
    });
    sim.tick(&World::healthy().with("latency_p99", 0.3)); // fails < 200ms, not the 500ms abort
    assert_ne!(sim.state.phase, Phase::Promoted, "{:#?}", sim.log.last());
    let actions: Vec<Action> = sim.log.iter().rev().take(2).map(|r| r.action).collect();
    assert_eq!(
        actions,
        [Action::Rollback, Action::Resume],
        "resumed, then the failure counted"
    );
}
