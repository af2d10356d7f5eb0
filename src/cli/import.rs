//! `canaryd import argo|flagger FILE [--template FILE]… [-o OUT]`: a peer's
//! canary resource as a deploy file; what did not map goes to stderr (and
//! into the file's header), each with its line.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, ValueEnum};

use crate::import::{Source, Tool, import};
use crate::spec::decode::decode;
use crate::spec::load::load_policies;

/// Which tool's resource to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum From {
    /// An Argo Rollouts `Rollout` (and its `AnalysisTemplate`s).
    Argo,
    /// A Flagger `Canary` (and its `MetricTemplate`s).
    Flagger,
}

/// `canaryd import`'s arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The tool the resource comes from.
    #[arg(value_enum)]
    pub from: From,
    /// The file holding the `Rollout` or `Canary` (templates may follow in it, `---`-separated).
    pub file: PathBuf,
    /// A file of `AnalysisTemplate`s / `MetricTemplate`s the resource references (repeatable).
    #[arg(short = 't', long = "template")]
    pub templates: Vec<PathBuf>,
    /// Where to write the deploy file (default: stdout).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Replace OUT when it exists.
    #[arg(long)]
    pub force: bool,
    /// A directory of extra metric policies, for the validation of the result.
    #[arg(long, env = "CANARYD_POLICY_DIR")]
    pub policies: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Source, String> {
    std::fs::read_to_string(path)
        .map(|text| Source {
            name: path.display().to_string(),
            text,
        })
        .map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Runs the command: 0 written, 1 not imported.
pub fn run(args: ImportArgs) -> ExitCode {
    match convert(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn convert(args: &ImportArgs) -> Result<(), String> {
    if let Some(out) = &args.output
        && out.exists()
        && !args.force
    {
        return Err(format!(
            "{} exists; pass --force to replace it",
            out.display()
        ));
    }
    let tool = match args.from {
        From::Argo => Tool::Argo,
        From::Flagger => Tool::Flagger,
    };
    let main = read(&args.file)?;
    let templates = args
        .templates
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let imported = import(tool, &main, &templates).map_err(|e| e.to_string())?;

    // The result must pass `canaryd validate`; if it does not, that is a
    // defect of the import, shown with the file rather than written.
    let (policies, _) = load_policies(super::policy_dir(args.policies.as_deref()));
    let shown = args
        .output
        .as_ref()
        .map_or_else(|| "<stdout>".to_string(), |p| p.display().to_string());
    let decoded = decode(&shown, &imported.text, &policies);
    let Some(spec) = decoded.spec else {
        let mut message = String::from("the imported file does not validate (please report it):\n");
        for d in &decoded.diagnostics {
            message.push_str(&d.render(Some(&imported.text)));
            message.push('\n');
        }
        message.push_str(&imported.text);
        return Err(message);
    };

    let mut err = std::io::stderr().lock();
    for note in &imported.notes {
        let _ = writeln!(err, "note: {note}");
    }
    match &args.output {
        Some(path) => std::fs::write(path, &imported.text)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(imported.text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| format!("cannot write to stdout: {e}"))?;
        }
    }
    let s = &spec.strategy;
    let weights: Vec<String> = s.steps.iter().map(|st| st.weight.to_string()).collect();
    let gates: usize = s.steps.iter().map(|st| st.gates.len()).sum();
    let _ = writeln!(
        err,
        "imported {} `{}` → {shown}: rollout {}, policy {}, {} steps ({}), {gates} promotion gates, {} abort conditions; {}",
        tool.kind(),
        imported.service,
        spec.id,
        spec.policy,
        s.steps.len(),
        weights.join(" → "),
        s.rollback.on.len(),
        match imported.notes.len() {
            0 => "everything mapped".to_string(),
            1 => "1 note above".to_string(),
            n => format!("{n} notes above"),
        },
    );
    Ok(())
}
