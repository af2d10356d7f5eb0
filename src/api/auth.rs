//! Bearer tokens: `Authorization: Bearer <token>`, the scheme matched without
//! regard to case (RFC 7235 §2.1), the token compared in constant time. The
//! API token (`CANARYD_API_TOKEN`) allows commands and everything else; the
//! read token (`CANARYD_READ_TOKEN`) allows reads where reads are restricted.

use axum::http::{HeaderMap, header};

use super::error::{ApiError, ErrorCode};

/// The token of an `Authorization: Bearer …` header; `None` without one (or
/// with another scheme).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Constant-time comparison, so a token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `given` is one of the `accepted` tokens (unset ones never match).
fn matches(given: &str, accepted: &[Option<&str>]) -> bool {
    // Every token is compared, so the time taken does not say which matched.
    accepted.iter().flatten().fold(false, |found, t| {
        same(given.as_bytes(), t.as_bytes()) | found
    })
}

/// A command needs the API token.
pub fn authorize_command(api_token: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    if api_token.is_none() {
        return Err(ApiError::new(
            ErrorCode::CommandsDisabled,
            "commands are disabled: start canaryd with CANARYD_API_TOKEN set",
        ));
    }
    check(
        bearer(headers),
        &[api_token],
        "the daemon's CANARYD_API_TOKEN",
    )
}

/// A restricted read needs the read token or the API token.
pub fn authorize_read(
    api_token: Option<&str>,
    read_token: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    check(
        bearer(headers),
        &[read_token, api_token],
        "reads from this address need CANARYD_READ_TOKEN or CANARYD_API_TOKEN",
    )
}

fn check(given: Option<&str>, accepted: &[Option<&str>], which: &str) -> Result<(), ApiError> {
    match given {
        None => Err(ApiError::new(
            ErrorCode::Unauthorized,
            format!("send `Authorization: Bearer <token>` ({which})"),
        )),
        Some(t) if matches(t, accepted) => Ok(()),
        Some(_) => Err(ApiError::new(ErrorCode::Forbidden, "wrong token")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    #[test]
    fn the_bearer_scheme_is_matched_whatever_its_case_and_spacing() {
        for value in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k "] {
            assert_eq!(bearer(&with(value)), Some("t0k"), "{value}");
        }
    }

    #[test]
    fn another_scheme_or_an_empty_token_is_no_bearer_token() {
        for value in [
            "Basic dXNlcjpwYXNz",
            "Bearer",
            "Bearer   ",
            "Bearert0k",
            "t0k",
        ] {
            assert_eq!(bearer(&with(value)), None, "{value}");
        }
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn a_read_is_allowed_by_either_token_and_refused_by_a_wrong_one() {
        let (api, read) = (Some("api-t"), Some("read-t"));
        assert!(authorize_read(api, read, &with("Bearer read-t")).is_ok());
        assert!(authorize_read(api, read, &with("bearer api-t")).is_ok());
        let wrong = authorize_read(api, read, &with("Bearer nope")).expect_err("wrong");
        assert_eq!(wrong.code(), ErrorCode::Forbidden);
        let none = authorize_read(api, read, &HeaderMap::new()).expect_err("none");
        assert_eq!(none.code(), ErrorCode::Unauthorized);
        // No token configured: nothing matches, not even an empty one.
        let unset = authorize_read(None, None, &with("Bearer x")).expect_err("unset");
        assert_eq!(unset.code(), ErrorCode::Forbidden);
    }

    #[test]
    fn the_read_token_does_not_allow_commands() {
        let refused =
            authorize_command(Some("api-t"), &with("Bearer read-t")).expect_err("read token");
        assert_eq!(refused.code(), ErrorCode::Forbidden);
        let disabled = authorize_command(None, &with("Bearer x")).expect_err("no token");
        assert_eq!(disabled.code(), ErrorCode::CommandsDisabled);
    }
}
