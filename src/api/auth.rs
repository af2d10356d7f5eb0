//! Bearer tokens: `Authorization: Bearer <token>`, the scheme matched without
//! regard to case (RFC 7235 §2.1), the token compared in constant time. An
//! API token (`CANARYD_API_TOKEN`, or a named one of `api_tokens`) allows
//! commands and everything else; the read token (`CANARYD_READ_TOKEN`)
//! allows reads where reads are restricted.

use axum::http::{HeaderMap, header};

use super::error::{ApiError, ErrorCode};
use super::tokens::{ApiTokens, same};

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

/// A command needs an API token: the name of the one given.
pub fn authorize_command(tokens: &ApiTokens, headers: &HeaderMap) -> Result<String, ApiError> {
    if tokens.is_empty() {
        return Err(ApiError::new(
            ErrorCode::CommandsDisabled,
            "commands are disabled: start canaryd with CANARYD_API_TOKEN or api_tokens set",
        ));
    }
    let given = given(headers, "an API token of the daemon")?;
    match tokens.identify(given) {
        Some(name) => Ok(name.to_string()),
        None => Err(wrong()),
    }
}

/// A restricted read needs the read token or an API token.
pub fn authorize_read(
    tokens: &ApiTokens,
    read_token: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), ApiError> {
    let given = given(
        headers,
        "reads from this address need CANARYD_READ_TOKEN or an API token",
    )?;
    // Both are compared, so the time taken does not say which matched.
    let read = read_token.is_some_and(|t| same(given.as_bytes(), t.as_bytes()));
    let api = tokens.identify(given).is_some();
    if read | api { Ok(()) } else { Err(wrong()) }
}

fn given<'h>(headers: &'h HeaderMap, which: &str) -> Result<&'h str, ApiError> {
    bearer(headers).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            format!("send `Authorization: Bearer <token>` ({which})"),
        )
    })
}

fn wrong() -> ApiError {
    ApiError::new(ErrorCode::Forbidden, "wrong token")
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
        let (api, read) = (ApiTokens::single("api-t"), Some("read-t"));
        assert!(authorize_read(&api, read, &with("Bearer read-t")).is_ok());
        assert!(authorize_read(&api, read, &with("bearer api-t")).is_ok());
        let wrong = authorize_read(&api, read, &with("Bearer nope")).expect_err("wrong");
        assert_eq!(wrong.code(), ErrorCode::Forbidden);
        let none = authorize_read(&api, read, &HeaderMap::new()).expect_err("none");
        assert_eq!(none.code(), ErrorCode::Unauthorized);
        // No token configured: nothing matches, not even an empty one.
        let unset =
            authorize_read(&ApiTokens::default(), None, &with("Bearer x")).expect_err("unset");
        assert_eq!(unset.code(), ErrorCode::Forbidden);
    }

    #[test]
    fn the_read_token_does_not_allow_commands() {
        let api = ApiTokens::single("api-t");
        let refused = authorize_command(&api, &with("Bearer read-t")).expect_err("read token");
        assert_eq!(refused.code(), ErrorCode::Forbidden);
        let disabled =
            authorize_command(&ApiTokens::default(), &with("Bearer x")).expect_err("no token");
        assert_eq!(disabled.code(), ErrorCode::CommandsDisabled);
    }

    #[test]
    fn a_command_is_attributed_to_the_name_of_its_token() {
        let api = ApiTokens::named([
            ("alice".to_string(), "a-t".to_string()),
            ("ci".to_string(), "c-t".to_string()),
        ])
        .expect("tokens");
        assert_eq!(
            authorize_command(&api, &with("Bearer c-t")).ok(),
            Some("ci".into())
        );
        assert_eq!(
            authorize_command(&api, &with("Bearer a-t")).ok(),
            Some("alice".into())
        );
    }
}
