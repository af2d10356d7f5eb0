//! Chat alerts, delivered by the notifier from a real SQLite outbox to local
//! HTTP receivers: the body each service expects, the webhook signature,
//! retries, `Retry-After`, giving up, order per sink and severity filters.
//! Decisions come from the real engine under simulated time.

mod common;
mod harness;

use std::sync::Arc;
use std::time::Duration;

use canaryd::controller::metrics::AlertLabels;
use canaryd::engine::{Phase, Timestamp};
use canaryd::notify::{self, Notifier, RetryPolicy, Routing};
use canaryd::spec::model::{AlertSeverity, AlertSink, SecretRef, SinkKind};
use canaryd::store::{Change, DeliveryState, SqliteStore};
use common::{SEED_FILE, Sim, World, spec};
use harness::receiver::{Received, Receiver};
use harness::wait_for;
use hmac::Mac;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::Value;

const DASHBOARD: &str = "http://canaryd.internal:9900";
const SECRET_PATH: &str = "/services/T000/B000/s3cr3t-hook-token";

/// A notifier over a store, with its sinks' URLs in files of a temp dir.
struct Rig {
    store: Arc<SqliteStore>,
    dir: tempfile::TempDir,
    metrics: Family<AlertLabels, Counter>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            store: Arc::new(SqliteStore::in_memory().expect("store")),
            dir: tempfile::tempdir().expect("temp dir"),
            metrics: Family::default(),
            stop: None,
            task: None,
        }
    }

    /// A sink posting to `url`, read from a file as in production.
    fn sink(&self, kind: SinkKind, url: &str, min: AlertSeverity) -> AlertSink {
        let n = std::fs::read_dir(self.dir.path()).expect("dir").count();
        let path = self.dir.path().join(format!("url-{n}"));
        std::fs::write(&path, format!("{url}\n")).expect("url file");
        AlertSink {
            kind,
            webhook: SecretRef::File(path.display().to_string()),
            secret: None,
            min_severity: min,
        }
    }

    /// Runs the seed rollout to step 2 (50%), then a 50% error rate rolls it
    /// back; every decision is committed with its alerts routed to `sinks`.
    fn roll_back(&self, sinks: Vec<AlertSink>) -> Sim {
        let mut seed = spec(SEED_FILE);
        seed.alerts = sinks;
        let mut sim = Sim::new(seed);
        let routing = Routing {
            defaults: Vec::new(),
            dashboard_base: Some(DASHBOARD.into()),
        };
        let healthy = World::healthy();
        let failing = World::healthy().with("error_rate", 0.5);
        while sim.state.phase != Phase::RolledBack {
            let world = if sim.state.step >= 1 {
                &failing
            } else {
                &healthy
            };
            let before = sim.state.clone();
            let d = sim.tick(world).clone();
            let change = Change::of(&sim.spec.id, &d)
                .with_deliveries(notify::outgoing(&routing, &sim.spec, &before, &d));
            // Queued at the real clock's now: the notifier reads the real clock.
            let now = Timestamp::from_system(std::time::SystemTime::now());
            self.store.commit(&[change], now).expect("commit");
            assert!(sim.elapsed() < Duration::from_secs(7200), "no rollback");
        }
        sim
    }

    /// Starts delivering.
    fn start(&mut self, policy: RetryPolicy) {
        let wake = Arc::new(tokio::sync::Notify::new());
        let notifier = Notifier::new(self.store.clone(), policy, wake, self.metrics.clone())
            .expect("notifier");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(stop);
        self.task = Some(tokio::spawn(notifier.run(async move {
            let _ = stopped.await;
        })));
    }

    fn count(&self, sink: &str, result: &str) -> u64 {
        self.metrics
            .get_or_create(&AlertLabels {
                sink: sink.into(),
                result: result.into(),
            })
            .get()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn quick() -> RetryPolicy {
    RetryPolicy {
        first: Duration::from_millis(100),
        attempts: 4,
        timeout: Duration::from_secs(3),
        ..RetryPolicy::default()
    }
}

async fn first_accepted(receiver: &Receiver) -> Received {
    wait_for("a message accepted", Duration::from_secs(10), || async {
        receiver
            .accepted()
            .first()
            .cloned()
            .ok_or_else(|| format!("{} received", receiver.received().len()))
    })
    .await
}

/// A rollback alert to one sink of `kind` that only wants errors.
async fn rollback_message(kind: SinkKind) -> (Received, Sim) {
    let receiver = Receiver::start().await;
    let mut rig = Rig::new();
    let url = format!("{}{SECRET_PATH}", receiver.base);
    let sim = rig.roll_back(vec![rig.sink(kind, &url, AlertSeverity::Error)]);
    rig.start(quick());
    let got = first_accepted(&receiver).await;
    assert_eq!(got.path, SECRET_PATH);
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/json")
    );
    (got, sim)
}

