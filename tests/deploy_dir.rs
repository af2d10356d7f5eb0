//! The deploy directory as a spec source: what changed, keyed by the rollout
//! each file declares, with broken and unreadable files reported, renames
//! keeping their rollout, and last good versions across a restart.

use std::sync::Arc;
use std::time::Duration;

use canaryd::deploy_dir::{DeployDir, LookCounts};
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

/// The next look that reports anything: the OS reports a write to the
/// watcher a moment after it returns.
async fn next_changes(deploy: &mut DeployDir) -> Vec<SpecEvent> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let events = deploy.changes().await.expect("read");
            if !events.is_empty() {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a change reported within 10s")
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
        kinds(&next_changes(&mut deploy).await),
        ["changed b.yaml (default/checkout)"],
        "a rename is not a removal"
    );

    std::fs::remove_file(dir.path().join("b.yaml")).expect("remove");
    assert_eq!(
        kinds(&next_changes(&mut deploy).await),
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
    let events = next_changes(&mut deploy).await;
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
    next_changes(&mut deploy).await;
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

/// The first step's weight (basis points) of each spec a look reports as changed.
fn first_weights(events: &[SpecEvent]) -> Vec<u16> {
    events
        .iter()
        .filter_map(|e| match e {
            SpecEvent::Changed { spec, .. } => {
                spec.strategy.steps.first().map(|s| s.weight.basis_points())
            }
            _ => None,
        })
        .collect()
}

/// A directory of `n` deploy files, each its own rollout, looked at once.
async fn watched_dir_of(n: usize) -> (tempfile::TempDir, SqliteStore, DeployDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = SqliteStore::in_memory().expect("store");
    for i in 0..n {
        let text = SEED.replace("service: checkout", &format!("service: svc{i}"));
        std::fs::write(dir.path().join(format!("svc{i}.yaml")), text).expect("write");
    }
    let mut deploy = deploy_dir(dir.path(), &memory);
    assert_eq!(deploy.changes().await.expect("read").len(), n);
    assert!(deploy.watching(), "inotify is available here");
    (dir, memory, deploy)
}

#[tokio::test]
async fn an_edit_is_seen_from_the_watcher_without_listing_the_directory() {
    let (dir, _memory, mut deploy) = watched_dir_of(5).await;
    let before = deploy.counts();
    std::fs::write(
        dir.path().join("svc3.yaml"),
        SEED.replace("service: checkout", "service: svc3")
            .replace("deploy: 5%", "deploy: 7%"),
    )
    .expect("write");
    let events = next_changes(&mut deploy).await;
    assert_eq!(kinds(&events), ["changed svc3.yaml (default/svc3)"]);
    assert_eq!(first_weights(&events), [700]);
    assert_eq!(deploy.counts().listings, before.listings, "no listing");
    assert!(
        deploy.counts().reads - before.reads < 5,
        "not every file read"
    );
}

#[tokio::test]
async fn a_look_with_no_changes_reads_no_file_with_or_without_a_watcher() {
    let (_dir, _memory, mut deploy) = watched_dir_of(20).await;
    let before = deploy.counts();
    for _ in 0..5 {
        assert!(deploy.changes().await.expect("read").is_empty());
    }
    assert_eq!(deploy.counts(), before, "watched: no listing, no read");

    let dir = tempfile::tempdir().expect("temp dir");
    let memory = SqliteStore::in_memory().expect("store");
    let file = dir.path().join("checkout.yaml");
    std::fs::write(&file, SEED).expect("write");
    // Written a minute ago: a file written just now is read again until its
    // metadata can be trusted to show the next edit.
    let a_minute_ago = std::time::SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_modified(a_minute_ago))
        .expect("set mtime");
    let mut polled = deploy_dir(dir.path(), &memory).without_watcher();
    polled.changes().await.expect("read");
    let before = polled.counts();
    for _ in 0..5 {
        assert!(polled.changes().await.expect("read").is_empty());
    }
    assert_eq!(
        polled.counts(),
        LookCounts {
            listings: before.listings + 5,
            reads: before.reads,
        },
        "polled: listed each look, nothing read"
    );
}

#[tokio::test]
async fn a_removed_file_removes_its_rollout_and_a_recreated_one_brings_it_back() {
    let (dir, _memory, mut deploy) = watched_dir_of(3).await;
    let file = dir.path().join("svc1.yaml");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::remove_file(&file).expect("remove");
    assert_eq!(
        kinds(&next_changes(&mut deploy).await),
        ["removed svc1.yaml (default/svc1)"]
    );
    std::fs::write(&file, text).expect("write");
    assert_eq!(
        kinds(&next_changes(&mut deploy).await),
        ["changed svc1.yaml (default/svc1)"]
    );
}

#[tokio::test]
async fn a_file_written_to_a_temp_file_and_renamed_into_place_is_seen() {
    let (dir, _memory, mut deploy) = watched_dir_of(3).await;
    // What editors and `kubectl`-style tools do: never a half-written file.
    let temp = dir.path().join(".svc2.yaml.tmp");
    std::fs::write(
        &temp,
        SEED.replace("service: checkout", "service: svc2")
            .replace("deploy: 5%", "deploy: 9%"),
    )
    .expect("write");
    std::fs::rename(&temp, dir.path().join("svc2.yaml")).expect("rename");
    let events = next_changes(&mut deploy).await;
    assert_eq!(kinds(&events), ["changed svc2.yaml (default/svc2)"]);
    assert_eq!(first_weights(&events), [900]);
}

#[tokio::test]
async fn without_a_watcher_every_look_still_finds_edits_renames_and_removals() {
    let dir = tempfile::tempdir().expect("temp dir");
    let memory = SqliteStore::in_memory().expect("store");
    let mut deploy = deploy_dir(dir.path(), &memory).without_watcher();
    std::fs::write(dir.path().join("a.yaml"), SEED).expect("write");
    assert_eq!(
        kinds(&deploy.changes().await.expect("read")),
        ["changed a.yaml (default/checkout)"]
    );
    assert!(!deploy.watching());
    // Same size, likely the same mtime tick: still seen.
    std::fs::write(
        dir.path().join("a.yaml"),
        SEED.replace("deploy: 5%", "deploy: 6%"),
    )
    .expect("write");
    assert_eq!(
        kinds(&deploy.changes().await.expect("read")),
        ["changed a.yaml (default/checkout)"],
        "an edit, on the very next look"
    );
    std::fs::rename(dir.path().join("a.yaml"), dir.path().join("b.yaml")).expect("rename");
    assert_eq!(
        kinds(&deploy.changes().await.expect("read")),
        ["changed b.yaml (default/checkout)"]
    );
    std::fs::remove_file(dir.path().join("b.yaml")).expect("remove");
    assert_eq!(
        kinds(&deploy.changes().await.expect("read")),
        ["removed b.yaml (default/checkout)"]
    );
}
