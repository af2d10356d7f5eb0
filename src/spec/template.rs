//! PromQL query templates: `{{placeholder}}`s filled per rollout and track.
//!
//! Label values (`service`, `namespace`, `rollout`, `version`, `track`) may be
//! anything, so they are only accepted inside a double-quoted PromQL string,
//! where they are escaped; inside the operand of `=~`/`!~` they are also
//! regex-escaped, so `v1.2` matches only `v1.2`. `window` is a PromQL range
//! and `track_selector` the policy's own matcher text for the track; both go
//! outside quotes, verbatim.

use std::time::Duration;

use serde::Serialize;

use super::units::promql_duration;

/// The placeholders a query template may use.
pub const PLACEHOLDERS: [&str; 7] = [
    "service",
    "namespace",
    "rollout",
    "version",
    "track",
    "window",
    "track_selector",
];

/// The placeholders that stand for label values (quoted and escaped).
const VALUES: [&str; 5] = ["service", "namespace", "rollout", "version", "track"];

/// A PromQL text with `{{placeholder}}`s, checked to use only known ones, each
/// in a place where its value cannot change the query.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct QueryTemplate(String);

/// Why a template is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// `{{name}}` where `name` is not a placeholder.
    Unknown {
        /// The name written.
        name: String,
        /// Byte offset of the `{{`.
        offset: usize,
    },
    /// `{{` without `}}`.
    Unclosed {
        /// Byte offset of the `{{`.
        offset: usize,
    },
    /// A label-value placeholder outside a double-quoted string, or `window` /
    /// `track_selector` inside one.
    Misplaced {
        /// The placeholder.
        name: String,
        /// Byte offset of the `{{`.
        offset: usize,
    },
}

/// The values that fill a template for one track of one rollout.
#[derive(Clone, Debug)]
pub struct TemplateVars<'a> {
    /// `service` (the rollout name).
    pub service: &'a str,
    /// `namespace`.
    pub namespace: &'a str,
    /// `version` of the track measured.
    pub version: &'a str,
    /// `track`: `canary` or `stable`.
    pub track: &'a str,
    /// `window`: the PromQL range.
    pub window: Duration,
    /// `track_selector`: the policy's matchers for this track (may be empty).
    pub track_selector: &'a str,
}

/// Where a placeholder stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    /// Outside any string.
    Bare,
    /// Inside `"…"`.
    Quoted,
    /// Inside `"…"` that is the operand of `=~` or `!~`.
    QuotedRegex,
    /// Inside `'…'` or `` `…` ``, where no escaping canaryd does is safe.
    OtherString,
}

enum Piece<'a> {
    Text(&'a str),
    Var {
        name: &'a str,
        offset: usize,
        context: Context,
    },
}

impl QueryTemplate {
    /// Checks the placeholders of `text` and where they stand.
    pub fn parse(text: &str) -> Result<QueryTemplate, TemplateError> {
        for piece in pieces(text) {
            if let Piece::Var {
                name,
                offset,
                context,
            } = piece?
            {
                if !PLACEHOLDERS.contains(&name) {
                    return Err(TemplateError::Unknown {
                        name: name.to_string(),
                        offset,
                    });
                }
                let quoted = matches!(context, Context::Quoted | Context::QuotedRegex);
                if VALUES.contains(&name) != quoted {
                    return Err(TemplateError::Misplaced {
                        name: name.to_string(),
                        offset,
                    });
                }
            }
        }
        Ok(QueryTemplate(text.trim().to_string()))
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Fills the placeholders; label values are escaped for their string.
    pub fn render(&self, vars: &TemplateVars<'_>) -> String {
        let mut out = String::with_capacity(self.0.len() + 32);
        for piece in pieces(&self.0).flatten() {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var { name, context, .. } => {
                    let value = match name {
                        "service" | "rollout" => vars.service,
                        "namespace" => vars.namespace,
                        "version" => vars.version,
                        "track" => vars.track,
                        "window" => {
                            out.push_str(&promql_duration(vars.window));
                            continue;
                        }
                        "track_selector" => {
                            out.push_str(vars.track_selector);
                            continue;
                        }
                        _ => continue,
                    };
                    match context {
                        Context::QuotedRegex => {
                            out.push_str(&escape_label_value(&escape_regex(value)));
                        }
                        _ => out.push_str(&escape_label_value(value)),
                    }
                }
            }
        }
        out
    }
}

