//! `canaryd check FILE`, run as a developer runs it against a real Prometheus
//! scraping a running sample-app pair.

mod harness;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use canaryd::sample::Behaviour;
use harness::{Prometheus, load_on, sample_app, wait_for};

const SEED_GATES: &str = "      metrics:
        - error_rate_less_than: 1%
        - latency_p99_less_than: 200ms
    - deploy: 100%
  rollback:
    auto: true
    on:
      - error_rate_greater_than: 2%
      - latency_p99_greater_than: 500ms
";

fn deploy_file(dir: &Path, name: &str, canary_version: &str) -> String {
    deploy_file_with(dir, name, "v1", canary_version, SEED_GATES)
}

/// A deploy file whose first step (5%, 10m) is followed by `gates` (its
/// `metrics:`, the last step and `rollback:`), judged over a 10s window.
fn deploy_file_with(dir: &Path, name: &str, stable: &str, canary: &str, gates: &str) -> String {
    let text = format!(
        r#"service: checkout
policy: http-red
router: {{ kind: builtin, listen: "127.0.0.1:8080" }}
stable: {{ version: {stable}, address: "127.0.0.1:9001" }}
canary: {{ version: {canary}, address: "127.0.0.1:9002" }}
deploy:
  strategy: canary
  steps:
    - deploy: 5%
      duration: 10m
{gates}  analysis:
    window: 10s
"#
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write deploy file");
    path.display().to_string()
}

/// The evidence table's row of `gate` (after the EVIDENCE header).
fn evidence_row<'a>(out: &'a str, gate: &str) -> &'a str {
    out.lines()
        .skip_while(|l| !(l.starts_with("GATE") && l.contains("EVIDENCE")))
        .find(|l| l.starts_with(gate))
        .unwrap_or_else(|| panic!("no evidence row for {gate}:\n{out}"))
}

/// The JSON report's evidence row named `name` (`step 1` + `error_rate < 1%`).
fn evidence_json<'a>(
    report: &'a serde_json::Value,
    scope: &str,
    name: &str,
) -> &'a serde_json::Value {
    report["evidence"]
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["scope"] == scope && r["name"] == name)
        })
        .unwrap_or_else(|| panic!("no evidence row {scope}: {name} in {report}"))
}

fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_canaryd"));
    c.arg("check")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CANARYD_PROMETHEUS_URL")
        .env_remove("CANARYD_POLICY_DIR");
    c
}

