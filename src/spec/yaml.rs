//! A YAML document as a tree of nodes that remember where they came from.
//!
//! serde-saphyr parses the text; this module keeps every key, value and
//! sequence item together with its line and column so that the decoder can
//! report *all* problems of a file at once, each pointing at the exact spot.
//! The same tree is built from JSON (the Kubernetes carrier) without positions.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based line and column in a source file; `0:0` when unknown (JSON input).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line number.
    pub line: u32,
    /// 1-based column number.
    pub column: u32,
}

impl Pos {
    /// A position that is not known (values that did not come from a YAML file).
    pub const UNKNOWN: Pos = Pos { line: 0, column: 0 };

    fn from_location(loc: &serde_saphyr::Location) -> Pos {
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        }
    }
}

/// A node of the tree: a value and its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What the node holds.
    pub value: Value,
    /// Where the node starts.
    pub pos: Pos,
}

/// The shape of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `~`, `null` or an empty value.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// A number, kept with the text it was written as.
    Number(f64, String),
    /// Any other scalar.
    String(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping; keys keep their own positions and their order, duplicates included.
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The key as text.
    pub name: String,
    /// Where the key is written.
    pub pos: Pos,
}

impl Value {
    /// A short noun for the kind of value, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "nothing",
            Value::Bool(_) => "a boolean",
            Value::Number(..) => "a number",
            Value::String(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// What the parser said, without its own snippet.
    pub message: String,
    /// Where it happened.
    pub pos: Pos,
}

/// Parses YAML text into a positioned tree.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.trim().is_empty() {
        return Ok(Node {
            value: Value::Null,
            pos: Pos { line: 1, column: 1 },
        });
    }
    let mut options = serde_saphyr::Options::default();
    // Duplicate keys reach our visitor so the decoder reports them with the others.
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    // YAML 1.2 booleans only: the seed's `on:` key must stay the word "on".
    options.strict_booleans = true;
    match serde_saphyr::from_str_with_options::<Spanned<Raw>>(text, options) {
        Ok(spanned) => Ok(into_node(spanned, text)),
        Err(err) => {
            let pos = err
                .location()
                .map(|l| Pos::from_location(&l))
                .unwrap_or(Pos { line: 1, column: 1 });
            Err(SyntaxError {
                message: first_line(&err.without_snippet().to_string()),
                pos,
            })
        }
    }
}

/// Builds a tree without positions from JSON (the custom resource carrier).
pub fn from_json(value: &serde_json::Value) -> Node {
    let value = match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => {
            Value::Number(n.as_f64().unwrap_or(f64::NAN), n.to_string())
        }
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(items) => Value::Seq(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Value::Map(
            map.iter()
                .map(|(k, v)| {
                    (
                        Key {
                            name: k.clone(),
                            pos: Pos::UNKNOWN,
                        },
                        from_json(v),
                    )
                })
                .collect(),
        ),
    };
    Node {
        value,
        pos: Pos::UNKNOWN,
    }
}

fn first_line(message: &str) -> String {
    let mut line = message.lines().next().unwrap_or(message).trim();
    // serde-saphyr prefixes its messages with "error: line L column C: "; we print
    // the position ourselves.
    line = line.strip_prefix("error: ").unwrap_or(line);
    if line.starts_with("line ")
        && let Some(idx) = line.find(": ")
    {
        line = &line[idx + 2..];
    }
    if let Some(idx) = line.rfind(" at line ") {
        line = &line[..idx];
    }
    line.to_string()
}

// === serde plumbing: a raw value whose children are `Spanned` ===

enum Raw {
    Null,
    Bool(bool),
    Number(f64, String),
    String(String),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<String>, Spanned<Raw>)>),
}

/// The source text of a scalar, when the parser gave its byte span.
fn source_text<'a>(loc: &serde_saphyr::Location, source: &'a str) -> Option<&'a str> {
    let span = loc.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    source.get(start..start.checked_add(len)?)
}

