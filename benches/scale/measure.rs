//! What the runner reads from outside the daemon: a process's CPU time, RSS
//! and open descriptors from `/proc`, samples from a Prometheus-format
//! `/metrics` page, and `wrk`'s latency distribution.

use std::process::Stdio;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// User plus system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name may hold spaces: fields count from after its `)`.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("a malformed /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let field = |n: usize| -> Result<f64, String> {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or(format!("no field {n} in /proc/{pid}/stat"))
    };
    Ok((field(14)? + field(15)?) / ticks)
}

/// Resident memory in MB.
pub fn rss_mb(pid: u32) -> Result<f64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .ok_or("no VmRSS".into())
}

/// Open file descriptors.
pub fn fds(pid: u32) -> Result<usize, String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .map_err(|e| format!("/proc/{pid}/fd: {e}"))
}

/// A `/metrics` page.
pub async fn scrape(http: &reqwest::Client, url: &str) -> Result<String, String> {
    http.get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?
        .text()
        .await
        .map_err(|e| format!("{url}: {e}"))
}

/// The sum of the samples named `name` whose labels contain every one of
/// `labels` (`handler="/api/v1/query"`).
pub fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let rest = series.strip_prefix(name)?;
            if !(rest.is_empty() || rest.starts_with('{')) {
                return None;
            }
            if !labels.iter().all(|want| rest.contains(want)) {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

/// A histogram's cumulative buckets: (upper bound, count), by bound.
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    buckets_with(text, name, &[])
}

/// The cumulative buckets of the series of histogram `name` whose labels
/// contain every one of `labels` (`work="Decide"`).
pub fn buckets_with(text: &str, name: &str, labels: &[&str]) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket{{");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&bucket)?;
            if !labels.iter().all(|want| rest.contains(want)) {
                return None;
            }
            let le = rest.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let value = l.rsplit_once(' ')?.1.parse().ok()?;
            Some((le, value))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// The smallest bucket bound holding every observation made between two
/// readings of the histogram: the largest observation is at most this
/// (infinite: above the largest finite bound, `top_bound`).
pub fn max_bound(before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let total = after.last()?.1 - before.last().map_or(0.0, |b| b.1);
    if total <= 0.0 {
        return None;
    }
    after.iter().find_map(|(le, count)| {
        let was = before.iter().find(|(b, _)| b == le).map_or(0.0, |b| b.1);
        (count - was >= total).then_some(*le)
    })
}

/// A histogram's largest finite bucket bound.
pub fn top_bound(buckets: &[(f64, f64)]) -> Option<f64> {
    buckets
        .iter()
        .map(|b| b.0)
        .filter(|b| b.is_finite())
        .reduce(f64::max)
}

/// One `wrk` run's figures.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Wrk {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests_per_second: f64,
    pub errors: u64,
    pub body_bytes: usize,
}

/// `wrk -c16 -t2 -d<secs>s --latency` on `url`.
pub async fn wrk(url: &str, secs: u64, body_bytes: usize) -> Result<Wrk, String> {
    let out = tokio::process::Command::new("wrk")
        .args([
            "-c16",
            "-t2",
            &format!("-d{secs}s"),
            "--latency",
            "--timeout",
            "30s",
        ])
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run wrk (apt-get install -y wrk): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text, body_bytes).ok_or(format!("wrk said: {text}"))
}

fn parse_wrk(text: &str, body_bytes: usize) -> Option<Wrk> {
    let mut w = Wrk {
        body_bytes,
        ..Wrk::default()
    };
    let mut seen = 0;
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("50%"), Some(v)) => {
                w.p50_ms = millis(v)?;
                seen += 1;
            }
            (Some("99%"), Some(v)) => {
                w.p99_ms = millis(v)?;
                seen += 1;
            }
            (Some("Requests/sec:"), Some(v)) => w.requests_per_second = v.parse().ok()?,
            _ => {}
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            w.errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
        if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            w.errors += rest.trim().parse::<u64>().unwrap_or(0);
        }
    }
    (seen == 2).then_some(w)
}

/// `1.23ms`, `456.00us`, `1.50s`, `2.00m` in milliseconds.
fn millis(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// p50, p99 and max of `samples` (milliseconds).
pub fn quantiles(samples: &mut [f64]) -> (f64, f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), samples[samples.len() - 1])
}
