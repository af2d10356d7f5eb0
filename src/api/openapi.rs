//! The OpenAPI 3.1 description of the API, served at `/api/v1/openapi.json`:
//! every endpoint with every status it answers, errors included.

use serde_json::{Map, Value, json};

use super::list::{DEFAULT_PAGE, MAX_PAGE};
use super::read::{DEFAULT_LIMIT, MAX_LIMIT};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn json_response(description: &str, schema: Value) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": schema}}})
}

fn text_response(description: &str, content_type: &str) -> Value {
    json!({"description": description, "content": {content_type: {"schema": {"type": "string"}}}})
}

/// `{"<field>": [<schema>]}`.
fn list_of(field: &str, item: &str) -> Value {
    json!({"type": "object", "required": [field], "properties": {field: {"type": "array", "items": {"$ref": format!("#/components/schemas/{item}")}}}})
}

fn refer(kind: &str, name: &str) -> Value {
    json!({"$ref": format!("#/components/{kind}/{name}")})
}

/// A read (GET) operation: 200 as given, plus the refusals every read can get.
fn read(summary: &str, parameters: &[&str], ok: Value, not_found: bool) -> Value {
    let mut responses = Map::new();
    responses.insert("200".into(), ok);
    if !parameters.is_empty() {
        responses.insert("400".into(), refer("responses", "BadRequest"));
    }
    responses.insert("401".into(), refer("responses", "Unauthorized"));
    responses.insert("403".into(), refer("responses", "Forbidden"));
    if not_found {
        responses.insert("404".into(), refer("responses", "NotFound"));
    }
    let parameters: Vec<Value> = parameters.iter().map(|p| refer("parameters", p)).collect();
    json!({"get": {"summary": summary, "parameters": parameters, "responses": responses}})
}

