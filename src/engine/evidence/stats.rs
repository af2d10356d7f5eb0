//! The statistics behind evidence gates: anytime-valid tests on Bernoulli
//! counts (pure functions, no state).
//!
//! Every gate reduces to one question about a Bernoulli probability `p`
//! (an error among requests, a request slower than a bound, a canary label
//! among both tracks' errors) against a null value `p0`. The evidence for
//! "`p` is above `p0`" is a **mixture likelihood ratio** (Robbins 1970): the
//! average, over a fixed grid of alternatives `p1 = p0 · ψ` in odds, of
//! `Π (p1/p0)^x ((1−p1)/(1−p0))^y`. Under `p ≤ p0` each term, and so their
//! average, is a non-negative supermartingale starting at 1, so by Ville's
//! inequality it ever reaches `1/α` with probability at most `α` however
//! often it is looked at (STATISTICS.md §2a, §2c). The mirrored grid gives the
//! evidence for "`p` is below `p0`".
//!
//! Odds multipliers keep every alternative inside (0, 1) whatever `p0`, and
//! are plain rate ratios for small rates; the same formula serves the
//! two-sample test, whose `p0` is the canary's share of events under the null.

/// Alternatives above the null, as odds multipliers: from a 25% increase to a
/// 30-fold one (a hard failure).
pub const ABOVE: [f64; 7] = [1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0];

/// Alternatives below the null, as odds multipliers.
pub const BELOW: [f64; 5] = [0.1, 0.3, 0.5, 0.7, 0.85];

/// The smallest and largest null probability the tests accept; thresholds
/// are clamped into this range so every logarithm stays finite.
const P_MIN: f64 = 1e-9;
const P_MAX: f64 = 1.0 - 1e-9;

/// Which way the evidence points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Evidence that `p` is above the null value.
    Above,
    /// Evidence that `p` is below the null value.
    Below,
}

impl Direction {
    /// The grid of alternatives for this direction.
    pub fn grid(self) -> &'static [f64] {
        match self {
            Direction::Above => &ABOVE,
            Direction::Below => &BELOW,
        }
    }

    /// The other direction.
    pub fn flip(self) -> Direction {
        match self {
            Direction::Above => Direction::Below,
            Direction::Below => Direction::Above,
        }
    }
}

/// `p0` clamped away from 0 and 1.
pub fn clamp(p0: f64) -> f64 {
    if p0.is_nan() {
        P_MIN
    } else {
        p0.clamp(P_MIN, P_MAX)
    }
}

/// The probability whose odds are `psi` times the odds of `p0`.
pub fn shift(p0: f64, psi: f64) -> f64 {
    let p0 = clamp(p0);
    p0 * psi / (1.0 - p0 + p0 * psi)
}

/// ln of the likelihood ratio of `x` successes and `y` failures under
/// `shift(p0, psi)` against `p0`.
pub fn log_lr(x: f64, y: f64, p0: f64, psi: f64) -> f64 {
    let p0 = clamp(p0);
    let p1 = shift(p0, psi);
    let mut s = 0.0;
    if x > 0.0 {
        s += x * (p1 / p0).ln();
    }
    if y > 0.0 {
        s += y * ((1.0 - p1) / (1.0 - p0)).ln();
    }
    s
}

/// ln of the mean of `exp(terms)`, computed without overflow.
pub fn log_mean_exp(terms: &[f64]) -> f64 {
    if terms.is_empty() {
        return 0.0;
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    max + sum.ln() - (terms.len() as f64).ln()
}

/// Per-alternative running sums of log-likelihood ratios: the whole state of
/// one mixture e-process.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Mixture {
    /// One log-likelihood ratio per alternative of the direction's grid.
    pub log_lr: Vec<f64>,
}

impl Mixture {
    /// An e-process at 1 (no evidence yet) for `direction`.
    pub fn new(direction: Direction) -> Mixture {
        Mixture {
            log_lr: vec![0.0; direction.grid().len()],
        }
    }

    /// Adds one interval's `x` successes and `y` failures against `p0`.
    pub fn add(&mut self, direction: Direction, x: f64, y: f64, p0: f64) {
        let grid = direction.grid();
        if self.log_lr.len() != grid.len() {
            self.log_lr = vec![0.0; grid.len()];
        }
        for (s, psi) in self.log_lr.iter_mut().zip(grid) {
            *s += log_lr(x, y, p0, *psi);
        }
    }

