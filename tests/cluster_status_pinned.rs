//! Request pinning for cluster mode's status writer, the leader's
//! [`StatusBook`] (`src/cluster/state/book.rs`): the exact requests a
//! status write sends (a PUT of the whole object to the `status`
//! subresource, `fieldManager=canaryd`, `application/json`, the
//! resourceVersion it read in the body's metadata as the precondition), and
//! what it does with the API server's 409 for a stale resourceVersion: it
//! never overwrites a status another writer stored, it reports the conflict
//! and raises the fence; only a spec or metadata change in between is
//! recomputed on the fresh object.

#[path = "cluster_support/verifier.rs"]
mod verifier;

use std::sync::Arc;
use std::time::Duration;

use canaryd::cluster::crd::RolloutPhase;
use canaryd::cluster::state::StatusBook;
use canaryd::ports::{AlwaysLeader, Leadership, StoreError};
use canaryd::spec::model::RolloutId;
use serde_json::{Value, json};
use verifier::{conflict, expect, pinned};

const ROLLOUT: &str = "/apis/canaryd.dev/v1alpha1/namespaces/shop/rollouts/checkout";

fn status_put() -> String {
    format!("{ROLLOUT}/status?&fieldManager=canaryd")
}

fn spec(replicas: u32) -> Value {
    json!({
        "targetRef": { "kind": "Deployment", "name": "checkout" },
        "router": { "kind": "kubernetes-replicas", "replicas": replicas },
        "deploy": { "steps": [{ "deploy": "100%" }] }
    })
}

/// The Rollout as the server holds it at resourceVersion `rv`.
fn rollout(rv: &str, spec: Value, status: Option<Value>) -> Value {
    let mut r = json!({
        "apiVersion": "canaryd.dev/v1alpha1", "kind": "Rollout",
        "metadata": { "name": "checkout", "namespace": "shop", "resourceVersion": rv },
        "spec": spec
    });
    if let Some(s) = status {
        r["status"] = s;
    }
    r
}

fn at_step(step: u32) -> Value {
    json!({ "phase": "Progressing", "step": step })
}

fn id() -> RolloutId {
    RolloutId {
        namespace: "shop".into(),
        name: "checkout".into(),
    }
}

struct NotLeader;

impl Leadership for NotLeader {
    fn may_act(&self) -> bool {
        false
    }
}

/// Sets the status to `step`, Progressing.
fn to_step(
    step: u32,
) -> impl FnMut(&mut canaryd::cluster::crd::RolloutStatus) -> Result<bool, StoreError> {
    move |s| {
        s.phase = Some(RolloutPhase::Progressing);
        s.step = Some(step);
        Ok(true)
    }
}

