//! The command line (clap): one subcommand per job, each in its own module.

mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

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
    }
}
