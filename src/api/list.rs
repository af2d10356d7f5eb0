//! `GET /api/v1/rollouts`: the rollout list, a page at a time (Kubernetes
//! style: `limit` and an opaque `continue` token), filtered by phase,
//! namespace, name prefix or a substring, in full or in a small summary
//! form. Only the page is copied and serialized.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, ErrorCode};
use super::extract::ApiQuery;
use crate::controller::RolloutView;
use crate::controller::view::page::{Filter, PHASES, PageRequest, PhaseCounts};
use crate::engine::{Phase, Timestamp};
use crate::spec::model::{DeployMode, RolloutId};

/// Rollouts a page holds without `?limit=`.
pub const DEFAULT_PAGE: usize = 500;
/// Rollouts a page holds at most (a larger `limit` is clamped to it).
pub const MAX_PAGE: usize = 1000;

/// The query string, every field as written (parsed here, so each mistake
/// gets its own message).
#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    #[serde(rename = "continue")]
    token: Option<String>,
    phase: Option<String>,
    namespace: Option<String>,
    prefix: Option<String>,
    q: Option<String>,
    view: Option<String>,
}

/// `view=`: the whole rollout, or its summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Full,
    Summary,
}

/// A rollout in a `view=summary` list.
#[derive(Serialize)]
struct Summary<'a> {
    namespace: &'a str,
    name: &'a str,
    phase: Phase,
    step: usize,
    steps: usize,
    weight: f64,
    stable: &'a str,
    canary: Option<&'a str>,
    mode: DeployMode,
    last_decision_at: Option<Timestamp>,
    file_error: bool,
}

impl<'a> Summary<'a> {
    fn of(v: &'a RolloutView) -> Summary<'a> {
        Summary {
            namespace: &v.namespace,
            name: &v.name,
            phase: v.phase,
            step: v.step,
            steps: v.steps,
            weight: v.canary_weight,
            stable: &v.stable_version,
            canary: v.canary_version.as_deref(),
            mode: v.mode,
            last_decision_at: v.last_decision.as_ref().map(|d| d.at),
            file_error: v.file_error.is_some(),
        }
    }
}

/// The response body.
#[derive(Serialize)]
struct Body<'a, T> {
    rollouts: Vec<T>,
    total: usize,
    phases: &'a PhaseCounts,
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_error: Option<String>,
}

/// `GET /api/v1/rollouts`.
pub async fn list(
    State(s): State<Arc<ApiState>>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let (request, form) = parse(q)?;
    let page = s.view.page(&request);
    let next = page.next.as_ref().map(token);
    let store_error = s.view.store_error();
    let response = match form {
        Form::Full => axum::Json(Body {
            rollouts: page.rollouts.iter().map(|v| &**v).collect(),
            total: page.total,
            phases: &page.phases,
            next,
            store_error,
        })
        .into_response(),
        Form::Summary => axum::Json(Body {
            rollouts: page.rollouts.iter().map(|v| Summary::of(v)).collect(),
            total: page.total,
            phases: &page.phases,
            next,
            store_error,
        })
        .into_response(),
    };
    Ok(response)
}

fn bad(message: String) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

/// The page a query asks for, or why it is wrong.
fn parse(q: ListQuery) -> Result<(PageRequest, Form), ApiError> {
    let limit = match q.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(text) => match text.parse::<u64>() {
            Ok(0) => return Err(bad("limit must be at least 1".into())),
            Ok(n) => usize::try_from(n).unwrap_or(MAX_PAGE).min(MAX_PAGE),
            Err(_) => {
                return Err(bad(format!(
                    "limit {text:?} is not a whole number (1 to {MAX_PAGE})"
                )));
            }
        },
    };
    let form = match q.view.as_deref() {
        None | Some("full") => Form::Full,
        Some("summary") => Form::Summary,
        Some(other) => {
            return Err(bad(format!("view {other:?} is not one of: full, summary")));
        }
    };
    // `phase=` (empty) filters nothing, like an absent one.
    let phases = q
        .phase
        .as_deref()
        .map(phases)
        .transpose()?
        .filter(|p| !p.is_empty());
    let after = q.token.as_deref().map(resume_after).transpose()?;
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    Ok((
        PageRequest {
            filter: Filter {
                phases,
                namespace: nonempty(q.namespace),
                prefix: nonempty(q.prefix),
                contains: nonempty(q.q),
            },
            after,
            limit,
        },
        form,
    ))
}

/// `phase=Progressing,Paused`: phase names as the API spells them.
fn phases(list: &str) -> Result<Vec<Phase>, ApiError> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|name| {
            PHASES
                .into_iter()
                .find(|p| p.to_string() == name)
                .ok_or_else(|| {
                    let valid: Vec<String> = PHASES.iter().map(Phase::to_string).collect();
                    bad(format!(
                        "phase {name:?} is not one of: {}",
                        valid.join(", ")
                    ))
                })
        })
        .collect()
}

/// The `continue` token after `id`: opaque to clients (base64url of
/// `namespace/name`).
pub fn token(id: &RolloutId) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}/{}", id.namespace, id.name))
}

/// The key a `continue` token resumes after.
fn resume_after(token: &str) -> Result<RolloutId, ApiError> {
    let invalid = || {
        bad(
            "continue is not a token this API issued (pass the previous page's `continue` as is)"
                .into(),
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (namespace, name) = text.split_once('/').ok_or_else(invalid)?;
    Ok(RolloutId {
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}
