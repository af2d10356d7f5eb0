//! The API's one error type: every refusal (a bad query or path, an unknown
//! route, a wrong method, a refused Host or token, a command that does not
//! fit the phase) is `{"error": {"code", "message"}}` with the matching
//! status, and the code is one of [`ErrorCode`].

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// What went wrong, as the API names it (`error.code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A query parameter, path segment or body that does not parse or is out of range.
    BadRequest,
    /// No bearer token where one is needed.
    Unauthorized,
    /// A wrong token.
    Forbidden,
    /// Commands need `CANARYD_API_TOKEN`, which is not set.
    CommandsDisabled,
    /// The `Host` is not in the allow-list (DNS rebinding guard).
    HostNotAllowed,
    /// A state-changing request from a web page of another origin.
    OriginNotAllowed,
    /// No such endpoint, rollout or asset.
    NotFound,
    /// The endpoint exists but not with this method.
    MethodNotAllowed,
    /// The command does not fit the rollout's phase.
    Rejected,
    /// State and deploy files are still loading.
    NotReady,
    /// The controller is stopping.
    Stopping,
    /// The controller did not answer in time.
    Timeout,
    /// The state store failed.
    Store,
    /// Anything else on canaryd's side.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is sent with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden
            | ErrorCode::CommandsDisabled
            | ErrorCode::HostNotAllowed
            | ErrorCode::OriginNotAllowed => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Rejected => StatusCode::CONFLICT,
            ErrorCode::NotReady | ErrorCode::Stopping | ErrorCode::Timeout | ErrorCode::Store => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A refusal or failure, sent as `{"error": {"code", "message"}}`.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// An error with its code and a message for people.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    /// Its code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.code.status(), axum::Json(body)).into_response();
        if self.code == ErrorCode::Unauthorized {
            // RFC 9110 §11.6.1: a 401 names the scheme it wants.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"canaryd\""),
            );
        }
        response
    }
}
