//! Typed values of the deploy file: traffic weights, percentages, durations,
//! latencies and gate thresholds, each parsed from the text users write.
//!
//! Every parser here is strict on purpose: `10 minutes`, `5 %` and a bare `200`
//! for a latency are rejected with a hint rather than guessed at.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value could not be read. `Display` gives the message; [`UnitError::hint`]
/// says how to write it instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// A percentage written with a space or without digits.
    #[error("`{0}` is not a percentage")]
    BadPercent(String),
    /// A number given where a percentage was expected.
    #[error("`{0}` has no percent sign")]
    PercentWithoutSign(String),
    /// A weight with more than two decimals.
    #[error("`{0}` is more precise than canaryd routes (0.01%)")]
    WeightTooPrecise(String),
    /// A weight outside 0–100%.
    #[error("weight {0} is outside 0%–100%")]
    WeightOutOfRange(String),
    /// A duration that is not `<number><unit>`.
    #[error("`{0}` is not a duration")]
    BadDuration(String),
    /// A number without a unit where a duration or latency was expected.
    #[error("`{0}` has no unit")]
    MissingUnit(String),
    /// A threshold that is neither a number, a percentage nor a latency.
    #[error("`{0}` is not a threshold")]
    BadThreshold(String),
}

impl UnitError {
    /// How to write the value correctly.
    pub fn hint(&self) -> String {
        match self {
            UnitError::BadPercent(s) => match compact(s) {
                Some(fixed) if fixed != *s => format!("write it without spaces: `{fixed}`"),
                _ => "write a number followed by `%`, e.g. `5%` or `0.5%`".into(),
            },
            UnitError::PercentWithoutSign(s) => format!("add a percent sign: `{s}%`"),
            UnitError::WeightTooPrecise(_) => "use at most two decimals, e.g. `0.25%`".into(),
            UnitError::WeightOutOfRange(_) => "a canary weight is between `0%` and `100%`".into(),
            UnitError::BadDuration(s) => match compact_duration(s) {
                Some(fixed) => format!("write `{fixed}` (units: ms, s, m, h)"),
                None => {
                    "write a number and a unit without spaces, e.g. `90s`, `10m`, `1h30m`".into()
                }
            },
            UnitError::MissingUnit(s) => {
                format!("add a unit: `{s}ms` or `{s}s` (units: ms, s, m, h)")
            }
            UnitError::BadThreshold(_) => {
                "write a percentage (`1%`), a latency (`200ms`, `1.5s`) or a plain number".into()
            }
        }
    }
}

fn compact(s: &str) -> Option<String> {
    let joined: String = s.split_whitespace().collect();
    (!joined.is_empty()).then_some(joined)
}

/// Turns `10 minutes` into `10m` when the words are a known unit.
fn compact_duration(s: &str) -> Option<String> {
    let mut words = s.split_whitespace();
    let number = words.next()?;
    let unit = words.next()?;
    if words.next().is_some() || number.parse::<f64>().is_err() {
        return None;
    }
    let short = match unit {
        "ms" | "millisecond" | "milliseconds" => "ms",
        "s" | "sec" | "secs" | "second" | "seconds" => "s",
        "m" | "min" | "mins" | "minute" | "minutes" => "m",
        "h" | "hr" | "hrs" | "hour" | "hours" => "h",
        _ => return None,
    };
    Some(format!("{number}{short}"))
}

/// Reads `5%`, `0.5%` or `100%` as a number of percent (5.0, 0.5, 100.0).
pub fn parse_percent(text: &str) -> Result<f64, UnitError> {
    let t = text.trim();
    let Some(number) = t.strip_suffix('%') else {
        return if is_plain_number(t) {
            Err(UnitError::PercentWithoutSign(t.to_string()))
        } else {
            Err(UnitError::BadPercent(t.to_string()))
        };
    };
    if !is_plain_number(number) {
        return Err(UnitError::BadPercent(t.to_string()));
    }
    number
        .parse::<f64>()
        .map_err(|_| UnitError::BadPercent(t.to_string()))
}

