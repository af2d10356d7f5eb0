//! Field ownership for server-side apply, as the real API server tracks it
//! but simpler: a field is a leaf path (a scalar, a list, or an empty map);
//! lists are atomic (no merge keys). Each (manager, operation, subresource)
//! owns a set of fields; an apply that sets a field another manager owns to
//! a different value is a conflict unless forced.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A field: the keys from the object's root to a leaf.
pub type FieldPath = Vec<String>;

/// Which part of an object a request may touch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything but `status` (when the kind has a status subresource).
    Main {
        /// Whether `status` belongs to the subresource.
        status_subresource: bool,
    },
    /// Only `status`.
    Status,
}

/// How a manager last wrote its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Server-side apply.
    Apply,
    /// Create, update or a non-apply patch.
    Update,
}

/// The fields one manager owns through one operation.
#[derive(Clone, Debug, PartialEq)]
pub struct Manager {
    /// The `fieldManager`.
    pub name: String,
    /// Apply or Update.
    pub operation: Operation,
    /// Whether through `/status`.
    pub status: bool,
    /// The owned fields.
    pub fields: BTreeSet<FieldPath>,
    /// When it last wrote (RFC 3339).
    pub time: String,
}

/// A field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    /// The other manager.
    pub manager: String,
    /// The field, `.spec.replicas`.
    pub field: String,
}

/// The leaf fields of `object` within `scope`.
pub fn leaves(object: &Value, scope: Scope) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Value::Object(map) = object else {
        return out;
    };
    for (key, value) in map {
        let counted = match (scope, key.as_str()) {
            (_, "apiVersion" | "kind") => false,
            (Scope::Status, k) => k == "status",
            (Scope::Main { status_subresource }, "status") => !status_subresource,
            (Scope::Main { .. }, _) => true,
        };
        if !counted {
            continue;
        }
        if key == "metadata" {
            // Of metadata, only these are owned (the rest is the server's).
            for sub in ["labels", "annotations", "ownerReferences", "finalizers"] {
                if let Some(v) = value.get(sub) {
                    collect(v, vec![key.clone(), sub.to_string()], &mut out);
                }
            }
            continue;
        }
        collect(value, vec![key.clone()], &mut out);
    }
    out
}

fn collect(value: &Value, path: FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let mut p = path.clone();
                p.push(k.clone());
                collect(v, p, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// The value at `path`, if any.
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, key| v.get(key))
}

/// Whether one path is the other or contains it.
fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Whether applying `field` (from `applied`) would change a value `owned`
/// by someone else. Owning a map (its existence) is not owning its keys:
/// only a value that is replaced, or a scalar or list turned into (or out
/// of) a map on the way to the other field, conflicts.
fn contested(owned: &[String], field: &[String], current: &Value, applied: &Value) -> bool {
    let is_map = |v: Option<&Value>| v.is_some_and(Value::is_object);
    if owned == field {
        value_at(current, field) != value_at(applied, field)
    } else if field.starts_with(owned) {
        !is_map(value_at(current, owned)) && value_at(current, owned) != value_at(applied, owned)
    } else if owned.starts_with(field) {
        !is_map(value_at(applied, field)) && value_at(current, field) != value_at(applied, field)
    } else {
        false
    }
}

/// `.spec.replicas`
pub fn dotted(path: &[String]) -> String {
    path.iter().map(|k| format!(".{k}")).collect()
}

