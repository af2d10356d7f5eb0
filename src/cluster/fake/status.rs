//! Error answers in the API server's `Status` shape.

use serde_json::{Value, json};

/// An error the fake answers with: HTTP code, reason and message, as a `Status`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub code: u16,
    /// `NotFound`, `Conflict`, `AlreadyExists`, `Invalid`, `Expired`, …
    pub reason: &'static str,
    /// For people.
    pub message: String,
    /// `details.causes` (field conflicts).
    pub causes: Vec<Value>,
}

impl ApiError {
    /// A bare error.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            causes: Vec::new(),
        }
    }

    /// 404.
    pub fn not_found(what: &str, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{what} \"{name}\" not found"))
    }

    /// 409 on a stale resourceVersion.
    pub fn stale(what: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {what} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 422.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(422, "Invalid", message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.causes.is_empty() {
            status["details"] = json!({ "causes": self.causes });
        }
        status
    }
}