    /// ln of the e-value: the evidence against the null so far.
    pub fn log_e(&self) -> f64 {
        log_mean_exp(&self.log_lr)
    }
}

/// The e-value of `x` successes in `n` trials against `p0` in `direction`,
/// in one piece (a one-sample test on totals).
pub fn log_e_value(direction: Direction, x: f64, n: f64, p0: f64) -> f64 {
    let y = (n - x).max(0.0);
    let terms: Vec<f64> = direction
        .grid()
        .iter()
        .map(|psi| log_lr(x, y, p0, *psi))
        .collect();
    log_mean_exp(&terms)
}

/// A CUSUM of each alternative's likelihood ratio, restarted at every
/// interval (Shin, Ramdas & Rinaldo's e-detector): a fault that starts late
/// is judged on the data since it started, not diluted by a long healthy
/// history. The mean of the CUSUMs is bounded by a Shiryaev–Roberts
/// statistic `R_t` with `R_t − t` a martingale under the null, so it reaches
/// `c` within the first `T` intervals with probability at most `T/c`
/// (see [`detector_log_threshold`]).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Detector {
    /// Per alternative: ln of its CUSUM (≥ its last interval's ratio).
    pub log_cusum: Vec<f64>,
    /// Per alternative: the counts since its CUSUM last restarted.
    pub runs: Vec<Run>,
    /// Intervals with data seen so far (sets the threshold's epoch).
    pub intervals: u64,
}

/// Counts since an alternative's CUSUM last restarted.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Run {
    /// Successes (events).
    pub x: f64,
    /// Trials.
    pub n: f64,
    /// When the run started (ms since the epoch).
    pub since: u64,
}

impl Detector {
    /// Adds one interval (starting at `start_ms`) with `x` successes and `y`
    /// failures against `p0`.
    pub fn add(&mut self, direction: Direction, x: f64, y: f64, p0: f64, start_ms: u64) {
        let grid = direction.grid();
        if self.log_cusum.len() != grid.len() {
            self.log_cusum = vec![0.0; grid.len()];
            self.runs = vec![Run::default(); grid.len()];
        }
        if x + y <= 0.0 {
            return;
        }
        self.intervals += 1;
        for ((c, run), psi) in self.log_cusum.iter_mut().zip(&mut self.runs).zip(grid) {
            if *c <= 0.0 {
                // The CUSUM restarts: evidence before now no longer counts.
                *c = 0.0;
                *run = Run {
                    x: 0.0,
                    n: 0.0,
                    since: start_ms,
                };
            }
            *c += log_lr(x, y, p0, *psi);
            run.x += x;
            run.n += x + y;
        }
    }

    /// ln of the detector's statistic (the mean of the CUSUMs).
    pub fn log_e(&self) -> f64 {
        log_mean_exp(&self.log_cusum)
    }

    /// The run of the alternative holding the most evidence: the stretch of
    /// data the detector is reacting to.
    pub fn strongest_run(&self) -> Option<Run> {
        self.log_cusum
            .iter()
            .zip(&self.runs)
            .max_by(|a, b| a.0.total_cmp(b.0))
            .map(|(_, r)| *r)
    }
}

/// ln of the e-detector's threshold after `t` intervals with data, for a
/// false-alarm budget `alpha` and a nominal horizon of `t0` intervals.
///
/// Epoch `i` covers intervals up to `T_i = t0 · 2^i` and gets the budget
/// `α / 2^(i+1)` (the budgets sum to α), so its threshold is
/// `T_i · 2^(i+1) / α`: by the Shiryaev–Roberts bound, the chance of a false
/// alarm within epoch `i` is at most its budget, and within the whole
/// rollout at most `alpha`, however long it runs.
pub fn detector_log_threshold(t: u64, t0: u64, alpha: f64) -> f64 {
    let t0 = t0.max(1) as f64;
    let t = (t.max(1)) as f64;
    let epoch = if t <= t0 { 0.0 } else { (t / t0).log2().ceil() };
    t0.ln() + (2.0 * epoch + 1.0) * std::f64::consts::LN_2 - alpha.ln()
}

/// The lowest `p0` the data of `x` successes in `n` trials still shows `p`
/// to be above at level `alpha` (0 when they show nothing): an
/// anytime-valid lower confidence bound.
pub fn lower_bound(x: f64, n: f64, alpha: f64) -> f64 {
    let need = -alpha.ln();
    if n <= 0.0 || x <= 0.0 {
        return 0.0;
    }
    let estimate = (x / n).min(P_MAX);
    if log_e_value(Direction::Above, x, n, P_MIN) < need {
        return 0.0;
    }
    // The evidence falls as p0 rises towards the estimate.
    bisect(P_MIN, estimate, |p0| {
        log_e_value(Direction::Above, x, n, p0) >= need
    })
}

