//! The evidence half of `canaryd check`: the tracks' counters read at the
//! start and the end of the window, judged by the engine's own evidence
//! rules as if the window were a step, with how long each promotion gate
//! would need for a verdict at its step's weight at today's traffic.

use std::time::Duration;

use serde::Serialize;

use crate::engine::evidence::{self, Evidence, EvidenceSummary, TickContext};
use crate::engine::observation::{CountsNeeded, GateRef, Observation};
use crate::engine::time::Timestamp;
use crate::provider::{Answers, Batch, CountsPlan, plan_counts};
use crate::spec::model::DeploySpec;
use crate::spec::policy::PolicySet;
use crate::spec::units::format_duration;

/// One evidence gate as `check` reports it.
#[derive(Serialize)]
pub struct EvidenceRow {
    /// Which gate.
    pub gate: GateRef,
    /// `step 1` or `rollback`.
    pub scope: String,
    /// `error_rate < 1%`.
    pub name: String,
    /// `pass`, `FAIL`, `BREACH`, `ok`, `undecided`, `inconclusive: …`.
    pub verdict: String,
    /// What the verdict rests on.
    pub evidence: Option<EvidenceSummary>,
    /// About how long a verdict would take at the step's weight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_verdict_seconds: Option<f64>,
    /// The PromQL counted.
    pub query: String,
}

/// The count queries of `spec`, planned for one instant.
pub fn plan(
    batch: &mut Batch,
    spec: &DeploySpec,
    policies: &PolicySet,
) -> Option<Result<CountsPlan, String>> {
    let needed = needed(spec)?;
    Some(plan_counts(batch, spec, policies, None, needed).map_err(|e| e.to_string()))
}

/// The counters `spec`'s evidence gates read (all of its gates).
fn needed(spec: &DeploySpec) -> Option<CountsNeeded> {
    let mut needed = None;
    for g in spec
        .strategy
        .rollback
        .on
        .iter()
        .chain(spec.strategy.steps.iter().flat_map(|s| &s.gates))
    {
        match g.judged {
            crate::spec::model::Judged::Errors => {
                needed.get_or_insert(CountsNeeded::default()).errors = true;
            }
            crate::spec::model::Judged::Quantile { .. } => {
                needed
                    .get_or_insert(CountsNeeded::default())
                    .latency_buckets = true;
            }
            crate::spec::model::Judged::Reading => {}
        }
    }
    needed
}

/// Judges every evidence gate of `spec` on the counts between `before` (the
/// answers at `at − window`) and `after` (at `at`).
pub fn judge(
    spec: &DeploySpec,
    plan: &CountsPlan,
    before: &Answers,
    after: &Answers,
    at: Timestamp,
) -> Vec<EvidenceRow> {
    let window = spec.strategy.analysis.window;
    let since = Timestamp::from_millis(at.millis().saturating_sub(window.as_millis() as u64));
    let observe = |answers: &Answers| Observation {
        canary_ready: true,
        measurements: Vec::new(),
        counts: Some(plan.reading(answers)),
    };
    let start = observe(before);
    let end = observe(after);
    let mut ev = Evidence::default();
    ev.baseline(&start);
    let gates: Vec<GateRef> = crate::provider::every_gate(spec)
        .into_iter()
        .filter(|g| g.resolve(spec).is_some_and(|g| g.judged.on_evidence()))
        .collect();
    let tick = TickContext {
        now: at,
        since,
        had_traffic: true,
    };
    let results = evidence::judge_all(&mut ev, spec, &gates, &end, &tick);
    // Both tracks' requests per second over the window: the traffic a step's
    // weight takes its share of.
    let total = ev.step_canary.requests + ev.step_stable.requests;
    let per_second = total / window.as_secs_f64().max(1.0);
    results
        .into_iter()
        .map(|r| {
            let weight = match r.gate {
                GateRef::Promotion { step, .. } => spec.strategy.steps.get(step),
                GateRef::Abort(_) => spec.strategy.steps.first(),
            }
            .map_or(1.0, |s| s.weight.percent() / 100.0);
            let time = r
                .evidence
                .as_ref()
                .and_then(|e| e.more_requests)
                .filter(|_| matches!(r.gate, GateRef::Promotion { .. }))
                .filter(|_| per_second * weight > 0.0)
                .map(|more| more / (per_second * weight));
            EvidenceRow {
                gate: r.gate,
                scope: match r.gate {
                    GateRef::Abort(_) => "rollback".to_string(),
                    GateRef::Promotion { step, .. } => format!("step {}", step + 1),
                },
                name: r.name.clone(),
                verdict: super::check::verdict_word(&r.verdict, r.gate),
                evidence: r.evidence.map(|e| *e),
                time_to_verdict_seconds: time,
                query: r.query,
            }
        })
        .collect()
}

/// The finite histogram bounds (seconds) Prometheus returns now: the
/// canary's, else the stable version's; none without a histogram.
pub fn live_bounds(plan: &CountsPlan, answers: &Answers) -> Vec<f64> {
    let reading = plan.reading(answers);
    [reading.canary, reading.stable]
        .into_iter()
        .filter_map(|t| t.snapshot.ok())
        .map(|s| evidence::counts::bounds(&s.buckets))
        .find(|b| !b.is_empty())
        .unwrap_or_default()
}

/// Whether a row could not be judged (a rollout would hold there).
pub fn inconclusive(rows: &[EvidenceRow]) -> bool {
    rows.iter().any(|r| r.verdict.starts_with("inconclusive"))
}

/// The text table.
pub fn write_text(
    out: &mut impl std::io::Write,
    rows: &[EvidenceRow],
    window: Duration,
    spec: &DeploySpec,
) -> std::io::Result<()> {
    writeln!(
        out,
        "\nevidence over the last {} (how a rollout judges: counts, anytime-valid, {} confidence)\n",
        format_duration(window),
        crate::engine::evidence::confidence(spec.strategy.analysis.confidence)
    )?;
    let mut lines = vec![[
        "GATE".to_string(),
        "VERDICT".to_string(),
        "EVIDENCE".to_string(),
        "TIME TO A VERDICT".to_string(),
    ]];
    for r in rows {
        let time = match (&r.evidence, r.time_to_verdict_seconds) {
            (_, Some(s)) => {
                let weight = match r.gate {
                    GateRef::Promotion { step, .. } => spec
                        .strategy
                        .steps
                        .get(step)
                        .map(|s| s.weight.to_string())
                        .unwrap_or_default(),
                    GateRef::Abort(_) => String::new(),
                };
                format!(
                    "~{} at {weight} of today's traffic",
                    format_duration(
                        Duration::from_secs(s.ceil() as u64).max(Duration::from_secs(1))
                    )
                )
            }
            (Some(e), None) if r.verdict == "undecided" && e.more_requests.is_none() => {
                "not on its way to a pass".to_string()
            }
            _ => "-".to_string(),
        };
        lines.push([
            format!("{}: {}", r.scope, r.name),
            r.verdict.clone(),
            r.evidence
                .as_ref()
                .map_or_else(|| "-".to_string(), |e| e.to_string()),
            time,
        ]);
    }
    let mut widths = [0usize; 4];
    for l in &lines {
        for (w, cell) in widths.iter_mut().zip(l) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for l in &lines {
        let text = format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            l[0],
            l[1],
            l[2],
            l[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        writeln!(out, "{}", text.trim_end())?;
    }
    Ok(())
}
