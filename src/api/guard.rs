//! Who may use the API, checked before any handler, and the security headers
//! put on every response:
//!
//! * **Host allow-list** (against DNS rebinding): a request whose `Host` is
//!   not allowed gets `403 host_not_allowed`. Allowed by default: the listen
//!   address; `localhost`, `127.0.0.1` and `[::1]` when it is a loopback
//!   address; any IP literal when it is `0.0.0.0` or `[::]` (a rebinding
//!   needs a name); the host of `public_url`; and `allowed_hosts`. Ports are
//!   not compared (port forwarding and proxies change them).
//! * **Origin**: a request that changes state (not GET/HEAD/OPTIONS) sent by a
//!   web page whose `Origin` host is not allowed gets `403 origin_not_allowed`.
//! * **Read access**: with `read_access: loopback`, reads from a peer that is
//!   not on loopback need the read token or the API token.
//!
//! `/healthz` and `/readyz` are exempt from all three (they reveal nothing),
//! so probes work from anywhere; `/metrics` is a read like any other.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::auth::authorize_read;
use super::error::{ApiError, ErrorCode};

/// Who may read (GET) from the API, the dashboard and `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ReadAccess {
    /// Anyone who can connect (and passes the Host check).
    #[default]
    Open,
    /// Peers on loopback; others need the read token or the API token.
    Loopback,
}

/// The access rules of one API server.
#[derive(Clone, Debug)]
pub struct Access {
    /// Which `Host` (and `Origin`) names are served.
    pub hosts: HostAllowList,
    /// Who may read.
    pub reads: ReadAccess,
    /// The token that allows reads where they are restricted (`CANARYD_READ_TOKEN`).
    pub read_token: Option<String>,
}

impl Access {
    /// No restriction at all (tests of other behaviour).
    pub fn open() -> Access {
        Access {
            hosts: HostAllowList::any(),
            reads: ReadAccess::Open,
            read_token: None,
        }
    }
}

/// The names a request's `Host` may carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostAllowList {
    any: bool,
    any_ip: bool,
    names: BTreeSet<String>,
}

impl HostAllowList {
    /// Every host (`allowed_hosts: "*"`).
    pub fn any() -> HostAllowList {
        HostAllowList {
            any: true,
            ..HostAllowList::default()
        }
    }

    /// The defaults for a server listening on `listen` and reached at
    /// `public_url`, plus `extra` names (`*` allows every host).
    pub fn for_listener(
        listen: SocketAddr,
        public_url: Option<&str>,
        extra: &[String],
    ) -> Result<HostAllowList, String> {
        let mut list = HostAllowList::default();
        let ip = listen.ip().to_canonical();
        if ip.is_unspecified() {
            list.any_ip = true;
            list.names.insert("localhost".into());
        } else {
            list.names.insert(ip.to_string());
            if ip.is_loopback() {
                list.names
                    .extend(["localhost", "127.0.0.1", "::1"].map(String::from));
            }
        }
        if let Some(url) = public_url.map(str::trim).filter(|u| !u.is_empty()) {
            let host = reqwest::Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().and_then(hostname))
                .ok_or_else(|| format!("public_url: `{url}` has no host"))?;
            list.names.insert(host);
        }
        for entry in extra.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            if entry == "*" {
                list.any = true;
            } else {
                let name = hostname(entry)
                    .ok_or_else(|| format!("allowed_hosts: `{entry}` is not a host name"))?;
                list.names.insert(name);
            }
        }
        Ok(list)
    }

    /// Whether a `Host` value (`name`, `name:port`, `[v6]:port`) is allowed.
    pub fn allows(&self, host: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(name) = hostname(host) else {
            return false;
        };
        (self.any_ip && name.parse::<IpAddr>().is_ok()) || self.names.contains(&name)
    }

    /// For the startup log.
    pub fn describe(&self) -> String {
        if self.any {
            return "*".into();
        }
        let mut parts: Vec<String> = self.names.iter().cloned().collect();
        if self.any_ip {
            parts.push("any IP address".into());
        }
        parts.join(", ")
    }
}

