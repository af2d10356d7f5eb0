//! The Rollout custom resource: generated CRD, one schema with the deploy
//! file (same decoder, same diagnostics, JSON paths), and the status of an
//! invalid spec.

use canaryd::cluster::crd::conditions::{ConditionType, find, invalid_spec, valid_spec};
use canaryd::cluster::crd::decode::{TrackVersions, decode_rollout};
use canaryd::cluster::crd::{Rollout, RolloutPhase, RolloutSpec, RolloutStatus, crd_yaml};
use canaryd::spec::decode::decode;
use canaryd::spec::diagnostic::Code;
use canaryd::spec::model::RouterSpec;
use canaryd::spec::policy::PolicySet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

const SEED: &str = "\
deploy:
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

/// A Rollout manifest around a `deploy:` block (indented under `spec:`).
fn rollout_yaml(deploy_block: &str, router: &str) -> String {
    let deploy: String = deploy_block.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: canaryd.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: checkout\n  namespace: shop\nspec:\n  targetRef: {{ apiVersion: apps/v1, kind: Deployment, name: checkout }}\n  router: {router}\n{deploy}"
    )
}

const GATEWAY: &str = "{ kind: gateway-api, route: checkout, stable_backend: checkout-primary, canary_backend: checkout-canary }";

fn parse(text: &str) -> Rollout {
    serde_saphyr::from_str(text).expect("a Rollout manifest")
}

#[test]
fn the_committed_crd_is_the_one_the_rust_types_generate() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/crd.yaml");
    let generated = crd_yaml().expect("renders");
    if std::env::var_os("CANARYD_BLESS").is_some() {
        std::fs::write(path, &generated).expect("write crd.yaml");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "deploy/kubernetes/crd.yaml is out of date: run `CANARYD_BLESS=1 cargo test --test cluster_crd` (or `canaryd crd > deploy/kubernetes/crd.yaml`)"
    );
}

#[test]
fn kubectl_get_rollouts_shows_phase_step_weight_canary_and_age() {
    use kube::CustomResourceExt;
    let crd = Rollout::crd();
    assert_eq!(crd.spec.group, "canaryd.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some(),
        "status is a subresource"
    );
    let columns: Vec<(String, String)> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| (c.name.clone(), c.json_path.clone()))
        .collect();
    let expected = [
        ("Phase", ".status.phase"),
        ("Step", ".status.step"),
        ("Weight", ".status.weight"),
        ("Canary", ".status.canaryVersion"),
        ("Age", ".metadata.creationTimestamp"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(columns, expected);
}

#[test]
fn the_seed_strategy_is_valid_as_is_under_spec_deploy() {
    let rollout = parse(&rollout_yaml(SEED, GATEWAY));
    let decoded = decode_rollout(
        &rollout,
        &TrackVersions::placeholder(),
        &PolicySet::builtin(),
    );
    assert_eq!(decoded.problems, vec![]);
    let spec = decoded.spec.expect("valid");
    assert_eq!(spec.id.to_string(), "shop/checkout");
    let weights: Vec<String> = spec
        .strategy
        .steps
        .iter()
        .map(|s| s.weight.to_string())
        .collect();
    assert_eq!(weights, ["5%", "50%", "100%"]);
    assert_eq!(spec.strategy.rollback.on.len(), 2);
    assert_eq!(
        spec.router,
        RouterSpec::GatewayApi {
            route: "checkout".into(),
            stable_backend: "checkout-primary".into(),
            canary_backend: "checkout-canary".into()
        }
    );
    assert_eq!(spec.canary.version, "canary");
}

#[test]
fn an_smi_router_decodes_with_its_split_and_services() {
    let router = "{ kind: smi, traffic_split: checkout, root_service: checkout, stable_backend: checkout-primary, canary_backend: checkout-canary }";
    let decoded = decode_rollout(
        &parse(&rollout_yaml(SEED, router)),
        &TrackVersions::placeholder(),
        &PolicySet::builtin(),
    );
    assert!(matches!(
        decoded.spec.expect("valid").router,
        RouterSpec::Smi { .. }
    ));
}

#[test]
fn a_router_key_of_another_kind_gets_the_deploy_files_did_you_mean_at_its_path() {
    let router = "{ kind: smi, route: checkout, root_service: checkout, stable_backend: a, canary_backend: b }";
    let decoded = decode_rollout(
        &parse(&rollout_yaml(SEED, router)),
        &TrackVersions::placeholder(),
        &PolicySet::builtin(),
    );
    assert!(decoded.spec.is_none());
    let paths: Vec<(&str, Code)> = decoded
        .problems
        .iter()
        .map(|p| (p.path.as_str(), p.code))
        .collect();
    assert!(
        paths.contains(&("spec.router.route", Code::UnknownKey)),
        "{paths:?}"
    );
    assert!(
        paths.contains(&("spec.router", Code::MissingKey)),
        "{paths:?}"
    );
}

#[test]
fn a_bad_strategy_gets_the_same_diagnostics_as_a_deploy_file_at_json_paths() {
    let broken = SEED
        .replace("deploy: 5%", "deploy: 150%")
        .replace("duration: 20m", "duration: 20 minutes");
    let rollout = parse(&rollout_yaml(&broken, GATEWAY));
    let decoded = decode_rollout(
        &rollout,
        &TrackVersions::placeholder(),
        &PolicySet::builtin(),
    );
    assert!(decoded.spec.is_none());
    // The same strategy in a deploy file.
    let file = format!(
        "service: checkout\nnamespace: shop\nrouter: {GATEWAY}\nstable: {{ version: stable }}\ncanary: {{ version: canary }}\n{broken}"
    );
    let from_file = decode("checkout.yaml", &file, &PolicySet::builtin());
    let file_view: Vec<(Code, String, Option<String>)> = from_file
        .diagnostics
        .iter()
        .map(|d| (d.code, d.message.clone(), d.hint.clone()))
        .collect();
    let cr_view: Vec<(Code, String, Option<String>)> = decoded
        .problems
        .iter()
        .map(|p| (p.code, p.message.clone(), p.hint.clone()))
        .collect();
    assert_eq!(cr_view, file_view);
    let paths: Vec<&str> = decoded.problems.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"spec.deploy.steps[0].deploy"), "{paths:?}");
    assert!(
        paths.contains(&"spec.deploy.steps[1].duration"),
        "{paths:?}"
    );
    let shown = decoded.problems[0].to_string();
    assert!(shown.starts_with("spec.deploy.steps["), "{shown}");
}

