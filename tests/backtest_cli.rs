//! `canaryd backtest`, run as a platform engineer runs it: against a real
//! Prometheus whose history was backfilled with `promtool tsdb
//! create-blocks-from openmetrics` from an OpenMetrics file written here —
//! last Tuesday's two releases of `checkout` in the `http-red` contract: v2
//! (healthy) and v3 (30% errors from 13:12:00). The healthy one would have
//! been promoted, the faulty one rolled back about when its fault started,
//! and `-o json` says the same as the text.

mod harness;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Output;

use harness::Prometheus;
use serde_json::Value;

/// 2025-03-04T10:00:00Z, a Tuesday: the healthy release starts.
const T0: i64 = 1_741_082_400;
/// The faulty release starts at 13:00 …
const FAULTY_START: i64 = T0 + 3 * 3600;
/// … and fails from 13:12:00.
const FAULT: i64 = FAULTY_START + 12 * 60;
/// Scrapes every 10 s, from 09:50 to 14:00.
const SCRAPE: i64 = 10;
const FIRST: i64 = T0 - 600;
const LAST: i64 = T0 + 4 * 3600;
/// Latency histogram bounds and the share of requests at or under each.
const BUCKETS: [(&str, f64); 7] = [
    ("0.05", 0.5),
    ("0.1", 0.9),
    ("0.2", 0.997),
    ("0.3", 0.998),
    ("0.5", 0.999),
    ("1.0", 1.0),
    ("+Inf", 1.0),
];
const HEALTHY_ERRORS: f64 = 0.003;

/// What a version served at `t` (requests/s, error share), as it happened
/// then, at the weights used then; `None`: no pods, no series.
fn traffic(version: &str, t: i64) -> Option<(f64, f64)> {
    let at = |h: i64, m: i64| T0 + (h - 10) * 3600 + m * 60;
    match version {
        // v1 until the old process promoted v2 at 10:40.
        "v1" if t < T0 => Some((200.0, HEALTHY_ERRORS)),
        "v1" if t < at(10, 20) => Some((180.0, HEALTHY_ERRORS)),
        "v1" if t < at(10, 40) => Some((100.0, HEALTHY_ERRORS)),
        "v2" if (T0..at(10, 20)).contains(&t) => Some((20.0, HEALTHY_ERRORS)),
        "v2" if (at(10, 20)..at(10, 40)).contains(&t) => Some((100.0, HEALTHY_ERRORS)),
        "v2" if (FAULTY_START..at(13, 30)).contains(&t) => Some((180.0, HEALTHY_ERRORS)),
        "v2" if t >= T0 => Some((200.0, HEALTHY_ERRORS)),
        // v3 at 10% until the old process rolled it back at 13:30.
        "v3" if (FAULTY_START..FAULT).contains(&t) => Some((20.0, HEALTHY_ERRORS)),
        "v3" if (FAULT..at(13, 30)).contains(&t) => Some((20.0, 0.30)),
        _ => None,
    }
}

/// Cumulative counters of one version at each scrape it was up for.
struct Scrape {
    t: i64,
    requests: f64,
    errors: f64,
}

fn scrapes(version: &str) -> Vec<Scrape> {
    let (mut requests, mut errors) = (0.0, 0.0);
    let mut out = Vec::new();
    for t in (FIRST..=LAST).step_by(SCRAPE as usize) {
        let Some((rps, share)) = traffic(version, t) else {
            continue;
        };
        if !out.is_empty() {
            requests += rps * SCRAPE as f64;
            errors += rps * SCRAPE as f64 * share;
        }
        out.push(Scrape {
            t,
            requests: requests.floor(),
            errors: errors.floor(),
        });
    }
    out
}

