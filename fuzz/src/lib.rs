//! What the fuzz targets run: each input enters through the public function
//! a user's (or Prometheus') bytes reach, and what it yields goes one step
//! further, so a panic anywhere on the way is found: diagnostics are
//! rendered against the text, an accepted deploy file is planned and ticked,
//! an accepted policy's queries are rendered with hostile values and must
//! stay valid PromQL, answers become counters the engine judges.

use std::sync::OnceLock;
use std::time::Duration;

use canaryd::engine::evidence;
use canaryd::engine::{Input, Observation, RolloutState, Timestamp, counts_needed, decide};
use canaryd::provider::plan::{Answers, single_value};
use canaryd::provider::prometheus::parse_answer;
use canaryd::provider::{Batch, every_gate, plan_counts, plan_rollout};
use canaryd::spec::decode::{Decoded, decode, decode_node};
use canaryd::spec::model::DeploySpec;
use canaryd::spec::policy::{PolicySet, QueryTemplate, TemplateVars, parse_policy};
use canaryd::spec::promql::selectors;
use canaryd::spec::yaml::from_json;

/// The seed deploy file (the brief's strategy).
pub const SEED_FILE: &str = include_str!("../../deploy/checkout.yaml");

const PROMETHEUS: &str = "http://127.0.0.1:9090";

fn builtin() -> &'static PolicySet {
    static SET: OnceLock<PolicySet> = OnceLock::new();
    SET.get_or_init(PolicySet::builtin)
}

fn start() -> Timestamp {
    Timestamp::from_millis(1_800_000_000_000)
}

/// A deploy file as YAML.
pub fn deploy_yaml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let decoded = decode("fuzz.yaml", &text, builtin());
    after_decode(decoded, Some(&text), builtin());
}

/// A deploy file as JSON, the custom resource's carrier.
pub fn deploy_json(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let decoded = decode_node("rollout/fuzz", &from_json(&value), builtin());
    after_decode(decoded, None, builtin());
}

/// Renders the diagnostics; plans and ticks an accepted spec once.
fn after_decode(decoded: Decoded, source: Option<&str>, policies: &PolicySet) {
    for d in &decoded.diagnostics {
        let _ = d.render(source);
    }
    let Some(spec) = decoded.spec else {
        return;
    };
    let _ = evidence::budget(&spec);
    let mut batch = Batch::new();
    let _ = plan_rollout(
        &mut batch,
        &spec,
        policies,
        Some(PROMETHEUS),
        &every_gate(&spec),
    );
    let state = RolloutState::new(&spec, start());
    if let Some(needed) = counts_needed(&spec, &state) {
        let _ = plan_counts(&mut batch, &spec, policies, Some(PROMETHEUS), needed);
    }
    let obs = Observation {
        canary_ready: true,
        measurements: Vec::new(),
        counts: None,
    };
    if decide(&spec, &state, &Input::Tick(obs), start()).is_err() {
        panic!("a tick was rejected");
    }
}

/// Label values a template must escape.
const HOSTILE: &str = "v1\"} or vector(1) # \\ \n {{version}} .*";

/// A metric policy: parsed; an accepted one renders valid PromQL with
/// hostile values and decodes the seed deploy file.
pub fn policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let policy = match parse_policy("fuzz-policy.yaml", &text) {
        Ok(p) => p,
        Err(diagnostics) => {
            for d in &diagnostics {
                let _ = d.render(Some(&text));
            }
            return;
        }
    };
    for track in ["canary", "stable"] {
        let vars = TemplateVars {
            service: HOSTILE,
            namespace: HOSTILE,
            version: HOSTILE,
            track,
            window: Duration::from_secs(90),
            track_selector: policy.track_selectors.of(track),
        };
        let mut templates: Vec<&QueryTemplate> = vec![&policy.requests];
        if let Some(c) = &policy.counts {
            templates.push(&c.requests);
            templates.extend(c.errors.iter().chain(c.latency_buckets.iter()));
        }
        templates.extend(policy.metrics.values().map(|m| &m.query));
        for t in templates {
            let promql = t.render(&vars);
            if let Err(e) = selectors(&promql) {
                panic!(
                    "accepted template {:?} renders invalid PromQL {promql:?}: {e}",
                    t.as_str()
                );
            }
        }
    }
    let mut set = builtin().clone();
    let name = policy.name.clone();
    set.insert(policy);
    let file = SEED_FILE.replace("policy: http-red", &format!("policy: {name:?}"));
    let decoded = decode("fuzz.yaml", &file, &set);
    after_decode(decoded, Some(&file), &set);
}

/// Prometheus' answer to an instant query, and the single value a gate reads.
pub fn prometheus_answer(data: &[u8]) {
    let answer = parse_answer(data);
    let _ = single_value(&answer);
}

/// The seed rollout with its count answers read from `data`: one answer per
/// line, as many per tick as the batch has queries, for up to 16 ticks.
pub fn counts(data: &[u8]) {
    static SEED: OnceLock<DeploySpec> = OnceLock::new();
    let spec = SEED.get_or_init(
        || match decode("checkout.yaml", SEED_FILE, builtin()).spec {
            Some(s) => s,
            None => panic!("the seed file decodes"),
        },
    );
    let mut lines = data.split(|b| *b == b'\n');
    let mut state = RolloutState::new(spec, start());
    let interval = spec.strategy.analysis.interval;
    for tick in 0..16u32 {
        let now = start().plus(interval * tick);
        let counts = match counts_needed(spec, &state) {
            Some(needed) => {
                let mut batch = Batch::new();
                let Ok(plan) = plan_counts(&mut batch, spec, builtin(), None, needed) else {
                    panic!("the seed's counts plan");
                };
                let mut answers = Vec::with_capacity(batch.queries().len());
                for _ in batch.queries() {
                    match lines.next() {
                        Some(line) => answers.push(parse_answer(line)),
                        None => return,
                    }
                }
                Some(plan.reading(&Answers::new(&batch, answers)))
            }
            None => None,
        };
        let obs = Observation {
            canary_ready: true,
            measurements: Vec::new(),
            counts,
        };
        match decide(spec, &state, &Input::Tick(obs), now) {
            Ok(d) => state = d.state,
            Err(e) => panic!("a tick was rejected: {e:?}"),
        }
    }
}
