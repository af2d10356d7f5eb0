//! `canaryd run`: the daemon. Settings come from flags, then `CANARYD_*`
//! environment variables, then an optional config file (`--config`, YAML or
//! TOML), then defaults. The API token comes from `CANARYD_API_TOKEN` only
//! (never a flag: flags show in `ps`), and so does the read token
//! (`CANARYD_READ_TOKEN`).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::api::ReadAccess;
pub use crate::daemon::{DaemonConfig, serve};

/// Flags of `canaryd run`.
#[derive(Debug, Default, clap::Args)]
pub struct RunArgs {
    /// A config file (YAML or TOML) with the keys below, snake_case.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Directory of deploy files, watched for changes [env: CANARYD_DEPLOY_DIR] [default: deploy]
    #[arg(long)]
    pub deploy_dir: Option<PathBuf>,
    /// Address of the API and dashboard [env: CANARYD_LISTEN] [default: 127.0.0.1:9900]
    #[arg(long)]
    pub listen: Option<String>,
    /// SQLite state file [env: CANARYD_STATE] [default: canaryd.db]
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Prometheus for deploy files that name none [env: CANARYD_PROMETHEUS_URL]
    #[arg(long)]
    pub prometheus: Option<String>,
    /// Extra metric policies [env: CANARYD_POLICY_DIR]
    #[arg(long)]
    pub policies: Option<PathBuf>,
    /// Who may read the API, the dashboard and /metrics: anyone who can
    /// connect, or loopback peers only (others need CANARYD_READ_TOKEN or
    /// CANARYD_API_TOKEN) [env: CANARYD_READ_ACCESS] [default: open]
    #[arg(long, value_enum)]
    pub read_access: Option<ReadAccess>,
}

impl DaemonConfig {
    /// Merges defaults, the config file, `CANARYD_*` and the flags.
    pub fn load(args: &RunArgs) -> Result<DaemonConfig, String> {
        let defaults =
            config::Config::try_from(&DaemonConfig::default()).map_err(|e| e.to_string())?;
        let mut b = config::Config::builder().add_source(defaults);
        if let Some(file) = &args.config {
            b = b.add_source(config::File::from(file.as_path()).required(true));
        }
        b = b.add_source(config::Environment::with_prefix("CANARYD").try_parsing(false));
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        b = b
            .set_override_option("deploy_dir", path(&args.deploy_dir))
            .and_then(|b| b.set_override_option("listen", args.listen.clone()))
            .and_then(|b| b.set_override_option("state", path(&args.state)))
            .and_then(|b| b.set_override_option("prometheus_url", args.prometheus.clone()))
            .and_then(|b| b.set_override_option("policy_dir", path(&args.policies)))
            .and_then(|b| {
                b.set_override_option(
                    "read_access",
                    args.read_access.map(|r| match r {
                        ReadAccess::Open => "open",
                        ReadAccess::Loopback => "loopback",
                    }),
                )
            })
            .map_err(|e| e.to_string())?;
        b.build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| format!("configuration: {e}"))
    }
}

/// Runs the daemon until Ctrl-C or SIGTERM.
pub fn run(args: RunArgs) -> ExitCode {
    let config = match DaemonConfig::load(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("stopping");
}
