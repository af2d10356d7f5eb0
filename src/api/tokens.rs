//! The API tokens, each with a name: `CANARYD_API_TOKEN` alone is the token
//! named `default`; `api_tokens` (`CANARYD_API_TOKENS`) adds named ones, so
//! the decision log says whose token issued each command. Only names are
//! ever shown; a token given is compared with every configured one in
//! constant time, so neither its bytes nor which one matched leak through
//! timing.

use thiserror::Error;

/// The name of the token set by `CANARYD_API_TOKEN`.
pub const DEFAULT_NAME: &str = "default";

/// Longest token name: it is shown in the decision log and the dashboard.
const MAX_NAME_LEN: usize = 64;

/// The configured API tokens (none: commands are disabled).
#[derive(Clone, Default)]
pub struct ApiTokens {
    tokens: Vec<NamedToken>,
}

#[derive(Clone)]
struct NamedToken {
    name: String,
    secret: String,
}

/// Why a set of tokens was refused at startup.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// A name is empty, too long or not lowercase letters, digits, `-`, `_`, `.`.
    #[error("API token name `{0}`: use 1 to 64 lowercase letters, digits, `-`, `_` or `.`")]
    BadName(String),
    /// Two tokens have the same name.
    #[error("API token name `{0}` is used twice")]
    DuplicateName(String),
    /// A token is empty (an empty one would let an empty `Bearer` through).
    #[error("API token `{0}` is empty")]
    Empty(String),
    /// Two names share one token, so the log could not tell them apart.
    #[error("API tokens `{0}` and `{1}` are the same token")]
    SameToken(String, String),
}

impl ApiTokens {
    /// One token, named `default` (`CANARYD_API_TOKEN`).
    pub fn single(secret: impl Into<String>) -> ApiTokens {
        ApiTokens {
            tokens: vec![NamedToken {
                name: DEFAULT_NAME.into(),
                secret: secret.into(),
            }],
        }
    }

    /// Named tokens, checked: valid distinct names, non-empty distinct tokens.
    pub fn named(
        tokens: impl IntoIterator<Item = (String, String)>,
    ) -> Result<ApiTokens, TokenError> {
        let mut checked: Vec<NamedToken> = Vec::new();
        for (name, secret) in tokens {
            let valid = !name.is_empty()
                && name.len() <= MAX_NAME_LEN
                && name.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
                });
            if !valid {
                return Err(TokenError::BadName(name));
            }
            if secret.trim().is_empty() {
                return Err(TokenError::Empty(name));
            }
            for other in &checked {
                if other.name == name {
                    return Err(TokenError::DuplicateName(name));
                }
                if other.secret == secret {
                    return Err(TokenError::SameToken(other.name.clone(), name));
                }
            }
            checked.push(NamedToken { name, secret });
        }
        Ok(ApiTokens { tokens: checked })
    }

    /// Whether no token is configured (commands are disabled).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().map(|t| t.name.as_str())
    }

    /// The name of the token `given` is, if any. Every token is compared
    /// whole whatever matched, so the time taken says nothing.
    pub fn identify(&self, given: &str) -> Option<&str> {
        let mut found = None;
        for t in &self.tokens {
            // No early exit: the loop visits every token.
            let hit = same(given.as_bytes(), t.secret.as_bytes());
            found = if hit { Some(t.name.as_str()) } else { found };
        }
        found
    }
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: a token never reaches a log.
        f.debug_list().entries(self.names()).finish()
    }
}

/// Constant-time comparison, so a token cannot be guessed byte by byte:
/// every byte of the longer input is visited, whatever differs first.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> ApiTokens {
        ApiTokens::named([
            ("alice".to_string(), "a-secret".to_string()),
            ("ci".to_string(), "c-secret".to_string()),
        ])
        .expect("valid")
    }

    #[test]
    fn a_token_is_identified_by_its_name_and_a_wrong_one_by_none() {
        let tokens = two();
        assert_eq!(tokens.identify("a-secret"), Some("alice"));
        assert_eq!(tokens.identify("c-secret"), Some("ci"));
        for wrong in ["", "a-secre", "a-secret2", "A-SECRET", "c-secret "] {
            assert_eq!(tokens.identify(wrong), None, "{wrong:?}");
        }
        assert_eq!(ApiTokens::default().identify(""), None);
        assert_eq!(ApiTokens::single("t").identify("t"), Some(DEFAULT_NAME));
    }

    #[test]
    fn comparison_is_exact_whatever_the_lengths() {
        assert!(same(b"abc", b"abc"));
        assert!(same(b"", b""));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"ab", b"abc"));
        assert!(!same(b"ab\0", b"ab"));
    }

    #[test]
    fn bad_names_duplicates_empty_and_shared_tokens_are_refused() {
        let named = |pairs: &[(&str, &str)]| {
            ApiTokens::named(pairs.iter().map(|(n, s)| (n.to_string(), s.to_string())))
        };
        for bad in ["", "Alice", "a b", "a/b", &"x".repeat(65)] {
            assert_eq!(
                named(&[(bad, "s")]).map(|_| ()),
                Err(TokenError::BadName(bad.to_string()))
            );
        }
        assert_eq!(
            named(&[("a", "s1"), ("a", "s2")]).map(|_| ()),
            Err(TokenError::DuplicateName("a".into()))
        );
        assert_eq!(
            named(&[("a", "  ")]).map(|_| ()),
            Err(TokenError::Empty("a".into()))
        );
        assert_eq!(
            named(&[("a", "s"), ("b", "s")]).map(|_| ()),
            Err(TokenError::SameToken("a".into(), "b".into()))
        );
    }

    #[test]
    fn debug_output_shows_names_and_never_tokens() {
        let shown = format!("{:?}", two());
        assert_eq!(shown, r#"["alice", "ci"]"#);
    }
}
