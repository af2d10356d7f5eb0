//! Extractors whose rejections are the API's JSON errors (axum's own answer
//! in plain text): query strings and path segments that do not parse are a
//! `400 bad_request` with what was wrong.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::{ApiError, ErrorCode};

/// [`Query`], rejected as JSON.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
    }
}

/// [`Path`], rejected as JSON (`%ff` in a segment is not UTF-8: 400).
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| ApiPath(v))
            .map_err(|e| {
                // A route whose parameters do not fit its handler is our bug.
                let code = if e.status().is_client_error() {
                    ErrorCode::BadRequest
                } else {
                    ErrorCode::Internal
                };
                ApiError::new(code, e.body_text())
            })
    }
}
