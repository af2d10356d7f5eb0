//! Reading the positioned YAML tree into typed values while collecting every
//! problem instead of stopping at the first one.

use super::diagnostic::{Code, Diagnostic, did_you_mean};
use super::yaml::{Key, Node, Pos, Value};

/// Collects diagnostics for one file while its tree is read.
pub struct Reader<'f> {
    /// The file name diagnostics carry.
    pub file: &'f str,
    /// Everything found so far.
    pub diags: Vec<Diagnostic>,
}

/// A just-recorded diagnostic, to add a hint or an underline length to.
pub struct Emitted<'a>(&'a mut Diagnostic);

impl Emitted<'_> {
    /// Adds a hint.
    pub fn hint(self, hint: impl Into<String>) -> Self {
        self.0.hint = Some(hint.into());
        self
    }

    /// Underlines `len` characters.
    pub fn len(self, len: usize) -> Self {
        self.0.len = len.max(1);
        self
    }
}

/// The entries of a map whose keys were checked against the allowed set.
pub struct Fields<'n> {
    /// Where the map starts (used for "missing key" errors).
    pub pos: Pos,
    entries: Vec<(&'n Key, &'n Node)>,
    /// Allowed keys that an unknown key was taken for a typo of; a "missing"
    /// error for them would only repeat the "did you mean".
    typos: Vec<String>,
}

impl<'n> Fields<'n> {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| *v)
    }

    /// The key itself, for errors pointing at it.
    pub fn key(&self, key: &str) -> Option<&'n Key> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| *k)
    }

    /// True when an unknown key was reported as a likely typo of `key`.
    pub fn has_typo_of(&self, key: &str) -> bool {
        self.typos.iter().any(|t| t == key)
    }

    /// All entries in file order.
    pub fn entries(&self) -> &[(&'n Key, &'n Node)] {
        &self.entries
    }
}

impl<'f> Reader<'f> {
    /// A reader for `file`.
    pub fn new(file: &'f str) -> Reader<'f> {
        Reader {
            file,
            diags: Vec::new(),
        }
    }

    /// Records an error; the returned handle adds a hint or an underline length.
    pub fn error(&mut self, code: Code, pos: Pos, message: impl Into<String>) -> Emitted<'_> {
        let index = self.diags.len();
        self.diags
            .push(Diagnostic::error(code, self.file, pos, message));
        Emitted(&mut self.diags[index])
    }

    /// Records a warning.
    pub fn warning(&mut self, code: Code, pos: Pos, message: impl Into<String>) -> Emitted<'_> {
        let index = self.diags.len();
        self.diags
            .push(Diagnostic::warning(code, self.file, pos, message));
        Emitted(&mut self.diags[index])
    }

    /// True once any error was recorded.
    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }

    /// Reads a map whose keys must be among `allowed`; unknown and repeated keys
    /// are reported (with a "did you mean") and skipped.
    pub fn map<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let fields = self.any_map(node, what)?;
        let mut kept = Vec::with_capacity(fields.entries.len());
        let mut typos = Vec::new();
        for (key, value) in fields.entries {
            if !allowed.contains(&key.name.as_str()) {
                let hint = match did_you_mean(&key.name, allowed.iter().copied()) {
                    Some(near) => {
                        typos.push(near.to_string());
                        format!("did you mean `{near}`?")
                    }
                    None => format!("{what} takes: {}", allowed.join(", ")),
                };
                self.error(
                    Code::UnknownKey,
                    key.pos,
                    format!("unknown key `{}` in {what}", key.name),
                )
                .len(key.name.chars().count())
                .hint(hint);
                continue;
            }
            kept.push((key, value));
        }
        Some(Fields {
            pos: fields.pos,
            entries: kept,
            typos,
        })
    }

    /// Reads a map with free-form keys; repeated keys are still reported.
    pub fn any_map<'n>(&mut self, node: &'n Node, what: &str) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, what, "a map");
            return None;
        };
        let mut kept: Vec<(&Key, &Node)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            if let Some((first, _)) = kept.iter().find(|(k, _)| k.name == key.name) {
                let line = first.pos.line;
                self.error(
                    Code::DuplicateKey,
                    key.pos,
                    format!("`{}` is given twice in {what}", key.name),
                )
                .len(key.name.chars().count())
                .hint(format!(
                    "the first `{}` is on line {line}; keep one",
                    key.name
                ));
                continue;
            }
            kept.push((key, value));
        }
        Some(Fields {
            pos: node.pos,
            entries: kept,
            typos: Vec::new(),
        })
    }

    /// Reports a required key that is absent.
    pub fn missing(&mut self, fields: &Fields<'_>, key: &str, what: &str, example: &str) {
        if fields.has_typo_of(key) {
            return;
        }
        self.error(
            Code::MissingKey,
            fields.pos,
            format!("{what} has no `{key}`"),
        )
        .hint(format!("add `{example}`"));
    }

    /// Reads a required key with `read`, reporting it when missing.
    pub fn required<'n, T>(
        &mut self,
        fields: &Fields<'n>,
        key: &str,
        what: &str,
        example: &str,
        read: impl FnOnce(&mut Self, &'n Node) -> Option<T>,
    ) -> Option<T> {
        match fields.get(key) {
            Some(node) => read(self, node),
            None => {
                self.missing(fields, key, what, example);
                None
            }
        }
    }

    /// Reads a list.
    pub fn list<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.wrong_type(node, what, "a list");
                None
            }
        }
    }

    /// Reads a scalar as text (numbers keep how they were written).
    pub fn text(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(_, text) => Some(text.clone()),
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    /// Reads `true` / `false`.
    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            _ => {
                self.wrong_type(node, what, "`true` or `false`");
                None
            }
        }
    }

    /// Reads a whole number within `min..=max`.
    pub fn count(&mut self, node: &Node, what: &str, min: u64, max: u64) -> Option<u64> {
        let n = match &node.value {
            Value::Number(n, _) if n.fract() == 0.0 && *n >= 0.0 => *n as u64,
            _ => {
                self.wrong_type(node, what, "a whole number");
                return None;
            }
        };
        if !(min..=max).contains(&n) {
            self.error(Code::OutOfRange, node.pos, format!("{what} is {n}"))
                .hint(format!("use a value from {min} to {max}"));
            return None;
        }
        Some(n)
    }

    /// Reports a value of the wrong shape.
    pub fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        let found = node.value.kind();
        self.error(
            Code::WrongType,
            node.pos,
            format!("{what} must be {expected}, found {found}"),
        );
    }
}
