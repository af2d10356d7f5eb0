//! The deploy file `canaryd init` writes, and the lines it prints: every
//! threshold next to the value it came from.

use std::fmt::Write as _;
use std::time::Duration;

use crate::spec::policy::Unit;
use crate::spec::units::{format_duration, trim_float};

use super::probe::Found;
use super::propose::{
    ERROR_ABORT_FACTOR, ERROR_FLOOR, LATENCY_ABORT_FACTOR, LATENCY_FLOOR, PROMOTION_FACTOR,
    Proposal, error_rate, latency,
};

/// The router settings chosen.
#[derive(Clone, Debug)]
pub enum RouterChoice {
    /// The built-in router.
    Builtin {
        /// Where it listens.
        listen: String,
    },
    /// HAProxy.
    Haproxy {
        /// Runtime API socket.
        socket: String,
        /// Backend.
        backend: String,
        /// Stable server.
        stable_server: String,
        /// Canary server.
        canary_server: String,
    },
}

/// The stable version's values in the window.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Requests served.
    pub requests: f64,
    /// Error rate (ratio), if measured.
    pub error_rate: Option<f64>,
    /// p99 latency (seconds), if measured.
    pub p99: Option<f64>,
}

/// Everything the file says.
#[derive(Clone, Debug)]
pub struct Plan {
    /// `service`.
    pub service: String,
    /// `namespace`, when given.
    pub namespace: Option<String>,
    /// The policy.
    pub policy: String,
    /// What the policy's metrics showed.
    pub found: Found,
    /// Prometheus.
    pub prometheus: String,
    /// The measurement window.
    pub window: Duration,
    /// The router.
    pub router: RouterChoice,
    /// Stable version and address.
    pub stable: (String, Option<String>),
    /// Canary version and address.
    pub canary: (String, Option<String>),
    /// The stable version's values.
    pub measured: Measured,
}

fn percent(ratio: f64) -> String {
    format!("{}%", trim_float((ratio * 100.0 * 1e4).round() / 1e4))
}

fn latency_text(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round();
    if ms < 1000.0 {
        format!("{}ms", trim_float(ms))
    } else {
        format!("{}s", trim_float(ms / 1000.0))
    }
}

