//! Problems found in a deploy or policy file: where, what, and how to fix it.
//!
//! A [`Diagnostic`] carries a file, a 1-based line and column, a stable
//! machine-readable [`Code`], a message and a hint. They render as compiler-style
//! text with the offending source line, or as JSON for scripts (`-o json`).

use std::fmt::Write as _;

use serde::Serialize;

use super::yaml::Pos;

/// How bad a problem is: errors reject the file, warnings do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file is accepted but something deserves attention.
    Warning,
    /// The file is rejected.
    Error,
}

/// A stable identifier for each kind of problem, for scripts and docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// The file is not valid YAML.
    YamlSyntax,
    /// The file could not be read.
    Unreadable,
    /// A key canaryd does not know.
    UnknownKey,
    /// A key given twice in the same map.
    DuplicateKey,
    /// A required key is absent.
    MissingKey,
    /// A value of the wrong shape (a list where a map belongs, …).
    WrongType,
    /// A percentage, duration, latency or threshold that cannot be read.
    BadValue,
    /// A weight outside 0%–100%.
    WeightOutOfRange,
    /// A step whose weight is lower than the step before it.
    WeightDecreases,
    /// A step listed after a 100% step.
    StepAfterFull,
    /// A step before the last one without a `duration`.
    MissingDuration,
    /// A gate on a metric the policy does not define.
    UnknownMetric,
    /// A threshold whose unit does not fit the metric (`latency_p99_less_than: 1%`).
    UnitMismatch,
    /// A policy that is not installed.
    UnknownPolicy,
    /// A `{{placeholder}}` in a query template canaryd does not fill.
    UnknownPlaceholder,
    /// A query template that does not render into valid PromQL.
    BadPromql,
    /// `rollback.on` given while `rollback.auto` is false.
    RollbackDisabled,
    /// Two files declare the same rollout.
    DuplicateRollout,
    /// A name that cannot be used in URLs and labels.
    InvalidName,
    /// A setting outside the range canaryd accepts.
    OutOfRange,
    /// `no_data: ignore` lets canaries without data advance.
    NoDataIgnored,
    /// A latency threshold between histogram bounds far from it (or beyond
    /// every bound): the gate is judged at the bounds, not at the threshold.
    CoarseHistogram,
    /// A step's `min_duration` cannot take effect: one of its promotion gates
    /// is judged on single readings, which never give conclusive evidence.
    NoEarlySuccess,
    /// A gate's query cannot be grouped for all rollouts: it is asked once
    /// per rollout at every tick (fine for a few, costly for thousands).
    PerRolloutQuery,
}

/// One problem in one file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable kind of problem.
    pub code: Code,
    /// The file, as given on the command line.
    pub file: String,
    /// 1-based line (0 when not known).
    pub line: u32,
    /// 1-based column (0 when not known).
    pub column: u32,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// How many characters to underline.
    #[serde(skip)]
    pub len: usize,
}

impl Diagnostic {
    /// An error at `pos`.
    pub fn error(code: Code, file: &str, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            message: message.into(),
            hint: None,
            len: 1,
        }
    }

    /// A warning at `pos`.
    pub fn warning(code: Code, file: &str, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(code, file, pos, message)
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    /// Sets how many characters the caret line underlines.
    pub fn len(mut self, len: usize) -> Diagnostic {
        self.len = len.max(1);
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic as text, quoting `source` (the file's text) when given.
    pub fn render(&self, source: Option<&str>) -> String {
        let mut out = String::new();
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let _ = writeln!(out, "{label}: {}", self.message);
        if self.line == 0 {
            let _ = writeln!(out, "  --> {}", self.file);
        } else {
            let _ = writeln!(out, "  --> {}:{}:{}", self.file, self.line, self.column);
        }
        let quoted = source
            .filter(|_| self.line > 0)
            .and_then(|s| s.lines().nth(self.line as usize - 1));
        if let Some(text) = quoted {
            let gutter = self.line.to_string().len();
            let pad = " ".repeat(gutter);
            let indent = " ".repeat((self.column as usize).saturating_sub(1));
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{} | {}", self.line, text.trim_end());
            let _ = writeln!(out, "{pad} | {indent}{}", "^".repeat(self.len));
            if let Some(hint) = &self.hint {
                let _ = writeln!(out, "{pad} = hint: {hint}");
            }
        } else if let Some(hint) = &self.hint {
            let _ = writeln!(out, "   = hint: {hint}");
        }
        out
    }
}

/// The closest candidate to `word`, if any is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word_l = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&word_l, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// A hint naming the likely intended word, or `fallback` when none is close.
pub fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    fallback: impl FnOnce() -> String,
) -> String {
    match did_you_mean(word, candidates) {
        Some(near) => format!("did you mean `{near}`?"),
        None => fallback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_suggests_the_nearest_key_and_nonsense_suggests_nothing() {
        let keys = ["deploy", "duration", "metrics"];
        assert_eq!(did_you_mean("duraton", keys), Some("duration"));
        assert_eq!(did_you_mean("Metrics", keys), Some("metrics"));
        assert_eq!(did_you_mean("banana", keys), None);
    }

    #[test]
    fn rendering_quotes_the_line_and_underlines_the_token() {
        let src = "deploy:\n  duraton: 10m\n";
        let d = Diagnostic::error(
            Code::UnknownKey,
            "f.yaml",
            Pos { line: 2, column: 3 },
            "unknown key `duraton`",
        )
        .hint("did you mean `duration`?")
        .len(7);
        assert_eq!(
            d.render(Some(src)),
            "error: unknown key `duraton`\n  --> f.yaml:2:3\n  |\n2 |   duraton: 10m\n  |   ^^^^^^^\n  = hint: did you mean `duration`?\n"
        );
    }
}
