//! The HTTP API of BRIEF §5 (axum): read endpoints, the event stream (SSE),
//! commands behind a bearer token, `/metrics`, health, OpenAPI, and the
//! dashboard at `/`.

mod dashboard;
mod openapi;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::controller::{CommandError, CommandRequest, View};
use crate::engine::Command;
use crate::spec::model::RolloutId;
use crate::store::SqliteStore;

/// What the handlers share.
pub struct ApiState {
    /// The controller's picture of every rollout.
    pub view: Arc<View>,
    /// The decision log.
    pub store: Arc<SqliteStore>,
    /// Where commands go.
    pub commands: mpsc::Sender<CommandRequest>,
    /// The bearer token mutating endpoints require (none: they are disabled).
    pub token: Option<String>,
    /// Own and router metrics.
    pub registry: Arc<Registry>,
}

/// A JSON error: `{"error": {"code", "message"}}`.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, axum::Json(body)).into_response()
    }
}

/// The API's routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/rollouts/{namespace}/{name}", get(dashboard::page))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { axum::Json(openapi::document()) }),
        )
        .route("/api/v1/rollouts", get(list))
        .route("/api/v1/rollouts/{namespace}/{name}", get(one))
        .route(
            "/api/v1/rollouts/{namespace}/{name}/decisions",
            get(decisions),
        )
        .route("/api/v1/rollouts/{namespace}/{name}/alerts", get(alerts))
        .route(
            "/api/v1/rollouts/{namespace}/{name}/series",
            get(dashboard::series),
        )
        .route("/api/v1/rollouts/{namespace}/{name}/{action}", post(act))
        .route("/api/v1/events", get(events))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see /api/v1/openapi.json",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .with_state(state)
}

async fn readyz(State(s): State<Arc<ApiState>>) -> Response {
    if s.view.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "loading state and deploy files",
        )
        .into_response()
    }
}

async fn metrics(State(s): State<Arc<ApiState>>) -> Response {
    let mut text = String::new();
    match prometheus_client::encoding::text::encode(&mut text, &s.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "cannot encode metrics",
        )
        .into_response(),
    }
}

fn id(namespace: String, name: String) -> RolloutId {
    RolloutId { namespace, name }
}

async fn list(State(s): State<Arc<ApiState>>) -> Response {
    axum::Json(serde_json::json!({ "rollouts": s.view.list() })).into_response()
}

async fn one(
    State(s): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let id = id(namespace, name);
    match s.view.get(&id) {
        Some(v) => axum::Json(v).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rollout {id}"),
        )
        .into_response(),
    }
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn decisions(
    State(s): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<Limit>,
) -> Response {
    rollout_log(
        &s,
        id(namespace, name),
        q,
        "decisions",
        SqliteStore::decisions,
    )
    .await
}

async fn alerts(
    State(s): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(q): Query<Limit>,
) -> Response {
    rollout_log(
        &s,
        id(namespace, name),
        q,
        "alerts",
        SqliteStore::deliveries,
    )
    .await
}

/// `{"<field>": [...]}`: the latest entries of one of a rollout's logs in the
/// store; 404 for a rollout neither running nor logged.
async fn rollout_log<T: serde::Serialize + Send + 'static>(
    s: &ApiState,
    id: RolloutId,
    q: Limit,
    field: &'static str,
    read: fn(&SqliteStore, &RolloutId, usize) -> Result<Vec<T>, crate::store::StoreError>,
) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let store = s.store.clone();
    let key = id.clone();
    let known = s.view.get(&id).is_some();
    match tokio::task::spawn_blocking(move || read(&store, &key, limit)).await {
        Ok(Ok(entries)) if known || !entries.is_empty() => {
            axum::Json(serde_json::json!({ field: entries })).into_response()
        }
        Ok(Ok(_)) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rollout {id}"),
        )
        .into_response(),
        Ok(Err(e)) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()).into_response()
        }
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            .into_response(),
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(s: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &s.token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "commands_disabled",
            "commands are disabled: start canaryd with CANARYD_API_TOKEN set",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "send `Authorization: Bearer <token>` (the daemon's CANARYD_API_TOKEN)",
        )),
        Some(t) if same(t.trim().as_bytes(), expected.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "wrong token",
        )),
    }
}

async fn act(
    State(s): State<Arc<ApiState>>,
    Path((namespace, name, action)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = authorize(&s, &headers) {
        return e.into_response();
    }
    let Some(command) = Command::ALL.into_iter().find(|c| c.to_string() == action) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("unknown action `{action}`: pause, resume, promote, abort or retry"),
        )
        .into_response();
    };
    let (reply, outcome) = oneshot::channel();
    let request = CommandRequest {
        id: id(namespace, name),
        command,
        reply,
    };
    if s.commands.send(request).await.is_err() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the controller is stopping",
        )
        .into_response();
    }
    match tokio::time::timeout(Duration::from_secs(30), outcome).await {
        Ok(Ok(Ok(view))) => axum::Json(view).into_response(),
        Ok(Ok(Err(CommandError::NotFound(m)))) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rollout {m}"),
        )
        .into_response(),
        Ok(Ok(Err(CommandError::Rejected(m)))) => {
            ApiError::new(StatusCode::CONFLICT, "rejected", m).into_response()
        }
        Ok(Ok(Err(CommandError::Store(m)))) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", m).into_response()
        }
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the controller did not answer",
        )
        .into_response(),
    }
}

async fn events(
    State(s): State<Arc<ApiState>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    use tokio::sync::broadcast::error::RecvError;
    // Read straight from the subscription: the stream (and its receiver) ends
    // when the client goes away, with no task left behind.
    let stream = futures::stream::unfold(s.view.subscribe(), |mut rx| async move {
        let event = match rx.recv().await {
            Ok(event) => {
                let kind = match &event {
                    crate::controller::Event::Decision { .. } => "decision",
                    crate::controller::Event::State { .. } => "state",
                    crate::controller::Event::FileRejected { .. } => "file_rejected",
                };
                let data = serde_json::to_string(&event).unwrap_or_default();
                SseEvent::default().event(kind).data(data)
            }
            Err(RecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(format!("{{\"missed\":{n}}}")),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