/// The OpenMetrics text: each family's lines together, each series in time order.
fn openmetrics() -> String {
    let versions = ["v1", "v2", "v3"];
    let data: Vec<(&str, Vec<Scrape>)> = versions.iter().map(|v| (*v, scrapes(v))).collect();
    let mut om = String::from("# TYPE http_requests counter\n");
    for (v, points) in &data {
        for (code, ok) in [("200", true), ("500", false)] {
            for p in points {
                let n = if ok { p.requests - p.errors } else { p.errors };
                let _ = writeln!(
                    om,
                    r#"http_requests_total{{service="checkout",version="{v}",code="{code}"}} {n} {}"#,
                    p.t
                );
            }
        }
    }
    om.push_str("# TYPE http_request_duration_seconds histogram\n");
    for (v, points) in &data {
        for p in points {
            let labels = format!(r#"service="checkout",version="{v}""#);
            for (le, share) in BUCKETS {
                let n = (p.requests * share).floor();
                let _ = writeln!(
                    om,
                    r#"http_request_duration_seconds_bucket{{{labels},le="{le}"}} {n} {}"#,
                    p.t
                );
            }
            let _ = writeln!(
                om,
                "http_request_duration_seconds_count{{{labels}}} {} {}",
                p.requests, p.t
            );
            let _ = writeln!(
                om,
                "http_request_duration_seconds_sum{{{labels}}} {} {}",
                p.requests * 0.06,
                p.t
            );
        }
    }
    om.push_str("# EOF\n");
    om
}

/// Backfills the history with promtool and serves it.
async fn history(dir: &Path) -> Prometheus {
    let file = dir.join("history.om");
    std::fs::write(&file, openmetrics()).expect("write the OpenMetrics file");
    let data = dir.join("tsdb");
    let promtool = std::process::Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(&data)
        .output()
        .expect("promtool runs (apt-get install -y prometheus)");
    assert!(
        promtool.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&promtool.stderr)
    );
    Prometheus::serve_history(&data).await
}

fn deploy_file(dir: &Path) -> String {
    let path = dir.join("checkout.yaml");
    std::fs::write(
        &path,
        r#"service: checkout
policy: http-red
router: { kind: builtin, listen: "127.0.0.1:8080" }
stable: { version: v1, address: "127.0.0.1:9001" }
canary: { version: v2, address: "127.0.0.1:9002" }
deploy:
  strategy: canary
  steps:
    - deploy: 10%
      duration: 10m
      metrics:
        - error_rate_less_than: 1%
        - latency_p99_less_than: 200ms
    - deploy: 50%
      duration: 10m
    - deploy: 100%
  rollback:
    auto: true
    on:
      - error_rate_greater_than: 2%
      - latency_p99_greater_than: 500ms
  analysis:
    interval: 10s
    window: 1m
"#,
    )
    .expect("write the deploy file");
    path.display().to_string()
}

async fn backtest(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .arg("backtest")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CANARYD_PROMETHEUS_URL")
        .env_remove("CANARYD_POLICY_DIR")
        .output()
        .await
        .expect("canaryd runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs the backtest twice, as text and as JSON, and checks they agree:
/// every decision of the JSON is a line of the text with its time, action
/// and reason, and the outcome is the same. Returns (exit code, JSON, text).
async fn both(args: &[&str]) -> (Option<i32>, Value, String) {
    let json_run = backtest(&[args, &["-o", "json"]].concat()).await;
    let text_run = backtest(args).await;
    assert_eq!(json_run.status.code(), text_run.status.code());
    let json: Value = serde_json::from_slice(&json_run.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            text(&json_run.stdout),
            text(&json_run.stderr)
        )
    });
    let out = text(&text_run.stdout);
    let decisions = json["decisions"].as_array().cloned().unwrap_or_default();
    assert!(!decisions.is_empty(), "{json}");
    for d in &decisions {
        let (at, action, reason) = (
            d["at"].as_str().unwrap_or_default(),
            d["action"].as_str().unwrap_or_default(),
            d["reason"].as_str().unwrap_or_default(),
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with(at) && l.contains(action) && l.ends_with(reason)),
            "no line for {at} {action} {reason}:\n{out}"
        );
    }
    let outcome = out
        .lines()
        .find(|l| l.starts_with("outcome: "))
        .unwrap_or_else(|| panic!("no outcome line:\n{out}"));
    let word = match json["outcome"]["result"].as_str() {
        Some("promoted") => "outcome: promoted at ",
        Some("rolled_back") => "outcome: rolled back at ",
        _ => "outcome: still undecided at ",
    };
    assert!(outcome.starts_with(word), "{outcome} / {}", json["outcome"]);
    if let Some(at) = json["outcome"]["at"].as_str() {
        assert!(outcome.contains(at), "{outcome} / {at}");
    }
    (json_run.status.code(), json, out)
}

fn seconds(rfc3339: &str) -> i64 {
    let t = humantime::parse_rfc3339(rfc3339).expect("an RFC 3339 time");
    t.duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs() as i64
}

