//! `canaryd backtest`: replays a deploy file's strategy against recorded
//! Prometheus history through the real engine, with the daemon's verdict rules.
//!
//! At each instant the daemon would have ticked (`from`, then every analysis
//! interval up to `to`), the replay plans the same queries the controller
//! plans (each track's counters, and the readings of custom gates), reads
//! their values at that instant from the history (one range query per
//! distinct query, `step` = the interval), and hands them to
//! [`engine::decide`](crate::engine::decide) with the canary ready. The
//! decisions it records are the ones the daemon would have taken.
//!
//! **Caveat.** History is what the traffic was at the weights used then: the
//! canary's share of requests in the data is used as it is, not the
//! strategy's weights. Verdicts on counts (error rate, latency) do not depend
//! on the share, but how soon evidence accumulates does.

pub mod history;
pub mod prometheus;
mod when;

use std::time::Duration;

use serde::Serialize;

use crate::engine::{
    DecisionRecord, Input, Observation, Phase, RolloutState, Timestamp, counts_needed, decide,
    reading_gates,
};
use crate::provider::{Answer, Answers, Batch, PlanError, plan_counts, plan_rollout, redact_url};
use crate::spec::model::DeploySpec;
use crate::spec::policy::PolicySet;
use crate::spec::units::Weight;
pub use history::{HistoryError, RangeSeries, RangeSource, Recorded, Span};
pub use prometheus::PrometheusHistory;
pub use when::{TimeError, parse_time};

/// The caveat every backtest states.
pub const CAVEAT: &str = "history is replayed as it was: the canary's share of requests in the data is used as it is, \
not this strategy's weights. Verdicts on counts (error rate, latency) do not depend on that share, \
but how soon the evidence is conclusive does (more canary requests, sooner)";

/// A backtest cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    /// The queries cannot be planned (no Prometheus, unknown policy or metric).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The history could not be read.
    #[error(transparent)]
    History(#[from] HistoryError),
    /// The span is empty or backwards.
    #[error("--to ({to}) is before --from ({from})")]
    Backwards {
        /// The start.
        from: Timestamp,
        /// The end.
        to: Timestamp,
    },
    /// The span has more ticks than a backtest replays.
    #[error(
        "{ticks} ticks from --from to --to at a {interval} interval; at most {MAX_TICKS} (a shorter span)"
    )]
    TooLong {
        /// Ticks asked for.
        ticks: u64,
        /// The analysis interval.
        interval: String,
    },
    /// There is nothing to roll out.
    #[error(
        "the canary version `{0}` is the stable version: nothing to roll out (--version-stable, --version-canary)"
    )]
    SameVersion(String),
}

/// Ticks a backtest replays at most (about 12 days at a 10 s interval).
pub const MAX_TICKS: u64 = 100_000;

/// How the replayed rollout ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Promoted at `at`.
    Promoted {
        /// When.
        at: Timestamp,
        /// Seconds after `--from`.
        after_seconds: f64,
    },
    /// Rolled back at `at`.
    RolledBack {
        /// When.
        at: Timestamp,
        /// Seconds after `--from`.
        after_seconds: f64,
        /// Why (the rollback's reason, with its evidence).
        reason: String,
    },
    /// Still in flight at `--to`.
    Undecided {
        /// The phase at `--to`.
        phase: Phase,
        /// The 1-based step at `--to`.
        step: usize,
        /// The canary weight the strategy would have reached.
        weight: Weight,
    },
}

