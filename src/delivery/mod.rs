//! Delivery metrics from the decision log (pure): the four figures a
//! platform team reports, per rollout and overall, over a period.
//!
//! The log is cut into attempts (see [`attempts`]); an attempt counts in the
//! period in which it **ended**.
//!
//! * **Deployment frequency**: promotions per day.
//! * **Change failure rate**: rolled back ÷ finished, where finished =
//!   promoted + rolled back + aborted (superseded attempts are not finished;
//!   none finished: no rate).
//! * **Time to restore**: from the fault's evidence to weight 0 (the
//!   rollback, which cuts the canary's traffic first). The fault's evidence
//!   begins at the `since` of the rollback record's failed gates judged by a
//!   change detector (abort conditions on counts); otherwise at the first
//!   record of the attempt that counted a failure (a breach, a failed
//!   promotion gate, inconclusive data) since its last passed step; otherwise
//!   at the rollback itself.
//! * **Lead time through the rollout**: from the attempt's start to its
//!   promotion; a `retry` counts from the start of the version's first
//!   attempt (the rolled-back one it retries), so the time lost to the
//!   failure is in it.

pub mod attempts;
pub mod gauges;

use std::collections::BTreeMap;

use serde::Serialize;

pub use attempts::{Attempt, End, attempts};

use crate::engine::{DecisionRecord, Timestamp};
use crate::spec::model::RolloutId;

/// The daily series covers at most this many days (the period's last ones).
pub const MAX_DAYS: u64 = 400;
const DAY_MS: u64 = 86_400_000;

/// A period `[since, until)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    since: Timestamp,
    until: Timestamp,
}

/// An empty or backwards period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("until ({until}) must be after since ({since})")]
pub struct PeriodError {
    /// The start.
    pub since: Timestamp,
    /// The end.
    pub until: Timestamp,
}

impl Period {
    /// `[since, until)`, not empty.
    pub fn new(since: Timestamp, until: Timestamp) -> Result<Period, PeriodError> {
        if until <= since {
            return Err(PeriodError { since, until });
        }
        Ok(Period { since, until })
    }

    /// The trailing `days` before `now`.
    pub fn trailing(now: Timestamp, days: u64) -> Period {
        let ms = days.clamp(1, MAX_DAYS) * DAY_MS;
        Period {
            since: Timestamp::from_millis(now.millis().saturating_sub(ms)),
            until: now,
        }
    }

    /// The start.
    pub fn since(&self) -> Timestamp {
        self.since
    }

    /// The end (excluded).
    pub fn until(&self) -> Timestamp {
        self.until
    }

    fn contains(&self, t: Timestamp) -> bool {
        self.since <= t && t < self.until
    }

    fn days(&self) -> f64 {
        self.until.since(self.since).as_secs_f64() / 86_400.0
    }
}

/// Durations over a set of attempts.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Durations {
    /// How many.
    pub count: u64,
    /// Their median, in seconds.
    pub median_seconds: Option<f64>,
    /// Their mean, in seconds.
    pub mean_seconds: Option<f64>,
    /// The longest, in seconds.
    pub max_seconds: Option<f64>,
}

impl Durations {
    fn of(mut seconds: Vec<f64>) -> Durations {
        if seconds.is_empty() {
            return Durations::default();
        }
        seconds.sort_by(f64::total_cmp);
        let n = seconds.len();
        let median = if n % 2 == 1 {
            seconds[n / 2]
        } else {
            (seconds[n / 2 - 1] + seconds[n / 2]) / 2.0
        };
        Durations {
            count: n as u64,
            median_seconds: Some(median),
            mean_seconds: Some(seconds.iter().sum::<f64>() / n as f64),
            max_seconds: seconds.last().copied(),
        }
    }
}

/// The figures of one rollout, or of all.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Promotions per day.
    pub deployments_per_day: f64,
    /// Rolled back ÷ finished; none when nothing finished.
    pub change_failure_rate: Option<f64>,
    /// From the fault's evidence to weight 0, over rollbacks.
    pub time_to_restore: Durations,
    /// From start to promotion, over promotions.
    pub lead_time: Durations,
    /// Attempts started in the period.
    pub started: u64,
    /// Promoted in the period.
    pub promoted: u64,
    /// Rolled back in the period.
    pub rolled_back: u64,
    /// Aborted in the period.
    pub aborted: u64,
    /// Promoted + rolled back + aborted.
    pub finished: u64,
    /// Replaced by a newer version in the period (not finished).
    pub superseded: u64,
    /// In flight at the end of the period.
    pub in_flight: u64,
}

