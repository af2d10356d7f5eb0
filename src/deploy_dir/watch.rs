//! Learning which deploy files changed from the OS (inotify on Linux, through
//! `notify`), so a look with nothing new lists no directory and reads no file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use notify::event::ModifyKind;
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use super::scan::is_deploy_file;

/// What the watcher reported since the last drain.
#[derive(Default)]
pub(super) struct Reported {
    /// Deploy files created, written, moved or removed.
    pub paths: BTreeSet<PathBuf>,
    /// Something else changed in the directory (a temp file, a symlink swap,
    /// a subdirectory): list it, reading only files whose stamp moved.
    pub list: bool,
    /// Events were lost or the watch broke: read everything again.
    pub rescan: bool,
    /// The watch no longer works (the directory went away): make a new one.
    pub broken: bool,
}

/// A watch on one directory (not recursive).
pub(super) struct Watch {
    /// The directory as the deploy directory names it (its files' keys).
    dir: PathBuf,
    /// The directory as the watcher reports it (made absolute).
    reported_as: PathBuf,
    events: mpsc::Receiver<notify::Result<notify::Event>>,
    // Dropping it ends the watch.
    _watcher: RecommendedWatcher,
}

impl Watch {
    /// Starts watching `dir`: every change after this returns is reported.
    pub fn start(dir: &Path) -> notify::Result<Watch> {
        let reported_as = std::path::absolute(dir).map_err(notify::Error::io)?;
        let (tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(tx)?;
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        Ok(Watch {
            dir: dir.to_path_buf(),
            reported_as,
            events,
            _watcher: watcher,
        })
    }

    /// Everything reported since the last call (never blocks).
    pub fn drain(&self) -> Reported {
        let mut out = Reported::default();
        loop {
            match self.events.try_recv() {
                Ok(Ok(event)) => self.note(&event, &mut out),
                Ok(Err(e)) => {
                    tracing::debug!(dir = %self.dir.display(), error = %e, "deploy directory watch: error; rescanning");
                    out.rescan = true;
                }
                Err(mpsc::TryRecvError::Empty) => return out,
                Err(mpsc::TryRecvError::Disconnected) => {
                    out.rescan = true;
                    out.broken = true;
                    return out;
                }
            }
        }
    }

    fn note(&self, event: &notify::Event, out: &mut Reported) {
        if event.need_rescan() {
            out.rescan = true;
        }
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        for path in &event.paths {
            if path == &self.reported_as {
                // The directory itself was removed or moved: its watch is gone.
                if matches!(
                    event.kind,
                    EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
                ) {
                    out.rescan = true;
                    out.broken = true;
                }
                continue;
            }
            match path.file_name() {
                Some(name)
                    if is_deploy_file(path)
                        && path.parent() == Some(self.reported_as.as_path()) =>
                {
                    out.paths.insert(self.dir.join(name));
                }
                _ => out.list = true,
            }
        }
    }
}
