//! Request counters and injected faults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What an injected fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "type"
)]
pub enum FaultKind {
    /// Answer with this HTTP status (500, 503, ...) and a `Status` body.
    Status { code: u16 },
    /// Answer `429 Too Many Requests` with `Retry-After: retry_after_seconds`.
    TooManyRequests { retry_after_seconds: u64 },
    /// Hold the request this long, then serve it normally.
    Delay { millis: u64 },
}

/// An injected fault: which requests it hits and how many times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// A verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `apply`, `delete`,
    /// `deletecollection`), or `read` / `write`; all verbs when absent.
    #[serde(default)]
    pub verb: Option<String>,
    /// A resource plural (`deployments`); all resources when absent.
    #[serde(default)]
    pub resource: Option<String>,
    /// How many requests it hits before it is used up; forever when absent.
    #[serde(default)]
    pub times: Option<u32>,
}

impl Fault {
    /// Fail matching requests with `code` (forever, all verbs, all resources).
    pub fn status(code: u16) -> Self {
        Self {
            kind: FaultKind::Status { code },
            verb: None,
            resource: None,
            times: None,
        }
    }

    /// Answer matching requests with 429 and `Retry-After`.
    pub fn too_many_requests(retry_after_seconds: u64) -> Self {
        Self {
            kind: FaultKind::TooManyRequests {
                retry_after_seconds,
            },
            verb: None,
            resource: None,
            times: None,
        }
    }

    /// Delay matching requests.
    pub fn delay(delay: Duration) -> Self {
        Self {
            kind: FaultKind::Delay {
                millis: delay.as_millis() as u64,
            },
            verb: None,
            resource: None,
            times: None,
        }
    }

    /// Only for this verb (or `read` / `write`).
    pub fn verb(mut self, verb: &str) -> Self {
        self.verb = Some(verb.into());
        self
    }

    /// Only for this resource plural.
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    pub(crate) fn matches(&self, verb: &str, resource: &str) -> bool {
        let verb_ok = match self.verb.as_deref() {
            None => true,
            Some("read") => is_read(verb),
            Some("write") => is_write(verb),
            Some(v) => v == verb,
        };
        verb_ok && self.resource.as_deref().is_none_or(|r| r == resource)
    }
}

pub fn is_read(verb: &str) -> bool {
    matches!(verb, "get" | "list" | "watch")
}

pub fn is_write(verb: &str) -> bool {
    matches!(
        verb,
        "create" | "update" | "patch" | "apply" | "delete" | "deletecollection"
    )
}

/// One counter row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestKey {
    /// `get`, `list`, `watch`, `create`, `update`, `patch` (JSON, merge or strategic),
    /// `apply` (server-side apply), `delete`, `deletecollection`, or `discovery`.
    pub verb: String,
    /// Resource plural, with `/subresource` when one was addressed; empty for discovery.
    pub resource: String,
    /// `dryRun=All` was set.
    pub dry_run: bool,
}

/// Requests served since start (or the last reset), by verb and resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts(pub BTreeMap<String, u64>);

impl Counts {
    fn encode(key: &RequestKey) -> String {
        format!(
            "{} {}{}",
            key.verb,
            key.resource,
            if key.dry_run { " dryRun" } else { "" }
        )
    }

    pub(crate) fn add(&mut self, key: &RequestKey) {
        *self.0.entry(Self::encode(key)).or_default() += 1;
    }

    fn rows(&self) -> impl Iterator<Item = (RequestKey, u64)> + '_ {
        self.0.iter().map(|(k, n)| {
            let mut parts = k.split(' ');
            let verb = parts.next().unwrap_or_default().to_string();
            let resource = parts.next().unwrap_or_default().to_string();
            (
                RequestKey {
                    verb,
                    resource,
                    dry_run: parts.next() == Some("dryRun"),
                },
                *n,
            )
        })
    }

    /// get + list + watch requests.
    pub fn reads(&self) -> u64 {
        self.rows()
            .filter(|(k, _)| is_read(&k.verb))
            .map(|(_, n)| n)
            .sum()
    }

    /// Mutating requests, not counting dry runs.
    pub fn writes(&self) -> u64 {
        self.rows()
            .filter(|(k, _)| is_write(&k.verb) && !k.dry_run)
            .map(|(_, n)| n)
            .sum()
    }

    /// Mutating requests sent with `dryRun=All`.
    pub fn dry_run_writes(&self) -> u64 {
        self.rows()
            .filter(|(k, _)| is_write(&k.verb) && k.dry_run)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests with this verb (any resource, dry runs included).
    pub fn verb(&self, verb: &str) -> u64 {
        self.rows()
            .filter(|(k, _)| k.verb == verb)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests with this verb on this resource (dry runs included).
    pub fn get(&self, verb: &str, resource: &str) -> u64 {
        self.rows()
            .filter(|(k, _)| k.verb == verb && k.resource == resource)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every request, discovery included.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_split_reads_writes_and_dry_runs() {
        let mut counts = Counts::default();
        for (verb, dry_run) in [
            ("get", false),
            ("list", false),
            ("apply", false),
            ("apply", true),
            ("discovery", false),
        ] {
            counts.add(&RequestKey {
                verb: verb.into(),
                resource: "deployments".into(),
                dry_run,
            });
        }
        assert_eq!(
            (
                counts.reads(),
                counts.writes(),
                counts.dry_run_writes(),
                counts.total()
            ),
            (2, 1, 1, 5)
        );
        assert_eq!(counts.get("apply", "deployments"), 2);
    }

    #[test]
    fn faults_deserialize_from_the_control_api_shape() {
        let fault: Fault = serde_json::from_str(
            r#"{"type":"tooManyRequests","retryAfterSeconds":2,"verb":"write","times":1}"#,
        )
        .unwrap();
        assert_eq!(fault, Fault::too_many_requests(2).verb("write").times(1));
        assert!(fault.matches("apply", "deployments"));
        assert!(!fault.matches("get", "deployments"));
    }
}
