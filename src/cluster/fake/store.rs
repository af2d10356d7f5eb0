//! The fake's state: objects with their field managers, one global
//! resourceVersion counter (like etcd's revision), the change history watches
//! resume from, and the open watches.

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::fields::{self, Manager, Scope};
use super::kinds::{KINDS, Kind};
use super::status::ApiError;
use super::watch::{EventType, Selector, line};

/// Changes kept for watches to resume from; older resourceVersions get 410.
const HISTORY: usize = 1_000;

/// An object's identity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjKey {
    /// Index in [`KINDS`].
    pub kind: usize,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// A stored object and who owns which of its fields.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The object without `managedFields`.
    pub object: Value,
    /// Field owners.
    pub managers: Vec<Manager>,
}

struct Change {
    rv: u64,
    key: ObjKey,
    kind: EventType,
    object: Value,
}

struct Watcher {
    kind: usize,
    namespace: Option<String>,
    selector: Selector,
    bookmarks: bool,
    tx: mpsc::UnboundedSender<Bytes>,
}

/// Everything the fake holds.
#[derive(Default)]
pub struct Store {
    rv: u64,
    uid: u64,
    objects: BTreeMap<ObjKey, Stored>,
    history: VecDeque<Change>,
    /// Watches from a resourceVersion below this one get 410 Gone.
    oldest: u64,
    watchers: Vec<Watcher>,
}

/// Now, as the API server writes times.
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

impl Store {
    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// A stored object.
    pub fn stored(&self, key: &ObjKey) -> Option<&Stored> {
        self.objects.get(key)
    }

    /// The object as the API server shows it (`managedFields` included).
    pub fn render(&self, key: &ObjKey) -> Option<Value> {
        self.objects.get(key).map(|s| render(&KINDS[key.kind], s))
    }

