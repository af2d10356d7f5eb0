//! The read endpoints of one rollout: the rollout, its decision and alert
//! logs, its shadow summary. A rollout's deploy file is shown by name (relative to the deploy
//! directory); its full path only with `?full_path=true` and the API token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::authorize_command;
use super::error::{ApiError, ErrorCode};
use super::extract::{ApiPath, ApiQuery};
use super::{ApiState, id};
use crate::spec::model::RolloutId;

/// Entries a log read returns at most (`?limit=`).
pub const MAX_LIMIT: u32 = 1000;
/// Entries a log read returns without `?limit=`.
pub const DEFAULT_LIMIT: u32 = 100;

/// `?full_path=` of `GET /api/v1/rollouts/{ns}/{name}`.
#[derive(Deserialize)]
pub struct OneQuery {
    #[serde(default)]
    full_path: bool,
}

/// `GET /api/v1/rollouts/{ns}/{name}`.
pub async fn one(
    State(s): State<Arc<ApiState>>,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<OneQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if q.full_path {
        authorize_command(&s.tokens, &headers)?;
    }
    let id = id(namespace, name);
    let view = s.view.get(&id).ok_or_else(|| not_found(&id))?;
    if !q.full_path {
        return Ok(axum::Json(view).into_response());
    }
    let mut value = serde_json::to_value(&view)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    if let Some(object) = value.as_object_mut() {
        object.insert("file_path".into(), view.file_path.clone().into());
    }
    Ok(axum::Json(value).into_response())
}

pub(super) fn not_found(id: &RolloutId) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no rollout {id}"))
}

/// `?limit=` of the log endpoints: 0 to [`MAX_LIMIT`].
#[derive(Deserialize)]
pub struct Limit {
    limit: Option<u32>,
}

impl Limit {
    fn entries(&self) -> Result<usize, ApiError> {
        match self.limit.unwrap_or(DEFAULT_LIMIT) {
            n if n <= MAX_LIMIT => Ok(n as usize),
            n => Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("limit {n} is above the maximum, {MAX_LIMIT}"),
            )),
        }
    }
}

/// `GET /api/v1/rollouts/{ns}/{name}/decisions`.
pub async fn decisions(
    State(s): State<Arc<ApiState>>,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<Limit>,
) -> Result<Response, ApiError> {
    let log = s.log.clone();
    rollout_log(
        &s,
        id(namespace, name),
        q,
        "decisions",
        |id, n| async move { log.decisions(&id, n).await },
    )
    .await
}

/// Decisions a shadow summary reads at most (the latest).
pub const SHADOW_RECORDS: usize = 10_000;

/// `GET /api/v1/rollouts/{ns}/{name}/shadow`: the releases watched in
/// shadow mode, what canaryd would have done with each, the evidence of a
/// would-be rollback and the time to the verdict.
pub async fn shadow(
    State(s): State<Arc<ApiState>>,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let id = id(namespace, name);
    let view = s.view.get(&id);
    let records = s
        .log
        .decisions(&id, SHADOW_RECORDS)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Store, e.to_string()))?;
    if view.is_none() && records.is_empty() {
        return Err(not_found(&id));
    }
    let summary = crate::delivery::shadow::summary(&records);
    let mut body = serde_json::to_value(&summary)
        .map_err(|e| ApiError::new(ErrorCode::Internal, e.to_string()))?;
    if let (Some(object), Some(view)) = (body.as_object_mut(), view) {
        object.insert("mode".into(), view.mode.as_str().into());
    }
    Ok(axum::Json(body).into_response())
}

/// `GET /api/v1/rollouts/{ns}/{name}/alerts`.
pub async fn alerts(
    State(s): State<Arc<ApiState>>,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<Limit>,
) -> Result<Response, ApiError> {
    let outbox = s.outbox.clone();
    rollout_log(&s, id(namespace, name), q, "alerts", |id, n| async move {
        outbox.deliveries(&id, n).await
    })
    .await
}

/// `{"<field>": [...]}`: the latest `limit` entries of one of a rollout's
/// logs, oldest first; 404 for a rollout neither running nor logged.
async fn rollout_log<T, F, Fut>(
    s: &ApiState,
    id: RolloutId,
    q: Limit,
    field: &'static str,
    read: F,
) -> Result<Response, ApiError>
where
    T: serde::Serialize,
    F: FnOnce(RolloutId, usize) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, crate::ports::StoreError>>,
{
    let limit = q.entries()?;
    let known = s.view.get(&id).is_some();
    // With `limit=0`, one entry is still read: it tells a logged rollout
    // (an empty list) from an unknown one (404).
    let read_at_least = limit.max(usize::from(!known));
    let mut entries = read(id.clone(), read_at_least)
        .await
        .map_err(|e| ApiError::new(ErrorCode::Store, e.to_string()))?;
    if !known && entries.is_empty() {
        return Err(not_found(&id));
    }
    entries.truncate(limit);
    Ok(axum::Json(serde_json::json!({ field: entries })).into_response())
}
