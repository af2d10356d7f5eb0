//! Every rejection is a JSON error with the right status, documented in the
//! OpenAPI document, and `limit` means what it says: in process, no sockets.

mod common;
mod harness;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use canaryd::api::{MAX_LIMIT, ReadAccess};
use canaryd::engine::{Command, Decision, RolloutState};
use canaryd::store::{Change, SqliteStore};
use common::{SEED_FILE, Sim, World, spec};
use harness::api::{Api, access, request};
use serde_json::Value;

/// A store holding the seed rollout's first five decisions (start, pause,
/// resume, pause, resume), and the rollout's view.
fn five_decisions() -> (SqliteStore, canaryd::controller::RolloutView) {
    let store = SqliteStore::in_memory().expect("store");
    let mut sim = Sim::new(spec(SEED_FILE));
    let commit = |sim: &Sim, d: &Decision| {
        store
            .commit(&[Change::of(&sim.spec.id, d)], sim.now)
            .expect("commit");
    };
    let d = sim.tick(&World::healthy()).clone();
    commit(&sim, &d);
    for c in [
        Command::Pause,
        Command::Resume,
        Command::Pause,
        Command::Resume,
    ] {
        let d = sim.command(c).expect("accepted").clone();
        commit(&sim, &d);
    }
    let state: &RolloutState = &sim.state;
    let view = canaryd::controller::RolloutView::of(&sim.spec, state, "deploy/checkout.yaml");
    (store, view)
}

fn seqs(body: &Value) -> Vec<u64> {
    body["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|d| d["seq"].as_u64().expect("seq"))
        .collect()
}

#[tokio::test]
async fn limit_zero_returns_no_records_and_limit_n_the_latest_n_oldest_first() {
    let (store, view) = five_decisions();
    let api = Api::with_store(access(ReadAccess::Open), store);
    api.put(view);
    let base = "/api/v1/rollouts/default/checkout/decisions";
    let all = api.get(base).await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(seqs(&all.json()), [1, 2, 3, 4, 5]);
    let none = api.get(&format!("{base}?limit=0")).await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(seqs(&none.json()), Vec::<u64>::new());
    assert_eq!(
        seqs(&api.get(&format!("{base}?limit=2")).await.json()),
        [4, 5]
    );
    let alerts = api
        .get("/api/v1/rollouts/default/checkout/alerts?limit=0")
        .await;
    assert_eq!(alerts.json()["alerts"], serde_json::json!([]));
}

#[tokio::test]
async fn limit_zero_still_tells_a_logged_rollout_from_an_unknown_one() {
    let (store, _) = five_decisions();
    // Not in the view (its file was removed), but logged.
    let api = Api::with_store(access(ReadAccess::Open), store);
    let logged = api
        .get("/api/v1/rollouts/default/checkout/decisions?limit=0")
        .await;
    assert_eq!(logged.status, StatusCode::OK);
    let unknown = api
        .get("/api/v1/rollouts/default/nope/decisions?limit=0")
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "not_found");
}

