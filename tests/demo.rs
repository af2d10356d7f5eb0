//! The one-command demo runs its whole story: v2 promoted, then v3 rolled
//! back and the rollback posted to a local Slack receiver.

mod harness;

use std::net::TcpListener;
use std::process::Command;

#[test]
fn the_demo_promotes_v2_then_rolls_back_the_faulty_v3() {
    let api = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(["demo", "--exit", "--api", &api])
        .env_remove("CANARYD_API_TOKEN")
        .output()
        .expect("canaryd demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("→ v2 is Promoted"), "{stdout}");
    assert!(stdout.contains("→ v3 is RolledBack"), "{stdout}");
    assert!(stdout.contains("canary weight 0"), "{stdout}");
    let gate = harness::demo_rollback_gate(&stdout)
        .unwrap_or_else(|| panic!("one of the demo's gates rolled v3 back: {stdout}"));
    let threshold = gate.rsplit(' ').next().unwrap_or_default();
    // The Slack message, as received, with what a person needs to act on it.
    let slack = stdout
        .split("the rollback alert as posted to Slack")
        .nth(1)
        .expect("the Slack message is shown");
    for needle in [
        "checkout: v3 rolled back to v2",
        "*Service*: default/checkout",
        "*Versions*: v2 → v3",
        "*Step*: ",
        "→ now 0%",
        &format!("*Gate*: {gate}"),
        &format!("(threshold {threshold})"),
        "*Evidence*: ",
        " requests ",
        "lower bound",
        "*PromQL*",
        r#"version="v3""#,
        "*Decided at*: 20",
        "[Open dashboard] http://",
        "/rollouts/default/checkout",
    ] {
        assert!(slack.contains(needle), "`{needle}` missing:\n{slack}");
    }
}
