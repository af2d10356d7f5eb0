//! What an evidence gate's verdict rests on, as shown in the decision log,
//! the API, `check`, the dashboard and alerts: the counts, the estimate, the
//! anytime-valid bound that decides, and how far the evidence has come.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::engine::time::Timestamp;

/// How the counts were tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// A sequential test on everything counted since the step began
    /// (promotion gates).
    Sequential,
    /// A change detector: the data since the fault seems to have started
    /// (abort conditions, watched through every step).
    Detector,
}

/// Which side of the estimate a bound is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundSide {
    /// The true value is at least this (with the confidence).
    Lower,
    /// The true value is at most this.
    Upper,
}

/// An anytime-valid confidence bound.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Bound {
    /// Lower or upper.
    pub side: BoundSide,
    /// The bound, in the same terms as the estimate.
    pub value: f64,
    /// Its confidence (0.99).
    pub confidence: f64,
}

/// What is counted, in words.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Counted {
    /// Errors among requests.
    Errors,
    /// Requests slower than `seconds` (a histogram bound).
    SlowerThan {
        /// The bound judged, in seconds.
        seconds: f64,
    },
    /// The canary's errors against the stable version's, as a ratio of rates.
    ErrorRatio,
}

/// The evidence behind one gate's verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvidenceSummary {
    /// Sequential (since the step began) or detector (since a change).
    pub method: Method,
    /// Where the counts judged start.
    pub since: Timestamp,
    /// What is counted.
    pub counted: Counted,
    /// Canary events (errors, slow requests) counted.
    pub events: f64,
    /// Canary requests counted.
    pub requests: f64,
    /// The stable version's events over the same period.
    pub stable_events: f64,
    /// The stable version's requests over the same period.
    pub stable_requests: f64,
    /// The canary's share of events (or, for `stable *` gates, the ratio of
    /// the canary's rate to the stable version's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<f64>,
    /// The bound that decides, on the same scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound: Option<Bound>,
    /// The limit on the same scale (for `stable +` gates, as it stands now).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
    /// ln of the evidence reached (the e-value).
    pub log_e: f64,
    /// ln of the evidence a verdict needs.
    pub log_needed: f64,
    /// About how many more canary requests a verdict needs at the current
    /// estimate, when it is on its way to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more_requests: Option<f64>,
}

impl EvidenceSummary {
    /// How far the evidence has come towards a verdict, 0–1.
    pub fn progress(&self) -> f64 {
        if self.log_needed <= 0.0 {
            return 1.0;
        }
        (self.log_e / self.log_needed).clamp(0.0, 1.0)
    }
}

/// `12:03:10` of a timestamp (UTC).
fn clock(t: Timestamp) -> String {
    let text = t.to_string();
    text.get(11..19).unwrap_or(&text).to_string()
}

/// A share as a percentage with up to 3 significant digits.
pub fn percent(share: f64) -> String {
    crate::spec::policy::Unit::Ratio.format(share)
}

/// A confidence such as `99%`, `99.75%` or `99.9975%`: enough decimals to
/// show two significant digits of what it leaves out.
pub fn confidence(c: f64) -> String {
    let left_out = ((1.0 - c) * 100.0).max(1e-12);
    let decimals = (1 - left_out.log10().floor() as i32).clamp(0, 8);
    let scale = 10f64.powi(decimals);
    format!(
        "{}%",
        crate::spec::units::trim_float((c * 100.0 * scale).round() / scale)
    )
}

/// A count with thousands separators (`1,240`).
pub fn count(n: f64) -> String {
    let n = n.max(0.0).round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl fmt::Display for EvidenceSummary {
    /// `3.1% errors over 1,240 requests since 12:03:10 (99.75% lower bound 2.4%)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bound = |f: &mut fmt::Formatter<'_>, scale: &dyn Fn(f64) -> String| match self.bound {
            Some(b) => write!(
                f,
                " ({} {} bound {})",
                confidence(b.confidence),
                match b.side {
                    BoundSide::Lower => "lower",
                    BoundSide::Upper => "upper",
                },
                scale(b.value)
            ),
            None => Ok(()),
        };
        let since = match self.method {
            Method::Sequential => "since the step began".to_string(),
            Method::Detector => format!("since {}", clock(self.since)),
        };
        match &self.counted {
            Counted::Errors => {
                write!(
                    f,
                    "{} errors over {} requests {since}",
                    self.estimate.map_or("-".into(), percent),
                    count(self.requests)
                )?;
                bound(f, &percent)
            }
            Counted::SlowerThan { seconds } => {
                write!(
                    f,
                    "{} of {} requests slower than {} {since}",
                    self.estimate.map_or("-".into(), percent),
                    count(self.requests),
                    crate::spec::policy::Unit::Seconds.format(*seconds)
                )?;
                bound(f, &percent)
            }
            Counted::ErrorRatio => {
                let rate = |x: f64, n: f64| if n > 0.0 { percent(x / n) } else { "-".into() };
                write!(
                    f,
                    "canary {} errors over {} requests vs stable {} over {} {since}: ratio {}",
                    rate(self.events, self.requests),
                    count(self.requests),
                    rate(self.stable_events, self.stable_requests),
                    count(self.stable_requests),
                    self.estimate
                        .map_or("-".into(), |r| crate::spec::units::trim_float(
                            (r * 100.0).round() / 100.0
                        ))
                )?;
                bound(f, &|v| {
                    crate::spec::units::trim_float((v * 100.0).round() / 100.0)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidences_show_what_they_leave_out() {
        assert_eq!(confidence(0.99), "99%");
        assert_eq!(confidence(0.9975), "99.75%");
        assert_eq!(confidence(0.999_975), "99.9975%");
        assert_eq!(confidence(0.95), "95%");
    }

    #[test]
    fn counts_read_with_thousands_separators() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.0), "999");
        assert_eq!(count(1240.0), "1,240");
        assert_eq!(count(1_234_567.4), "1,234,567");
    }

    #[test]
    fn a_summary_reads_as_a_sentence() {
        let s = EvidenceSummary {
            method: Method::Detector,
            since: Timestamp::from_millis(1_790_000_000_000),
            counted: Counted::Errors,
            events: 38.0,
            requests: 1240.0,
            stable_events: 5.0,
            stable_requests: 23_000.0,
            estimate: Some(38.0 / 1240.0),
            bound: Some(Bound {
                side: BoundSide::Lower,
                value: 0.024,
                confidence: 0.9975,
            }),
            limit: Some(0.02),
            log_e: 14.0,
            log_needed: 12.0,
            more_requests: None,
        };
        assert_eq!(
            s.to_string(),
            "3.06% errors over 1,240 requests since 14:13:20 (99.75% lower bound 2.4%)"
        );
        assert_eq!(s.progress(), 1.0);
    }
}
