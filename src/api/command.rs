//! `POST /api/v1/rollouts/{ns}/{name}/{pause|resume|promote|abort|retry}`:
//! a person's command, behind an API token, handed to the controller with
//! the token's name for the decision log.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

use super::auth::authorize_command;
use super::error::{ApiError, ErrorCode};
use super::extract::ApiPath;
use super::{ApiState, id};
use crate::controller::{CommandError, CommandRequest};
use crate::engine::Command;

/// How long a command waits for the controller's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// The handler.
pub async fn act(
    State(s): State<Arc<ApiState>>,
    ApiPath((namespace, name, action)): ApiPath<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let by = authorize_command(&s.tokens, &headers)?;
    let Some(command) = Command::ALL.into_iter().find(|c| c.to_string() == action) else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("unknown action `{action}`: pause, resume, promote, abort or retry"),
        ));
    };
    let (reply, outcome) = oneshot::channel();
    let request = CommandRequest {
        id: id(namespace, name),
        command,
        by: Some(by),
        reply,
    };
    if s.commands.send(request).await.is_err() {
        return Err(ApiError::new(
            ErrorCode::Stopping,
            "the controller is stopping",
        ));
    }
    match tokio::time::timeout(ANSWER_WITHIN, outcome).await {
        Ok(Ok(Ok(view))) => Ok(axum::Json(view).into_response()),
        Ok(Ok(Err(e @ CommandError::NotFound(_)))) => {
            Err(ApiError::new(ErrorCode::NotFound, e.to_string()))
        }
        Ok(Ok(Err(e @ CommandError::Rejected(_)))) => {
            Err(ApiError::new(ErrorCode::Rejected, e.to_string()))
        }
        Ok(Ok(Err(e @ CommandError::Failed(_)))) => {
            Err(ApiError::new(ErrorCode::Store, e.to_string()))
        }
        _ => Err(ApiError::new(
            ErrorCode::Timeout,
            "the controller did not answer",
        )),
    }
}
