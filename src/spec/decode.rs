//! Deploy file text → [`DeploySpec`], with every problem reported at once.
//!
//! This module reads the file-level keys (identity, tracks, router, alerts);
//! [`super::strategy`] reads the `deploy:` block.

use std::net::SocketAddr;

use super::diagnostic::{Code, Diagnostic, suggest};
use super::model::{
    AlertSeverity, AlertSink, DeploySpec, RolloutId, RouterSpec, SecretRef, SinkKind, Track,
};
use super::policy::PolicySet;
use super::reader::{Fields, Reader};
use super::strategy::read_strategy;
use super::yaml::{self, Node, Pos};

/// The result of decoding one file: the spec when there was no error, and
/// every diagnostic (warnings come with a valid spec too).
#[derive(Debug)]
pub struct Decoded {
    /// The spec, present only when the file has no error.
    pub spec: Option<DeploySpec>,
    /// Errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
    /// Where the rollout is named (for "declared twice" errors).
    pub name_pos: Pos,
}

const TOP_KEYS: [&str; 9] = [
    "service",
    "namespace",
    "policy",
    "prometheus",
    "router",
    "stable",
    "canary",
    "deploy",
    "alerts",
];

/// Decodes a deploy file. `file` is only used in diagnostics.
pub fn decode(file: &str, text: &str, policies: &PolicySet) -> Decoded {
    let root = match yaml::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let hint = if e.message.contains("flow mapping") {
                "a `{ … }` map on this line or just above is missing a `}` or a `,`"
            } else if e.message.contains("flow sequence") {
                "a `[ … ]` list on this line or just above is missing a `]` or a `,`"
            } else {
                "check the indentation, and that every `key:` has a space after the colon"
            };
            let d = Diagnostic::error(
                Code::YamlSyntax,
                file,
                e.pos,
                format!("invalid YAML: {}", e.message),
            )
            .hint(hint);
            return Decoded {
                spec: None,
                diagnostics: vec![d],
                name_pos: e.pos,
            };
        }
    };
    decode_node(file, &root, policies)
}

/// Decodes an already parsed tree (YAML, or JSON from a custom resource).
pub fn decode_node(file: &str, root: &Node, policies: &PolicySet) -> Decoded {
    let mut r = Reader::new(file);
    let mut name_pos = root.pos;
    let spec = read_file(&mut r, root, policies, &mut name_pos);
    let mut diagnostics = r.diags;
    diagnostics.sort_by_key(|d| (d.line, d.column));
    let ok = !diagnostics.iter().any(Diagnostic::is_error);
    Decoded {
        spec: spec.filter(|_| ok),
        diagnostics,
        name_pos,
    }
}

