//! The body each chat service expects: Slack Block Kit, a Teams Adaptive
//! Card, a Discord embed, a Google Chat card, and canaryd's own JSON for
//! generic webhooks. Pure; the numbers come from [`AlertMessage`].

use serde_json::{Value, json};

use super::message::AlertMessage;
use crate::engine::AlertEvent;
use crate::spec::model::{AlertSeverity, SinkKind};

/// The JSON body posted to a sink of `kind`.
pub fn body(kind: SinkKind, m: &AlertMessage) -> Value {
    match kind {
        SinkKind::Slack => slack(m),
        SinkKind::Teams => teams(m),
        SinkKind::Discord => discord(m),
        SinkKind::GoogleChat => google_chat(m),
        SinkKind::Webhook => webhook(m),
    }
}

/// Facts shown by every chat sink, as (label, value) in reading order.
fn facts(m: &AlertMessage) -> Vec<(&'static str, String)> {
    let mut f = vec![
        (
            "Service",
            format!("{}/{}", m.rollout.namespace, m.rollout.name),
        ),
        (
            "Versions",
            format!("{} → {}", m.stable_version, m.canary_version),
        ),
        (
            "Step",
            if m.weight == m.weight_after {
                format!("{}/{} at {}", m.step, m.steps, m.weight)
            } else {
                format!(
                    "{}/{} at {} → now {}",
                    m.step, m.steps, m.weight, m.weight_after
                )
            },
        ),
        ("Decided at", m.at.to_string()),
    ];
    if let Some(g) = &m.gate {
        f.push(("Gate", g.name.clone()));
        // Gates judged on counts are judged over the step, not a window.
        let mut value = match &g.evidence {
            Some(_) => format!("{} (threshold {})", g.value, g.threshold),
            None => format!(
                "{} (threshold {}, window {})",
                g.value, g.threshold, g.window
            ),
        };
        if let Some(s) = &g.stable_value {
            value.push_str(&format!("; stable {s}"));
        }
        if let Some(why) = &g.inconclusive {
            value.push_str(&format!("; inconclusive: {why}"));
        }
        f.push(("Value", value));
        if let Some(e) = &g.evidence {
            f.push(("Evidence", e.clone()));
        }
    }
    f
}

fn icon(m: &AlertMessage) -> &'static str {
    match m.event {
        AlertEvent::RolledBack | AlertEvent::Aborted => "🚨",
        AlertEvent::Paused => "⚠️",
        AlertEvent::Promoted => "✅",
        AlertEvent::Started | AlertEvent::StepAdvanced => "🐤",
    }
}

/// Cuts `text` to at most `max` characters, marking the cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn slack(m: &AlertMessage) -> Value {
    let title = format!("{} {}", icon(m), m.title);
    let fields: Vec<Value> = facts(m)
        .into_iter()
        .map(|(k, v)| json!({"type": "mrkdwn", "text": clip(&format!("*{k}*\n{}", slack_escape(&v)), 2000)}))
        .collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": clip(&title, 150), "emoji": true}}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&slack_escape(&m.reason), 3000)}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(g) = &m.gate {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("*PromQL*\n```{}```", clip(&slack_escape(&g.query), 2900))}}));
    }
    if let Some(url) = &m.dashboard_url {
        blocks.push(json!({"type": "actions", "elements": [{
            "type": "button", "text": {"type": "plain_text", "text": "Open dashboard"},
            "url": url, "style": if m.severity == AlertSeverity::Error { "danger" } else { "primary" }
        }]}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
        "text": format!("canaryd · decision #{} · {}", m.seq, severity_word(m.severity))}]}));
    // The notification text is mrkdwn too: escaped, so `<!channel>` in a name pings no one.
    json!({"text": slack_escape(&title), "blocks": blocks})
}

fn severity_word(s: AlertSeverity) -> &'static str {
    match s {
        AlertSeverity::Info => "info",
        AlertSeverity::Warn => "warning",
        AlertSeverity::Error => "error",
    }
}

