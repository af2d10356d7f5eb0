//! Thresholds proposed from the stable version's current values: a
//! promotion gate at twice today's value (never below a floor, so a
//! perfectly healthy service is not held to zero), an abort condition well
//! above it. Values are rounded *up* to two significant digits, so a gate is
//! never tighter than the rule.

/// The floor of the error-rate promotion gate (the seed's 1%).
pub const ERROR_FLOOR: f64 = 0.01;
/// The floor of the p99 promotion gate, seconds.
pub const LATENCY_FLOOR: f64 = 0.1;
/// Promotion gate = this × today's value (or the floor).
pub const PROMOTION_FACTOR: f64 = 2.0;
/// Abort condition = this × the promotion gate, for error rates (the seed's 1% → 2%).
pub const ERROR_ABORT_FACTOR: f64 = 2.0;
/// Abort condition = this × the promotion gate, for latency (the seed's 200ms → 500ms).
pub const LATENCY_ABORT_FACTOR: f64 = 2.5;

/// A proposed gate pair and how it was reached.
#[derive(Clone, Debug, PartialEq)]
pub struct Proposal {
    /// The stable version's value now.
    pub measured: f64,
    /// The promotion gate (`_less_than`).
    pub promotion: f64,
    /// The abort condition (`_greater_than`).
    pub abort: f64,
    /// True when the floor, not the measured value, set the promotion gate.
    pub floored: bool,
}

/// The proposal for the error rate (a ratio).
pub fn error_rate(measured: f64) -> Proposal {
    // In percent, so the rounding is on the digits people read.
    let doubled = PROMOTION_FACTOR * measured * 100.0;
    let floored = doubled <= ERROR_FLOOR * 100.0;
    let promotion = round_up(doubled.max(ERROR_FLOOR * 100.0));
    Proposal {
        measured,
        promotion: promotion / 100.0,
        abort: round_up(promotion * ERROR_ABORT_FACTOR) / 100.0,
        floored,
    }
}

/// The proposal for the p99 latency (seconds).
pub fn latency(measured: f64) -> Proposal {
    // In milliseconds, the unit of the gate.
    let doubled = PROMOTION_FACTOR * measured * 1000.0;
    let floored = doubled <= LATENCY_FLOOR * 1000.0;
    let promotion = round_up(doubled.max(LATENCY_FLOOR * 1000.0)).max(1.0);
    Proposal {
        measured,
        promotion: promotion / 1000.0,
        abort: round_up(promotion * LATENCY_ABORT_FACTOR) / 1000.0,
        floored,
    }
}

/// `x` rounded up to two significant digits (`0.243` → `0.25`, `169` → `170`).
pub fn round_up(x: f64) -> f64 {
    if x <= 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.log10().floor() as i32;
    let step = 10f64.powi(magnitude - 1);
    // Tolerate float noise just above an exact multiple (2 × 0.1 = 0.2000…01).
    let steps = (x / step - 1e-9).ceil();
    let rounded = steps * step;
    // Keep the printed form short (0.25, not 0.25000000000000006).
    (rounded * 1e9).round() / 1e9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_service_gets_the_seed_thresholds() {
        let e = error_rate(0.0);
        assert_eq!((e.promotion, e.abort, e.floored), (0.01, 0.02, true));
        let l = latency(0.045);
        assert_eq!((l.promotion, l.abort, l.floored), (0.1, 0.25, true));
    }

    #[test]
    fn a_noisy_service_gets_twice_its_values_rounded_up() {
        let e = error_rate(0.0502);
        assert_eq!((e.promotion, e.abort, e.floored), (0.11, 0.22, false));
        let l = latency(0.3123);
        assert_eq!((l.promotion, l.abort), (0.63, 1.6));
    }

    #[test]
    fn rounding_up_keeps_two_significant_digits_and_never_goes_down() {
        assert_eq!(round_up(0.243), 0.25);
        assert_eq!(round_up(169.0), 170.0);
        assert_eq!(round_up(200.0), 200.0);
        assert_eq!(round_up(1000.1), 1100.0);
        for x in [0.0123, 0.5, 7.77, 123.4, 99.99] {
            assert!(round_up(x) >= x && round_up(x) <= x * 1.1 + 1e-12, "{x}");
        }
    }
}