fn read_file(
    r: &mut Reader<'_>,
    root: &Node,
    policies: &PolicySet,
    name_pos: &mut Pos,
) -> Option<DeploySpec> {
    let f = r.map(root, "the deploy file", &TOP_KEYS)?;
    if let Some(key) = f.key("service") {
        *name_pos = key.pos;
    }
    let name = r.required(
        &f,
        "service",
        "the deploy file",
        "service: checkout",
        |r, n| dns_name(r, n, "`service`"),
    );
    let namespace = match f.get("namespace") {
        Some(n) => dns_name(r, n, "`namespace`"),
        None => Some("default".to_string()),
    };
    let policy_name = match f.get("policy") {
        Some(n) => r.text(n, "`policy`").map(|p| (p, n.pos)),
        None => Some(("http-red".to_string(), f.pos)),
    };
    let policy = policy_name.as_ref().and_then(|(p, pos)| {
        let found = policies.get(p);
        if found.is_none() {
            let hint = suggest(p, policies.names(), || {
                format!(
                    "installed policies: {}",
                    policies.names().collect::<Vec<_>>().join(", ")
                )
            });
            r.error(Code::UnknownPolicy, *pos, format!("no policy named `{p}`"))
                .len(p.len())
                .hint(hint);
        }
        found
    });
    let prometheus = f.get("prometheus").and_then(|n| url(r, n));
    let router = r.required(
        &f,
        "router",
        "the deploy file",
        "router: { kind: builtin, listen: 127.0.0.1:8080 }",
        read_router,
    );
    let needs_address = matches!(router, Some(RouterSpec::Builtin { .. }));
    let stable = r.required(
        &f,
        "stable",
        "the deploy file",
        "stable: { version: v1, address: 127.0.0.1:9001 }",
        |r, n| track(r, n, "`stable`", needs_address),
    );
    let canary = r.required(
        &f,
        "canary",
        "the deploy file",
        "canary: { version: v2, address: 127.0.0.1:9002 }",
        |r, n| track(r, n, "`canary`", needs_address),
    );
    let strategy = r.required(
        &f,
        "deploy",
        "the deploy file",
        "deploy: { strategy: canary, steps: [...] }",
        |r, n| read_strategy(r, n, policy),
    );
    let alerts = match f.get("alerts") {
        Some(n) => read_alerts(r, n),
        None => Some(Vec::new()),
    };
    Some(DeploySpec {
        id: RolloutId {
            namespace: namespace?,
            name: name?,
        },
        policy: policy_name?.0,
        prometheus,
        router: router?,
        stable: stable?,
        canary: canary?,
        strategy: strategy?,
        alerts: alerts?,
    })
}

/// A DNS-label name: it appears in URLs, labels and Kubernetes objects.
fn dns_name(r: &mut Reader<'_>, node: &Node, what: &str) -> Option<String> {
    let text = r.text(node, what)?;
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if !valid {
        let fixed: String = text
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let fixed = fixed.trim_matches('-');
        let mut hint = "use lowercase letters, digits and `-`, at most 63 characters".to_string();
        if !fixed.is_empty() && fixed.len() <= 63 {
            hint = format!("{hint}: `{fixed}`");
        }
        r.error(
            Code::InvalidName,
            node.pos,
            format!("{what} `{text}` is not a valid name"),
        )
        .len(text.chars().count())
        .hint(hint);
        return None;
    }
    Some(text)
}

fn url(r: &mut Reader<'_>, node: &Node) -> Option<String> {
    let text = r.text(node, "`prometheus`")?;
    if !(text.starts_with("http://") || text.starts_with("https://")) {
        r.error(
            Code::BadValue,
            node.pos,
            format!("`{text}` is not an http(s) URL"),
        )
        .len(text.chars().count())
        .hint(format!("write `http://{text}`"));
        return None;
    }
    Some(text.trim_end_matches('/').to_string())
}

fn track(r: &mut Reader<'_>, node: &Node, what: &str, needs_address: bool) -> Option<Track> {
    let f = r.map(node, what, &["version", "address"])?;
    let version = r.required(&f, "version", what, "version: v2", |r, n| {
        let v = r.text(n, &format!("{what}.version"))?;
        if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
            r.error(
                Code::BadValue,
                n.pos,
                format!("{what}.version must be 1–128 printable characters"),
            );
            return None;
        }
        Some(v)
    });
    let address = match f.get("address") {
        Some(n) => Some(address(r, n, &format!("{what}.address"))?),
        None if needs_address => {
            r.missing(&f, "address", what, "address: 127.0.0.1:9002");
            return None;
        }
        None => None,
    };
    Some(Track {
        version: version?,
        address,
    })
}

/// `host:port`.
fn address(r: &mut Reader<'_>, node: &Node, what: &str) -> Option<String> {
    let text = r.text(node, what)?;
    let ok = text
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !ok {
        r.error(
            Code::BadValue,
            node.pos,
            format!("{what} `{text}` is not `host:port`"),
        )
        .len(text.chars().count())
        .hint("write it like `127.0.0.1:9002` or `checkout-canary:8080`");
        return None;
    }
    Some(text)
}

const ROUTER_KINDS: [&str; 5] = [
    "builtin",
    "haproxy",
    "gateway-api",
    "smi",
    "kubernetes-replicas",
];

