//! A `tower-test` mock API server for request pinning (controller-rs
//! style): it answers the expected calls in order, asserting each one's
//! method, URI (with `fieldManager` and `force`), content type and body,
//! then that no other call comes.

use std::time::Duration;

use http::{Request, Response};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Answers the expected calls in order, asserting each one.
pub struct ApiServerVerifier(Handle);

/// One expected call and its answer.
pub struct Expect {
    method: &'static str,
    uri: String,
    content_type: Option<&'static str>,
    body: Option<Value>,
    status: u16,
    answer: Value,
}

/// A call of `method` to `uri` (path and query, exactly as sent).
pub fn expect(method: &'static str, uri: impl Into<String>) -> Expect {
    Expect {
        method,
        uri: uri.into(),
        content_type: None,
        body: None,
        status: 200,
        answer: json!({}),
    }
}

impl Expect {
    /// The call sends exactly this body with this content type.
    pub fn sends(mut self, content_type: &'static str, body: Value) -> Self {
        self.content_type = Some(content_type);
        self.body = Some(body);
        self
    }

    /// The server answers `status` with `answer`.
    pub fn answers(mut self, status: u16, answer: Value) -> Self {
        self.status = status;
        self.answer = answer;
        self
    }
}

/// The API server's answer to a stale resourceVersion.
pub fn conflict() -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
        "message": "Operation cannot be fulfilled on rollouts.canaryd.dev \"checkout\": the object has been modified; please apply your changes to the latest version and try again"
    })
}

impl ApiServerVerifier {
    /// Serves `calls`, then checks no other call comes before the client is dropped.
    pub fn run(mut self, calls: Vec<Expect>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            for call in calls {
                let (request, send) = self
                    .0
                    .next_request()
                    .await
                    .expect("the expected call was made");
                assert_eq!(request.method().as_str(), call.method);
                assert_eq!(request.uri().to_string(), call.uri);
                let content_type = request
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                if let Some(expected) = &call.body {
                    assert_eq!(
                        content_type.as_deref(),
                        call.content_type,
                        "{} {}",
                        call.method,
                        call.uri
                    );
                    let sent: Value = serde_json::from_slice(&body).expect("a JSON body");
                    assert_eq!(&sent, expected, "{} {}", call.method, call.uri);
                }
                let response = Response::builder()
                    .status(call.status)
                    .body(Body::from(call.answer.to_string().into_bytes()))
                    .expect("response");
                send.send_response(response);
            }
            if let Some((request, _)) = self.0.next_request().await {
                panic!("unexpected call {} {}", request.method(), request.uri());
            }
        })
    }
}

/// A client whose API server is the verifier.
pub fn mock() -> (Client, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServerVerifier(handle))
}

/// Runs `operation` on a client whose API server expects `calls`, then
/// checks they were served exactly (the operation must drop every clone of
/// the client, so a call beyond the expected ones is seen).
pub async fn pinned<F, Fut, T>(calls: Vec<Expect>, operation: F) -> T
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let (client, verifier) = mock();
    let task = verifier.run(calls);
    let out = tokio::time::timeout(Duration::from_secs(5), operation(client))
        .await
        .expect("the operation finished in time");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the scenario finished in time")
        .expect("the scenario's assertions held");
    out
}
