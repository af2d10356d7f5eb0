//! Who may use the API and what every response carries, in process (no
//! sockets): the security headers on the dashboard and the API, the Host
//! allow-list against DNS rebinding, the Origin check on commands,
//! loopback-only reads with a read token, case-insensitive bearer schemes,
//! and deploy files shown by name.

mod common;
mod harness;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use canaryd::api::{Access, ReadAccess};
use canaryd::controller::{Event, RolloutView};
use canaryd::engine::{RolloutState, Timestamp};
use common::{SEED_FILE, spec};
use harness::api::{API_TOKEN, Api, READ_TOKEN, REMOTE_PEER, access, from, request};
use http_body_util::BodyExt;

const DEPLOY_PATH: &str = "/srv/canaryd/deploy/checkout.yaml";

fn checkout() -> RolloutView {
    let spec = spec(SEED_FILE);
    let state = RolloutState::new(&spec, Timestamp::from_millis(1_800_000_000_000));
    RolloutView::of(&spec, &state, DEPLOY_PATH)
}

fn with_host(host: &str, method: Method, uri: &str) -> axum::http::Request<Body> {
    let mut req = request(method, uri).body(Body::empty()).expect("request");
    req.headers_mut()
        .insert("host", host.parse().expect("header value"));
    req
}