fn paths() -> Map<String, Value> {
    let rollout = ["namespace", "name"];
    let log = ["namespace", "name", "limit"];
    let mut paths = Map::new();
    paths.insert(
        "/api/v1/rollouts".into(),
        read(
            "A page of rollouts by namespace and name, filtered; follow `continue` for the next page",
            &[
                "page_limit",
                "continue",
                "phase",
                "namespace_filter",
                "prefix",
                "q",
                "view",
            ],
            json_response("The page", refer("schemas", "RolloutPage")),
            false,
        ),
    );
    paths.insert("/api/v1/rollouts/{namespace}/{name}".into(), read("One rollout. With `full_path=true` (and the API token) it also carries `file_path`, the deploy file's path on disk", &["namespace", "name", "full_path"], json_response("The rollout", refer("schemas", "Rollout")), true));
    paths.insert(
        "/api/v1/rollouts/{namespace}/{name}/decisions".into(),
        read(
            "The latest decisions, oldest first",
            &log,
            json_response("The latest decisions", list_of("decisions", "Decision")),
            true,
        ),
    );
    paths.insert(
        "/api/v1/rollouts/{namespace}/{name}/alerts".into(),
        read(
            "The rollout's latest alerts and their delivery to each sink, oldest first",
            &log,
            json_response("The latest deliveries", list_of("alerts", "AlertDelivery")),
            true,
        ),
    );
    paths.insert("/api/v1/rollouts/{namespace}/{name}/shadow".into(), read("Shadow summary: the releases canaryd watched in shadow mode (from the latest decisions), what it would have done with each, the evidence behind a would-be rollback, and the time to that verdict", &rollout, json_response("The summary", refer("schemas", "ShadowSummary")), true));
    paths.insert("/api/v1/rollouts/{namespace}/{name}/series".into(), read("Recent values of each gate (canary, stable, verdict per tick) against its threshold, for charts; kept in memory, the current canary version only", &rollout, json_response("The series", refer("schemas", "Series")), true));
    for action in ["pause", "resume", "promote", "abort", "retry"] {
        let parameters: Vec<Value> = rollout.iter().map(|p| refer("parameters", p)).collect();
        paths.insert(
            format!("/api/v1/rollouts/{{namespace}}/{{name}}/{action}"),
            json!({"post": {"summary": format!("{action} the rollout"), "security": [{"bearer": []}], "parameters": parameters, "responses": {
                "200": json_response("The rollout after the command", refer("schemas", "Rollout")),
                "400": refer("responses", "BadRequest"),
                "401": refer("responses", "Unauthorized"),
                "403": error_response("Wrong token, commands disabled (no CANARYD_API_TOKEN nor api_tokens), a Host not in the allow-list, or an Origin not allowed"),
                "404": refer("responses", "NotFound"),
                "409": error_response("The command does not fit the phase"),
                "503": error_response("The controller is stopping or did not answer")}}}),
        );
    }
    paths.insert(
        "/api/v1/events".into(),
        read(
            "Server-Sent Events: `decision`, `state`, `file_rejected` (the file by name); at most one event per rollout a second, in its latest state (a decision is kept over a later state change)",
            &["rollout"],
            text_response("An event stream (never ends)", "text/event-stream"),
            true,
        ),
    );
    let mut delivery = read(
        "Delivery metrics over a period from the decision log: deployment frequency, change failure rate, time to restore, lead time; overall, per rollout, per UTC day, and the attempts behind them",
        &["since", "until"],
        json_response("The delivery metrics", refer("schemas", "Delivery")),
        false,
    );
    delivery["get"]["responses"]["503"] =
        error_response("The decision log cannot be read (`store`)");
    paths.insert("/api/v1/delivery".into(), delivery);
    paths.insert(
        "/api/v1/openapi.json".into(),
        read(
            "This document",
            &[],
            json_response("OpenAPI 3.1", json!({"type": "object"})),
            false,
        ),
    );
    paths.insert("/metrics".into(), read("Own and router metrics, OpenMetrics text (a read: Host allow-list and read access apply)", &[], text_response("Metrics", "application/openmetrics-text"), false));
    paths.insert(
        "/".into(),
        read(
            "The dashboard: the rollout list",
            &[],
            text_response("The page", "text/html"),
            false,
        ),
    );
    paths.insert(
        "/rollouts/{namespace}/{name}".into(),
        read(
            "The dashboard: one rollout (the page reads the path)",
            &rollout,
            text_response("The page", "text/html"),
            false,
        ),
    );
    paths.insert("/assets/{file}".into(), read("The dashboard's scripts and styles", &["file"], json!({"description": "The asset", "content": {"text/javascript": {"schema": {"type": "string"}}, "text/css": {"schema": {"type": "string"}}}}), true));
    paths.insert("/healthz".into(), json!({"get": {"summary": "Alive (any Host, any peer)", "responses": {"200": text_response("Alive", "text/plain")}}}));
    paths.insert("/readyz".into(), json!({"get": {"summary": "Ready: state and deploy files loaded (any Host, any peer)", "responses": {"200": text_response("Ready", "text/plain"), "503": error_response("Not ready yet")}}}));
    paths
}

fn parameters() -> Value {
    let segment = |name: &str, example: &str| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "minLength": 1}, "example": example});
    json!({
        "namespace": segment("namespace", "default"),
        "name": segment("name", "checkout"),
        "file": segment("file", "app.js"),
        "limit": {"name": "limit", "in": "query", "description": format!("How many of the latest entries (0 returns none); at most {MAX_LIMIT}"), "schema": {"type": "integer", "minimum": 0, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
        "since": {"name": "since", "in": "query", "description": "The period's start: RFC 3339, or a time before now (`-7d`, `now-12h`); default (or empty) 30 days before `until`. Must be before `until`", "schema": moment(), "example": "-7d"},
        "until": {"name": "until", "in": "query", "description": "The period's end (excluded), same forms; default (or empty) now", "schema": moment(), "example": "now"},
        "page_limit": {"name": "limit", "in": "query", "description": format!("Rollouts per page; a larger value is clamped to {MAX_PAGE}"), "schema": {"type": "integer", "minimum": 1, "default": DEFAULT_PAGE}},
        "continue": {"name": "continue", "in": "query", "description": "The previous page's `continue` token, as is: the page resumes after the last rollout it held (rollouts added or removed meanwhile neither repeat nor skip the others)", "schema": {"type": "string"}},
        "phase": {"name": "phase", "in": "query", "description": "Only these phases, comma-separated", "schema": {"type": "string"}, "example": "Progressing,Paused"},
        "namespace_filter": {"name": "namespace", "in": "query", "description": "Only this namespace", "schema": {"type": "string"}},
        "prefix": {"name": "prefix", "in": "query", "description": "Only names that start with this (case-sensitive)", "schema": {"type": "string"}},
        "q": {"name": "q", "in": "query", "description": "Only rollouts whose `namespace/name` contains this, ignoring case", "schema": {"type": "string"}},
        "view": {"name": "view", "in": "query", "description": "`full` rollouts, or their `summary`", "schema": {"type": "string", "enum": ["full", "summary"], "default": "full"}},
        "rollout": {"name": "rollout", "in": "query", "description": "Only this rollout's events (`namespace/name`), and its deploy file's rejections", "schema": {"type": "string"}, "example": "default/checkout"},
        "full_path": {"name": "full_path", "in": "query", "description": "Also return `file_path`, the deploy file's path on disk; needs the API token", "schema": {"type": "boolean", "default": false}}
    })
}

/// `since`/`until`: empty, RFC 3339, `now`, or a time before now.
fn moment() -> Value {
    json!({"anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": "^(|now|(now)?-([0-9]{1,6}(ms|s|m|h|d|w))+)$"}
    ]})
}

