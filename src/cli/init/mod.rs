//! `canaryd init`: writes a deploy file for a service that works on first
//! run. It asks Prometheus which policy's metrics the service exports and
//! for which versions, proposes thresholds from the stable version's current
//! values (printed with the values they came from), and writes the seed's
//! strategy (5% → 50% → 100%, promotion gates on step 1, `rollback.on`),
//! checked by the same decoder as `canaryd validate`.
//!
//! Interactive when stdin is a terminal (each missing setting is asked, with
//! a default); `--yes` (or no terminal) takes the defaults and fails on what
//! has none. An existing file is replaced only with `--force`.

mod probe;
mod propose;
mod render;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::provider::{PrometheusSource, ProviderConfig, redact_url};
use crate::spec::decode::decode;
use crate::spec::load::load_policies;
use crate::spec::policy::{Policy, PolicySet, Unit};
use crate::spec::units::format_duration;

use probe::{Found, Probe};
use render::{Measured, Plan, RouterChoice};

/// The environment variable naming Prometheus (as for `canaryd check`).
const PROMETHEUS_ENV: &str = "CANARYD_PROMETHEUS_URL";

/// The router written into the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum RouterKind {
    /// canaryd's built-in reverse proxy.
    #[default]
    Builtin,
    /// HAProxy through its Runtime API socket.
    Haproxy,
}

/// `canaryd init`'s arguments.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The service (the rollout's name; the `service` label of its metrics).
    #[arg(long)]
    pub service: Option<String>,
    /// Its namespace (`default` when not given).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Prometheus to ask, also written into the file.
    #[arg(long, env = PROMETHEUS_ENV)]
    pub prometheus: Option<String>,
    /// Use this policy instead of the one detected.
    #[arg(long)]
    pub policy: Option<String>,
    /// The version serving traffic now (default: the one with the most requests).
    #[arg(long)]
    pub stable_version: Option<String>,
    /// The version to roll out (default: the other version with traffic, else the stable one: idle).
    #[arg(long)]
    pub canary_version: Option<String>,
    /// How far back the current values are measured.
    #[arg(long, default_value = "30m", value_parser = super::duration)]
    pub window: Duration,
    /// The router.
    #[arg(long, value_enum, default_value_t)]
    pub router: RouterKind,
    /// Where the built-in router listens (default 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<String>,
    /// `host:port` of the stable version (default: its scrape target, for http-red).
    #[arg(long)]
    pub stable_address: Option<String>,
    /// `host:port` of the canary version (default: its scrape target, for http-red).
    #[arg(long)]
    pub canary_address: Option<String>,
    /// HAProxy's Runtime API socket (path or `host:port`).
    #[arg(long)]
    pub haproxy_socket: Option<String>,
    /// The HAProxy backend holding both servers.
    #[arg(long)]
    pub haproxy_backend: Option<String>,
    /// HAProxy server of the stable version.
    #[arg(long, default_value = "stable")]
    pub stable_server: String,
    /// HAProxy server of the canary version.
    #[arg(long, default_value = "canary")]
    pub canary_server: String,
    /// Where to write the file (`-` for stdout; default `deploy/<service>.yaml`).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Replace the output file when it exists.
    #[arg(long)]
    pub force: bool,
    /// Take every default without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// A directory of extra metric policies (`*.yaml`).
    #[arg(long, env = "CANARYD_POLICY_DIR")]
    pub policies: Option<PathBuf>,
}

/// Why no file was written.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The output file exists.
    #[error("{0} exists; pass --force to replace it")]
    Exists(String),
    /// A setting with no default was not given.
    #[error("{what} is needed: pass {flag}")]
    Missing {
        /// What it is.
        what: &'static str,
        /// The flag.
        flag: &'static str,
    },
    /// Prometheus could not answer.
    #[error("{0}")]
    Prometheus(String),
    /// No policy's metrics have traffic for the service.
    #[error("{0}")]
    NoData(String),
    /// The file would not validate.
    #[error("the file would not validate:\n{0}")]
    Invalid(String),
    /// Reading the terminal or writing the file failed.
    #[error("{0}")]
    Io(String),
}

/// Asks on the terminal, or takes the default.
struct Asker {
    interactive: bool,
}

