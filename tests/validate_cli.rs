//! `canaryd validate`, run as a user runs it: exact messages, positions, hints, exit codes.
//!
//! Each `tests/validate/broken/NAME.yaml` has the exact expected output in
//! `NAME.expected`. After a deliberate wording change, regenerate them with
//! `CANARYD_BLESS=1 cargo test --test validate_cli` and review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SEED: &str = "deploy:
  strategy: canary
  steps:
    - deploy: 5%
      duration: 10m
      metrics:
        - error_rate_less_than: 1%
        - latency_p99_less_than: 200ms
    - deploy: 50%
      duration: 20m
    - deploy: 100%

  rollback:
    auto: true
    on:
      - error_rate_greater_than: 2%
      - latency_p99_greater_than: 500ms
";

fn canaryd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_canaryd"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CANARYD_POLICY_DIR")
        .output()
        .expect("canaryd runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn broken_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate/broken");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("broken examples exist")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn check_expected(args: &[&str], expected_file: &Path) {
    let out = canaryd(args);
    let got = stdout(&out);
    if std::env::var_os("CANARYD_BLESS").is_some() {
        std::fs::write(expected_file, &got).expect("bless");
    }
    let want = std::fs::read_to_string(expected_file).expect("expected output exists");
    assert_eq!(got, want, "output of `canaryd {}` changed", args.join(" "));
    assert_eq!(
        out.status.code(),
        Some(1),
        "a broken file exits 1: {args:?}"
    );
}

#[test]
fn the_seed_example_parses_verbatim_inside_a_full_deploy_file() {
    let file =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/checkout.yaml"))
            .expect("example exists");
    assert!(
        file.contains(SEED),
        "deploy/checkout.yaml must hold the brief's seed block verbatim"
    );
    let out = canaryd(&["validate", "deploy/checkout.yaml"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // Valid, with one warning: http-red declares the client libraries'
    // default buckets, which have no bound at 200ms.
    let text = stdout(&out);
    assert!(
        text.starts_with("warning: `latency_p99 < 200ms` (step 1): policy `http-red`'s default histogram bounds have none at 200ms; it is judged at 100ms and 250ms"),
        "{text}"
    );
    assert!(text.contains("--> deploy/checkout.yaml:18:34"), "{text}");
    assert!(
        text.ends_with(
            "ok: deploy/checkout.yaml — rollout default/checkout: 3 steps (5% → 50% → 100%), 2 promotion gates, 2 abort conditions\n"
        ),
        "{text}"
    );
}

#[test]
fn every_example_deploy_file_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .expect("deploy/ exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| format!("deploy/{}", p.file_name().expect("name").to_string_lossy()))
        .collect();
    assert!(!files.is_empty());
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = canaryd(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn each_broken_file_is_rejected_with_its_exact_position_message_and_hint() {
    let files = broken_files();
    let singles: Vec<&PathBuf> = files
        .iter()
        .filter(|p| !p.to_string_lossy().contains("19-duplicate"))
        .collect();
    assert!(singles.len() >= 12, "keep at least 12 broken examples");
    for path in singles {
        let rel = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .expect("inside the repo");
        let rel = rel.to_string_lossy();
        check_expected(&["validate", &rel], &path.with_extension("expected"));
    }
}

fn warning_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate/warnings");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("warning examples exist")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn coarse_latency_thresholds_and_queries_asked_per_rollout_are_warned_about_and_still_valid() {
    let files = warning_files();
    assert!(files.len() >= 3);
    for path in files {
        let rel = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .expect("inside the repo")
            .to_string_lossy()
            .into_owned();
        let out = canaryd(&["validate", &rel]);
        let got = stdout(&out);
        let expected_file = path.with_extension("expected");
        if std::env::var_os("CANARYD_BLESS").is_some() {
            std::fs::write(&expected_file, &got).expect("bless");
        }
        let want = std::fs::read_to_string(&expected_file).expect("expected output exists");
        assert_eq!(got, want, "output of `canaryd validate {rel}` changed");
        assert_eq!(out.status.code(), Some(0), "warnings do not fail: {got}");
    }
}

#[test]
fn latency_bound_warnings_carry_their_position_and_hint_in_json() {
    let out = canaryd(&[
        "validate",
        "-o",
        "json",
        "tests/validate/warnings/01-latency-between-bounds.yaml",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(report["valid"], true);
    let diags = report["files"][0]["diagnostics"].as_array().expect("list");
    assert_eq!(diags.len(), 2, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d["severity"], "warning");
    assert_eq!(d["code"], "coarse-histogram");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(15), Some(34))
    );
    assert!(
        d["hint"]
            .as_str()
            .is_some_and(|h| h.contains("100ms or 250ms") && h.contains("counts.latency_bounds")),
        "{d}"
    );
    assert_eq!(
        (diags[1]["line"].as_u64(), diags[1]["column"].as_u64()),
        (Some(21), Some(35))
    );
}

#[test]
fn a_policy_declaring_its_apps_buckets_silences_the_warning_and_bad_bounds_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let red = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/http-red.yaml"),
    )
    .expect("http-red");
    let line = red
        .lines()
        .find(|l| l.trim_start().starts_with("latency_bounds:"))
        .expect("http-red declares its bounds");
    // The app's own buckets, with a bound at 200ms and one at 600ms.
    let fine = red.replace(line, "  latency_bounds: [0.05, 0.1, 0.2, 0.3, 0.6, 1]");
    std::fs::write(dir.path().join("http-red.yaml"), &fine).expect("write policy");
    let policies = dir.path().to_string_lossy().into_owned();
    let file = "tests/validate/warnings/01-latency-between-bounds.yaml";
    let out = canaryd(&["validate", "--policies", &policies, file]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out),
        format!(
            "ok: {file} — rollout default/checkout: 2 steps (5% → 100%), 2 promotion gates, 2 abort conditions\n"
        )
    );

    let descending = red.replace(line, "  latency_bounds: [0.1, 0.05]");
    std::fs::write(dir.path().join("http-red.yaml"), &descending).expect("write policy");
    let out = canaryd(&["validate", "--policies", &policies, file]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error: latency bound 0.05 is not above the one before it"),
        "{text}"
    );
}