fn into_node(spanned: Spanned<Raw>, source: &str) -> Node {
    let pos = Pos::from_location(&spanned.referenced);
    let value = match spanned.value {
        Raw::Null => Value::Null,
        Raw::Bool(b) => Value::Bool(b),
        // Keep numbers as written: `version: 1.10` is "1.10", not 1.1.
        Raw::Number(n, text) => {
            let written = source_text(&spanned.referenced, source)
                .filter(|t| !t.is_empty() && t.parse::<f64>().is_ok())
                .map_or(text, str::to_string);
            Value::Number(n, written)
        }
        Raw::String(s) => Value::String(s),
        Raw::Seq(items) => Value::Seq(items.into_iter().map(|i| into_node(i, source)).collect()),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| {
                    (
                        Key {
                            pos: Pos::from_location(&k.referenced),
                            name: k.value,
                        },
                        into_node(v, source),
                    )
                })
                .collect(),
        ),
    };
    Node { value, pos }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Number(v as f64, v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Number(v as f64, v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Number(v, v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Spanned<Raw>>()?;
            let key = Spanned::new(key.value.0, key.referenced, key.defined);
            entries.push((key, value));
        }
        Ok(Raw::Map(entries))
    }
}

/// A mapping key read as text whatever its YAML type (`200: x` gives "200").
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Raw::deserialize(deserializer)? {
            Raw::String(s) => Ok(KeyText(s)),
            Raw::Number(_, text) => Ok(KeyText(text)),
            Raw::Bool(b) => Ok(KeyText(b.to_string())),
            Raw::Null => Ok(KeyText("~".to_string())),
            Raw::Seq(_) | Raw::Map(_) => Err(de::Error::custom("a key must be a plain word")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_keep_their_line_and_column() {
        let text = "deploy:\n  steps:\n    - deploy: 5%\n      duration: 10m\n";
        let root = parse(text).expect("parses");
        let Value::Map(top) = &root.value else {
            panic!("map")
        };
        let (key, deploy) = &top[0];
        assert_eq!(
            (key.name.as_str(), key.pos),
            ("deploy", Pos { line: 1, column: 1 })
        );
        let Value::Map(inner) = &deploy.value else {
            panic!("map")
        };
        let Value::Seq(steps) = &inner[0].1.value else {
            panic!("seq")
        };
        let Value::Map(step) = &steps[0].value else {
            panic!("map")
        };
        assert_eq!(step[1].0.name, "duration");
        assert_eq!(step[1].0.pos, Pos { line: 4, column: 7 });
        assert_eq!(step[1].1.value, Value::String("10m".into()));
        assert_eq!(
            step[1].1.pos,
            Pos {
                line: 4,
                column: 17
            }
        );
    }

    #[test]
    fn yaml_1_1_words_stay_words_and_numbers_keep_their_spelling() {
        let root = parse("on: yes\nversion: 1.10\n").expect("parses");
        let Value::Map(top) = &root.value else {
            panic!("map")
        };
        assert_eq!(top[0].0.name, "on");
        assert_eq!(top[0].1.value, Value::String("yes".into()));
        assert_eq!(top[1].1.value, Value::Number(1.1, "1.10".into()));
    }

    #[test]
    fn duplicate_keys_are_kept_so_the_decoder_can_report_them() {
        let root = parse("a: 1\na: 2\n").expect("parses");
        let Value::Map(top) = &root.value else {
            panic!("map")
        };
        assert_eq!(top.len(), 2);
    }

    #[test]
    fn a_syntax_error_points_at_its_line() {
        let err = parse("a: [1, 2\nb: 3\n").expect_err("unterminated flow sequence");
        assert!(err.pos.line >= 1, "{err:?}");
        assert!(!err.message.starts_with("error:"), "{err:?}");
        assert!(!err.message.is_empty());
    }
}
