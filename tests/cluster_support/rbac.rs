//! What `deploy/kubernetes/rbac.yaml` grants, and what RBAC checks for a
//! request the fake API server logged (`METHOD uri status`): the cluster
//! tests hold every request canaryd makes against the grants.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

const RBAC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kubernetes/rbac.yaml");

/// (apiGroup, resource, verb)
pub type Grant = (String, String, String);

fn documents() -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(RBAC)).unwrap_or_else(|e| panic!("{RBAC}: {e}"));
    text.split("\n---")
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("{RBAC}: {e}")))
        .collect()
}

/// The grants of every document of `kind` (`ClusterRole`, `Role`).
pub fn grants(kind: &str) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for doc in documents().into_iter().filter(|d| d["kind"] == kind) {
        for rule in doc["rules"].as_array().into_iter().flatten() {
            for g in rule["apiGroups"].as_array().into_iter().flatten() {
                for r in rule["resources"].as_array().into_iter().flatten() {
                    for v in rule["verbs"].as_array().into_iter().flatten() {
                        out.insert((
                            g.as_str().unwrap_or_default().into(),
                            r.as_str().unwrap_or_default().into(),
                            v.as_str().unwrap_or_default().into(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// What RBAC checks for a logged request `METHOD uri status`.
pub fn needed(request: &str) -> Vec<Grant> {
    let mut parts = request.split(' ');
    let (method, uri, status) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", group, _, rest @ ..] => (*group, rest),
        _ => panic!("unexpected path {path}"),
    };
    let rest = match rest {
        ["namespaces", _, rest @ ..] => rest,
        other => other,
    };
    let (resource, named) = match rest {
        [plural] => (plural.to_string(), false),
        [plural, _] => (plural.to_string(), true),
        [plural, _, sub] => (format!("{plural}/{sub}"), true),
        _ => panic!("unexpected path {path}"),
    };
    let watch = query
        .split('&')
        .any(|p| p == "watch=true" || p == "watch=1");
    let verbs: Vec<&str> = match (method, named) {
        ("GET", true) => vec!["get"],
        ("GET", false) if watch => vec!["watch"],
        ("GET", false) => vec!["list"],
        ("POST", _) => vec!["create"],
        ("PUT", _) => vec!["update"],
        // An apply that creates the object needs create as well.
        ("PATCH", _) if status == "201" => vec!["patch", "create"],
        ("PATCH", _) => vec!["patch"],
        ("DELETE", _) => vec!["delete"],
        _ => panic!("unexpected request {request}"),
    };
    verbs
        .into_iter()
        .map(|v| (group.to_string(), resource.clone(), v.to_string()))
        .collect()
}

/// Asserts rbac.yaml grants every one of `requests` (Leases by the Role in
/// canaryd's namespace, the rest by the ClusterRole); returns the grants used.
pub fn assert_granted<'a>(requests: impl IntoIterator<Item = &'a String>) -> BTreeSet<Grant> {
    let cluster = grants("ClusterRole");
    let namespaced = grants("Role");
    let mut used = BTreeSet::new();
    for request in requests {
        for grant in needed(request) {
            let granted = if grant.1 == "leases" {
                namespaced.contains(&grant)
            } else {
                cluster.contains(&grant)
            };
            assert!(
                granted,
                "{request} needs {grant:?}, which rbac.yaml does not grant"
            );
            used.insert(grant);
        }
    }
    used
}
