//! Delivery metrics computed from hand-built decision logs: deployment
//! frequency, change failure rate, time to restore and lead time, per
//! rollout and overall, with the edge cases a platform team meets (nothing
//! finished, a rollout in flight, retries, superseded versions, attempts
//! across the period's edges); and the store's read of a period.

mod common;

use canaryd::delivery::{End, Period, report};
use canaryd::engine::evidence::{Counted, EvidenceSummary, Method};
use canaryd::engine::{
    Action, DecisionRecord, GateRef, GateResult, Phase, Reason, Timestamp, TrackKind, Verdict,
};
use canaryd::spec::model::RolloutId;
use canaryd::spec::units::Weight;
use canaryd::store::PeriodLog;
use canaryd::store::{Change, SqliteStore};

/// 2026-11-02T00:00:00Z, a Monday.
const DAY0: u64 = 1_793_577_600_000;
const MIN: u64 = 60_000;
const DAY: u64 = 24 * 60 * MIN;

fn at(day: u64, minutes: u64) -> Timestamp {
    Timestamp::from_millis(DAY0 + day * DAY + minutes * MIN)
}

fn id(name: &str) -> RolloutId {
    RolloutId {
        namespace: "shop".into(),
        name: name.into(),
    }
}

/// A log being written for one rollout.
struct Log {
    id: RolloutId,
    records: Vec<(RolloutId, DecisionRecord)>,
}

impl Log {
    fn new(name: &str) -> Log {
        Log {
            id: id(name),
            records: Vec::new(),
        }
    }

    fn push(&mut self, when: Timestamp, version: &str, action: Action, detail: Reason) -> &mut Log {
        self.push_gates(when, version, action, detail, Vec::new())
    }

    fn push_gates(
        &mut self,
        when: Timestamp,
        version: &str,
        action: Action,
        detail: Reason,
        gates: Vec<GateResult>,
    ) -> &mut Log {
        let to = match action {
            Action::Promote => Phase::Promoted,
            Action::Rollback => Phase::RolledBack,
            Action::Abort => Phase::Aborted,
            Action::Pause => Phase::Paused,
            _ => Phase::Progressing,
        };
        let seq = self.records.len() as u64 + 1;
        self.records.push((
            self.id.clone(),
            DecisionRecord {
                seq,
                at: when,
                from: Phase::Progressing,
                to,
                action,
                reason: detail.to_string(),
                detail,
                step: 1,
                weight: Weight::ZERO,
                stable_version: "v1".into(),
                canary_version: version.into(),
                gates,
                shadow: false,
                by: None,
            },
        ));
        self
    }

    fn start(&mut self, when: Timestamp, version: &str) -> &mut Log {
        let detail = Reason::NewVersion {
            version: version.into(),
        };
        self.push(when, version, Action::Start, detail)
    }

    fn advance(&mut self, when: Timestamp, version: &str) -> &mut Log {
        self.push(
            when,
            version,
            Action::Advance,
            Reason::StepPassed { step: 1 },
        )
    }

    fn promote(&mut self, when: Timestamp, version: &str) -> &mut Log {
        self.push(
            when,
            version,
            Action::Promote,
            Reason::StepPassed { step: 3 },
        )
    }

    /// A rollback on an abort condition judged by a change detector whose
    /// evidence starts at `since`.
    fn rollback_detected(&mut self, when: Timestamp, version: &str, since: Timestamp) -> &mut Log {
        let gate = breach(since, Method::Detector);
        self.push_gates(when, version, Action::Rollback, abort_reason(), vec![gate])
    }

    /// A failed promotion gate below its limit (a hold).
    fn failed_check(&mut self, when: Timestamp, version: &str) -> &mut Log {
        let detail = Reason::PromotionGate {
            gate: "error_rate < 1%".into(),
            value: "1.4%".into(),
            threshold: "1%".into(),
            failures: 1,
            limit: 3,
            evidence: None,
        };
        self.push(when, version, Action::Hold, detail)
    }

