//! `notify:` in `baton.yaml`: where baton tells people about promotions (generic signed JSON
//! webhooks and Slack-compatible incoming webhooks), filtered by environment and event. The
//! secrets (the HMAC key, a Slack URL, which is itself a credential) are named, never inline.
//!
//! ```yaml
//! notify:
//!   - name: deploy-log                       # stable: it keys the delivery record
//!     webhook:
//!       url: https://hooks.example.com/baton
//!       secret: { file: /run/secrets/notify-hmac }
//!     environments: [staging, prod]          # default: every environment
//!     events: [merged, rolloutFailed, rolledBack]   # default: every event
//!   - name: releases
//!     slack: { url: { env: SLACK_WEBHOOK_URL } }
//!     environments: [prod]
//! ```

use serde::{Deserialize, Serialize};

use super::diag::Diagnostic;
use super::secret::SecretRef;

/// What happened, as a `notify:` entry filters it and a receiver reads it (`event` field and
/// `X-Baton-Event` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    /// A promotion PR waits for people: approvals or a `/promote` command.
    WaitingForApproval,
    /// A promotion PR was merged into the config branch.
    Merged,
    /// The environment runs the promoted digest and it is healthy.
    RolledOutHealthy,
    /// The rollout failed (unhealthy past the deadline, or the apply was refused).
    RolloutFailed,
    /// A rollback PR was merged: the environment goes back to an earlier release.
    RolledBack,
    /// The environment's acceptance tests (`verify:`) failed.
    VerificationFailed,
    /// GitHub refused the merge (branch protection, rulesets, merge method, signatures).
    MergeRefused,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        Self::WaitingForApproval,
        Self::Merged,
        Self::RolledOutHealthy,
        Self::RolloutFailed,
        Self::RolledBack,
        Self::VerificationFailed,
        Self::MergeRefused,
    ];

    /// The name in `baton.yaml`, payloads and headers (`rolloutFailed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WaitingForApproval => "waitingForApproval",
            Self::Merged => "merged",
            Self::RolledOutHealthy => "rolledOutHealthy",
            Self::RolloutFailed => "rolloutFailed",
            Self::RolledBack => "rolledBack",
            Self::VerificationFailed => "verificationFailed",
            Self::MergeRefused => "mergeRefused",
        }
    }
}

/// One `notify:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotifyConfig {
    /// Names the entry in logs and metrics and keys what was delivered to it: renaming an
    /// entry makes it a new receiver. Lowercase letters, digits and `-`.
    pub name: String,
    /// A generic webhook: the event as JSON, signed with HMAC-SHA256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSink>,
    /// A Slack-compatible incoming webhook (`{"text": …, "blocks": […]}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackSink>,
    /// Only events of these environments (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// Only these events (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventKind>,
}

/// `webhook:` of a `notify:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WebhookSink {
    /// Where the JSON is POSTed (`http://` or `https://`). When the URL itself carries a
    /// token, give it as `urlFrom:` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The URL, read like any other secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<SecretRef>,
    /// The HMAC-SHA256 key of `X-Baton-Signature-256`.
    pub secret: SecretRef,
}

/// `slack:` of a `notify:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SlackSink {
    /// The incoming webhook URL: a credential, so always a secret reference.
    pub url: SecretRef,
}

impl NotifyConfig {
    /// Whether this entry wants `kind` events of `env`.
    pub fn wants(&self, env: &str, kind: EventKind) -> bool {
        (self.environments.is_empty() || self.environments.iter().any(|e| e == env))
            && (self.events.is_empty() || self.events.contains(&kind))
    }

    /// What is wrong with the entry on its own: `(field below the entry, message)`.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !is_name(&self.name) {
            return Some((
                "name",
                format!(
                    "{:?} is not a name (lowercase letters, digits and '-', at most 63)",
                    self.name
                ),
            ));
        }
        match (&self.webhook, &self.slack) {
            (None, None) | (Some(_), Some(_)) => {
                return Some((
                    "",
                    "set exactly one of webhook: { url, secret } or slack: { url }".into(),
                ));
            }
            (Some(w), None) => {
                match (&w.url, &w.url_from) {
                    (Some(url), None) => {
                        if let Some(m) = url_problem(url) {
                            return Some(("webhook.url", m));
                        }
                    }
                    (None, Some(s)) => {
                        if let Some(m) = secret_problem(s) {
                            return Some(("webhook.urlFrom", m));
                        }
                    }
                    _ => {
                        return Some((
                            "webhook",
                            "set exactly one of url: <https://…> or urlFrom: { env: … } / { file: … }"
                                .into(),
                        ));
                    }
                }
                if let Some(m) = secret_problem(&w.secret) {
                    return Some(("webhook.secret", m));
                }
            }
            (None, Some(s)) => {
                if let Some(m) = secret_problem(&s.url) {
                    return Some(("slack.url", m));
                }
            }
        }
        if self.environments.iter().any(|e| e.trim().is_empty()) {
            return Some(("environments", "an environment name is empty".into()));
        }
        None
    }
}

