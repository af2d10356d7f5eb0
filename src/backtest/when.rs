//! The instants `--from` and `--to` accept: RFC 3339 (`2026-11-24T10:00:00Z`,
//! `2026-11-24T11:00:00+01:00`), `now`, or a time before now (`-2h`,
//! `now-90m`).

use std::time::Duration;

use crate::engine::time::Timestamp;
use crate::spec::units::parse_duration;

/// A time that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a time: write RFC 3339 (2026-11-24T10:00:00Z), `now`, or a time before now (-2h, now-90m)"
)]
pub struct TimeError(pub String);

/// Parses `text`, relative times counting back from `now`.
pub fn parse_time(text: &str, now: Timestamp) -> Result<Timestamp, TimeError> {
    let t = text.trim();
    let bad = || TimeError(t.to_string());
    if t == "now" {
        return Ok(now);
    }
    if let Some(ago) = t.strip_prefix("now-").or_else(|| t.strip_prefix('-')) {
        let d = parse_duration(ago).map_err(|_| bad())?;
        let ms = u64::try_from(d.as_millis()).map_err(|_| bad())?;
        return Ok(Timestamp::from_millis(now.millis().saturating_sub(ms)));
    }
    // An offset after the time of day (`+01:00`, `-05:30`) moves it to UTC.
    let (local, offset) = split_offset(t);
    let base = humantime::parse_rfc3339_weak(local).map_err(|_| bad())?;
    let utc = match offset {
        None => base,
        Some((ahead, d)) if ahead => base.checked_sub(d).ok_or_else(bad)?,
        Some((_, d)) => base.checked_add(d).ok_or_else(bad)?,
    };
    Ok(Timestamp::from_system(utc))
}

/// `(time without its offset, Some((ahead of UTC, offset)))`.
fn split_offset(t: &str) -> (&str, Option<(bool, Duration)>) {
    let Some(day_end) = t.find(['T', 't', ' ']) else {
        return (t, None);
    };
    let time = &t[day_end..];
    let Some(i) = time.rfind(['+', '-']) else {
        return (t, None);
    };
    let (sign, rest) = time[i..].split_at(1);
    let parts: Vec<&str> = rest.split(':').collect();
    let (Some(h), Some(m)) = (parts.first(), parts.get(1)) else {
        return (t, None);
    };
    match (h.parse::<u64>(), m.parse::<u64>()) {
        (Ok(h), Ok(m)) if parts.len() == 2 && h < 24 && m < 60 => (
            &t[..day_end + i],
            Some((sign == "+", Duration::from_secs(h * 3600 + m * 60))),
        ),
        _ => (t, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);

    fn at(text: &str) -> Result<Timestamp, TimeError> {
        parse_time(text, NOW)
    }

    #[test]
    fn rfc3339_times_are_read_in_utc_whatever_their_offset() {
        let utc = at("2025-03-04T10:00:00Z").expect("parses");
        assert_eq!(utc.millis(), 1_741_082_400_000);
        assert_eq!(at("2025-03-04T11:00:00+01:00"), Ok(utc));
        assert_eq!(at("2025-03-04T04:30:00-05:30"), Ok(utc));
        assert_eq!(
            at("2025-03-04T10:00:00.250Z").map(|t| t.millis()),
            Ok(1_741_082_400_250)
        );
    }

    #[test]
    fn relative_times_count_back_from_now() {
        assert_eq!(at("now"), Ok(NOW));
        assert_eq!(
            at("-2h").map(|t| NOW.since(t)),
            Ok(Duration::from_secs(7200))
        );
        assert_eq!(
            at("now-1h30m").map(|t| NOW.since(t)),
            Ok(Duration::from_secs(5400))
        );
    }

    #[test]
    fn anything_else_is_refused_with_the_forms_accepted() {
        for text in [
            "yesterday",
            "-2 hours",
            "2025-03-04",
            "+2h",
            "2025-13-01T00:00:00Z",
        ] {
            let e = at(text).expect_err(text);
            assert!(e.to_string().contains("RFC 3339"), "{e}");
        }
    }
}