#[test]
fn a_rollout_declared_in_two_files_is_rejected_in_the_second() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/validate/broken");
    check_expected(
        &[
            "validate",
            "tests/validate/broken/19-duplicate-rollout-a.yaml",
            "tests/validate/broken/19-duplicate-rollout-b.yaml",
        ],
        &dir.join("19-duplicate-rollout.expected"),
    );
}

#[test]
fn all_errors_of_a_file_are_reported_at_once() {
    let out = canaryd(&[
        "validate",
        "tests/validate/broken/18-everything-at-once.yaml",
    ]);
    let text = stdout(&out);
    assert_eq!(
        text.matches("\nerror: ").count() + usize::from(text.starts_with("error: ")),
        8,
        "{text}"
    );
    assert!(
        text.ends_with("18-everything-at-once.yaml: 7 errors\n"),
        "{text}"
    );
}

#[test]
fn json_output_gives_scripts_file_line_column_code_and_hint() {
    let out = canaryd(&[
        "validate",
        "-o",
        "json",
        "deploy/checkout.yaml",
        "tests/validate/broken/02-weight-over-100.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(report["valid"], false);
    assert_eq!(report["files"][0]["valid"], true);
    assert_eq!(report["files"][0]["rollout"], "default/checkout");
    let d = &report["files"][1]["diagnostics"][0];
    assert_eq!(d["file"], "tests/validate/broken/02-weight-over-100.yaml");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(17), Some(15))
    );
    assert_eq!(d["code"], "weight-out-of-range");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["hint"], "a canary weight is between `0%` and `100%`");
}

#[test]
fn a_broken_policy_file_is_reported_with_its_position() {
    let dir = std::env::temp_dir().join(format!("canaryd-policies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("mine.yaml"),
        "name: mine\nrequests: up\nmetrics:\n  saturation:\n    unit: percent\n    query: up{x=\"{{sevice}}\"}\n",
    )
    .expect("write policy");
    let out = canaryd(&[
        "validate",
        "--policies",
        &dir.to_string_lossy(),
        "deploy/checkout.yaml",
    ]);
    let text = stdout(&out);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("error: unknown unit `percent`"), "{text}");
    assert!(text.contains("mine.yaml:5:11"), "{text}");
    assert!(
        text.contains("error: unknown placeholder `{{sevice}}` in `query`"),
        "{text}"
    );
    assert!(text.contains("hint: did you mean `{{service}}`?"), "{text}");
}

#[test]
fn an_unreadable_file_is_an_error_not_a_crash() {
    let out = canaryd(&["validate", "deploy/does-not-exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("error: cannot read:"));
}