/// The highest `p0` the data still shows `p` to be below at level `alpha`
/// (1 when they show nothing): an anytime-valid upper confidence bound.
pub fn upper_bound(x: f64, n: f64, alpha: f64) -> f64 {
    let need = -alpha.ln();
    if n <= 0.0 {
        return 1.0;
    }
    let estimate = (x / n).max(P_MIN);
    if log_e_value(Direction::Below, x, n, P_MAX) < need {
        return 1.0;
    }
    // Shown below every p0 from the bound upwards: find the smallest.
    1.0 - bisect(1.0 - P_MAX, 1.0 - estimate, |q| {
        log_e_value(Direction::Below, x, n, 1.0 - q) >= need
    })
}

/// The largest `v` in `[lo, hi]` with `holds(v)`, given `holds(lo)` and that
/// `holds` is true below some point and false above it (in log-odds steps).
fn bisect(lo: f64, hi: f64, holds: impl Fn(f64) -> bool) -> f64 {
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let inv = |l: f64| 1.0 / (1.0 + (-l).exp());
    let (mut a, mut b) = (logit(lo), logit(hi));
    if holds(hi) {
        return hi;
    }
    // 32 halvings of a log-odds range: far finer than any display needs.
    for _ in 0..32 {
        let mid = 0.5 * (a + b);
        if holds(inv(mid)) {
            a = mid;
        } else {
            b = mid;
        }
    }
    inv(a)
}

/// Kullback–Leibler divergence between Bernoulli(p) and Bernoulli(q), in nats.
pub fn kl_bernoulli(p: f64, q: f64) -> f64 {
    let (p, q) = (p.clamp(0.0, 1.0), clamp(q));
    let term = |a: f64, b: f64| if a > 0.0 { a * (a / b).ln() } else { 0.0 };
    term(p, q) + term(1.0 - p, 1.0 - q)
}

/// About how many trials a test needs in all to reach `log_threshold` if
/// the true probability is `p` and the null `p0`: the evidence grows by
/// `KL(p ‖ p0)` per trial at the best alternative, less the mixture's cost.
/// `None` when `p` is on the null's side (it never gets there).
pub fn trials_needed(direction: Direction, p: f64, p0: f64, log_threshold: f64) -> Option<f64> {
    let on_side = match direction {
        Direction::Above => p > p0,
        Direction::Below => p < p0,
    };
    if !on_side {
        return None;
    }
    let per_trial = kl_bernoulli(p, p0);
    (per_trial > 0.0).then(|| (log_threshold + (direction.grid().len() as f64).ln()) / per_trial)
}

#[cfg(test)]
mod tests {
    use rand::{RngExt, SeedableRng};
    use rand_distr::{Binomial, Distribution, Poisson};
    use statrs::distribution::{Beta, ContinuousCDF};

    use super::*;

