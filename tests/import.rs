//! `canaryd import argo|flagger`, run as a user runs it on realistic Argo
//! Rollouts and Flagger resources (written from the peers' documented
//! schemas): the deploy file it prints, and what it reports as not mapped.
//!
//! Each case is a directory of `tests/import/`: its inputs, `args` (the
//! command line after `canaryd import`, run inside the directory), and the
//! exact expected output: `expected.yaml` (stdout) and `expected.txt` (stderr
//! and the exit code). After a deliberate change, regenerate them with
//! `CANARYD_BLESS=1 cargo test --test import` and review the diff.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use canaryd::spec::decode::decode;
use canaryd::spec::model::{Comparison, DeploySpec, Limit, RouterSpec};
use canaryd::spec::policy::PolicySet;
use canaryd::spec::units::Threshold;

fn case_dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/import")
        .join(case)
}

/// What one run printed.
struct Run {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

fn run_in(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .arg("import")
        .args(args)
        .current_dir(dir)
        .env_remove("CANARYD_POLICY_DIR")
        .output()
        .expect("canaryd runs");
    Run {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code(),
    }
}

/// Runs a case and compares it with its expected output (or writes it, with
/// `CANARYD_BLESS=1`).
fn golden(case: &str) -> Run {
    let dir = case_dir(case);
    let args = std::fs::read_to_string(dir.join("args")).expect("the case has an `args` file");
    let args: Vec<&str> = args.split_whitespace().collect();
    let run = run_in(&dir, &args);
    let report = format!("{}exit code: {:?}\n", run.stderr, run.code);
    if std::env::var_os("CANARYD_BLESS").is_some() {
        std::fs::write(dir.join("expected.yaml"), &run.stdout).expect("bless");
        std::fs::write(dir.join("expected.txt"), &report).expect("bless");
    }
    let want_yaml = std::fs::read_to_string(dir.join("expected.yaml")).expect("expected.yaml");
    let want_txt = std::fs::read_to_string(dir.join("expected.txt")).expect("expected.txt");
    assert_eq!(run.stdout, want_yaml, "the deploy file of `{case}` changed");
    assert_eq!(report, want_txt, "the report of `{case}` changed");
    run
}

/// Decodes the printed deploy file exactly as `canaryd validate` does.
fn validated(case: &str, text: &str) -> DeploySpec {
    let decoded = decode(case, text, &PolicySet::builtin());
    let errors: Vec<String> = decoded
        .diagnostics
        .iter()
        .map(|d| d.render(Some(text)))
        .collect();
    match decoded.spec {
        Some(spec) if errors.is_empty() => spec,
        _ => panic!(
            "the import of `{case}` does not validate:\n{}",
            errors.join("\n")
        ),
    }
}

/// The 1-based line of the first line of `file` containing `needle`.
fn line_of(case: &str, file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(case_dir(case).join(file)).expect("input exists");
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("`{needle}` is not in {file}"))
}

fn weights(spec: &DeploySpec) -> Vec<String> {
    spec.strategy
        .steps
        .iter()
        .map(|s| s.weight.to_string())
        .collect()
}

fn gates(gates: &[canaryd::spec::model::Gate]) -> Vec<String> {
    gates.iter().map(ToString::to_string).collect()
}

fn mins(m: u64) -> Option<Duration> {
    Some(Duration::from_secs(m * 60))
}

#[test]
fn an_argo_canary_with_pauses_and_analysis_becomes_steps_gates_and_abort_conditions() {
    let run = golden("argo-canary");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let spec = validated("argo-canary", &run.stdout);
    assert_eq!(spec.id.to_string(), "shop/checkout");
    assert_eq!(
        spec.policy, "http-red",
        "the queries read http_requests_total"
    );
    assert_eq!(
        spec.prometheus.as_deref(),
        Some("http://prometheus.monitoring:9090")
    );
    assert_eq!(weights(&spec), ["5%", "50%", "100%"]);
    let steps = &spec.strategy.steps;
    // pause 10m, then the analysis (5 measurements a minute apart) at 5%.
    assert_eq!(steps[0].duration, mins(15));
    assert_eq!(steps[1].duration, mins(20));
    assert_eq!(
        gates(&steps[0].gates),
        ["error_rate < 1%", "latency_p99 < 200ms"]
    );
    assert!(steps[1].gates.is_empty() && steps[2].gates.is_empty());
    // The background analysis and the step's failureCondition watch every step.
    assert_eq!(
        gates(&spec.strategy.rollback.on),
        ["latency_p99 > 500ms", "error_rate > 2%"]
    );
    let a = &spec.strategy.analysis;
    assert_eq!(
        a.failure_limit,
        Some(3),
        "failureLimit 2: the third failure fails"
    );
    assert_eq!(a.window, mins(2).expect("2m"), "the queries' range");
    assert_eq!(a.interval, Duration::from_secs(30), "the shortest interval");
    assert!(
        matches!(spec.router, RouterSpec::KubernetesReplicas { replicas: 10 }),
        "{:?}",
        spec.router
    );
    assert_eq!(spec.stable.version, "1.4.2");
    assert_eq!(
        spec.canary.version, spec.stable.version,
        "idle until a new version"
    );
}

