//! `validate`'s note on scale: a gate whose query the daemon cannot ask once
//! for every rollout (README "Scale") is asked once per rollout at every
//! tick; fine for a few rollouts, costly for thousands.

use crate::provider::group::Ungroupable;
use crate::provider::groupable;
use crate::spec::diagnostic::{Code, Diagnostic};
use crate::spec::model::DeploySpec;
use crate::spec::policy::{PolicySet, QueryTemplate, TemplateVars};
use crate::spec::yaml;

/// A warning at each gate whose queries are asked per rollout.
pub fn declared(
    file: &str,
    text: &str,
    spec: &DeploySpec,
    policies: &PolicySet,
) -> Vec<Diagnostic> {
    let Some(policy) = policies.get(&spec.policy) else {
        return Vec::new();
    };
    let root = yaml::parse(text).ok();
    let positions = root
        .as_ref()
        .map(super::latency_bounds::threshold_nodes)
        .unwrap_or_default();
    let vars = TemplateVars {
        service: &spec.id.name,
        namespace: &spec.id.namespace,
        version: &spec.canary.version,
        track: "canary",
        window: spec.strategy.analysis.window,
        track_selector: policy.track_selectors.of("canary"),
    };
    let mut out = Vec::new();
    for (r, g, _) in super::latency_bounds::gates(spec) {
        let mut templates: Vec<(String, &QueryTemplate)> = Vec::new();
        if g.judged.on_evidence() {
            if let Some(c) = &policy.counts {
                templates.push(("counts.requests".into(), &c.requests));
                templates.extend(c.errors.iter().map(|t| ("counts.errors".into(), t)));
                templates.extend(
                    c.latency_buckets
                        .iter()
                        .map(|t| ("counts.latency_buckets".into(), t)),
                );
            }
        } else {
            match &g.query {
                Some(q) => templates.push(("its `query`".into(), q)),
                None => {
                    if let Some(def) = policy.metrics.get(&g.metric) {
                        templates.push((format!("`{}`", g.metric), &def.query));
                    }
                }
            }
            templates.push(("requests".into(), &policy.requests));
        }
        for (what, template) in templates {
            // A query naming no rollout is the same for all: asked once.
            let why = match groupable(template, &vars) {
                Ok(()) | Err(Ungroupable::NoPlaceholder) => continue,
                Err(why) => why,
            };
            let node = positions.iter().find(|(p, _)| *p == r).map(|(_, n)| *n);
            let pos = node.map_or(yaml::Pos::UNKNOWN, |n| n.pos);
            out.push(
                Diagnostic::warning(
                    Code::PerRolloutQuery,
                    file,
                    pos,
                    format!(
                        "`{}`: {what} is asked once per rollout at every tick, not once for all rollouts ({why})",
                        g.metric
                    ),
                )
                .hint("fine for a few rollouts; for hundreds, select the rollout with exact label matchers in every selector and avoid vector(), scalar(), absent() and label_replace() (README \"Scale\")"),
            );
        }
    }
    out
}
