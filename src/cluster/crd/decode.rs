//! A Rollout → [`DeploySpec`], through the deploy file's own decoder, so a
//! custom resource gets exactly the diagnostics a deploy file gets. Positions
//! become JSON paths: every node of the tree handed to the decoder carries a
//! synthetic position (its index in a table of paths), and each diagnostic's
//! position is looked up again (`spec.deploy.steps[0].deploy` instead of
//! `checkout.yaml:5:15`).

use std::fmt;

use kube::ResourceExt;

use super::Rollout;
use crate::spec::decode::decode_node;
use crate::spec::diagnostic::{Code, Diagnostic, Severity};
use crate::spec::model::DeploySpec;
use crate::spec::policy::PolicySet;
use crate::spec::yaml::{Key, Node, Pos, Value};

/// The versions of the two tracks, read from the Deployments (see
/// [`crate::cluster::workload`]); the decoder needs them as a deploy file gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackVersions {
    /// The primary's version.
    pub stable: String,
    /// The target's (canary's) version.
    pub canary: String,
}

impl TrackVersions {
    /// Versions for validating a spec alone, before the Deployments are read.
    pub fn placeholder() -> TrackVersions {
        TrackVersions {
            stable: "stable".to_string(),
            canary: "canary".to_string(),
        }
    }
}

/// One problem in a Rollout's spec, located by a JSON path.
#[derive(Clone, Debug, PartialEq)]
pub struct SpecProblem {
    /// Error (the spec is rejected) or warning.
    pub severity: Severity,
    /// The same stable code a deploy file's diagnostic has.
    pub code: Code,
    /// Where: `spec.deploy.steps[0].deploy`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl SpecProblem {
    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// A decoded Rollout: the spec when it has no error, and every problem.
#[derive(Debug)]
pub struct DecodedRollout {
    /// The spec, present only without errors.
    pub spec: Option<DeploySpec>,
    /// Errors and warnings in document order.
    pub problems: Vec<SpecProblem>,
}

/// Decodes a Rollout with the deploy-file decoder.
pub fn decode_rollout(
    rollout: &Rollout,
    versions: &TrackVersions,
    policies: &PolicySet,
) -> DecodedRollout {
    let mut paths = Paths::default();
    let mut problems = check_target(rollout);
    let root = deploy_file_tree(rollout, versions, &mut paths);
    let decoded = decode_node(
        &format!("Rollout {}", display_name(rollout)),
        &root,
        policies,
    );
    problems.extend(decoded.diagnostics.iter().map(|d| paths.problem(d)));
    let ok = !problems.iter().any(SpecProblem::is_error);
    DecodedRollout {
        spec: decoded.spec.filter(|_| ok),
        problems,
    }
}

fn display_name(rollout: &Rollout) -> String {
    format!(
        "{}/{}",
        rollout.namespace().unwrap_or_else(|| "default".into()),
        rollout.name_any()
    )
}

/// `targetRef` is cluster-only; the schema already limits `kind`.
fn check_target(rollout: &Rollout) -> Vec<SpecProblem> {
    let target = &rollout.spec.target_ref;
    let mut problems = Vec::new();
    if let Some(v) = &target.api_version
        && v != "apps/v1"
    {
        problems.push(SpecProblem {
            severity: Severity::Error,
            code: Code::BadValue,
            path: "spec.targetRef.apiVersion".into(),
            message: format!("a Deployment's apiVersion is `apps/v1`, not `{v}`"),
            hint: Some("write `apiVersion: apps/v1` or leave it out".into()),
        });
    }
    if target.name.is_empty() {
        problems.push(SpecProblem {
            severity: Severity::Error,
            code: Code::MissingKey,
            path: "spec.targetRef.name".into(),
            message: "`targetRef.name` is empty".into(),
            hint: Some("name the Deployment to roll out, e.g. `name: checkout`".into()),
        });
    }
    problems
}

/// The deploy-file tree the decoder reads: `service`/`namespace` from the
/// metadata, the spec's shared keys as they are, the track versions from the
/// workload (`stable`/`canary` carry no address in cluster mode).
fn deploy_file_tree(rollout: &Rollout, versions: &TrackVersions, paths: &mut Paths) -> Node {
    let mut entries = Vec::new();
    let scalar = |paths: &mut Paths, key: &str, path: &str, text: String| {
        let key_pos = paths.pos(path);
        let value = Node {
            value: Value::String(text),
            pos: paths.pos(path),
        };
        (
            Key {
                name: key.into(),
                pos: key_pos,
            },
            value,
        )
    };
    entries.push(scalar(
        paths,
        "service",
        "metadata.name",
        rollout.name_any(),
    ));
    entries.push(scalar(
        paths,
        "namespace",
        "metadata.namespace",
        rollout.namespace().unwrap_or_else(|| "default".into()),
    ));
    // Serializing the typed spec cannot fail (strings, numbers, maps).
    let spec = serde_json::to_value(&rollout.spec).unwrap_or_default();
    if let serde_json::Value::Object(map) = &spec {
        for (key, value) in map.iter().filter(|(k, _)| k.as_str() != "targetRef") {
            let path = format!("spec.{key}");
            let key_pos = paths.pos(&path);
            entries.push((
                Key {
                    name: key.clone(),
                    pos: key_pos,
                },
                tree(value, &path, paths),
            ));
        }
    }
    for (key, version) in [("stable", &versions.stable), ("canary", &versions.canary)] {
        let track = Node {
            value: Value::Map(vec![scalar(
                paths,
                "version",
                "spec.targetRef",
                version.clone(),
            )]),
            pos: paths.pos("spec.targetRef"),
        };
        let key_pos = paths.pos("spec.targetRef");
        entries.push((
            Key {
                name: key.into(),
                pos: key_pos,
            },
            track,
        ));
    }
    Node {
        value: Value::Map(entries),
        pos: paths.pos("spec"),
    }
}

fn tree(value: &serde_json::Value, path: &str, paths: &mut Paths) -> Node {
    let pos = paths.pos(path);
    let value = match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            Value::Number(n.as_f64().unwrap_or(f64::NAN), n.to_string())
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Seq(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| tree(item, &format!("{path}[{i}]"), paths))
                .collect(),
        ),
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| {
                    let child = format!("{path}.{k}");
                    let key = Key {
                        name: k.clone(),
                        pos: paths.pos(&child),
                    };
                    (key, tree(v, &child, paths))
                })
                .collect(),
        ),
    };
    Node { value, pos }
}

/// The table from synthetic positions to JSON paths. Positions are handed
/// out in document order, so the decoder's sort by position keeps that order.
#[derive(Default)]
struct Paths(Vec<String>);

impl Paths {
    fn pos(&mut self, path: &str) -> Pos {
        self.0.push(path.to_string());
        Pos {
            line: u32::try_from(self.0.len()).unwrap_or(u32::MAX),
            column: 1,
        }
    }

    fn path(&self, line: u32) -> String {
        line.checked_sub(1)
            .and_then(|i| self.0.get(i as usize))
            .cloned()
            .unwrap_or_else(|| "spec".to_string())
    }

    fn problem(&self, d: &Diagnostic) -> SpecProblem {
        SpecProblem {
            severity: d.severity,
            code: d.code,
            path: self.path(d.line),
            message: d.message.clone(),
            hint: d.hint.clone(),
        }
    }
}
