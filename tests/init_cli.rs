//! `canaryd init` against a real Prometheus scraping running sample apps:
//! the file it writes validates, names the policy and versions it found,
//! and carries thresholds derived from the values it measured.

mod harness;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use canaryd::sample::Behaviour;
use canaryd::spec::decode::decode;
use canaryd::spec::model::{Comparison, DeploySpec, Gate};
use canaryd::spec::policy::PolicySet;
use harness::{Prometheus, load_on, sample_app, wait_for};

async fn init(args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .arg("init")
        .args(args)
        .env_remove("CANARYD_PROMETHEUS_URL")
        .env_remove("CANARYD_POLICY_DIR")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .expect("canaryd runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One number from an instant query (0 when the result is empty).
async fn query(prom: &Prometheus, promql: &str) -> Result<f64, String> {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prom.url()))
        .query(&[("query", promql)])
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let value = &body["data"]["result"][0]["value"][1];
    Ok(value.as_str().and_then(|v| v.parse().ok()).unwrap_or(0.0))
}

fn validated(path: &Path) -> DeploySpec {
    let text = std::fs::read_to_string(path).expect("init wrote the file");
    let decoded = decode(&path.display().to_string(), &text, &PolicySet::builtin());
    match decoded.spec {
        Some(spec) if decoded.diagnostics.is_empty() => spec,
        _ => panic!("{text}\ndoes not validate: {:#?}", decoded.diagnostics),
    }
}

/// The number after `label` in `line` (`error rate 5.02%` → 0.0502, `p99 312ms` → 0.312).
fn printed(out: &str, label: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("stable v1 now:"))
        .unwrap_or_else(|| panic!("no measured line in:\n{out}"));
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {line}"))
        + label.len()..];
    let word: String = rest
        .trim_start()
        .chars()
        .take_while(|c| !matches!(c, ',' | ' '))
        .collect();
    let (number, scale) = if let Some(p) = word.strip_suffix('%') {
        (p, 0.01)
    } else if let Some(ms) = word.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = word.strip_suffix('s') {
        (s, 1.0)
    } else {
        (word.as_str(), 1.0)
    };
    number
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("`{word}` in {line}"))
        * scale
}

fn gate<'a>(gates: &'a [Gate], metric: &str, comparison: Comparison) -> &'a Gate {
    gates
        .iter()
        .find(|g| g.metric == metric && g.comparison == comparison)
        .unwrap_or_else(|| panic!("no {metric} {comparison:?} gate in {gates:?}"))
}