    /// Objects of a kind in a namespace (all namespaces for `None`) matching `selector`.
    pub fn list(&self, kind: usize, namespace: Option<&str>, selector: &Selector) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(k, _)| k.kind == kind && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(_, s)| render(&KINDS[kind], s))
            .filter(|o| selector.matches(o))
            .collect()
    }

    /// Writes `object` (and `managers`) under `key`, as a create or an update
    /// of `previous`: bumps `generation` when anything but metadata and status
    /// changed, bumps the resourceVersion unless nothing changed, and tells
    /// the watches. Returns the object as shown.
    pub fn commit(&mut self, key: &ObjKey, mut object: Value, managers: Vec<Manager>) -> Value {
        let kind = &KINDS[key.kind];
        let previous = self.objects.get(key);
        if let Some(prev) = previous {
            // Ownership changes are changes; a rewrite of the same values by
            // the same managers is not (no new resourceVersion, no event).
            if without_rv(&prev.object) == without_rv(&object)
                && same_owners(&prev.managers, &managers)
            {
                return render(kind, prev);
            }
            let generation = prev.object["metadata"]["generation"].as_i64();
            if let Some(g) = generation {
                let next = if spec_changed(kind, &prev.object, &object) {
                    g + 1
                } else {
                    g
                };
                object["metadata"]["generation"] = json!(next);
            }
        } else if kind.status_subresource || kind.custom {
            object["metadata"]["generation"] = json!(1);
        }
        let event = if previous.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let stored = Stored { object, managers };
        let shown = render(kind, &stored);
        self.objects.insert(key.clone(), stored);
        self.record(key, event, shown.clone());
        shown
    }

    /// Deletes an object and tells the watches.
    pub fn delete(&mut self, key: &ObjKey) -> Result<Value, ApiError> {
        let kind = &KINDS[key.kind];
        let stored = self
            .objects
            .remove(key)
            .ok_or_else(|| ApiError::not_found(kind.plural, &key.name))?;
        self.rv += 1;
        let mut shown = render(kind, &stored);
        shown["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(key, EventType::Deleted, shown.clone());
        Ok(shown)
    }

    /// A new uid.
    pub fn next_uid(&mut self) -> String {
        self.uid += 1;
        format!("00000000-0000-4000-8000-{:012x}", self.uid)
    }

    fn record(&mut self, key: &ObjKey, kind: EventType, object: Value) {
        self.broadcast(key, kind, &object);
        self.history.push_back(Change {
            rv: self.rv,
            key: key.clone(),
            kind,
            object,
        });
        while self.history.len() > HISTORY {
            if let Some(old) = self.history.pop_front() {
                self.oldest = old.rv;
            }
        }
    }

    fn broadcast(&mut self, key: &ObjKey, kind: EventType, object: &Value) {
        let bytes = line(kind, object);
        self.watchers.retain(|w| {
            let wanted = w.kind == key.kind
                && w.namespace.as_ref().is_none_or(|ns| *ns == key.namespace)
                && w.selector.matches(object);
            !wanted || w.tx.send(bytes.clone()).is_ok()
        });
    }

    /// Opens a watch. From `resource_version` (exclusive) the retained
    /// changes are replayed; without one (or `0`) every current object comes
    /// as ADDED first. A resourceVersion older than the history is answered
    /// with an ERROR event carrying 410 Gone, as the real server does.
    pub fn watch(
        &mut self,
        kind: usize,
        namespace: Option<String>,
        selector: Selector,
        resource_version: Option<u64>,
        bookmarks: bool,
        initial_events_end: bool,
    ) -> mpsc::UnboundedReceiver<Bytes> {
        let (tx, rx) = mpsc::unbounded_channel();
        let in_scope =
            |k: &ObjKey| k.kind == kind && namespace.as_ref().is_none_or(|ns| *ns == k.namespace);
        match resource_version.filter(|rv| *rv > 0) {
            Some(rv) if rv < self.oldest => {
                let gone = ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {rv} ({})", self.oldest),
                );
                let _ = tx.send(line(EventType::Error, &gone.to_status()));
                return rx;
            }
            Some(rv) => {
                for c in self
                    .history
                    .iter()
                    .filter(|c| c.rv > rv && in_scope(&c.key))
                {
                    if selector.matches(&c.object) {
                        let _ = tx.send(line(c.kind, &c.object));
                    }
                }
            }
            None => {
                for object in self.list(kind, namespace.as_deref(), &selector) {
                    let _ = tx.send(line(EventType::Added, &object));
                }
                if initial_events_end && bookmarks {
                    let mut mark = self.bookmark(kind);
                    mark["metadata"]["annotations"] =
                        json!({ "k8s.io/initial-events-end": "true" });
                    let _ = tx.send(line(EventType::Bookmark, &mark));
                }
            }
        }
        self.watchers.push(Watcher {
            kind,
            namespace,
            selector,
            bookmarks,
            tx,
        });
        rx
    }

    fn bookmark(&self, kind: usize) -> Value {
        let k = &KINDS[kind];
        json!({
            "apiVersion": k.api_version(),
            "kind": k.kind,
            "metadata": { "resourceVersion": self.rv.to_string() },
        })
    }

    /// Sends a BOOKMARK with the current resourceVersion to every watch that asked for them.
    pub fn send_bookmarks(&mut self) {
        let marks: Vec<(usize, Value)> = KINDS
            .iter()
            .enumerate()
            .map(|(i, _)| (i, self.bookmark(i)))
            .collect();
        self.watchers.retain(|w| {
            !w.bookmarks
                || w.tx
                    .send(line(EventType::Bookmark, &marks[w.kind].1))
                    .is_ok()
        });
    }

    /// Forgets the change history, as etcd compaction does: watches from any
    /// resourceVersion before now get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest = self.rv + 1;
    }

    /// Ends every open watch (their streams close, clients re-watch).
    pub fn close_watches(&mut self) {
        self.watchers.clear();
    }
}

/// The object with `managedFields`, `apiVersion` and `kind`.
fn render(kind: &Kind, stored: &Stored) -> Value {
    let mut object = stored.object.clone();
    object["apiVersion"] = json!(kind.api_version());
    object["kind"] = json!(kind.kind);
    if !stored.managers.is_empty() {
        object["metadata"]["managedFields"] =
            fields::managed_fields(&stored.managers, &kind.api_version());
    }
    object
}

fn same_owners(a: &[Manager], b: &[Manager]) -> bool {
    let key = |m: &Manager| (m.name.clone(), m.operation, m.status, m.fields.clone());
    a.len() == b.len() && a.iter().map(key).eq(b.iter().map(key))
}

fn without_rv(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(meta) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    o
}

/// Whether anything outside metadata (and status, for kinds with the subresource) changed.
fn spec_changed(kind: &Kind, old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(map) = v.as_object_mut() {
            map.remove("metadata");
            if kind.status_subresource {
                map.remove("status");
            }
        }
        v
    };
    strip(old) != strip(new)
}

/// The scope of a request on `kind`.
pub fn scope(kind: &Kind, status: bool) -> Scope {
    if status {
        Scope::Status
    } else {
        Scope::Main {
            status_subresource: kind.status_subresource,
        }
    }
}
