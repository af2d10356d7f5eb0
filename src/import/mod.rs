//! `canaryd import`: an Argo Rollouts `Rollout` or a Flagger `Canary` (with
//! the analysis or metric templates it references) turned into a canaryd
//! deploy file, plus the list of what did not map, each with its line.
//!
//! ```text
//! YAML documents ──yaml::parse (positions)──▶ Doc ──argo / flagger──▶ Draft ──emit──▶ deploy file
//!                                                            └──▶ Note (file:line: what, why)
//! ```
//!
//! Pure: the caller reads the files and writes the result.

mod argo;
mod argo_metric;
mod doc;
mod draft;
mod flagger;
mod flagger_metric;
mod gates;
mod query;

use std::fmt;

pub use doc::{Doc, Source};

/// Which tool the input comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// Argo Rollouts: `Rollout` and `AnalysisTemplate`s.
    Argo,
    /// Flagger: `Canary` and `MetricTemplate`s.
    Flagger,
}

impl Tool {
    /// The kind of the main resource.
    pub fn kind(self) -> &'static str {
        match self {
            Tool::Argo => "Rollout",
            Tool::Flagger => "Canary",
        }
    }

    /// The tool's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Argo => "Argo Rollouts",
            Tool::Flagger => "Flagger",
        }
    }
}

/// Something of the input that did not map, or mapped only approximately.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The input file.
    pub file: String,
    /// 1-based line in that file (0 when unknown).
    pub line: u32,
    /// What it is (`setHeaderRoute`).
    pub what: String,
    /// Why it does not map, and what canaryd does instead.
    pub reason: String,
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.what, self.reason
        )
    }
}

/// The result: the deploy file's text and the notes (also written into the
/// file's header as comments).
#[derive(Clone, Debug)]
pub struct Imported {
    /// The deploy file.
    pub text: String,
    /// The rollout's name (the deploy file's `service`).
    pub service: String,
    /// What did not map.
    pub notes: Vec<Note>,
}

/// Why nothing could be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    /// A file is not YAML.
    #[error("{file}:{line}:{column}: invalid YAML: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// Where.
        line: u32,
        /// Where.
        column: u32,
        /// The parser's message.
        message: String,
    },
    /// The main file holds no resource of the expected kind.
    #[error(
        "{file}: no {tool} `{kind}` found (found: {found}); `canaryd import {cli}` reads `kind: {kind}`"
    )]
    NotFound {
        /// The file.
        file: String,
        /// The tool.
        tool: &'static str,
        /// The kind looked for.
        kind: &'static str,
        /// The subcommand word (`argo`).
        cli: &'static str,
        /// What the file holds instead.
        found: String,
    },
    /// The resource is of the right kind but uses something canaryd cannot run.
    #[error("{file}:{line}: {message}")]
    Unsupported {
        /// The file.
        file: String,
        /// Where.
        line: u32,
        /// What and why.
        message: String,
    },
}

/// Converts `main` (the file holding the `Rollout` or `Canary`) and the
/// template files into a deploy file. Templates may also sit in `main`.
pub fn import(tool: Tool, main: &Source, templates: &[Source]) -> Result<Imported, ImportError> {
    let main_docs = main.documents()?;
    let mut all_docs: Vec<Doc> = main_docs.clone();
    for t in templates {
        all_docs.extend(t.documents()?);
    }
    let kind = tool.kind();
    let Some(resource) = main_docs.iter().find(|d| d.kind() == Some(kind)) else {
        let found: Vec<String> = main_docs.iter().map(Doc::describe).collect();
        return Err(ImportError::NotFound {
            file: main.name.clone(),
            tool: tool.name(),
            kind,
            cli: match tool {
                Tool::Argo => "argo",
                Tool::Flagger => "flagger",
            },
            found: if found.is_empty() {
                "nothing".to_string()
            } else {
                found.join(", ")
            },
        });
    };
    let mut draft = match tool {
        Tool::Argo => argo::convert(resource, &all_docs)?,
        Tool::Flagger => flagger::convert(resource, &all_docs)?,
    };
    // In input order: the main file first, then the templates.
    let order = |file: &str| usize::from(file != main.name);
    draft
        .notes
        .sort_by(|a, b| (order(&a.file), &a.file, a.line).cmp(&(order(&b.file), &b.file, b.line)));
    // A gate copied onto every step is reported once.
    draft.notes.dedup();
    let text = draft.emit(tool, &main.name);
    Ok(Imported {
        text,
        service: draft.service.clone(),
        notes: draft.notes,
    })
}

/// A name as canaryd writes metric names: lowercase, `_` for anything else.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// A Kubernetes-ish name usable as a deploy file's `service`.
fn dns_name(name: &str) -> String {
    snake(name).replace('_', "-")
}
