//! The `deploy:` block: steps, promotion gates, abort conditions, analysis settings.

use super::diagnostic::{Code, suggest};
use super::gate::read_gates;
use super::model::{Analysis, Gate, NoDataPolicy, Rollback, Step, Strategy};
use super::policy::Policy;
use super::reader::Reader;
use super::units::{UnitError, Weight, format_duration, parse_duration, parse_percent};
use super::yaml::{Node, Pos};

/// Reads the `deploy:` block. `policy` is `None` when it could not be resolved
/// (already reported); gate metrics are then not checked.
pub fn read_strategy(r: &mut Reader<'_>, node: &Node, policy: Option<&Policy>) -> Option<Strategy> {
    let f = r.map(
        node,
        "`deploy`",
        &["strategy", "steps", "rollback", "analysis"],
    )?;
    if let Some(n) = f.get("strategy")
        && let Some(s) = r.text(n, "`deploy.strategy`")
        && s != "canary"
    {
        r.error(
            Code::BadValue,
            n.pos,
            format!("strategy `{s}` is not supported"),
        )
        .len(s.chars().count())
        .hint("canaryd runs `strategy: canary`");
    }
    let steps = r.required(
        &f,
        "steps",
        "`deploy`",
        "steps: [{ deploy: 5%, duration: 10m }, { deploy: 100% }]",
        |r, n| read_steps(r, n, policy),
    );
    let rollback = match f.get("rollback") {
        Some(n) => read_rollback(r, n, policy),
        None => Some(Rollback {
            auto: true,
            on: Vec::new(),
        }),
    };
    let analysis = match f.get("analysis") {
        Some(n) => read_analysis(r, n),
        None => Some(Analysis::default()),
    };
    Some(Strategy {
        steps: steps?,
        rollback: rollback?,
        analysis: analysis?,
    })
}