/// Every text in a JSON document, joined.
fn all_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(all_text).collect::<Vec<_>>().join("\n"),
        Value::Object(o) => o.values().map(all_text).collect::<Vec<_>>().join("\n"),
        other => other.to_string(),
    }
}

/// What a person needs to act on a rollback, wherever it is shown.
fn assert_actionable(text: &str, sim: &Sim) {
    let record = sim.last_record();
    let gate = record
        .gates
        .iter()
        .find(|g| g.failed())
        .expect("a breached gate");
    for needle in [
        "checkout",
        "v1 → v2",
        "2/3",
        "50%",
        "error_rate > 2%",
        "50%",
        "threshold 2%",
        " errors over ",
        gate.query.as_str(),
        &record.at.to_string(),
        &format!("{DASHBOARD}/rollouts/default/checkout"),
    ] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
}

#[tokio::test]
async fn slack_gets_block_kit_with_everything_needed_to_act_on_a_rollback() {
    let (got, sim) = rollback_message(SinkKind::Slack).await;
    let body = got.json();
    assert!(
        body["text"]
            .as_str()
            .is_some_and(|t| t.contains("checkout: v2 rolled back to v1")),
        "fallback text for notifications: {body:#}"
    );
    let blocks = body["blocks"].as_array().expect("blocks");
    let types: Vec<&str> = blocks.iter().filter_map(|b| b["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"header"), "{types:?}");
    assert!(types.contains(&"section") && types.contains(&"actions"));
    let button = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .map(|b| &b["elements"][0])
        .expect("a button");
    assert_eq!(
        button["url"],
        format!("{DASHBOARD}/rollouts/default/checkout")
    );
    let fields: Vec<&str> = blocks
        .iter()
        .flat_map(|b| b["fields"].as_array().into_iter().flatten())
        .filter_map(|f| f["text"].as_str())
        .collect();
    assert!(fields.len() <= 10, "Slack allows 10 fields per section");
    assert!(
        fields.iter().any(|f| f.starts_with("*Versions*")),
        "{fields:?}"
    );
    // Slack's mrkdwn needs `>` escaped.
    assert_actionable(&all_text(&body).replace("&gt;", ">"), &sim);
}

#[tokio::test]
async fn teams_gets_an_adaptive_card_with_the_facts() {
    let (got, sim) = rollback_message(SinkKind::Teams).await;
    let body = got.json();
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    let facts = card["body"]
        .as_array()
        .expect("card body")
        .iter()
        .find(|b| b["type"] == "FactSet")
        .expect("a fact set");
    let titles: Vec<&str> = facts["facts"]
        .as_array()
        .expect("facts")
        .iter()
        .filter_map(|f| f["title"].as_str())
        .collect();
    for t in ["Service", "Versions", "Step", "Decided at", "Gate", "Value"] {
        assert!(titles.contains(&t), "{t} missing from {titles:?}");
    }
    assert_eq!(card["actions"][0]["type"], "Action.OpenUrl");
    assert_eq!(
        card["body"][0]["color"], "Attention",
        "errors look like errors"
    );
    assert_actionable(&all_text(&body), &sim);
}

#[tokio::test]
async fn discord_gets_an_embed_coloured_by_severity() {
    let (got, sim) = rollback_message(SinkKind::Discord).await;
    let body = got.json();
    let embed = &body["embeds"][0];
    assert!(
        embed["title"]
            .as_str()
            .is_some_and(|t| t.contains("rolled back"))
    );
    assert_eq!(embed["color"], 0xD9_30_25);
    assert_eq!(
        embed["url"],
        format!("{DASHBOARD}/rollouts/default/checkout")
    );
    assert_eq!(embed["timestamp"], sim.last_record().at.to_string());
    let names: Vec<&str> = embed["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert!(
        names.contains(&"PromQL") && names.contains(&"Gate"),
        "{names:?}"
    );
    assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
    assert_actionable(&all_text(&body), &sim);
}

#[tokio::test]
async fn google_chat_gets_a_card() {
    let (got, sim) = rollback_message(SinkKind::GoogleChat).await;
    let body = got.json();
    let card = &body["cardsV2"][0]["card"];
    assert!(
        card["header"]["title"]
            .as_str()
            .is_some_and(|t| t.contains("checkout: v2 rolled back to v1"))
    );
    let widgets = card["sections"][0]["widgets"].as_array().expect("widgets");
    assert!(
        widgets
            .iter()
            .any(|w| w["decoratedText"]["topLabel"] == "Gate")
    );
    assert!(widgets.iter().any(|w| w["buttonList"].is_object()));
    assert_actionable(&all_text(&body).replace("&gt;", ">"), &sim);
}

#[tokio::test]
async fn a_generic_webhook_is_signed_over_timestamp_and_body_with_an_idempotency_key() {
    let receiver = Receiver::start().await;
    let mut rig = Rig::new();
    let mut sink = rig.sink(
        SinkKind::Webhook,
        &format!("{}/hooks/canary", receiver.base),
        AlertSeverity::Error,
    );
    let secret_file = rig.dir.path().join("signing-secret");
    std::fs::write(&secret_file, "whsec-0123456789").expect("secret");
    sink.secret = Some(SecretRef::File(secret_file.display().to_string()));
    let sim = rig.roll_back(vec![sink]);
    rig.start(quick());
    let got = first_accepted(&receiver).await;

    let body = got.json();
    assert_eq!(body["type"], "canaryd.alert");
    assert_eq!(body["event"], "rolled_back");
    let id = format!("default/checkout/{}/rolled_back", sim.last_record().seq);
    assert_eq!(body["id"], id);
    assert_eq!(got.header("idempotency-key"), Some(id));
    assert_eq!(
        got.header("x-canaryd-event").as_deref(),
        Some("rolled_back")
    );
    let ts = got.header("x-canaryd-timestamp").expect("timestamp");
    let signature = got.header("x-canaryd-signature").expect("signature");
    let hex = signature.strip_prefix("v1=").expect("v1= scheme");
    let verify = |body: &[u8]| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"whsec-0123456789").expect("key");
        mac.update(format!("{ts}.").as_bytes());
        mac.update(body);
        mac.verify_slice(&hex::decode(hex).expect("hex")).is_ok()
    };
    assert!(
        verify(&got.body),
        "the signature verifies with the shared secret"
    );
    let mut tampered = got.body.to_vec();
    tampered[10] ^= 1;
    assert!(!verify(&tampered), "and fails for a changed body");
    assert_eq!(body["gate"]["name"], "error_rate > 2%");
    assert_eq!(body["gate"]["window"], "1m");
}

