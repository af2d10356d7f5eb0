//! Looking at the deploy directory's files (blocking I/O, run off the
//! runtime): a file is read only when its metadata stamp moved or a read is
//! forced, so a look at an unchanged directory reads no file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A deploy file as last read.
pub(super) enum Read {
    /// Its text.
    Text(String),
    /// Why it cannot be read as text (not UTF-8, permissions…).
    Unreadable(String),
}

impl Read {
    /// The content hash: the truth about whether a file changed.
    pub(super) fn hash(&self) -> u64 {
        let mut h = DefaultHasher::new();
        match self {
            Read::Text(t) => t.hash(&mut h),
            Read::Unreadable(why) => {
                0u8.hash(&mut h);
                why.hash(&mut h);
            }
        }
        h.finish()
    }
}

/// A cheap first check of whether a file may have changed: any edit, rename
/// onto the path or `chmod` moves one of these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// A file modified this recently may be modified again within the clock's
/// granularity with the same size, leaving its stamp as it was (git's "racy
/// clean"): its stamp is not trusted, so the next looks read it again.
const RACY: Duration = Duration::from_secs(2);

/// What a look found at one path.
pub(super) enum Found {
    /// Its stamp did not move: not read.
    Unchanged,
    /// Read now; the stamp is taken before the read, so a later edit always
    /// moves it again.
    Read(Read, Option<Stamp>),
}

/// What to look at.
pub(super) struct Plan {
    /// List the directory (else only `paths` are looked at).
    pub list: bool,
    /// Read every file whatever its stamp (the periodic full rescan).
    pub force: bool,
    /// Paths to read whatever their stamp (a watcher reported them).
    pub paths: BTreeSet<PathBuf>,
}

/// The outcome of one look.
pub(super) struct Outcome {
    /// Every deploy file looked at and present.
    pub found: BTreeMap<PathBuf, Found>,
    /// Whether the whole directory was listed: known files missing from
    /// `found` are then gone.
    pub listed: bool,
    /// Files read.
    pub reads: u64,
}

/// Whether `path` names a deploy file (`*.yaml`, `*.yml`).
pub(super) fn is_deploy_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml")
}

/// Reads one file; `None` when it is not there (removed, renamed away).
fn read(path: &Path) -> Option<(Read, Option<Stamp>)> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => return Some((Read::Unreadable(format!("cannot read: {e}")), None)),
    };
    let meta = match file.metadata() {
        Ok(m) if !m.is_file() => return None,
        Ok(m) => m,
        Err(e) => return Some((Read::Unreadable(format!("cannot read: {e}")), None)),
    };
    let mut bytes = Vec::new();
    let read = match file.read_to_end(&mut bytes) {
        Ok(_) => match String::from_utf8(bytes) {
            Ok(text) => Read::Text(text),
            Err(e) => Read::Unreadable(format!(
                "cannot read: not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            )),
        },
        Err(e) => Read::Unreadable(format!("cannot read: {e}")),
    };
    let racy = meta
        .modified()
        .ok()
        .and_then(|at| SystemTime::now().duration_since(at).ok())
        .is_none_or(|age| age < RACY);
    Some((read, (!racy).then(|| Stamp::of(&meta))))
}

/// Looks at `dir` as `plan` says, against the stamps of the last look.
pub(super) fn look(
    dir: &Path,
    plan: &Plan,
    stamps: &HashMap<PathBuf, Option<Stamp>>,
) -> std::io::Result<Outcome> {
    let mut found = BTreeMap::new();
    let mut reads = 0;
    let mut list = plan.list;
    for path in &plan.paths {
        reads += 1;
        match read(path) {
            Some((r, stamp)) => {
                found.insert(path.clone(), Found::Read(r, stamp));
            }
            // A known file went away: list the directory, so a rename is
            // seen whole in this look, never as a removal first.
            None => list |= stamps.contains_key(path),
        }
    }
    if list {
        for entry in std::fs::read_dir(dir)?.filter_map(Result::ok) {
            let path = entry.path();
            if !is_deploy_file(&path) || found.contains_key(&path) {
                continue;
            }
            // Follows symbolic links, as the read does.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let known = stamps.get(&path).copied().flatten();
            if !plan.force && known == Some(Stamp::of(&meta)) {
                found.insert(path, Found::Unchanged);
                continue;
            }
            reads += 1;
            // Vanished between the listing and the read (a rename): next look.
            if let Some((r, stamp)) = read(&path) {
                found.insert(path, Found::Read(r, stamp));
            }
        }
    }
    Ok(Outcome {
        found,
        listed: list,
        reads,
    })
}