/// `-?digits(.digits)?`, nothing else (no spaces, exponents or signs like `+`).
fn is_plain_number(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let mut parts = s.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

// === Weight ===

/// The share of traffic sent to the canary, 0%–100% in steps of 0.01%.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(u16);

impl Weight {
    /// No canary traffic.
    pub const ZERO: Weight = Weight(0);
    /// All traffic to the canary.
    pub const FULL: Weight = Weight(10_000);

    /// A weight from hundredths of a percent (`500` is 5%); `None` above 100%.
    pub fn from_basis_points(bp: u16) -> Option<Weight> {
        (bp <= 10_000).then_some(Weight(bp))
    }

    /// Hundredths of a percent.
    pub fn basis_points(self) -> u16 {
        self.0
    }

    /// The weight as a percentage (5.0 for 5%).
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }

    /// Parses `5%`, `0.5%`, `100%`.
    pub fn parse(text: &str) -> Result<Weight, UnitError> {
        let percent = parse_percent(text)?;
        if !(0.0..=100.0).contains(&percent) {
            return Err(UnitError::WeightOutOfRange(text.trim().to_string()));
        }
        let bp = percent * 100.0;
        if (bp - bp.round()).abs() > 1e-6 {
            return Err(UnitError::WeightTooPrecise(text.trim().to_string()));
        }
        // In range 0..=10_000 and integral, checked above.
        Ok(Weight(bp.round() as u16))
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (int, frac) = (self.0 / 100, self.0 % 100);
        match frac {
            0 => write!(f, "{int}%"),
            f2 if f2 % 10 == 0 => write!(f, "{int}.{}%", f2 / 10),
            f2 => write!(f, "{int}.{f2:02}%"),
        }
    }
}

/// Serialized as a number of percent (`5`, `0.5`), as the API shows it.
impl Serialize for Weight {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.percent())
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let percent = f64::deserialize(d)?;
        if !(0.0..=100.0).contains(&percent) {
            return Err(serde::de::Error::custom(format!(
                "weight {percent} is outside 0–100"
            )));
        }
        // In range, checked above.
        Ok(Weight((percent * 100.0).round() as u16))
    }
}

// === Durations and latencies ===

/// Parses a compact duration: `90s`, `10m`, `1h30m`, `250ms`, `1.5s`.
/// Spaces (`10 minutes`) and bare numbers are rejected.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let t = text.trim();
    if t.is_empty() || t.chars().any(char::is_whitespace) {
        return Err(UnitError::BadDuration(t.to_string()));
    }
    if is_plain_number(t) {
        return Err(UnitError::MissingUnit(t.to_string()));
    }
    if t.starts_with('-') {
        return Err(UnitError::BadDuration(t.to_string()));
    }
    // A single decimal with a unit (`1.5s`), which humantime does not read.
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    if number.contains('.') {
        let value: f64 = number
            .parse()
            .map_err(|_| UnitError::BadDuration(t.to_string()))?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(UnitError::BadDuration(t.to_string())),
        };
        return Duration::try_from_secs_f64(value * scale)
            .map_err(|_| UnitError::BadDuration(t.to_string()));
    }
    humantime::parse_duration(t).map_err(|_| UnitError::BadDuration(t.to_string()))
}

/// Formats a duration the way it is written in deploy files (`10m`, `1h30m`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string().replace(' ', "")
}

/// Formats a duration as a PromQL range (`30s`, `1m30s`, `250ms`).
pub fn promql_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

// === Thresholds ===

/// The value a gate compares against, as written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// A percentage, stored as a ratio (`1%` is 0.01).
    Ratio(f64),
    /// A latency (`200ms`, `1.5s`).
    Latency(Duration),
    /// A plain number in the metric's own unit.
    Number(f64),
}

impl Threshold {
    /// Parses a threshold written as text (`1%`, `200ms`, `1.5s`, `42`).
    pub fn parse(text: &str) -> Result<Threshold, UnitError> {
        let t = text.trim();
        if is_plain_number(t) {
            return t
                .parse()
                .map(Threshold::Number)
                .map_err(|_| UnitError::BadThreshold(t.to_string()));
        }
        if t.contains('%') {
            return parse_percent(t).map(|p| Threshold::Ratio(p / 100.0));
        }
        let starts_numeric = t.starts_with(|c: char| c.is_ascii_digit() || c == '.');
        match parse_duration(t) {
            Ok(d) => Ok(Threshold::Latency(d)),
            Err(e @ UnitError::BadDuration(_)) if starts_numeric && t.contains(' ') => Err(e),
            Err(_) => Err(UnitError::BadThreshold(t.to_string())),
        }
    }

