//! The daemon seen through its HTTP API: start-up to `/readyz`, a hot
//! reload's latency, a command's latency while ticks run, and whether every
//! rollout was measured and decided on.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::exporter::service;
use crate::fleet::{deploy_file, file_name};
use crate::procs::{Proc, TOKEN};

/// Seconds from `spawned` until `/readyz` answers 200 (bounded by `limit`).
pub async fn ready_after(
    http: &reqwest::Client,
    api: &str,
    daemon: &mut Proc,
    spawned: Instant,
    limit: Duration,
) -> Result<f64, String> {
    let url = format!("{api}/readyz");
    loop {
        if let Ok(r) = http.get(&url).send().await
            && r.status() == reqwest::StatusCode::OK
        {
            return Ok(spawned.elapsed().as_secs_f64());
        }
        if daemon.exited() {
            return Err("canaryd exited before it was ready (see canaryd.log)".into());
        }
        if spawned.elapsed() > limit {
            return Err(format!("canaryd not ready after {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One rollout as the API shows it.
pub async fn rollout(http: &reqwest::Client, api: &str, i: usize) -> Result<Value, String> {
    let url = format!("{api}/api/v1/rollouts/default/{}", service(i));
    http.get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("{url}: {e}"))
}

/// The first step's duration the API shows (seconds).
fn first_step_seconds(r: &Value) -> Option<f64> {
    r["plan"][0]["duration_seconds"].as_f64()
}

/// Rewrites rollout 0's first step `times` times (61m, 62m, …) and returns
/// the milliseconds from each write until the API shows it.
pub async fn reloads(
    http: &reqwest::Client,
    api: &str,
    deploy: &Path,
    socket: &Path,
    interval: Duration,
    times: u64,
) -> Result<Vec<f64>, String> {
    let mut out = Vec::new();
    for k in 1..=times {
        let minutes = 60 + k;
        let path = deploy.join(file_name(0));
        let written = Instant::now();
        std::fs::write(&path, deploy_file(0, socket, interval, minutes))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let want = (minutes * 60) as f64;
        loop {
            let r = rollout(http, api, 0).await?;
            if first_step_seconds(&r) == Some(want) {
                out.push(written.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            if written.elapsed() > Duration::from_secs(120) {
                return Err(format!("reload not shown after 120 s: {r}"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(out)
}

/// POSTs pause then resume on rollout `i`, again and again for `span` (every
/// 100 ms, so many land while a tick runs), and returns each command's
/// milliseconds and the answers that were not 2xx (a refusal, e.g. 409 for a
/// rollout not yet started, is still an answer from the controller).
pub async fn commands(
    http: &reqwest::Client,
    api: &str,
    i: usize,
    span: Duration,
) -> Result<(Vec<f64>, Vec<String>), String> {
    let base = format!("{api}/api/v1/rollouts/default/{}", service(i));
    let started = Instant::now();
    let mut out = Vec::new();
    let mut refused = Vec::new();
    while started.elapsed() < span {
        for command in ["pause", "resume"] {
            let sent = Instant::now();
            let r = http
                .post(format!("{base}/{command}"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .map_err(|e| format!("{command}: {e}"))?;
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            out.push(sent.elapsed().as_secs_f64() * 1000.0);
            if !status.is_success() {
                refused.push(format!("{command} answered {status}: {body}"));
            }
            // Pacing: a person's command now and then, not a flood.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok((out, refused))
}

/// What the list shows.
#[derive(Debug, Default)]
pub struct Census {
    /// The body's size.
    pub bytes: usize,
    /// Rollouts listed.
    pub listed: usize,
    /// Rollouts with a last decision.
    pub decided: usize,
    /// Rollouts measured (gates with a verdict).
    pub measured: usize,
    /// Rollouts per phase.
    pub phases: BTreeMap<String, usize>,
}

/// The list's (with `query`) first page's body size, and over every page
/// (following `continue`; an old daemon answers one page): how many
/// rollouts it shows, how many have a last decision, and how many have been
/// measured (gates with a verdict).
pub async fn census(http: &reqwest::Client, api: &str, query: &str) -> Result<Census, String> {
    let mut list: Vec<Value> = Vec::new();
    let mut first_bytes = None;
    let mut next: Option<String> = None;
    loop {
        let url = match &next {
            None => format!("{api}/api/v1/rollouts{query}"),
            Some(token) => {
                let sep = if query.contains('?') { '&' } else { '?' };
                format!("{api}/api/v1/rollouts{query}{sep}continue={token}")
            }
        };
        let body = http
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .bytes()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        first_bytes.get_or_insert(body.len());
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))?;
        list.extend(v["rollouts"].as_array().cloned().unwrap_or_default());
        match v["continue"].as_str() {
            Some(token) if next.as_deref() != Some(token) => next = Some(token.to_string()),
            _ => break,
        }
    }
    let decided = list
        .iter()
        .filter(|r| !r["last_decision"].is_null())
        .count();
    let measured = list
        .iter()
        .filter(|r| r["gates"].as_array().is_some_and(|g| !g.is_empty()))
        .count();
    let mut phases = BTreeMap::new();
    for r in &list {
        *phases
            .entry(r["phase"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    Ok(Census {
        bytes: first_bytes.unwrap_or_default(),
        listed: list.len(),
        decided,
        measured,
        phases,
    })
}