#[test]
fn a_target_with_the_wrong_api_version_is_reported_at_spec_target_ref() {
    let text =
        rollout_yaml(SEED, GATEWAY).replace("apiVersion: apps/v1,", "apiVersion: apps/v1beta1,");
    let decoded = decode_rollout(
        &parse(&text),
        &TrackVersions::placeholder(),
        &PolicySet::builtin(),
    );
    assert!(decoded.spec.is_none());
    assert_eq!(decoded.problems[0].path, "spec.targetRef.apiVersion");
}

#[test]
fn every_shipped_deploy_file_round_trips_through_the_crd_types_without_losing_a_key() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("deploy/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let file: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&path).expect("read")).expect("yaml");
        let mut spec = serde_json::json!({
            "targetRef": { "kind": "Deployment", "name": "checkout" },
            "router": { "kind": "kubernetes-replicas", "replicas": 10 },
        });
        for key in ["policy", "prometheus", "deploy", "alerts"] {
            if let Some(v) = file.get(key) {
                spec[key] = v.clone();
            }
        }
        let typed: RolloutSpec = serde_json::from_value(spec.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            serde_json::to_value(&typed).expect("json"),
            spec,
            "{} lost a key in the CRD types",
            path.display()
        );
        let rollout = Rollout::new("checkout", typed);
        let decoded = decode_rollout(
            &rollout,
            &TrackVersions::placeholder(),
            &PolicySet::builtin(),
        );
        assert!(
            decoded.problems.iter().all(|p| !p.is_error()),
            "{}: {:?}",
            path.display(),
            decoded.problems
        );
        seen += 1;
    }
    assert!(seen >= 3, "the shipped deploy files were read");
}

