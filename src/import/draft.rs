//! The deploy file being built from a peer's resource, and its YAML text:
//! every value carries a comment saying where it came from, and the notes
//! (what did not map) head the file.

use std::fmt::Write as _;
use std::time::Duration;

use crate::spec::model::Comparison;
use crate::spec::units::{format_duration, trim_float};

use super::{Note, Tool};

/// How the imported rollout shifts traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Router {
    /// Gateway API HTTPRoute backend weights.
    GatewayApi {
        /// The HTTPRoute.
        route: String,
        /// The stable Service.
        stable_backend: String,
        /// The canary Service.
        canary_backend: String,
    },
    /// The replica ratio of the two tracks.
    KubernetesReplicas {
        /// Replicas shared between the tracks.
        replicas: u32,
    },
}

/// A threshold as it will be written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// A ratio (0.01), written `1%`.
    Ratio(f64),
    /// Seconds, written `200ms` / `1.5s`.
    Seconds(f64),
    /// A plain number.
    Number(f64),
}

impl Threshold {
    fn text(self) -> String {
        match self {
            Threshold::Ratio(r) => format!("{}%", trim_float(round(r * 100.0, 4))),
            Threshold::Seconds(s) => {
                let ms = (s * 1000.0).round().max(1.0) as u64;
                if ms < 1000 || ms.is_multiple_of(1000) {
                    format_duration(Duration::from_millis(ms))
                } else {
                    format!("{}s", trim_float(ms as f64 / 1000.0))
                }
            }
            Threshold::Number(n) => trim_float(n),
        }
    }
}

/// `x` rounded to `decimals` decimals (thresholds computed as `100 - 99.9`).
fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// One gate of the deploy file.
#[derive(Clone, Debug, PartialEq)]
pub struct Gate {
    /// Metric name (a policy metric, or the custom gate's own name).
    pub metric: String,
    /// `_less_than` or `_greater_than`.
    pub comparison: Comparison,
    /// The threshold.
    pub threshold: Threshold,
    /// The gate's own PromQL (canaryd placeholders), for custom gates.
    pub query: Option<String>,
    /// Where it came from.
    pub from: String,
}

/// One step of the deploy file.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// Canary weight, percent.
    pub weight: f64,
    /// How long the step is watched.
    pub duration: Option<Duration>,
    /// Where the weight and the duration came from.
    pub from: Vec<String>,
    /// Promotion gates.
    pub gates: Vec<Gate>,
}

/// A `deploy.analysis` setting: key, value, where it came from.
pub type Setting = (&'static str, String, String);

/// The deploy file being built.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    /// `service`.
    pub service: String,
    /// `namespace`, when the resource has one.
    pub namespace: Option<String>,
    /// The resource's `namespace/name` as the peer knows it.
    pub resource: String,
    /// `policy`, and why.
    pub policy: (String, String),
    /// `prometheus`, and where it came from.
    pub prometheus: Option<(String, String)>,
    /// `router`, and why.
    pub router: Option<(Router, String)>,
    /// Stable and canary version, and where they came from.
    pub version: (String, String),
    /// Steps.
    pub steps: Vec<Step>,
    /// Abort conditions.
    pub rollback_on: Vec<Gate>,
    /// `deploy.analysis` settings.
    pub analysis: Vec<Setting>,
    /// What did not map.
    pub notes: Vec<Note>,
}

impl Draft {
    /// Adds a note.
    pub fn note(
        &mut self,
        file: &str,
        line: u32,
        what: impl Into<String>,
        reason: impl Into<String>,
    ) {
        self.notes.push(Note {
            file: file.to_string(),
            line,
            what: what.into(),
            reason: reason.into(),
        });
    }

    /// Sets an analysis setting (the last one set wins).
    pub fn set(&mut self, key: &'static str, value: String, from: String) {
        self.analysis.retain(|(k, _, _)| *k != key);
        self.analysis.push((key, value, from));
    }

