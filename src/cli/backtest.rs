//! `canaryd backtest FILE --from T --to T`: would this strategy have rolled
//! back that release? Replays the deploy file's strategy on recorded
//! Prometheus history through the real engine (see [`crate::backtest`]) and
//! prints every decision it would have taken, with its reason and evidence,
//! then the outcome.
//!
//! Exit codes: 0 promoted, 1 rolled back, 3 still undecided at `--to`,
//! 2 the backtest could not run (invalid file or times, Prometheus error).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use super::check::{PROMETHEUS_ENV, verdict_word};
use super::{Output, duration, policy_dir};
use crate::backtest::{self, Outcome, PrometheusHistory, Replay, parse_time};
use crate::engine::Timestamp;
use crate::spec::load::{load_deploy_files, load_policies};

/// Flags of `canaryd backtest`.
#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// The deploy file whose strategy to replay.
    file: PathBuf,
    /// When the release began: RFC 3339 (`2026-11-24T10:00:00Z`), or before
    /// now (`-2h`, `now-90m`).
    #[arg(long, allow_hyphen_values = true)]
    from: String,
    /// The end of the history to replay (same forms; default now).
    #[arg(long, allow_hyphen_values = true, default_value = "now")]
    to: String,
    /// Prometheus holding the history, instead of the file's `prometheus:`
    /// (default: the file's, else $CANARYD_PROMETHEUS_URL).
    #[arg(long)]
    prometheus: Option<String>,
    /// The stable version in the history, instead of the file's `stable.version`.
    #[arg(long)]
    version_stable: Option<String>,
    /// The canary version in the history, instead of the file's `canary.version`.
    #[arg(long)]
    version_canary: Option<String>,
    /// A directory of extra metric policies (`*.yaml`).
    #[arg(long, env = "CANARYD_POLICY_DIR")]
    policies: Option<PathBuf>,
    /// How long each range query may take.
    #[arg(long, default_value = "30s", value_parser = duration)]
    timeout: Duration,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Output,
}

const CANNOT_RUN: u8 = 2;

/// Runs the command.
pub fn run(args: BacktestArgs) -> ExitCode {
    match prepare_and_replay(&args) {
        Ok((replay, steps)) => {
            let mut out = std::io::stdout().lock();
            let written = match args.output {
                Output::Json => serde_json::to_writer_pretty(&mut out, &replay)
                    .map_err(std::io::Error::other)
                    .and_then(|()| writeln!(out)),
                Output::Text => write_text(&mut out, &replay, steps),
            };
            match (written, &replay.outcome) {
                (Err(_), _) => ExitCode::from(CANNOT_RUN),
                (Ok(()), Outcome::Promoted { .. }) => ExitCode::SUCCESS,
                (Ok(()), Outcome::RolledBack { .. }) => ExitCode::FAILURE,
                (Ok(()), Outcome::Undecided { .. }) => ExitCode::from(3),
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(CANNOT_RUN)
        }
    }
}

fn prepare_and_replay(args: &BacktestArgs) -> Result<(Replay, usize), String> {
    let (policies, problems) = load_policies(policy_dir(args.policies.as_deref()));
    if let Some((path, text, diags)) = problems.first() {
        for d in diags {
            eprintln!("{}", d.render(Some(text)));
        }
        return Err(format!("policy {} is invalid", path.display()));
    }
    let files = load_deploy_files(std::slice::from_ref(&args.file), &policies);
    let loaded = files.first().ok_or("no deploy file")?;
    for d in &loaded.decoded.diagnostics {
        eprintln!("{}", d.render(Some(&loaded.text)));
    }
    let (Some(spec), true) = (&loaded.decoded.spec, loaded.is_valid()) else {
        return Err(format!("{} is invalid; nothing replayed", loaded.display()));
    };
    let mut spec = spec.clone();
    if let Some(v) = &args.version_stable {
        spec.stable.version = v.clone();
    }
    if let Some(v) = &args.version_canary {
        spec.canary.version = v.clone();
    }
    let server = args
        .prometheus
        .clone()
        .or_else(|| spec.prometheus.clone())
        .or_else(|| std::env::var(PROMETHEUS_ENV).ok())
        .ok_or_else(|| {
            format!(
                "no Prometheus to read history from: pass --prometheus URL, set `prometheus:` in {}, or set {PROMETHEUS_ENV}",
                loaded.display()
            )
        })?;
    spec.prometheus = Some(server);
    let now = Timestamp::from_system(SystemTime::now());
    let from = parse_time(&args.from, now).map_err(|e| format!("--from: {e}"))?;
    let to = parse_time(&args.to, now).map_err(|e| format!("--to: {e}"))?;
    let source = PrometheusHistory::new(args.timeout)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let replay = runtime
        .block_on(backtest::replay(&spec, &policies, None, &source, from, to))
        .map_err(|e| e.to_string())?;
    Ok((replay, spec.strategy.steps.len()))
}

fn write_text(out: &mut impl Write, r: &Replay, steps: usize) -> std::io::Result<()> {
    writeln!(
        out,
        "backtest {}: canary {} against stable {}, history from {}",
        r.rollout, r.canary_version, r.stable_version, r.prometheus
    )?;
    writeln!(
        out,
        "from {} to {}, a tick every {}",
        r.from,
        r.to,
        backtest::elapsed(r.interval_seconds)
    )?;
    writeln!(out, "note: {}\n", r.caveat)?;
    let rows: Vec<[String; 5]> = r
        .decisions
        .iter()
        .map(|d| {
            [
                d.at.to_string(),
                format!("+{}", backtest::elapsed(d.at.since(r.from).as_secs_f64())),
                d.action.to_string(),
                format!("{}/{steps}", d.step),
                d.weight.to_string(),
            ]
        })
        .collect();
    let header = ["TIME", "AFTER", "ACTION", "STEP", "WEIGHT"].map(String::from);
    let mut widths = [0usize; 5];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &[String; 5], last: &str| {
        let mut text = String::new();
        for (cell, w) in row.iter().zip(widths) {
            text.push_str(&format!("{cell:<w$}  "));
        }
        text.push_str(last);
        text
    };
    writeln!(out, "{}", line(&header, "REASON"))?;
    for (d, row) in r.decisions.iter().zip(&rows) {
        writeln!(out, "{}", line(row, &d.reason))?;
        for g in &d.gates {
            let shown = g
                .evidence
                .as_ref()
                .map_or_else(|| g.shown.clone(), |e| e.to_string());
            writeln!(
                out,
                "{:indent$}{}: {} — {shown}",
                "",
                g.name,
                verdict_word(&g.verdict, g.gate),
                indent = widths[0] + 2
            )?;
        }
    }
    if r.decisions.is_empty() {
        writeln!(out, "(no decision)")?;
    }
    writeln!(out)?;
    match &r.outcome {
        Outcome::Promoted { at, after_seconds } => writeln!(
            out,
            "outcome: promoted at {at}, {} after --from ({} ticks)",
            backtest::elapsed(*after_seconds),
            r.ticks
        ),
        Outcome::RolledBack {
            at,
            after_seconds,
            reason,
        } => writeln!(
            out,
            "outcome: rolled back at {at}, {} after --from ({} ticks): {reason}",
            backtest::elapsed(*after_seconds),
            r.ticks
        ),
        Outcome::Undecided {
            phase,
            step,
            weight,
        } => writeln!(
            out,
            "outcome: still undecided at {} ({} ticks): {phase} at step {step}/{steps}, canary weight {weight}",
            r.to, r.ticks
        ),
    }
}