    fn rollback_on_limit(&mut self, when: Timestamp, version: &str) -> &mut Log {
        let detail = Reason::PromotionGate {
            gate: "error_rate < 1%".into(),
            value: "1.4%".into(),
            threshold: "1%".into(),
            failures: 3,
            limit: 3,
            evidence: None,
        };
        self.push(when, version, Action::Rollback, detail)
    }

    fn manual(&mut self, when: Timestamp, version: &str, action: Action) -> &mut Log {
        let command = match action {
            Action::Retry => canaryd::engine::Command::Retry,
            _ => canaryd::engine::Command::Abort,
        };
        self.push(when, version, action, Reason::Manual { command })
    }
}

fn abort_reason() -> Reason {
    Reason::AbortCondition {
        gate: "error_rate > 2%".into(),
        value: "30%".into(),
        threshold: "2%".into(),
        breaches: 1,
        limit: 1,
        evidence: Some("30% errors over 400 requests".into()),
    }
}

fn breach(since: Timestamp, method: Method) -> GateResult {
    GateResult {
        gate: GateRef::Abort(0),
        name: "error_rate > 2%".into(),
        track: TrackKind::Canary,
        query: String::new(),
        value: Some(0.3),
        shown: "30%".into(),
        stable_value: None,
        threshold: "2%".into(),
        verdict: Verdict::Fail,
        evidence: Some(Box::new(EvidenceSummary {
            method,
            since,
            counted: Counted::Errors,
            events: 120.0,
            requests: 400.0,
            stable_events: 1.0,
            stable_requests: 4000.0,
            estimate: Some(0.3),
            bound: None,
            limit: Some(0.02),
            log_e: 9.0,
            log_needed: 8.0,
            more_requests: None,
        })),
    }
}

fn all(logs: &[&Log]) -> Vec<(RolloutId, DecisionRecord)> {
    logs.iter().flat_map(|l| l.records.clone()).collect()
}

fn week() -> Period {
    Period::new(at(0, 0), at(7, 0)).expect("a week")
}

#[test]
fn a_period_where_nothing_finished_has_no_failure_rate_and_zero_deployments() {
    let mut log = Log::new("checkout");
    log.start(at(1, 0), "v2").failed_check(at(1, 5), "v2");
    let r = report(&all(&[&log]), week());
    assert_eq!(r.overall.finished, 0);
    assert_eq!(r.overall.change_failure_rate, None);
    assert_eq!(r.overall.deployments_per_day, 0.0);
    assert_eq!(r.overall.time_to_restore.count, 0);
    assert_eq!(r.overall.time_to_restore.median_seconds, None);
    assert_eq!(r.overall.lead_time.median_seconds, None);
    // The rollout in flight is counted as such, and as started.
    assert_eq!((r.overall.in_flight, r.overall.started), (1, 1));
    assert_eq!(r.rollouts.len(), 1);
    assert_eq!(r.daily.len(), 7);
    assert!(r.attempts.is_empty());

    let empty = report(&[], week());
    assert_eq!(empty.overall.change_failure_rate, None);
    assert!(empty.rollouts.is_empty());
}