/// `v1 now 5.02%; 2 × = 10%, rounded up` or `…; 2 × = 0.7% is below the floor 1%`.
fn basis(version: &str, p: &Proposal, unit: Unit, floor: f64) -> String {
    let doubled = unit.format(PROMOTION_FACTOR * p.measured);
    let now = unit.format(p.measured);
    if p.floored {
        format!(
            "{version} now {now}; 2 × = {doubled} is below the floor {}",
            unit.format(floor)
        )
    } else {
        format!("{version} now {now}; 2 × = {doubled}, rounded up")
    }
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Plan {
    fn proposals(&self) -> (Option<Proposal>, Option<Proposal>) {
        (
            self.measured.error_rate.map(error_rate),
            self.measured.p99.map(latency),
        )
    }

    fn found_text(&self) -> String {
        match &self.found {
            Found::Versions { label, seen } => {
                let list: Vec<String> = seen
                    .iter()
                    .map(|s| format!("{} ({:.0} requests)", s.version, s.requests))
                    .collect();
                format!("{label} {}", list.join(", "))
            }
            Found::Tracks { stable, canary } => {
                format!("stable track {stable:.0} requests, canary track {canary:.0}")
            }
        }
    }

    /// What is printed before the file is written.
    pub fn summary(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "→ policy {}, stable {}, canary {}",
            self.policy, self.stable.0, self.canary.0
        );
        let (e, l) = self.proposals();
        let mut promotion = Vec::new();
        let mut abort = Vec::new();
        if let Some(e) = &e {
            promotion.push(format!(
                "error_rate < {} ({})",
                percent(e.promotion),
                basis(&self.stable.0, e, Unit::Ratio, ERROR_FLOOR)
            ));
            abort.push(format!(
                "error_rate > {} ({ERROR_ABORT_FACTOR} × the gate)",
                percent(e.abort)
            ));
        }
        if let Some(l) = &l {
            promotion.push(format!(
                "latency_p99 < {} ({})",
                latency_text(l.promotion),
                basis(&self.stable.0, l, Unit::Seconds, LATENCY_FLOOR)
            ));
            abort.push(format!(
                "latency_p99 > {} ({LATENCY_ABORT_FACTOR} × the gate)",
                latency_text(l.abort)
            ));
        }
        if promotion.is_empty() {
            o.push_str("no error rate or p99 measured: the file has no gates; add them by hand\n");
        } else {
            let _ = writeln!(o, "promotion gates (step 1): {}", promotion.join("; "));
            let _ = writeln!(o, "abort conditions: {}", abort.join("; "));
        }
        o
    }

    /// The deploy file.
    pub fn file(&self) -> String {
        let mut o = String::new();
        let (stable, stable_address) = &self.stable;
        let (canary, canary_address) = &self.canary;
        let _ = writeln!(
            o,
            "# Written by `canaryd init`: policy {} (Prometheus shows {} in the last {}).",
            self.policy,
            self.found_text(),
            format_duration(self.window)
        );
        let _ = writeln!(
            o,
            "# Thresholds from the stable version {}'s values over that window ({:.0} requests).",
            stable, self.measured.requests
        );
        let _ = writeln!(o, "service: {}", self.service);
        if let Some(ns) = &self.namespace {
            let _ = writeln!(o, "namespace: {ns}");
        }
        let _ = writeln!(o, "policy: {}", self.policy);
        let _ = writeln!(o, "prometheus: {}", quoted(&self.prometheus));
        o.push_str("router:\n");
        match &self.router {
            RouterChoice::Builtin { listen } => {
                let _ = writeln!(o, "  kind: builtin\n  listen: {}", quoted(listen));
            }
            RouterChoice::Haproxy {
                socket,
                backend,
                stable_server,
                canary_server,
            } => {
                let _ = writeln!(
                    o,
                    "  kind: haproxy\n  socket: {}\n  backend: {}\n  stable_server: {}\n  canary_server: {}",
                    quoted(socket),
                    quoted(backend),
                    quoted(stable_server),
                    quoted(canary_server)
                );
            }
        }
        let track = |version: &str, address: &Option<String>| match address {
            Some(a) => format!("{{ version: {}, address: {} }}", quoted(version), quoted(a)),
            None => format!("{{ version: {} }}", quoted(version)),
        };
        let _ = writeln!(o, "stable: {}", track(stable, stable_address));
        let idle = if canary == stable {
            "  # the same as stable: idle; set the new version here to start a rollout"
        } else {
            "  # a new canary version starts a rollout"
        };
        let _ = writeln!(o, "canary: {}{idle}", track(canary, canary_address));
        o.push_str(
            "deploy:\n  strategy: canary\n  steps:\n    - deploy: 5%\n      duration: 10m\n",
        );
        let (e, l) = self.proposals();
        if e.is_some() || l.is_some() {
            o.push_str("      metrics:\n");
        }
        if let Some(e) = &e {
            let _ = writeln!(
                o,
                "        - error_rate_less_than: {}  # {}",
                percent(e.promotion),
                basis(&self.stable.0, e, Unit::Ratio, ERROR_FLOOR)
            );
        }
        if let Some(l) = &l {
            let _ = writeln!(
                o,
                "        - latency_p99_less_than: {}  # {}",
                latency_text(l.promotion),
                basis(&self.stable.0, l, Unit::Seconds, LATENCY_FLOOR)
            );
        }
        o.push_str("    - deploy: 50%\n      duration: 20m\n    - deploy: 100%\n\n");
        o.push_str("  rollback:\n    auto: true\n");
        if e.is_some() || l.is_some() {
            o.push_str("    on:\n");
        }
        if let Some(e) = &e {
            let _ = writeln!(
                o,
                "      - error_rate_greater_than: {}  # {ERROR_ABORT_FACTOR} × the promotion gate",
                percent(e.abort)
            );
        }
        if let Some(l) = &l {
            let _ = writeln!(
                o,
                "      - latency_p99_greater_than: {}  # {LATENCY_ABORT_FACTOR} × the promotion gate",
                latency_text(l.abort)
            );
        }
        o
    }
}
