//! Counts, not ratios: a track's cumulative counters as Prometheus last
//! scraped them, the increments between two reads, and what they add up to
//! over a step (requests, errors, and requests within each latency bound).
//!
//! Counters only go up, so the difference of two reads is exactly what
//! happened between them: no interval is counted twice and none is lost when
//! a read fails (the next difference covers it). A counter that went down was
//! reset (a restarted pod): that interval is dropped, never guessed.

use serde::{Deserialize, Serialize};

/// One track's cumulative counters, read at one instant.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Requests served since the counters started.
    pub requests: f64,
    /// Of those, errors (when an error gate asks for them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<f64>,
    /// Cumulative histogram buckets `(upper bound in seconds, requests at or
    /// under it)`, sorted by bound, `+Inf` last (when a latency gate asks).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "buckets_serde")]
    pub buckets: Vec<(f64, f64)>,
}

/// Counts over a period: what happened between two reads, or their sum.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Requests.
    pub requests: f64,
    /// Errors among them.
    pub errors: f64,
    /// Per latency bound (seconds, `+Inf` last): requests at or under it.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "buckets_serde")]
    pub buckets: Vec<(f64, f64)>,
}

impl Snapshot {
    /// What happened since `earlier`, or `None` when a counter went down
    /// (reset) or the histogram's buckets changed.
    pub fn since(&self, earlier: &Snapshot) -> Option<Tally> {
        let requests = self.requests - earlier.requests;
        let errors = match (self.errors, earlier.errors) {
            (Some(now), Some(then)) => now - then,
            _ => 0.0,
        };
        if requests < 0.0 || errors < 0.0 {
            return None;
        }
        let buckets = if self.buckets.is_empty() {
            // The histogram vanished (or never existed): a reset if it had been read.
            if !earlier.buckets.is_empty() {
                return None;
            }
            Vec::new()
        } else if earlier.buckets.is_empty() {
            // A histogram read for the first time started from zero.
            self.buckets.clone()
        } else {
            if self.buckets.len() != earlier.buckets.len() {
                return None;
            }
            let mut out = Vec::with_capacity(self.buckets.len());
            for ((le, now), (le_then, then)) in self.buckets.iter().zip(&earlier.buckets) {
                if le != le_then || now < then {
                    return None;
                }
                out.push((*le, now - then));
            }
            out
        };
        Some(Tally {
            requests,
            errors: errors.min(requests),
            buckets,
        })
    }
}

impl Tally {
    /// Adds `other` (buckets are added bound by bound; a tally without
    /// buckets takes `other`'s).
    pub fn add(&mut self, other: &Tally) {
        self.requests += other.requests;
        self.errors += other.errors;
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
        } else if self.buckets.len() == other.buckets.len() {
            for ((_, c), (_, o)) in self.buckets.iter_mut().zip(&other.buckets) {
                *c += o;
            }
        }
    }

    /// Requests the histogram counted (its `+Inf` bucket).
    pub fn histogram_total(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// `(slower than le, all)` requests, if `le` is one of the bounds.
    pub fn exceeding(&self, le: f64) -> Option<(f64, f64)> {
        let total = self.histogram_total();
        let within = self.buckets.iter().find(|(b, _)| *b == le)?.1;
        Some(((total - within).max(0.0), total))
    }

    /// The `q`-quantile by linear interpolation within its bucket, as
    /// Prometheus' `histogram_quantile` does (the top finite bound when it
    /// falls in `+Inf`).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.histogram_total();
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let mut prev = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return Some(prev.0);
                }
                let width = count - prev.1;
                let frac = if width > 0.0 {
                    (rank - prev.1) / width
                } else {
                    1.0
                };
                return Some(prev.0 + (le - prev.0) * frac);
            }
            prev = (le, count);
        }
        None
    }
}

/// The finite histogram bounds of a snapshot, ascending.
pub fn bounds(buckets: &[(f64, f64)]) -> Vec<f64> {
    buckets
        .iter()
        .map(|b| b.0)
        .filter(|le| le.is_finite())
        .collect()
}

/// The bound judged for a latency threshold: the largest bound at or under it
/// (`at_or_above = false`) or the smallest at or over it. Either way the
/// conclusion carries over to the threshold itself: "under 1% slower than
/// 150ms" implies "under 1% slower than 200ms", and "over 1% slower than
/// 250ms" implies "over 1% slower than 200ms".
pub fn judged_bound(bounds: &[f64], threshold: f64, at_or_above: bool) -> Option<f64> {
    // Bounds are floats from label text: compare with a relative tolerance.
    let same = |b: f64| (b - threshold).abs() <= 1e-9 * threshold.abs().max(1e-12);
    if let Some(b) = bounds.iter().copied().find(|b| same(*b)) {
        return Some(b);
    }
    if at_or_above {
        bounds.iter().copied().find(|b| *b > threshold)
    } else {
        bounds.iter().copied().rev().find(|b| *b < threshold)
    }
}

