//! The deploy directory scan: what changed, in an order the controller can apply.

use canaryd::controller::files::{DeployDir, FileEvent};
use canaryd::spec::policy::PolicySet;

const SEED: &str = include_str!("../deploy/checkout.yaml");

fn kinds(events: &[FileEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            FileEvent::Changed { path, .. } => format!(
                "changed {}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("")
            ),
            FileEvent::Rejected { path, .. } => format!(
                "rejected {}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("")
            ),
            FileEvent::Removed { path } => format!(
                "removed {}",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("")
            ),
        })
        .collect()
}

#[test]
fn only_changed_files_are_reported_and_a_rename_is_a_removal_first() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policies = PolicySet::builtin();
    let mut deploy = DeployDir::new(dir.path());
    std::fs::write(dir.path().join("a.yaml"), SEED).expect("write");
    std::fs::write(dir.path().join("notes.txt"), "not a deploy file").expect("write");
    assert_eq!(
        kinds(&deploy.scan(&policies).expect("scan")),
        ["changed a.yaml"]
    );
    assert!(
        deploy.scan(&policies).expect("scan").is_empty(),
        "unchanged: nothing"
    );

    std::fs::rename(dir.path().join("a.yaml"), dir.path().join("b.yaml")).expect("rename");
    assert_eq!(
        kinds(&deploy.scan(&policies).expect("scan")),
        ["removed a.yaml", "changed b.yaml"]
    );

    std::fs::write(
        dir.path().join("b.yaml"),
        SEED.replace("deploy: 5%", "deploy: 150%"),
    )
    .expect("write");
    let events = deploy.scan(&policies).expect("scan");
    assert_eq!(kinds(&events), ["rejected b.yaml"]);
    let FileEvent::Rejected { report, .. } = &events[0] else {
        unreachable!()
    };
    assert!(
        report.contains("150%") && report.contains("b.yaml:"),
        "{report}"
    );

    deploy.forget(&dir.path().join("b.yaml"));
    assert_eq!(
        kinds(&deploy.scan(&policies).expect("scan")),
        ["rejected b.yaml"],
        "forgotten: read again"
    );
}
