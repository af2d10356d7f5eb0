//! The writes: create, replace (PUT), patch (apply, merge, JSON, strategic),
//! with the real server's preconditions and subresource rules.

use serde_json::{Value, json};

use super::fields;
use super::kinds::{KINDS, Kind};
use super::status::ApiError;
use super::store::{ObjKey, Store, Stored, now, scope};

/// Patch content types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`; built-in kinds only, and
    /// applied as a merge patch (lists are not merged by key).
    Strategic,
}

impl PatchKind {
    /// From a `Content-Type`.
    pub fn from_content_type(ct: &str) -> Option<PatchKind> {
        match ct.split(';').next().unwrap_or_default().trim() {
            "application/apply-patch+yaml" => Some(PatchKind::Apply),
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            _ => None,
        }
    }
}

/// POST: creates; 409 AlreadyExists when the name is taken.
pub fn create(
    store: &mut Store,
    kind: usize,
    namespace: &str,
    mut body: Value,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    let k = &KINDS[kind];
    check_type(k, &body)?;
    let name = match body["metadata"]["name"].as_str() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => match body["metadata"]["generateName"].as_str() {
            Some(prefix) => format!("{prefix}{:05x}", store.resource_version() + 1),
            None => {
                return Err(ApiError::invalid(
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        },
    };
    if let Some(ns) = body["metadata"]["namespace"].as_str()
        && ns != namespace
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let key = ObjKey {
        kind,
        namespace: namespace.to_string(),
        name: name.clone(),
    };
    if store.stored(&key).is_some() {
        return Err(ApiError::new(
            409,
            "AlreadyExists",
            format!("{}.{} \"{name}\" already exists", k.plural, k.group),
        ));
    }
    if k.status_subresource
        && let Some(map) = body.as_object_mut()
    {
        map.remove("status");
    }
    set_system_metadata(store, &mut body, None, &key);
    let mut managers = Vec::new();
    fields::record_update(
        &json!({}),
        &body,
        &mut managers,
        manager.unwrap_or("unknown"),
        scope(k, false),
        &now(),
    );
    Ok(store.commit(&key, body, managers))
}

/// PUT, on the object or its `/status`.
pub fn replace(
    store: &mut Store,
    key: &ObjKey,
    status: bool,
    body: Value,
    manager: Option<&str>,
) -> Result<Value, ApiError> {
    let k = &KINDS[key.kind];
    check_type(k, &body)?;
    let current = store
        .stored(key)
        .ok_or_else(|| ApiError::not_found(k.plural, &key.name))?
        .clone();
    match body["metadata"]["resourceVersion"].as_str() {
        Some(rv)
            if rv
                != current.object["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default() =>
        {
            return Err(ApiError::stale(
                &format!("{}.{}", k.plural, k.group),
                &key.name,
            ));
        }
        None if k.custom => {
            return Err(ApiError::invalid(
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            ));
        }
        _ => {}
    }
    let mut next = restrict(k, &current.object, body, status);
    set_system_metadata(store, &mut next, Some(&current.object), key);
    let mut managers = current.managers.clone();
    fields::record_update(
        &current.object,
        &next,
        &mut managers,
        manager.unwrap_or("unknown"),
        scope(k, status),
        &now(),
    );
    Ok(store.commit(key, next, managers))
}

/// PATCH, on the object or its `/status`. Server-side apply creates a
/// missing object (answered 201).
pub fn patch(
    store: &mut Store,
    key: &ObjKey,
    status: bool,
    kind: PatchKind,
    body: &[u8],
    manager: Option<&str>,
    force: bool,
) -> Result<(u16, Value), ApiError> {
    let k = &KINDS[key.kind];
    let current = store.stored(key).cloned();
    let (mut next, managers) = match (kind, &current) {
        (PatchKind::Apply, _) => {
            let manager = manager.ok_or_else(|| {
                ApiError::bad_request("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch")
            })?;
            if current.is_none() && status {
                return Err(ApiError::not_found(k.plural, &key.name));
            }
            server_side_apply(k, key, current.as_ref(), body, manager, force, status)?
        }
        (_, None) => return Err(ApiError::not_found(k.plural, &key.name)),
        (other, Some(current)) => {
            let next = restrict(
                k,
                &current.object,
                patched(k, &current.object, other, body)?,
                status,
            );
            let mut managers = current.managers.clone();
            let manager = manager.unwrap_or("unknown");
            fields::record_update(
                &current.object,
                &next,
                &mut managers,
                manager,
                scope(k, status),
                &now(),
            );
            (next, managers)
        }
    };
    // A resourceVersion in the patch is a precondition.
    if let Some(c) = &current
        && !next["metadata"]["resourceVersion"].is_null()
        && next["metadata"]["resourceVersion"] != c.object["metadata"]["resourceVersion"]
    {
        return Err(ApiError::stale(
            &format!("{}.{}", k.plural, k.group),
            &key.name,
        ));
    }
    set_system_metadata(store, &mut next, current.as_ref().map(|c| &c.object), key);
    let shown = store.commit(key, next, managers);
    Ok((if current.is_none() { 201 } else { 200 }, shown))
}

/// The object after an apply, and its new field owners; 409 on conflicts.
fn server_side_apply(
    k: &Kind,
    key: &ObjKey,
    current: Option<&Stored>,
    body: &[u8],
    manager: &str,
    force: bool,
    status: bool,
) -> Result<(Value, Vec<fields::Manager>), ApiError> {
    let applied: Value = serde_json::from_slice(body)
        .or_else(|_| serde_saphyr::from_slice(body))
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    check_type(k, &applied)?;
    let base = match current {
        Some(c) => c.object.clone(),
        None => json!({ "metadata": { "name": key.name, "namespace": key.namespace } }),
    };
    let mut managers = current.map(|c| c.managers.clone()).unwrap_or_default();
    let mut merged = fields::apply(
        &base,
        &mut managers,
        &applied,
        manager,
        force,
        scope(k, status),
        &now(),
    )
    .map_err(|conflicts| conflict_error(&conflicts))?;
    if let Some(rv) = applied["metadata"]["resourceVersion"].as_str() {
        merged["metadata"]["resourceVersion"] = json!(rv);
    }
    Ok((merged, managers))
}

/// The real server's 409 for field-manager conflicts.
fn conflict_error(conflicts: &[fields::Conflict]) -> ApiError {
    let detail: Vec<String> = conflicts
        .iter()
        .map(|c| format!("conflict with \"{}\": {}", c.manager, c.field))
        .collect();
    let plural = if conflicts.len() == 1 { "" } else { "s" };
    ApiError {
        code: 409,
        reason: "Conflict",
        message: format!("Apply failed with {} conflict{plural}: {}", conflicts.len(), detail.join("; ")),
        causes: conflicts
            .iter()
            .map(|c| json!({ "type": "FieldManagerConflict", "message": format!("conflict with \"{}\"", c.manager), "field": c.field }))
            .collect(),
    }
}

/// `object` with a merge, JSON or strategic merge patch applied.
fn patched(k: &Kind, object: &Value, kind: PatchKind, body: &[u8]) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch body: {e}")))?;
    let mut doc = object.clone();
    match kind {
        PatchKind::Strategic if k.custom => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
            ));
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::invalid(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
        }
        _ => json_patch::merge(&mut doc, &patch),
    }
    Ok(doc)
}

