//! How the sample service misbehaves: its error ratio, latency distribution
//! and readiness, set by flags and changed at runtime through `/admin`.

use std::time::Duration;

use rand::{Rng, RngExt};
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

use crate::spec::units::{format_duration, parse_duration, parse_percent};

/// z-score of the 99th percentile of a standard normal distribution.
const Z_P99: f64 = 2.326_347_874_040_840_8;

/// The service's current behaviour.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Behaviour {
    /// Share of requests answered with a 500 (0–1).
    pub error_rate: f64,
    /// Median latency.
    #[serde(serialize_with = "human")]
    pub latency_p50: Duration,
    /// 99th-percentile latency (log-normal between the two; equal means constant).
    #[serde(serialize_with = "human")]
    pub latency_p99: Duration,
    /// Whether `/healthz` reports ready.
    pub ready: bool,
}

fn human<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

impl Default for Behaviour {
    fn default() -> Behaviour {
        Behaviour {
            error_rate: 0.0,
            latency_p50: Duration::from_millis(20),
            latency_p99: Duration::from_millis(80),
            ready: true,
        }
    }
}

/// A change to the behaviour, as sent to `PUT /admin/behaviour`
/// (`{"error_rate": "5%", "latency_p99": "800ms"}`); absent fields stay.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourPatch {
    /// `5%` or `0.05`.
    pub error_rate: Option<String>,
    /// `20ms`.
    pub latency_p50: Option<String>,
    /// `300ms`.
    pub latency_p99: Option<String>,
    /// Readiness.
    pub ready: Option<bool>,
}

/// A patch that cannot apply.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BehaviourError {
    /// A value that does not parse.
    #[error("{field}: {message}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// p99 below p50.
    #[error("latency_p99 ({p99}) must not be below latency_p50 ({p50})")]
    Inverted {
        /// The median.
        p50: String,
        /// The 99th percentile.
        p99: String,
    },
}

/// Parses an error ratio written as `5%` or as a fraction `0.05`.
pub fn parse_ratio(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let value = if text.ends_with('%') {
        parse_percent(text).map_err(|e| e.to_string())? / 100.0
    } else {
        text.parse::<f64>()
            .map_err(|_| format!("`{text}` is not a ratio; write `5%` or `0.05`"))?
    };
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("`{text}` is outside 0%–100%"))
    }
}

impl Behaviour {
    /// Applies `patch`, checking every field first, so a bad patch changes nothing.
    pub fn patched(&self, patch: &BehaviourPatch) -> Result<Behaviour, BehaviourError> {
        let invalid = |field| move |message: String| BehaviourError::Invalid { field, message };
        let duration = |text: &str| parse_duration(text.trim()).map_err(|e| e.to_string());
        let mut next = self.clone();
        if let Some(text) = &patch.error_rate {
            next.error_rate = parse_ratio(text).map_err(invalid("error_rate"))?;
        }
        if let Some(text) = &patch.latency_p50 {
            next.latency_p50 = duration(text).map_err(invalid("latency_p50"))?;
        }
        if let Some(text) = &patch.latency_p99 {
            next.latency_p99 = duration(text).map_err(invalid("latency_p99"))?;
        }
        if let Some(ready) = patch.ready {
            next.ready = ready;
        }
        if next.latency_p99 < next.latency_p50 {
            return Err(BehaviourError::Inverted {
                p50: format_duration(next.latency_p50),
                p99: format_duration(next.latency_p99),
            });
        }
        Ok(next)
    }

    /// Draws one request's fate: its latency and whether it fails.
    pub fn draw<R: Rng + ?Sized>(&self, rng: &mut R) -> (Duration, bool) {
        let fails = self.error_rate > 0.0 && rng.random_bool(self.error_rate.min(1.0));
        (self.latency(rng), fails)
    }

    fn latency<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let p50 = self.latency_p50.as_secs_f64();
        let p99 = self.latency_p99.as_secs_f64();
        if p50 <= 0.0 || p99 <= p50 {
            return self.latency_p50;
        }
        // Log-normal with the given median and 99th percentile.
        let sigma = (p99 / p50).ln() / Z_P99;
        match LogNormal::new(p50.ln(), sigma) {
            Ok(dist) => Duration::from_secs_f64(dist.sample(rng).min(60.0)),
            Err(_) => self.latency_p50,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn drawn_latencies_have_the_configured_median_and_p99() {
        let b = Behaviour {
            latency_p50: Duration::from_millis(100),
            latency_p99: Duration::from_millis(300),
            ..Behaviour::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut samples: Vec<f64> = (0..50_000)
            .map(|_| b.draw(&mut rng).0.as_secs_f64())
            .collect();
        samples.sort_by(f64::total_cmp);
        let p50 = samples[25_000];
        let p99 = samples[49_500];
        assert!((p50 - 0.100).abs() < 0.005, "p50 {p50}");
        assert!((p99 - 0.300).abs() < 0.020, "p99 {p99}");
    }

    #[test]
    fn the_error_ratio_is_respected() {
        let b = Behaviour {
            error_rate: 0.05,
            ..Behaviour::default()
        };
        let mut rng = StdRng::seed_from_u64(11);
        let failed = (0..100_000).filter(|_| b.draw(&mut rng).1).count();
        assert!((4_700..5_300).contains(&failed), "{failed} failures");
    }

    #[test]
    fn a_bad_patch_changes_nothing_and_says_which_field() {
        let b = Behaviour::default();
        let patch = BehaviourPatch {
            error_rate: Some("5%".into()),
            latency_p99: Some("a while".into()),
            ..BehaviourPatch::default()
        };
        let err = b.patched(&patch).unwrap_err();
        assert!(err.to_string().starts_with("latency_p99:"), "{err}");
        let inverted = BehaviourPatch {
            latency_p50: Some("1s".into()),
            ..BehaviourPatch::default()
        };
        assert!(matches!(
            b.patched(&inverted),
            Err(BehaviourError::Inverted { .. })
        ));
        assert_eq!(
            parse_ratio("150%").unwrap_err(),
            "`150%` is outside 0%–100%"
        );
        assert_eq!(parse_ratio("0.25"), Ok(0.25));
    }
}
