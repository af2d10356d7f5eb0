//! The resources the fake API server serves, and request paths → resources.

/// One resource type the fake serves.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    /// API group (`""` for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// URL plural (`deployments`).
    pub plural: &'static str,
    /// `kind` of one object.
    pub kind: &'static str,
    /// Has a `/status` subresource: the main resource ignores `status`,
    /// `/status` ignores everything else, and spec changes bump `generation`.
    pub status_subresource: bool,
    /// A custom resource: PUT needs `metadata.resourceVersion` and strategic
    /// merge patches are refused (415), as the real server does.
    pub custom: bool,
}

impl Kind {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Every resource the fake serves.
pub const KINDS: &[Kind] = &[
    Kind {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
        status_subresource: true,
        custom: false,
    },
    Kind {
        group: crate::cluster::names::GROUP,
        version: "v1alpha1",
        plural: "rollouts",
        kind: "Rollout",
        status_subresource: true,
        custom: true,
    },
    Kind {
        group: "gateway.networking.k8s.io",
        version: "v1",
        plural: "httproutes",
        kind: "HTTPRoute",
        status_subresource: true,
        custom: true,
    },
    Kind {
        group: "split.smi-spec.io",
        version: "v1alpha2",
        plural: "trafficsplits",
        kind: "TrafficSplit",
        status_subresource: false,
        custom: true,
    },
    Kind {
        group: "",
        version: "v1",
        plural: "events",
        kind: "Event",
        status_subresource: false,
        custom: false,
    },
    Kind {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        kind: "Event",
        status_subresource: false,
        custom: false,
    },
    Kind {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        kind: "Lease",
        status_subresource: false,
        custom: false,
    },
];

/// The index in [`KINDS`] of `apiVersion` + `kind`.
pub fn find(api_version: &str, kind: &str) -> Option<usize> {
    KINDS
        .iter()
        .position(|k| k.api_version() == api_version && k.kind == kind)
}

/// What a request path addresses.
#[derive(Debug, PartialEq, Eq)]
pub struct Target {
    /// Index in [`KINDS`].
    pub kind: usize,
    /// The namespace; `None` for a list or watch across namespaces.
    pub namespace: Option<String>,
    /// The object's name; `None` for the collection.
    pub name: Option<String>,
    /// The `/status` subresource.
    pub status: bool,
}

/// Parses `/api/v1/namespaces/ns/events/x`, `/apis/apps/v1/namespaces/ns/deployments/x/status`,
/// `/apis/apps/v1/deployments` and the like. `None` for anything else (404).
pub fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, status) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] if namespace.is_some() => (*plural, Some(name.to_string()), false),
        [plural, name, "status"] if namespace.is_some() => (*plural, Some(name.to_string()), true),
        _ => return None,
    };
    let kind = KINDS
        .iter()
        .position(|k| k.group == group && k.version == version && k.plural == plural)?;
    Some(Target {
        kind,
        namespace,
        name,
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_resource_namespace_object_and_subresource() {
        let t =
            parse_path("/apis/apps/v1/namespaces/shop/deployments/checkout/status").expect("known");
        assert_eq!(KINDS[t.kind].kind, "Deployment");
        assert_eq!(t.namespace.as_deref(), Some("shop"));
        assert_eq!(t.name.as_deref(), Some("checkout"));
        assert!(t.status);
        let t = parse_path("/api/v1/namespaces/shop/events").expect("known");
        assert_eq!(KINDS[t.kind].api_version(), "v1");
        assert_eq!(t.name, None);
        let t = parse_path("/apis/canaryd.dev/v1alpha1/rollouts").expect("known");
        assert_eq!(t.namespace, None);
        assert!(parse_path("/apis/apps/v1/namespaces/shop/statefulsets").is_none());
        assert!(parse_path("/version").is_none());
    }
}
