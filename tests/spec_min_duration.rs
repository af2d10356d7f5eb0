//! Early success in the deploy file: `min_duration` on a step, what it reads
//! as, and every way to get it wrong reported where it is written, with a hint.

use std::time::Duration;

use canaryd::spec::decode::{Decoded, decode};
use canaryd::spec::diagnostic::{Code, Diagnostic, Severity};
use canaryd::spec::policy::PolicySet;

const SEED_FILE: &str = include_str!("../deploy/checkout.yaml");

/// The seed file with `from` replaced by `to` (which must be found).
fn edited(from: &str, to: &str) -> Decoded {
    assert!(SEED_FILE.contains(from), "{from:?} is in the seed file");
    decode(
        "checkout.yaml",
        &SEED_FILE.replacen(from, to, 1),
        &PolicySet::builtin(),
    )
}

fn with_step1(line: &str) -> Decoded {
    edited(
        "      duration: 10m\n",
        &format!("      duration: 10m\n      {line}\n"),
    )
}

fn only(decoded: &Decoded, severity: Severity) -> &Diagnostic {
    let found: Vec<&Diagnostic> = decoded
        .diagnostics
        .iter()
        .filter(|d| d.severity == severity)
        .collect();
    assert_eq!(found.len(), 1, "{:#?}", decoded.diagnostics);
    found[0]
}

#[test]
fn min_duration_reads_as_the_least_time_a_step_is_watched_and_is_absent_by_default() {
    let spec = with_step1("min_duration: 2m30s").spec.expect("valid");
    let steps = &spec.strategy.steps;
    assert_eq!(steps[0].min_duration, Some(Duration::from_secs(150)));
    assert_eq!(steps[0].duration, Some(Duration::from_secs(600)));
    assert_eq!(steps[1].min_duration, None);
    let plain = decode("checkout.yaml", SEED_FILE, &PolicySet::builtin())
        .spec
        .expect("valid");
    assert!(
        plain
            .strategy
            .steps
            .iter()
            .all(|s| s.min_duration.is_none())
    );
}

#[test]
fn min_duration_equal_to_the_duration_or_zero_is_accepted() {
    for value in ["10m", "0s"] {
        let decoded = with_step1(&format!("min_duration: {value}"));
        assert!(
            decoded.spec.is_some(),
            "{value}: {:#?}",
            decoded.diagnostics
        );
        assert!(decoded.diagnostics.is_empty(), "{value}");
    }
}

#[test]
fn a_min_duration_longer_than_the_duration_is_refused_with_the_most_it_may_be() {
    let decoded = with_step1("min_duration: 15m");
    assert!(decoded.spec.is_none());
    let d = only(&decoded, Severity::Error);
    assert_eq!(d.code, Code::OutOfRange);
    assert_eq!((d.line, d.column), (16, 7));
    assert_eq!(
        d.message,
        "step 1's `min_duration` (15m) is longer than its `duration` (10m)"
    );
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.ends_with("make `min_duration` at most 10m")),
        "{:?}",
        d.hint
    );
}

#[test]
fn a_min_duration_on_a_step_without_promotion_gates_is_refused() {
    let decoded = edited(
        "      duration: 20m\n",
        "      duration: 20m\n      min_duration: 5m\n",
    );
    assert!(decoded.spec.is_none());
    let d = only(&decoded, Severity::Error);
    assert_eq!(d.code, Code::MissingKey);
    assert_eq!(
        d.message,
        "step 2 has a `min_duration` but no promotion gates"
    );
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("add `metrics:`"))
    );
}

#[test]
fn a_min_duration_on_a_last_step_without_a_duration_is_refused() {
    let decoded = edited(
        "    - deploy: 100%\n",
        "    - deploy: 100%\n      min_duration: 1m\n      metrics:\n        - error_rate_less_than: 1%\n",
    );
    assert!(decoded.spec.is_none());
    let d = only(&decoded, Severity::Error);
    assert_eq!(d.code, Code::MissingDuration);
    assert_eq!(d.message, "step 3 has a `min_duration` but no `duration`");
}

#[test]
fn a_min_duration_that_is_not_a_duration_is_refused_like_any_duration() {
    let decoded = with_step1("min_duration: 2 minutes");
    let d = only(&decoded, Severity::Error);
    assert_eq!(d.code, Code::BadValue);
    assert_eq!(d.message, "`2 minutes` is not a duration");
    let decoded = with_step1("min_duration: 120");
    let d = only(&decoded, Severity::Error);
    assert_eq!(d.message, "`min_duration` `120` has no unit");
    assert_eq!(
        d.hint.as_deref(),
        Some("add a unit: `120s` or `120m` (units: ms, s, m, h)")
    );
}

#[test]
fn a_misspelt_min_duration_is_an_unknown_key_with_a_suggestion() {
    let decoded = with_step1("min_duraton: 2m");
    let d = only(&decoded, Severity::Error);
    assert_eq!(d.code, Code::UnknownKey);
    assert!(
        d.hint
            .as_deref()
            .is_some_and(|h| h.contains("min_duration")),
        "{:?}",
        d.hint
    );
}

#[test]
fn a_min_duration_with_a_gate_on_single_readings_is_accepted_with_a_warning() {
    let decoded = edited(
        "      duration: 10m\n      metrics:\n",
        "      duration: 10m\n      min_duration: 2m\n      metrics:\n        - queue_depth_less_than: 100\n          query: sum(queue_depth{service=\"{{service}}\", version=\"{{version}}\"})\n",
    );
    assert!(decoded.spec.is_some(), "{:#?}", decoded.diagnostics);
    let d = only(&decoded, Severity::Warning);
    assert_eq!(d.code, Code::NoEarlySuccess);
    assert_eq!(
        d.message,
        "step 1's `min_duration` cannot take effect: `queue_depth < 100` is judged on single readings, which are never conclusive evidence"
    );
}
