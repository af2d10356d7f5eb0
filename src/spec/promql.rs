//! PromQL syntax checks (promql-parser): a template must render into a valid
//! query, and tests read back which series a rendered query selects.

use std::time::Duration;

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};

use super::policy::{QueryTemplate, TemplateVars};

/// Renders `template` with sample values and parses the result; the parser's
/// message when it is not valid PromQL.
pub fn check_template(template: &QueryTemplate) -> Result<(), String> {
    let vars = TemplateVars {
        service: "checkout",
        namespace: "default",
        version: "v1",
        track: "canary",
        window: Duration::from_secs(60),
        track_selector: r#"canaryd_track="canary""#,
    };
    parser::parse(&template.render(&vars)).map(|_| ())
}

/// Checks that `text` is a list of label matchers (what goes inside `{…}`).
pub fn check_matchers(text: &str) -> Result<(), String> {
    let expr = parser::parse(&format!("canaryd_probe{{{text}}}"))?;
    match expr {
        Expr::VectorSelector(_) => Ok(()),
        _ => Err("not a plain list of matchers".to_string()),
    }
}

/// One vector selector of a query: `metric{label op "value", …}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// The metric name, when the selector names one.
    pub metric: Option<String>,
    /// `(label, op, value)` with op one of `=`, `!=`, `=~`, `!~`, value unescaped.
    pub matchers: Vec<(String, String, String)>,
}

impl Selector {
    /// The value a label is matched against with `=`, if it is.
    pub fn equals(&self, label: &str) -> Option<&str> {
        self.matchers
            .iter()
            .find(|(l, op, _)| l == label && op == "=")
            .map(|(_, _, v)| v.as_str())
    }
}

/// Every vector selector of `query` (including those inside range selectors).
pub fn selectors(query: &str) -> Result<Vec<Selector>, String> {
    struct Collect(Vec<Selector>);
    impl ExprVisitor for Collect {
        type Error = String;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
            let vs = match expr {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            let matchers = vs
                .matchers
                .matchers
                .iter()
                .filter(|m| m.name != "__name__")
                .map(|m| {
                    let op = match &m.op {
                        MatchOp::Equal => "=",
                        MatchOp::NotEqual => "!=",
                        MatchOp::Re(_) => "=~",
                        MatchOp::NotRe(_) => "!~",
                    };
                    (m.name.clone(), op.to_string(), m.value.clone())
                })
                .collect();
            self.0.push(Selector {
                metric: vs.name.clone(),
                matchers,
            });
            Ok(true)
        }
    }
    let expr = parser::parse(query)?;
    let mut c = Collect(Vec::new());
    walk_expr(&mut c, &expr)?;
    Ok(c.0)
}
