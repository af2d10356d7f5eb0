//! The one-command demo runs its whole story: v2 promoted, then v3 rolled back.

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
    assert!(
        stdout.contains("abort condition error_rate > 2% breached"),
        "{stdout}"
    );
}
