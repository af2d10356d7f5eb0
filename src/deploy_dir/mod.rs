//! The deploy directory, the standalone adapter of the
//! [`SpecSource`](crate::ports::SpecSource) port: every `*.yaml`/`*.yml`
//! file whose content changed since the last look is decoded with the
//! validator, and turned into events keyed by the rollout it declares.
//!
//! * A broken file is rejected with the `validate` errors; the rollout's
//!   previous spec keeps running. A file that cannot be read as UTF-8 text
//!   is rejected the same way, never skipped in silence.
//! * On the first look (the daemon starting), a broken file runs its last
//!   accepted version, remembered through the [`SpecMemory`] port.
//! * A renamed file (removed and added in the same look) keeps its rollout.
//! * A second file declaring a rollout already declared is rejected.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::engine::Timestamp;
use crate::ports::{SpecEvent, SpecMemory, SpecSource, SpecSourceError};
use crate::spec::decode::decode;
use crate::spec::diagnostic::{Code, Diagnostic};
use crate::spec::model::{DeploySpec, RolloutId};
use crate::spec::policy::PolicySet;
use crate::spec::yaml::Pos;

/// A deploy file as last read.
enum Read {
    /// Its text.
    Text(String),
    /// Why it cannot be read as text (not UTF-8, permissions…).
    Unreadable(String),
}

/// The watched directory.
pub struct DeployDir {
    dir: PathBuf,
    policies: PolicySet,
    memory: Arc<dyn SpecMemory>,
    /// Each file's content hash as last seen.
    seen: BTreeMap<PathBuf, u64>,
    /// The rollout each accepted file declares.
    declares: HashMap<PathBuf, RolloutId>,
    /// The file declaring each rollout.
    owner: HashMap<RolloutId, PathBuf>,
    /// Whether the first look was taken (last good versions apply only then).
    started: bool,
}

fn is_deploy_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml")
}

fn origin(path: &Path) -> String {
    path.display().to_string()
}

/// Lists the deploy files and reads each (blocking I/O, run off the runtime).
fn read_dir(dir: &Path) -> std::io::Result<BTreeMap<PathBuf, Read>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        let path = entry.path();
        if !is_deploy_file(&path) || !path.is_file() {
            continue;
        }
        let read = match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => Read::Text(text),
                Err(e) => Read::Unreadable(format!(
                    "cannot read: not UTF-8 text (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                )),
            },
            // Vanished between the listing and the read (a rename): next look.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => Read::Unreadable(format!("cannot read: {e}")),
        };
        files.insert(path, read);
    }
    Ok(files)
}

fn hash_of(read: &Read) -> u64 {
    let mut h = DefaultHasher::new();
    match read {
        Read::Text(t) => t.hash(&mut h),
        Read::Unreadable(why) => {
            0u8.hash(&mut h);
            why.hash(&mut h);
        }
    }
    h.finish()
}

impl DeployDir {
    /// A directory not looked at yet.
    pub fn new(
        dir: impl Into<PathBuf>,
        policies: PolicySet,
        memory: Arc<dyn SpecMemory>,
    ) -> DeployDir {
        DeployDir {
            dir: dir.into(),
            policies,
            memory,
            seen: BTreeMap::new(),
            declares: HashMap::new(),
            owner: HashMap::new(),
            started: false,
        }
    }

    /// Decodes `text`: the spec and its rendered warnings, or the rendered errors.
    fn decode(&self, path: &Path, text: &str) -> Result<(DeploySpec, Vec<String>), String> {
        let decoded = decode(&origin(path), text, &self.policies);
        let errors: Vec<&Diagnostic> = decoded
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .collect();
        match decoded.spec {
            Some(spec) if errors.is_empty() => Ok((
                spec,
                decoded
                    .diagnostics
                    .iter()
                    .map(|d| d.render(Some(text)))
                    .collect(),
            )),
            _ => Err(errors
                .iter()
                .map(|d| d.render(Some(text)))
                .collect::<Vec<_>>()
                .join("\n")),
        }
    }

