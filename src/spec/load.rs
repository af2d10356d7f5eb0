//! Reading deploy and policy files from disk: the only I/O of the spec layer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::decode::{Decoded, decode};
use super::diagnostic::{Code, Diagnostic};
use super::model::RolloutId;
use super::policy::{PolicySet, parse_policy};
use super::yaml::Pos;

/// A deploy file read from disk and decoded.
#[derive(Debug)]
pub struct LoadedFile {
    /// The path as given.
    pub path: PathBuf,
    /// The file's text (empty when unreadable), kept to quote lines in errors.
    pub text: String,
    /// The decoded spec and its diagnostics.
    pub decoded: Decoded,
}

impl LoadedFile {
    /// The path as shown in diagnostics.
    pub fn display(&self) -> String {
        self.path.display().to_string()
    }

    /// True when the file has no error.
    pub fn is_valid(&self) -> bool {
        self.decoded.spec.is_some() && !self.decoded.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// The shipped policies plus every `*.yaml` in `dir` (which replace shipped ones
/// of the same name). Broken policy files are reported and skipped.
pub fn load_policies(dir: Option<&Path>) -> (PolicySet, Vec<(PathBuf, String, Vec<Diagnostic>)>) {
    let mut set = PolicySet::builtin();
    let mut problems = Vec::new();
    let Some(dir) = dir else {
        return (set, problems);
    };
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_yaml(p))
            .collect(),
        Err(e) => {
            let file = dir.display().to_string();
            let d = Diagnostic::error(
                Code::Unreadable,
                &file,
                Pos::UNKNOWN,
                format!("cannot read policy directory: {e}"),
            );
            problems.push((dir.to_path_buf(), String::new(), vec![d]));
            return (set, problems);
        }
    };
    paths.sort();
    for path in paths {
        let file = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse_policy(&file, &text) {
                Ok(policy) => set.insert(policy),
                Err(diags) => problems.push((path, text, diags)),
            },
            Err(e) => {
                problems.push((path, String::new(), vec![unreadable(&file, &e)]));
            }
        }
    }
    (set, problems)
}

fn unreadable(file: &str, e: &std::io::Error) -> Diagnostic {
    Diagnostic::error(
        Code::Unreadable,
        file,
        Pos::UNKNOWN,
        format!("cannot read: {e}"),
    )
}

/// True for `.yaml` / `.yml` files.
pub fn is_yaml(path: &Path) -> bool {
    path.is_file()
        && matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        )
}

/// Reads and decodes deploy files, then reports rollouts declared by more than one.
pub fn load_deploy_files(paths: &[PathBuf], policies: &PolicySet) -> Vec<LoadedFile> {
    let mut files: Vec<LoadedFile> = paths
        .iter()
        .map(|path| {
            let file = path.display().to_string();
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let decoded = decode(&file, &text, policies);
                    LoadedFile {
                        path: path.clone(),
                        text,
                        decoded,
                    }
                }
                Err(e) => {
                    let decoded = Decoded {
                        spec: None,
                        diagnostics: vec![unreadable(&file, &e)],
                        name_pos: Pos::UNKNOWN,
                    };
                    LoadedFile {
                        path: path.clone(),
                        text: String::new(),
                        decoded,
                    }
                }
            }
        })
        .collect();
    report_duplicate_rollouts(&mut files);
    files
}

/// Marks every file after the first that declares an already declared rollout.
pub fn report_duplicate_rollouts(files: &mut [LoadedFile]) {
    let mut first: BTreeMap<RolloutId, (String, Pos)> = BTreeMap::new();
    for f in files.iter_mut() {
        let Some(spec) = &f.decoded.spec else {
            continue;
        };
        let id = spec.id.clone();
        let here = f.display();
        match first.get(&id) {
            Some((other, pos)) => {
                let d = Diagnostic::error(
                    Code::DuplicateRollout,
                    &here,
                    f.decoded.name_pos,
                    format!("rollout `{id}` is already declared in {other}:{}:{}", pos.line, pos.column),
                )
                .len(7)
                .hint("each rollout is declared in one file: rename the `service` or set another `namespace`");
                f.decoded.diagnostics.push(d);
                f.decoded.spec = None;
            }
            None => {
                first.insert(id, (here, f.decoded.name_pos));
            }
        }
    }
}
