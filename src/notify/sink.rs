//! Where alerts go: the sinks of a rollout (its deploy file's plus the
//! daemon-wide defaults), each sink's stable key, and reading a sink's URL
//! and signing secret from the environment or a file at send time.

use serde::{Deserialize, Serialize};

use super::NotifyError;
use crate::spec::model::{AlertSeverity, AlertSink, SecretRef, SinkKind};

/// A stable name for a sink that never contains a secret:
/// `slack:env:SLACK_WEBHOOK_URL`. Deliveries to one key go out in order.
pub fn sink_key(sink: &AlertSink) -> String {
    format!(
        "{}:{}",
        kind_name(sink.kind),
        secret_ref_name(&sink.webhook)
    )
}

/// The sink's kind as written in deploy files (`google_chat`).
pub fn kind_name(kind: SinkKind) -> &'static str {
    match kind {
        SinkKind::Slack => "slack",
        SinkKind::Teams => "teams",
        SinkKind::Discord => "discord",
        SinkKind::GoogleChat => "google_chat",
        SinkKind::Webhook => "webhook",
    }
}

/// `env:NAME` or `file:PATH`: where a secret is read, not the secret.
pub fn secret_ref_name(r: &SecretRef) -> String {
    match r {
        SecretRef::Env(name) => format!("env:{name}"),
        SecretRef::File(path) => format!("file:{path}"),
    }
}

/// The sinks that receive an alert of `severity` about a rollout whose file
/// lists `own`, given the daemon-wide `defaults`; one per key, file first.
pub fn sinks_for<'a>(
    own: &'a [AlertSink],
    defaults: &'a [AlertSink],
    severity: AlertSeverity,
) -> Vec<&'a AlertSink> {
    // One per key first (the file's own wins), then its severity decides.
    let mut unique: Vec<&AlertSink> = Vec::new();
    for s in own.iter().chain(defaults) {
        if !unique.iter().any(|o| sink_key(o) == sink_key(s)) {
            unique.push(s);
        }
    }
    unique.retain(|s| severity >= s.min_severity);
    unique
}

/// Reads a secret now. Errors name where it was looked for, never a value.
pub fn read_secret(what: &'static str, r: &SecretRef) -> Result<String, NotifyError> {
    let value = match r {
        SecretRef::Env(name) => std::env::var(name).map_err(|_| NotifyError::Secret {
            what,
            source_name: secret_ref_name(r),
            problem: "is not set".into(),
        })?,
        SecretRef::File(path) => {
            std::fs::read_to_string(path).map_err(|e| NotifyError::Secret {
                what,
                source_name: secret_ref_name(r),
                problem: format!("cannot be read: {}", e.kind()),
            })?
        }
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(NotifyError::Secret {
            what,
            source_name: secret_ref_name(r),
            problem: "is empty".into(),
        });
    }
    Ok(value)
}

/// A daemon-wide default sink as written in the config file, the same keys
/// as a deploy file's `alerts:` entry: `{slack: {webhook_env: VAR}}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkConfig {
    /// Slack incoming webhook.
    Slack(SinkFields),
    /// Microsoft Teams workflow webhook.
    Teams(SinkFields),
    /// Discord webhook.
    Discord(SinkFields),
    /// Google Chat webhook.
    GoogleChat(SinkFields),
    /// Generic signed webhook.
    Webhook(SinkFields),
}

/// The keys of one sink.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SinkFields {
    /// Environment variable holding the URL.
    pub webhook_env: Option<String>,
    /// File holding the URL.
    pub webhook_file: Option<String>,
    /// Environment variable holding the signing secret (webhook).
    pub secret_env: Option<String>,
    /// File holding the signing secret (webhook).
    pub secret_file: Option<String>,
    /// `info` (default, also when empty), `warn` or `error`.
    pub severity: Option<String>,
}

impl SinkConfig {
    /// The checked sink, or what is wrong with it.
    pub fn resolve(&self) -> Result<AlertSink, String> {
        let (kind, f) = match self {
            SinkConfig::Slack(f) => (SinkKind::Slack, f),
            SinkConfig::Teams(f) => (SinkKind::Teams, f),
            SinkConfig::Discord(f) => (SinkKind::Discord, f),
            SinkConfig::GoogleChat(f) => (SinkKind::GoogleChat, f),
            SinkConfig::Webhook(f) => (SinkKind::Webhook, f),
        };
        let name = kind_name(kind);
        let one = |env: &Option<String>, file: &Option<String>, prefix: &str| match (env, file) {
            (Some(e), None) => Ok(Some(SecretRef::Env(e.clone()))),
            (None, Some(p)) => Ok(Some(SecretRef::File(p.clone()))),
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(format!(
                "alerts: the `{name}` sink has both `{prefix}_env` and `{prefix}_file`; keep one"
            )),
        };
        let webhook = one(&f.webhook_env, &f.webhook_file, "webhook")?.ok_or_else(|| {
            format!("alerts: the `{name}` sink has no `webhook_env` (or `webhook_file`)")
        })?;
        let secret = one(&f.secret_env, &f.secret_file, "secret")?;
        if secret.is_some() && kind != SinkKind::Webhook {
            return Err(format!(
                "alerts: only `webhook` sinks are signed; remove the secret from `{name}`"
            ));
        }
        let min_severity = match f.severity.as_deref().unwrap_or("") {
            "" | "info" => AlertSeverity::Info,
            "warn" | "warning" => AlertSeverity::Warn,
            "error" => AlertSeverity::Error,
            other => {
                return Err(format!(
                    "alerts: unknown severity `{other}` (info, warn, error)"
                ));
            }
        };
        Ok(AlertSink {
            kind,
            webhook,
            secret,
            min_severity,
        })
    }
}
