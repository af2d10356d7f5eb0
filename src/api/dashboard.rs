//! The dashboard: one page and its assets, embedded in the binary at build
//! time (no CDN; works offline). uPlot draws the charts (installed with npm,
//! see `dashboard/package.json`); the page itself is plain JavaScript over
//! the JSON API and the event stream.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::{ApiError, ApiState, id};

const INDEX: &str = include_str!("assets/index.html");

/// (name, content type, body)
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("assets/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_str!("assets/vendor/uPlot.min.css"),
    ),
];

/// The page, for `/` and `/rollouts/{namespace}/{name}` (the app reads the path).
pub async fn page() -> Html<&'static str> {
    Html(INDEX)
}

/// `/assets/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such asset").into_response(),
    }
}

/// `GET /api/v1/rollouts/{namespace}/{name}/series`: recent gate values for the charts.
pub async fn series(
    State(s): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let id = id(namespace, name);
    if s.view.get(&id).is_none() {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rollout {id}"),
        )
        .into_response();
    }
    axum::Json(s.view.series(&id)).into_response()
}
