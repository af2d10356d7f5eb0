//! The sample service over real HTTP: faults injected at runtime through
//! `/admin/behaviour`, readiness, and the `http-red` metrics it exports.

mod harness;

use canaryd::sample::Behaviour;
use harness::sample_app;

#[tokio::test]
async fn a_fault_injected_through_the_admin_endpoint_applies_to_the_next_requests() {
    let app = sample_app("checkout", "v2", Behaviour::default()).await;
    let base = format!("http://{}", app.addr());
    let http = reqwest::Client::new();

    let ok = http
        .get(format!("{base}/pay"))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["x-canaryd-version"], "v2");

    let changed = http
        .put(format!("{base}/admin/behaviour"))
        .body(r#"{"error_rate": "100%", "latency_p99": "50ms", "latency_p50": "10ms"}"#)
        .send()
        .await
        .expect("admin");
    assert_eq!(changed.status(), 200);
    let now: serde_json::Value = changed.json().await.expect("JSON");
    assert_eq!(now["error_rate"], 1.0);
    assert_eq!(now["latency_p99"], "50ms");
    for _ in 0..5 {
        let r = http
            .get(format!("{base}/pay"))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 500);
    }

    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(r#"http_requests_total{service="checkout",version="v2",code="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"http_requests_total{service="checkout",version="v2",code="500"} 5"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"http_request_duration_seconds_count{service="checkout",version="v2"} 6"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_bad_patch_is_refused_with_the_field_and_changes_nothing() {
    let app = sample_app("checkout", "v1", Behaviour::default()).await;
    let base = format!("http://{}", app.addr());
    let http = reqwest::Client::new();
    let refused = http
        .put(format!("{base}/admin/behaviour"))
        .body(r#"{"error_rate": "5%", "latency_p99": "soon"}"#)
        .send()
        .await
        .expect("admin");
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().await.expect("JSON error");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("latency_p99:"), "{body}");
    let current: serde_json::Value = http
        .get(format!("{base}/admin/behaviour"))
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("JSON");
    assert_eq!(current["error_rate"], 0.0);
}

#[tokio::test]
async fn readiness_follows_the_behaviour() {
    let app = sample_app("checkout", "v1", Behaviour::default()).await;
    let base = format!("http://{}", app.addr());
    let http = reqwest::Client::new();
    let health = || http.get(format!("{base}/healthz")).send();
    assert_eq!(health().await.expect("healthz").status(), 200);
    http.put(format!("{base}/admin/behaviour"))
        .body(r#"{"ready": false}"#)
        .send()
        .await
        .expect("admin");
    assert_eq!(health().await.expect("healthz").status(), 503);
}
