//! The dashboard: one page and its assets, embedded in the binary at build
//! time (no CDN; works offline). uPlot draws the charts (installed with npm,
//! see `dashboard/package.json`); the page itself is plain JavaScript over
//! the JSON API and the event stream. No inline script or style anywhere,
//! so the Content-Security-Policy allows only files under `/assets/`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use super::error::{ApiError, ErrorCode};
use super::extract::ApiPath;
use super::read::not_found;
use super::{ApiState, id};

const INDEX: &str = include_str!("assets/index.html");

/// (name, content type, body)
const ASSETS: [(&str, &str, &str); 6] = [
    (
        "theme.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/theme.js"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "delivery.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/delivery.js"),
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
pub async fn asset(ApiPath(file): ApiPath<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, body)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::new(ErrorCode::NotFound, "no such asset").into_response(),
    }
}

/// `GET /api/v1/rollouts/{namespace}/{name}/series`: recent gate values for the charts.
pub async fn series(
    State(s): State<Arc<ApiState>>,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let id = id(namespace, name);
    if s.view.get(&id).is_none() {
        return Err(not_found(&id));
    }
    Ok(axum::Json(s.view.series(&id)).into_response())
}
