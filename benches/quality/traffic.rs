//! Simulated traffic with Prometheus semantics: Poisson arrivals split by the
//! router's weight, Bernoulli errors, log-normal latency counted in the
//! sample app's histogram buckets, cumulative counters read at each tick
//! (optionally with missed scrapes, so a read lags the truth).

use rand::RngExt;
use rand::rngs::StdRng;
use rand_distr::{Binomial, Distribution, Gamma, Poisson};
use statrs::distribution::{ContinuousCDF, Normal};

/// The sample app's histogram bounds (seconds).
pub const BUCKETS: [f64; 19] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0,
    10.0, 30.0,
];

/// How one track behaves at one instant.
#[derive(Clone, Copy, Debug)]
pub struct Arm {
    /// Share of requests that fail.
    pub error_rate: f64,
    /// 99th percentile latency (seconds); the median is a third of it.
    pub p99: f64,
}

impl Arm {
    /// Probability of each histogram bin (the last is beyond the top bound).
    pub fn bins(&self) -> [f64; 20] {
        let normal = Normal::new(0.0, 1.0).expect("normal");
        let sigma = 3f64.ln() / 2.326_347_874;
        let median = self.p99 / 3.0;
        let mut out = [0.0; 20];
        let mut prev = 0.0;
        for (i, b) in BUCKETS.iter().enumerate() {
            let c = normal.cdf((b.ln() - median.ln()) / sigma);
            out[i] = (c - prev).max(0.0);
            prev = c;
        }
        out[19] = (1.0 - prev).max(0.0);
        out
    }

    /// The share of requests slower than `bound` (seconds).
    pub fn slower_than(&self, bound: f64) -> f64 {
        let normal = Normal::new(0.0, 1.0).expect("normal");
        let sigma = 3f64.ln() / 2.326_347_874;
        1.0 - normal.cdf((bound.ln() - (self.p99 / 3.0).ln()) / sigma)
    }
}

/// One track's counters (cumulative: requests, errors, per bin).
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub requests: f64,
    pub errors: f64,
    pub bins: [f64; 20],
}

impl Counters {
    pub fn add(&mut self, other: &Counters) {
        self.requests += other.requests;
        self.errors += other.errors;
        for (a, b) in self.bins.iter_mut().zip(other.bins) {
            *a += b;
        }
    }

    /// `(bound, cumulative count)` pairs, `+Inf` last.
    pub fn buckets(&self) -> Vec<(f64, f64)> {
        let mut cum = 0.0;
        let mut out = Vec::with_capacity(20);
        for (i, b) in self.bins.iter().enumerate() {
            cum += b;
            let bound = BUCKETS.get(i).copied().unwrap_or(f64::INFINITY);
            out.push((bound, cum));
        }
        out
    }
}

fn binomial(rng: &mut StdRng, n: f64, p: f64) -> f64 {
    if n < 1.0 || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return n;
    }
    Binomial::new(n as u64, p).map_or(0.0, |b| b.sample(rng) as f64)
}

/// Requests served by one track in an interval.
pub fn serve(rng: &mut StdRng, n: f64, arm: &Arm, bins: &[f64; 20]) -> Counters {
    let mut c = Counters {
        requests: n,
        errors: binomial(rng, n, arm.error_rate),
        bins: [0.0; 20],
    };
    // A multinomial draw as a chain of conditional binomials.
    let mut left = n;
    let mut mass = 1.0;
    for (i, p) in bins.iter().enumerate() {
        if left <= 0.0 {
            break;
        }
        let x = if i == 19 || mass <= 0.0 {
            left
        } else {
            binomial(rng, left, (p / mass).min(1.0))
        };
        c.bins[i] = x;
        left -= x;
        mass -= p;
    }
    c
}

/// Total requests in `seconds` at `rate`, with a burst factor.
pub fn arrivals(rng: &mut StdRng, rate: f64, seconds: f64, burst: f64) -> f64 {
    let mean = rate * seconds * burst;
    if mean <= 0.0 {
        return 0.0;
    }
    Poisson::new(mean).map_or(0.0, |p| p.sample(rng))
}

/// A burst factor with mean 1 (over-dispersed traffic): Gamma(shape, 1/shape).
pub fn burst(rng: &mut StdRng, shape: f64) -> f64 {
    Gamma::new(shape, 1.0 / shape).map_or(1.0, |g| g.sample(rng))
}

/// Splits `n` requests between the canary (share `w`) and stable.
pub fn split(rng: &mut StdRng, n: f64, w: f64) -> (f64, f64) {
    let c = binomial(rng, n, w);
    (c, n - c)
}

/// Whether a scrape was missed.
pub fn missed(rng: &mut StdRng, p: f64) -> bool {
    p > 0.0 && rng.random_bool(p)
}
