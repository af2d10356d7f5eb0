//! When to try an alert again: backoff, `Retry-After`, and when to give up.
//! Pure; the delivery task applies it.

use std::time::{Duration, SystemTime};

use crate::engine::Timestamp;
use crate::ports::Delivery;

/// Retry and timeout settings.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Delay after the first failure; doubled after each further one.
    pub first: Duration,
    /// The longest delay between attempts.
    pub max: Duration,
    /// Attempts before giving up.
    pub attempts: u32,
    /// How long one request may take.
    pub timeout: Duration,
    /// The longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // 12 attempts span about 20 minutes of backoff: a chat outage of that length.
        RetryPolicy {
            first: Duration::from_secs(1),
            max: Duration::from_secs(300),
            attempts: 12,
            timeout: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(3600),
        }
    }
}

/// How one attempt went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Accepted,
    /// Worth another try (timeout, connection, 408, 429, 5xx, secret missing).
    Transient {
        /// What went wrong (no secrets).
        error: String,
        /// The receiver's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (other 4xx: a revoked webhook, a refused payload).
    Permanent {
        /// What went wrong (no secrets).
        error: String,
    },
}

/// What to store after an attempt: `attempts` made before it, `jitter` in
/// [0, 1) spreading retries of many alerts apart.
pub fn next_step(
    policy: &RetryPolicy,
    attempts: u32,
    attempt: Attempt,
    now: Timestamp,
    jitter: f64,
) -> Delivery {
    match attempt {
        Attempt::Accepted => Delivery::Delivered,
        Attempt::Permanent { error } => Delivery::GaveUp { error },
        Attempt::Transient { error, .. } if attempts + 1 >= policy.attempts => Delivery::GaveUp {
            error: format!("{error} (after {} attempts)", attempts + 1),
        },
        Attempt::Transient { error, retry_after } => {
            let backoff = policy
                .first
                .saturating_mul(1u32 << attempts.min(20))
                .min(policy.max)
                .mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0));
            // The receiver's Retry-After, never sooner than our own backoff
            // (a `Retry-After: 0` must not burn every attempt in a second).
            let delay = match retry_after {
                Some(d) => d.min(policy.max_retry_after).max(backoff),
                None => backoff,
            };
            Delivery::Retry {
                retry_at: now.plus(delay),
                error,
            }
        }
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
            attempts: 5,
            ..RetryPolicy::default()
        }
    }

    fn transient(retry_after: Option<Duration>) -> Attempt {
        Attempt::Transient {
            error: "HTTP 503".into(),
            retry_after,
        }
    }

    fn delay(d: &Delivery, now: Timestamp) -> Duration {
        match d {
            Delivery::Retry { retry_at, .. } => retry_at.since(now),
            other => panic!("not a retry: {other:?}"),
        }
    }

    #[test]
    fn failures_back_off_doubling_up_to_the_cap_then_give_up_at_the_limit() {
        let now = Timestamp::from_millis(1_000_000);
        let delays: Vec<Duration> = (0..4)
            .map(|n| delay(&next_step(&policy(), n, transient(None), now, 0.5), now))
            .collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8].map(Duration::from_secs),
            "no jitter at 0.5"
        );
        let capped = next_step(&policy(), 3, transient(None), now, 0.5);
        assert!(delay(&capped, now) <= Duration::from_secs(60));
        assert!(matches!(
            next_step(&policy(), 4, transient(None), now, 0.5),
            Delivery::GaveUp { error } if error.contains("after 5 attempts")
        ));
        let far = RetryPolicy {
            attempts: 100,
            ..policy()
        };
        assert_eq!(
            delay(&next_step(&far, 30, transient(None), now, 0.5), now),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn retry_after_wins_over_backoff_within_its_cap() {
        let now = Timestamp::from_millis(1_000_000);
        let d = next_step(
            &policy(),
            0,
            transient(Some(Duration::from_secs(30))),
            now,
            0.0,
        );
        assert_eq!(delay(&d, now), Duration::from_secs(30));
        let d = next_step(
            &policy(),
            0,
            transient(Some(Duration::from_secs(99_999))),
            now,
            0.0,
        );
        assert_eq!(delay(&d, now), Duration::from_secs(3600));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn permanent_refusals_are_given_up_on_the_first_attempt() {
        let now = Timestamp::from_millis(0);
        let d = next_step(
            &policy(),
            0,
            Attempt::Permanent {
                error: "HTTP 404: no_service".into(),
            },
            now,
            0.5,
        );
        assert_eq!(
            d,
            Delivery::GaveUp {
                error: "HTTP 404: no_service".into()
            }
        );
    }
}