impl Asker {
    /// The answer (the default on an empty line), or the default without a terminal.
    fn ask(&self, question: &str, default: Option<&str>) -> Result<Option<String>, InitError> {
        if !self.interactive {
            return Ok(default.map(str::to_string));
        }
        let shown = default.map_or_else(String::new, |d| format!(" [{d}]"));
        eprint!("{question}{shown}: ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| InitError::Io(format!("cannot read the answer: {e}")))?;
        let answer = line.trim();
        Ok(if answer.is_empty() {
            default.map(str::to_string)
        } else {
            Some(answer.to_string())
        })
    }

    /// `given`, else the answer, else `Missing`.
    fn need(
        &self,
        given: Option<String>,
        question: &str,
        default: Option<&str>,
        what: &'static str,
        flag: &'static str,
    ) -> Result<String, InitError> {
        match given {
            Some(v) => Ok(v),
            None => self
                .ask(question, default)?
                .ok_or(InitError::Missing { what, flag }),
        }
    }
}

/// Runs the command: 0 written, 1 not.
pub fn run(args: Box<InitArgs>) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| InitError::Io(e.to_string()))
        .and_then(|rt| rt.block_on(init(*args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn init(args: InitArgs) -> Result<(), InitError> {
    let asker = Asker {
        interactive: !args.yes && std::io::stdin().is_terminal(),
    };
    let service = asker.need(
        args.service.clone(),
        "Service (its metrics' `service` label)",
        None,
        "the service",
        "--service",
    )?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("deploy").join(format!("{service}.yaml")));
    let to_stdout = output.as_os_str() == "-";
    if !to_stdout && output.exists() && !args.force {
        return Err(InitError::Exists(output.display().to_string()));
    }
    let server = asker.need(
        args.prometheus.clone(),
        "Prometheus URL",
        Some("http://127.0.0.1:9090"),
        "Prometheus",
        "--prometheus URL",
    )?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let (policies, _) = load_policies(super::policy_dir(args.policies.as_deref()));

    let source = PrometheusSource::new(ProviderConfig::default())
        .map_err(|e| InitError::Io(e.to_string()))?;
    let probe = Probe::new(source, &server, &service, &namespace, args.window);
    println!(
        "Prometheus {} — service {service} — the last {}",
        redact_url(&server),
        format_duration(args.window)
    );
    let (policy, found) = detect(&probe, &policies, args.policy.as_deref()).await?;

    let (versions, instances) = match &found {
        Found::Versions { seen, .. } => (
            seen.iter().map(|s| s.version.clone()).collect::<Vec<_>>(),
            seen.iter()
                .map(|s| (s.version.clone(), s.instances.first().cloned()))
                .collect::<Vec<_>>(),
        ),
        Found::Tracks { .. } => (Vec::new(), Vec::new()),
    };
    let stable = asker.need(
        args.stable_version.clone(),
        "Stable version (serving traffic now)",
        versions.first().map(String::as_str),
        "the stable version (the policy's metrics do not name versions)",
        "--stable-version",
    )?;
    let other = versions.iter().find(|v| **v != stable).cloned();
    let canary = match args.canary_version.clone() {
        Some(c) => c,
        None => asker
            .ask(
                "Canary version (the one to roll out; the stable one: idle for now)",
                Some(other.as_deref().unwrap_or(&stable)),
            )?
            .unwrap_or_else(|| stable.clone()),
    };
    // The sample app and any app serving its own /metrics is scraped at its address.
    let address_of = |v: &str| {
        (policy.name == "http-red")
            .then(|| {
                instances
                    .iter()
                    .find(|(ver, _)| ver == v)
                    .and_then(|(_, i)| i.clone())
            })
            .flatten()
    };
    let router = match args.router {
        RouterKind::Builtin => RouterChoice::Builtin {
            listen: asker.need(
                args.listen.clone(),
                "Router listen address",
                Some("127.0.0.1:8080"),
                "the router's address",
                "--listen",
            )?,
        },
        RouterKind::Haproxy => RouterChoice::Haproxy {
            socket: asker.need(
                args.haproxy_socket.clone(),
                "HAProxy Runtime API socket",
                Some("/run/haproxy/admin.sock"),
                "the HAProxy socket",
                "--haproxy-socket",
            )?,
            backend: asker.need(
                args.haproxy_backend.clone(),
                "HAProxy backend",
                Some(&service),
                "the HAProxy backend",
                "--haproxy-backend",
            )?,
            stable_server: args.stable_server.clone(),
            canary_server: args.canary_server.clone(),
        },
    };
    let needs_address = matches!(router, RouterChoice::Builtin { .. });
    let stable_default = address_of(&stable);
    let canary_default = address_of(&canary);
    let stable_address = match (needs_address, args.stable_address.clone()) {
        (_, Some(a)) => Some(a),
        (true, None) => Some(asker.need(
            None,
            "Stable address (host:port)",
            stable_default.as_deref(),
            "the stable version's address",
            "--stable-address",
        )?),
        (false, None) => None,
    };
    let canary_address = match (needs_address, args.canary_address.clone()) {
        (_, Some(a)) => Some(a),
        (true, None) => Some(asker.need(
            None,
            "Canary address (host:port)",
            canary_default.as_deref(),
            "the canary version's address (where the new version listens)",
            "--canary-address",
        )?),
        (false, None) => None,
    };

    let measured = measure(&probe, policy, &stable).await?;
    let plan = Plan {
        service: service.clone(),
        namespace: args.namespace.clone(),
        policy: policy.name.clone(),
        found: found.clone(),
        prometheus: server.trim_end_matches('/').to_string(),
        window: args.window,
        router,
        stable: (stable, stable_address),
        canary: (canary, canary_address),
        measured,
    };
    print!("{}", plan.summary());
    let text = plan.file();
    let shown = output.display().to_string();
    let decoded = decode(&shown, &text, &policies);
    if decoded.spec.is_none() {
        let rendered: Vec<String> = decoded
            .diagnostics
            .iter()
            .map(|d| d.render(Some(&text)))
            .collect();
        return Err(InitError::Invalid(rendered.join("\n")));
    }
    if to_stdout {
        print!("{text}");
        return Ok(());
    }
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| InitError::Io(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(&output, &text)
        .map_err(|e| InitError::Io(format!("cannot write {shown}: {e}")))?;
    println!("wrote {shown} (valid); `canaryd check {shown}` measures its gates now");
    Ok(())
}

/// The policy to use and what it found: the given one, else the one whose
/// metrics show the most traffic (version-labelled policies first).
async fn detect<'p>(
    probe: &Probe,
    policies: &'p PolicySet,
    given: Option<&str>,
) -> Result<(&'p Policy, Found), InitError> {
    let names: Vec<&str> = match given {
        Some(name) => vec![name],
        None => policies.names().collect(),
    };
    let mut best: Option<(&Policy, Found)> = None;
    for name in names {
        let policy = policies.get(name).ok_or_else(|| {
            InitError::NoData(format!(
                "no policy named `{name}` (installed: {})",
                policies.names().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let found = probe
            .discover(policy)
            .await
            .map_err(InitError::Prometheus)?;
        match &found {
            Some(Found::Versions { label, seen }) => {
                let list: Vec<String> = seen
                    .iter()
                    .map(|s| format!("{} ({:.0} requests)", s.version, s.requests))
                    .collect();
                println!("  policy {name}: {label} {}", list.join(", "));
            }
            Some(Found::Tracks { stable, canary }) => {
                println!(
                    "  policy {name}: stable track {stable:.0} requests, canary track {canary:.0}"
                );
            }
            None => println!("  policy {name}: no traffic"),
        }
        let Some(found) = found else { continue };
        let rank = |f: &Found| (matches!(f, Found::Versions { .. }), f.requests());
        let better = best.as_ref().is_none_or(|(_, b)| rank(&found) > rank(b));
        if better {
            best = Some((policy, found));
        }
    }
    best.ok_or_else(|| {
        InitError::NoData(format!(
            "no policy's metrics show traffic for service `{}` in the last {}: is Prometheus scraping it, and is `{}` its `service` label? (a longer --window, or --policy NAME)",
            probe.service,
            format_duration(probe.window),
            probe.service
        ))
    })
}

/// The stable version's request count, error rate and p99 in the window.
async fn measure(probe: &Probe, policy: &Policy, stable: &str) -> Result<Measured, InitError> {
    let requests = probe
        .requests(policy, stable, "stable")
        .await
        .map_err(InitError::Prometheus)?;
    if requests <= 0.0 {
        return Err(InitError::NoData(format!(
            "the stable version `{stable}` served no requests in the last {}: its current values cannot be measured",
            format_duration(probe.window)
        )));
    }
    let error_rate = probe
        .measure(policy, "error_rate", stable)
        .await
        .map_err(InitError::Prometheus)?;
    let p99 = probe
        .measure(policy, "latency_p99", stable)
        .await
        .map_err(InitError::Prometheus)?;
    let shown = |metric: &str, v: Option<f64>, unit: Unit| match v {
        Some(v) => format!("{metric} {}", unit.format(v)),
        None => format!("{metric}: no data"),
    };
    println!(
        "stable {stable} now: {} requests, {}, {}",
        requests.round(),
        shown("error rate", error_rate, Unit::Ratio),
        shown("p99", p99, Unit::Seconds)
    );
    Ok(Measured {
        requests,
        error_rate,
        p99,
    })
}
