//! **A test double**: an in-process fake Kubernetes API server, as a
//! `tower::Service`, for `kube::Client::new(fake.clone(), "default")`.
//!
//! No API server can run on canaryd's build machines, so every cluster-mode
//! test runs against this one. It keeps real state and answers like the real
//! server for what canaryd uses: get, list, watch (resourceVersion,
//! bookmarks, 410 Gone), create, update with 409 on a stale
//! resourceVersion, server-side apply with field managers and conflicts,
//! merge and JSON patches, the `/status` subresource and `generation`, and
//! delete; for Deployments, Rollouts, HTTPRoutes, TrafficSplits, Events and
//! Leases. Known simplifications: no admission or schema validation, no
//! finalizers, no dry run, lists are atomic for apply (no merge keys), and a
//! strategic merge patch is a merge patch. It never runs in the daemon.

mod fields;
mod kinds;
mod status;
mod store;
mod verbs;
mod watch;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

pub use kinds::{KINDS, Kind};
pub use status::ApiError;
pub use watch::FakeBody;

use store::{ObjKey, Store};
use verbs::PatchKind;
use watch::Selector;

/// The fake API server. Clones share one state.
#[derive(Clone, Default)]
pub struct FakeApiServer {
    store: Arc<Mutex<Store>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeApiServer {
    /// An empty server.
    pub fn new() -> FakeApiServer {
        FakeApiServer::default()
    }

    /// A client talking to this server, default namespace `default`.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock already failed the test.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current resourceVersion (the last write's).
    pub fn resource_version(&self) -> u64 {
        self.lock().resource_version()
    }

    /// An object as the server shows it, by `apiVersion`, `kind`, namespace and name.
    pub fn object(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let kind = kinds::find(api_version, kind)?;
        self.lock().render(&ObjKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    /// Sets an object's `status` as its controller would (the Deployment
    /// controller's replica counts, say): a status write by manager `fake`.
    pub fn set_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        status: Value,
    ) -> Result<Value, ApiError> {
        let kind = kinds::find(api_version, kind).ok_or_else(|| ApiError::not_found(kind, name))?;
        let key = ObjKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        };
        let mut store = self.lock();
        let rv = store
            .stored(&key)
            .ok_or_else(|| ApiError::not_found(KINDS[kind].plural, name))?
            .object["metadata"]["resourceVersion"]
            .clone();
        let body = json!({ "metadata": { "resourceVersion": rv }, "status": status });
        verbs::replace(&mut store, &key, true, body, Some("fake"))
    }

    /// Forgets the change history (etcd compaction): a watch from an older
    /// resourceVersion gets 410 Gone.
    pub fn compact(&self) {
        self.lock().compact();
    }

    /// Sends a BOOKMARK to every watch that allowed them.
    pub fn bookmark(&self) {
        self.lock().send_bookmarks();
    }

    /// Ends every open watch stream (clients re-watch from their last resourceVersion).
    pub fn close_watches(&self) {
        self.lock().close_watches();
    }

    /// Every request served so far, as `METHOD path?query status`.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Serves one request whose body has been read.
    pub fn handle(
        &self,
        method: &Method,
        uri: &http::Uri,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Response<FakeBody> {
        let response = match self.route(method, uri, content_type, body) {
            Ok(response) => response,
            Err(e) => json_response(e.code, &e.to_status()),
        };
        if let Ok(mut log) = self.requests.lock() {
            log.push(format!("{method} {uri} {}", response.status().as_u16()));
        }
        response
    }

    fn route(
        &self,
        method: &Method,
        uri: &http::Uri,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Response<FakeBody>, ApiError> {
        let target = kinds::parse_path(uri.path()).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })?;
        let query: HashMap<String, String> = uri.query().map(url_pairs).unwrap_or_default();
        let q = |k: &str| query.get(k).map(String::as_str);
        let flag = |k: &str| matches!(q(k), Some("true" | "1"));
        let manager = q("fieldManager");
        let parse = || {
            serde_json::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
        };
        let mut store = self.lock();
        let key = |name: &str| ObjKey {
            kind: target.kind,
            namespace: target.namespace.clone().unwrap_or_default(),
            name: name.to_string(),
        };
        let k = &KINDS[target.kind];
        match (method, target.name.as_deref()) {
            (&Method::GET, None) if flag("watch") => {
                let selector = Selector::parse(q("labelSelector"), q("fieldSelector"))?;
                let rv = match q("resourceVersion") {
                    Some(rv) if !rv.is_empty() => Some(rv.parse::<u64>().map_err(|_| {
                        ApiError::bad_request(format!("invalid resourceVersion `{rv}`"))
                    })?),
                    _ => None,
                };
                let timeout = q("timeoutSeconds")
                    .and_then(|t| t.parse().ok())
                    .map(std::time::Duration::from_secs);
                let rx = store.watch(
                    target.kind,
                    target.namespace.clone(),
                    selector,
                    rv,
                    flag("allowWatchBookmarks"),
                    flag("sendInitialEvents"),
                );
                Ok(Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(watch::stream_body(rx, timeout))
                    .unwrap_or_default())
            }
            (&Method::GET, None) => {
                let selector = Selector::parse(q("labelSelector"), q("fieldSelector"))?;
                let items = store.list(target.kind, target.namespace.as_deref(), &selector);
                Ok(json_response(
                    200,
                    &json!({
                        "apiVersion": k.api_version(),
                        "kind": format!("{}List", k.kind),
                        "metadata": { "resourceVersion": store.resource_version().to_string() },
                        "items": items,
                    }),
                ))
            }
            (&Method::GET, Some(name)) => store
                .render(&key(name))
                .map(|o| json_response(200, &o))
                .ok_or_else(|| ApiError::not_found(k.plural, name)),
            (&Method::POST, None) => {
                let ns = target
                    .namespace
                    .clone()
                    .ok_or_else(|| ApiError::bad_request("create needs a namespace"))?;
                verbs::create(&mut store, target.kind, &ns, parse()?, manager)
                    .map(|o| json_response(201, &o))
            }
            (&Method::PUT, Some(name)) => {
                verbs::replace(&mut store, &key(name), target.status, parse()?, manager)
                    .map(|o| json_response(200, &o))
            }
            (&Method::PATCH, Some(name)) => {
                let kind = content_type
                    .and_then(PatchKind::from_content_type)
                    .ok_or_else(|| {
                        ApiError::new(
                            415,
                            "UnsupportedMediaType",
                            "unsupported patch content type",
                        )
                    })?;
                verbs::patch(
                    &mut store,
                    &key(name),
                    target.status,
                    kind,
                    body,
                    manager,
                    flag("force"),
                )
                .map(|(code, o)| json_response(code, &o))
            }
            (&Method::DELETE, Some(name)) if !target.status => {
                store.delete(&key(name)).map(|o| json_response(200, &o))
            }
            _ => Err(ApiError::new(
                405,
                "MethodNotAllowed",
                format!("{method} is not supported here"),
            )),
        }
    }
}

fn url_pairs(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_response(code: u16, body: &Value) -> Response<FakeBody> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|e| match e {})
                .boxed_unsync(),
        )
        .unwrap_or_default()
}

impl<B> tower::Service<Request<B>> for FakeApiServer
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Display,
{
    type Response = Response<FakeBody>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<FakeBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let server = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let bytes = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => {
                    let err = ApiError::bad_request(format!("cannot read the request body: {e}"));
                    return Ok(json_response(400, &err.to_status()));
                }
            };
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            Ok(server.handle(&parts.method, &parts.uri, content_type, &bytes))
        })
    }
}