/// Escapes a value for use inside a double-quoted PromQL string literal.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Escapes RE2 metacharacters, so a value matches only itself.
pub fn escape_regex(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits `text` into text and placeholders, tracking which PromQL string (if
/// any) each placeholder stands in.
fn pieces(text: &str) -> impl Iterator<Item = Result<Piece<'_>, TemplateError>> {
    let mut rest = 0usize;
    let mut scan = Scanner::default();
    std::iter::from_fn(move || {
        if rest >= text.len() {
            return None;
        }
        let tail = &text[rest..];
        match tail.find("{{") {
            Some(0) => {
                let offset = rest;
                let Some(end) = tail.find("}}") else {
                    rest = text.len();
                    return Some(Err(TemplateError::Unclosed { offset }));
                };
                rest += end + 2;
                Some(Ok(Piece::Var {
                    name: tail[2..end].trim(),
                    offset,
                    context: scan.context(),
                }))
            }
            found => {
                let len = found.unwrap_or(tail.len());
                rest += len;
                scan.feed(&tail[..len]);
                Some(Ok(Piece::Text(&tail[..len])))
            }
        }
    })
}

/// A PromQL lexer reduced to what matters here: strings and the operator
/// before a double-quoted one.
#[derive(Default)]
struct Scanner {
    /// The open string's quote, if inside one.
    quote: Option<char>,
    /// The character after a backslash inside a string is skipped.
    escaped: bool,
    /// Whether the open `"` string follows `=~` or `!~`.
    regex: bool,
    /// The last two non-blank characters outside strings.
    last: [char; 2],
}

impl Scanner {
    fn feed(&mut self, text: &str) {
        for c in text.chars() {
            match self.quote {
                Some(_) if self.escaped => self.escaped = false,
                Some(q) if c == '\\' && q != '`' => self.escaped = true,
                Some(q) if c == q => self.quote = None,
                Some(_) => {}
                None if matches!(c, '"' | '\'' | '`') => {
                    self.regex = self.last == ['=', '~'] || self.last == ['!', '~'];
                    self.quote = Some(c);
                }
                None if c.is_whitespace() => {}
                None => self.last = [self.last[1], c],
            }
        }
    }

    fn context(&self) -> Context {
        match self.quote {
            None => Context::Bare,
            Some('"') if self.regex => Context::QuotedRegex,
            Some('"') => Context::Quoted,
            Some(_) => Context::OtherString,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(service: &'a str, version: &'a str) -> TemplateVars<'a> {
        TemplateVars {
            service,
            namespace: "default",
            version,
            track: "canary",
            window: Duration::from_secs(30),
            track_selector: r#"canary!="""#,
        }
    }

    #[test]
    fn hostile_label_values_cannot_close_their_string() {
        let t = QueryTemplate::parse(r#"up{version="{{version}}"}"#).expect("valid");
        let q = t.render(&vars("svc", "v1\"} or vector(1) or up{x=\"\\\n"));
        assert_eq!(q, r#"up{version="v1\"} or vector(1) or up{x=\"\\\n"}"#);
    }

    #[test]
    fn values_in_regex_matchers_match_only_themselves() {
        let t =
            QueryTemplate::parse(r#"up{version=~"{{version}}|{{version}}-.*", x="{{version}}"}"#)
                .expect("valid");
        let q = t.render(&vars("svc", "v1.2+b"));
        assert_eq!(q, r#"up{version=~"v1\\.2\\+b|v1\\.2\\+b-.*", x="v1.2+b"}"#);
    }

    #[test]
    fn values_outside_double_quotes_are_refused() {
        for text in [
            "up{version='{{version}}'}",
            "up{version=`{{version}}`}",
            "up{version={{version}}}",
            r#"rate(up{x="{{window}}"}[5m])"#,
            r#"up{x="{{track_selector}}"}"#,
        ] {
            assert!(
                matches!(
                    QueryTemplate::parse(text),
                    Err(TemplateError::Misplaced { .. })
                ),
                "{text}"
            );
        }
        // A quote inside another string, or an escaped one, does not confuse it.
        let ok = r#"label_replace(up{a="x'\"y", b="{{service}}"}, "l", "'", "", "")[{{window}}:]"#;
        assert!(QueryTemplate::parse(ok).is_ok());
        let selector = r#"up{a="{{service}}", {{track_selector}}}"#;
        assert_eq!(
            QueryTemplate::parse(selector)
                .expect("valid")
                .render(&vars("web", "v1")),
            r#"up{a="web", canary!=""}"#
        );
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        assert_eq!(
            QueryTemplate::parse("up{v=\"{{versoin}}\"}"),
            Err(TemplateError::Unknown {
                name: "versoin".into(),
                offset: 6
            })
        );
        assert_eq!(
            QueryTemplate::parse("up{{"),
            Err(TemplateError::Unclosed { offset: 2 })
        );
    }
}
