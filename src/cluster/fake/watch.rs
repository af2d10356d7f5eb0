//! Watches and selectors: which objects a list or watch returns, and the
//! newline-delimited JSON stream of `{type, object}` events.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::status::ApiError;

/// The response body type of the fake: whole JSON documents, or a watch stream.
pub type FakeBody = UnsyncBoxBody<Bytes, Infallible>;

/// Watch event types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
    /// A resourceVersion checkpoint, no change.
    Bookmark,
    /// The watch failed (410 Gone).
    Error,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
            EventType::Error => "ERROR",
        }
    }
}

/// One line of a watch stream.
pub fn line(kind: EventType, object: &Value) -> Bytes {
    let mut text = json!({ "type": kind.as_str(), "object": object }).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// A body streaming what `rx` receives, ending when the sender is dropped
/// or when `timeout` (the watch's `timeoutSeconds`) passes.
pub fn stream_body(
    rx: mpsc::UnboundedReceiver<Bytes>,
    timeout: Option<std::time::Duration>,
) -> FakeBody {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let stream = futures::stream::unfold((rx, deadline), |(mut rx, deadline)| async move {
        let next = match deadline {
            Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok().flatten(),
            None => rx.recv().await,
        };
        next.map(|bytes| (Ok::<_, Infallible>(Frame::data(bytes)), (rx, deadline)))
    });
    BodyExt::boxed_unsync(StreamBody::new(stream))
}

/// One requirement of a label or field selector.
#[derive(Clone, Debug, PartialEq)]
enum Requirement {
    Equals(Vec<String>, String),
    NotEquals(Vec<String>, String),
    Exists(Vec<String>),
    Absent(Vec<String>),
}

/// `labelSelector` and `fieldSelector` of a list or watch (equality and
/// existence only; set-based selectors are refused with 400).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    /// Parses both selectors.
    pub fn parse(labels: Option<&str>, fields: Option<&str>) -> Result<Selector, ApiError> {
        let mut reqs = Vec::new();
        for part in labels
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let path = |k: &str| vec!["metadata".into(), "labels".into(), k.trim().into()];
            reqs.push(requirement(part, path, true)?);
        }
        for part in fields
            .unwrap_or_default()
            .split(',')
            .filter(|p| !p.is_empty())
        {
            let path = |k: &str| k.trim().split('.').map(String::from).collect();
            reqs.push(requirement(part, path, false)?);
        }
        Ok(Selector(reqs))
    }

    /// Whether `object` matches every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        let get = |path: &[String]| {
            path.iter()
                .try_fold(object, |v, k| v.get(k))
                .and_then(Value::as_str)
        };
        self.0.iter().all(|r| match r {
            Requirement::Equals(p, v) => get(p) == Some(v.as_str()),
            Requirement::NotEquals(p, v) => get(p) != Some(v.as_str()),
            Requirement::Exists(p) => get(p).is_some(),
            Requirement::Absent(p) => get(p).is_none(),
        })
    }
}

fn requirement(
    part: &str,
    path: impl Fn(&str) -> Vec<String>,
    labels: bool,
) -> Result<Requirement, ApiError> {
    if part.contains(" in ") || part.contains(" notin ") || part.contains('(') {
        return Err(ApiError::bad_request(format!(
            "the fake API server does not support set-based selector `{part}`"
        )));
    }
    Ok(if let Some((k, v)) = part.split_once("!=") {
        Requirement::NotEquals(path(k), v.trim().into())
    } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        Requirement::Equals(path(k), v.trim().into())
    } else if let (true, Some(k)) = (labels, part.strip_prefix('!')) {
        Requirement::Absent(path(k))
    } else if labels {
        Requirement::Exists(path(part))
    } else {
        return Err(ApiError::bad_request(format!(
            "invalid field selector `{part}`"
        )));
    })
}