/// Server-side apply of `applied` by `manager` onto `current`: the merged
/// object, or the conflicts when not forced. `managers` is updated.
pub fn apply(
    current: &Value,
    managers: &mut Vec<Manager>,
    applied: &Value,
    manager: &str,
    force: bool,
    scope: Scope,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let status = scope == Scope::Status;
    let fields = leaves(applied, scope);
    let mut conflicts = Vec::new();
    for other in managers.iter().filter(|m| m.name != manager) {
        for owned in &other.fields {
            if fields.iter().any(|f| contested(owned, f, current, applied)) {
                conflicts.push(Conflict {
                    manager: other.name.clone(),
                    field: dotted(owned),
                });
            }
        }
    }
    conflicts.dedup();
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    if force {
        // Forced: the conflicting fields change hands.
        for other in managers.iter_mut().filter(|m| m.name != manager) {
            other
                .fields
                .retain(|owned| !fields.iter().any(|f| contested(owned, f, current, applied)));
        }
    }
    // Fields this manager applied before and no longer applies are removed,
    // unless someone else owns them too.
    let previous: BTreeSet<FieldPath> = managers
        .iter()
        .filter(|m| m.name == manager && m.operation == Operation::Apply && m.status == status)
        .flat_map(|m| m.fields.iter().cloned())
        .collect();
    let mut merged = current.clone();
    for dropped in previous.difference(&fields) {
        let shared = managers
            .iter()
            .filter(|m| !(m.name == manager && m.operation == Operation::Apply))
            .any(|m| m.fields.iter().any(|o| overlaps(o, dropped)));
        if !shared {
            remove_at(&mut merged, dropped);
        }
    }
    merge_into(&mut merged, applied, scope);
    managers
        .retain(|m| !(m.name == manager && m.operation == Operation::Apply && m.status == status));
    managers.push(Manager {
        name: manager.to_string(),
        operation: Operation::Apply,
        status,
        fields,
        time: now.to_string(),
    });
    managers.retain(|m| !m.fields.is_empty());
    Ok(merged)
}

/// Records a non-apply write: the fields it changed become `manager`'s, and
/// removed fields are no one's.
pub fn record_update(
    old: &Value,
    new: &Value,
    managers: &mut Vec<Manager>,
    manager: &str,
    scope: Scope,
    now: &str,
) {
    let before = leaves(old, scope);
    let after = leaves(new, scope);
    let changed: BTreeSet<FieldPath> = after
        .iter()
        .filter(|f| value_at(old, f) != value_at(new, f))
        .cloned()
        .collect();
    let removed: Vec<&FieldPath> = before.difference(&after).collect();
    for m in managers.iter_mut() {
        m.fields
            .retain(|owned| !removed.iter().any(|r| owned.starts_with(r)));
        if m.name != manager || m.operation != Operation::Update {
            m.fields
                .retain(|owned| !changed.iter().any(|c| contested(owned, c, old, new)));
        }
    }
    if !changed.is_empty() {
        let status = scope == Scope::Status;
        match managers
            .iter_mut()
            .find(|m| m.name == manager && m.operation == Operation::Update && m.status == status)
        {
            Some(m) => {
                m.fields.extend(changed);
                m.time = now.to_string();
            }
            None => managers.push(Manager {
                name: manager.to_string(),
                operation: Operation::Update,
                status,
                fields: changed,
                time: now.to_string(),
            }),
        }
    }
    managers.retain(|m| !m.fields.is_empty());
}

/// Sets every leaf of `applied` (within `scope`) into `target`; maps merge,
/// lists and scalars replace.
fn merge_into(target: &mut Value, applied: &Value, scope: Scope) {
    for field in leaves(applied, scope) {
        if let Some(v) = value_at(applied, &field) {
            set_at(target, &field, v.clone());
        }
    }
}

fn set_at(target: &mut Value, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = target;
    for key in parents {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        node = map.entry(key.clone()).or_insert_with(|| json!({}));
    }
    if !node.is_object() {
        *node = Value::Object(Map::new());
    }
    if let Value::Object(map) = node {
        map.insert(last.clone(), value);
    }
}

fn remove_at(target: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = target;
    for key in parents {
        match node.get_mut(key) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Value::Object(map) = node {
        map.remove(last);
    }
}

/// `metadata.managedFields` as the real server writes it (FieldsV1).
pub fn managed_fields(managers: &[Manager], api_version: &str) -> Value {
    Value::Array(
        managers
            .iter()
            .map(|m| {
                let mut fields = Map::new();
                for path in &m.fields {
                    insert_field(&mut fields, path);
                }
                let mut entry = json!({
                    "manager": m.name,
                    "operation": match m.operation { Operation::Apply => "Apply", Operation::Update => "Update" },
                    "apiVersion": api_version,
                    "time": m.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": Value::Object(fields),
                });
                if m.status {
                    entry["subresource"] = json!("status");
                }
                entry
            })
            .collect(),
    )
}

/// Adds `path` to a FieldsV1 tree (`{"f:spec": {"f:replicas": {}}}`).
fn insert_field(node: &mut Map<String, Value>, path: &[String]) {
    if let Some((first, rest)) = path.split_first()
        && let Value::Object(child) = node
            .entry(format!("f:{first}"))
            .or_insert_with(|| json!({}))
    {
        insert_field(child, rest);
    }
}
