//! Pages of the rollout list: the filters a list request may carry, a page
//! as a range scan of the ordered map after the last key seen, and the
//! counts per phase the dashboard shows as filter chips.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};

use super::RolloutView;
use crate::engine::Phase;
use crate::spec::model::RolloutId;

/// Every phase, in the order counts are shown.
pub const PHASES: [Phase; 6] = [
    Phase::Idle,
    Phase::Progressing,
    Phase::Paused,
    Phase::Promoted,
    Phase::RolledBack,
    Phase::Aborted,
];

/// `phase`'s place in [`PHASES`] (exhaustive: a new phase must be listed).
fn slot(phase: Phase) -> usize {
    match phase {
        Phase::Idle => 0,
        Phase::Progressing => 1,
        Phase::Paused => 2,
        Phase::Promoted => 3,
        Phase::RolledBack => 4,
        Phase::Aborted => 5,
    }
}

/// How many rollouts are in each phase; serialized as `{"Idle": n, …}`
/// with every phase present.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PhaseCounts([usize; PHASES.len()]);

impl PhaseCounts {
    /// The count of one phase.
    pub fn get(&self, phase: Phase) -> usize {
        self.0[slot(phase)]
    }

    pub(super) fn add(&mut self, phase: Phase) {
        self.0[slot(phase)] += 1;
    }

    pub(super) fn sub(&mut self, phase: Phase) {
        let n = &mut self.0[slot(phase)];
        *n = n.saturating_sub(1);
    }
}

impl Serialize for PhaseCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(PHASES.len()))?;
        for phase in PHASES {
            map.serialize_entry(&phase, &self.get(phase))?;
        }
        map.end()
    }
}

/// Which rollouts a list request wants. Every field narrows; none set is all.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Only these phases (none: any phase).
    pub phases: Option<Vec<Phase>>,
    /// Only this namespace, exactly.
    pub namespace: Option<String>,
    /// Only names that start with this.
    pub prefix: Option<String>,
    /// Only rollouts whose `namespace/name` contains this, ignoring case.
    pub contains: Option<String>,
}

impl Filter {
    /// Whether it narrows by anything but the phase (then counts need a scan).
    fn narrows(&self) -> bool {
        self.namespace.is_some() || self.prefix.is_some() || self.contains.is_some()
    }

    fn wants_phase(&self, phase: Phase) -> bool {
        self.phases.as_ref().is_none_or(|p| p.contains(&phase))
    }
}

/// What to read: rollouts after `after` (by namespace, then name) that match
/// `filter`, at most `limit`.
#[derive(Clone, Debug, PartialEq)]
pub struct PageRequest {
    /// The filters.
    pub filter: Filter,
    /// The last key of the previous page (none: from the start). It need
    /// not exist any more: the page resumes after where it would be.
    pub after: Option<RolloutId>,
    /// At most this many rollouts.
    pub limit: usize,
}

/// One page of the list.
#[derive(Clone, Debug)]
pub struct Page {
    /// The rollouts, by namespace and name.
    pub rollouts: Vec<Arc<RolloutView>>,
    /// How many rollouts match the filters (on every page).
    pub total: usize,
    /// Per phase, the rollouts matching every filter but the phase.
    pub phases: PhaseCounts,
    /// The key to resume after, when more rollouts match.
    pub next: Option<RolloutId>,
}

/// A rollout's view with what the `q` filter compares against.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) view: Arc<RolloutView>,
    /// `namespace/name`, lower-cased once on write.
    folded: String,
}

impl Entry {
    pub(super) fn new(view: RolloutView) -> Entry {
        let folded = format!("{}/{}", view.namespace, view.name).to_lowercase();
        Entry {
            view: Arc::new(view),
            folded,
        }
    }
}

/// The rollouts by id, with their phases counted on every write so the
/// unfiltered list needs no scan.
#[derive(Debug, Default)]
pub(super) struct Rollouts {
    pub(super) map: BTreeMap<RolloutId, Entry>,
    counts: PhaseCounts,
}

impl Rollouts {
    pub(super) fn insert(&mut self, id: RolloutId, entry: Entry) {
        self.counts.add(entry.view.phase);
        if let Some(old) = self.map.insert(id, entry) {
            self.counts.sub(old.view.phase);
        }
    }

    pub(super) fn remove(&mut self, id: &RolloutId) {
        if let Some(old) = self.map.remove(id) {
            self.counts.sub(old.view.phase);
        }
    }

