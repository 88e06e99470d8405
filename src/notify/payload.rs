//! What is sent: the event as JSON for generic webhooks (signed like GitHub signs its own,
//! `X-Baton-Signature-256: sha256=<hex of HMAC-SHA256(secret, body)>`), and a Slack message
//! (`text` plus `blocks`) for incoming webhooks. Pure; docs/notify.md shows the schema.

use serde_json::json;

use super::{Event, EventKind};
use crate::config::Secret;

/// The headers of a generic webhook delivery.
pub const EVENT_HEADER: &str = "X-Baton-Event";
pub const DELIVERY_HEADER: &str = "X-Baton-Delivery";
pub const SIGNATURE_HEADER: &str = "X-Baton-Signature-256";

/// The version of the JSON body (`schema`), raised when a field changes meaning.
pub const SCHEMA: &str = "baton.dev/notify/v1";

/// The generic webhook body: the event with `schema` and a one-line `summary`.
pub fn json_body(event: &Event) -> Vec<u8> {
    let mut v = serde_json::to_value(event).expect("plain data always serializes");
    if let Some(o) = v.as_object_mut() {
        o.insert("schema".into(), json!(SCHEMA));
        o.insert("summary".into(), json!(summary(event)));
    }
    serde_json::to_vec(&v).expect("plain data always serializes")
}

/// `sha256=<hex>` of the body under `secret`.
pub fn signature(secret: &Secret, body: &[u8]) -> String {
    crate::server::github::sign(secret, body)
}

/// Whether `header` is the signature of `body` under `secret` (what a receiver checks; the
/// comparison is constant-time).
pub fn verify(secret: &Secret, body: &[u8], header: Option<&str>) -> bool {
    crate::server::github::verify_signature(secret, body, header)
}

/// The release as people name it: `web 1.1.0` (or the short digest when untagged).
fn release(event: &Event) -> String {
    match (&event.tag, &event.digest) {
        (Some(t), _) => format!("{} {t}", event.app),
        (None, Some(d)) => {
            let hex = d.strip_prefix("sha256:").unwrap_or(d);
            format!("{} {}", event.app, &hex[..hex.len().min(12)])
        }
        (None, None) => event.app.clone(),
    }
}

/// One line saying what happened.
pub fn summary(event: &Event) -> String {
    let r = release(event);
    let env = &event.env;
    let pr = event
        .pull_request
        .as_ref()
        .map(|p| format!(" (#{})", p.number))
        .unwrap_or_default();
    match event.kind {
        EventKind::WaitingForApproval => format!("{r} waits for approval to reach {env}{pr}"),
        EventKind::Merged => format!("{r} merged into {env}{pr}"),
        EventKind::RolledOutHealthy => format!("{r} rolled out healthy in {env}{pr}"),
        EventKind::RolloutFailed => format!("{r} failed to roll out in {env}{pr}"),
        EventKind::RolledBack => format!("{env} rolled back to {r}{pr}"),
        EventKind::VerificationFailed => format!("{r} failed verification in {env}{pr}"),
        EventKind::MergeRefused => format!("GitHub refused to merge {r} into {env}{pr}"),
    }
}

fn emoji(kind: EventKind) -> &'static str {
    match kind {
        EventKind::WaitingForApproval => ":hourglass_flowing_sand:",
        EventKind::Merged => ":twisted_rightwards_arrows:",
        EventKind::RolledOutHealthy => ":white_check_mark:",
        EventKind::RolloutFailed | EventKind::VerificationFailed => ":x:",
        EventKind::RolledBack => ":rewind:",
        EventKind::MergeRefused => ":no_entry:",
    }
}

/// Slack's mrkdwn escapes (`&`, `<`, `>`).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming-webhook message: `text` (the notification and fallback) and `blocks`.
pub fn slack_body(event: &Event) -> Vec<u8> {
    let text = format!("{} {}", emoji(event.kind), escape(&summary(event)));
    let mut headline = text.clone();
    if let Some(url) = event.pull_request.as_ref().and_then(|p| p.url.as_ref()) {
        headline.push_str(&format!(" — <{}|view the pull request>", escape(url)));
    }
    let mut context = vec![format!(
        "`{}` · {}",
        event.kind.as_str(),
        escape(&event.repository)
    )];
    if let Some(d) = &event.digest {
        context.push(format!("`{}`", escape(d)));
    }
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": headline },
    })];
    if !event.detail.is_empty() {
        let detail: String = event.detail.chars().take(2900).collect();
        blocks.push(json!({
            "type": "section",
            "text": { "type": "mrkdwn", "text": format!(">{}", escape(&detail)) },
        }));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{ "type": "mrkdwn", "text": context.join(" · ") }],
    }));
    serde_json::to_vec(&json!({ "text": text, "blocks": blocks }))
        .expect("plain data always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::PullRequestRef;

    fn event() -> Event {
        Event {
            id: "0123456789abcdef0123456789abcdef".into(),
            kind: EventKind::RolloutFailed,
            repository: "shop/config".into(),
            env: "prod".into(),
            app: "web".into(),
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
            tag: Some("1.2.0".into()),
            pull_request: Some(PullRequestRef {
                number: 12,
                url: Some("https://github.com/shop/config/pull/12".into()),
            }),
            commit: Some("c0ffee".into()),
            detail: "failed: Deployment/web: <ProgressDeadlineExceeded>".into(),
            occurred_at: "2026-12-03T10:00:00Z".parse().unwrap(),
        }
    }

    #[test]
    fn the_json_body_carries_the_event_schema_and_summary() {
        let v: serde_json::Value = serde_json::from_slice(&json_body(&event())).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["event"], "rolloutFailed");
        assert_eq!(v["environment"], "prod");
        assert_eq!(v["app"], "web");
        assert_eq!(v["tag"], "1.2.0");
        assert_eq!(v["pullRequest"]["number"], 12);
        assert_eq!(v["occurredAt"], "2026-12-03T10:00:00Z");
        assert_eq!(v["summary"], "web 1.2.0 failed to roll out in prod (#12)");
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, event());
    }

    #[test]
    fn a_signature_verifies_with_its_secret_only() {
        let body = json_body(&event());
        let secret = Secret::new("s3cret");
        let sig = signature(&secret, &body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        assert!(verify(&secret, &body, Some(&sig)));
        assert!(!verify(&Secret::new("other"), &body, Some(&sig)));
        let mut tampered = body.clone();
        tampered[5] ^= 1;
        assert!(!verify(&secret, &tampered, Some(&sig)));
    }

    #[test]
    fn the_slack_message_has_a_text_fallback_and_escaped_blocks() {
        let v: serde_json::Value = serde_json::from_slice(&slack_body(&event())).unwrap();
        assert_eq!(v["text"], ":x: web 1.2.0 failed to roll out in prod (#12)");
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 3);
        assert!(
            blocks[0]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("<https://github.com/shop/config/pull/12|view the pull request>")
        );
        assert_eq!(
            blocks[1]["text"]["text"],
            ">failed: Deployment/web: &lt;ProgressDeadlineExceeded&gt;"
        );
        assert_eq!(blocks[2]["type"], "context");
    }
}