fn read_router(r: &mut Reader<'_>, node: &Node) -> Option<RouterSpec> {
    let f = r.any_map(node, "`router`")?;
    let kind_node = match f.get("kind") {
        Some(k) => k,
        None => {
            r.missing(&f, "kind", "`router`", "kind: builtin");
            return None;
        }
    };
    let kind = r.text(kind_node, "`router.kind`")?;
    let allowed: &[&str] = match kind.as_str() {
        "builtin" => &["kind", "listen"],
        "haproxy" => &[
            "kind",
            "socket",
            "backend",
            "stable_server",
            "canary_server",
        ],
        "gateway-api" => &["kind", "route", "stable_backend", "canary_backend"],
        "smi" => &[
            "kind",
            "traffic_split",
            "root_service",
            "stable_backend",
            "canary_backend",
        ],
        "kubernetes-replicas" => &["kind", "replicas"],
        other => {
            let hint = suggest(other, ROUTER_KINDS, || {
                format!("router kinds: {}", ROUTER_KINDS.join(", "))
            });
            r.error(
                Code::BadValue,
                kind_node.pos,
                format!("unknown router kind `{other}`"),
            )
            .len(other.chars().count())
            .hint(hint);
            return None;
        }
    };
    let what = format!("a `{kind}` router");
    let f = r.map(node, &what, allowed)?;
    let text = |r: &mut Reader<'_>, f: &Fields<'_>, key: &str, example: &str| {
        r.required(f, key, &what, example, |r, n| {
            r.text(n, &format!("`router.{key}`"))
        })
    };
    Some(match kind.as_str() {
        "builtin" => {
            let listen = text(r, &f, "listen", "listen: 127.0.0.1:8080")?;
            if listen.parse::<SocketAddr>().is_err() {
                let n = f.get("listen")?;
                r.error(
                    Code::BadValue,
                    n.pos,
                    format!("`{listen}` is not an `ip:port` to listen on"),
                )
                .len(listen.chars().count())
                .hint("write it like `127.0.0.1:8080` or `0.0.0.0:8080`");
                return None;
            }
            RouterSpec::Builtin { listen }
        }
        "haproxy" => {
            let socket = text(r, &f, "socket", "socket: /run/haproxy/admin.sock");
            let backend = text(r, &f, "backend", "backend: checkout");
            let stable_server = match f.get("stable_server") {
                Some(n) => r.text(n, "`router.stable_server`"),
                None => Some("stable".into()),
            };
            let canary_server = match f.get("canary_server") {
                Some(n) => r.text(n, "`router.canary_server`"),
                None => Some("canary".into()),
            };
            RouterSpec::Haproxy {
                socket: socket?,
                backend: backend?,
                stable_server: stable_server?,
                canary_server: canary_server?,
            }
        }
        "gateway-api" => {
            let route = text(r, &f, "route", "route: checkout");
            let stable_backend = text(r, &f, "stable_backend", "stable_backend: checkout-stable");
            let canary_backend = text(r, &f, "canary_backend", "canary_backend: checkout-canary");
            RouterSpec::GatewayApi {
                route: route?,
                stable_backend: stable_backend?,
                canary_backend: canary_backend?,
            }
        }
        "smi" => {
            let traffic_split = text(r, &f, "traffic_split", "traffic_split: checkout");
            let root_service = text(r, &f, "root_service", "root_service: checkout");
            let stable_backend = text(r, &f, "stable_backend", "stable_backend: checkout-primary");
            let canary_backend = text(r, &f, "canary_backend", "canary_backend: checkout-canary");
            RouterSpec::Smi {
                traffic_split: traffic_split?,
                root_service: root_service?,
                stable_backend: stable_backend?,
                canary_backend: canary_backend?,
            }
        }
        _ => {
            let replicas = r.required(&f, "replicas", &what, "replicas: 10", |r, n| {
                r.count(n, "`router.replicas`", 2, 10_000)
            })?;
            RouterSpec::KubernetesReplicas {
                replicas: u32::try_from(replicas).ok()?,
            }
        }
    })
}

