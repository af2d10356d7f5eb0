//! The fake API server behaves like the real one for what canaryd uses:
//! every later cluster test trusts it, so its behaviours are pinned here as a
//! table of requests and the answers the real server gives (watches: see
//! cluster_fake_watch.rs).

use canaryd::cluster::fake::FakeApiServer;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/shop/deployments";
const ROUTES: &str = "/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes";
const JSON: &str = "application/json";
const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";
const STRATEGIC: &str = "application/strategic-merge-patch+json";

async fn call(
    fake: &FakeApiServer,
    method: Method,
    uri: &str,
    ct: &str,
    body: &Value,
) -> (u16, Value) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let response = fake.handle(&method, &uri.parse().expect("uri"), Some(ct), &bytes);
    let code = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (code, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "labels": { "app": name } },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } }, "spec": { "containers": [{ "name": "app", "image": "app:v1" }] } }
        },
        "status": { "availableReplicas": 99 }
    })
}

type Check = Box<dyn Fn(&Value)>;

struct Case {
    what: &'static str,
    method: Method,
    uri: String,
    ct: &'static str,
    body: Value,
    code: u16,
    check: Check,
}

fn case(
    what: &'static str,
    method: Method,
    uri: impl Into<String>,
    ct: &'static str,
    body: Value,
    code: u16,
    check: impl Fn(&Value) + 'static,
) -> Case {
    Case {
        what,
        method,
        uri: uri.into(),
        ct,
        body,
        code,
        check: Box::new(check),
    }
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn managers(v: &Value) -> Vec<(String, String, Value)> {
    v["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["manager"].as_str().unwrap_or_default().to_string(),
                m["operation"].as_str().unwrap_or_default().to_string(),
                m["fieldsV1"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn requests_get_the_answers_the_real_api_server_gives() {
    let fake = FakeApiServer::new();
    let web = format!("{DEPLOYMENTS}/web");
    let cases = vec![
        case(
            "create",
            Method::POST,
            DEPLOYMENTS,
            JSON,
            deployment("web", 2),
            201,
            |v| {
                assert_eq!(v["metadata"]["generation"], 1);
                assert_eq!(rv(v), "1");
                assert!(v["metadata"]["uid"].is_string());
                assert!(v.get("status").is_none(), "status is not set on create");
            },
        ),
        case(
            "create a taken name",
            Method::POST,
            DEPLOYMENTS,
            JSON,
            deployment("web", 2),
            409,
            |v| {
                assert_eq!(v["reason"], "AlreadyExists");
                assert_eq!(v["kind"], "Status");
            },
        ),
        case(
            "get",
            Method::GET,
            web.clone(),
            JSON,
            Value::Null,
            200,
            |v| assert_eq!(v["spec"]["replicas"], 2),
        ),
        case(
            "get a missing object",
            Method::GET,
            format!("{DEPLOYMENTS}/nope"),
            JSON,
            Value::Null,
            404,
            |v| assert_eq!(v["reason"], "NotFound"),
        ),
        case(
            "update with a stale resourceVersion",
            Method::PUT,
            web.clone(),
            JSON,
            {
                let mut d = deployment("web", 3);
                d["metadata"]["resourceVersion"] = json!("0");
                d
            },
            409,
            |v| assert_eq!(v["reason"], "Conflict"),
        ),
        case(
            "update with the current resourceVersion bumps generation",
            Method::PUT,
            web.clone(),
            JSON,
            {
                let mut d = deployment("web", 3);
                d["metadata"]["resourceVersion"] = json!("1");
                d
            },
            200,
            |v| {
                assert_eq!(v["metadata"]["generation"], 2);
                assert_eq!(rv(v), "2");
                assert!(
                    v.get("status").is_none(),
                    "the main resource ignores status"
                );
            },
        ),
        case(
            "a status write does not bump generation",
            Method::PUT,
            format!("{web}/status"),
            JSON,
            json!({
                "metadata": { "resourceVersion": "2" }, "status": { "availableReplicas": 3 }, "spec": { "replicas": 7 }
            }),
            200,
            |v| {
                assert_eq!(v["metadata"]["generation"], 2);
                assert_eq!(v["status"]["availableReplicas"], 3);
                assert_eq!(v["spec"]["replicas"], 3, "/status ignores the spec");
            },
        ),
        case(
            "a metadata-only merge patch keeps generation",
            Method::PATCH,
            web.clone(),
            MERGE,
            json!({ "metadata": { "labels": { "team": "a" } } }),
            200,
            |v| {
                assert_eq!(v["metadata"]["generation"], 2);
                assert_eq!(v["metadata"]["labels"]["team"], "a");
                assert_eq!(v["status"]["availableReplicas"], 3, "status kept");
            },
        ),
        case(
            "a merge patch carrying a stale resourceVersion",
            Method::PATCH,
            web.clone(),
            MERGE,
            json!({ "metadata": { "resourceVersion": "1" }, "spec": { "replicas": 9 } }),
            409,
            |v| assert_eq!(v["reason"], "Conflict"),
        ),
        case(
            "a JSON patch whose test fails",
            Method::PATCH,
            web.clone(),
            JSON_PATCH,
            json!([
                { "op": "test", "path": "/spec/replicas", "value": 42 },
                { "op": "replace", "path": "/spec/replicas", "value": 4 }
            ]),
            422,
            |v| assert_eq!(v["reason"], "Invalid"),
        ),
        case(
            "a JSON patch",
            Method::PATCH,
            format!("{web}?fieldManager=kubectl-edit"),
            JSON_PATCH,
            json!([
                { "op": "test", "path": "/spec/replicas", "value": 3 },
                { "op": "replace", "path": "/spec/replicas", "value": 4 }
            ]),
            200,
            |v| {
                assert_eq!(v["spec"]["replicas"], 4);
                assert_eq!(v["metadata"]["generation"], 3);
                assert!(managers(v).iter().any(|(m, op, f)| m == "kubectl-edit"
                    && op == "Update"
                    && f["f:spec"]["f:replicas"].is_object()));
            },
        ),
        case(
            "an apply without a field manager",
            Method::PATCH,
            web.clone(),
            APPLY,
            json!({ "apiVersion": "apps/v1", "kind": "Deployment", "spec": { "replicas": 5 } }),
            400,
            |_| {},
        ),
        case(
            "an apply of a field another manager changed",
            Method::PATCH,
            format!("{web}?fieldManager=canaryd"),
            APPLY,
            json!({ "apiVersion": "apps/v1", "kind": "Deployment", "spec": { "replicas": 5 } }),
            409,
            |v| {
                assert_eq!(v["reason"], "Conflict");
                assert_eq!(v["details"]["causes"][0]["field"], ".spec.replicas");
                assert!(
                    v["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("conflict with \"kubectl-edit\"")
                );
            },
        ),
        case(
            "an apply that agrees with the owner shares the field",
            Method::PATCH,
            format!("{web}?fieldManager=canaryd"),
            APPLY,
            json!({ "apiVersion": "apps/v1", "kind": "Deployment", "spec": { "replicas": 4 } }),
            200,
            |v| {
                let m = managers(v);
                assert!(m.iter().any(|(n, op, _)| n == "canaryd" && op == "Apply"));
                assert!(
                    m.iter()
                        .any(|(n, _, f)| n == "kubectl-edit"
                            && f["f:spec"]["f:replicas"].is_object())
                );
            },
        ),
        case(
            "a forced apply takes the field over",
            Method::PATCH,
            format!("{web}?fieldManager=canaryd&force=true"),
            APPLY,
            json!({ "apiVersion": "apps/v1", "kind": "Deployment", "spec": { "replicas": 5 } }),
            200,
            |v| {
                assert_eq!(v["spec"]["replicas"], 5);
                let m = managers(v);
                assert!(
                    m.iter()
                        .any(|(n, _, f)| n == "canaryd" && f["f:spec"]["f:replicas"].is_object())
                );
                assert!(
                    !m.iter()
                        .any(|(n, _, f)| n == "kubectl-edit"
                            && f["f:spec"]["f:replicas"].is_object()),
                    "{m:?}"
                );
            },
        ),
        case(
            "the same apply again changes nothing",
            Method::PATCH,
            format!("{web}?fieldManager=canaryd"),
            APPLY,
            json!({ "apiVersion": "apps/v1", "kind": "Deployment", "spec": { "replicas": 5 } }),
            200,
            |v| assert_eq!(rv(v), "7"),
        ),
        case(
            "an apply dropping a field it owned removes it",
            Method::PATCH,
            format!("{web}?fieldManager=labeller"),
            APPLY,
            json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "labels": { "tier": "web" } } }),
            200,
            |v| assert_eq!(v["metadata"]["labels"]["tier"], "web"),
        ),
        case(
            "…then applied without it",
            Method::PATCH,
            format!("{web}?fieldManager=labeller"),
            APPLY,
            json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "labels": { "owner": "me" } } }),
            200,
            |v| {
                assert!(v["metadata"]["labels"].get("tier").is_none(), "{v}");
                assert_eq!(
                    v["metadata"]["labels"]["app"], "web",
                    "fields of other managers stay"
                );
            },
        ),
        case(
            "an apply creates a missing object",
            Method::PATCH,
            format!("{DEPLOYMENTS}/api?fieldManager=canaryd"),
            APPLY,
            deployment("api", 1),
            201,
            |v| assert_eq!(v["metadata"]["generation"], 1),
        ),
        case(
            "an apply of the wrong kind",
            Method::PATCH,
            format!("{DEPLOYMENTS}/api?fieldManager=canaryd"),
            APPLY,
            json!({ "apiVersion": "v1", "kind": "Service" }),
            400,
            |_| {},
        ),
        case(
            "owning a map is not owning its keys",
            Method::POST,
            "/apis/split.smi-spec.io/v1alpha2/namespaces/shop/trafficsplits?fieldManager=kubectl",
            JSON,
            json!({ "apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit", "metadata": { "name": "s" }, "spec": {} }),
            201,
            |_| {},
        ),
        case(
            "…so an apply inside it does not conflict",
            Method::PATCH,
            "/apis/split.smi-spec.io/v1alpha2/namespaces/shop/trafficsplits/s?fieldManager=canaryd",
            APPLY,
            json!({ "apiVersion": "split.smi-spec.io/v1alpha2", "kind": "TrafficSplit", "spec": { "service": "web" } }),
            200,
            |v| assert_eq!(v["spec"]["service"], "web"),
        ),
        case(
            "a custom resource is created",
            Method::POST,
            ROUTES,
            JSON,
            json!({ "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": { "name": "r" }, "spec": { "rules": [] } }),
            201,
            |_| {},
        ),
        case(
            "a custom resource refuses strategic merge patches",
            Method::PATCH,
            format!("{ROUTES}/r"),
            STRATEGIC,
            json!({ "spec": {} }),
            415,
            |_| {},
        ),
        case(
            "a custom resource update needs a resourceVersion",
            Method::PUT,
            format!("{ROUTES}/r"),
            JSON,
            json!({ "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": { "name": "r" }, "spec": { "rules": [{}] } }),
            422,
            |_| {},
        ),
        case(
            "list",
            Method::GET,
            format!("{DEPLOYMENTS}?labelSelector=app%3Dapi"),
            JSON,
            Value::Null,
            200,
            |v| {
                assert_eq!(v["kind"], "DeploymentList");
                assert_eq!(v["items"].as_array().map(Vec::len), Some(1));
                assert_eq!(v["items"][0]["metadata"]["name"], "api");
            },
        ),
        case(
            "delete",
            Method::DELETE,
            format!("{DEPLOYMENTS}/api"),
            JSON,
            Value::Null,
            200,
            |v| assert_eq!(v["metadata"]["name"], "api"),
        ),
        case(
            "a deleted object is gone",
            Method::GET,
            format!("{DEPLOYMENTS}/api"),
            JSON,
            Value::Null,
            404,
            |_| {},
        ),
        case(
            "an unknown resource",
            Method::GET,
            "/apis/apps/v1/namespaces/shop/statefulsets",
            JSON,
            Value::Null,
            404,
            |_| {},
        ),
    ];
    for c in cases {
        let (code, body) = call(&fake, c.method.clone(), &c.uri, c.ct, &c.body).await;
        assert_eq!(
            code, c.code,
            "{}: {} {} answered {body}",
            c.what, c.method, c.uri
        );
        (c.check)(&body);
    }
}
