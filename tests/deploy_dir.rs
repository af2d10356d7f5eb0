//! The deploy directory as a spec source: what changed, keyed by the rollout
//! each file declares, with broken and unreadable files reported, renames
//! keeping their rollout, and last good versions across a restart.

use std::sync::Arc;

use canaryd::deploy_dir::DeployDir;
use canaryd::ports::{SpecEvent, SpecSource};
use canaryd::spec::policy::PolicySet;
use canaryd::store::SqliteStore;

const SEED: &str = include_str!("../deploy/checkout.yaml");

fn kinds(events: &[SpecEvent]) -> Vec<String> {
    let name = |origin: &str| {
        std::path::Path::new(origin)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string()
    };
    events
        .iter()
        .map(|e| match e {
            SpecEvent::Changed { spec, origin, .. } => {
                format!("changed {} ({})", name(origin), spec.id)
            }
            SpecEvent::Rejected { origin, id, .. } => format!(
                "rejected {} ({})",
                name(origin),
                id.as_ref().map_or("-".into(), ToString::to_string)
            ),
            SpecEvent::Removed { id, origin } => format!("removed {} ({id})", name(origin)),
        })
        .collect()
}

fn deploy_dir(dir: &std::path::Path, memory: &SqliteStore) -> DeployDir {
    DeployDir::new(dir, PolicySet::builtin(), Arc::new(memory.clone()))
}

#[tokio::test]
async fn only_changed_files_are_reported_and_a_renamed_file_keeps_its_rollout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = SqliteStore::in_memory().expect("store");
    let mut deploy = deploy_dir(dir.path(), &memory);
    std::fs::write(dir.path().join("a.yaml"), SEED).expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a deploy file").expect("write");
    let first = deploy.changes().await.expect("read");
    assert_eq!(kinds(&first), ["changed a.yaml (default/checkout)"]);
    assert!(
        deploy.changes().await.expect("read").is_empty(),
        "unchanged: nothing"
    );

    std::fs::rename(dir.path().join("a.yaml"), dir.path().join("b.yaml")).expect("rename");
    assert_eq!(
        kinds(&deploy.changes().await.expect("read")),
        ["changed b.yaml (default/checkout)"],
        "a rename is not a removal"
    );

    std::fs::remove_file(dir.path().join("b.yaml")).expect("remove");
    assert_eq!(
        kinds(&deploy.changes().await.expect("read")),
        ["removed b.yaml (default/checkout)"]
    );
}

#[tokio::test]
async fn a_broken_file_is_rejected_for_its_rollout_and_a_retry_reads_it_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = SqliteStore::in_memory().expect("store");
    let mut deploy = deploy_dir(dir.path(), &memory);
    let file = dir.path().join("checkout.yaml");
    std::fs::write(&file, SEED).expect("write");
    deploy.changes().await.expect("read");
    std::fs::write(&file, SEED.replace("deploy: 5%", "deploy: 150%")).expect("write");
    let events = deploy.changes().await.expect("read");
    assert_eq!(
        kinds(&events),
        ["rejected checkout.yaml (default/checkout)"]
    );
    let SpecEvent::Rejected { report, .. } = &events[0] else {
        unreachable!()
    };
    assert!(
        report.contains("150%") && report.contains("checkout.yaml:"),
        "{report}"
    );
    std::fs::write(&file, SEED).expect("write");
    deploy.changes().await.expect("read");
    deploy.retry(&canaryd::spec::model::RolloutId {
        namespace: "default".into(),
        name: "checkout".into(),
    });
    assert_eq!(
        kinds(&deploy.changes().await.expect("read")),
        ["changed checkout.yaml (default/checkout)"],
        "offered again"
    );
}

#[tokio::test]
async fn a_file_that_is_not_utf8_text_is_rejected_not_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = SqliteStore::in_memory().expect("store");
    let mut deploy = deploy_dir(dir.path(), &memory);
    // A Latin-1 `é` in a comment, and a file with a NUL byte.
    let mut latin1 = b"# caf\xe9\n".to_vec();
    latin1.extend_from_slice(SEED.as_bytes());
    std::fs::write(dir.path().join("latin1.yaml"), latin1).expect("write");
    std::fs::write(dir.path().join("binary.yml"), b"\x00\x01\xff\xfe").expect("write");
    let events = deploy.changes().await.expect("read");
    assert_eq!(
        kinds(&events),
        ["rejected binary.yml (-)", "rejected latin1.yaml (-)"]
    );
    for e in &events {
        let SpecEvent::Rejected { report, .. } = e else {
            unreachable!()
        };
        assert!(report.contains("not UTF-8"), "{report}");
    }
}

#[tokio::test]
async fn a_second_file_declaring_the_same_rollout_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = SqliteStore::in_memory().expect("store");
    let mut deploy = deploy_dir(dir.path(), &memory);
    std::fs::write(dir.path().join("a.yaml"), SEED).expect("write");
    std::fs::write(dir.path().join("b.yaml"), SEED).expect("write");
    let events = deploy.changes().await.expect("read");
    assert_eq!(
        kinds(&events),
        [
            "changed a.yaml (default/checkout)",
            "rejected b.yaml (default/checkout)"
        ]
    );
    let SpecEvent::Rejected { report, .. } = &events[1] else {
        unreachable!()
    };
    assert!(report.contains("already declared in"), "{report}");
}

#[tokio::test]
async fn after_a_restart_a_broken_file_runs_its_last_accepted_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = SqliteStore::in_memory().expect("store");
    let file = dir.path().join("checkout.yaml");
    std::fs::write(&file, SEED).expect("write");
    deploy_dir(dir.path(), &memory)
        .changes()
        .await
        .expect("read");
    // Broken while canaryd was down.
    std::fs::write(&file, SEED.replace("duration: 10m", "duration: 10 minutes")).expect("write");
    let events = deploy_dir(dir.path(), &memory)
        .changes()
        .await
        .expect("read");
    assert_eq!(
        kinds(&events),
        [
            "changed checkout.yaml (default/checkout)",
            "rejected checkout.yaml (default/checkout)"
        ]
    );
}