/// Whether the book's fence was raised (a raised fence is a stored permit:
/// `fenced()` returns at once).
async fn fence_raised(book: &StatusBook) -> bool {
    tokio::time::timeout(Duration::from_millis(200), book.fenced())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_status_write_reads_once_then_puts_the_whole_object_with_the_resource_version_it_read() {
    let calls = vec![
        expect("GET", ROLLOUT).answers(200, rollout("41", spec(10), Some(at_step(1)))),
        expect("PUT", status_put())
            .sends(
                "application/json",
                rollout("41", spec(10), Some(at_step(2))),
            )
            .answers(200, rollout("42", spec(10), Some(at_step(2)))),
        // The next write starts from the object as written: no read, rv 42.
        expect("PUT", status_put())
            .sends(
                "application/json",
                rollout("42", spec(10), Some(at_step(3))),
            )
            .answers(200, rollout("43", spec(10), Some(at_step(3)))),
    ];
    let (first, second, fenced) = pinned(calls, |client| async move {
        let book = StatusBook::new(client, Arc::new(AlwaysLeader));
        let first = book.update(&id(), to_step(2)).await;
        let second = book.update(&id(), to_step(3)).await;
        let fenced = fence_raised(&book).await;
        (first, second, fenced)
    })
    .await;
    let rv = |r: Result<Option<canaryd::cluster::crd::Rollout>, StoreError>| {
        r.expect("written")
            .expect("the Rollout exists")
            .metadata
            .resource_version
    };
    assert_eq!(rv(first).as_deref(), Some("42"));
    assert_eq!(rv(second).as_deref(), Some("43"));
    assert!(!fenced, "no conflict, no fence");
}

#[tokio::test]
async fn a_status_another_writer_stored_meanwhile_gets_a_conflict_and_is_never_overwritten() {
    let calls = vec![
        expect("GET", ROLLOUT).answers(200, rollout("41", spec(10), Some(at_step(1)))),
        expect("PUT", status_put())
            .sends(
                "application/json",
                rollout("41", spec(10), Some(at_step(2))),
            )
            .answers(409, conflict()),
        // It reads again, sees another status (step 5, by another writer)
        // and stops: no second PUT.
        expect("GET", ROLLOUT).answers(200, rollout("44", spec(10), Some(at_step(5)))),
    ];
    let (outcome, fenced, kept) = pinned(calls, |client| async move {
        let book = StatusBook::new(client, Arc::new(AlwaysLeader));
        let outcome = book.update(&id(), to_step(2)).await;
        let fenced = fence_raised(&book).await;
        let kept = book.get(&id());
        (outcome, fenced, kept)
    })
    .await;
    let error = outcome.expect_err("the writer reports the conflict");
    assert!(
        error.to_string().contains("written by another writer"),
        "{error}"
    );
    assert!(fenced, "the conflict raises the fence");
    assert!(
        kept.is_none(),
        "the book forgets the object it cannot trust"
    );
}

#[tokio::test]
async fn a_conflict_from_a_spec_edit_alone_is_recomputed_on_the_fresh_object() {
    let calls = vec![
        expect("GET", ROLLOUT).answers(200, rollout("41", spec(10), Some(at_step(1)))),
        expect("PUT", status_put())
            .sends(
                "application/json",
                rollout("41", spec(10), Some(at_step(2))),
            )
            .answers(409, conflict()),
        // Someone edited the spec (rv 43); the status is as read.
        expect("GET", ROLLOUT).answers(200, rollout("43", spec(4), Some(at_step(1)))),
        expect("PUT", status_put())
            .sends("application/json", rollout("43", spec(4), Some(at_step(2))))
            .answers(200, rollout("44", spec(4), Some(at_step(2)))),
    ];
    let (outcome, fenced) = pinned(calls, |client| async move {
        let book = StatusBook::new(client, Arc::new(AlwaysLeader));
        let outcome = book.update(&id(), to_step(2)).await;
        (outcome, fence_raised(&book).await)
    })
    .await;
    let written = outcome.expect("written").expect("the Rollout exists");
    assert_eq!(written.metadata.resource_version.as_deref(), Some("44"));
    assert!(!fenced, "a spec edit is no other writer");
}

#[tokio::test]
async fn a_status_that_would_not_change_is_read_but_not_written() {
    let calls =
        vec![expect("GET", ROLLOUT).answers(200, rollout("41", spec(10), Some(at_step(1))))];
    let outcome = pinned(calls, |client| async move {
        let book = StatusBook::new(client, Arc::new(AlwaysLeader));
        book.update(&id(), |_| Ok(false)).await
    })
    .await;
    let read = outcome.expect("no error").expect("the Rollout exists");
    assert_eq!(read.metadata.resource_version.as_deref(), Some("41"));
}

#[tokio::test]
async fn a_replica_that_does_not_lead_sends_nothing() {
    let outcome = pinned(Vec::new(), |client| async move {
        let book = StatusBook::new(client, Arc::new(NotLeader));
        book.update(&id(), to_step(2)).await
    })
    .await;
    let error = outcome.expect_err("refused");
    assert!(error.to_string().contains("not the leader"), "{error}");
}