fn actions(json: &Value) -> Vec<String> {
    json["decisions"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(|d| d["action"].as_str())
                .filter(|a| *a != "hold")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthy_release_would_have_been_promoted_through_every_step() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prom = history(dir.path()).await;
    let file = deploy_file(dir.path());
    let (code, json, out) = both(&[
        &file,
        "--from",
        "2025-03-04T10:00:00Z",
        "--to",
        "2025-03-04T11:00:00Z",
        "--prometheus",
        prom.url(),
    ])
    .await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(json["outcome"]["result"], "promoted", "{json}");
    assert_eq!(
        actions(&json),
        ["start", "advance", "advance", "promote"],
        "{out}"
    );
    // Two 10-minute steps, then the last step's first tick.
    let promoted = seconds(json["outcome"]["at"].as_str().unwrap_or_default());
    assert!(
        (T0 + 1200..T0 + 1500).contains(&promoted),
        "promoted {}s after the start:\n{out}",
        promoted - T0
    );
    assert_eq!(
        (
            json["stable_version"].as_str(),
            json["canary_version"].as_str()
        ),
        (Some("v1"), Some("v2"))
    );
    // The header says what history can and cannot tell.
    assert!(out.contains("note: history is replayed as it was"), "{out}");
    assert!(out.contains("not this strategy's weights"), "{out}");
    // The promotion gates passed on evidence, shown under the decisions.
    assert!(
        out.contains("error_rate < 1%: pass — ") && out.contains("errors over"),
        "{out}"
    );
    println!("{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_faulty_release_would_have_been_rolled_back_about_when_its_fault_started() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prom = history(dir.path()).await;
    let file = deploy_file(dir.path());
    let (code, json, out) = both(&[
        &file,
        "--from",
        "2025-03-04T14:00:00+01:00", // 13:00 UTC
        "--to",
        "2025-03-04T14:00:00Z",
        "--prometheus",
        prom.url(),
        "--version-stable",
        "v2",
        "--version-canary",
        "v3",
    ])
    .await;
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(json["outcome"]["result"], "rolled_back", "{json}");
    // Step 1 (13:00–13:10) passed; the fault came during step 2.
    assert_eq!(actions(&json), ["start", "advance", "rollback"], "{out}");
    let at = seconds(json["outcome"]["at"].as_str().unwrap_or_default());
    assert!(
        (FAULT..FAULT + 120).contains(&at),
        "rolled back {}s after the fault:\n{out}",
        at - FAULT
    );
    let reason = json["outcome"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("abort condition error_rate > 2% breached"),
        "{reason}"
    );
    // The evidence behind it starts where the fault does.
    let rollback = json["decisions"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["action"] == "rollback"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(rollback["weight"], 0.0, "{rollback}");
    let breached = rollback["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["verdict"] == "fail"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(breached["name"], "error_rate > 2%", "{rollback}");
    let since = seconds(breached["evidence"]["since"].as_str().unwrap_or_default());
    assert!(
        (FAULT - 60..=FAULT + 60).contains(&since),
        "evidence since {}s from the fault",
        since - FAULT
    );
    println!("{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_span_that_ends_before_a_verdict_is_reported_undecided_with_exit_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prom = history(dir.path()).await;
    let file = deploy_file(dir.path());
    let (code, json, out) = both(&[
        &file,
        "--from",
        "2025-03-04T10:00:00Z",
        "--to",
        "2025-03-04T10:05:00Z",
        "--prometheus",
        prom.url(),
    ])
    .await;
    assert_eq!(code, Some(3), "{out}");
    let outcome = &json["outcome"];
    assert_eq!(
        (
            outcome["result"].as_str(),
            outcome["step"].as_u64(),
            outcome["weight"].as_f64()
        ),
        (Some("undecided"), Some(1), Some(10.0)),
        "{json}"
    );
    assert_eq!(json["ticks"], 31, "every 10 s from 10:00:00 to 10:05:00");
    assert!(
        out.contains("Progressing at step 1/3, canary weight 10%"),
        "{out}"
    );
}

#[tokio::test]
async fn an_unreachable_prometheus_stops_the_backtest_naming_the_query_it_could_not_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = deploy_file(dir.path());
    let run = backtest(&[
        &file,
        "--from",
        "-1h",
        "--prometheus",
        "http://bot:s3cret@127.0.0.1:9/",
    ])
    .await;
    assert_eq!(run.status.code(), Some(2));
    let err = text(&run.stderr);
    assert!(
        err.contains("cannot read the history of `sum(http_requests_total{service=\"checkout\""),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    assert!(run.stdout.is_empty());
}

#[tokio::test]
async fn times_that_do_not_parse_are_refused_with_the_forms_accepted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = deploy_file(dir.path());
    let run = backtest(&[
        &file,
        "--from",
        "last tuesday",
        "--prometheus",
        "http://127.0.0.1:9",
    ])
    .await;
    assert_eq!(run.status.code(), Some(2));
    let err = text(&run.stderr);
    assert!(
        err.contains("--from: `last tuesday` is not a time"),
        "{err}"
    );
    assert!(err.contains("RFC 3339") && err.contains("-2h"), "{err}");
}