/// Buckets as `[[bound, count], …]` with the top bound written `"+Inf"`
/// (JSON has no infinity), as Prometheus writes it.
mod buckets_serde {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Bound {
        Finite(f64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(b: &[(f64, f64)], s: S) -> Result<S::Ok, S::Error> {
        let pairs: Vec<(Bound, f64)> = b
            .iter()
            .map(|(le, c)| {
                let le = if le.is_finite() {
                    Bound::Finite(*le)
                } else {
                    Bound::Text("+Inf".into())
                };
                (le, *c)
            })
            .collect();
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(f64, f64)>, D::Error> {
        Vec::<(Bound, f64)>::deserialize(d)?
            .into_iter()
            .map(|(le, c)| match le {
                Bound::Finite(v) => Ok((v, c)),
                Bound::Text(t) if t == "+Inf" => Ok((f64::INFINITY, c)),
                Bound::Text(t) => Err(D::Error::custom(format!("bad bucket bound {t}"))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(requests: f64, errors: f64, buckets: &[(f64, f64)]) -> Snapshot {
        Snapshot {
            requests,
            errors: Some(errors),
            buckets: buckets.to_vec(),
        }
    }

    #[test]
    fn the_increment_between_two_reads_is_their_difference() {
        let a = snap(
            100.0,
            2.0,
            &[(0.1, 80.0), (0.2, 95.0), (f64::INFINITY, 100.0)],
        );
        let b = snap(
            160.0,
            5.0,
            &[(0.1, 120.0), (0.2, 150.0), (f64::INFINITY, 160.0)],
        );
        let t = b.since(&a).expect("no reset");
        assert_eq!((t.requests, t.errors), (60.0, 3.0));
        assert_eq!(t.exceeding(0.1), Some((20.0, 60.0)));
        assert_eq!(t.exceeding(0.2), Some((5.0, 60.0)));
        assert_eq!(t.exceeding(0.3), None);
    }

    #[test]
    fn snapshots_round_trip_through_json_with_their_infinite_bound() {
        let s = snap(10.0, 1.0, &[(0.1, 8.0), (f64::INFINITY, 10.0)]);
        let json = serde_json::to_string(&s).expect("serializes");
        assert!(json.contains("\"+Inf\""), "{json}");
        assert_eq!(serde_json::from_str::<Snapshot>(&json).expect("parses"), s);
    }

    #[test]
    fn a_histogram_seen_for_the_first_time_counts_from_zero() {
        let t = snap(10.0, 0.0, &[(0.1, 8.0), (f64::INFINITY, 10.0)])
            .since(&snap(0.0, 0.0, &[]))
            .expect("no reset");
        assert_eq!(t.exceeding(0.1), Some((2.0, 10.0)));
        assert_eq!(
            snap(10.0, 0.0, &[]).since(&snap(5.0, 0.0, &[(0.1, 5.0), (f64::INFINITY, 5.0)])),
            None
        );
    }

    #[test]
    fn a_counter_that_went_down_drops_the_interval() {
        let a = snap(100.0, 2.0, &[]);
        assert_eq!(snap(40.0, 0.0, &[]).since(&a), None);
        assert_eq!(snap(140.0, 1.0, &[]).since(&a), None);
        let h = |c: f64| snap(10.0, 0.0, &[(0.1, c), (f64::INFINITY, 10.0)]);
        assert_eq!(h(3.0).since(&h(5.0)), None);
    }

    #[test]
    fn quantiles_interpolate_within_their_bucket_like_prometheus() {
        let t = Tally {
            requests: 100.0,
            errors: 0.0,
            buckets: vec![
                (0.1, 50.0),
                (0.2, 90.0),
                (0.5, 99.0),
                (f64::INFINITY, 100.0),
            ],
        };
        assert!((t.quantile(0.5).expect("q") - 0.1).abs() < 1e-12);
        assert!((t.quantile(0.7).expect("q") - 0.15).abs() < 1e-12);
        // The 99.5th percentile is in +Inf: the top finite bound.
        assert_eq!(t.quantile(0.995), Some(0.5));
    }

    #[test]
    fn a_threshold_between_bounds_is_judged_at_the_conservative_bound() {
        let b = [0.1, 0.15, 0.25, 0.5];
        assert_eq!(judged_bound(&b, 0.2, false), Some(0.15));
        assert_eq!(judged_bound(&b, 0.2, true), Some(0.25));
        assert_eq!(judged_bound(&b, 0.25, true), Some(0.25));
        assert_eq!(judged_bound(&b, 0.25, false), Some(0.25));
        assert_eq!(judged_bound(&b, 0.05, false), None);
        assert_eq!(judged_bound(&b, 0.6, true), None);
    }
}