fn teams(m: &AlertMessage) -> Value {
    let colour = match m.severity {
        AlertSeverity::Error => "Attention",
        AlertSeverity::Warn => "Warning",
        AlertSeverity::Info => "Good",
    };
    let facts: Vec<Value> = facts(m)
        .into_iter()
        .map(|(k, v)| json!({"title": k, "value": clip(&v, 1000)}))
        .collect();
    // Teams refuses cards over 28 KB: long texts are cut.
    let mut body = vec![
        json!({"type": "TextBlock", "text": clip(&m.title, 400), "weight": "Bolder", "size": "Medium", "color": colour, "wrap": true}),
        json!({"type": "TextBlock", "text": clip(&m.reason, 2000), "wrap": true}),
        json!({"type": "FactSet", "facts": facts}),
    ];
    if let Some(g) = &m.gate {
        body.push(json!({"type": "TextBlock", "text": "PromQL", "weight": "Bolder", "wrap": true}));
        body.push(
            json!({"type": "TextBlock", "text": g.query, "fontType": "Monospace", "wrap": true}),
        );
    }
    let actions: Vec<Value> = m
        .dashboard_url
        .iter()
        .map(|url| json!({"type": "Action.OpenUrl", "title": "Open dashboard", "url": url}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": body,
                "actions": actions,
            }
        }]
    })
}

fn discord(m: &AlertMessage) -> Value {
    let colour = match m.severity {
        AlertSeverity::Error => 0xD9_30_25,
        AlertSeverity::Warn => 0xE8_A3_17,
        AlertSeverity::Info => 0x2E_A0_43,
    };
    let mut fields: Vec<Value> = facts(m)
        .into_iter()
        .map(|(k, v)| json!({"name": k, "value": clip(&v, 1024), "inline": k != "Value"}))
        .collect();
    if let Some(g) = &m.gate {
        let code = clip(&g.query.replace("```", "'''"), 1000);
        fields.push(
            json!({"name": "PromQL", "value": format!("```promql\n{code}\n```"), "inline": false}),
        );
    }
    let mut embed = json!({
        "title": clip(&format!("{} {}", icon(m), m.title), 256),
        "description": clip(&m.reason, 4096),
        "color": colour,
        "fields": fields,
        "timestamp": m.at.to_string(),
        "footer": {"text": format!("canaryd · decision #{}", m.seq)},
    });
    if let Some(url) = &m.dashboard_url {
        embed["url"] = json!(url);
    }
    json!({"username": "canaryd", "embeds": [embed], "allowed_mentions": {"parse": []}})
}

fn html_escape(text: &str) -> String {
    slack_escape(text).replace('"', "&quot;")
}

fn google_chat(m: &AlertMessage) -> Value {
    let mut widgets: Vec<Value> = facts(m)
        .into_iter()
        .map(|(k, v)| json!({"decoratedText": {"topLabel": k, "text": html_escape(&v), "wrapText": true}}))
        .collect();
    if let Some(g) = &m.gate {
        widgets.push(json!({"textParagraph": {"text": format!(
            "<b>PromQL</b><br>{}", html_escape(&clip(&g.query, 3000)))}}));
    }
    if let Some(url) = &m.dashboard_url {
        widgets.push(json!({"buttonList": {"buttons": [
            {"text": "Open dashboard", "onClick": {"openLink": {"url": url}}}
        ]}}));
    }
    json!({
        "text": format!("{} {}", icon(m), m.title),
        "cardsV2": [{
            "cardId": format!("canaryd-{}", m.id.replace('/', "-")),
            "card": {
                "header": {"title": m.title, "subtitle": m.reason},
                "sections": [{"widgets": widgets}],
            }
        }]
    })
}

/// canaryd's own event JSON: the whole message, versioned.
fn webhook(m: &AlertMessage) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("type".into(), json!("canaryd.alert"));
        obj.insert("schema_version".into(), json!(1));
    }
    v
}