    /// The page `request` asks for.
    pub(super) fn page(&self, request: &PageRequest) -> Page {
        let filter = &request.filter;
        let folded = filter.contains.as_ref().map(|q| q.to_lowercase());
        let base = |id: &RolloutId, e: &Entry| {
            filter
                .prefix
                .as_ref()
                .is_none_or(|p| id.name.starts_with(p))
                && folded
                    .as_ref()
                    .is_none_or(|q| e.folded.contains(q.as_str()))
        };
        let phases = if filter.narrows() {
            let mut counts = PhaseCounts::default();
            for (id, e) in self.candidates(filter, None) {
                if base(id, e) {
                    counts.add(e.view.phase);
                }
            }
            counts
        } else {
            self.counts
        };
        let total = PHASES
            .iter()
            .filter(|p| filter.wants_phase(**p))
            .map(|p| phases.get(*p))
            .sum();
        let mut matching = self
            .candidates(filter, request.after.as_ref())
            .filter(|(id, e)| filter.wants_phase(e.view.phase) && base(id, e));
        let rollouts: Vec<Arc<RolloutView>> = matching
            .by_ref()
            .take(request.limit)
            .map(|(_, e)| e.view.clone())
            .collect();
        let next = match (matching.next(), rollouts.last()) {
            (Some(_), Some(last)) => Some(RolloutId {
                namespace: last.namespace.clone(),
                name: last.name.clone(),
            }),
            _ => None,
        };
        Page {
            rollouts,
            total,
            phases,
            next,
        }
    }

    /// The part of the map a filter can match, after `after`: with a
    /// namespace, only its range (narrowed to the name prefix).
    fn candidates<'a>(
        &'a self,
        filter: &'a Filter,
        after: Option<&RolloutId>,
    ) -> impl Iterator<Item = (&'a RolloutId, &'a Entry)> + 'a {
        let floor = filter.namespace.as_ref().map(|namespace| RolloutId {
            namespace: namespace.clone(),
            name: filter.prefix.clone().unwrap_or_default(),
        });
        let start = match (floor, after) {
            (Some(floor), Some(after)) if *after >= floor => Bound::Excluded(after.clone()),
            (Some(floor), _) => Bound::Included(floor),
            (None, Some(after)) => Bound::Excluded(after.clone()),
            (None, None) => Bound::Unbounded,
        };
        self.map
            .range((start, Bound::Unbounded))
            .take_while(move |(id, _)| match &filter.namespace {
                // Names with the prefix are contiguous within a namespace.
                Some(ns) => {
                    id.namespace == *ns
                        && filter
                            .prefix
                            .as_ref()
                            .is_none_or(|p| id.name.starts_with(p))
                }
                None => true,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(namespace: &str, name: &str, phase: Phase) -> RolloutView {
        let mut v = crate::controller::view::seed_view();
        v.namespace = namespace.into();
        v.name = name.into();
        v.phase = phase;
        v
    }

    fn id(namespace: &str, name: &str) -> RolloutId {
        RolloutId {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    #[test]
    fn phase_counts_follow_replacements_and_removals() {
        let mut rollouts = Rollouts::default();
        rollouts.insert(id("a", "x"), Entry::new(view("a", "x", Phase::Progressing)));
        rollouts.insert(id("a", "y"), Entry::new(view("a", "y", Phase::Progressing)));
        rollouts.insert(id("a", "x"), Entry::new(view("a", "x", Phase::Promoted)));
        rollouts.remove(&id("a", "y"));
        rollouts.remove(&id("a", "nope"));
        assert_eq!(rollouts.counts.get(Phase::Progressing), 0);
        assert_eq!(rollouts.counts.get(Phase::Promoted), 1);
    }

    #[test]
    fn a_page_in_a_namespace_resumes_after_a_key_from_another_namespace() {
        let mut rollouts = Rollouts::default();
        for (ns, name) in [("a", "z"), ("b", "m"), ("b", "n"), ("c", "a")] {
            rollouts.insert(id(ns, name), Entry::new(view(ns, name, Phase::Idle)));
        }
        let names = |after: Option<RolloutId>| {
            let page = rollouts.page(&PageRequest {
                filter: Filter {
                    namespace: Some("b".into()),
                    ..Filter::default()
                },
                after,
                limit: 10,
            });
            page.rollouts
                .iter()
                .map(|v| v.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Some(id("a", "z"))), ["m", "n"]);
        assert_eq!(names(Some(id("b", "m"))), ["n"]);
        assert_eq!(names(Some(id("c", "a"))), Vec::<String>::new());
    }
}