impl Figures {
    fn of<'a>(attempts: impl Iterator<Item = &'a Attempt>, period: &Period) -> Figures {
        let mut f = Figures::default();
        let (mut lead, mut restore) = (Vec::new(), Vec::new());
        for a in attempts {
            if a.started.is_some_and(|t| period.contains(t)) {
                f.started += 1;
            }
            if !a.ended.is_some_and(|t| period.contains(t)) {
                if a.end == End::InFlight {
                    f.in_flight += 1;
                }
                continue;
            }
            match a.end {
                End::Promoted => f.promoted += 1,
                End::RolledBack => f.rolled_back += 1,
                End::Aborted => f.aborted += 1,
                End::Superseded => f.superseded += 1,
                End::InFlight => {}
            }
            lead.extend(a.lead_time_seconds());
            restore.extend(a.time_to_restore_seconds());
        }
        f.finished = f.promoted + f.rolled_back + f.aborted;
        f.deployments_per_day = f.promoted as f64 / period.days();
        f.change_failure_rate = (f.finished > 0).then(|| f.rolled_back as f64 / f.finished as f64);
        f.lead_time = Durations::of(lead);
        f.time_to_restore = Durations::of(restore);
        f
    }
}

/// One rollout's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RolloutFigures {
    /// `namespace/name`.
    pub rollout: String,
    /// Its figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// Attempts that ended on one UTC day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Day {
    /// `2026-11-24`.
    pub day: String,
    /// Promoted that day.
    pub promoted: u64,
    /// Rolled back that day.
    pub rolled_back: u64,
    /// Aborted that day.
    pub aborted: u64,
}

/// An attempt that ended in the period, with its figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finished {
    /// The attempt.
    #[serde(flatten)]
    pub attempt: Attempt,
    /// Start (of the version's first attempt) to promotion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lead_time_seconds: Option<f64>,
    /// The fault's evidence to weight 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_to_restore_seconds: Option<f64>,
}

/// The delivery metrics of a period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// The start.
    pub since: Timestamp,
    /// The end (excluded).
    pub until: Timestamp,
    /// Its length in days.
    pub days: f64,
    /// Every rollout together.
    pub overall: Figures,
    /// Each rollout with an attempt in the period, by name.
    pub rollouts: Vec<RolloutFigures>,
    /// Promoted, rolled back and aborted per UTC day, oldest first (the
    /// last [`MAX_DAYS`] days of the period at most).
    pub daily: Vec<Day>,
    /// The attempts that ended in the period, in the order they ended.
    pub attempts: Vec<Finished>,
}

/// The delivery metrics of `period` from decision records (those of the
/// period and, for lead times, back to the start of the attempts then in
/// flight; records after the period are ignored).
pub fn report(records: &[(RolloutId, DecisionRecord)], period: Period) -> Report {
    let within: Vec<(RolloutId, DecisionRecord)> = records
        .iter()
        .filter(|(_, r)| r.at < period.until)
        .cloned()
        .collect();
    let all = attempts(&within);
    let relevant: Vec<&Attempt> = all
        .iter()
        .filter(|a| {
            a.end == End::InFlight
                || a.ended.is_some_and(|t| period.contains(t))
                || a.started.is_some_and(|t| period.contains(t))
        })
        .collect();
    let mut per_rollout: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for a in &relevant {
        per_rollout.entry(a.rollout.as_str()).or_default().push(a);
    }
    let rollouts = per_rollout
        .into_iter()
        .map(|(rollout, list)| RolloutFigures {
            rollout: rollout.to_string(),
            figures: Figures::of(list.into_iter(), &period),
        })
        .collect();
    let mut finished: Vec<Finished> = relevant
        .iter()
        .filter(|a| a.ended.is_some_and(|t| period.contains(t)))
        .map(|a| Finished {
            attempt: (*a).clone(),
            lead_time_seconds: a.lead_time_seconds(),
            time_to_restore_seconds: a.time_to_restore_seconds(),
        })
        .collect();
    finished.sort_by_key(|f| f.attempt.ended);
    Report {
        since: period.since,
        until: period.until,
        days: period.days(),
        overall: Figures::of(relevant.iter().copied(), &period),
        rollouts,
        daily: daily(&finished, &period),
        attempts: finished,
    }
}

/// One entry per UTC day the period touches (its last [`MAX_DAYS`]).
fn daily(finished: &[Finished], period: &Period) -> Vec<Day> {
    let last = (period.until.millis().saturating_sub(1)) / DAY_MS;
    let first = (period.since.millis() / DAY_MS).max(last.saturating_sub(MAX_DAYS - 1));
    let mut days: Vec<Day> = (first..=last)
        .map(|d| Day {
            day: Timestamp::from_millis(d * DAY_MS)
                .to_string()
                .chars()
                .take(10)
                .collect(),
            promoted: 0,
            rolled_back: 0,
            aborted: 0,
        })
        .collect();
    for f in finished {
        let Some(at) = f.attempt.ended else { continue };
        let Some(day) = (at.millis() / DAY_MS)
            .checked_sub(first)
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| days.get_mut(i))
        else {
            continue;
        };
        match f.attempt.end {
            End::Promoted => day.promoted += 1,
            End::RolledBack => day.rolled_back += 1,
            End::Aborted => day.aborted += 1,
            End::Superseded | End::InFlight => {}
        }
    }
    days
}
