//! `GET /api/v1/rollouts` a page at a time: every rollout exactly once
//! across pages, stable under inserts and removals, each filter, the summary
//! form, and a clear 400 for each bad parameter. In process, no sockets.

mod harness;

use axum::http::StatusCode;
use canaryd::api::ReadAccess;
use canaryd::engine::Phase;
use harness::api::{Api, access, rollout};
use serde_json::Value;

/// `count` rollouts spread over three namespaces, phases in turn.
fn fleet(api: &Api, count: usize) -> Vec<String> {
    let phases = [Phase::Progressing, Phase::Paused, Phase::Promoted];
    let mut keys: Vec<String> = (0..count)
        .map(|i| {
            let ns = ["alpha", "beta", "gamma"][i % 3];
            let name = format!("svc-{i:05}");
            api.put(rollout(ns, &name, phases[i % 3]));
            format!("{ns}/{name}")
        })
        .collect();
    keys.sort();
    keys
}

fn keys(body: &Value) -> Vec<String> {
    body["rollouts"]
        .as_array()
        .unwrap_or_else(|| panic!("no rollouts: {body}"))
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["namespace"].as_str().unwrap_or("?"),
                r["name"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// Every page of `query`, following `continue`; also checks `total` is the
/// same on each page.
async fn walk(api: &Api, query: &str) -> Vec<String> {
    walk_from(api, query, None).await
}

/// The same, from the page after `token`.
async fn walk_from(api: &Api, query: &str, token: Option<&str>) -> Vec<String> {
    let mut seen = Vec::new();
    let mut uri = match token {
        Some(token) => format!("/api/v1/rollouts?{query}&continue={token}"),
        None => format!("/api/v1/rollouts?{query}"),
    };
    let mut total = None;
    for _ in 0..10_000 {
        let reply = api.get(&uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {:?}", reply.body);
        let body = reply.json();
        let page_total = body["total"].as_u64().expect("total");
        assert_eq!(*total.get_or_insert(page_total), page_total, "total moved");
        seen.extend(keys(&body));
        match body["continue"].as_str() {
            Some(token) => uri = format!("/api/v1/rollouts?{query}&continue={token}"),
            None => return seen,
        }
    }
    panic!("more than 10,000 pages of {query}");
}

#[tokio::test]
async fn paging_walks_every_rollout_exactly_once_in_namespace_and_name_order() {
    let api = Api::new(access(ReadAccess::Open));
    let all = fleet(&api, 250);
    assert_eq!(walk(&api, "limit=40").await, all);
    let first = api.get("/api/v1/rollouts?limit=40").await.json();
    assert_eq!(first["total"], 250);
    assert_eq!(keys(&first).len(), 40);
    // The default page holds them all, so it is the last page.
    let whole = api.get("/api/v1/rollouts").await.json();
    assert_eq!(keys(&whole), all);
    assert!(whole.get("continue").is_none(), "{}", whole["continue"]);
}

#[tokio::test]
async fn a_rollout_added_or_removed_between_pages_neither_duplicates_nor_skips_the_others() {
    let api = Api::new(access(ReadAccess::Open));
    let all = fleet(&api, 90);
    let first = api.get("/api/v1/rollouts?limit=30").await.json();
    let page1 = keys(&first);
    let token = first["continue"].as_str().expect("more pages").to_string();
    // Between pages: the page's last rollout and one not yet seen go away,
    // one appears before the cursor and one after it.
    let id = |key: &str| {
        let (namespace, name) = key.split_once('/').expect("ns/name");
        canaryd::spec::model::RolloutId {
            namespace: namespace.into(),
            name: name.into(),
        }
    };
    let last_seen = page1.last().expect("a full page").clone();
    let unseen_removed = all[60].clone();
    api.state.view.remove(&id(&last_seen));
    api.state.view.remove(&id(&unseen_removed));
    api.put(rollout("alpha", "aaa-before", Phase::Idle));
    api.put(rollout("zeta", "after", Phase::Idle));
    let rest = walk_from(&api, "limit=30", Some(&token)).await;
    let mut expected: Vec<String> = all[30..]
        .iter()
        .filter(|k| **k != unseen_removed)
        .cloned()
        .collect();
    expected.push("zeta/after".into());
    assert_eq!(rest, expected);
}

#[tokio::test]
async fn each_filter_narrows_the_list_and_the_phase_counts_ignore_only_the_phase_filter() {
    let api = Api::new(access(ReadAccess::Open));
    for (ns, name, phase) in [
        ("alpha", "api", Phase::Progressing),
        ("alpha", "billing", Phase::Paused),
        ("alpha", "checkout", Phase::Promoted),
        ("beta", "Checkout-EU", Phase::RolledBack),
        ("beta", "pay-eu", Phase::Progressing),
        ("beta", "payments", Phase::Paused),
        ("gamma", "checkout-us", Phase::Progressing),
        ("gamma", "search", Phase::Idle),
    ] {
        api.put(rollout(ns, name, phase));
    }

    assert_eq!(
        walk(&api, "phase=Progressing&limit=2").await,
        ["alpha/api", "beta/pay-eu", "gamma/checkout-us"]
    );

    let two = api
        .get("/api/v1/rollouts?phase=RolledBack,Paused&namespace=beta&view=summary")
        .await
        .json();
    assert_eq!(keys(&two), ["beta/Checkout-EU", "beta/payments"]);
    assert_eq!(two["total"], 2);
    // Every phase of namespace beta, whatever the phase filter.
    let counts = &two["phases"];
    assert_eq!(counts["Paused"], 1);
    assert_eq!(counts["RolledBack"], 1);
    assert_eq!(counts["Progressing"], 1);
    assert_eq!(counts["Idle"], 0);
    assert_eq!(counts["Promoted"], 0);
    assert_eq!(counts["Aborted"], 0);

    assert_eq!(
        walk(&api, "namespace=beta&limit=1").await,
        ["beta/Checkout-EU", "beta/pay-eu", "beta/payments"]
    );
    // The prefix is the name's start, exactly (case included).
    assert_eq!(
        walk(&api, "prefix=checkout").await,
        ["alpha/checkout", "gamma/checkout-us"]
    );
    assert_eq!(
        walk(&api, "namespace=beta&prefix=pay").await,
        ["beta/pay-eu", "beta/payments"]
    );
    assert_eq!(walk(&api, "namespace=delta").await, Vec::<String>::new());

    // `q` is a substring of `namespace/name`, ignoring case.
    assert_eq!(walk(&api, "q=TA/CHECK").await, ["beta/Checkout-EU"]);
    let q = api.get("/api/v1/rollouts?q=checkout").await.json();
    assert_eq!(
        keys(&q),
        ["alpha/checkout", "beta/Checkout-EU", "gamma/checkout-us"]
    );
    assert_eq!(q["phases"]["Progressing"], 1);
    assert_eq!(q["phases"]["Promoted"], 1);
    assert_eq!(q["phases"]["Paused"], 0);

    // Empty filters filter nothing.
    assert_eq!(walk(&api, "phase=&namespace=&prefix=&q=").await.len(), 8);
    let all = api.get("/api/v1/rollouts?limit=1").await.json();
    assert_eq!(all["total"], 8);
    assert_eq!(all["phases"]["Paused"], 2);
    assert_eq!(all["phases"]["Progressing"], 3);
}

#[tokio::test]
async fn the_summary_form_carries_only_the_list_columns() {
    let api = Api::new(access(ReadAccess::Open));
    let mut view = rollout("default", "checkout", Phase::Progressing);
    view.canary_weight = 25.0;
    view.stable_version = "v1".into();
    view.canary_version = Some("v2".into());
    view.file_error = Some("line 3: unknown field".into());
    view.last_decision = Some(canaryd::controller::view::LastDecision {
        at: canaryd::engine::Timestamp::from_millis(1_800_000_060_000),
        action: "advance".into(),
        reason: "gates pass".into(),
        by: None,
    });
    api.put(view);
    let body = api.get("/api/v1/rollouts?view=summary").await.json();
    let item = &body["rollouts"][0];
    let mut fields: Vec<&str> = item
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "canary",
            "file_error",
            "last_decision_at",
            "mode",
            "name",
            "namespace",
            "phase",
            "stable",
            "step",
            "steps",
            "weight"
        ]
    );
    assert_eq!(item["weight"], 25.0);
    assert_eq!(item["stable"], "v1");
    assert_eq!(item["canary"], "v2");
    assert_eq!(item["file_error"], true);
    assert_eq!(item["phase"], "Progressing");
    assert_eq!(item["mode"], "active");
    assert_eq!(item["step"], 1);
    assert_eq!(item["last_decision_at"], "2027-01-15T08:01:00.000Z");

    let full = api.get("/api/v1/rollouts?view=full").await.json();
    assert_eq!(full["rollouts"][0]["canary_weight"], 25.0);
    assert!(full["rollouts"][0]["plan"].is_array());
}

#[tokio::test]
async fn a_limit_above_the_maximum_is_clamped_to_a_page_of_one_thousand() {
    let api = Api::new(access(ReadAccess::Open));
    fleet(&api, 1_200);
    let body = api
        .get("/api/v1/rollouts?limit=5000&view=summary")
        .await
        .json();
    assert_eq!(keys(&body).len(), 1000);
    assert_eq!(body["total"], 1200);
    assert!(body["continue"].is_string());
}

#[tokio::test]
async fn each_bad_list_parameter_is_a_json_400_that_says_what_is_wrong() {
    let api = Api::new(access(ReadAccess::Open));
    fleet(&api, 3);
    for (query, says) in [
        ("limit=0", "at least 1"),
        ("limit=-1", "whole number"),
        ("limit=ten", "whole number"),
        (
            "phase=Running",
            "Idle, Progressing, Paused, Promoted, RolledBack, Aborted",
        ),
        ("phase=Paused,progressing", "\"progressing\""),
        ("continue=not%20a%20token", "continue"),
        ("continue=Zm9v", "continue"),
        ("view=tiny", "full, summary"),
    ] {
        let reply = api.get(&format!("/api/v1/rollouts?{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(reply.error_code(), "bad_request", "{query}");
        let body = reply.json();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{query}: {message}");
    }
}

#[tokio::test]
async fn a_failing_store_is_still_reported_on_each_page() {
    let api = Api::new(access(ReadAccess::Open));
    fleet(&api, 3);
    api.state
        .view
        .set_store_error(Some("database is locked".into()));
    let body = api.get("/api/v1/rollouts?limit=1").await.json();
    assert_eq!(body["store_error"], "database is locked");
}
