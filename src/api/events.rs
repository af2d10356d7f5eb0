//! `GET /api/v1/events`: Server-Sent Events of decisions, state changes and
//! rejected files. Each client reads its own coalescing subscription (see
//! [`crate::controller::view::stream`]): at most one event per rollout per
//! window, in its latest state, and no backlog for a slow client.
//! `?rollout=NS/NAME` follows one rollout (and its deploy file's rejections).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;

use super::error::{ApiError, ErrorCode};
use super::extract::ApiQuery;
use super::read::not_found;
use super::{ApiState, id};
use crate::controller::view::stream::{Subscription, Topic};
use crate::controller::{Event, RolloutView};

/// `?rollout=` of the event stream.
#[derive(Deserialize)]
pub struct EventsQuery {
    rollout: Option<String>,
}

/// `GET /api/v1/events`.
pub async fn events(
    State(s): State<Arc<ApiState>>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let topic = match q.rollout {
        None => Topic::All,
        Some(text) => {
            let (namespace, name) = text
                .split_once('/')
                .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::BadRequest,
                        format!("rollout {text:?} is not `namespace/name`"),
                    )
                })?;
            let id = id(namespace.to_string(), name.to_string());
            let view = s.view.shared(&id).ok_or_else(|| not_found(&id))?;
            Topic::Rollout {
                id,
                file_path: view.file_path.clone(),
            }
        }
    };
    // Read straight from the subscription: the stream (and its queue) ends
    // when the client goes away, with no task left behind.
    let start = (s.view.subscribe(topic), VecDeque::new());
    let stream = futures::stream::unfold(
        start,
        |(mut sub, mut batch): (Subscription, _)| async move {
            while batch.is_empty() {
                batch = sub.next_batch().await?.into();
            }
            let event = batch.pop_front()?;
            Some((Ok::<_, Infallible>(sse(&event)), (sub, batch)))
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// An event as the stream sends it: a rejected file by name, not by path.
fn sse(event: &Event) -> SseEvent {
    let data = match event {
        Event::FileRejected { file, errors } => {
            let name = RolloutView::file_name(file);
            serde_json::to_string(&Event::FileRejected {
                errors: errors.replace(file, &name),
                file: name,
            })
        }
        shared => serde_json::to_string(shared),
    };
    let kind = match event {
        Event::Decision { .. } => "decision",
        Event::State { .. } => "state",
        Event::FileRejected { .. } => "file_rejected",
    };
    SseEvent::default()
        .event(kind)
        .data(data.unwrap_or_default())
}