#[tokio::test]
async fn a_receiver_answering_500_then_200_gets_exactly_one_accepted_message() {
    let receiver = Receiver::start().await;
    receiver.answer(&[(500, None)]);
    let mut rig = Rig::new();
    let url = format!("{}/hook", receiver.base);
    let sim = rig.roll_back(vec![rig.sink(SinkKind::Slack, &url, AlertSeverity::Error)]);
    rig.start(quick());
    first_accepted(&receiver).await;
    let statuses = wait_for("the delivery recorded", Duration::from_secs(5), || async {
        let s = rig.store.deliveries(&sim.spec.id, 10).expect("statuses");
        if s.iter().all(|d| d.state == DeliveryState::Delivered) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].attempts, 2);
    let got = receiver.received();
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 200],
        "one retry, then nothing more"
    );
    assert_eq!(got[0].body, got[1].body, "the same message again");
    assert_eq!(rig.count("slack", "retry"), 1);
    assert_eq!(rig.count("slack", "delivered"), 1);
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let receiver = Receiver::start().await;
    receiver.answer(&[(429, Some("2"))]);
    let mut rig = Rig::new();
    let url = format!("{}/hook", receiver.base);
    rig.roll_back(vec![rig.sink(
        SinkKind::Discord,
        &url,
        AlertSeverity::Error,
    )]);
    rig.start(quick()); // its own backoff would retry after 100 ms
    first_accepted(&receiver).await;
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    let waited = got[1].at - got[0].at;
    assert!(
        waited >= Duration::from_millis(1900),
        "retried after {waited:?}"
    );
}