/// Runs `canaryd check` without blocking the runtime the sample apps run on.
async fn check(args: &[&str]) -> Output {
    tokio::process::Command::from(command(args))
        .output()
        .await
        .expect("canaryd runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The table row of `gate` on `track` (the gate name is only on its first row).
fn row<'a>(out: &'a str, gate: &str, track: &str) -> &'a str {
    let lines: Vec<&str> = out.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with(gate))
        .unwrap_or_else(|| panic!("no row for {gate}:\n{out}"));
    let found = if track == "canary" {
        lines[i]
    } else {
        lines[i + 1]
    };
    assert!(found.contains(track), "{found}");
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_prints_live_values_of_both_tracks_with_verdicts_and_queries() {
    let stable = sample_app("checkout", "v1", Behaviour::default()).await;
    let canary = sample_app(
        "checkout",
        "v2",
        Behaviour {
            error_rate: 0.2,
            latency_p50: Duration::from_millis(150),
            latency_p99: Duration::from_millis(300),
            ..Behaviour::default()
        },
    )
    .await;
    let _loads = (load_on(&stable, 100.0), load_on(&canary, 100.0));
    let prom = Prometheus::start(&[stable.addr(), canary.addr()]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = deploy_file(dir.path(), "checkout.yaml", "v2");

    // Exit 0 once every query has data (the window needs two scrapes).
    let out = wait_for("check to exit 0", Duration::from_secs(40), || async {
        let out = check(&[&file, "--prometheus", prom.url()]).await;
        {
            match out.status.code() {
                Some(0) => Ok(text(&out.stdout)),
                code => Err(format!(
                    "exit {code:?}: {}{}",
                    text(&out.stdout),
                    text(&out.stderr)
                )),
            }
        }
    })
    .await;

    assert!(
        out.contains("GATE") && out.contains("THRESHOLD") && out.contains("QUERY"),
        "{out}"
    );
    assert!(
        row(&out, "rollback: error_rate > 2%", "canary").contains("BREACH"),
        "{out}"
    );
    assert!(
        row(&out, "rollback: error_rate > 2%", "stable").contains(" ok "),
        "{out}"
    );
    let p99_canary = row(&out, "step 1: latency_p99 < 200ms", "canary");
    assert!(p99_canary.contains("FAIL"), "{out}");
    assert!(
        p99_canary.contains(
            r#"http_request_duration_seconds_bucket{service="checkout", version="v2"}[10s]"#
        ),
        "{p99_canary}"
    );
    assert!(
        row(&out, "step 1: latency_p99 < 200ms", "stable").contains("pass"),
        "{out}"
    );
    assert!(out.contains("every query returned data"), "{out}");

    let json = check(&[&file, "--prometheus", prom.url(), "-o", "json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON report");
    let gates = report["gates"].as_array().expect("gates");
    assert_eq!(gates.len(), 4, "2 abort conditions + 2 promotion gates");
    for g in gates {
        let tracks = g["tracks"].as_array().expect("tracks");
        assert_eq!(tracks.len(), 2);
        for t in tracks {
            assert!(t["value"].is_number(), "{t}");
            assert!(t["requests"].as_f64().is_some_and(|n| n > 0.0), "{t}");
        }
    }
    // The canary fails 20%: the value read is within 4 binomial standard
    // errors of it, for the number of requests the reading rests on (fewer
    // on a busy machine, where the window holds fewer scrapes).
    let canary_error = &gates[0]["tracks"][0];
    let value = canary_error["value"].as_f64().expect("value");
    let requests = canary_error["requests"].as_f64().expect("requests");
    assert!(requests >= 20.0, "{canary_error}");
    let sigma = (0.2 * 0.8 / requests).sqrt();
    assert!(
        (value - 0.2).abs() <= 4.0 * sigma,
        "canary error rate {value} over {requests} requests: 20% ± {:.3}",
        4.0 * sigma
    );

    // The evidence table: every gate judged on counts, with its verdict and
    // the counts behind it. The failing canary is conclusively over both
    // error thresholds: a lower bound above each.
    assert!(out.contains("evidence over the last 10s"), "{out}");
    for gate in [
        "rollback: error_rate > 2%",
        "rollback: latency_p99 > 500ms",
        "step 1: error_rate < 1%",
        "step 1: latency_p99 < 200ms",
    ] {
        let row = evidence_row(&out, gate);
        assert!(row.contains("requests"), "{row}");
    }
    let breach = evidence_row(&out, "rollback: error_rate > 2%");
    assert!(
        breach.contains("BREACH")
            && breach.contains("errors over")
            && breach.contains("lower bound"),
        "{breach}"
    );
    let fail = evidence_row(&out, "step 1: error_rate < 1%");
    assert!(
        fail.contains("FAIL") && fail.contains("lower bound"),
        "{fail}"
    );
    let slow = evidence_row(&out, "step 1: latency_p99 < 200ms");
    assert!(
        slow.contains("FAIL") && slow.contains("slower than 200ms"),
        "{slow}"
    );
    // The sample app has a bound at 200ms and 500ms: nothing to warn about.
    assert!(!out.contains("warning:"), "{out}");

    // JSON: the same rows, with the bound the verdict rests on.
    for (scope, name, limit, verdict) in [
        ("rollback", "error_rate > 2%", 0.02, "BREACH"),
        ("step 1", "error_rate < 1%", 0.01, "FAIL"),
    ] {
        let row = evidence_json(&report, scope, name);
        assert_eq!(row["verdict"], verdict, "{row}");
        let e = &row["evidence"];
        assert!(e["events"].as_f64().is_some_and(|x| x > 0.0), "{e}");
        assert!(e["requests"].as_f64().is_some_and(|n| n > 0.0), "{e}");
        assert_eq!(e["bound"]["side"], "lower", "{e}");
        let bound = e["bound"]["value"].as_f64().expect("bound");
        assert!(bound > limit, "lower bound {bound} above {limit}: {e}");
        assert!(
            e["bound"]["confidence"].as_f64().is_some_and(|c| c > 0.9),
            "{e}"
        );
    }
    assert_eq!(report["warnings"], serde_json::json!([]), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_gives_an_undecided_gate_a_time_to_a_verdict_and_warns_about_coarse_histogram_bounds()
{
    let stable = sample_app("checkout", "v0", Behaviour::default()).await;
    let healthy = sample_app("checkout", "v1", Behaviour::default()).await;
    let _loads = (load_on(&stable, 20.0), load_on(&healthy, 100.0));
    let prom = Prometheus::start(&[stable.addr(), healthy.addr()]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    // A healthy canary (v1) against a strict gate: 0.1% takes thousands of
    // good requests to show. 180ms lies between the sample app's bounds
    // 150ms and 200ms: judged at 150ms to pass, 200ms to fail.
    let file = deploy_file_with(
        dir.path(),
        "checkout.yaml",
        "v0",
        "v1",
        "      metrics:
        - error_rate_less_than: 0.1%
        - latency_p99_less_than: 180ms
    - deploy: 100%
  rollback:
    auto: true
    on:
      - error_rate_greater_than: 2%
",
    );
    let out = wait_for(
        "check to judge the canary's counts",
        Duration::from_secs(40),
        || async {
            let out = check(&[&file, "--prometheus", prom.url()]).await;
            let stdout = text(&out.stdout);
            let judged = stdout
                .lines()
                .any(|l| l.starts_with("step 1: error_rate < 0.1%") && l.contains("requests"));
            if out.status.code() == Some(0) && judged {
                Ok(stdout)
            } else {
                Err(format!(
                    "exit {:?}: {stdout}{}",
                    out.status.code(),
                    text(&out.stderr)
                ))
            }
        },
    )
    .await;
    let strict = evidence_row(&out, "step 1: error_rate < 0.1%");
    assert!(strict.contains("undecided"), "{strict}");
    assert!(
        strict.contains("0% errors over")
            && strict.contains("since the step began")
            && strict.contains("upper bound"),
        "{strict}"
    );
    assert!(strict.contains("at 5% of today's traffic"), "{strict}");
    assert!(
        evidence_row(&out, "rollback: error_rate > 2%").contains(" ok "),
        "{out}"
    );
    let warning = out
        .lines()
        .find(|l| l.starts_with("warning:"))
        .unwrap_or_else(|| panic!("no warning:\n{out}"));
    assert!(
        warning.contains("`latency_p99 < 180ms` (step 1): the histogram's bounds have none at 180ms; it is judged at 150ms and 200ms"),
        "{warning}"
    );
    assert!(
        out.contains("hint: write the threshold at a bound (150ms or 200ms)"),
        "{out}"
    );

    let json = check(&[&file, "--prometheus", prom.url(), "-o", "json"]).await;
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON report");
    let row = evidence_json(&report, "step 1", "error_rate < 0.1%");
    assert_eq!(row["verdict"], "undecided", "{row}");
    assert!(
        row["time_to_verdict_seconds"]
            .as_f64()
            .is_some_and(|s| s > 0.0),
        "{row}"
    );
    assert!(
        row["evidence"]["more_requests"]
            .as_f64()
            .is_some_and(|n| n > 0.0),
        "{row}"
    );
    assert_eq!(row["evidence"]["bound"]["side"], "upper", "{row}");
    let warnings = report["warnings"].as_array().expect("warnings");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["gate"], "step 1: latency_p99 < 180ms");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_3_and_says_why_when_the_canary_has_no_data() {
    let stable = sample_app("checkout", "v1", Behaviour::default()).await;
    let _load = load_on(&stable, 50.0);
    let prom = Prometheus::start(&[stable.addr()]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = deploy_file(dir.path(), "checkout.yaml", "v3");

    // Wait until the stable track reads a value, so the canary's emptiness is
    // not just a Prometheus that has not scraped yet.
    wait_for(
        "the stable track to have data",
        Duration::from_secs(30),
        || async {
            let out = check(&[&file, "--prometheus", prom.url(), "-o", "json"]).await;
            {
                let report: serde_json::Value =
                    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
                let stable = &report["gates"][0]["tracks"][1];
                if stable["value"].is_number() {
                    Ok(())
                } else {
                    Err(stable.to_string())
                }
            }
        },
    )
    .await;
    let out = check(&[&file, "--prometheus", prom.url()]).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        row(&stdout, "step 1: error_rate < 1%", "canary").contains("inconclusive: no data"),
        "{stdout}"
    );
    assert!(
        stdout.contains("some readings are inconclusive"),
        "{stdout}"
    );
}

#[test]
fn check_without_a_prometheus_or_with_a_broken_file_exits_1_and_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = deploy_file(dir.path(), "checkout.yaml", "v2");
    let out = command(&[&file]).output().expect("canaryd runs");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no Prometheus to ask") && err.contains("--prometheus"),
        "{err}"
    );

    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "service: checkout\nsteps: []\n").expect("write");
    let out = command(&[
        broken.to_str().expect("utf-8 path"),
        "--prometheus",
        "http://127.0.0.1:1",
    ])
    .output()
    .expect("canaryd runs");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("broken.yaml:2:1"), "{err}");
    assert!(err.contains("nothing measured"), "{err}");
}