/// Keeps what a request may change: the main resource never changes
/// `status` (when it is a subresource); `/status` changes only `status`.
fn restrict(k: &Kind, current: &Value, mut next: Value, status: bool) -> Value {
    if status {
        let mut kept = current.clone();
        match next.get("status") {
            Some(s) => kept["status"] = s.clone(),
            None => {
                if let Some(map) = kept.as_object_mut() {
                    map.remove("status");
                }
            }
        }
        kept["metadata"]["resourceVersion"] = next["metadata"]["resourceVersion"].clone();
        return kept;
    }
    if k.status_subresource
        && let Some(map) = next.as_object_mut()
    {
        match current.get("status") {
            Some(s) => {
                map.insert("status".into(), s.clone());
            }
            None => {
                map.remove("status");
            }
        }
    }
    next
}

/// Fields only the server sets: name, namespace, uid, creationTimestamp, generation.
fn set_system_metadata(
    store: &mut Store,
    object: &mut Value,
    previous: Option<&Value>,
    key: &ObjKey,
) {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    let meta = &mut object["metadata"];
    meta["name"] = json!(key.name);
    meta["namespace"] = json!(key.namespace);
    if let Some(map) = meta.as_object_mut() {
        map.remove("managedFields");
        map.remove("generation");
    }
    match previous {
        Some(prev) => {
            for field in ["uid", "creationTimestamp", "generation"] {
                if !prev["metadata"][field].is_null() {
                    object["metadata"][field] = prev["metadata"][field].clone();
                }
            }
        }
        None => {
            object["metadata"]["uid"] = json!(store.next_uid());
            object["metadata"]["creationTimestamp"] = json!(now());
        }
    }
}

fn check_type(k: &Kind, body: &Value) -> Result<(), ApiError> {
    let api_version = body["apiVersion"].as_str();
    let kind = body["kind"].as_str();
    if api_version.is_some_and(|v| v != k.api_version()) || kind.is_some_and(|v| v != k.kind) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({})",
            api_version.unwrap_or_default(),
            k.api_version()
        )));
    }
    Ok(())
}
