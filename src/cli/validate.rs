//! `canaryd validate FILE…`: every problem of every file, then exit 1 if any is an error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

use super::Output;
use crate::spec::diagnostic::Diagnostic;
use crate::spec::load::{LoadedFile, load_deploy_files, load_policies};

#[derive(Serialize)]
struct FileReport<'a> {
    file: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    rollout: Option<String>,
    diagnostics: &'a [Diagnostic],
}

#[derive(Serialize)]
struct Report<'a> {
    valid: bool,
    files: Vec<FileReport<'a>>,
}

/// Runs the command.
pub fn run(paths: &[PathBuf], policy_dir: Option<&Path>, output: Output) -> ExitCode {
    let (policies, policy_problems) = load_policies(super::policy_dir(policy_dir));
    let files = load_deploy_files(paths, &policies);
    let valid = policy_problems.is_empty() && files.iter().all(LoadedFile::is_valid);
    // Each file's diagnostics, with the warnings about latency thresholds
    // its policy's default histogram bounds judge coarsely, in file order.
    let diagnostics: Vec<Vec<Diagnostic>> = files
        .iter()
        .map(|f| {
            let mut all = f.decoded.diagnostics.clone();
            if let (Some(spec), true) = (&f.decoded.spec, f.is_valid()) {
                all.extend(super::latency_bounds::declared(
                    &f.display(),
                    &f.text,
                    spec,
                    &policies,
                ));
                all.extend(super::grouping::declared(
                    &f.display(),
                    &f.text,
                    spec,
                    &policies,
                ));
                all.sort_by_key(|d| (d.line, d.column));
            }
            all
        })
        .collect();

    let mut out = std::io::stdout().lock();
    let written = match output {
        Output::Json => {
            let mut reports: Vec<FileReport<'_>> = policy_problems
                .iter()
                .map(|(path, _, diags)| FileReport {
                    file: path.display().to_string(),
                    valid: false,
                    rollout: None,
                    diagnostics: diags,
                })
                .collect();
            reports.extend(files.iter().zip(&diagnostics).map(|(f, d)| FileReport {
                file: f.display(),
                valid: f.is_valid(),
                rollout: f.decoded.spec.as_ref().map(|s| s.id.to_string()),
                diagnostics: d,
            }));
            serde_json::to_writer_pretty(
                &mut out,
                &Report {
                    valid,
                    files: reports,
                },
            )
            .map_err(std::io::Error::other)
            .and_then(|()| writeln!(out))
        }
        Output::Text => write_text(&mut out, &policy_problems, &files, &diagnostics),
    };
    if written.is_err() {
        return ExitCode::from(2);
    }
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn write_text(
    out: &mut impl Write,
    policy_problems: &[(PathBuf, String, Vec<Diagnostic>)],
    files: &[LoadedFile],
    diagnostics: &[Vec<Diagnostic>],
) -> std::io::Result<()> {
    for (path, text, diags) in policy_problems {
        for d in diags {
            writeln!(out, "{}", d.render(Some(text)))?;
        }
        writeln!(out, "error: policy {}: {}", path.display(), count(diags))?;
    }
    for (f, diags) in files.iter().zip(diagnostics) {
        for d in diags {
            writeln!(out, "{}", d.render(Some(&f.text)))?;
        }
        match &f.decoded.spec {
            Some(spec) => {
                let s = &spec.strategy;
                let gates: usize = s.steps.iter().map(|st| st.gates.len()).sum();
                writeln!(
                    out,
                    "ok: {} — rollout {}: {} steps ({}), {} promotion gates, {} abort conditions",
                    f.display(),
                    spec.id,
                    s.steps.len(),
                    s.steps
                        .iter()
                        .map(|st| st.weight.to_string())
                        .collect::<Vec<_>>()
                        .join(" → "),
                    gates,
                    s.rollback.on.len()
                )?;
            }
            None => writeln!(
                out,
                "error: {}: {}",
                f.display(),
                count(&f.decoded.diagnostics)
            )?,
        }
    }
    Ok(())
}

fn count(diags: &[Diagnostic]) -> String {
    let errors = diags.iter().filter(|d| d.is_error()).count();
    let warnings = diags.len() - errors;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    match warnings {
        0 => plural(errors, "error"),
        w => format!("{}, {}", plural(errors, "error"), plural(w, "warning")),
    }
}