#[test]
fn the_four_figures_per_rollout_and_overall() {
    let mut checkout = Log::new("checkout");
    checkout
        .start(at(0, 60), "v2")
        .advance(at(0, 70), "v2")
        .promote(at(0, 90), "v2") // lead time 30 min
        .start(at(2, 0), "v3")
        .rollback_detected(at(2, 20), "v3", at(2, 17)) // restored 3 min after the fault's evidence
        .start(at(3, 0), "v4")
        .promote(at(3, 50), "v4"); // 50 min
    let mut payments = Log::new("payments");
    payments
        .start(at(4, 0), "p2")
        .promote(at(4, 10), "p2") // 10 min
        .start(at(5, 0), "p3")
        .manual(at(5, 5), "p3", Action::Abort);
    let r = report(&all(&[&checkout, &payments]), week());

    let o = &r.overall;
    assert_eq!(
        (o.promoted, o.rolled_back, o.aborted, o.finished),
        (3, 1, 1, 5)
    );
    assert!((o.deployments_per_day - 3.0 / 7.0).abs() < 1e-12);
    assert_eq!(o.change_failure_rate, Some(0.2));
    assert_eq!(o.time_to_restore.median_seconds, Some(180.0));
    assert_eq!(o.lead_time.count, 3);
    assert_eq!(o.lead_time.median_seconds, Some(30.0 * 60.0));
    assert_eq!(o.lead_time.mean_seconds, Some(30.0 * 60.0));
    assert_eq!(o.lead_time.max_seconds, Some(50.0 * 60.0));

    let c = &r.rollouts[0];
    assert_eq!(c.rollout, "shop/checkout");
    assert_eq!(c.figures.change_failure_rate, Some(1.0 / 3.0));
    assert!((c.figures.deployments_per_day - 2.0 / 7.0).abs() < 1e-12);
    assert_eq!(c.figures.lead_time.median_seconds, Some(40.0 * 60.0));
    let p = &r.rollouts[1];
    assert_eq!(p.rollout, "shop/payments");
    assert_eq!(p.figures.change_failure_rate, Some(0.0));
    assert_eq!(p.figures.time_to_restore.count, 0);

    // One entry per day, by the day each attempt ended.
    let days: Vec<(u64, u64, u64)> = r
        .daily
        .iter()
        .map(|d| (d.promoted, d.rolled_back, d.aborted))
        .collect();
    assert_eq!(
        days,
        [
            (1, 0, 0),
            (0, 0, 0),
            (0, 1, 0),
            (1, 0, 0),
            (1, 0, 0),
            (0, 0, 1),
            (0, 0, 0)
        ]
    );
    assert_eq!(r.daily[0].day, "2026-11-02");
    // The attempts behind the figures, in the order they ended.
    let ends: Vec<End> = r.attempts.iter().map(|a| a.attempt.end).collect();
    assert_eq!(
        ends,
        [
            End::Promoted,
            End::RolledBack,
            End::Promoted,
            End::Promoted,
            End::Aborted
        ]
    );
    assert_eq!(r.attempts[1].time_to_restore_seconds, Some(180.0));
}

#[test]
fn time_to_restore_without_detector_evidence_runs_from_the_first_failing_record() {
    let mut log = Log::new("checkout");
    log.start(at(1, 0), "v2")
        .failed_check(at(1, 4), "v2") // the fault's first sign in step 1 …
        .advance(at(1, 10), "v2") // … but step 1 passed: it was not the fault
        .failed_check(at(1, 12), "v2")
        .failed_check(at(1, 13), "v2")
        .rollback_on_limit(at(1, 15), "v2");
    let r = report(&all(&[&log]), week());
    assert_eq!(r.overall.time_to_restore.median_seconds, Some(180.0));
    assert_eq!(r.attempts[0].attempt.fault_at, Some(at(1, 12)));

    // A rollback on its first failure is restored at once.
    let mut sudden = Log::new("search");
    sudden
        .start(at(2, 0), "s2")
        .rollback_on_limit(at(2, 1), "s2");
    let r = report(&all(&[&sudden]), week());
    assert_eq!(r.overall.time_to_restore.median_seconds, Some(0.0));
}

#[test]
fn a_retried_version_is_a_failure_then_a_deployment_whose_lead_time_includes_the_failure() {
    let mut log = Log::new("checkout");
    log.start(at(1, 0), "v2")
        .rollback_detected(at(1, 10), "v2", at(1, 8))
        .manual(at(1, 40), "v2", Action::Retry)
        .promote(at(1, 60), "v2");
    let r = report(&all(&[&log]), week());
    let o = &r.overall;
    assert_eq!(
        (o.started, o.promoted, o.rolled_back, o.finished),
        (2, 1, 1, 2)
    );
    assert_eq!(o.change_failure_rate, Some(0.5));
    // From the version's first start, not the retry's.
    assert_eq!(o.lead_time.median_seconds, Some(3600.0));
    assert_eq!(o.time_to_restore.median_seconds, Some(120.0));
    assert_eq!(r.attempts[1].attempt.started, Some(at(1, 40)));
}

