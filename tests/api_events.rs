//! The event stream (`GET /api/v1/events`) coalesces: a rollout updated many
//! times within a window arrives once, in its latest state; and
//! `?rollout=NS/NAME` follows one rollout. In process, in paused time.

mod harness;

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use canaryd::api::ReadAccess;
use canaryd::controller::Event;
use canaryd::controller::view::stream::EVENT_WINDOW;
use canaryd::engine::Phase;
use harness::api::{Api, access, rollout};
use http_body_util::BodyExt;
use serde_json::Value;

/// Reads SSE events (`(name, data)`) from `body` until `done` says so, or
/// panics after a minute of (paused) time.
async fn read_until(body: &mut Body, done: impl Fn(&str, &Value) -> bool) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("no end of the awaited events; got {events:?}"))
            .expect("the stream stays open")
            .expect("a frame");
        let Ok(data) = frame.into_data() else {
            continue;
        };
        text.push_str(std::str::from_utf8(&data).expect("UTF-8"));
        while let Some(end) = text.find("\n\n") {
            let chunk: String = text.drain(..end + 2).collect();
            let mut name = None;
            let mut payload = None;
            for line in chunk.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    payload = Some(serde_json::from_str::<Value>(d).expect("JSON data"));
                }
            }
            // Keep-alive comments carry neither.
            if let (Some(name), Some(payload)) = (name, payload) {
                let finished = done(&name, &payload);
                events.push((name, payload));
                if finished {
                    return events;
                }
            }
        }
    }
}

fn state(view: canaryd::controller::RolloutView) -> Event {
    Event::State {
        rollout: std::sync::Arc::new(view),
    }
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_updates_to_one_rollout_arrives_as_at_most_one_event_per_window_in_its_latest_state()
 {
    let api = Api::new(access(ReadAccess::Open));
    api.put(rollout("default", "checkout", Phase::Progressing));
    let response = api.open("/api/v1/events").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();

    // 300 updates over three ticks of a second (the window).
    const UPDATES: u32 = 300;
    let ticks = 3;
    assert_eq!(EVENT_WINDOW, Duration::from_secs(1));
    let gap = Duration::from_millis(10);
    let view = api.state.view.clone();
    let publisher = tokio::spawn(async move {
        for i in 1..=UPDATES {
            let mut v = rollout("default", "checkout", Phase::Progressing);
            v.canary_weight = f64::from(i) / 3.0;
            view.publish(state(v));
            tokio::time::sleep(gap).await;
        }
    });
    let events = read_until(&mut body, |_, data| {
        data["rollout"]["canary_weight"] == 100.0
    })
    .await;
    publisher.await.expect("publisher");

    // The first update goes out at once; after it, one per tick.
    assert!(
        events.len() as u32 <= ticks + 1,
        "{} events for {UPDATES} updates over {ticks} ticks",
        events.len()
    );
    let weights: Vec<f64> = events
        .iter()
        .map(|(name, data)| {
            assert_eq!(name, "state");
            data["rollout"]["canary_weight"].as_f64().expect("weight")
        })
        .collect();
    assert!(weights.windows(2).all(|w| w[0] < w[1]), "{weights:?}");
}

#[tokio::test(start_paused = true)]
async fn updates_to_many_rollouts_in_one_window_each_arrive_once() {
    let api = Api::new(access(ReadAccess::Open));
    let mut body = api.open("/api/v1/events").await.into_body();
    let view = api.state.view.clone();
    for round in 1..=5 {
        for i in 0..50 {
            let mut v = rollout("default", &format!("svc-{i:02}"), Phase::Progressing);
            v.canary_weight = f64::from(round);
            view.publish(state(v));
        }
    }
    let events = read_until(&mut body, |_, data| data["rollout"]["name"] == "svc-49").await;
    let names: Vec<&str> = events
        .iter()
        .map(|(_, d)| d["rollout"]["name"].as_str().expect("name"))
        .collect();
    let expected: Vec<String> = (0..50).map(|i| format!("svc-{i:02}")).collect();
    assert_eq!(names, expected);
    assert!(
        events
            .iter()
            .all(|(_, d)| d["rollout"]["canary_weight"] == 5.0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_subscription_to_one_rollout_sees_only_that_rollout_and_its_file() {
    let api = Api::new(access(ReadAccess::Open));
    api.put(rollout("default", "checkout", Phase::Progressing));
    api.put(rollout("default", "payments", Phase::Progressing));
    api.put(rollout("staging", "checkout", Phase::Progressing));
    let response = api.open("/api/v1/events?rollout=default/checkout").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();

    let view = &api.state.view;
    view.publish(state(rollout("default", "payments", Phase::Paused)));
    view.publish(state(rollout("staging", "checkout", Phase::Paused)));
    view.publish(Event::FileRejected {
        file: "deploy/payments.yaml".into(),
        errors: "deploy/payments.yaml: bad".into(),
    });
    view.publish(Event::FileRejected {
        file: "deploy/checkout.yaml".into(),
        errors: "deploy/checkout.yaml: line 2: bad".into(),
    });
    let mut last = rollout("default", "checkout", Phase::Paused);
    last.canary_weight = 42.0;
    view.publish(state(last));

    let events = read_until(&mut body, |name, _| name == "state").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].0, "file_rejected");
    assert_eq!(events[0].1["file"], "checkout.yaml");
    assert_eq!(events[1].1["rollout"]["namespace"], "default");
    assert_eq!(events[1].1["rollout"]["name"], "checkout");
    assert_eq!(events[1].1["rollout"]["canary_weight"], 42.0);
}

#[tokio::test]
async fn subscribing_to_an_unknown_rollout_is_a_404_and_to_a_malformed_one_a_400() {
    let api = Api::new(access(ReadAccess::Open));
    api.put(rollout("default", "checkout", Phase::Progressing));
    let reply = api.get("/api/v1/events?rollout=default/nope").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.error_code(), "not_found");
    for malformed in ["checkout", "default/", "/checkout"] {
        let reply = api
            .get(&format!("/api/v1/events?rollout={malformed}"))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{malformed}");
        assert_eq!(reply.error_code(), "bad_request");
    }
}
