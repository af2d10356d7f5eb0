//! `canaryd status`'s client against a served API: it follows the list's
//! `continue` tokens so it shows every rollout, and passes `--phase` and
//! `--namespace` on as filters. (The client runs in process: the test
//! binary's build of `canaryd` is the one under test.)

mod harness;

use std::net::SocketAddr;

use canaryd::api::{Access, HostAllowList, ReadAccess};
use canaryd::engine::Phase;
use harness::api::{Api, rollout};
use serde_json::Value;

/// The API on a loopback port, serving `count` rollouts (namespaces `ns-0`
/// to `ns-4`; every seventh one paused, the rest progressing).
async fn served(count: usize) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let api = Api::new(Access {
        hosts: HostAllowList::for_listener(addr, None, &[]).expect("allow-list"),
        reads: ReadAccess::Open,
        read_token: None,
    });
    for i in 0..count {
        let phase = if i % 7 == 0 {
            Phase::Paused
        } else {
            Phase::Progressing
        };
        api.put(rollout(
            &format!("ns-{}", i % 5),
            &format!("svc-{i:05}"),
            phase,
        ));
    }
    let app = api
        .app
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), server)
}

/// What `canaryd status --phase PHASES --namespace NS` fetches.
async fn status(
    server: &str,
    phases: &[&str],
    namespace: Option<&str>,
) -> Result<Vec<Value>, String> {
    let phases: Vec<String> = phases.iter().map(|p| p.to_string()).collect();
    canaryd::cli::every_rollout(&reqwest::Client::new(), server, &phases, namespace).await
}

fn keys(rollouts: &[Value]) -> Vec<String> {
    rollouts
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

#[tokio::test]
async fn status_follows_the_pages_and_shows_every_rollout_once() {
    // More than two pages of the largest size `status` asks for.
    let (server, serving) = served(2_500).await;
    let shown = keys(&status(&server, &[], None).await.expect("the rollouts"));
    let mut expected: Vec<String> = (0..2_500)
        .map(|i| format!("ns-{}/svc-{i:05}", i % 5))
        .collect();
    expected.sort();
    assert_eq!(shown.len(), expected.len());
    assert!(shown == expected, "not every rollout once, in order");
    serving.abort();
}

#[tokio::test]
async fn status_passes_phase_and_namespace_filters_to_the_api() {
    let (server, serving) = served(70).await;
    let paused = status(&server, &["Paused"], Some("ns-0"))
        .await
        .expect("the rollouts");
    // Paused: every seventh (i % 7 == 0); ns-0: i % 5 == 0; so i % 35 == 0.
    assert_eq!(keys(&paused), ["ns-0/svc-00000", "ns-0/svc-00035"]);
    let refused = status(&server, &["Running"], None)
        .await
        .expect_err("a 400");
    assert!(refused.contains("\"Running\" is not one of"), "{refused}");
    serving.abort();
}