#[test]
fn every_analysis_setting_of_a_deploy_file_reaches_the_decoder_from_a_rollout() {
    let block = format!(
        "{SEED}  analysis:\n    interval: 5s\n    window: 2m\n    min_requests: 40\n    confidence: 95%\n    max_extension: 1m\n    consecutive_breaches: 2\n    failure_limit: 2\n    inconclusive_limit: 4\n    no_data: rollback\n"
    );
    let rollout = parse(&rollout_yaml(&block, GATEWAY));
    let written = serde_json::to_value(&rollout.spec).expect("json");
    let analysis = &written["deploy"]["analysis"];
    for key in [
        "interval",
        "window",
        "min_requests",
        "confidence",
        "max_extension",
        "consecutive_breaches",
        "failure_limit",
        "inconclusive_limit",
        "no_data",
    ] {
        assert!(
            analysis.get(key).is_some(),
            "the CRD types drop `{key}`: {analysis}"
        );
    }
    let decoded = decode_rollout(
        &rollout,
        &TrackVersions::placeholder(),
        &PolicySet::builtin(),
    );
    assert_eq!(decoded.problems, vec![]);
    let a = decoded.spec.expect("valid").strategy.analysis;
    assert_eq!(a.max_extension, Some(std::time::Duration::from_secs(60)));
    assert!((a.confidence - 0.95).abs() < 1e-9, "{}", a.confidence);
}

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + seconds).expect("time"))
}

fn progressing() -> RolloutStatus {
    RolloutStatus {
        phase: Some(RolloutPhase::Progressing),
        step: Some(2),
        weight: Some(50.0),
        stable_version: Some("v1".into()),
        canary_version: Some("v2".into()),
        observed_generation: Some(3),
        ..RolloutStatus::default()
    }
}

#[test]
fn an_invalid_spec_raises_invalid_spec_and_an_event_and_leaves_the_rollout_running() {
    let broken = SEED.replace("deploy: 5%", "deploy: 150%");
    let rollout = parse(&rollout_yaml(&broken, GATEWAY));
    let problems = decode_rollout(
        &rollout,
        &TrackVersions::placeholder(),
        &PolicySet::builtin(),
    )
    .problems;
    let current = progressing();
    let first = invalid_spec(&current, Some(4), &problems, &at(0));
    assert!(first.changed);
    let s = &first.status;
    assert_eq!(
        (s.phase, s.step, s.weight),
        (current.phase, current.step, current.weight)
    );
    assert_eq!(
        (&s.stable_version, &s.canary_version),
        (&current.stable_version, &current.canary_version)
    );
    assert_eq!(s.observed_generation, Some(4));
    let cond = find(&s.conditions, ConditionType::InvalidSpec).expect("condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("True", "InvalidSpec")
    );
    assert!(
        cond.message.starts_with("spec.deploy.steps[0].deploy: "),
        "{}",
        cond.message
    );
    assert_eq!(s.message.as_deref(), Some(cond.message.as_str()));
    let event = first.event.expect("an event");
    assert!(event.warning);
    assert_eq!(
        (event.reason.as_str(), event.action.as_str()),
        ("InvalidSpec", "Validate")
    );
    assert!(event.note.contains("spec.deploy.steps[0].deploy"));

    // The same problem seen again: nothing to write, nothing to announce.
    let again = invalid_spec(&first.status, Some(4), &problems, &at(60));
    assert!(!again.changed);
    assert!(again.event.is_none());

    // Fixed: a real transition, with its own time.
    let fixed = valid_spec(&again.status, Some(5), &at(120));
    let cond = find(&fixed.conditions, ConditionType::InvalidSpec).expect("condition");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_str()),
        ("False", "SpecValid")
    );
    assert_eq!(cond.last_transition_time, at(120));
    assert_eq!(fixed.phase, Some(RolloutPhase::Progressing));
}

#[test]
fn another_error_updates_the_message_but_not_the_transition_time() {
    let one = decode_rollout(
        &parse(&rollout_yaml(
            &SEED.replace("deploy: 5%", "deploy: 150%"),
            GATEWAY,
        )),
        &TrackVersions::placeholder(),
        &PolicySet::builtin(),
    )
    .problems;
    let other = decode_rollout(
        &parse(&rollout_yaml(
            &SEED.replace("duration: 10m", "duration: soon"),
            GATEWAY,
        )),
        &TrackVersions::placeholder(),
        &PolicySet::builtin(),
    )
    .problems;
    let first = invalid_spec(&progressing(), Some(4), &one, &at(0));
    let second = invalid_spec(&first.status, Some(5), &other, &at(30));
    assert!(second.changed);
    assert!(second.event.is_some(), "a new problem is announced");
    let cond = find(&second.status.conditions, ConditionType::InvalidSpec).expect("condition");
    assert_eq!(
        cond.last_transition_time,
        at(0),
        "still True: no transition"
    );
    assert!(
        cond.message.contains("steps[0].duration"),
        "{}",
        cond.message
    );
}