fn responses() -> Value {
    json!({
        "BadRequest": error_response("A query parameter or path segment that does not parse or is out of range (`bad_request`)"),
        "Unauthorized": error_response("No bearer token where one is needed: `full_path=true`, or a read from another machine with `read_access: loopback` (`unauthorized`)"),
        "Forbidden": error_response("A wrong token (`forbidden`), or a Host not in the allow-list (`host_not_allowed`)"),
        "NotFound": error_response("No such rollout or asset (`not_found`)"),
        "MethodNotAllowed": error_response("The endpoint exists but not with this method (`method_not_allowed`); `Allow` lists the methods")
    })
}

fn schemas() -> Value {
    let phase = json!({"$ref": "#/components/schemas/Phase"});
    let time = json!({"type": "string", "format": "date-time"});
    let mode = json!({"type": "string", "enum": ["active", "shadow"], "description": "`shadow`: canaryd only records what it would do and never touches traffic"});
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "enum": ["bad_request", "unauthorized", "forbidden", "commands_disabled", "host_not_allowed", "origin_not_allowed", "not_found", "method_not_allowed", "rejected", "not_ready", "stopping", "timeout", "store", "internal"]},
            "message": {"type": "string"}}}}},
        "Phase": {"type": "string", "enum": ["Idle", "Progressing", "Paused", "Promoted", "RolledBack", "Aborted"]},
        "Rollout": {"type": "object", "required": ["namespace", "name", "phase", "step", "steps", "canary_weight", "stable_version", "updated_at", "file"], "properties": {
            "namespace": {"type": "string"}, "name": {"type": "string"}, "phase": phase,
            "pause_reason": {"type": "string", "enum": ["manual", "no_data", "rollback_disabled"]},
            "step": {"type": "integer", "description": "1-based"}, "steps": {"type": "integer"},
            "canary_weight": {"type": "number", "minimum": 0, "maximum": 100},
            "stable_version": {"type": "string"}, "canary_version": {"type": "string"},
            "desired_canary_version": {"type": "string"},
            "step_elapsed_seconds": {"type": "number"}, "step_duration_seconds": {"type": "number"},
            "updated_at": time,
            "phase_since": {"type": "string", "format": "date-time", "description": "When the phase (or step) last changed"},
            "plan": {"type": "array", "description": "Every step", "items": {"type": "object", "properties": {"weight": {"type": "number"}, "duration_seconds": {"type": ["number", "null"]}}}},
            "last_decision": {"type": "object", "properties": {"at": time, "action": {"type": "string"}, "reason": {"type": "string"}, "by": {"type": "string"}}},
            "gates": {"type": "array", "items": {"$ref": "#/components/schemas/Gate"}},
            "health": {"type": "object", "properties": {"stable": {"type": "boolean"}, "canary": {"type": "boolean"}}},
            "file": {"type": "string", "description": "The deploy file's name in the deploy directory"},
            "file_path": {"type": "string", "description": "The deploy file's path on disk; only with `full_path=true` and the API token"},
            "file_error": {"type": "string", "description": "Why the latest edit of the file was rejected"},
            "mode": mode}},
        "RolloutPage": {"type": "object", "required": ["rollouts", "total", "phases"], "properties": {
            "rollouts": {"type": "array", "items": {"anyOf": [{"$ref": "#/components/schemas/Rollout"}, {"$ref": "#/components/schemas/RolloutSummary"}]}},
            "total": {"type": "integer", "minimum": 0, "description": "Rollouts matching the filters, on every page"},
            "phases": {"type": "object", "description": "Per phase, the rollouts matching every filter but `phase`", "additionalProperties": {"type": "integer", "minimum": 0}},
            "continue": {"type": "string", "description": "The token for the next page; absent on the last page"},
            "store_error": {"type": "string", "description": "Why the last commit of decisions failed, while it does"}}},
        "RolloutSummary": {"type": "object", "required": ["namespace", "name", "phase", "step", "steps", "weight", "stable", "canary", "mode", "last_decision_at", "file_error"], "properties": {
            "namespace": {"type": "string"}, "name": {"type": "string"}, "phase": phase,
            "step": {"type": "integer", "description": "1-based"}, "steps": {"type": "integer"},
            "weight": {"type": "number", "minimum": 0, "maximum": 100, "description": "The canary weight"},
            "stable": {"type": "string"}, "canary": {"type": ["string", "null"]},
            "mode": mode, "last_decision_at": {"type": ["string", "null"], "format": "date-time"},
            "file_error": {"type": "boolean", "description": "Whether the latest edit of the deploy file was rejected"}}},
        "ShadowSummary": {"type": "object", "required": ["releases_watched", "would_roll_back", "would_promote", "releases"], "properties": {
            "mode": mode,
            "releases_watched": {"type": "integer", "minimum": 0}, "would_roll_back": {"type": "integer", "minimum": 0}, "would_promote": {"type": "integer", "minimum": 0},
            "releases": {"type": "array", "items": {"type": "object", "required": ["version", "started", "verdict"], "properties": {
                "version": {"type": "string"},
                "started": {"type": ["string", "null"], "format": "date-time"},
                "verdict": {"type": "string", "enum": ["would_promote", "would_roll_back", "aborted", "superseded", "watching"]},
                "verdict_at": time,
                "time_to_verdict_seconds": {"type": "number", "minimum": 0},
                "reason": {"type": "string", "description": "`would roll back: …`"},
                "evidence": {"type": "array", "items": {"type": "object", "required": ["gate", "value", "threshold"], "properties": {
                    "gate": {"type": "string"}, "value": {"type": "string"}, "threshold": {"type": "string"}, "evidence": {"type": "string"}}}}}}}}},
        "Gate": {"type": "object", "properties": {"name": {"type": "string"}, "track": {"type": "string", "enum": ["canary", "stable"]}, "query": {"type": "string"}, "value": {"type": ["number", "null"]}, "stable_value": {"type": "number"}, "threshold": {"type": "string"}, "verdict": {"type": "string", "enum": ["pass", "fail", "inconclusive"]}}},
        "Series": {"type": "object", "properties": {"version": {"type": ["string", "null"]}, "gates": {"type": "array", "items": {"type": "object", "required": ["name", "kind", "unit", "comparison", "threshold", "threshold_value", "points"], "properties": {
            "name": {"type": "string"}, "kind": {"type": "string", "enum": ["abort", "promotion"]}, "unit": {"type": "string", "enum": ["ratio", "seconds", "per_second", "number"]},
            "comparison": {"type": "string", "enum": ["less_than", "greater_than"]}, "threshold": {"type": "string"}, "threshold_value": {"type": "number"},
            "points": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "integer", "description": "ms since the epoch"}, "canary": {"type": ["number", "null"]}, "stable": {"type": ["number", "null"]}, "verdict": {"type": "string", "enum": ["pass", "fail", "inconclusive"]}}}}}}}}},
        "AlertDelivery": {"type": "object", "required": ["seq", "event", "sink", "title", "state", "attempts", "queued_at"], "properties": {
            "seq": {"type": "integer", "description": "The decision that raised it"},
            "event": {"type": "string", "enum": ["started", "step_advanced", "paused", "promoted", "rolled_back", "aborted"]},
            "sink": {"type": "string", "description": "Kind and where its URL is read (`slack:env:SLACK_WEBHOOK_URL`); never the URL"},
            "title": {"type": "string"},
            "state": {"type": "string", "enum": ["pending", "delivered", "gave_up"]},
            "attempts": {"type": "integer"},
            "queued_at": time, "delivered_at": time,
            "last_error": {"type": "string"}}},
        "Delivery": delivery_schema(),
        "Decision": {"type": "object", "required": ["seq", "at", "from", "to", "action", "reason", "gates"], "properties": {
            "seq": {"type": "integer"}, "at": time, "from": phase, "to": phase,
            "action": {"type": "string"}, "reason": {"type": "string"}, "step": {"type": "integer"},
            "shadow": {"type": "boolean", "description": "What canaryd would have done (shadow mode); it did not touch traffic"},
            "by": {"type": "string", "description": "For a command: the name of the API token that issued it (never the token)"},
            "gates": {"type": "array", "items": {"$ref": "#/components/schemas/Gate"}}}}
    })
}

