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
//! * The directory is watched (inotify, through `notify`): a look with no
//!   reported change lists nothing and reads nothing. Every
//!   [`RESCAN_EVERY`] the whole directory is read again, and whenever the
//!   watcher loses events; without a watcher, every look lists the directory
//!   and reads only files whose metadata moved.

mod scan;
mod watch;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use self::scan::{Found, Plan, Read, Stamp};
use self::watch::Watch;
use crate::engine::Timestamp;
use crate::ports::{SpecEvent, SpecMemory, SpecSource, SpecSourceError};
use crate::spec::decode::decode;
use crate::spec::diagnostic::{Code, Diagnostic};
use crate::spec::model::{DeploySpec, RolloutId};
use crate::spec::policy::PolicySet;
use crate::spec::yaml::Pos;

/// How often every file is read again even with a working watcher: the
/// content hash is the truth, and an edit that kept its metadata (or one the
/// OS did not report, e.g. through a symlink's target elsewhere) shows by then.
pub const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// How the directory learns of changes.
enum Watching {
    /// Never: every look lists the directory.
    Off,
    /// Wanted but not running (not started yet, failed, or broken): looks
    /// list the directory until a start at the next full rescan works.
    Wanted,
    /// Running.
    On(Watch),
}

/// What the looks did so far, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LookCounts {
    /// Directory listings.
    pub listings: u64,
    /// Files read.
    pub reads: u64,
}

/// The watched directory.
pub struct DeployDir {
    dir: PathBuf,
    policies: PolicySet,
    memory: Arc<dyn SpecMemory>,
    /// Each file's content hash as last seen.
    seen: HashMap<PathBuf, u64>,
    /// Each file's metadata stamp as last read (`None`: read it again).
    stamps: HashMap<PathBuf, Option<Stamp>>,
    /// The rollout each accepted file declares.
    declares: HashMap<PathBuf, RolloutId>,
    /// The file declaring each rollout.
    owner: HashMap<RolloutId, PathBuf>,
    /// Whether the first look was taken (last good versions apply only then).
    started: bool,
    watching: Watching,
    /// Whether a watcher that would not start was logged already.
    warned: bool,
    /// Files to read on the next look whatever they look like (a retry).
    pending: BTreeSet<PathBuf>,
    rescan_every: Duration,
    last_rescan: Option<Instant>,
    counts: LookCounts,
}

fn origin(path: &Path) -> String {
    path.display().to_string()
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
            seen: HashMap::new(),
            stamps: HashMap::new(),
            declares: HashMap::new(),
            owner: HashMap::new(),
            started: false,
            watching: Watching::Wanted,
            warned: false,
            pending: BTreeSet::new(),
            rescan_every: RESCAN_EVERY,
            last_rescan: None,
            counts: LookCounts::default(),
        }
    }

    /// Never watches: every look lists the directory (what happens anyway
    /// when the OS refuses a watcher).
    pub fn without_watcher(mut self) -> DeployDir {
        self.watching = Watching::Off;
        self
    }

    /// Reads every file again this often (default [`RESCAN_EVERY`]).
    pub fn rescan_every(mut self, every: Duration) -> DeployDir {
        self.rescan_every = every;
        self
    }

    /// Whether the OS reports changes now (else every look lists the directory).
    pub fn watching(&self) -> bool {
        matches!(self.watching, Watching::On(_))
    }

    /// What the looks did so far.
    pub fn counts(&self) -> LookCounts {
        self.counts
    }

    /// What to look at now, starting the watcher when a full rescan is due.
    fn plan(&mut self) -> Plan {
        let now = Instant::now();
        let due = self
            .last_rescan
            .is_none_or(|at| now.duration_since(at) >= self.rescan_every);
        if due {
            self.last_rescan = Some(now);
            if matches!(self.watching, Watching::Wanted) {
                // Started before the listing below: nothing falls between.
                match Watch::start(&self.dir) {
                    Ok(w) => self.watching = Watching::On(w),
                    Err(e) if !self.warned => {
                        self.warned = true;
                        tracing::warn!(dir = %self.dir.display(), error = %e, "cannot watch the deploy directory; listing it on every look instead");
                    }
                    Err(e) => {
                        tracing::debug!(dir = %self.dir.display(), error = %e, "cannot watch the deploy directory yet")
                    }
                }
            }
        }
        let mut plan = Plan {
            list: due,
            force: due,
            paths: std::mem::take(&mut self.pending),
        };
        match &self.watching {
            Watching::On(w) => {
                let reported = w.drain();
                plan.paths.extend(reported.paths);
                plan.list |= reported.list || reported.rescan;
                plan.force |= reported.rescan;
                if reported.broken {
                    tracing::info!(dir = %self.dir.display(), "the deploy directory's watch ended; watching it again");
                    self.watching = Watching::Wanted;
                    // Retry the watch on the next look.
                    self.last_rescan = None;
                }
            }
            Watching::Off | Watching::Wanted => plan.list = true,
        }
        plan
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
        let plan = self.plan();
        if !plan.list && plan.paths.is_empty() {
            return Ok(Vec::new());
        }
        let dir = self.dir.clone();
        let stamps = std::mem::take(&mut self.stamps);
        let looked = tokio::task::spawn_blocking(move || {
            let outcome = scan::look(&dir, &plan, &stamps);
            (outcome, stamps)
        })
        .await;
        let outcome = match looked {
            Ok((outcome, stamps)) => {
                self.stamps = stamps;
                outcome.map_err(|e| e.to_string())
            }
            // The stamps are lost with the task: every file is read again.
            Err(e) => Err(e.to_string()),
        }
        .map_err(|message| SpecSourceError {
            what: format!("deploy directory {}", self.dir.display()),
            message,
        })?;
        self.counts.reads += outcome.reads;
        if outcome.listed {
            self.counts.listings += 1;
        }
        let mut events = Vec::new();
        // Files gone since the last look: their rollouts, unless another
        // file of this look declares them (a rename).
        let gone: Vec<PathBuf> = if outcome.listed {
            self.seen
                .keys()
                .filter(|p| !outcome.found.contains_key(*p))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let mut removed = Vec::new();
        for path in gone {
            self.seen.remove(&path);
            self.stamps.remove(&path);
            if let Some(id) = self.declares.remove(&path)
                && self.owner.get(&id) == Some(&path)
            {
                self.owner.remove(&id);
                removed.push((id, path));
            }
        }
        for (path, found) in &outcome.found {
            let Found::Read(read, stamp) = found else {
                continue;
            };
            self.stamps.insert(path.clone(), *stamp);
            let hash = read.hash();
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
            self.pending.insert(path);
        }
    }
}
