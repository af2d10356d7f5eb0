//! `canaryd check FILE`: measures every gate of a deploy file once, now, on
//! both tracks, and prints value, threshold, verdict and the rendered PromQL,
//! so a developer can try their gates before a real rollout.
//!
//! Exit codes: 0 every query returned data; 1 the file is invalid or no
//! Prometheus is known; 3 at least one reading is inconclusive.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Output, policy_dir};
use crate::engine::observation::{GateRef, Measurement, Reading};
use crate::engine::time::Timestamp;
use crate::engine::verdict::{Verdict, judge_reading};
use crate::provider::{
    Answers, Batch, MetricsSource, PrometheusSource, ProviderConfig, every_gate, plan_rollout,
    redact_url,
};
use crate::spec::load::{load_deploy_files, load_policies};
use crate::spec::model::DeploySpec;
use crate::spec::units::format_duration;

/// The environment variable naming Prometheus when neither flag nor file does.
pub const PROMETHEUS_ENV: &str = "CANARYD_PROMETHEUS_URL";

#[derive(Serialize)]
struct TrackRow {
    track: &'static str,
    version: String,
    value: Option<f64>,
    shown: String,
    requests: Option<f64>,
    verdict: String,
    query: String,
}

#[derive(Serialize)]
struct GateRow {
    gate: GateRef,
    /// `step 1` or `rollback`.
    scope: String,
    name: String,
    threshold: String,
    tracks: Vec<TrackRow>,
}

#[derive(Serialize)]
struct Report {
    rollout: String,
    prometheus: String,
    window: String,
    at: Timestamp,
    all_data: bool,
    gates: Vec<GateRow>,
    /// Gates judged on counts, as a rollout judges them.
    evidence: Vec<super::check_evidence::EvidenceRow>,
    /// Latency gates the histogram Prometheus returns judges coarsely: a
    /// threshold far from the bounds it is judged at, or beyond them all.
    warnings: Vec<super::latency_bounds::Finding>,
}

/// Runs the command.
pub fn run(
    file: &Path,
    policies: Option<&Path>,
    prometheus: Option<String>,
    timeout: Duration,
    output: Output,
) -> ExitCode {
    let (policies, problems) = load_policies(policy_dir(policies));
    let mut stderr = std::io::stderr().lock();
    for (path, text, diags) in &problems {
        for d in diags {
            let _ = writeln!(stderr, "{}", d.render(Some(text)));
        }
        let _ = writeln!(stderr, "error: policy {} is invalid", path.display());
    }
    let files = load_deploy_files(&[PathBuf::from(file)], &policies);
    let Some(loaded) = files.first() else {
        return ExitCode::FAILURE;
    };
    for d in &loaded.decoded.diagnostics {
        let _ = writeln!(stderr, "{}", d.render(Some(&loaded.text)));
    }
    let (Some(spec), true) = (&loaded.decoded.spec, loaded.is_valid()) else {
        let _ = writeln!(
            stderr,
            "error: {} is invalid; nothing measured",
            loaded.display()
        );
        return ExitCode::FAILURE;
    };
    let Some(server) = prometheus
        .or_else(|| spec.prometheus.clone())
        .or_else(|| std::env::var(PROMETHEUS_ENV).ok())
    else {
        let _ = writeln!(
            stderr,
            "error: no Prometheus to ask: pass --prometheus URL, set `prometheus:` in {}, or set {PROMETHEUS_ENV}",
            loaded.display()
        );
        return ExitCode::FAILURE;
    };
    drop(stderr);

    let report = match measure(spec, &policies, &server, timeout) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = match output {
        Output::Json => serde_json::to_writer_pretty(&mut out, &report)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
        Output::Text => write_text(&mut out, &report, spec.strategy.analysis.window, spec),
    };
    match (written, report.all_data) {
        (Err(_), _) => ExitCode::from(2),
        (Ok(()), true) => ExitCode::SUCCESS,
        (Ok(()), false) => ExitCode::from(3),
    }
}