    /// A valid spec from `path`: accepted unless another file declares its rollout.
    async fn accept(
        &mut self,
        path: &Path,
        spec: DeploySpec,
        warnings: Vec<String>,
        text: Option<&str>,
        events: &mut Vec<SpecEvent>,
    ) {
        let id = spec.id.clone();
        if let Some(other) = self.owner.get(&id).filter(|o| o.as_path() != path) {
            events.push(SpecEvent::Rejected {
                id: Some(id.clone()),
                origin: origin(path),
                report: format!(
                    "rollout {id} is already declared in {}; this file is ignored",
                    other.display()
                ),
            });
            return;
        }
        // The file used to declare another rollout (its `service` changed).
        if let Some(old) = self.declares.get(path).filter(|old| **old != id).cloned() {
            self.owner.remove(&old);
            events.push(SpecEvent::Removed {
                id: old,
                origin: origin(path),
            });
        }
        if let Some(text) = text
            && let Err(e) = self.memory.remember(&origin(path), text, now()).await
        {
            tracing::warn!(file = %path.display(), error = %e, "cannot remember the accepted file; a restart with a broken file would not run it");
        }
        self.declares.insert(path.to_path_buf(), id.clone());
        self.owner.insert(id, path.to_path_buf());
        events.push(SpecEvent::Changed {
            spec: Box::new(spec),
            origin: origin(path),
            warnings,
        });
    }

    /// A broken file: rejected; on the first look its last accepted version runs.
    async fn reject(&mut self, path: &Path, report: String, events: &mut Vec<SpecEvent>) {
        if !self.started && !self.declares.contains_key(path) {
            let remembered = self.memory.recall(&origin(path)).await.ok().flatten();
            if let Some(text) = remembered
                && let Ok((spec, mut warnings)) = self.decode(path, &text)
            {
                tracing::warn!(file = %path.display(), rollout = %spec.id, "the file is broken; running its last accepted version");
                warnings.push(format!(
                    "{}: the file is broken; running its last accepted version",
                    path.display()
                ));
                self.accept(path, spec, warnings, None, events).await;
            }
        }
        events.push(SpecEvent::Rejected {
            id: self.declares.get(path).cloned(),
            origin: origin(path),
            report,
        });
    }
}

fn now() -> Timestamp {
    Timestamp::from_system(std::time::SystemTime::now())
}

#[async_trait]
impl SpecSource for DeployDir {
    async fn changes(&mut self) -> Result<Vec<SpecEvent>, SpecSourceError> {
        let dir = self.dir.clone();
        let files = tokio::task::spawn_blocking(move || read_dir(&dir))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|message| SpecSourceError {
                what: format!("deploy directory {}", self.dir.display()),
                message,
            })?;
        let mut events = Vec::new();
        // Files gone since the last look: their rollouts, unless another
        // file of this look declares them (a rename).
        let gone: Vec<PathBuf> = self
            .seen
            .keys()
            .filter(|p| !files.contains_key(*p))
            .cloned()
            .collect();
        let mut removed = Vec::new();
        for path in gone {
            self.seen.remove(&path);
            if let Some(id) = self.declares.remove(&path)
                && self.owner.get(&id) == Some(&path)
            {
                self.owner.remove(&id);
                removed.push((id, path));
            }
        }
        for (path, read) in &files {
            let hash = hash_of(read);
            if self.seen.get(path) == Some(&hash) {
                continue;
            }
            self.seen.insert(path.clone(), hash);
            match read {
                Read::Text(text) => match self.decode(path, text) {
                    Ok((spec, warnings)) => {
                        self.accept(path, spec, warnings, Some(text), &mut events)
                            .await
                    }
                    Err(report) => self.reject(path, report, &mut events).await,
                },
                Read::Unreadable(why) => {
                    let report = Diagnostic::error(
                        Code::Unreadable,
                        &origin(path),
                        Pos::UNKNOWN,
                        why.clone(),
                    )
                    .render(None);
                    self.reject(path, report, &mut events).await;
                }
            }
        }
        let mut out: Vec<SpecEvent> = removed
            .into_iter()
            .filter(|(id, _)| !self.owner.contains_key(id))
            .map(|(id, path)| SpecEvent::Removed {
                id,
                origin: origin(&path),
            })
            .collect();
        out.extend(events);
        self.started = true;
        Ok(out)
    }

    fn retry(&mut self, id: &RolloutId) {
        if let Some(path) = self.owner.remove(id) {
            self.declares.remove(&path);
            self.seen.remove(&path);
        }
    }
}
