//! The OpenAPI 3.1 description of the API, served at `/api/v1/openapi.json`.

use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The document.
pub fn document() -> Value {
    let rollout_path = json!([
        {"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}},
        {"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}
    ]);
    let mut paths = serde_json::Map::new();
    paths.insert("/api/v1/rollouts".into(), json!({"get": {"summary": "Every rollout", "responses": {"200": {"description": "The rollouts", "content": {"application/json": {"schema": {"type": "object", "properties": {"rollouts": {"type": "array", "items": {"$ref": "#/components/schemas/Rollout"}}}}}}}}}}));
    paths.insert("/api/v1/rollouts/{namespace}/{name}".into(), json!({"get": {"summary": "One rollout", "parameters": rollout_path, "responses": {"200": {"description": "The rollout", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rollout"}}}}, "404": error_response("No such rollout")}}}));
    paths.insert("/api/v1/rollouts/{namespace}/{name}/alerts".into(), json!({"get": {"summary": "The rollout's alerts and their delivery to each sink, oldest first", "parameters": [rollout_path[0], rollout_path[1], {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 100}}], "responses": {"200": {"description": "The latest deliveries", "content": {"application/json": {"schema": {"type": "object", "properties": {"alerts": {"type": "array", "items": {"$ref": "#/components/schemas/AlertDelivery"}}}}}}}, "404": error_response("No such rollout")}}}));
    paths.insert("/api/v1/rollouts/{namespace}/{name}/series".into(), json!({"get": {"summary": "Recent values of each gate (canary, stable, verdict per tick) against its threshold, for charts; kept in memory, the current canary version only", "parameters": rollout_path, "responses": {"200": {"description": "The series", "content": {"application/json": {"schema": {"type": "object", "properties": {"version": {"type": ["string", "null"]}, "gates": {"type": "array", "items": {"type": "object", "required": ["name", "kind", "unit", "comparison", "threshold", "threshold_value", "points"], "properties": {"name": {"type": "string"}, "kind": {"type": "string", "enum": ["abort", "promotion"]}, "unit": {"type": "string", "enum": ["ratio", "seconds", "per_second", "number"]}, "comparison": {"type": "string", "enum": ["less_than", "greater_than"]}, "threshold": {"type": "string"}, "threshold_value": {"type": "number"}, "points": {"type": "array", "items": {"type": "object", "properties": {"t": {"type": "integer", "description": "ms since the epoch"}, "canary": {"type": ["number", "null"]}, "stable": {"type": ["number", "null"]}, "verdict": {"type": "string", "enum": ["pass", "fail", "inconclusive"]}}}}}}}}}}}}, "404": error_response("No such rollout")}}}));
    paths.insert("/api/v1/rollouts/{namespace}/{name}/decisions".into(), json!({"get": {"summary": "The decision log, oldest first", "parameters": [rollout_path[0], rollout_path[1], {"name": "limit", "in": "query", "schema": {"type": "integer", "default": 100}}], "responses": {"200": {"description": "The latest decisions", "content": {"application/json": {"schema": {"type": "object", "properties": {"decisions": {"type": "array", "items": {"$ref": "#/components/schemas/Decision"}}}}}}}, "404": error_response("No such rollout")}}}));
    for action in ["pause", "resume", "promote", "abort", "retry"] {
        paths.insert(
            format!("/api/v1/rollouts/{{namespace}}/{{name}}/{action}"),
            json!({"post": {"summary": format!("{action} the rollout"), "security": [{"bearer": []}], "parameters": rollout_path, "responses": {
                "200": {"description": "The rollout after the command", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Rollout"}}}},
                "401": error_response("No bearer token"), "403": error_response("Wrong token, or commands disabled"),
                "404": error_response("No such rollout"), "409": error_response("The command does not fit the phase")}}}),
        );
    }
    paths.insert("/api/v1/events".into(), json!({"get": {"summary": "Server-Sent Events: `decision`, `state`, `file_rejected`", "responses": {"200": {"description": "An event stream", "content": {"text/event-stream": {}}}}}}));
    paths.insert("/metrics".into(), json!({"get": {"summary": "Own metrics, Prometheus text format", "responses": {"200": {"description": "Metrics"}}}}));
    paths.insert(
        "/healthz".into(),
        json!({"get": {"summary": "Alive", "responses": {"200": {"description": "Alive"}}}}),
    );
    paths.insert("/readyz".into(), json!({"get": {"summary": "Ready (state and deploy files loaded)", "responses": {"200": {"description": "Ready"}, "503": error_response("Not ready yet")}}}));
    json!({
        "openapi": "3.1.0",
        "info": {"title": "canaryd", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "Phase": {"type": "string", "enum": ["Idle", "Progressing", "Paused", "Promoted", "RolledBack", "Aborted"]},
                "Rollout": {"type": "object", "required": ["namespace", "name", "phase", "step", "steps", "canary_weight", "stable_version", "updated_at"], "properties": {
                    "namespace": {"type": "string"}, "name": {"type": "string"}, "phase": {"$ref": "#/components/schemas/Phase"},
                    "step": {"type": "integer", "description": "1-based"}, "steps": {"type": "integer"},
                    "canary_weight": {"type": "number", "minimum": 0, "maximum": 100},
                    "stable_version": {"type": "string"}, "canary_version": {"type": "string"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "phase_since": {"type": "string", "format": "date-time", "description": "When the phase (or step) last changed"},
                    "plan": {"type": "array", "description": "Every step", "items": {"type": "object", "properties": {"weight": {"type": "number"}, "duration_seconds": {"type": ["number", "null"]}}}},
                    "last_decision": {"type": "object", "properties": {"at": {"type": "string", "format": "date-time"}, "action": {"type": "string"}, "reason": {"type": "string"}}},
                    "gates": {"type": "array", "items": {"$ref": "#/components/schemas/Gate"}},
                    "file_error": {"type": "string"}}},
                "Gate": {"type": "object", "properties": {"name": {"type": "string"}, "track": {"type": "string"}, "query": {"type": "string"}, "value": {"type": ["number", "null"]}, "stable_value": {"type": "number"}, "threshold": {"type": "string"}, "verdict": {"type": "string", "enum": ["pass", "fail", "inconclusive"]}}},
                "AlertDelivery": {"type": "object", "required": ["seq", "event", "sink", "title", "state", "attempts", "queued_at"], "properties": {
                    "seq": {"type": "integer", "description": "The decision that raised it"},
                    "event": {"type": "string", "enum": ["started", "step_advanced", "paused", "promoted", "rolled_back", "aborted"]},
                    "sink": {"type": "string", "description": "Kind and where its URL is read (`slack:env:SLACK_WEBHOOK_URL`); never the URL"},
                    "title": {"type": "string"},
                    "state": {"type": "string", "enum": ["pending", "delivered", "gave_up"]},
                    "attempts": {"type": "integer"},
                    "queued_at": {"type": "string", "format": "date-time"},
                    "delivered_at": {"type": "string", "format": "date-time"},
                    "last_error": {"type": "string"}
                }},
                "Decision": {"type": "object", "required": ["seq", "at", "from", "to", "action", "reason", "gates"], "properties": {
                    "seq": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                    "from": {"$ref": "#/components/schemas/Phase"}, "to": {"$ref": "#/components/schemas/Phase"},
                    "action": {"type": "string"}, "reason": {"type": "string"}, "step": {"type": "integer"},
                    "gates": {"type": "array", "items": {"$ref": "#/components/schemas/Gate"}}}}
            }
        }
    })
}