fn measure(
    spec: &DeploySpec,
    policies: &crate::spec::policy::PolicySet,
    server: &str,
    timeout: Duration,
) -> Result<Report, String> {
    let mut spec = spec.clone();
    spec.prometheus = Some(server.to_string());
    let gates = every_gate(&spec);
    let mut batch = Batch::new();
    let plan =
        plan_rollout(&mut batch, &spec, policies, None, &gates).map_err(|e| e.to_string())?;
    let counts = super::check_evidence::plan(&mut batch, &spec, policies).transpose()?;
    let source = PrometheusSource::new(ProviderConfig {
        timeout,
        ..ProviderConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let at = Timestamp::from_system(SystemTime::now());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let queries = batch.queries();
    let answers = Answers::new(&batch, runtime.block_on(source.query_batch(&queries, at)));
    let measurements = plan.measurements(&answers);
    let rows: Vec<GateRow> = measurements.iter().filter_map(|m| row(&spec, m)).collect();
    let (evidence, warnings) = match &counts {
        Some(counts) => {
            // The same counters one window earlier: the increments between.
            let window = spec.strategy.analysis.window;
            let before =
                Timestamp::from_millis(at.millis().saturating_sub(window.as_millis() as u64));
            let earlier = Answers::new(
                &batch,
                runtime.block_on(source.query_batch(&queries, before)),
            );
            let bounds = super::check_evidence::live_bounds(counts, &answers);
            (
                super::check_evidence::judge(&spec, counts, &earlier, &answers, at),
                super::latency_bounds::live(&spec, &bounds),
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    let all_data = rows
        .iter()
        .flat_map(|g| &g.tracks)
        .all(|t| t.value.is_some() && !t.verdict.starts_with("inconclusive"))
        && !super::check_evidence::inconclusive(&evidence);
    Ok(Report {
        rollout: spec.id.to_string(),
        prometheus: redact_url(server),
        window: format_duration(spec.strategy.analysis.window),
        at,
        all_data,
        gates: rows,
        evidence,
        warnings,
    })
}

fn row(spec: &DeploySpec, m: &Measurement) -> Option<GateRow> {
    let gate = m.gate.resolve(spec)?;
    let analysis = &spec.strategy.analysis;
    let stable_value = m
        .stable
        .as_ref()
        .and_then(|s| s.value.as_ref().ok().copied());
    let track = |name: &'static str, version: &str, reading: &Reading| {
        let alone = Measurement {
            gate: m.gate,
            canary: reading.clone(),
            stable: None,
        };
        let mut plain = gate.clone();
        plain.limit = match gate.limit.against(stable_value) {
            Some(v) => crate::spec::model::Limit::Fixed(threshold_in(gate.unit, v)),
            None => gate.limit,
        };
        let judged = judge_reading(m.gate, &plain, Some(&alone), analysis, true);
        let verdict = verdict_word(&judged.verdict, m.gate);
        TrackRow {
            track: name,
            version: version.to_string(),
            value: judged.value,
            shown: judged.shown,
            requests: reading.requests,
            verdict,
            query: reading.query.clone(),
        }
    };
    let mut tracks = vec![track("canary", &spec.canary.version, &m.canary)];
    if let Some(stable) = &m.stable {
        tracks.push(track("stable", &spec.stable.version, stable));
    }
    Some(GateRow {
        gate: m.gate,
        scope: match m.gate {
            GateRef::Abort(_) => "rollback".to_string(),
            GateRef::Promotion { step, .. } => format!("step {}", step + 1),
        },
        name: gate.to_string(),
        threshold: gate.limit.to_string(),
        tracks,
    })
}

/// A threshold of `value` in `unit`.
fn threshold_in(unit: crate::spec::policy::Unit, value: f64) -> crate::spec::units::Threshold {
    use crate::spec::policy::Unit;
    use crate::spec::units::Threshold;
    match unit {
        Unit::Ratio => Threshold::Ratio(value),
        Unit::Seconds => Threshold::Latency(Duration::from_secs_f64(value.max(0.0))),
        Unit::PerSecond | Unit::Number => Threshold::Number(value),
    }
}

/// How `check` words a verdict.
pub(super) fn verdict_word(v: &Verdict, gate: GateRef) -> String {
    match (v, gate) {
        (Verdict::Pass, GateRef::Abort(_)) => "ok".to_string(),
        (Verdict::Fail, GateRef::Abort(_)) => "BREACH".to_string(),
        (Verdict::Pass, GateRef::Promotion { .. }) => "pass".to_string(),
        (Verdict::Fail, GateRef::Promotion { .. }) => "FAIL".to_string(),
        (Verdict::Undecided, _) => "undecided".to_string(),
        (Verdict::Inconclusive { reason }, _) => format!("inconclusive: {reason}"),
    }
}

fn write_text(
    out: &mut impl Write,
    r: &Report,
    window: Duration,
    spec: &DeploySpec,
) -> std::io::Result<()> {
    writeln!(
        out,
        "rollout {} — Prometheus {} — window {} — at {}\n",
        r.rollout, r.prometheus, r.window, r.at
    )?;
    let header = [
        "GATE",
        "TRACK",
        "VERSION",
        "VALUE",
        "REQUESTS",
        "THRESHOLD",
        "VERDICT",
        "QUERY",
    ];
    let mut lines: Vec<[String; 8]> = vec![header.map(String::from)];
    for g in &r.gates {
        for (i, t) in g.tracks.iter().enumerate() {
            let gate = if i == 0 {
                format!("{}: {}", g.scope, g.name)
            } else {
                String::new()
            };
            let requests = t.requests.map_or("-".to_string(), |n| format!("{n:.0}"));
            lines.push([
                gate,
                t.track.to_string(),
                t.version.clone(),
                t.shown.clone(),
                requests,
                g.threshold.clone(),
                t.verdict.clone(),
                t.query.clone(),
            ]);
        }
    }
    let mut widths = [0usize; 8];
    for l in &lines {
        for (w, cell) in widths.iter_mut().zip(l) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for l in &lines {
        let mut text = String::new();
        for (i, cell) in l.iter().enumerate() {
            if i == 7 {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        writeln!(out, "{}", text.trim_end())?;
    }
    if !r.evidence.is_empty() {
        super::check_evidence::write_text(out, &r.evidence, window, spec)?;
    }
    if !r.warnings.is_empty() {
        writeln!(out)?;
    }
    for w in &r.warnings {
        writeln!(out, "warning: {}\n  hint: {}", w.message, w.hint)?;
    }
    writeln!(out)?;
    if r.all_data {
        writeln!(out, "every query returned data")
    } else {
        writeln!(
            out,
            "some readings are inconclusive: a rollout would hold at these gates (see VERDICT)"
        )
    }
}
