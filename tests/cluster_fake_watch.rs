//! The fake API server's watches behave like the real one's: replay from a
//! resourceVersion, live events, bookmarks only when allowed, selectors,
//! 410 Gone after compaction, and kube's own watcher relisting after it.

mod cluster_support;

use std::time::Duration;

use canaryd::cluster::fake::FakeApiServer;
use cluster_support::{DEPLOY as DEPLOYMENTS, create, deployment};
use futures::{StreamExt, TryStreamExt};
use http::Method;
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, WatchEvent, WatchParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";

/// A request that must succeed.
async fn call(fake: &FakeApiServer, method: Method, uri: &str, ct: &str, body: &Value) {
    cluster_support::call(fake, method, uri, ct, body, 200);
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn next_line(lines: &mut (impl futures::Stream<Item = Value> + Unpin)) -> Value {
    tokio::time::timeout(Duration::from_secs(5), lines.next())
        .await
        .expect("an event in time")
        .expect("stream open")
}

fn watch_lines(
    fake: &FakeApiServer,
    uri: &str,
) -> impl futures::Stream<Item = Value> + Unpin + use<> {
    let response = fake.handle(&Method::GET, &uri.parse().expect("uri"), None, &[]);
    let body = response.into_body().into_data_stream();
    Box::pin(
        body.map(|chunk| chunk.map(|c| c.to_vec()).unwrap_or_default())
            .flat_map(|bytes| {
                futures::stream::iter(
                    String::from_utf8_lossy(&bytes)
                        .lines()
                        .map(|l| serde_json::from_str::<Value>(l).unwrap_or(Value::Null))
                        .collect::<Vec<_>>(),
                )
            }),
    )
}

#[tokio::test]
async fn a_watch_replays_changes_after_its_resource_version_then_follows_live_ones_with_bookmarks()
{
    let fake = FakeApiServer::new();
    create(&fake, DEPLOYMENTS, deployment("a", 1, "app:v1"));
    create(&fake, DEPLOYMENTS, deployment("b", 1, "app:v1"));
    let mut lines = watch_lines(
        &fake,
        &format!("{DEPLOYMENTS}?watch=true&resourceVersion=1&allowWatchBookmarks=true"),
    );
    let first = next_line(&mut lines).await;
    assert_eq!(
        (
            first["type"].as_str(),
            first["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("b")),
        "only changes after rv 1"
    );
    call(
        &fake,
        Method::PATCH,
        &format!("{DEPLOYMENTS}/a"),
        MERGE,
        &json!({ "spec": { "replicas": 2 } }),
    )
    .await;
    let modified = next_line(&mut lines).await;
    assert_eq!(modified["type"], "MODIFIED");
    assert_eq!(modified["object"]["spec"]["replicas"], 2);
    fake.bookmark();
    let mark = next_line(&mut lines).await;
    assert_eq!(mark["type"], "BOOKMARK");
    assert_eq!(rv(&mark["object"]), fake.resource_version().to_string());
    call(
        &fake,
        Method::DELETE,
        &format!("{DEPLOYMENTS}/b"),
        JSON,
        &Value::Null,
    )
    .await;
    assert_eq!(next_line(&mut lines).await["type"], "DELETED");

    // A watch that did not ask for bookmarks gets none.
    let mut plain = watch_lines(
        &fake,
        &format!(
            "{DEPLOYMENTS}?watch=true&resourceVersion={}",
            fake.resource_version()
        ),
    );
    fake.bookmark();
    call(
        &fake,
        Method::PATCH,
        &format!("{DEPLOYMENTS}/a"),
        MERGE,
        &json!({ "spec": { "replicas": 3 } }),
    )
    .await;
    assert_eq!(next_line(&mut plain).await["type"], "MODIFIED");
}

#[tokio::test]
async fn a_watch_without_resource_version_starts_with_every_object_and_honours_selectors() {
    let fake = FakeApiServer::new();
    create(&fake, DEPLOYMENTS, deployment("a", 1, "app:v1"));
    create(&fake, DEPLOYMENTS, deployment("b", 1, "app:v1"));
    let mut lines = watch_lines(
        &fake,
        &format!("{DEPLOYMENTS}?watch=1&fieldSelector=metadata.name%3Db"),
    );
    let first = next_line(&mut lines).await;
    assert_eq!(
        (
            first["type"].as_str(),
            first["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("b"))
    );
    call(
        &fake,
        Method::PATCH,
        &format!("{DEPLOYMENTS}/a"),
        MERGE,
        &json!({ "spec": { "replicas": 2 } }),
    )
    .await;
    call(
        &fake,
        Method::PATCH,
        &format!("{DEPLOYMENTS}/b"),
        MERGE,
        &json!({ "spec": { "replicas": 5 } }),
    )
    .await;
    let next = next_line(&mut lines).await;
    assert_eq!(
        (
            next["type"].as_str(),
            next["object"]["spec"]["replicas"].as_i64()
        ),
        (Some("MODIFIED"), Some(5)),
        "a's change is filtered out"
    );
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_gets_410_gone() {
    let fake = FakeApiServer::new();
    let client = fake.client();
    let api: Api<Deployment> = Api::namespaced(client, "shop");
    create(&fake, DEPLOYMENTS, deployment("a", 1, "app:v1"));
    fake.compact();
    let stream = api
        .watch(&WatchParams::default(), "1")
        .await
        .expect("watch opens");
    let mut stream = Box::pin(stream);
    let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("an event");
    match event {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn kubes_watcher_lists_then_relists_after_its_watch_expires() {
    let fake = FakeApiServer::new();
    let api: Api<Deployment> = Api::namespaced(fake.client(), "shop");
    create(&fake, DEPLOYMENTS, deployment("a", 1, "app:v1"));
    let mut events = Box::pin(watcher(api, watcher::Config::default().timeout(290)));
    let mut init_done = 0;
    let mut applied = Vec::new();
    let mut gone = false;
    while init_done < 2 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("in time")
            .expect("open");
        let event = match event {
            Ok(event) => event,
            // The watcher reports the 410 as an item, then relists.
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                gone = true;
                continue;
            }
            Err(e) => panic!("watcher: {e}"),
        };
        match event {
            watcher::Event::InitApply(d) => applied.push(d.metadata.name.unwrap_or_default()),
            watcher::Event::InitDone => {
                init_done += 1;
                if init_done == 1 {
                    // History is lost while the watch is down: the next watch gets 410.
                    create(&fake, DEPLOYMENTS, deployment("b", 1, "app:v1"));
                    fake.compact();
                    fake.close_watches();
                }
            }
            watcher::Event::Apply(d) => applied.push(d.metadata.name.unwrap_or_default()),
            _ => {}
        }
    }
    assert!(
        gone,
        "the re-watch from the compacted resourceVersion got 410"
    );
    assert_eq!(applied.first().map(String::as_str), Some("a"));
    assert!(
        applied.ends_with(&["a".to_string(), "b".to_string()]),
        "the relist saw both: {applied:?}"
    );
}