    /// The value in the unit Prometheus reports (a ratio, seconds, or the number).
    pub fn value(self) -> f64 {
        match self {
            Threshold::Ratio(r) => r,
            Threshold::Latency(d) => d.as_secs_f64(),
            Threshold::Number(n) => n,
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Ratio(r) => write!(f, "{}%", trim_float(r * 100.0)),
            Threshold::Latency(d) => f.write_str(&format_duration(*d)),
            Threshold::Number(n) => f.write_str(&trim_float(*n)),
        }
    }
}

impl Serialize for Threshold {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Prints a float without trailing noise (`0.5`, `2`, `0.0125`).
pub fn trim_float(x: f64) -> String {
    let s = format!("{:.6}", x);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_read_whole_and_fractional_percentages() {
        assert_eq!(Weight::parse("5%").map(Weight::basis_points), Ok(500));
        assert_eq!(Weight::parse("0.5%").map(Weight::basis_points), Ok(50));
        assert_eq!(Weight::parse("100%"), Ok(Weight::FULL));
        assert_eq!(
            Weight::parse("12.25%").map(|w| w.to_string()),
            Ok("12.25%".into())
        );
        assert_eq!(
            Weight::parse("0.5%").map(|w| w.to_string()),
            Ok("0.5%".into())
        );
    }

    #[test]
    fn weights_reject_spaces_missing_signs_and_out_of_range_values() {
        assert_eq!(
            Weight::parse("5 %"),
            Err(UnitError::BadPercent("5 %".into()))
        );
        assert_eq!(
            UnitError::BadPercent("5 %".into()).hint(),
            "write it without spaces: `5%`"
        );
        assert_eq!(
            Weight::parse("5"),
            Err(UnitError::PercentWithoutSign("5".into()))
        );
        assert_eq!(
            Weight::parse("150%"),
            Err(UnitError::WeightOutOfRange("150%".into()))
        );
        assert_eq!(
            Weight::parse("-1%"),
            Err(UnitError::WeightOutOfRange("-1%".into()))
        );
        assert_eq!(
            Weight::parse("0.125%"),
            Err(UnitError::WeightTooPrecise("0.125%".into()))
        );
    }

    #[test]
    fn durations_are_compact_with_a_unit() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn durations_with_spaces_or_no_unit_are_rejected_with_a_fix() {
        let err = parse_duration("10 minutes").unwrap_err();
        assert_eq!(err, UnitError::BadDuration("10 minutes".into()));
        assert_eq!(err.hint(), "write `10m` (units: ms, s, m, h)");
        let err = parse_duration("200").unwrap_err();
        assert_eq!(err, UnitError::MissingUnit("200".into()));
        assert!(err.hint().contains("`200ms`"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn thresholds_keep_their_kind() {
        assert_eq!(Threshold::parse("1%"), Ok(Threshold::Ratio(0.01)));
        assert_eq!(
            Threshold::parse("200ms"),
            Ok(Threshold::Latency(Duration::from_millis(200)))
        );
        assert_eq!(Threshold::parse("1.5s").map(Threshold::value), Ok(1.5));
        assert_eq!(Threshold::parse("42"), Ok(Threshold::Number(42.0)));
        assert_eq!(Threshold::Ratio(0.005).to_string(), "0.5%");
        assert_eq!(
            Threshold::Latency(Duration::from_millis(200)).to_string(),
            "200ms"
        );
        assert!(Threshold::parse("fast").is_err());
    }

    #[test]
    fn promql_ranges_are_written_the_way_prometheus_reads_them() {
        assert_eq!(promql_duration(Duration::from_secs(30)), "30s");
        assert_eq!(promql_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(promql_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(promql_duration(Duration::from_millis(1500)), "1500ms");
    }
}
