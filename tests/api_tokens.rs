//! Named API tokens, in process (no sockets): a command is handed to the
//! controller with the name of the token that issued it (never the token),
//! the single `CANARYD_API_TOKEN` is named `default`, any named token allows
//! restricted reads, and the decision log served by the API says `by`.

mod common;
mod harness;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use canaryd::api::{ApiTokens, ReadAccess};
use canaryd::controller::RolloutView;
use canaryd::engine::{Command, RolloutState, Timestamp};
use canaryd::store::{Change, SqliteStore};
use common::{SEED_FILE, Sim, World, spec};
use harness::api::{API_TOKEN, Api, REMOTE_PEER, access, from, request};
use prometheus_client::registry::Registry;

const ALICE: &str = "alice-s3cret";
const CI: &str = "ci-s3cret";

fn checkout() -> RolloutView {
    let spec = spec(SEED_FILE);
    let state = RolloutState::new(&spec, Timestamp::from_millis(1_800_000_000_000));
    RolloutView::of(&spec, &state, "checkout.yaml")
}

fn named(reads: ReadAccess, store: SqliteStore) -> Api {
    let tokens = ApiTokens::named([
        ("alice".to_string(), ALICE.to_string()),
        ("ci".to_string(), CI.to_string()),
    ])
    .expect("tokens");
    Api::with_tokens(access(reads), Arc::new(store), Registry::default(), tokens)
}

fn pause_with(token: &str) -> axum::http::Request<Body> {
    request(Method::POST, "/api/v1/rollouts/default/checkout/pause")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .expect("request")
}

fn issued(api: &Api) -> Vec<Option<String>> {
    api.issued_by.lock().expect("lock").clone()
}

#[tokio::test]
async fn a_command_reaches_the_controller_with_the_name_of_its_token() {
    let api = named(ReadAccess::Open, SqliteStore::in_memory().expect("store"));
    api.put(checkout());
    assert_eq!(api.send(pause_with(ALICE)).await.status, StatusCode::OK);
    assert_eq!(api.send(pause_with(CI)).await.status, StatusCode::OK);
    assert_eq!(
        issued(&api),
        vec![Some("alice".to_string()), Some("ci".to_string())]
    );
    let wrong = api.send(pause_with("alice-s3cre")).await;
    assert_eq!(wrong.error_code(), "forbidden");
    assert_eq!(issued(&api).len(), 2, "a refused command goes nowhere");
}

#[tokio::test]
async fn the_single_api_token_is_named_default() {
    let api = Api::new(access(ReadAccess::Open));
    api.put(checkout());
    assert_eq!(api.send(pause_with(API_TOKEN)).await.status, StatusCode::OK);
    assert_eq!(issued(&api), vec![Some("default".to_string())]);
}

#[tokio::test]
async fn any_named_token_allows_reads_restricted_to_loopback() {
    let api = named(
        ReadAccess::Loopback,
        SqliteStore::in_memory().expect("store"),
    );
    api.put(checkout());
    for token in [ALICE, CI] {
        let req = request(Method::GET, "/api/v1/rollouts")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .expect("request");
        assert_eq!(
            api.send(from(REMOTE_PEER, req)).await.status,
            StatusCode::OK
        );
    }
    let req = request(Method::GET, "/api/v1/rollouts")
        .header("authorization", "Bearer nope")
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        api.send(from(REMOTE_PEER, req)).await.error_code(),
        "forbidden"
    );
}

#[tokio::test]
async fn the_decision_log_served_says_which_token_issued_a_command_and_never_the_token() {
    let mut sim = Sim::new(spec(SEED_FILE));
    sim.tick_until(&World::healthy(), 1000, |s| s.state.step == 1);
    sim.command_by(Command::Pause, Some("alice"))
        .expect("pausable");
    let store = SqliteStore::in_memory().expect("store");
    let change = Change {
        id: sim.spec.id.clone(),
        state: sim.state.clone(),
        records: sim.log.clone(),
        alerts: Vec::new(),
        deliveries: Vec::new(),
    };
    store.commit(&[change], sim.now).expect("commit");
    let api = named(ReadAccess::Open, store);
    let reply = api.get("/api/v1/rollouts/default/checkout/decisions").await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    let decisions = body["decisions"].as_array().expect("decisions");
    let pause = decisions
        .iter()
        .find(|d| d["action"] == "pause")
        .expect("the pause is logged");
    assert_eq!(pause["by"], "alice");
    assert!(
        decisions
            .iter()
            .filter(|d| d["action"] != "pause")
            .all(|d| d.get("by").is_none()),
        "{body}"
    );
    let text = String::from_utf8_lossy(&reply.body);
    assert!(!text.contains(ALICE) && !text.contains(CI));
}
