//! The API's command-line clients: `status`, `pause|resume|promote|abort|retry`
//! and `wait` (for CD pipelines).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Output, duration};
use crate::engine::Command;

/// Where the daemon's API is.
#[derive(Debug, clap::Args)]
pub struct Server {
    /// The daemon's API.
    #[arg(long, env = "CANARYD_SERVER", default_value = "http://127.0.0.1:9900")]
    server: String,
}

/// Flags of `canaryd status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// One rollout (`name` or `namespace/name`); all when absent.
    name: Option<String>,
    /// Only rollouts in these phases (comma-separated: `Progressing,Paused`).
    #[arg(long, value_delimiter = ',')]
    phase: Vec<String>,
    /// Only rollouts in this namespace.
    #[arg(long)]
    namespace: Option<String>,
    #[command(flatten)]
    server: Server,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: Output,
}

/// Flags of the commands.
#[derive(Debug, clap::Args)]
pub struct CommandArgs {
    /// The rollout (`name` or `namespace/name`).
    name: String,
    #[command(flatten)]
    server: Server,
}

/// Flags of `canaryd wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The rollout (`name` or `namespace/name`).
    name: String,
    /// The canary version whose outcome to wait for (the one the pipeline deployed).
    #[arg(long)]
    version: String,
    /// Give up after this long (exit 3).
    #[arg(long, default_value = "1h", value_parser = duration)]
    timeout: Duration,
    #[command(flatten)]
    server: Server,
}

fn path(name: &str) -> String {
    match name.split_once('/') {
        Some((ns, n)) => format!("{ns}/{n}"),
        None => format!("default/{name}"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

async fn get(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot reach canaryd: {}", e.without_url()))?;
    let status = r.status();
    let body: Value = r.json().await.map_err(|e| e.without_url().to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(body["error"]["message"]
            .as_str()
            .unwrap_or("error")
            .to_string())
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// One rollout's line. In shadow mode the weight is the router's (the
/// team's split) and the last decision is what canaryd would have done.
fn row(r: &Value) -> [String; 8] {
    let last = &r["last_decision"];
    [
        format!("{}/{}", text(&r["namespace"]), text(&r["name"])),
        text(&r["phase"]),
        r["mode"].as_str().unwrap_or("active").to_string(),
        format!("{}/{}", text(&r["step"]), text(&r["steps"])),
        format!("{}%", text(&r["canary_weight"])),
        text(&r["stable_version"]),
        text(&r["canary_version"]),
        if last.is_null() {
            "-".into()
        } else {
            let by = match last["by"].as_str() {
                Some(name) => format!(" (by {name})"),
                None => String::new(),
            };
            format!("{}{by}: {}", text(&last["action"]), text(&last["reason"]))
        },
    ]
}

/// Rollouts `status` asks for per page (the API's maximum).
const PAGE: &str = "1000";

/// Every rollout matching the filters, page after page (following each
/// page's `continue` token until the last page, which has none): what
/// `canaryd status` shows.
pub async fn every_rollout(
    http: &reqwest::Client,
    base: &str,
    phases: &[String],
    namespace: Option<&str>,
) -> Result<Vec<Value>, String> {
    let mut url = reqwest::Url::parse(&format!("{base}/api/v1/rollouts"))
        .map_err(|e| format!("--server {base}: {e}"))?;
    url.query_pairs_mut().append_pair("limit", PAGE);
    if !phases.is_empty() {
        url.query_pairs_mut()
            .append_pair("phase", &phases.join(","));
    }
    if let Some(ns) = namespace {
        url.query_pairs_mut().append_pair("namespace", ns);
    }
    let mut rollouts = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut page_url = url.clone();
        if let Some(t) = &token {
            page_url.query_pairs_mut().append_pair("continue", t);
        }
        let mut page = get(http, page_url.as_str()).await?;
        if let Some(items) = page["rollouts"].as_array_mut() {
            rollouts.append(items);
        }
        match page["continue"].as_str() {
            Some(next) if token.as_deref() == Some(next) => {
                return Err("the API repeated a page's continue token".into());
            }
            Some(next) => token = Some(next.to_string()),
            None => return Ok(rollouts),
        }
    }
}

/// `canaryd status [NAME]`.
pub fn status(args: StatusArgs) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let http = reqwest::Client::new();
            let base = args.server.server.trim_end_matches('/');
            match &args.name {
                Some(name) => get(&http, &format!("{base}/api/v1/rollouts/{}", path(name)))
                    .await
                    .map(|r| vec![r]),
                None => every_rollout(&http, base, &args.phase, args.namespace.as_deref()).await,
            }
        })
    });
    let rollouts = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    let written = match args.output {
        Output::Json => serde_json::to_writer_pretty(&mut out, &rollouts)
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out)),
        Output::Text => {
            let mut lines = vec![
                [
                    "ROLLOUT",
                    "PHASE",
                    "MODE",
                    "STEP",
                    "WEIGHT",
                    "STABLE",
                    "CANARY",
                    "LAST DECISION",
                ]
                .map(String::from),
            ];
            lines.extend(rollouts.iter().map(row));
            let mut widths = [0usize; 8];
            for l in &lines {
                for (w, c) in widths.iter_mut().zip(l) {
                    *w = (*w).max(c.chars().count());
                }
            }
            lines.iter().try_for_each(|l| {
                let mut s = String::new();
                for (i, c) in l.iter().enumerate() {
                    s.push_str(&format!("{c:<w$}  ", w = widths[i]));
                }
                writeln!(out, "{}", s.trim_end())
            })
        }
    };
    if written.is_err() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// `canaryd pause|resume|promote|abort|retry NAME`.
