//! A local HTTP receiver standing in for Slack, Teams, Discord, Google Chat or
//! a webhook endpoint: it records every request it gets and answers as told
//! (a scripted sequence of statuses, or 503 for bodies containing some text).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request as received, with the answer given.
#[derive(Clone, Debug)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// The request path.
    pub path: String,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
    /// The status answered.
    pub status: u16,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// True when the receiver accepted it (2xx).
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

#[derive(Default)]
struct Script {
    /// Answers to give first, in order: (status, Retry-After).
    queue: VecDeque<(u16, Option<String>)>,
    /// Bodies containing this text get a 503.
    refuse: Option<String>,
    got: Vec<Received>,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    /// Base URL (`http://127.0.0.1:port`).
    pub base: String,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver that accepts everything.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver port");
        let addr = listener.local_addr().expect("address");
        let script: Arc<Mutex<Script>> = Arc::default();
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(script.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            base: format!("http://{addr}"),
            script,
            task,
        }
    }

    /// Answers the next requests with these statuses (and `Retry-After`s).
    pub fn answer(&self, replies: &[(u16, Option<&str>)]) {
        let mut s = self.script.lock().expect("script");
        s.queue
            .extend(replies.iter().map(|(c, r)| (*c, r.map(str::to_string))));
    }

    /// Answers 503 to bodies containing `text` (None: accept again).
    pub fn refuse_containing(&self, text: Option<&str>) {
        self.script.lock().expect("script").refuse = text.map(str::to_string);
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.script.lock().expect("script").got.clone()
    }

    /// Requests accepted so far.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(Received::accepted)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = script.lock().expect("script");
    let refused = s
        .refuse
        .as_deref()
        .is_some_and(|t| String::from_utf8_lossy(&body).contains(t));
    let (status, retry_after) = if refused {
        (503, None)
    } else {
        s.queue.pop_front().unwrap_or((200, None))
    };
    s.got.push(Received {
        at: Instant::now(),
        path: uri.path().to_string(),
        headers,
        body,
        status,
    });
    let code = StatusCode::from_u16(status).expect("a status code");
    match retry_after {
        Some(r) => (code, [("retry-after", r)], "scripted").into_response(),
        None => (
            code,
            if status < 300 {
                "ok"
            } else {
                "scripted failure"
            },
        )
            .into_response(),
    }
}