    /// The deploy file's text.
    pub fn emit(&self, tool: Tool, input: &str) -> String {
        let notes = &self.notes;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# Imported by `canaryd import` from {} {} `{}` ({input}).",
            tool.name(),
            tool.kind(),
            self.resource
        );
        o.push_str("# Check the router and the versions, then `canaryd validate` and `canaryd check` it.\n");
        if notes.is_empty() {
            o.push_str("# Everything mapped.\n");
        } else {
            o.push_str("#\n# Not imported, or imported approximately:\n");
            for n in notes {
                let _ = writeln!(o, "#   {n}");
            }
        }
        let _ = writeln!(o, "service: {}", plain(&self.service));
        if let Some(ns) = &self.namespace {
            let _ = writeln!(o, "namespace: {}", plain(ns));
        }
        let _ = writeln!(o, "policy: {}  # {}", self.policy.0, self.policy.1);
        if let Some((url, from)) = &self.prometheus {
            let _ = writeln!(o, "prometheus: {}  # {from}", quoted(url));
        }
        if let Some((router, why)) = &self.router {
            let _ = writeln!(o, "router:  # {why}");
            match router {
                Router::GatewayApi {
                    route,
                    stable_backend,
                    canary_backend,
                } => {
                    o.push_str("  kind: gateway-api\n");
                    let _ = writeln!(o, "  route: {}", quoted(route));
                    let _ = writeln!(o, "  stable_backend: {}", quoted(stable_backend));
                    let _ = writeln!(o, "  canary_backend: {}", quoted(canary_backend));
                }
                Router::KubernetesReplicas { replicas } => {
                    o.push_str("  kind: kubernetes-replicas\n");
                    let _ = writeln!(o, "  replicas: {replicas}");
                }
            }
        }
        let (version, from) = &self.version;
        let _ = writeln!(o, "stable: {{ version: {} }}  # {from}", quoted(version));
        let _ = writeln!(
            o,
            "canary: {{ version: {} }}  # the same as stable: idle until a new version is set here",
            quoted(version)
        );
        o.push_str("deploy:\n  strategy: canary\n  steps:\n");
        for step in &self.steps {
            let from = if step.from.is_empty() {
                String::new()
            } else {
                format!("  # {}", step.from.join("; "))
            };
            let _ = writeln!(
                o,
                "    - deploy: {}%{from}",
                trim_float(round(step.weight, 2))
            );
            if let Some(d) = step.duration {
                let _ = writeln!(o, "      duration: {}", format_duration(d));
            }
            if !step.gates.is_empty() {
                o.push_str("      metrics:\n");
                for g in &step.gates {
                    gate(&mut o, g, "        ");
                }
            }
        }
        o.push_str("  rollback:\n    auto: true\n");
        if !self.rollback_on.is_empty() {
            o.push_str("    on:\n");
            for g in &self.rollback_on {
                gate(&mut o, g, "      ");
            }
        }
        if !self.analysis.is_empty() {
            o.push_str("  analysis:\n");
            for (key, value, from) in &self.analysis {
                let _ = writeln!(o, "    {key}: {value}  # {from}");
            }
        }
        o
    }
}

fn gate(o: &mut String, g: &Gate, indent: &str) {
    let _ = writeln!(
        o,
        "{indent}- {}{}: {}  # {}",
        g.metric,
        g.comparison.suffix(),
        g.threshold.text(),
        g.from
    );
    if let Some(q) = &g.query {
        let one_line = q.split_whitespace().collect::<Vec<_>>().join(" ");
        let _ = writeln!(o, "{indent}  query: >-\n{indent}    {one_line}");
    }
}

/// A scalar that is safe unquoted (names), else double-quoted.
fn plain(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if safe { text.to_string() } else { quoted(text) }
}

/// A double-quoted YAML string.
fn quoted(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_written_in_their_unit_without_float_noise() {
        assert_eq!(Threshold::Ratio(1.0 - 0.99).text(), "1%");
        assert_eq!(Threshold::Ratio((100.0 - 99.9) / 100.0).text(), "0.1%");
        assert_eq!(Threshold::Seconds(0.5).text(), "500ms");
        assert_eq!(Threshold::Seconds(1.5).text(), "1.5s");
        assert_eq!(Threshold::Seconds(2.0).text(), "2s");
        assert_eq!(Threshold::Number(1000.0).text(), "1000");
    }

    #[test]
    fn strings_are_quoted_when_yaml_would_read_them_otherwise() {
        assert_eq!(plain("checkout"), "checkout");
        assert_eq!(plain("yes: no"), "\"yes: no\"");
        assert_eq!(quoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }
}
