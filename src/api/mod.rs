//! The HTTP API of BRIEF §5 (axum): read endpoints, the event stream (SSE),
//! commands behind a bearer token, `/metrics`, health, OpenAPI, and the
//! dashboard at `/`. Every response carries the security headers; the Host
//! allow-list and read access are checked before any handler ([`guard`]);
//! every refusal is a JSON error ([`error`]). [`server`] serves it under
//! connection limits.

mod auth;
mod command;
mod dashboard;
mod delivery;
pub mod error;
mod events;
mod extract;
pub mod guard;
pub mod list;
mod openapi;
mod read;
pub mod server;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::controller::{CommandRequest, View};
use crate::ports::store::PeriodLog;
use crate::ports::{AlertOutbox, DecisionLog};
use crate::spec::model::RolloutId;

pub use error::{ApiError, ErrorCode};
pub use guard::{Access, HostAllowList, ReadAccess};
pub use read::MAX_LIMIT;
pub use tokens::ApiTokens;

/// What the handlers share.
pub struct ApiState {
    /// The controller's picture of every rollout.
    pub view: Arc<View>,
    /// The decision log.
    pub log: Arc<dyn DecisionLog>,
    /// The decision log over a period (delivery metrics).
    pub periods: Arc<dyn PeriodLog>,
    /// The alert outbox (what was sent where).
    pub outbox: Arc<dyn AlertOutbox>,
    /// Where commands go.
    pub commands: mpsc::Sender<CommandRequest>,
    /// The named bearer tokens mutating endpoints require (none: they are
    /// disabled); a command is recorded with its token's name.
    pub tokens: ApiTokens,
    /// Own and router metrics.
    pub registry: Arc<Registry>,
    /// The Host allow-list, who may read, and the read token.
    pub access: Access,
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
        .route("/api/v1/rollouts", get(list::list))
        .route("/api/v1/rollouts/{namespace}/{name}", get(read::one))
        .route(
            "/api/v1/rollouts/{namespace}/{name}/decisions",
            get(read::decisions),
        )
        .route(
            "/api/v1/rollouts/{namespace}/{name}/alerts",
            get(read::alerts),
        )
        .route(
            "/api/v1/rollouts/{namespace}/{name}/shadow",
            get(read::shadow),
        )
        .route(
            "/api/v1/rollouts/{namespace}/{name}/series",
            get(dashboard::series),
        )
        .route(
            "/api/v1/rollouts/{namespace}/{name}/{action}",
            post(command::act),
        )
        .route("/api/v1/events", get(events::events))
        .route("/api/v1/delivery", get(delivery::delivery))
        .fallback(|| async {
            ApiError::new(
                ErrorCode::NotFound,
                "no such endpoint; see /api/v1/openapi.json",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                ErrorCode::MethodNotAllowed,
                "method not allowed on this endpoint (see the Allow header)",
            )
        })
        .layer(middleware::from_fn_with_state(state.clone(), guard::guard))
        .layer(middleware::map_response(guard::security_headers))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<ApiState>>) -> Response {
    if !s.view.is_ready() {
        return ApiError::new(ErrorCode::NotReady, "loading state and deploy files")
            .into_response();
    }
    match s.view.store_error() {
        // Decisions are taken but cannot be stored: not ready for traffic
        // that relies on them (they are retried every tick).
        Some(e) => ApiError::new(ErrorCode::NotReady, format!("the state store fails: {e}"))
            .into_response(),
        None => "ready\n".into_response(),
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
        Err(_) => ApiError::new(ErrorCode::Internal, "cannot encode metrics").into_response(),
    }
}

fn id(namespace: String, name: String) -> RolloutId {
    RolloutId { namespace, name }
}