#[tokio::test]
async fn a_limit_that_is_negative_not_a_number_or_above_the_maximum_is_a_json_400() {
    let (store, view) = five_decisions();
    let api = Api::with_store(access(ReadAccess::Open), store);
    api.put(view);
    let above = (MAX_LIMIT + 1).to_string();
    for limit in ["-1", "abc", "1.5", "", &above, "99999999999999999999"] {
        for log in ["decisions", "alerts"] {
            let uri = format!("/api/v1/rollouts/default/checkout/{log}?limit={limit}");
            let reply = api.get(&uri).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
            assert_eq!(reply.error_code(), "bad_request", "{uri}");
        }
    }
    let max = format!("/api/v1/rollouts/default/checkout/decisions?limit={MAX_LIMIT}");
    assert_eq!(api.get(&max).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_path_segment_that_is_not_utf8_is_a_json_400() {
    let api = Api::new(access(ReadAccess::Open));
    for uri in [
        "/api/v1/rollouts/%ff/checkout",
        "/api/v1/rollouts/default/%ff%fe/decisions",
        "/api/v1/rollouts/default/%ff/series",
        "/assets/%ff",
    ] {
        let reply = api.get(uri).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(reply.error_code(), "bad_request", "{uri}");
    }
    let post = request(Method::POST, "/api/v1/rollouts/%ff/x/pause")
        .header("authorization", "Bearer api-t0ken")
        .body(Body::empty())
        .expect("request");
    assert_eq!(api.send(post).await.error_code(), "bad_request");
}

#[tokio::test]
async fn a_query_flag_that_is_not_a_boolean_is_a_json_400() {
    let api = Api::new(access(ReadAccess::Open));
    let reply = api
        .get("/api/v1/rollouts/default/checkout?full_path=yes")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "bad_request");
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404_and_a_wrong_method_a_json_405_with_allow() {
    let api = Api::new(access(ReadAccess::Open));
    for uri in [
        "/nope",
        "/api/v1/nope",
        "/api/v1/rollouts/a/b/c/d",
        "/assets/nope.js",
    ] {
        let reply = api.get(uri).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(reply.error_code(), "not_found", "{uri}");
    }
    for (method, uri, allow) in [
        (Method::DELETE, "/api/v1/rollouts", "GET,HEAD"),
        (
            Method::POST,
            "/api/v1/rollouts/default/checkout",
            "GET,HEAD",
        ),
        (
            Method::GET,
            "/api/v1/rollouts/default/checkout/pause",
            "POST",
        ),
        (Method::PUT, "/healthz", "GET,HEAD"),
    ] {
        let req = request(method.clone(), uri)
            .body(Body::empty())
            .expect("request");
        let reply = api.send(req).await;
        assert_eq!(
            reply.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {uri}"
        );
        assert_eq!(reply.error_code(), "method_not_allowed", "{method} {uri}");
        assert_eq!(reply.headers["allow"], allow, "{method} {uri}");
    }
}

#[tokio::test]
async fn every_status_these_rejections_get_is_documented_for_their_operation() {
    let api = Api::new(access(ReadAccess::Open));
    let doc = api.get("/api/v1/openapi.json").await.json();
    let cases = [
        (
            "/api/v1/rollouts/default/checkout/decisions?limit=-1",
            "/api/v1/rollouts/{namespace}/{name}/decisions",
        ),
        (
            "/api/v1/rollouts/default/checkout/alerts?limit=abc",
            "/api/v1/rollouts/{namespace}/{name}/alerts",
        ),
        (
            "/api/v1/rollouts/%ff/checkout",
            "/api/v1/rollouts/{namespace}/{name}",
        ),
        (
            "/api/v1/rollouts/default/checkout?full_path=true",
            "/api/v1/rollouts/{namespace}/{name}",
        ),
        (
            "/api/v1/rollouts/default/nope/series",
            "/api/v1/rollouts/{namespace}/{name}/series",
        ),
        (
            "/api/v1/rollouts/default/nope/shadow",
            "/api/v1/rollouts/{namespace}/{name}/shadow",
        ),
        ("/assets/nope.js", "/assets/{file}"),
        ("/api/v1/rollouts?limit=0", "/api/v1/rollouts"),
        ("/api/v1/rollouts?phase=Running", "/api/v1/rollouts"),
        ("/api/v1/events?rollout=default/nope", "/api/v1/events"),
        ("/api/v1/events?rollout=nope", "/api/v1/events"),
    ];
    for (uri, template) in cases {
        let reply = api.get(uri).await;
        assert!(reply.status.is_client_error(), "{uri}: {}", reply.status);
        let documented = &doc["paths"][template]["get"]["responses"][reply.status.as_str()];
        assert!(
            documented.is_object(),
            "{uri}: {} not documented under {template}",
            reply.status
        );
    }
    let limit = &doc["components"]["parameters"]["limit"]["schema"];
    assert_eq!(limit["minimum"], 0);
    assert_eq!(limit["maximum"], MAX_LIMIT);
    let codes =
        &doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"];
    for code in [
        "bad_request",
        "not_found",
        "method_not_allowed",
        "host_not_allowed",
    ] {
        assert!(
            codes
                .as_array()
                .is_some_and(|c| c.contains(&Value::from(code))),
            "{code}"
        );
    }
}