/// The lowercase name of a `Host` value or allow-list entry, without port,
/// brackets or trailing dot; `None` when it is not a plausible host.
fn hostname(authority: &str) -> Option<String> {
    let authority = authority.trim();
    let name = if let Some(rest) = authority.strip_prefix('[') {
        // [v6] or [v6]:port
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        inside
    } else if authority.matches(':').count() > 1 {
        authority // a bare IPv6 address (an allow-list entry)
    } else {
        authority.split(':').next()?
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let plausible = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    plausible.then_some(name)
}

/// Paths that answer whatever the Host, the Origin or the peer.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

/// The middleware: Host, Origin and read access, before any handler.
pub async fn guard(State(s): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    match check(&s, &req) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

fn check(s: &ApiState, req: &Request) -> Result<(), ApiError> {
    if PROBES.contains(&req.uri().path()) {
        return Ok(());
    }
    let access = &s.access;
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    match host {
        Some(h) if access.hosts.allows(h) => {}
        Some(_) => {
            return Err(ApiError::new(
                ErrorCode::HostNotAllowed,
                "this Host is not served here; add it to allowed_hosts (CANARYD_ALLOWED_HOSTS)",
            ));
        }
        None => return Err(ApiError::new(ErrorCode::BadRequest, "no Host header")),
    }
    let reads = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !reads {
        return check_origin(&access.hosts, req.headers());
    }
    if access.reads == ReadAccess::Loopback && !from_loopback(req) {
        authorize_read(&s.tokens, access.read_token.as_deref(), req.headers())?;
    }
    Ok(())
}

/// A browser names the page that sent a request in `Origin`; other clients
/// send none, and are not refused for it.
fn check_origin(hosts: &HostAllowList, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let allowed = origin
        .to_str()
        .ok()
        .and_then(|o| reqwest::Url::parse(o).ok())
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .and_then(|u| u.host_str().map(|h| hosts.allows(h)))
        .unwrap_or(false);
    if allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::OriginNotAllowed,
            "requests from this origin may not change anything",
        ))
    }
}

fn from_loopback(req: &Request) -> bool {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().to_canonical().is_loopback())
}

/// The dashboard's Content-Security-Policy: its scripts and styles are files
/// under `/assets/` (no inline code), it talks to its own origin only, and
/// no page may frame it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// Puts the security headers on a response (every response of the API server).
pub async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ];
    for (name, value) in set {
        headers.insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn a_loopback_listener_serves_its_address_and_the_localhost_names_only() {
        let list = HostAllowList::for_listener(addr("127.0.0.1:9900"), None, &[]).expect("list");
        for host in [
            "127.0.0.1:9900",
            "localhost:9900",
            "LOCALHOST",
            "[::1]:9900",
            "localhost.",
        ] {
            assert!(list.allows(host), "{host}");
        }
        for host in [
            "evil.example:9900",
            "10.0.0.5",
            "127.0.0.1.evil.example",
            "",
            "[::1",
        ] {
            assert!(!list.allows(host), "{host}");
        }
    }

    #[test]
    fn a_wildcard_listener_serves_any_ip_address_but_no_unlisted_name() {
        let list = HostAllowList::for_listener(addr("0.0.0.0:9900"), None, &[]).expect("list");
        assert!(list.allows("10.1.2.3:9900") && list.allows("[fd00::1]:9900"));
        assert!(!list.allows("rebind.evil.example:9900"));
    }

    #[test]
    fn public_url_and_allowed_hosts_add_names_and_a_star_allows_all() {
        let list = HostAllowList::for_listener(
            addr("10.0.0.2:9900"),
            Some("https://Canaryd.Example.internal/base"),
            &["ops.example.com:443".into(), "fd00::7".into()],
        )
        .expect("list");
        for host in [
            "10.0.0.2",
            "canaryd.example.internal",
            "ops.example.com",
            "[fd00::7]:80",
        ] {
            assert!(list.allows(host), "{host}");
        }
        assert!(!list.allows("localhost"), "not a loopback listener");
        let star =
            HostAllowList::for_listener(addr("10.0.0.2:9900"), None, &["*".into()]).expect("list");
        assert!(star.allows("anything.example"));
        let bad = HostAllowList::for_listener(addr("10.0.0.2:9900"), None, &["a b".into()]);
        assert!(bad.is_err());
    }
}