/// Check every entry and the names across entries: the first problem as
/// `(field path, message)`, the path from the document root (`notify[1].webhook.url`).
pub fn check(entries: &[NotifyConfig]) -> Option<(String, String)> {
    for (i, n) in entries.iter().enumerate() {
        if let Some((field, message)) = n.problem() {
            let path = if field.is_empty() {
                format!("notify[{i}]")
            } else {
                format!("notify[{i}].{field}")
            };
            return Some((path, message));
        }
        if let Some(j) = entries[..i].iter().position(|o| o.name == n.name) {
            return Some((
                format!("notify[{i}].name"),
                format!(
                    "{:?} is already the name of notify[{j}]; names key what was delivered, so each is unique",
                    n.name
                ),
            ));
        }
    }
    None
}

/// `notify[i].environments` naming environments the pipeline does not have (`baton validate
/// --config`): one diagnostic each, located in `file` by `tree`.
pub fn check_environments(
    entries: &[NotifyConfig],
    known: &[&str],
    file: &str,
    tree: Option<&crate::yaml::Node>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, n) in entries.iter().enumerate() {
        for (k, env) in n.environments.iter().enumerate() {
            if known.contains(&env.as_str()) {
                continue;
            }
            let field = format!("notify[{i}].environments[{k}]");
            let pos = tree.map(|t| t.lookup(&field).0.pos);
            out.push(Diagnostic::new(
                file,
                pos,
                field,
                format!(
                    "policies/pipeline.yaml has no environment {env:?} (it has {})",
                    known.join(", ")
                ),
            ));
        }
    }
    out
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn url_problem(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => None,
        // The value is not echoed: a URL in the wrong field may carry a token.
        _ => Some("is not an http:// or https:// URL".into()),
    }
}

fn secret_problem(s: &SecretRef) -> Option<String> {
    (s.env.is_some() == s.file.is_some())
        .then(|| "a secret needs exactly one of env: or file:".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Vec<NotifyConfig> {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn an_entry_filters_by_environment_and_event_and_defaults_to_everything() {
        let n = parse(
            "- name: a\n  slack: { url: { env: S } }\n  environments: [prod]\n  events: [merged, rolloutFailed]\n",
        );
        assert!(n[0].wants("prod", EventKind::Merged));
        assert!(!n[0].wants("dev", EventKind::Merged));
        assert!(!n[0].wants("prod", EventKind::RolledOutHealthy));
        let all = parse("- name: b\n  slack: { url: { env: S } }\n");
        for k in EventKind::ALL {
            assert!(all[0].wants("anything", k));
            let back: EventKind = yaml_serde::from_str(k.as_str()).unwrap();
            assert_eq!(back, k);
        }
    }

    #[test]
    fn bad_entries_name_their_field_and_never_echo_a_url() {
        for (yaml, field, says) in [
            (
                "- name: A\n  slack: { url: { env: S } }\n",
                "notify[0].name",
                "not a name",
            ),
            ("- name: a\n", "notify[0]", "exactly one of webhook"),
            (
                "- name: a\n  webhook: { url: \"ftp://x?token=hunter2\", secret: { env: H } }\n",
                "notify[0].webhook.url",
                "not an http",
            ),
            (
                "- name: a\n  webhook: { secret: { env: H } }\n",
                "notify[0].webhook",
                "exactly one of url",
            ),
            (
                "- name: a\n  webhook: { url: \"https://x\", secret: {} }\n",
                "notify[0].webhook.secret",
                "exactly one of env",
            ),
            (
                "- name: a\n  slack: { url: { env: S } }\n- name: a\n  slack: { url: { env: T } }\n",
                "notify[1].name",
                "already the name of notify[0]",
            ),
        ] {
            let (path, message) = check(&parse(yaml)).unwrap_or_else(|| panic!("{yaml}"));
            assert_eq!(path, field, "{yaml}");
            assert!(message.contains(says), "{yaml}: {message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        assert_eq!(
            check(&parse(
                "- name: ok-1\n  webhook: { url: \"http://127.0.0.1:9/x\", secret: { file: /s } }\n"
            )),
            None
        );
    }

    #[test]
    fn unknown_environments_are_located() {
        let text =
            "notify:\n  - name: a\n    slack: { url: { env: S } }\n    environments: [dev, prdo]\n";
        let tree = crate::yaml::parse(text).unwrap();
        #[derive(Deserialize)]
        struct Doc {
            notify: Vec<NotifyConfig>,
        }
        let doc: Doc = yaml_serde::from_str(text).unwrap();
        let d = check_environments(&doc.notify, &["dev", "prod"], "baton.yaml", Some(&tree));
        assert_eq!(d.len(), 1);
        let text = d[0].to_string();
        assert!(
            text.starts_with("baton.yaml:4:") && text.contains("notify[0].environments[1]"),
            "{text}"
        );
        assert!(text.contains("\"prdo\""), "{text}");
    }
}