/// What a backtest found.
#[derive(Clone, Debug, Serialize)]
pub struct Replay {
    /// `namespace/name`.
    pub rollout: String,
    /// The stable version replayed.
    pub stable_version: String,
    /// The canary version replayed.
    pub canary_version: String,
    /// Where the history came from (without credentials).
    pub prometheus: String,
    /// The first tick.
    pub from: Timestamp,
    /// The end of the span.
    pub to: Timestamp,
    /// Seconds between ticks (the analysis interval).
    pub interval_seconds: f64,
    /// Ticks replayed (up to the outcome).
    pub ticks: u64,
    /// What history can and cannot say.
    pub caveat: &'static str,
    /// Every decision the daemon would have recorded, in order.
    pub decisions: Vec<DecisionRecord>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Replays `spec` (its Prometheus is the one given, else `default_server`)
/// from `from` to `to` on the history `source` holds.
pub async fn replay<S: RangeSource>(
    spec: &DeploySpec,
    policies: &PolicySet,
    default_server: Option<&str>,
    source: &S,
    from: Timestamp,
    to: Timestamp,
) -> Result<Replay, BacktestError> {
    if to < from {
        return Err(BacktestError::Backwards { from, to });
    }
    if spec.canary.version == spec.stable.version {
        return Err(BacktestError::SameVersion(spec.canary.version.clone()));
    }
    let interval = spec.strategy.analysis.interval;
    let span = Span {
        from,
        to,
        step: interval,
    };
    if span.ticks() > MAX_TICKS {
        return Err(BacktestError::TooLong {
            ticks: span.ticks(),
            interval: crate::spec::units::format_duration(interval),
        });
    }
    let server = spec
        .prometheus
        .as_deref()
        .or(default_server)
        .ok_or(PlanError::NoServer)?;
    let mut history = History {
        spec,
        policies,
        server,
        source,
        span,
        recorded: Recorded::default(),
    };
    let mut state = RolloutState::new(spec, from);
    let mut decisions = Vec::new();
    let mut now = from;
    let mut ticks = 0;
    while now <= to {
        let obs = history.observe(&state, now).await?;
        ticks += 1;
        // A tick is never rejected: only commands are.
        if let Ok(d) = decide(spec, &state, &Input::Tick(obs), now) {
            decisions.extend(d.records().cloned());
            state = d.state;
        }
        if matches!(
            state.phase,
            Phase::Promoted | Phase::RolledBack | Phase::Aborted
        ) {
            break;
        }
        now = now.plus(interval);
    }
    let outcome = outcome(&state, &decisions, from);
    Ok(Replay {
        rollout: spec.id.to_string(),
        stable_version: spec.stable.version.clone(),
        canary_version: spec.canary.version.clone(),
        prometheus: redact_url(server),
        from,
        to,
        interval_seconds: interval.as_secs_f64(),
        ticks,
        caveat: CAVEAT,
        decisions,
        outcome,
    })
}

/// The history one replay reads, fetched as its ticks need it.
struct History<'a, S> {
    spec: &'a DeploySpec,
    policies: &'a PolicySet,
    server: &'a str,
    source: &'a S,
    span: Span,
    recorded: Recorded,
}

impl<S: RangeSource> History<'_, S> {
    /// What the controller would have measured at `now`: the same plan, its
    /// answers read from the history, the canary ready.
    async fn observe(
        &mut self,
        state: &RolloutState,
        now: Timestamp,
    ) -> Result<Observation, BacktestError> {
        let (spec, policies, server) = (self.spec, self.policies, Some(self.server));
        let mut batch = Batch::new();
        let gates = reading_gates(spec, state);
        let plan = plan_rollout(&mut batch, spec, policies, server, &gates)?;
        let counts = counts_needed(spec, state)
            .map(|needed| plan_counts(&mut batch, spec, policies, server, needed))
            .transpose()?;
        let queries = batch.queries();
        self.recorded
            .fetch(self.source, &queries, &self.span)
            .await?;
        let answers: Vec<Answer> = queries
            .iter()
            .map(|q| self.recorded.answer(q, now))
            .collect();
        let answers = Answers::new(&batch, answers);
        Ok(Observation {
            canary_ready: true,
            measurements: plan.measurements(&answers),
            counts: counts.map(|c| c.reading(&answers)),
        })
    }
}

fn outcome(state: &RolloutState, decisions: &[DecisionRecord], from: Timestamp) -> Outcome {
    let last = decisions.last();
    let at = last.map_or(from, |d| d.at);
    let after_seconds = at.since(from).as_secs_f64();
    match state.phase {
        Phase::Promoted => Outcome::Promoted { at, after_seconds },
        Phase::RolledBack | Phase::Aborted => Outcome::RolledBack {
            at,
            after_seconds,
            reason: last.map(|d| d.reason.clone()).unwrap_or_default(),
        },
        phase => Outcome::Undecided {
            phase,
            step: state.step + 1,
            weight: state.weight,
        },
    }
}

/// Seconds as a short duration (`12m40s`).
pub fn elapsed(seconds: f64) -> String {
    crate::spec::units::format_duration(Duration::from_secs(seconds.max(0.0).round() as u64))
}
