//! The API's axum router in process, without sockets: requests go through
//! `tower::ServiceExt::oneshot` with the Host and peer address a real
//! connection would give them; commands are answered by a stand-in
//! controller that returns the rollout as it is in the view.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use canaryd::api::{self, Access, ApiState, ApiTokens, HostAllowList, ReadAccess};
use canaryd::controller::{CommandError, CommandRequest, RolloutView, View};
use canaryd::store::SqliteStore;
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tower::ServiceExt;

pub const API_TOKEN: &str = "api-t0ken";
pub const READ_TOKEN: &str = "read-t0ken";
/// The address the API listens on in these tests.
pub const LISTEN: &str = "127.0.0.1:9900";
pub const LOOPBACK_PEER: &str = "127.0.0.1:50000";
pub const REMOTE_PEER: &str = "10.0.0.9:50000";

/// The API with an in-memory store and a stand-in controller.
pub struct Api {
    pub state: Arc<ApiState>,
    pub app: Router,
    /// The token name of every command the stand-in controller received.
    pub issued_by: Arc<Mutex<Vec<Option<String>>>>,
}

/// The access rules of a daemon listening on [`LISTEN`] with these reads.
pub fn access(reads: ReadAccess) -> Access {
    Access {
        hosts: HostAllowList::for_listener(
            LISTEN.parse().expect("address"),
            Some("https://canaryd.example.internal"),
            &[],
        )
        .expect("allow-list"),
        reads,
        read_token: Some(READ_TOKEN.into()),
    }
}

impl Api {
    /// With the API token set and `access`.
    pub fn new(access: Access) -> Api {
        Api::with_store(access, SqliteStore::in_memory().expect("store"))
    }

    /// With a store holding some history.
    pub fn with_store(access: Access, store: SqliteStore) -> Api {
        Api::with_parts(access, Arc::new(store), Registry::default())
    }

    /// With a shared store and the metrics registry `/metrics` encodes.
    pub fn with_parts(access: Access, store: Arc<SqliteStore>, registry: Registry) -> Api {
        Api::with_tokens(access, store, registry, ApiTokens::single(API_TOKEN))
    }

    /// With these API tokens.
    pub fn with_tokens(
        access: Access,
        store: Arc<SqliteStore>,
        registry: Registry,
        tokens: ApiTokens,
    ) -> Api {
        let issued_by = Arc::new(Mutex::new(Vec::new()));
        let issued = issued_by.clone();
        let view = Arc::new(View::default());
        view.set_ready();
        let (commands, mut requests) = tokio::sync::mpsc::channel::<CommandRequest>(8);
        let controller = view.clone();
        tokio::spawn(async move {
            while let Some(r) = requests.recv().await {
                issued.lock().expect("lock").push(r.by.clone());
                let answer = controller
                    .get(&r.id)
                    .ok_or_else(|| CommandError::NotFound(r.id.clone()));
                let _ = r.reply.send(answer);
            }
        });
        let state = Arc::new(ApiState {
            view,
            log: Arc::new((*store).clone()),
            periods: store.clone(),
            outbox: Arc::new((*store).clone()),
            commands,
            tokens,
            registry: Arc::new(registry),
            access,
        });
        Api {
            app: api::router(state.clone()),
            state,
            issued_by,
        }
    }

    /// Shows a rollout.
    pub fn put(&self, view: RolloutView) {
        self.state.view.put(view);
    }

    /// Sends a request as a client on loopback would, with `Host: LISTEN`.
    pub async fn get(&self, uri: &str) -> Reply {
        self.send(
            request(Method::GET, uri)
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    /// Sends a GET from loopback and returns the response unread (for
    /// streams).
    pub async fn open(&self, uri: &str) -> axum::response::Response {
        let mut req = request(Method::GET, uri)
            .body(Body::empty())
            .expect("request");
        req.extensions_mut().insert(ConnectInfo(
            LOOPBACK_PEER.parse::<SocketAddr>().expect("peer"),
        ));
        self.app.clone().oneshot(req).await.expect("infallible")
    }

    /// Sends a request; a [`LOOPBACK_PEER`] unless it names its own.
    pub async fn send(&self, mut req: Request<Body>) -> Reply {
        if req.extensions().get::<ConnectInfo<SocketAddr>>().is_none() {
            req.extensions_mut().insert(ConnectInfo(
                LOOPBACK_PEER.parse::<SocketAddr>().expect("peer"),
            ));
        }
        let response = self.app.clone().oneshot(req).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// A request to `uri` with `Host: LISTEN`.
pub fn request(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("host", LISTEN)
}

/// The same, from `peer`.
pub fn from(peer: &str, mut req: Request<Body>) -> Request<Body> {
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().expect("peer")));
    req
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON (panics, showing it, when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `error.code` of a JSON error, after checking its shape and content type.
    pub fn error_code(&self) -> String {
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(content_type, "application/json", "status {}", self.status);
        let body = self.json();
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        body["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error.code: {body}"))
            .to_string()
    }
}

/// A rollout `namespace/name` in `phase`, from the seed deploy file (its
/// deploy file `deploy/<name>.yaml`).
pub fn rollout(namespace: &str, name: &str, phase: canaryd::engine::Phase) -> RolloutView {
    static SEED: std::sync::OnceLock<RolloutView> = std::sync::OnceLock::new();
    let seed = SEED.get_or_init(|| {
        let decoded = canaryd::spec::decode::decode(
            "checkout.yaml",
            include_str!("../../deploy/checkout.yaml"),
            &canaryd::spec::policy::PolicySet::builtin(),
        );
        let spec = decoded.spec.expect("the seed deploy file decodes");
        let state = canaryd::engine::RolloutState::new(
            &spec,
            canaryd::engine::Timestamp::from_millis(1_800_000_000_000),
        );
        RolloutView::of(&spec, &state, "deploy/checkout.yaml")
    });
    let mut view = seed.clone();
    view.namespace = namespace.to_string();
    view.name = name.to_string();
    view.phase = phase;
    view.file_path = format!("deploy/{name}.yaml");
    view.file = format!("{name}.yaml");
    view
}
