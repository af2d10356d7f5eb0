//! `canaryd sample-app` and `canaryd load`: the demo's service and traffic.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use super::duration;
use crate::sample::behaviour::parse_ratio;
use crate::sample::{Behaviour, LoadConfig, SampleApp, SampleAppConfig, load};

/// Flags of `canaryd sample-app`.
#[derive(Debug, clap::Args)]
pub struct AppArgs {
    /// The `service` label (use the rollout's name).
    #[arg(long, default_value = "checkout")]
    service: String,
    /// The `version` label (use the deploy file's `stable.version` or `canary.version`).
    #[arg(long)]
    version: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Share of requests answered with 500, as `5%` or `0.05`.
    #[arg(long, default_value = "0%", value_parser = parse_ratio)]
    error_rate: f64,
    /// Median latency.
    #[arg(long, default_value = "20ms", value_parser = duration)]
    latency_p50: Duration,
    /// 99th-percentile latency (log-normal in between).
    #[arg(long, default_value = "80ms", value_parser = duration)]
    latency_p99: Duration,
}

/// Flags of `canaryd load`.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// URL to send requests to (the router's listen address).
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    target: String,
    /// Requests per second (open loop: sent on time whatever the latency), 0.1–100000.
    #[arg(long, default_value_t = 50.0, value_parser = rps)]
    rps: f64,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = duration)]
    duration: Option<Duration>,
}

fn rps(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.1..=100_000.0).contains(&r) => Ok(r),
        _ => Err(format!(
            "`{text}` is not a rate between 0.1 and 100000 requests per second"
        )),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Serves the sample app until Ctrl-C.
pub fn run_app(args: AppArgs) -> ExitCode {
    let behaviour = Behaviour {
        error_rate: args.error_rate,
        latency_p50: args.latency_p50,
        latency_p99: args.latency_p99.max(args.latency_p50),
        ready: true,
    };
    let config = SampleAppConfig {
        service: args.service,
        version: args.version,
        listen: args.listen,
        behaviour,
    };
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let (service, version) = (config.service.clone(), config.version.clone());
            let app = SampleApp::start(config).await?;
            tracing::info!(%service, %version, addr = %app.addr(), "sample app listening; PUT /admin/behaviour changes it, /metrics exports http-red");
            let _ = tokio::signal::ctrl_c().await;
            app.stop().await
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: sample app: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sends load until Ctrl-C or `--duration`, then prints the counts.
pub fn run_load(args: LoadArgs) -> ExitCode {
    let result = runtime().and_then(|rt| {
        rt.block_on(async {
            let handle = load::spawn(LoadConfig::new(&args.target, args.rps))
                .map_err(std::io::Error::other)?;
            tracing::info!(target = %args.target, rps = args.rps, "sending load");
            match args.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            Ok::<_, std::io::Error>(handle.stop().await)
        })
    });
    match result {
        Ok(r) => {
            println!(
                "sent {} requests: {} ok, {} server errors, {} failed, {} dropped",
                r.sent, r.ok, r.server_errors, r.failed, r.dropped
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: load: {e}");
            ExitCode::FAILURE
        }
    }
}
