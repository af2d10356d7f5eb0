//! Per-rollout label sets on `/metrics`: added, kept small, removed.
use prometheus_client::encoding::text::encode;

use super::*;
use crate::engine::{Action, GateRef, Reason, Timestamp, TrackKind, Verdict};
use crate::spec::decode::decode;
use crate::spec::policy::PolicySet;
use crate::spec::units::Weight;

const SPEC: &str = "service: checkout
policy: http-red
prometheus: http://prometheus.test:9090
router: { kind: builtin, listen: 127.0.0.1:1 }
stable: { version: v1, address: 127.0.0.1:2 }
canary: { version: v2, address: 127.0.0.1:3 }
deploy:
  strategy: canary
  steps:
    - deploy: 10%
      duration: 1m
      metrics:
        - error_rate_less_than: 5%
    - deploy: 100%
";

fn id(name: &str) -> RolloutId {
    RolloutId {
        namespace: "default".into(),
        name: name.into(),
    }
}

fn state(phase: Phase) -> RolloutState {
    let spec = decode("checkout.yaml", SPEC, &PolicySet::builtin())
        .spec
        .expect("the test spec is valid");
    let mut s = RolloutState::new(&spec, Timestamp::from_millis(0));
    s.phase = phase;
    s
}

fn gate(name: &str, value: f64) -> GateResult {
    GateResult {
        gate: GateRef::Promotion { step: 0, index: 0 },
        name: name.into(),
        track: TrackKind::Canary,
        query: "up".into(),
        value: Some(value),
        shown: value.to_string(),
        stable_value: None,
        threshold: "5%".into(),
        verdict: Verdict::Pass,
        evidence: None,
    }
}

fn rollback() -> DecisionRecord {
    DecisionRecord {
        seq: 1,
        at: Timestamp::from_millis(0),
        from: Phase::Progressing,
        to: Phase::RolledBack,
        action: Action::Rollback,
        reason: "rolled back".into(),
        detail: Reason::SpecRemoved,
        step: 1,
        weight: Weight::ZERO,
        stable_version: "v1".into(),
        canary_version: "v2".into(),
        gates: Vec::new(),
        shadow: false,
        by: None,
    }
}

fn text(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).expect("encodes");
    out
}

/// The encoded lines of `rollout`'s series.
fn lines_of(text: &str, rollout: &str) -> Vec<String> {
    let label = format!("rollout=\"{rollout}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&label))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_removed_rollout_leaves_none_of_its_label_sets_in_metrics() {
    let mut registry = Registry::default();
    let m = Metrics::register(&mut registry);
    let (gone, kept) = (id("checkout"), id("search"));
    for r in [&gone, &kept] {
        m.observe_state(
            r,
            &state(Phase::Progressing),
            &[gate("error_rate < 5%", 0.01)],
        );
        m.count_decision(r, &rollback());
        m.observe_state(
            r,
            &state(Phase::RolledBack),
            &[gate("error_rate < 5%", 0.2)],
        );
    }
    let before = text(&registry);
    let families = [
        "canaryd_rollout_phase",
        "canaryd_canary_weight",
        "canaryd_gate_value",
        "canaryd_decisions_total",
        "canaryd_rollbacks_total",
    ];
    for f in families {
        assert!(
            lines_of(&before, "default/checkout")
                .iter()
                .any(|l| l.starts_with(f)),
            "{f} in\n{before}"
        );
    }
    // Forgotten with no gates at hand: the ones it was given are known.
    m.forget(&gone, &[]);
    let after = text(&registry);
    assert_eq!(lines_of(&after, "default/checkout"), Vec::<String>::new());
    assert_eq!(
        lines_of(&after, "default/search").len(),
        lines_of(&before, "default/search").len(),
        "another rollout's series stay"
    );
}

#[test]
fn a_gate_no_longer_judged_loses_its_value_and_phases_stay_six() {
    let mut registry = Registry::default();
    let m = Metrics::register(&mut registry);
    let r = id("checkout");
    let phases = [
        Phase::Idle,
        Phase::Progressing,
        Phase::Paused,
        Phase::Progressing,
        Phase::Promoted,
    ];
    for (i, phase) in phases.into_iter().enumerate() {
        // The spec's gate is edited on every tick: `error_rate < 1%`, `< 2%`…
        let name = format!("error_rate < {}%", i + 1);
        m.observe_state(&r, &state(phase), &[gate(&name, 0.001)]);
    }
    // A tick judging no gate keeps the last one's value.
    let mut unmeasured = gate("error_rate < 5%", 0.0);
    unmeasured.value = None;
    m.observe_state(&r, &state(Phase::Promoted), &[unmeasured]);
    let out = text(&registry);
    let lines = lines_of(&out, "default/checkout");
    let gates: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("canaryd_gate_value"))
        .collect();
    assert_eq!(gates.len(), 1, "{gates:?}");
    assert!(gates[0].contains("error_rate < 5%"), "{gates:?}");
    let phase_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("canaryd_rollout_phase"))
        .collect();
    assert_eq!(phase_lines.len(), 6, "{phase_lines:?}");
    assert!(
        phase_lines
            .iter()
            .any(|l| l.contains("phase=\"Promoted\"") && l.ends_with(" 1")),
        "{phase_lines:?}"
    );
    assert_eq!(phase_lines.iter().filter(|l| l.ends_with(" 1")).count(), 1);
}

#[test]
fn a_rollout_forgotten_then_managed_again_shows_its_phase_and_weight_again() {
    let mut registry = Registry::default();
    let m = Metrics::register(&mut registry);
    let r = id("checkout");
    let progressing = state(Phase::Progressing);
    m.observe_state(&r, &progressing, &[]);
    m.forget(&r, &[]);
    // The same phase and weight as before it was forgotten: shown again,
    // not skipped as unchanged.
    m.observe_state(&r, &progressing, &[]);
    let lines = lines_of(&text(&registry), "default/checkout");
    let count = |family: &str| lines.iter().filter(|l| l.starts_with(family)).count();
    assert_eq!(count("canaryd_rollout_phase"), 6, "{lines:?}");
    assert_eq!(count("canaryd_canary_weight"), 1, "{lines:?}");
}