    // Reference values computed independently with NumPy/SciPy
    // (`scipy.special.logsumexp` over the same grids; bounds with `brentq`).
    #[test]
    fn e_values_match_an_independent_computation() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1.0);
        assert!(close(
            log_e_value(Direction::Above, 5.0, 20.0, 0.02),
            6.914514170550891
        ));
        assert!(close(
            log_e_value(Direction::Below, 0.0, 1000.0, 0.01),
            7.574452791063973
        ));
        assert!(close(
            log_e_value(Direction::Above, 30.0, 1000.0, 0.02),
            0.908135228585653
        ));
        assert!(close(
            log_e_value(Direction::Below, 3.0, 4000.0, 0.01),
            27.654253602866003
        ));
    }

    #[test]
    fn bounds_match_an_independent_computation() {
        assert!((lower_bound(40.0, 1000.0, 0.01) - 0.021845912100333185).abs() < 1e-9);
        assert!((upper_bound(3.0, 4000.0, 0.01) - 0.003270699615697154).abs() < 1e-9);
    }

    #[test]
    fn anytime_bounds_are_wider_than_a_fixed_sample_clopper_pearson_interval() {
        // Valid at every look, so never narrower than the one-look exact interval.
        for (x, n) in [(1.0, 50.0), (7.0, 300.0), (40.0, 1000.0), (250.0, 10_000.0)] {
            let alpha: f64 = 0.01;
            let cp_lower = Beta::new(x, n - x + 1.0).expect("beta").inverse_cdf(alpha);
            let cp_upper = Beta::new(x + 1.0, n - x)
                .expect("beta")
                .inverse_cdf(1.0 - alpha);
            assert!(lower_bound(x, n, alpha) <= cp_lower, "{x}/{n}");
            assert!(upper_bound(x, n, alpha) >= cp_upper, "{x}/{n}");
            assert!(lower_bound(x, n, alpha) < x / n && x / n < upper_bound(x, n, alpha));
        }
    }

    #[test]
    fn an_e_process_looked_at_every_interval_crosses_under_the_null_at_most_alpha_of_the_time() {
        // 4,000 healthy canaries at exactly the threshold, looked at after each
        // of 200 intervals: the false-alarm share stays below α plus 4σ of
        // its sampling error (a peeking z-test would be far above).
        let alpha: f64 = 0.05;
        let runs = 4_000;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut crossed = 0;
        for _ in 0..runs {
            let mut m = Mixture::new(Direction::Above);
            for _ in 0..200 {
                let n = Poisson::new(20.0).expect("rate").sample(&mut rng);
                let x = Binomial::new(n as u64, 0.02).expect("p").sample(&mut rng) as f64;
                m.add(Direction::Above, x, n - x, 0.02);
                if m.log_e() >= -alpha.ln() {
                    crossed += 1;
                    break;
                }
            }
        }
        let share = f64::from(crossed) / f64::from(runs);
        let sigma = (alpha * (1.0 - alpha) / f64::from(runs)).sqrt();
        assert!(share <= alpha + 4.0 * sigma, "false alarms {share}");
    }

    #[test]
    fn the_detector_forgets_a_long_healthy_history_when_a_fault_starts() {
        // 2,000 intervals at 0.5% errors, then 25%: the detector needs about
        // as many faulty requests as when the fault is there from the start.
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let faulty_requests_to_alarm = |history: usize, rng: &mut rand::rngs::StdRng| {
            let mut d = Detector::default();
            for i in 0..history {
                let x = f64::from(u8::from(rng.random_bool(0.005)));
                d.add(Direction::Above, x, 20.0 - x, 0.02, i as u64);
            }
            let mut faulty = 0.0;
            loop {
                let x = Binomial::new(20, 0.25).expect("p").sample(rng) as f64;
                d.add(Direction::Above, x, 20.0 - x, 0.02, 0);
                faulty += 20.0;
                if d.log_e() >= detector_log_threshold(d.intervals, 180, 0.0025) {
                    return faulty;
                }
            }
        };
        let mean = |history, rng: &mut rand::rngs::StdRng| {
            (0..200)
                .map(|_| faulty_requests_to_alarm(history, rng))
                .sum::<f64>()
                / 200.0
        };
        let fresh = mean(0, &mut rng);
        let late = mean(2_000, &mut rng);
        assert!(late <= fresh * 1.5 + 20.0, "fresh {fresh}, late {late}");
    }

    #[test]
    fn the_detector_threshold_grows_by_epochs_and_spends_alpha_in_halves() {
        let base = detector_log_threshold(1, 100, 0.01);
        assert!((base - (200.0f64 / 0.01).ln()).abs() < 1e-12);
        assert_eq!(detector_log_threshold(100, 100, 0.01), base);
        // Epoch 1 (up to 200 intervals): T·2^3/α.
        assert!(
            (detector_log_threshold(101, 100, 0.01) - (100.0f64 * 8.0 / 0.01).ln()).abs() < 1e-12
        );
        // Σ over epochs of T_i / c_i = α (1/2 + 1/4 + …).
        let spent: f64 = (0..30)
            .map(|i| {
                let t = 100u64 << i;
                t as f64 / detector_log_threshold(t, 100, 0.01).exp()
            })
            .sum();
        assert!((spent - 0.01).abs() < 1e-9, "{spent}");
    }

    #[test]
    fn trials_needed_follow_the_information_per_trial() {
        assert_eq!(trials_needed(Direction::Below, 0.02, 0.01, 4.6), None);
        let n = trials_needed(Direction::Above, 0.02, 0.01, 6.0).expect("on side");
        // KL(2% ‖ 1%) ≈ 0.00376 nats per request.
        assert!((n - (6.0 + 7f64.ln()) / kl_bernoulli(0.02, 0.01)).abs() < 1e-6);
        assert!(n > 1_500.0 && n < 3_000.0, "{n}");
    }
}