#[test]
fn argo_features_without_a_counterpart_are_listed_with_their_lines() {
    let case = "argo-unmappable";
    let run = golden(case);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let spec = validated(case, &run.stdout);
    for (what, needle) in [
        ("setHeaderRoute", "- setHeaderRoute:"),
        ("setMirrorRoute", "- setMirrorRoute:"),
        ("experiment", "- experiment:"),
        ("setCanaryScale", "- setCanaryScale:"),
        ("managedRoutes", "managedRoutes:"),
        ("trafficRouting.istio", "istio:"),
        ("pause without a duration", "- pause: {}"),
        ("analysis template `not-given`", "templateName: not-given"),
    ] {
        let at = format!(
            "note: rollout.yaml:{}: {what}",
            line_of(case, "rollout.yaml", needle)
        );
        assert!(
            run.stderr.contains(&at),
            "missing `{at}` in:\n{}",
            run.stderr
        );
    }
    for (what, needle) in [
        (
            "metric `smoke`: provider `web` is not Prometheus",
            "- name: smoke",
        ),
        (
            "metric `lag-growth`: successCondition",
            "successCondition: \"all(",
        ),
        (
            "metric `restarts`: its query cannot be a canaryd query",
            "- name: restarts",
        ),
    ] {
        let at = format!(
            "note: templates.yaml:{}: {what}",
            line_of(case, "templates.yaml", needle)
        );
        assert!(
            run.stderr.contains(&at),
            "missing `{at}` in:\n{}",
            run.stderr
        );
    }
    // What does map still does: the istio success rate, and the Kafka lag as
    // a custom query gate; the indefinite pause became a timed step.
    assert_eq!(spec.policy, "istio");
    assert_eq!(weights(&spec), ["10%", "40%", "60%", "100%"]);
    let first = &spec.strategy.steps[0];
    assert_eq!(
        gates(&first.gates),
        ["error_rate < 5%", "consumer_lag < 1000"]
    );
    let lag = &first.gates[1];
    assert_eq!(lag.limit, Limit::Fixed(Threshold::Number(1000.0)));
    assert!(lag.query.is_some(), "a custom gate keeps its query");
    assert_eq!(first.duration, Some(Duration::from_secs(3600 + 6 * 60)));
    assert_eq!(spec.strategy.steps[1].duration, Some(Duration::ZERO));
    assert!(matches!(spec.router, RouterSpec::GatewayApi { .. }));
}

#[test]
fn a_flagger_canary_with_step_weight_and_builtin_metrics_advances_one_step_per_interval() {
    let run = golden("flagger-step-weight");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let spec = validated("flagger-step-weight", &run.stdout);
    assert_eq!(spec.id.to_string(), "test/podinfo");
    assert_eq!(spec.policy, "istio", "Flagger's default provider");
    assert_eq!(weights(&spec), ["10%", "20%", "30%", "40%", "50%", "100%"]);
    let last = spec.strategy.steps.len() - 1;
    for (i, step) in spec.strategy.steps.iter().enumerate() {
        if i == last {
            assert!(step.gates.is_empty());
            continue;
        }
        assert_eq!(step.duration, mins(1), "step {i}: one interval");
        assert_eq!(
            gates(&step.gates),
            ["error_rate < 1%", "latency_p99 < 500ms"]
        );
        assert!(
            step.gates
                .iter()
                .all(|g| g.comparison == Comparison::LessThan && g.query.is_none())
        );
    }
    assert_eq!(
        spec.strategy.analysis.failure_limit,
        Some(5),
        "threshold: 5"
    );
    assert_eq!(spec.strategy.analysis.interval, mins(1).expect("1m"));
    for hook in ["acceptance-test", "load-test"] {
        let at = format!(
            "note: canary.yaml:{}: webhook `{hook}`",
            line_of(
                "flagger-step-weight",
                "canary.yaml",
                &format!("- name: {hook}")
            )
        );
        assert!(
            run.stderr.contains(&at),
            "missing `{at}` in:\n{}",
            run.stderr
        );
    }
}