const SINKS: [&str; 5] = ["slack", "teams", "discord", "google_chat", "webhook"];

fn read_alerts(r: &mut Reader<'_>, node: &Node) -> Option<Vec<AlertSink>> {
    let items = r.list(node, "`alerts`")?;
    let mut sinks = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        match read_sink(r, item) {
            Some(s) => sinks.push(s),
            None => ok = false,
        }
    }
    ok.then_some(sinks)
}

fn read_sink(r: &mut Reader<'_>, node: &Node) -> Option<AlertSink> {
    let f = r.any_map(node, "an alert")?;
    let [(key, body)] = f.entries() else {
        r.error(Code::WrongType, node.pos, "each alert names one sink")
            .hint("write `- slack: { webhook_env: SLACK_WEBHOOK_URL }`");
        return None;
    };
    let kind = match key.name.as_str() {
        "slack" => SinkKind::Slack,
        "teams" => SinkKind::Teams,
        "discord" => SinkKind::Discord,
        "google_chat" => SinkKind::GoogleChat,
        "webhook" => SinkKind::Webhook,
        other => {
            let hint = suggest(other, SINKS, || format!("sinks: {}", SINKS.join(", ")));
            r.error(
                Code::UnknownKey,
                key.pos,
                format!("unknown alert sink `{other}`"),
            )
            .len(other.chars().count())
            .hint(hint);
            return None;
        }
    };
    let what = format!("the `{}` alert", key.name);
    let allowed: &[&str] = match kind {
        SinkKind::Webhook => &[
            "webhook_env",
            "webhook_file",
            "secret_env",
            "secret_file",
            "severity",
        ],
        _ => &["webhook_env", "webhook_file", "severity"],
    };
    let f = r.map(body, &what, allowed)?;
    let webhook = secret(r, &f, "webhook", &what, true)?;
    let secret = secret(r, &f, "secret", &what, false);
    let min_severity = match f.get("severity") {
        // Absent or empty (`severity:`) means info.
        None => AlertSeverity::Info,
        Some(n) if matches!(n.value, crate::spec::yaml::Value::Null) => AlertSeverity::Info,
        Some(n) => match r.text(n, "`severity`")?.as_str() {
            "" | "info" => AlertSeverity::Info,
            "warn" | "warning" => AlertSeverity::Warn,
            "error" => AlertSeverity::Error,
            other => {
                r.error(Code::BadValue, n.pos, format!("unknown severity `{other}`"))
                    .len(other.chars().count())
                    .hint("severities: info, warn, error");
                return None;
            }
        },
    };
    Some(AlertSink {
        kind,
        webhook,
        secret,
        min_severity,
    })
}

/// `<prefix>_env` or `<prefix>_file`, exactly one of them.
fn secret(
    r: &mut Reader<'_>,
    f: &Fields<'_>,
    prefix: &str,
    what: &str,
    required: bool,
) -> Option<SecretRef> {
    let env_key = format!("{prefix}_env");
    let file_key = format!("{prefix}_file");
    match (f.get(&env_key), f.get(&file_key)) {
        (Some(n), None) => r.text(n, &format!("`{env_key}`")).map(SecretRef::Env),
        (None, Some(n)) => r.text(n, &format!("`{file_key}`")).map(SecretRef::File),
        (Some(_), Some(n)) => {
            r.error(
                Code::BadValue,
                n.pos,
                format!("{what} has both `{env_key}` and `{file_key}`"),
            )
            .hint("keep one");
            None
        }
        (None, None) => {
            if required {
                r.error(Code::MissingKey, f.pos, format!("{what} has no `{env_key}`"))
                    .hint(format!("add `{env_key}: SLACK_WEBHOOK_URL` (the URL stays out of the file), or `{file_key}: /run/secrets/url`"));
            }
            None
        }
    }
}