/// `value` is `factor × basis` rounded up to two significant digits: at
/// least the product, at most 10% above it.
fn assert_rounded_up(what: &str, value: f64, factor: f64, basis: f64) {
    let exact = factor * basis;
    assert!(
        value >= exact * 0.999 && value <= exact * 1.1 + 1e-9,
        "{what}: {value} is not {factor} × {basis} = {exact} rounded up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_writes_a_valid_file_with_the_detected_policy_versions_and_thresholds_from_measured_values()
 {
    // The stable version fails 5% with a 300 ms p99: well above the floors,
    // so the thresholds must come from what was measured.
    let v1 = sample_app(
        "checkout",
        "v1",
        Behaviour {
            error_rate: 0.05,
            latency_p50: Duration::from_millis(100),
            latency_p99: Duration::from_millis(300),
            ..Behaviour::default()
        },
    )
    .await;
    let v2 = sample_app("checkout", "v2", Behaviour::default()).await;
    let _loads = (load_on(&v1, 100.0), load_on(&v2, 20.0));
    let prom = Prometheus::start(&[v1.addr(), v2.addr()]).await;
    let requests = r#"sum(increase(http_requests_total{service="checkout", version="v1"}[1m]))"#;
    wait_for(
        "2,000 stable requests in Prometheus",
        Duration::from_secs(90),
        || async {
            match query(&prom, requests).await? {
                n if n >= 2000.0 => Ok(()),
                n => Err(format!("{n} requests")),
            }
        },
    )
    .await;

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("checkout.yaml");
    let file_arg = file.display().to_string();
    let args = [
        "--service",
        "checkout",
        "--prometheus",
        prom.url(),
        "--window",
        "1m",
        "--yes",
        "-o",
        &file_arg,
    ];
    let out = init(&args).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));

    // Detection: the policy whose metrics the apps export, both versions,
    // the busier one as stable, and each version's scrape target as its address.
    assert!(stdout.contains("policy http-red: version v1 ("), "{stdout}");
    assert!(stdout.contains(", v2 ("), "{stdout}");
    let spec = validated(&file);
    assert_eq!(spec.policy, "http-red");
    assert_eq!(spec.prometheus.as_deref(), Some(prom.url()));
    assert_eq!(spec.stable.version, "v1");
    assert_eq!(spec.canary.version, "v2");
    assert_eq!(spec.stable.address, Some(v1.addr().to_string()));
    assert_eq!(spec.canary.address, Some(v2.addr().to_string()));
    let written = std::fs::read_to_string(&file).expect("read");
    assert!(
        written.contains("policy http-red") && written.contains("version v1"),
        "{written}"
    );

    // The seed's shape.
    let steps = &spec.strategy.steps;
    let weights: Vec<String> = steps.iter().map(|s| s.weight.to_string()).collect();
    assert_eq!(weights, ["5%", "50%", "100%"]);
    assert_eq!(steps[0].duration, Some(Duration::from_secs(600)));
    assert_eq!(steps[1].duration, Some(Duration::from_secs(1200)));
    assert!(spec.strategy.rollback.auto);

    // What was measured is what the apps do, within the sampling noise of
    // the requests Prometheus counted (4σ of a binomial share).
    let n = printed(&stdout, "now:");
    let error = printed(&stdout, "error rate");
    let p99 = printed(&stdout, "p99");
    assert!(n >= 1500.0, "the window held {n} requests");
    let sigma = (0.05f64 * 0.95 / n).sqrt();
    assert!(
        (error - 0.05).abs() <= 4.0 * sigma + 0.0005,
        "error rate {error} over {n} requests"
    );
    assert!(
        (0.25..=0.4).contains(&p99),
        "p99 {p99}: a 300 ms p99 reads within its bucket"
    );

    // The thresholds are derived from those values: 2 × today's value for
    // the promotion gates, 2 × and 2.5 × the gate for the abort conditions.
    let promotion = &steps[0].gates;
    let abort = &spec.strategy.rollback.on;
    let e_gate = gate(promotion, "error_rate", Comparison::LessThan)
        .limit
        .fixed()
        .expect("a fixed threshold");
    let l_gate = gate(promotion, "latency_p99", Comparison::LessThan)
        .limit
        .fixed()
        .expect("a fixed threshold");
    let e_abort = gate(abort, "error_rate", Comparison::GreaterThan)
        .limit
        .fixed()
        .expect("a fixed threshold");
    let l_abort = gate(abort, "latency_p99", Comparison::GreaterThan)
        .limit
        .fixed()
        .expect("a fixed threshold");
    // Printed values have three significant digits: allow their rounding.
    assert_rounded_up("error-rate gate", e_gate, 2.0, error * 0.999);
    assert_rounded_up("p99 gate", l_gate, 2.0, p99 * 0.999);
    assert_rounded_up("error-rate abort", e_abort, 2.0, e_gate);
    assert_rounded_up("p99 abort", l_abort, 2.5, l_gate);
    // And so sized for this sample, not a fixed number.
    assert!(
        e_gate >= 2.0 * (0.05 - 4.0 * sigma) && e_gate <= 2.2 * (0.05 + 4.0 * sigma),
        "{e_gate}"
    );
    assert!(
        stdout.contains("promotion gates (step 1): error_rate <"),
        "{stdout}"
    );

    // In a terminal, it asks for each setting with what it found as the
    // default (here every default is taken with an empty answer).
    let asked = dir.path().join("asked.yaml");
    let command = format!(
        "{} init --window 1m -o {}",
        env!("CARGO_BIN_EXE_canaryd"),
        asked.display()
    );
    let answers = format!("checkout\n{}\n\n\n\n\n\n", prom.url());
    let mut terminal = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("CANARYD_PROMETHEUS_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) gives init a terminal");
    let mut stdin = terminal.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, answers.as_bytes())
        .await
        .expect("answers");
    let session = tokio::time::timeout(Duration::from_secs(60), terminal.wait_with_output())
        .await
        .expect("init answers within a minute")
        .expect("script runs");
    drop(stdin);
    let shown = text(&session.stdout);
    assert!(session.status.success(), "{shown}");
    for prompt in [
        "Service",
        "Prometheus URL [http://127.0.0.1:9090]",
        "Stable version (serving traffic now) [v1]",
        "[v2]",
        "Router listen address [127.0.0.1:8080]",
        &format!("Stable address (host:port) [{}]", v1.addr()),
    ] {
        assert!(shown.contains(prompt), "no `{prompt}` asked:\n{shown}");
    }
    let asked_spec = validated(&asked);
    assert_eq!(
        (
            asked_spec.stable.version.as_str(),
            asked_spec.canary.version.as_str()
        ),
        ("v1", "v2")
    );

    // And it was written once: a second run refuses to replace it.
    let again = init(&args).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("exists; pass --force"),
        "{}",
        text(&again.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_a_service_prometheus_shows_no_traffic_for() {
    let app = sample_app("checkout", "v1", Behaviour::default()).await;
    let _load = load_on(&app, 50.0);
    let prom = Prometheus::start(&[app.addr()]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("payments.yaml");
    let file_arg = file.display().to_string();
    let out = init(&[
        "--service",
        "payments",
        "--prometheus",
        prom.url(),
        "--yes",
        "-o",
        &file_arg,
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no policy's metrics show traffic for service `payments`"),
        "{stderr}"
    );
    assert!(
        text(&out.stdout).contains("policy http-red: no traffic"),
        "{}",
        text(&out.stdout)
    );
    assert!(!file.exists(), "nothing is written");
}

#[tokio::test]
async fn init_never_replaces_an_existing_file_without_force() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("checkout.yaml");
    std::fs::write(&file, "mine\n").expect("write");
    let file_arg = file.display().to_string();
    // Nothing listens on port 1: a run that got past the check would fail on Prometheus.
    let base = [
        "--service",
        "checkout",
        "--prometheus",
        "http://127.0.0.1:1",
        "--yes",
        "-o",
        &file_arg,
    ];
    let refused = init(&base).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr).contains("exists; pass --force"),
        "{}",
        text(&refused.stderr)
    );

    let forced = init(&[&base[..], &["--force"]].concat()).await;
    assert_eq!(forced.status.code(), Some(1), "Prometheus is unreachable");
    assert!(
        text(&forced.stderr).contains("Prometheus"),
        "{}",
        text(&forced.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "mine\n",
        "a failed run writes nothing"
    );
}
