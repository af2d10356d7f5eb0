//! Shadow mode in the deploy file: `deploy.mode` and `deploy.shadow_weight`,
//! what they read as, and a bad value reported where it is written, with a hint.

use canaryd::spec::decode::{Decoded, decode};
use canaryd::spec::diagnostic::{Code, Severity};
use canaryd::spec::model::DeployMode;
use canaryd::spec::policy::PolicySet;
use canaryd::spec::units::Weight;

const SEED_FILE: &str = include_str!("../deploy/checkout.yaml");

/// The seed file with `lines` added under `deploy:`.
fn with_deploy(lines: &str) -> Decoded {
    let from = "  strategy: canary\n";
    assert!(SEED_FILE.contains(from));
    decode(
        "checkout.yaml",
        &SEED_FILE.replacen(from, &format!("{from}{lines}"), 1),
        &PolicySet::builtin(),
    )
}

#[test]
fn a_file_without_a_mode_is_active() {
    let spec = decode("checkout.yaml", SEED_FILE, &PolicySet::builtin())
        .spec
        .expect("valid");
    assert_eq!(spec.strategy.mode, DeployMode::Active);
    assert_eq!(spec.strategy.shadow_weight, None);
}

#[test]
fn mode_shadow_and_a_shadow_weight_read_as_written() {
    let decoded = with_deploy("  mode: shadow\n  shadow_weight: 10%\n");
    let spec = decoded.spec.expect("valid");
    assert_eq!(spec.strategy.mode, DeployMode::Shadow);
    assert_eq!(spec.strategy.shadow_weight, Weight::from_basis_points(1000));
    assert!(decoded.diagnostics.is_empty(), "{:#?}", decoded.diagnostics);
    let active = with_deploy("  mode: active\n").spec.expect("valid");
    assert_eq!(active.strategy.mode, DeployMode::Active);
}

#[test]
fn a_misspelt_mode_is_reported_at_its_value_with_a_suggestion() {
    let decoded = with_deploy("  mode: shadwo\n");
    assert!(decoded.spec.is_none());
    let errors: Vec<_> = decoded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = errors[0];
    assert_eq!(e.code, Code::BadValue);
    assert_eq!((e.line, e.column), (13, 9));
    assert_eq!(e.message, "unknown mode `shadwo`");
    assert!(
        e.hint.as_deref().is_some_and(|h| h.contains("shadow")),
        "{:?}",
        e.hint
    );
}

#[test]
fn a_shadow_weight_that_is_not_a_percentage_is_refused() {
    for (value, code) in [("150%", Code::WeightOutOfRange), ("ten", Code::BadValue)] {
        let decoded = with_deploy(&format!("  mode: shadow\n  shadow_weight: {value}\n"));
        assert!(decoded.spec.is_none(), "{value}");
        let e = &decoded.diagnostics[0];
        assert_eq!(e.code, code, "{value}: {e:?}");
        assert_eq!((e.line, e.column), (14, 18), "{value}");
        assert!(e.message.starts_with("`shadow_weight`"), "{}", e.message);
    }
}
