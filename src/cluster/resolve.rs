//! A Rollout, with its Deployments from the watch cache, as the deploy spec
//! the controller runs: the track versions come from the workload (the
//! target's pod template is the canary, `<target>-primary` the stable
//! track), the rest from the deploy-file decoder, so a Rollout gets a
//! deploy file's diagnostics, located by JSON path. Pure: no I/O.

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::cluster::crd::Rollout;
use crate::cluster::crd::decode::{SpecProblem, TrackVersions, decode_rollout};
use crate::cluster::names::{PRIMARY_SUFFIX, VERSION_LABEL};
use crate::cluster::workload::Observed;
use crate::spec::diagnostic::{Code, Severity};
use crate::spec::model::DeploySpec;
use crate::spec::policy::PolicySet;

/// What a Rollout resolves to.
#[derive(Debug)]
pub enum Resolution {
    /// A spec to run.
    Valid {
        /// The spec; its tracks' `address` name their Deployments (the
        /// target, and `<target>-primary`).
        spec: Box<DeploySpec>,
        /// Warnings, rendered (`spec.deploy.analysis.no_data: …`).
        warnings: Vec<String>,
        /// The primary does not exist yet (canaryd creates it).
        primary_missing: bool,
    },
    /// A spec that cannot run; the rollout's previous spec, if any, keeps running.
    Invalid {
        /// Every problem (errors and warnings).
        problems: Vec<SpecProblem>,
    },
}

/// The errors of `problems`, one per line, as `validate` lists them.
pub fn report(problems: &[SpecProblem]) -> String {
    problems
        .iter()
        .filter(|p| p.is_error())
        .map(|p| format!("error: {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn problem(path: &str, message: String, hint: &str) -> SpecProblem {
    SpecProblem {
        severity: Severity::Error,
        code: Code::BadValue,
        path: path.to_string(),
        message,
        hint: Some(hint.to_string()),
    }
}

/// Resolves `rollout` against the Deployments in `deployments`.
pub fn resolve(
    rollout: &Rollout,
    deployments: &Store<Deployment>,
    policies: &PolicySet,
) -> Resolution {
    let namespace = rollout.namespace().unwrap_or_else(|| "default".into());
    let target_name = rollout.spec.target_ref.name.clone();
    let primary_name = format!("{target_name}{PRIMARY_SUFFIX}");
    let get = |name: &str| deployments.get(&ObjectRef::new(name).within(&namespace));
    let target = get(&target_name);
    let primary = get(&primary_name);
    let observed = target
        .as_deref()
        .and_then(|t| Observed::of(t, primary.as_deref()));
    let Some(observed) = observed else {
        let mut problems =
            decode_rollout(rollout, &TrackVersions::placeholder(), policies).problems;
        problems.insert(
            0,
            problem(
                "spec.targetRef.name",
                format!("Deployment `{target_name}` does not exist in namespace `{namespace}`"),
                "name the Deployment this Rollout rolls out, in the Rollout's namespace",
            ),
        );
        return Resolution::Invalid { problems };
    };
    let stable = observed
        .stable_version
        .clone()
        .unwrap_or_else(|| observed.canary_version.clone());
    let versions = TrackVersions {
        stable,
        canary: observed.canary_version.clone(),
    };
    let decoded = decode_rollout(rollout, &versions, policies);
    let mut problems = decoded.problems;
    // A new template under the same version label would never be rolled
    // out (versions name tracks): say so instead of ignoring the change.
    if primary.is_some() && observed.new_canary() && versions.stable == versions.canary {
        problems.insert(
            0,
            problem(
                "spec.targetRef.name",
                format!(
                    "Deployment `{target_name}` has a new pod template with the same version `{}` as `{primary_name}`",
                    versions.canary
                ),
                &format!("set a new `{VERSION_LABEL}` label on the pod template to roll it out"),
            ),
        );
    }
    match decoded.spec {
        Some(mut spec) if !problems.iter().any(SpecProblem::is_error) => {
            spec.canary.address = Some(target_name);
            spec.stable.address = Some(primary_name);
            Resolution::Valid {
                spec: Box::new(spec),
                warnings: problems.iter().map(|p| format!("warning: {p}")).collect(),
                primary_missing: primary.is_none(),
            }
        }
        _ => Resolution::Invalid { problems },
    }
}