fn read_steps(r: &mut Reader<'_>, node: &Node, policy: Option<&Policy>) -> Option<Vec<Step>> {
    let items = r.list(node, "`deploy.steps`")?;
    if items.is_empty() {
        r.error(Code::MissingKey, node.pos, "`deploy.steps` is empty")
            .hint("add at least one step, e.g. `- deploy: 100%`");
        return None;
    }
    let mut steps = Vec::with_capacity(items.len());
    let mut ok = true;
    // The highest weight so far and its step number, to check the order.
    let mut previous: Option<(Weight, usize)> = None;
    let mut full_at: Option<usize> = None;
    for (i, item) in items.iter().enumerate() {
        let number = i + 1;
        if let Some(full) = full_at {
            if full + 1 == number {
                r.error(
                    Code::StepAfterFull,
                    item.pos,
                    format!("step {number} comes after the 100% step {full}"),
                )
                .len("deploy".len())
                .hint("100% is the last step: remove the steps after it");
            }
            ok = false;
            continue;
        }
        let Some(parts) = read_step(r, item, number, policy) else {
            ok = false;
            continue;
        };
        if let (Some(weight), Some((prev, prev_number))) = (parts.weight, previous)
            && weight < prev
        {
            r.error(
                    Code::WeightDecreases,
                    parts.weight_pos,
                    format!("step {number} sends {weight} to the canary, less than step {prev_number} ({prev})"),
                )
                .len(weight.to_string().len())
                .hint("weights only go up; list the steps in increasing order");
            ok = false;
        }
        // A 100% step ends the list (later steps are reported above), so it
        // counts as the last step for the duration rule.
        let is_last = number == items.len() || parts.weight == Some(Weight::FULL);
        if let (Some(weight), Some(None)) = (parts.weight, parts.duration)
            && !is_last
        {
            r.error(Code::MissingDuration, item.pos, format!("step {number} ({weight}) has no `duration`"))
                    .len("deploy".len())
                    .hint("every step but the last needs one, e.g. `duration: 10m`: how long the canary is watched at this weight");
            ok = false;
        }
        if let Some(weight) = parts.weight {
            if weight == Weight::FULL {
                full_at = Some(number);
            }
            if previous.is_none_or(|(prev, _)| weight >= prev) {
                previous = Some((weight, number));
            }
        }
        if !check_min_duration(r, &parts, number, is_last) {
            ok = false;
        }
        match (
            parts.weight,
            parts.duration,
            parts.gates,
            parts.min_duration,
        ) {
            (Some(weight), Some(duration), Some(gates), Some(min_duration)) => steps.push(Step {
                weight,
                duration,
                min_duration,
                gates,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(steps)
}

/// What could be read of one step; `None` fields were reported.
struct StepParts {
    weight: Option<Weight>,
    weight_pos: Pos,
    duration: Option<Option<std::time::Duration>>,
    /// `min_duration` and where it is written.
    min_duration: Option<Option<std::time::Duration>>,
    min_pos: Pos,
    gates: Option<Vec<Gate>>,
}

/// Early success (`min_duration`) needs promotion gates and a `duration` at
/// least as long. Returns false when an error was reported (a missing
/// `duration` before the last step is reported by the caller).
fn check_min_duration(r: &mut Reader<'_>, parts: &StepParts, number: usize, is_last: bool) -> bool {
    let (Some(Some(min)), Some(duration)) = (parts.min_duration, parts.duration) else {
        return true;
    };
    let len = "min_duration".len();
    let Some(duration) = duration else {
        if !is_last {
            return false;
        }
        r.error(
            Code::MissingDuration,
            parts.min_pos,
            format!("step {number} has a `min_duration` but no `duration`"),
        )
        .len(len)
        .hint("`min_duration` is the least time the step is watched and `duration` the most before it waits for evidence: add `duration: 10m`, or remove `min_duration` (a last step without a duration already completes once its gates pass)");
        return false;
    };
    if min > duration {
        r.error(
            Code::OutOfRange,
            parts.min_pos,
            format!(
                "step {number}'s `min_duration` ({}) is longer than its `duration` ({})",
                format_duration(min),
                format_duration(duration)
            ),
        )
        .len(len)
        .hint(format!(
            "`min_duration` is the least time the step is watched, `duration` the most before it waits for evidence: make `min_duration` at most {}",
            format_duration(duration)
        ));
        return false;
    }
    match &parts.gates {
        Some(gates) if gates.is_empty() => {
            r.error(
                Code::MissingKey,
                parts.min_pos,
                format!("step {number} has a `min_duration` but no promotion gates"),
            )
            .len(len)
            .hint("a step passes early only on evidence that its gates pass: add `metrics:` (e.g. `- error_rate_less_than: 1%`), or remove `min_duration`");
            false
        }
        Some(gates) => {
            if let Some(g) = gates.iter().find(|g| !g.judged.on_evidence()) {
                r.warning(
                    Code::NoEarlySuccess,
                    parts.min_pos,
                    format!("step {number}'s `min_duration` cannot take effect: `{g}` is judged on single readings, which are never conclusive evidence"),
                )
                .len(len)
                .hint("the step runs its whole `duration`; early success needs gates on the policy's counted metrics (error rates, latency quantiles)");
            }
            true
        }
        None => true,
    }
}

fn read_step(
    r: &mut Reader<'_>,
    node: &Node,
    number: usize,
    policy: Option<&Policy>,
) -> Option<StepParts> {
    let what = format!("step {number}");
    let f = r.map(
        node,
        &what,
        &["deploy", "duration", "min_duration", "metrics"],
    )?;
    let weight_pos = f.get("deploy").map_or(node.pos, |n| n.pos);
    let weight = r.required(&f, "deploy", &what, "deploy: 5%", |r, n| {
        let text = r.text(n, "`deploy`")?;
        match Weight::parse(&text) {
            Ok(w) if w == Weight::ZERO => {
                r.error(
                    Code::WeightOutOfRange,
                    n.pos,
                    format!("step {number} sends no traffic to the canary"),
                )
                .len(text.chars().count())
                .hint("a step's weight is above 0%, e.g. `deploy: 1%`");
                None
            }
            Ok(w) => Some(w),
            Err(e) => {
                let code = if matches!(e, UnitError::WeightOutOfRange(_)) {
                    Code::WeightOutOfRange
                } else {
                    Code::BadValue
                };
                r.error(code, n.pos, e.to_string())
                    .len(text.chars().count())
                    .hint(e.hint());
                None
            }
        }
    });
    let step_duration = match f.get("duration") {
        Some(n) => duration(r, n, "`duration`").map(Some),
        // A misspelt `duration` was reported already; do not also call it missing.
        None if f.has_typo_of("duration") => None,
        None => Some(None),
    };
    let gates = match f.get("metrics") {
        Some(n) => read_gates(r, n, "`metrics`", policy),
        None => Some(Vec::new()),
    };
    let min_pos = f.key("min_duration").map_or(node.pos, |k| k.pos);
    let min_duration = match f.get("min_duration") {
        Some(n) => duration(r, n, "`min_duration`").map(Some),
        None => Some(None),
    };
    Some(StepParts {
        weight,
        weight_pos,
        duration: step_duration,
        min_duration,
        min_pos,
        gates,
    })
}

fn duration(r: &mut Reader<'_>, node: &Node, what: &str) -> Option<std::time::Duration> {
    let text = r.text(node, what)?;
    match parse_duration(&text) {
        Ok(d) => Some(d),
        Err(e) => {
            let msg = match e {
                UnitError::MissingUnit(_) => format!("{what} `{text}` has no unit"),
                _ => format!("`{text}` is not a duration"),
            };
            let hint = match e {
                UnitError::MissingUnit(_) => {
                    format!("add a unit: `{text}s` or `{text}m` (units: ms, s, m, h)")
                }
                _ => e.hint(),
            };
            r.error(Code::BadValue, node.pos, msg)
                .len(text.chars().count())
                .hint(hint);
            None
        }
    }
}

fn read_rollback(r: &mut Reader<'_>, node: &Node, policy: Option<&Policy>) -> Option<Rollback> {
    let f = r.map(node, "`rollback`", &["auto", "on"])?;
    let auto = match f.get("auto") {
        Some(n) => r.boolean(n, "`rollback.auto`")?,
        None => true,
    };
    let on = match f.get("on") {
        Some(n) => read_gates(r, n, "`rollback.on`", policy)?,
        None => Vec::new(),
    };
    if !auto && !on.is_empty() {
        if let Some(key) = f.key("on") {
            r.error(Code::RollbackDisabled, key.pos, "`rollback.on` lists abort conditions but `auto: false` turns automatic rollback off")
                .len(2)
                .hint("set `auto: true`, or remove `on:` (with `auto: false` canaryd pauses and alerts where it would roll back)");
        }
        return None;
    }
    Some(Rollback { auto, on })
}

const ANALYSIS_KEYS: [&str; 9] = [
    "interval",
    "window",
    "min_requests",
    "consecutive_breaches",
    "failure_limit",
    "inconclusive_limit",
    "no_data",
    "confidence",
    "max_extension",
];

fn read_analysis(r: &mut Reader<'_>, node: &Node) -> Option<Analysis> {
    let f = r.map(node, "`analysis`", &ANALYSIS_KEYS)?;
    let mut a = Analysis::default();
    let mut ok = true;
    if let Some(n) = f.get("interval") {
        match duration(r, n, "`interval`") {
            Some(d) if d.as_millis() >= 100 => a.interval = d,
            Some(_) => {
                r.error(Code::OutOfRange, n.pos, "`interval` is shorter than 100ms")
                    .hint("measure at most ten times a second, e.g. `interval: 1s`");
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = f.get("window") {
        match duration(r, n, "`window`") {
            Some(d) if d.as_secs() >= 1 => a.window = d,
            Some(_) => {
                r.error(Code::OutOfRange, n.pos, "`window` is shorter than 1s")
                    .hint("a PromQL range needs at least two scrapes, e.g. `window: 30s`");
                ok = false;
            }
            None => ok = false,
        }
    }
    let mut count = |r: &mut Reader<'_>, key: &str, min: u64, max: u64| -> Option<u64> {
        let n = f.get(key)?;
        let v = r.count(n, &format!("`{key}`"), min, max);
        if v.is_none() {
            ok = false;
        }
        v
    };
    if let Some(v) = count(r, "min_requests", 0, 1_000_000_000) {
        a.min_requests = v;
    }
    if let Some(v) = count(r, "consecutive_breaches", 1, 1000) {
        a.consecutive_breaches = v as u32;
    }
    if let Some(v) = count(r, "failure_limit", 1, 1000) {
        a.failure_limit = Some(v as u32);
    }
    if let Some(v) = count(r, "inconclusive_limit", 1, 1000) {
        a.inconclusive_limit = v as u32;
    }
    if let Some(n) = f.get("confidence") {
        match r.text(n, "`confidence`").map(|t| parse_percent(&t)) {
            Some(Ok(p)) if (50.0..100.0).contains(&p) && p <= 99.9999 => a.confidence = p / 100.0,
            Some(Ok(_)) => {
                r.error(
                    Code::OutOfRange,
                    n.pos,
                    "`confidence` is outside 50%–99.9999%",
                )
                .hint("99% (the default) allows at most 1% false rollbacks of healthy canaries");
                ok = false;
            }
            Some(Err(e)) => {
                r.error(Code::BadValue, n.pos, e.to_string()).hint(e.hint());
                ok = false;
            }
            None => ok = false,
        }
    }
    if let Some(n) = f.get("max_extension") {
        match duration(r, n, "`max_extension`") {
            Some(d) => a.max_extension = Some(d),
            None => ok = false,
        }
    }
    if let Some(n) = f.get("no_data") {
        match r.text(n, "`no_data`").as_deref() {
            Some("hold") => a.no_data = NoDataPolicy::Hold,
            Some("rollback") => a.no_data = NoDataPolicy::Rollback,
            Some("ignore") => {
                a.no_data = NoDataPolicy::Ignore;
                r.warning(
                    Code::NoDataIgnored,
                    n.pos,
                    "`no_data: ignore` lets a canary with no data advance",
                )
                .len(6)
                .hint(
                    "each such decision is logged as a warning; `hold` pauses and alerts instead",
                );
            }
            Some(other) => {
                let hint = suggest(other, ["hold", "rollback", "ignore"], || {
                    "choose `hold`, `rollback` or `ignore`".to_string()
                });
                r.error(
                    Code::BadValue,
                    n.pos,
                    format!("unknown no-data policy `{other}`"),
                )
                .len(other.chars().count())
                .hint(hint);
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(a)
}
