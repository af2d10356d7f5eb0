//! Input files as positioned YAML documents (a file may hold several, `---`
//! separated), and small readers over the tree that tolerate any shape: an
//! input that is not what we expect is reported as a note, never a panic.

use crate::spec::yaml::{self, Key, Node, Value};

use super::ImportError;

/// An input file: its name (for messages) and its text.
#[derive(Clone, Debug)]
pub struct Source {
    /// The path as given.
    pub name: String,
    /// The file's content.
    pub text: String,
}

/// One YAML document of a file, with positions in the whole file.
#[derive(Clone, Debug)]
pub struct Doc {
    /// The file it came from.
    pub file: String,
    /// The document's root.
    pub root: Node,
}

impl Source {
    /// Every non-empty document of the file, positions counted in the file.
    pub fn documents(&self) -> Result<Vec<Doc>, ImportError> {
        let mut docs = Vec::new();
        for (offset, chunk) in split_documents(&self.text) {
            if chunk.lines().all(|l| {
                let t = l.trim();
                t.is_empty() || t.starts_with('#')
            }) {
                continue;
            }
            let mut root = yaml::parse(&chunk).map_err(|e| ImportError::Yaml {
                file: self.name.clone(),
                line: e.pos.line + offset,
                column: e.pos.column,
                message: e.message,
            })?;
            shift(&mut root, offset);
            if !matches!(root.value, Value::Null) {
                docs.push(Doc {
                    file: self.name.clone(),
                    root,
                });
            }
        }
        Ok(docs)
    }
}

/// `(lines before the document, its text)` for each `---`-separated document.
fn split_documents(text: &str) -> Vec<(u32, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start = 0u32;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_end();
        if t == "---" || t.starts_with("--- ") || t == "..." {
            docs.push((start, std::mem::take(&mut current)));
            start = u32::try_from(i + 1).unwrap_or(u32::MAX);
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    docs.push((start, current));
    docs
}

fn shift(node: &mut Node, offset: u32) {
    if node.pos.line > 0 {
        node.pos.line += offset;
    }
    match &mut node.value {
        Value::Seq(items) => items.iter_mut().for_each(|n| shift(n, offset)),
        Value::Map(entries) => {
            for (k, v) in entries {
                if k.pos.line > 0 {
                    k.pos.line += offset;
                }
                shift(v, offset);
            }
        }
        _ => {}
    }
}

impl Doc {
    /// `kind:` of the resource.
    pub fn kind(&self) -> Option<&str> {
        get(&self.root, "kind").and_then(str_of)
    }

    /// `metadata.name`.
    pub fn name(&self) -> Option<&str> {
        at(&self.root, &["metadata", "name"]).and_then(str_of)
    }

    /// `metadata.namespace`.
    pub fn namespace(&self) -> Option<&str> {
        at(&self.root, &["metadata", "namespace"]).and_then(str_of)
    }

    /// `Kind name (apiVersion) at file:line`, for "found instead" messages.
    pub fn describe(&self) -> String {
        let kind = self.kind().unwrap_or("a document without `kind`");
        let mut s = format!("`{kind}`");
        if let Some(name) = self.name() {
            s.push_str(&format!(" {name}"));
        }
        if let Some(api) = get(&self.root, "apiVersion").and_then(str_of) {
            s.push_str(&format!(" ({api})"));
        }
        format!("{s} at line {}", self.root.pos.line)
    }
}

/// The value of `key` in a map node.
pub fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(_, v)| v),
        _ => None,
    }
}

/// The node at a path of keys.
pub fn at<'a>(node: &'a Node, path: &[&str]) -> Option<&'a Node> {
    path.iter().try_fold(node, |n, key| get(n, key))
}

/// The key of `key` in a map node (for its line).
pub fn key<'a>(node: &'a Node, key: &str) -> Option<&'a Key> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|(k, _)| k.name == key).map(|(k, _)| k),
        _ => None,
    }
}

/// A map's entries (empty for anything else).
pub fn entries(node: &Node) -> &[(Key, Node)] {
    match &node.value {
        Value::Map(entries) => entries,
        _ => &[],
    }
}

/// A list's items (empty for anything else).
pub fn items(node: &Node) -> &[Node] {
    match &node.value {
        Value::Seq(items) => items,
        _ => &[],
    }
}

/// A string scalar.
pub fn str_of(node: &Node) -> Option<&str> {
    match &node.value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// A scalar as text (strings, and numbers as written).
pub fn text_of(node: &Node) -> Option<String> {
    match &node.value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_, written) => Some(written.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A number, written as a number or as a numeric string (`"5"`).
pub fn number_of(node: &Node) -> Option<f64> {
    match &node.value {
        Value::Number(n, _) => Some(*n),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The line of a node.
pub fn line(node: &Node) -> u32 {
    node.pos.line
}

/// The line of the key `key` in `node`, else the node's own.
pub fn key_line(node: &Node, name: &str) -> u32 {
    key(node, name).map_or(node.pos.line, |k| k.pos.line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_lines_in_the_whole_file() {
        let source = Source {
            name: "in.yaml".into(),
            text: "# header\nkind: A\n---\nkind: B\nspec:\n  x: 1\n".into(),
        };
        let docs = source.documents().expect("parses");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].kind(), Some("A"));
        assert_eq!(docs[1].kind(), Some("B"));
        let x = at(&docs[1].root, &["spec", "x"]).expect("x");
        assert_eq!(line(x), 6);
    }

    #[test]
    fn a_syntax_error_in_a_later_document_points_at_its_line_in_the_file() {
        let source = Source {
            name: "in.yaml".into(),
            text: "kind: A\n---\nkind: B\nspec: [1, 2\n".into(),
        };
        match source.documents() {
            Err(ImportError::Yaml { line, .. }) => assert!(line >= 4, "line {line}"),
            other => panic!("{other:?}"),
        }
    }
}
