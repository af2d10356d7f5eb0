//! The HAProxy adapter against a real HAProxy (Debian's `haproxy`) through its
//! Runtime API socket, in front of real sample apps.

mod harness;

use std::time::Duration;

use canaryd::spec::units::Weight;
use harness::haproxy::Haproxy;
use harness::{instant, sample_app, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_set_through_the_runtime_api_read_back_and_split_traffic() {
    let stable = sample_app("checkout", "v1", instant()).await;
    let canary = sample_app("checkout", "v2", instant()).await;
    let haproxy = Haproxy::start(stable.addr(), canary.addr()).await;
    let router = haproxy.adapter("canary");
    assert_eq!(router.weight().await.expect("read"), Weight::ZERO);

    let quarter = Weight::parse("25%").expect("weight");
    router.set_weight(quarter).await.expect("set");
    // Read back from HAProxy: 64/256 is exactly 25%.
    assert_eq!(router.weight().await.expect("read"), quarter);
    // Setting it again changes nothing (idempotent).
    router.set_weight(quarter).await.expect("set again");

    let health = wait_for("both servers up", Duration::from_secs(10), || async {
        let h = router.health().await;
        if h.stable && h.canary {
            Ok(h)
        } else {
            Err(format!("{h:?}"))
        }
    })
    .await;
    assert!(health.canary);

    let http = reqwest::Client::new();
    let n = 1000;
    let mut to_canary = 0;
    for _ in 0..n {
        let r = http
            .get(format!("http://{}/", haproxy.frontend))
            .send()
            .await
            .expect("request");
        to_canary += usize::from(r.headers()["x-canaryd-version"] == "v2");
    }
    let share = to_canary as f64 / n as f64;
    // Binomial: σ ≈ 1.4 points at n = 1000; ±6 points is 4σ.
    assert!((share - 0.25).abs() < 0.06, "canary share {share}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_that_fails_its_health_check_is_reported_unready() {
    let stable = sample_app("checkout", "v1", instant()).await;
    let canary = sample_app("checkout", "v2", instant()).await;
    let haproxy = Haproxy::start(stable.addr(), canary.addr()).await;
    let router = haproxy.adapter("canary");
    reqwest::Client::new()
        .put(format!("http://{}/admin/behaviour", canary.addr()))
        .body(r#"{"ready": false}"#)
        .send()
        .await
        .expect("admin");
    wait_for(
        "canary down, stable up",
        Duration::from_secs(10),
        || async {
            let h = router.health().await;
            if h.stable && !h.canary {
                Ok(())
            } else {
                Err(format!("{h:?}"))
            }
        },
    )
    .await;
}

#[tokio::test]
async fn an_unknown_server_is_refused_with_haproxys_answer() {
    let stable = sample_app("checkout", "v1", instant()).await;
    let canary = sample_app("checkout", "v2", instant()).await;
    let haproxy = Haproxy::start(stable.addr(), canary.addr()).await;
    let router = haproxy.adapter("canray");
    let err = router.set_weight(Weight::FULL).await.expect_err("refused");
    assert!(
        err.to_string().to_lowercase().contains("no such server"),
        "{err}"
    );
}