#[test]
fn a_superseded_version_is_not_finished_and_the_new_one_counts_from_its_own_start() {
    let mut log = Log::new("checkout");
    log.start(at(1, 0), "v2").push(
        at(1, 5),
        "v2",
        Action::Supersede,
        Reason::Superseded {
            old: "v2".into(),
            new: "v3".into(),
        },
    );
    log.start(at(1, 5), "v3").promote(at(1, 25), "v3");
    let r = report(&all(&[&log]), week());
    let o = &r.overall;
    assert_eq!((o.superseded, o.promoted, o.finished), (1, 1, 1));
    assert_eq!(o.change_failure_rate, Some(0.0));
    assert_eq!(o.lead_time.median_seconds, Some(1200.0));
}

#[test]
fn attempts_count_in_the_period_they_ended_and_later_records_are_ignored() {
    let mut log = Log::new("checkout");
    log.start(at(0, 0), "v1")
        .promote(at(0, 30), "v1") // before the period
        .start(at(1, 23 * 60), "v2") // started before the period …
        .promote(at(2, 30), "v2") // … promoted in it: lead time 90 min
        .start(at(3, 0), "v3")
        .rollback_detected(at(4, 1), "v3", at(4, 0)); // after the period: in flight at its end
    let period = Period::new(at(2, 0), at(4, 0)).expect("two days");
    let r = report(&all(&[&log]), period);
    let o = &r.overall;
    assert_eq!(
        (o.promoted, o.rolled_back, o.started, o.in_flight),
        (1, 0, 1, 1)
    );
    assert_eq!(o.lead_time.median_seconds, Some(90.0 * 60.0));
    assert_eq!(o.deployments_per_day, 0.5);
    assert_eq!(r.daily.len(), 2);
}

#[test]
fn an_even_number_of_durations_has_the_middle_two_as_median() {
    let mut log = Log::new("checkout");
    for (day, minutes) in [(1, 10), (2, 20), (3, 40), (4, 80)] {
        let v = format!("v{day}");
        log.start(at(day, 0), &v).promote(at(day, minutes), &v);
    }
    let r = report(&all(&[&log]), week());
    assert_eq!(r.overall.lead_time.median_seconds, Some(30.0 * 60.0));
    assert_eq!(r.overall.lead_time.mean_seconds, Some(37.5 * 60.0));
}

#[test]
fn a_period_must_run_forward() {
    assert!(Period::new(at(1, 0), at(1, 0)).is_err());
    assert!(Period::new(at(2, 0), at(1, 0)).is_err());
    assert!(Period::new(at(0, 0), at(0, 1)).is_ok());
}

#[test]
fn the_store_reads_a_period_with_the_start_of_the_attempt_then_in_flight() {
    let store = SqliteStore::in_memory().expect("store");
    let mut log = Log::new("checkout");
    log.start(at(0, 0), "v1")
        .promote(at(0, 30), "v1")
        .start(at(1, 23 * 60), "v2")
        .advance(at(1, 23 * 60 + 30), "v2")
        .promote(at(2, 30), "v2")
        .start(at(5, 0), "v3");
    let mut other = Log::new("payments");
    other.start(at(0, 0), "p2").promote(at(0, 10), "p2");
    for (rid, r) in all(&[&log, &other]) {
        let mut state = canaryd::engine::RolloutState::new(
            &common::spec(common::SEED_FILE),
            Timestamp::from_millis(0),
        );
        state.decisions = r.seq;
        let change = Change {
            id: rid,
            state,
            records: vec![r.clone()],
            alerts: Vec::new(),
            deliveries: Vec::new(),
        };
        store.commit(&[change], r.at).expect("commit");
    }
    let read = store
        .decisions_between(at(2, 0), at(4, 0))
        .expect("read the period");
    let seqs: Vec<(String, u64)> = read.iter().map(|(i, r)| (i.name.clone(), r.seq)).collect();
    // v2's start (before the period) and advance come with its promotion;
    // v1's attempt, payments' and anything after the period do not.
    assert_eq!(
        seqs,
        [
            ("checkout".into(), 3),
            ("checkout".into(), 4),
            ("checkout".into(), 5)
        ]
    );
    let r = report(&read, Period::new(at(2, 0), at(4, 0)).expect("period"));
    assert_eq!(r.overall.lead_time.median_seconds, Some(90.0 * 60.0));
}
