//! One result row per N: the columns plus the extras, as a markdown
//! table row (stdout and `target/scale/results.md`) and as a JSON line
//! (`target/scale/results.jsonl`).

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::measure::Wrk;

/// Everything measured at one N.
#[derive(Debug, Default, Serialize)]
pub struct Row {
    pub label: String,
    pub n: usize,
    pub interval_seconds: f64,
    /// Analysis intervals in the measurement window.
    pub ticks: f64,
    pub daemon_cpu_per_tick_ms: f64,
    /// canaryd's own tick histogram over the window.
    pub tick_count: f64,
    pub tick_mean_ms: f64,
    pub tick_max_bound_ms: Option<f64>,
    /// The tick histogram's largest finite bound.
    pub tick_top_bound_ms: Option<f64>,
    pub query_requests_per_tick: f64,
    pub engine_queries_per_tick: f64,
    pub prometheus_cpu_per_tick_s: f64,
    pub rss_mb: f64,
    pub fds: usize,
    pub ready_s: f64,
    pub reload_ms: Vec<f64>,
    pub list: Option<Wrk>,
    pub single: Option<Wrk>,
    pub command_p50_ms: f64,
    pub command_p99_ms: f64,
    pub command_max_ms: f64,
    pub commands: usize,
    pub listed: usize,
    pub decided: usize,
    pub measured: usize,
    /// Rollouts per phase at the end.
    pub phases: std::collections::BTreeMap<String, usize>,
    /// The control loop's longest turn of each kind while the commands ran
    /// (the smallest bucket bound of `canaryd_control_loop_turn_seconds`
    /// holding them all): what a command can wait for.
    pub longest_turns_ms: std::collections::BTreeMap<String, f64>,
    /// Commands answered other than 2xx (the first few answers).
    pub refused: usize,
    /// Steps that did not finish, and why.
    pub notes: Vec<String>,
}

/// The table's header (two lines).
pub fn header() -> String {
    "| daemon | N | daemon CPU per tick | tick wall mean (max) | ticks done / due | queries per tick (engine evals) | Prometheus CPU per tick | RSS | fds | list p50 / p99 (body) | single p50 / p99 | command p50 / p99 / max while ticking | ready after start | hot reload median / max | rollouts decided / measured |\n\
     |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        .into()
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn wrk(w: &Option<Wrk>, body: bool) -> String {
    match w {
        None => "-".into(),
        Some(w) => {
            let mut s = format!("{} / {}", ms(w.p50_ms), ms(w.p99_ms));
            if body {
                s.push_str(&format!(" ({})", bytes(w.body_bytes)));
            }
            if w.errors > 0 {
                s.push_str(&format!(", {} errors", w.errors));
            }
            s
        }
    }
}

fn bytes(b: usize) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MB", b as f64 / (1 << 20) as f64)
    } else {
        format!("{:.0} kB", b as f64 / 1024.0)
    }
}

impl Row {
    /// The markdown table row.
    pub fn markdown(&self) -> String {
        let mut reload = self.reload_ms.clone();
        let (median, _, max) = crate::measure::quantiles(&mut reload);
        let tick_max = match (self.tick_max_bound_ms, self.tick_top_bound_ms) {
            (Some(m), _) if m.is_finite() => format!("≤ {}", ms(m)),
            (Some(_), Some(top)) => format!("> {}", ms(top)),
            _ => "-".into(),
        };
        let mut end = format!("{} / {} of {}", self.decided, self.measured, self.n);
        if self.refused > 0 {
            end.push_str(&format!(
                "; {} of {} commands refused",
                self.refused, self.commands
            ));
        }
        if !self.notes.is_empty() {
            end.push_str("; see notes");
        }
        format!(
            "| {} | {} | {} | {} ({tick_max}) | {:.0} / {:.0} | {:.0} ({:.0}) | {:.2} s | {:.0} MB | {} | {} | {} | {} / {} / {} | {:.2} s | {} / {} | {end} |",
            self.label,
            self.n,
            ms(self.daemon_cpu_per_tick_ms),
            ms(self.tick_mean_ms),
            self.tick_count,
            self.ticks,
            self.query_requests_per_tick,
            self.engine_queries_per_tick,
            self.prometheus_cpu_per_tick_s,
            self.rss_mb,
            self.fds,
            wrk(&self.list, true),
            wrk(&self.single, false),
            ms(self.command_p50_ms),
            ms(self.command_p99_ms),
            ms(self.command_max_ms),
            self.ready_s,
            ms(median),
            ms(max),
        )
    }

    /// Prints the row and appends it (and its JSON) under `out`.
    pub fn record(&self, out: &Path) -> Result<(), String> {
        println!("{}", self.markdown());
        std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let append = |name: &str, line: String| -> Result<(), String> {
            let path = out.join(name);
            let fresh = !path.exists();
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            if fresh && name.ends_with(".md") {
                writeln!(f, "{}", header()).map_err(|e| e.to_string())?;
            }
            writeln!(f, "{line}").map_err(|e| e.to_string())
        };
        append("results.md", self.markdown())?;
        let json = serde_json::to_string(self).map_err(|e| e.to_string())?;
        println!("{json}");
        append("results.jsonl", json)
    }
}
