//! Invariants shared by the scenarios, each returning `Ok(numbers)` when it
//! held and `Err(numbers and why)` when it broke.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::probe::{Outcome, Sample};
use crate::rig::decided_at;

/// Sequence numbers 1..n with no gap and none twice.
pub fn contiguous(log: &[Value]) -> Result<String, String> {
    let seqs: Vec<u64> = log.iter().filter_map(|d| d["seq"].as_u64()).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    if seqs == expected && seqs.len() == log.len() {
        Ok(format!("seq 1..{}", seqs.len()))
    } else {
        Err(format!("seqs {seqs:?}"))
    }
}

/// No decision taken twice: no two records of the same action to the same
/// step for the same canary version (a start, an advance, a promotion, a
/// rollback happens once per version).
pub fn nothing_twice(log: &[Value]) -> Result<String, String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut twice = Vec::new();
    for d in log {
        let action = d["action"].as_str().unwrap_or("?");
        if !matches!(
            action,
            "start" | "advance" | "promote" | "rollback" | "abort"
        ) {
            continue;
        }
        let key = (
            action.to_string(),
            d["step"].as_u64(),
            d["canary_version"].as_str().unwrap_or("").to_string(),
        );
        if !seen.insert(key.clone()) {
            twice.push(format!("{key:?} (seq {})", d["seq"]));
        }
    }
    if twice.is_empty() {
        Ok(format!("{} decisions, {} one-time", log.len(), seen.len()))
    } else {
        Err(format!("taken twice: {}", twice.join(", ")))
    }
}

/// The committed canary weight (0–1) for a request sent at `t`: the weight of
/// the last decision recorded at or before `t`, or of any decision within
/// `grace` before `t` if higher (a decision's time is the tick's, taken just
/// before its cut and commit, so a request in that instant may still see the
/// previous weight). 0 before the first decision.
pub fn committed_at(log: &[(SystemTime, f64)], t: SystemTime, grace: Duration) -> f64 {
    let mut w = 0.0;
    let mut recent: f64 = 0.0;
    for &(at, weight) in log {
        if at <= t {
            if t.duration_since(at).unwrap_or_default() < grace {
                recent = recent.max(w);
            }
            w = weight;
        }
    }
    w.max(recent)
}

/// The decision log as (time, weight 0–1), oldest first.
pub fn weights(log: &[Value]) -> Vec<(SystemTime, f64)> {
    log.iter()
        .filter_map(|d| Some((decided_at(d)?, d["weight"].as_f64()? / 100.0)))
        .collect()
}

/// Served weight never above the committed one. Requests are grouped by the
/// committed weight they were sent under; in each group the canary's share
/// must not exceed that weight by more than 4 binomial standard deviations of
/// the group's size (at weight 0: no canary answer at all).
pub fn served_within_committed(samples: &[Sample], log: &[Value]) -> Result<String, String> {
    let timeline = weights(log);
    let grace = Duration::from_secs(1);
    let mut groups: std::collections::BTreeMap<u64, (usize, usize)> = Default::default();
    for s in samples {
        let routed = matches!(s.outcome, Outcome::Stable | Outcome::Canary);
        if !routed {
            continue;
        }
        let w = committed_at(&timeline, s.sent, grace);
        let g = groups.entry((w * 1000.0).round() as u64).or_default();
        g.0 += 1;
        g.1 += usize::from(s.outcome == Outcome::Canary);
    }
    let mut parts = Vec::new();
    let mut broken = false;
    for (w, (n, k)) in &groups {
        let p = *w as f64 / 1000.0;
        let n_f = *n as f64;
        let allowed = n_f * p + 4.0 * (n_f * p * (1.0 - p)).sqrt();
        let over = *k as f64 > allowed.ceil();
        broken |= over;
        parts.push(format!(
            "{:.0}%: {k}/{n} canary (≤ {:.0}){}",
            p * 100.0,
            allowed.ceil(),
            if over { " OVER" } else { "" }
        ));
    }
    let text = parts.join("; ");
    if broken { Err(text) } else { Ok(text) }
}

/// A success rate during a disturbance no worse than a baseline's, within 3
/// standard errors of the difference (sized from both sample counts), and
/// at least `floor`.
pub fn rate_holds(
    what: &str,
    baseline: (usize, usize),
    during: (usize, usize),
    floor: f64,
) -> Result<String, String> {
    let (ok0, n0) = baseline;
    let (ok1, n1) = during;
    if n1 == 0 || n0 == 0 {
        return Err(format!("{what}: no samples (baseline {n0}, during {n1})"));
    }
    let p0 = ok0 as f64 / n0 as f64;
    let p1 = ok1 as f64 / n1 as f64;
    let pooled = (ok0 + ok1) as f64 / (n0 + n1) as f64;
    let se = (pooled * (1.0 - pooled) * (1.0 / n0 as f64 + 1.0 / n1 as f64)).sqrt();
    let tolerance = 3.0 * se;
    let text = format!(
        "{what}: {ok1}/{n1} ({:.2}%) vs baseline {ok0}/{n0} ({:.2}%), tolerance {:.2} pts",
        p1 * 100.0,
        p0 * 100.0,
        tolerance * 100.0
    );
    if p1 + tolerance >= p0 && p1 >= floor {
        Ok(text)
    } else {
        Err(text)
    }
}
