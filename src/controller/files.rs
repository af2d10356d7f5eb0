//! The deploy directory, watched by scanning: every `*.yaml`/`*.yml` file
//! whose content changed since the last scan is decoded with the validator.
//! A broken file is reported with the `validate` errors and changes nothing.

use std::collections::BTreeMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::spec::decode::decode;
use crate::spec::diagnostic::Diagnostic;
use crate::spec::model::DeploySpec;
use crate::spec::policy::PolicySet;

/// What changed in the directory.
#[derive(Debug)]
pub enum FileEvent {
    /// A new or edited file that is valid.
    Changed {
        /// The file.
        path: PathBuf,
        /// Its spec.
        spec: Box<DeploySpec>,
        /// Its text (remembered as the last good version).
        text: String,
        /// Warnings (`no_data: ignore`…), rendered.
        warnings: Vec<String>,
    },
    /// A new or edited file that is not valid.
    Rejected {
        /// The file.
        path: PathBuf,
        /// Every error, rendered as `validate` prints them.
        report: String,
    },
    /// A file that is gone.
    Removed {
        /// The file.
        path: PathBuf,
    },
}

/// The scanned directory and the content hash of each file last seen.
pub struct DeployDir {
    dir: PathBuf,
    seen: BTreeMap<PathBuf, u64>,
}

fn is_deploy_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml")
}

impl DeployDir {
    /// A directory not scanned yet.
    pub fn new(dir: impl Into<PathBuf>) -> DeployDir {
        DeployDir {
            dir: dir.into(),
            seen: BTreeMap::new(),
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Forgets a file, so the next scan reads it again (its content was fine
    /// but it could not be applied, e.g. its router's port was in use).
    pub fn forget(&mut self, path: &Path) {
        self.seen.remove(path);
    }

    /// The files that changed since the last scan, in name order.
    pub fn scan(&mut self, policies: &PolicySet) -> std::io::Result<Vec<FileEvent>> {
        let mut present: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| is_deploy_file(p) && p.is_file())
            .collect();
        present.sort();
        // Removals first: a renamed file is a removal and an addition, and the
        // rollout must be free when its new file claims it.
        let mut events = Vec::new();
        let gone: Vec<PathBuf> = self
            .seen
            .keys()
            .filter(|p| !present.contains(p))
            .cloned()
            .collect();
        for path in gone {
            self.seen.remove(&path);
            events.push(FileEvent::Removed { path });
        }
        for path in &present {
            // A file being written may vanish or be half there: next scan.
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            let mut h = DefaultHasher::new();
            text.hash(&mut h);
            let hash = h.finish();
            if self.seen.get(path) == Some(&hash) {
                continue;
            }
            self.seen.insert(path.clone(), hash);
            let file = path.display().to_string();
            let decoded = decode(&file, &text, policies);
            let errors: Vec<&Diagnostic> = decoded
                .diagnostics
                .iter()
                .filter(|d| d.is_error())
                .collect();
            match decoded.spec {
                Some(spec) if errors.is_empty() => events.push(FileEvent::Changed {
                    path: path.clone(),
                    spec: Box::new(spec),
                    text: text.clone(),
                    warnings: decoded
                        .diagnostics
                        .iter()
                        .map(|d| d.render(Some(&text)))
                        .collect(),
                }),
                _ => events.push(FileEvent::Rejected {
                    path: path.clone(),
                    report: errors
                        .iter()
                        .map(|d| d.render(Some(&text)))
                        .collect::<Vec<_>>()
                        .join("\n"),
                }),
            }
        }
        Ok(events)
    }
}
