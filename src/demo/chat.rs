//! The demo's stand-in for Slack: a local HTTP receiver at a Slack-style
//! webhook path that keeps every message it is sent (and appends it to a
//! JSON-lines file), so the demo can show the rollback alert as posted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use serde_json::Value;

#[derive(Clone)]
struct Inbox {
    messages: Arc<Mutex<Vec<Value>>>,
    file: PathBuf,
}

/// A running receiver.
pub struct ChatReceiver {
    /// The webhook URL to configure.
    pub url: String,
    inbox: Inbox,
    task: tokio::task::JoinHandle<()>,
}

impl ChatReceiver {
    /// Listens on `addr`; messages are also appended to `file`.
    pub async fn start(addr: SocketAddr, file: PathBuf) -> Result<ChatReceiver, String> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("chat receiver on {addr}: {e}"))?;
        let inbox = Inbox {
            messages: Arc::default(),
            file,
        };
        let app = axum::Router::new()
            .route("/services/{*path}", post(receive))
            .with_state(inbox.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(ChatReceiver {
            url: format!("http://{addr}/services/T0DEMO/B0DEMO/demo-webhook"),
            inbox,
            task,
        })
    }

    /// The first message received whose fallback text contains `needle`.
    pub fn find(&self, needle: &str) -> Option<Value> {
        self.inbox
            .messages()
            .iter()
            .find(|m| m["text"].as_str().is_some_and(|t| t.contains(needle)))
            .cloned()
    }
}

impl Inbox {
    /// The messages (a poisoned lock still holds whole messages).
    fn messages(&self) -> std::sync::MutexGuard<'_, Vec<Value>> {
        self.messages
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for ChatReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(State(inbox): State<Inbox>, Json(message): Json<Value>) -> &'static str {
    if let Ok(line) = serde_json::to_string(&message) {
        use std::io::Write;
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&inbox.file)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = appended {
            tracing::warn!(file = %inbox.file.display(), error = %e, "cannot keep the chat message");
        }
    }
    inbox.messages().push(message);
    "ok"
}

/// The message as a person reads it in Slack: header, text, fields, query, button.
pub fn render(message: &Value) -> String {
    let mut out = Vec::new();
    for block in message["blocks"].as_array().into_iter().flatten() {
        match block["type"].as_str() {
            Some("header") | Some("section") if block["text"].is_object() => {
                out.push(block["text"]["text"].as_str().unwrap_or("").to_string());
            }
            Some("section") => {
                for f in block["fields"].as_array().into_iter().flatten() {
                    out.push(f["text"].as_str().unwrap_or("").replace('\n', ": "));
                }
            }
            Some("actions") => {
                for e in block["elements"].as_array().into_iter().flatten() {
                    out.push(format!(
                        "[{}] {}",
                        e["text"]["text"].as_str().unwrap_or(""),
                        e["url"].as_str().unwrap_or("")
                    ));
                }
            }
            Some("context") => {
                for e in block["elements"].as_array().into_iter().flatten() {
                    out.push(e["text"].as_str().unwrap_or("").to_string());
                }
            }
            _ => {}
        }
    }
    out.iter()
        .flat_map(|l| l.lines())
        .map(|l| {
            let l = l
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&");
            format!("   │ {l}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