#[tokio::test]
async fn a_refused_payload_is_given_up_at_once_and_a_failing_receiver_after_the_limit() {
    // 404 (a revoked webhook) cannot get better by retrying.
    let gone = Receiver::start().await;
    gone.answer(&[(404, None)]);
    // 503 forever: given up after the policy's four attempts.
    let down = Receiver::start().await;
    down.refuse_containing(Some(""));
    let mut rig = Rig::new();
    let sinks = vec![
        rig.sink(
            SinkKind::Slack,
            &format!("{}{SECRET_PATH}", gone.base),
            AlertSeverity::Error,
        ),
        rig.sink(
            SinkKind::Teams,
            &format!("{}{SECRET_PATH}", down.base),
            AlertSeverity::Error,
        ),
    ];
    let sim = rig.roll_back(sinks);
    rig.start(quick());
    let statuses = wait_for("both given up", Duration::from_secs(15), || async {
        let s = rig.store.deliveries(&sim.spec.id, 10).expect("statuses");
        if s.len() == 2 && s.iter().all(|d| d.state == DeliveryState::GaveUp) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    assert_eq!(gone.received().len(), 1);
    assert_eq!(down.received().len(), 4);
    assert_eq!(rig.count("slack", "gave_up"), 1);
    assert_eq!(rig.count("teams", "gave_up"), 1);
    assert_eq!(rig.count("teams", "retry"), 3);
    for s in &statuses {
        let error = s.last_error.as_deref().expect("the reason is kept");
        assert!(
            error.contains("HTTP 404") || error.contains("HTTP 503"),
            "{error}"
        );
        assert!(!error.contains("s3cr3t"), "no URL in errors: {error}");
    }
}

#[tokio::test]
async fn a_sink_gets_alerts_in_decision_order_and_only_those_at_its_severity() {
    let everything = Receiver::start().await;
    let errors_only = Receiver::start().await;
    let mut rig = Rig::new();
    let sinks = vec![
        rig.sink(
            SinkKind::Slack,
            &format!("{}/all", everything.base),
            AlertSeverity::Info,
        ),
        rig.sink(
            SinkKind::Slack,
            &format!("{}/err", errors_only.base),
            AlertSeverity::Error,
        ),
    ];
    // The first attempt fails: later alerts must wait behind it, not overtake.
    everything.answer(&[(503, None)]);
    rig.roll_back(sinks);
    rig.start(quick());
    let titles = wait_for("three alerts", Duration::from_secs(10), || async {
        let t: Vec<String> = everything
            .accepted()
            .iter()
            .map(|r| r.json()["text"].as_str().unwrap_or("").to_string())
            .collect();
        if t.len() == 3 {
            Ok(t)
        } else {
            Err(format!("{t:?}"))
        }
    })
    .await;
    assert!(titles[0].contains("canary v2 started at 5%"), "{titles:?}");
    assert!(
        titles[1].contains("advanced to step 2/3 (50%)"),
        "{titles:?}"
    );
    assert!(titles[2].contains("rolled back to v1"), "{titles:?}");
    let errors = errors_only.accepted();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].json()["text"]
            .as_str()
            .is_some_and(|t| t.contains("rolled back"))
    );
}

#[tokio::test]
async fn a_missing_webhook_url_is_reported_by_where_it_was_looked_for() {
    let mut rig = Rig::new();
    let sink = AlertSink {
        kind: SinkKind::Slack,
        webhook: SecretRef::Env("CANARYD_TEST_UNSET_WEBHOOK".into()),
        secret: None,
        min_severity: AlertSeverity::Error,
    };
    let sim = rig.roll_back(vec![sink]);
    rig.start(quick());
    let status = wait_for("an attempt", Duration::from_secs(5), || async {
        let s = rig.store.deliveries(&sim.spec.id, 10).expect("statuses");
        match s.first() {
            Some(d) if d.attempts > 0 => Ok(d.clone()),
            _ => Err(format!("{s:?}")),
        }
    })
    .await;
    assert_eq!(
        status.last_error.as_deref(),
        Some("webhook URL from env:CANARYD_TEST_UNSET_WEBHOOK is not set")
    );
    assert_eq!(status.sink, "slack:env:CANARYD_TEST_UNSET_WEBHOOK");
}
