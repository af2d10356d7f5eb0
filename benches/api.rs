//! The API at 10,000 rollouts, in process (the router called with
//! `oneshot`, no sockets): a list page of 100 (summary and full, first page
//! and one deep in the list, and a filtered one) and a single rollout.
//!
//! `cargo bench --bench api`

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use canaryd::api::{self, Access, ApiState, ApiTokens, HostAllowList, ReadAccess};
use canaryd::controller::{CommandRequest, RolloutView, View};
use canaryd::engine::{Phase, RolloutState, Timestamp};
use canaryd::spec::decode::decode;
use canaryd::spec::policy::PolicySet;
use canaryd::store::SqliteStore;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use prometheus_client::registry::Registry;
use tower::ServiceExt;

const SEED_FILE: &str = include_str!("../deploy/checkout.yaml");
const ROLLOUTS: usize = 10_000;
const LISTEN: &str = "127.0.0.1:9900";

/// The router over a view of `ROLLOUTS` rollouts in 20 namespaces.
fn app() -> Router {
    let spec = decode("checkout.yaml", SEED_FILE, &PolicySet::builtin())
        .spec
        .expect("the seed file decodes");
    let state = RolloutState::new(&spec, Timestamp::from_millis(1_800_000_000_000));
    let seed = RolloutView::of(&spec, &state, "deploy/checkout.yaml");
    let phases = [
        Phase::Progressing,
        Phase::Paused,
        Phase::Promoted,
        Phase::Idle,
    ];
    let view = Arc::new(View::default());
    for i in 0..ROLLOUTS {
        let mut v = seed.clone();
        v.namespace = format!("team-{:02}", i % 20);
        v.name = format!("service-{i:05}");
        v.phase = phases[i % phases.len()];
        view.put(v);
    }
    view.set_ready();
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let (commands, _) = tokio::sync::mpsc::channel::<CommandRequest>(1);
    let state = Arc::new(ApiState {
        view,
        log: Arc::new((*store).clone()),
        periods: store.clone(),
        outbox: Arc::new((*store).clone()),
        commands,
        tokens: ApiTokens::single("t0ken"),
        registry: Arc::new(Registry::default()),
        access: Access {
            hosts: HostAllowList::for_listener(LISTEN.parse().expect("address"), None, &[])
                .expect("allow-list"),
            reads: ReadAccess::Open,
            read_token: None,
        },
    });
    api::router(state)
}

/// One GET through the router, body read whole; returns its size.
async fn get(app: &Router, uri: &str) -> usize {
    let mut req = Request::get(uri)
        .header("host", LISTEN)
        .body(Body::empty())
        .expect("request");
    req.extensions_mut().insert(ConnectInfo(
        "127.0.0.1:50000".parse::<SocketAddr>().expect("peer"),
    ));
    let response = app.clone().oneshot(req).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .len()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let app = app();
    // A token deep in the list: the page after rollout 5,000 of 10,000.
    let deep = api::list::token(&canaryd::spec::model::RolloutId {
        namespace: "team-10".into(),
        name: "service-00010".into(),
    });
    let cases = [
        (
            "list page of 100, summary",
            "/api/v1/rollouts?limit=100&view=summary".to_string(),
        ),
        (
            "list page of 100, full",
            "/api/v1/rollouts?limit=100".to_string(),
        ),
        (
            "list page of 100, summary, mid-list",
            format!("/api/v1/rollouts?limit=100&view=summary&continue={deep}"),
        ),
        (
            "list page of 100, summary, phase and q filters",
            "/api/v1/rollouts?limit=100&view=summary&phase=Paused&q=SERVICE-0".to_string(),
        ),
        (
            "single rollout",
            "/api/v1/rollouts/team-07/service-00007".to_string(),
        ),
    ];
    let mut group = c.benchmark_group(format!("api at {ROLLOUTS} rollouts"));
    for (name, uri) in &cases {
        let bytes = rt.block_on(get(&app, uri));
        println!("{name}: {bytes} bytes");
        group.bench_function(*name, |b| b.iter(|| rt.block_on(get(&app, uri))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