/// `GET /api/v1/delivery`'s answer (see `crate::delivery`).
fn delivery_schema() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let count = json!({"type": "integer", "minimum": 0});
    let seconds = json!({"type": ["number", "null"], "minimum": 0});
    let durations = json!({"type": "object", "required": ["count", "median_seconds", "mean_seconds", "max_seconds"], "properties": {
        "count": count, "median_seconds": seconds, "mean_seconds": seconds, "max_seconds": seconds}});
    let figures = json!({"type": "object", "required": ["deployments_per_day", "change_failure_rate", "time_to_restore", "lead_time", "started", "promoted", "rolled_back", "aborted", "finished", "superseded", "in_flight"], "properties": {
        "rollout": {"type": "string", "description": "`namespace/name` (per-rollout figures only)"},
        "deployments_per_day": {"type": "number", "minimum": 0, "description": "Promotions per day"},
        "change_failure_rate": {"type": ["number", "null"], "minimum": 0, "maximum": 1, "description": "Rolled back / finished (promoted + rolled back + aborted); null when none finished"},
        "time_to_restore": durations, "lead_time": durations,
        "started": count, "promoted": count, "rolled_back": count, "aborted": count, "finished": count, "superseded": count, "in_flight": count}});
    json!({"type": "object", "required": ["since", "until", "days", "overall", "rollouts", "daily", "attempts"], "properties": {
        "since": time, "until": time, "days": {"type": "number"},
        "overall": figures,
        "rollouts": {"type": "array", "items": figures},
        "daily": {"type": "array", "items": {"type": "object", "required": ["day", "promoted", "rolled_back", "aborted"], "properties": {
            "day": {"type": "string", "format": "date"}, "promoted": count, "rolled_back": count, "aborted": count}}},
        "attempts": {"type": "array", "description": "The attempts that ended in the period, in the order they ended", "items": {"type": "object", "required": ["rollout", "version", "started", "end", "ended"], "properties": {
            "rollout": {"type": "string"}, "version": {"type": "string"},
            "started": {"type": ["string", "null"], "format": "date-time"},
            "end": {"type": "string", "enum": ["promoted", "rolled_back", "aborted", "superseded"]},
            "ended": time, "fault_at": time,
            "lead_time_seconds": {"type": "number", "minimum": 0}, "time_to_restore_seconds": {"type": "number", "minimum": 0}}}}}})
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "canaryd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every error is `{\"error\": {\"code\", \"message\"}}` with the matching status: 400 for a query or path that does not parse, 404 for an unknown route, 405 (with `Allow`) for a wrong method, 403 for a Host outside the allow-list. Reads may be restricted to loopback peers (`read_access: loopback`); others then send `Authorization: Bearer` with the read token or the API token."
        },
        "paths": paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": parameters(),
            "responses": responses(),
            "schemas": schemas()
        }
    })
}
