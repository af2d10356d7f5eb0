//! The delivery metrics on `/metrics`: gauges over the trailing 30 days,
//! per rollout, computed from the decision log when scraped (at most once
//! a minute; in between the last figures are served).
//!
//! * `canaryd_delivery_deployments_per_day{rollout}`
//! * `canaryd_delivery_change_failure_ratio{rollout}` (only with a finished attempt)
//! * `canaryd_delivery_time_to_restore_seconds{rollout}` (median, only with a rollback)
//! * `canaryd_delivery_lead_time_seconds{rollout}` (median, only with a promotion)
//! * `canaryd_delivery_finished_rollouts{rollout, outcome}` (`promoted`,
//!   `rolled_back`, `aborted`): the counts behind them, so the figures of
//!   all rollouts together are sums, e.g.
//!   `sum(canaryd_delivery_finished_rollouts{outcome="rolled_back"}) / sum(canaryd_delivery_finished_rollouts)`.
//!
//! Registered with `registry.register_collector(Box::new(DeliveryGauges::new(store)))`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{Period, Report, report};
use crate::engine::Timestamp;
use crate::ports::store::PeriodLog;

/// Days the gauges look back over.
pub const TRAILING_DAYS: u64 = 30;
/// How long computed figures are served before the log is read again.
const REFRESH: Duration = Duration::from_secs(60);

/// `{rollout}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabel {
    rollout: String,
}

/// `{rollout, outcome}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    rollout: String,
    outcome: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The delivery gauges, read from the decision log.
pub struct DeliveryGauges {
    store: Arc<dyn PeriodLog>,
    last: Mutex<Option<(Instant, Report)>>,
}

impl std::fmt::Debug for DeliveryGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryGauges").finish_non_exhaustive()
    }
}

impl DeliveryGauges {
    /// Gauges over `store`'s decision log.
    pub fn new(store: Arc<dyn PeriodLog>) -> DeliveryGauges {
        DeliveryGauges {
            store,
            last: Mutex::new(None),
        }
    }

    /// The figures of the trailing 30 days (recomputed at most once a
    /// minute; the previous ones when the log cannot be read).
    fn current(&self) -> Option<Report> {
        let mut last = match self.last.lock() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((at, r)) = last.as_ref()
            && at.elapsed() < REFRESH
        {
            return Some(r.clone());
        }
        let period = Period::trailing(Timestamp::from_system(SystemTime::now()), TRAILING_DAYS);
        match self.store.decisions_between(period.since(), period.until()) {
            Ok(records) => {
                let r = report(&records, period);
                *last = Some((Instant::now(), r.clone()));
                Some(r)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the decision log for delivery metrics");
                last.as_ref().map(|(_, r)| r.clone())
            }
        }
    }
}

fn encode_family<L, M>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    family: &Family<L, M>,
) -> Result<(), std::fmt::Error>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug,
    Family<L, M>: EncodeMetric,
{
    let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
    family.encode(metric)
}

impl Collector for DeliveryGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(r) = self.current() else {
            return Ok(());
        };
        let per_day = Family::<RolloutLabel, FloatGauge>::default();
        let failure = Family::<RolloutLabel, FloatGauge>::default();
        let restore = Family::<RolloutLabel, FloatGauge>::default();
        let lead = Family::<RolloutLabel, FloatGauge>::default();
        let finished = Family::<OutcomeLabels, FloatGauge>::default();
        for f in &r.rollouts {
            let label = RolloutLabel {
                rollout: f.rollout.clone(),
            };
            let g = &f.figures;
            per_day.get_or_create(&label).set(g.deployments_per_day);
            if let Some(rate) = g.change_failure_rate {
                failure.get_or_create(&label).set(rate);
            }
            if let Some(s) = g.time_to_restore.median_seconds {
                restore.get_or_create(&label).set(s);
            }
            if let Some(s) = g.lead_time.median_seconds {
                lead.get_or_create(&label).set(s);
            }
            for (outcome, n) in [
                ("promoted", g.promoted),
                ("rolled_back", g.rolled_back),
                ("aborted", g.aborted),
            ] {
                finished
                    .get_or_create(&OutcomeLabels {
                        rollout: f.rollout.clone(),
                        outcome: outcome.to_string(),
                    })
                    .set(n as f64);
            }
        }
        encode_family(
            &mut encoder,
            "canaryd_delivery_deployments_per_day",
            "Promotions per day over the trailing 30 days",
            &per_day,
        )?;
        encode_family(
            &mut encoder,
            "canaryd_delivery_change_failure_ratio",
            "Rolled back / finished (promoted + rolled back + aborted) over the trailing 30 days",
            &failure,
        )?;
        encode_family(
            &mut encoder,
            "canaryd_delivery_time_to_restore_seconds",
            "Median time from the fault's evidence to weight 0 over the trailing 30 days' rollbacks",
            &restore,
        )?;
        encode_family(
            &mut encoder,
            "canaryd_delivery_lead_time_seconds",
            "Median time from a rollout's start to its promotion over the trailing 30 days",
            &lead,
        )?;
        encode_family(
            &mut encoder,
            "canaryd_delivery_finished_rollouts",
            "Rollouts finished over the trailing 30 days, by outcome",
            &finished,
        )
    }
}
