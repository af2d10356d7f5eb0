//! `GET /api/v1/delivery?since=…&until=…`: the delivery metrics of a period
//! (see [`crate::delivery`]), per rollout and overall. `since` and `until`
//! take RFC 3339 or a time before now (`-7d`, `now-12h`); by default (also
//! when empty) the last 30 days.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::ApiState;
use super::error::{ApiError, ErrorCode};
use super::extract::ApiQuery;
use crate::backtest::parse_time;
use crate::delivery::{Period, gauges::TRAILING_DAYS, report};
use crate::engine::Timestamp;

/// `?since=&until=`.
#[derive(Deserialize)]
pub struct Range {
    since: Option<String>,
    until: Option<String>,
}

/// The period asked for, or why it is refused.
fn period(q: &Range, now: Timestamp) -> Result<Period, ApiError> {
    let bad = |e: String| ApiError::new(ErrorCode::BadRequest, e);
    let until = match given(q.until.as_deref()) {
        Some(t) => parse_time(t, now).map_err(|e| bad(format!("until: {e}")))?,
        None => now,
    };
    let since = match given(q.since.as_deref()) {
        Some(t) => parse_time(t, now).map_err(|e| bad(format!("since: {e}")))?,
        None => Period::trailing(until, TRAILING_DAYS).since(),
    };
    Period::new(since, until).map_err(|e| bad(e.to_string()))
}

/// A parameter given and not empty.
fn given(t: Option<&str>) -> Option<&str> {
    t.filter(|t| !t.trim().is_empty())
}

/// `GET /api/v1/delivery`.
pub async fn delivery(
    State(s): State<Arc<ApiState>>,
    ApiQuery(q): ApiQuery<Range>,
) -> Result<Response, ApiError> {
    let period = period(&q, Timestamp::from_system(SystemTime::now()))?;
    let store = s.periods.clone();
    let records = tokio::task::spawn_blocking(move || {
        store.decisions_between(period.since(), period.until())
    })
    .await
    .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?
    .map_err(|e| ApiError::new(ErrorCode::Store, e.to_string()))?;
    Ok(axum::Json(report(&records, period)).into_response())
}