#[test]
fn a_flagger_canary_with_step_weights_and_metric_templates_keeps_their_queries() {
    let case = "flagger-step-weights-template";
    let run = golden(case);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let spec = validated(case, &run.stdout);
    assert_eq!(weights(&spec), ["1%", "5%", "25%", "50%", "100%"]);
    assert!(matches!(
        &spec.router,
        RouterSpec::GatewayApi { route, stable_backend, canary_backend }
            if route == "podinfo" && stable_backend == "podinfo-primary" && canary_backend == "podinfo-canary"
    ));
    let step = &spec.strategy.steps[0];
    assert_eq!(step.duration, Some(Duration::from_secs(30)));
    assert_eq!(
        gates(&step.gates),
        ["error_rate_query < 1", "latency < 0.25"]
    );
    let error = step.gates[0].query.as_ref().expect("custom query");
    let text = serde_json::to_string(error).expect("serialises");
    assert!(
        text.contains("[{{window}}]") && text.contains("{{namespace}}_{{service}}-canary"),
        "Flagger's variables become canaryd placeholders: {text}"
    );
    let latency = serde_json::to_string(&step.gates[1].query).expect("serialises");
    assert!(
        latency.contains("histogram_quantile(0.95"),
        "templateVariables filled: {latency}"
    );
    assert_eq!(spec.strategy.analysis.failure_limit, Some(3));
    assert_eq!(spec.strategy.analysis.window, mins(1).expect("1m"));
    let at = format!(
        "note: canary.yaml:{}: webhook `promotion gate` (confirm-promotion)",
        line_of(case, "canary.yaml", "- name: \"promotion gate\"")
    );
    assert!(
        run.stderr.contains(&at),
        "missing `{at}` in:\n{}",
        run.stderr
    );
}

#[test]
fn a_file_without_a_rollout_is_refused_with_what_it_holds() {
    let run = golden("broken-not-a-rollout");
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.is_empty(), "nothing is printed: {}", run.stdout);
    assert!(
        run.stderr.contains("no Argo Rollouts `Rollout` found")
            && run.stderr.contains("`Deployment` checkout (apps/v1)"),
        "{}",
        run.stderr
    );
}

#[test]
fn yaml_that_does_not_parse_is_refused_with_its_position() {
    let run = golden("broken-yaml");
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.starts_with("error: canary.yaml:") && run.stderr.contains("invalid YAML"),
        "{}",
        run.stderr
    );
}

#[test]
fn flagger_is_refused_an_argo_rollout() {
    let run = run_in(&case_dir("argo-canary"), &["flagger", "rollout.yaml"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("no Flagger `Canary` found")
            && run.stderr.contains("`Rollout` checkout"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_existing_output_file_is_replaced_only_with_force() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("checkout.yaml");
    std::fs::write(&out, "mine\n").expect("write");
    let out_arg = out.display().to_string();
    let args = [
        "argo",
        "rollout.yaml",
        "-t",
        "templates.yaml",
        "-o",
        &out_arg,
    ];
    let refused = run_in(&case_dir("argo-canary"), &args);
    assert_eq!(refused.code, Some(1));
    assert!(
        refused.stderr.contains("exists; pass --force"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "mine\n");

    let forced = run_in(
        &case_dir("argo-canary"),
        &[&args[..], &["--force"]].concat(),
    );
    assert_eq!(forced.code, Some(0), "{}", forced.stderr);
    let written = std::fs::read_to_string(&out).expect("read");
    validated("argo-canary", &written);
}

#[test]
fn every_case_directory_is_tested() {
    let mut found: Vec<String> = std::fs::read_dir(case_dir(""))
        .expect("tests/import exists")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            "argo-canary",
            "argo-unmappable",
            "broken-not-a-rollout",
            "broken-yaml",
            "flagger-step-weight",
            "flagger-step-weights-template"
        ]
    );
}