pub fn command(command: Command, args: CommandArgs) -> ExitCode {
    let token = std::env::var("CANARYD_API_TOKEN").ok();
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let url = format!(
                "{}/api/v1/rollouts/{}/{command}",
                args.server.server.trim_end_matches('/'),
                path(&args.name)
            );
            let mut req = reqwest::Client::new().post(url);
            if let Some(t) = &token {
                req = req.bearer_auth(t);
            }
            let r = req
                .send()
                .await
                .map_err(|e| format!("cannot reach canaryd: {}", e.without_url()))?;
            let ok = r.status().is_success();
            let body: Value = r.json().await.map_err(|e| e.without_url().to_string())?;
            if ok {
                Ok(body)
            } else {
                Err(body["error"]["message"]
                    .as_str()
                    .unwrap_or("refused")
                    .to_string())
            }
        })
    });
    match result {
        Ok(r) => {
            let [name, phase, step, weight, ..] = row(&r);
            println!("{name}: {command} done — {phase}, step {step}, canary weight {weight}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {command} {}: {e}", args.name);
            if token.is_none() {
                eprintln!("hint: commands need the daemon's token in CANARYD_API_TOKEN");
            }
            ExitCode::FAILURE
        }
    }
}

/// `canaryd wait NAME`: prints each decision; exit 0 promoted, 1 rolled back, 2 aborted, 3 timeout.
pub fn wait(args: WaitArgs) -> ExitCode {
    let outcome = runtime().and_then(|rt| {
        rt.block_on(async {
            let http = reqwest::Client::new();
            let url = format!("{}/api/v1/rollouts/{}", args.server.server.trim_end_matches('/'), path(&args.name));
            let started = Instant::now();
            let mut last_seen = String::new();
            loop {
                match get(&http, &url).await {
                    Ok(r) => {
                        let line = {
                            let [name, phase, mode, step, weight, stable, canary, last] = row(&r);
                            let mode = if mode == "shadow" { " (shadow)" } else { "" };
                            format!("{name}: {phase}{mode} step {step} weight {weight} ({stable} → {canary}) — {last}")
                        };
                        if line != last_seen {
                            println!("{line}");
                            last_seen = line;
                        }
                        let version_matches = r["canary_version"] == args.version.as_str();
                        let phase = text(&r["phase"]);
                        if version_matches {
                            match phase.as_str() {
                                "Promoted" => return Ok(0u8),
                                "RolledBack" => return Ok(1),
                                "Aborted" => return Ok(2),
                                _ => {}
                            }
                        }
                    }
                    Err(e) => eprintln!("waiting: {e}"),
                }
                if started.elapsed() > args.timeout {
                    return Ok(3);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    });
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_names_the_token_that_issued_the_last_command() {
        let mut r = serde_json::json!({
            "namespace": "default", "name": "checkout", "phase": "Paused", "step": 2,
            "steps": 4, "canary_weight": 10, "stable_version": "v1", "canary_version": "v2",
            "last_decision": {"at": "2026-11-30T18:00:00Z", "action": "pause",
                "reason": "paused by hand", "by": "alice"}});
        assert_eq!(row(&r)[7], "pause (by alice): paused by hand");
        r["last_decision"]
            .as_object_mut()
            .expect("object")
            .remove("by");
        assert_eq!(row(&r)[7], "pause: paused by hand");
    }
}
