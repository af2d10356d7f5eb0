//! The command line (clap): one subcommand per job, each in its own module.

mod backtest;
mod check;
mod check_evidence;
mod control;
mod crd;
mod grouping;
mod import;
mod init;
mod latency_bounds;
pub mod run;
mod sample;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub use control::every_rollout;

/// canaryd: progressive delivery with automatic rollback, judged on Prometheus.
#[derive(Debug, Parser)]
#[command(name = "canaryd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats for commands that print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// For people.
    #[default]
    Text,
    /// For scripts.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check deploy files and report every problem with file:line:column and a hint.
    Validate {
        /// Deploy files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A directory of extra metric policies (`*.yaml`); the shipped ones are built in.
        #[arg(long, env = "CANARYD_POLICY_DIR")]
        policies: Option<PathBuf>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// Measure every gate of a deploy file once, now, on both tracks, against Prometheus.
    ///
    /// Prints value, threshold, verdict and the rendered PromQL of each gate.
    /// Exit 0 when every query returned data, 3 when some reading is
    /// inconclusive, 1 when the file is invalid.
    Check {
        /// The deploy file.
        file: PathBuf,
        /// Prometheus to ask, instead of the file's `prometheus:`
        /// (default: the file's, else $CANARYD_PROMETHEUS_URL).
        #[arg(long)]
        prometheus: Option<String>,
        /// A directory of extra metric policies (`*.yaml`).
        #[arg(long, env = "CANARYD_POLICY_DIR")]
        policies: Option<PathBuf>,
        /// How long each query may take.
        #[arg(long, default_value = "5s", value_parser = duration)]
        timeout: Duration,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value_t)]
        output: Output,
    },
    /// Replay a deploy file's strategy on recorded Prometheus history: would it have rolled back that release?
    ///
    /// Prints every decision the daemon would have taken, with its reason
    /// and evidence, then the outcome. Exit 0 promoted, 1 rolled back, 3
    /// still undecided at --to, 2 when it cannot run.
    Backtest(Box<backtest::BacktestArgs>),
    /// Run the daemon: watch the deploy directory, shift traffic, judge on Prometheus, roll back.
    Run(run::RunArgs),
    /// Show rollouts (a table, or `-o json`), from a running daemon's API.
    Status(control::StatusArgs),
    /// Pause a rollout (hold its weight).
    Pause(control::CommandArgs),
    /// Resume a paused rollout.
    Resume(control::CommandArgs),
    /// Promote now: skip the remaining steps.
    Promote(control::CommandArgs),
    /// Abort: all traffic back to stable.
    Abort(control::CommandArgs),
    /// Retry a rolled-back or aborted version from the first step.
    Retry(control::CommandArgs),
    /// For CD pipelines: follow a rollout until it ends; exit 0 promoted, 1 rolled back, 2 aborted.
    Wait(control::WaitArgs),
    /// The one-command local demo: sample apps, load, Prometheus and the daemon; a promotion, then a rollback.
    Demo {
        /// Where the dashboard and API listen (a free port if taken).
        #[arg(long, default_value = "127.0.0.1:9900")]
        api: std::net::SocketAddr,
        /// Exit after the scenario instead of waiting for Ctrl-C.
        #[arg(long)]
        exit: bool,
    },
    /// Write a deploy file for a service, with thresholds from its stable version's values on Prometheus.
    ///
    /// Detects the policy whose metrics the service exports and its
    /// versions, proposes gates from the stable version's current error
    /// rate and p99 (printed with the values they came from), and writes the
    /// seed-shaped strategy. Asks for what is missing when run in a terminal;
    /// `--yes` takes the defaults. Never replaces a file without `--force`.
    Init(Box<init::InitArgs>),
    /// Convert an Argo Rollouts `Rollout` or a Flagger `Canary` into a deploy file.
    ///
    /// Prints the deploy file (or writes it to -o OUT) and, on stderr, what
    /// did not map, each with its line in the input. Exit 0 when written, 1
    /// when nothing could be imported.
    Import(import::ImportArgs),
    /// Run the sample service of the demo and tests (exports the http-red metrics).
    SampleApp(sample::AppArgs),
    /// Send open-loop HTTP load at a fixed rate (the demo's traffic).
    Load(sample::LoadArgs),
    /// Print the Rollout CustomResourceDefinition (cluster mode) as YAML.
    Crd,
}

fn duration(text: &str) -> Result<Duration, String> {
    crate::spec::units::parse_duration(text).map_err(|e| e.to_string())
}

/// The policy directory: the flag, else `./policies` when it exists.
pub(crate) fn policy_dir(flag: Option<&Path>) -> Option<&Path> {
    let default_dir = Path::new("policies");
    flag.or_else(|| default_dir.is_dir().then_some(default_dir))
}

fn demo(options: crate::demo::DemoOptions) -> ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(crate::demo::run(options)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `CANARYD_LOG` filters them, `default` otherwise. A
/// log line that cannot be written (stderr on a full disk) is dropped: by
/// default the subscriber would report it with `eprintln!`, which panics
/// when stderr fails, and the daemon would exit (101) for want of a log.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CANARYD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .try_init();
}

/// Parses the command line and runs the command; the exit code says how it went.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate {
            files,
            policies,
            output,
        } => validate::run(&files, policies.as_deref(), output),
        Command::Check {
            file,
            prometheus,
            policies,
            timeout,
            output,
        } => check::run(&file, policies.as_deref(), prometheus, timeout, output),
        Command::Backtest(args) => backtest::run(*args),
        Command::Run(args) => {
            init_logging("info");
            run::run(args)
        }
        Command::Status(args) => control::status(args),
        Command::Pause(args) => control::command(crate::engine::Command::Pause, args),
        Command::Resume(args) => control::command(crate::engine::Command::Resume, args),
        Command::Promote(args) => control::command(crate::engine::Command::Promote, args),
        Command::Abort(args) => control::command(crate::engine::Command::Abort, args),
        Command::Retry(args) => control::command(crate::engine::Command::Retry, args),
        Command::Wait(args) => control::wait(args),
        Command::Demo { api, exit } => {
            // The demo prints its own story: only warnings are logged.
            init_logging("warn");
            demo(crate::demo::DemoOptions { api, exit })
        }
        Command::Import(args) => import::run(args),
        Command::Init(args) => init::run(args),
        Command::SampleApp(args) => {
            init_logging("info");
            sample::run_app(args)
        }
        Command::Load(args) => {
            init_logging("info");
            sample::run_load(args)
        }
        Command::Crd => crd::run(),
    }
}