#[tokio::test]
async fn every_response_carries_the_security_headers_dashboard_included() {
    let api = Api::new(access(ReadAccess::Open));
    api.put(checkout());
    let mut replies = Vec::new();
    for uri in [
        "/",
        "/rollouts/default/checkout",
        "/assets/app.js",
        "/api/v1/rollouts",
        "/api/v1/rollouts/default/checkout",
        "/api/v1/openapi.json",
        "/metrics",
        "/healthz",
        "/no/such/page",
        "/api/v1/rollouts/default/checkout/decisions?limit=abc",
    ] {
        replies.push((uri.to_string(), api.get(uri).await));
    }
    let wrong_method = request(Method::DELETE, "/api/v1/rollouts").body(Body::empty());
    replies.push((
        "DELETE".into(),
        api.send(wrong_method.expect("request")).await,
    ));
    replies.push((
        "bad host".into(),
        api.send(with_host("evil.example", Method::GET, "/")).await,
    ));
    for (what, reply) in replies {
        let h = &reply.headers;
        let csp = h["content-security-policy"].to_str().expect("ascii");
        assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
        assert!(csp.contains("script-src 'self'"), "{what}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["x-frame-options"], "DENY", "{what}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{what}");
    }
}

#[tokio::test]
async fn the_dashboard_page_has_no_inline_script_or_style_for_the_policy_to_refuse() {
    let api = Api::new(access(ReadAccess::Open));
    let page = String::from_utf8(api.get("/").await.body.to_vec()).expect("utf-8");
    assert!(page.contains("<script src=\"/assets/app.js\">"), "{page}");
    for script in page.split("<script").skip(1) {
        let tag = script.split('>').next().unwrap_or_default();
        assert!(tag.contains("src="), "inline script: <script{tag}>");
    }
    assert!(!page.contains("<style"), "inline <style>");
    assert!(!page.contains("style="), "inline style attribute");
    let handler = page.split(" on").skip(1).find(|rest| {
        let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    });
    assert!(handler.is_none(), "inline event handler: on{handler:?}");
    let theme = api.get("/assets/theme.js").await;
    assert_eq!(theme.status, StatusCode::OK);
}

#[tokio::test]
async fn a_request_for_a_host_outside_the_allow_list_is_refused_with_a_json_403() {
    let api = Api::new(access(ReadAccess::Open));
    api.put(checkout());
    for host in [
        "evil.example",
        "rebind.evil.example:9900",
        "10.0.0.5:9900",
        "127.0.0.1.evil.example",
    ] {
        for uri in ["/", "/api/v1/rollouts", "/metrics", "/api/v1/events"] {
            let reply = api.send(with_host(host, Method::GET, uri)).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{host} {uri}");
            assert_eq!(reply.error_code(), "host_not_allowed", "{host} {uri}");
        }
    }
    let post = with_host(
        "evil.example",
        Method::POST,
        "/api/v1/rollouts/default/checkout/pause",
    );
    let reply = api.send(post).await;
    assert_eq!(reply.error_code(), "host_not_allowed");
}

#[tokio::test]
async fn the_listen_address_its_loopback_names_and_the_public_url_host_are_served() {
    let api = Api::new(access(ReadAccess::Open));
    for host in [
        "127.0.0.1:9900",
        "localhost:9900",
        "[::1]:9900",
        "canaryd.example.internal",
    ] {
        let reply = api
            .send(with_host(host, Method::GET, "/api/v1/rollouts"))
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn health_probes_answer_whatever_the_host_and_the_peer() {
    let api = Api::new(access(ReadAccess::Loopback));
    for uri in ["/healthz", "/readyz"] {
        let req = from(REMOTE_PEER, with_host("10.1.2.3:9900", Method::GET, uri));
        let reply = api.send(req).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn a_command_sent_by_a_page_of_another_origin_is_refused_even_with_the_token() {
    let api = Api::new(access(ReadAccess::Open));
    api.put(checkout());
    let pause = |origin: Option<&str>| {
        let mut b = request(Method::POST, "/api/v1/rollouts/default/checkout/pause")
            .header("authorization", format!("Bearer {API_TOKEN}"));
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        b.body(Body::empty()).expect("request")
    };
    for origin in [
        "http://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
    ] {
        let reply = api.send(pause(Some(origin))).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{origin}");
        assert_eq!(reply.error_code(), "origin_not_allowed", "{origin}");
    }
    // The dashboard's own origin, and a client that sends none (the CLI).
    for origin in [Some("http://127.0.0.1:9900"), None] {
        let reply = api.send(pause(origin)).await;
        assert_eq!(reply.status, StatusCode::OK, "{origin:?}");
        assert_eq!(reply.json()["name"], "checkout");
    }
}

#[tokio::test]
async fn a_lowercase_or_uppercase_bearer_scheme_is_accepted() {
    let api = Api::new(access(ReadAccess::Open));
    api.put(checkout());
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let req = request(Method::POST, "/api/v1/rollouts/default/checkout/pause")
            .header("authorization", format!("{scheme} {API_TOKEN}"))
            .body(Body::empty())
            .expect("request");
        let reply = api.send(req).await;
        assert_eq!(reply.status, StatusCode::OK, "{scheme}");
    }
    let wrong = request(Method::POST, "/api/v1/rollouts/default/checkout/pause")
        .header("authorization", "bearer nope")
        .body(Body::empty())
        .expect("request");
    assert_eq!(api.send(wrong).await.error_code(), "forbidden");
    let none = request(Method::POST, "/api/v1/rollouts/default/checkout/pause")
        .body(Body::empty())
        .expect("request");
    let reply = api.send(none).await;
    assert_eq!(reply.error_code(), "unauthorized");
    assert!(
        reply.headers["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("Bearer")
    );
}

#[tokio::test]
async fn with_loopback_reads_another_machine_needs_the_read_or_api_token() {
    let api = Api::new(access(ReadAccess::Loopback));
    api.put(checkout());
    let read = |auth: Option<&str>, uri: &str| {
        let mut b = request(Method::GET, uri);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        from(REMOTE_PEER, b.body(Body::empty()).expect("request"))
    };
    for uri in ["/", "/api/v1/rollouts", "/metrics", "/api/v1/events"] {
        let reply = api.send(read(None, uri)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(reply.error_code(), "unauthorized");
        let reply = api.send(read(Some("Bearer guess"), uri)).await;
        assert_eq!(reply.error_code(), "forbidden", "{uri}");
    }
    for token in [READ_TOKEN, API_TOKEN] {
        let reply = api
            .send(read(Some(&format!("bearer {token}")), "/api/v1/rollouts"))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // On this machine, no token is needed.
    assert_eq!(api.get("/api/v1/rollouts").await.status, StatusCode::OK);
    // The read token does not allow commands.
    let pause = request(Method::POST, "/api/v1/rollouts/default/checkout/pause")
        .header("authorization", format!("Bearer {READ_TOKEN}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(
        api.send(from(REMOTE_PEER, pause)).await.error_code(),
        "forbidden"
    );
}

#[tokio::test]
async fn with_open_reads_another_machine_reads_without_a_token() {
    let api = Api::new(access(ReadAccess::Open));
    let req = from(
        REMOTE_PEER,
        request(Method::GET, "/api/v1/rollouts")
            .body(Body::empty())
            .expect("request"),
    );
    assert_eq!(api.send(req).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_rollout_shows_its_deploy_file_by_name_and_the_path_only_to_the_token_holder() {
    let api = Api::new(access(ReadAccess::Open));
    let mut view = checkout();
    view.file_error = Some("error: bad\n  --> checkout.yaml:3:1".into());
    api.put(view);
    for uri in ["/api/v1/rollouts", "/api/v1/rollouts/default/checkout"] {
        let body = String::from_utf8(api.get(uri).await.body.to_vec()).expect("utf-8");
        assert!(!body.contains("/srv/canaryd"), "{uri}: {body}");
        assert!(body.contains("\"file\":\"checkout.yaml\""), "{uri}: {body}");
    }
    let uri = "/api/v1/rollouts/default/checkout?full_path=true";
    assert_eq!(api.get(uri).await.error_code(), "unauthorized");
    let with_token = request(Method::GET, uri)
        .header("authorization", format!("Bearer {API_TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let reply = api.send(with_token).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["file_path"], DEPLOY_PATH);
    assert_eq!(reply.json()["file"], "checkout.yaml");
    let read_token = request(Method::GET, uri)
        .header("authorization", format!("Bearer {READ_TOKEN}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(api.send(read_token).await.error_code(), "forbidden");
}

#[tokio::test]
async fn the_event_stream_names_a_rejected_file_without_its_directory() {
    let api = Api::new(access(ReadAccess::Open));
    let req = request(Method::GET, "/api/v1/events")
        .body(Body::empty())
        .expect("request");
    let response = tower::ServiceExt::oneshot(api.app.clone(), from("127.0.0.1:1", req))
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    api.state.view.publish(Event::FileRejected {
        file: DEPLOY_PATH.into(),
        errors: format!("error: `5 %` is not a percentage\n  --> {DEPLOY_PATH}:12:15"),
    });
    let mut body = response.into_body();
    let mut seen = String::new();
    while !seen.contains("\n\n") {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .expect("a frame")
            .expect("no error");
        if let Some(data) = frame.data_ref() {
            seen.push_str(&String::from_utf8_lossy(data));
        }
    }
    assert!(seen.starts_with("event: file_rejected"), "{seen}");
    assert!(seen.contains("checkout.yaml:12:15"), "{seen}");
    assert!(!seen.contains("/srv/canaryd"), "{seen}");
}

#[tokio::test]
async fn an_api_open_to_every_host_still_sends_the_headers() {
    let api = Api::new(Access::open());
    let reply = api
        .send(with_host(
            "anything.example",
            Method::GET,
            "/api/v1/rollouts",
        ))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["x-frame-options"], "DENY");
}
