//! Custom gates in Rego (`policies/*.rego`, evaluated with regorus). A policy in package
//! `baton` adds deny reasons to the set `deny`; any reason blocks the promotion and is
//! shown on the PR. Pure: sources and input in, reasons out.
//!
//! ```rego
//! package baton
//! import rego.v1
//! deny contains msg if {
//!     input.environment == "prod"
//!     input.weekday == "Fri"
//!     msg := "no prod promotions on Fridays"
//! }
//! ```
//!
//! The input is [`PolicyInput`] as JSON.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::policy::engine;
pub use crate::config::policy::{PolicyError, PolicySource, compile};

/// The rule every policy contributes to.
pub const DENY_RULE: &str = "data.baton.deny";

/// What a policy sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInput {
    pub app: String,
    pub environment: String,
    pub digest: String,
    pub tag: Option<String>,
    /// The digest the environment runs now.
    pub from: Option<String>,
    /// RFC 3339, UTC.
    pub now: String,
    /// `Mon` … `Sun`, UTC.
    pub weekday: String,
    pub pull_request: u64,
    pub labels: Vec<String>,
    /// Logins whose approvals are current.
    pub approvers: Vec<String>,
    /// Check contexts that are green on the head.
    pub passed_checks: Vec<String>,
    /// The image's verified attestations (`verify.attestations`): predicate type → predicate,
    /// e.g. `input.attestations["https://slsa.dev/provenance/v1"].buildDefinition…`.
    pub attestations: std::collections::BTreeMap<String, serde_json::Value>,
}

impl PolicyInput {
    pub fn weekday_of(now: DateTime<Utc>) -> String {
        now.format("%a").to_string()
    }
}

/// The deny reasons for `input`, sorted; empty when no policy objects.
pub fn deny_reasons(
    sources: &[PolicySource],
    input: &PolicyInput,
) -> Result<Vec<String>, PolicyError> {
    if sources.is_empty() {
        return Ok(Vec::new());
    }
    let mut engine = engine(sources)?;
    let json = serde_json::to_string(input).map_err(|e| PolicyError {
        message: e.to_string(),
    })?;
    engine.set_input_json(&json).map_err(|e| PolicyError {
        message: format!("policy input: {e}"),
    })?;
    let value = engine
        .eval_rule(DENY_RULE.to_string())
        .map_err(|e| PolicyError {
            message: format!("evaluating {DENY_RULE}: {e}"),
        })?;
    if value == regorus::Value::Undefined {
        return Ok(Vec::new());
    }
    let out = value.to_json_str().map_err(|e| PolicyError {
        message: e.to_string(),
    })?;
    let parsed: serde_json::Value = serde_json::from_str(&out).map_err(|e| PolicyError {
        message: e.to_string(),
    })?;
    let mut reasons: Vec<String> = match parsed {
        serde_json::Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            })
            .collect(),
        serde_json::Value::Null => Vec::new(),
        other => {
            return Err(PolicyError {
                message: format!("{DENY_RULE} must be a set of strings, got {other}"),
            });
        }
    };
    reasons.sort();
    Ok(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_FRIDAYS: &str = r#"
package baton
import rego.v1

deny contains msg if {
    input.environment == "prod"
    input.weekday == "Fri"
    msg := "no prod promotions on Fridays"
}

deny contains msg if {
    count(input.approvers) < 1
    input.environment == "prod"
    msg := sprintf("%s needs a human approval", [input.app])
}
"#;

    fn input(env: &str, weekday: &str, approvers: &[&str]) -> PolicyInput {
        PolicyInput {
            attestations: Default::default(),
            app: "web".into(),
            environment: env.into(),
            digest: "sha256:00".into(),
            tag: Some("1.0.0".into()),
            from: None,
            now: "2026-11-27T10:00:00Z".into(),
            weekday: weekday.into(),
            pull_request: 1,
            labels: vec![],
            approvers: approvers.iter().map(|s| s.to_string()).collect(),
            passed_checks: vec![],
        }
    }

    fn sources() -> Vec<PolicySource> {
        vec![PolicySource {
            path: "policies/fridays.rego".into(),
            text: NO_FRIDAYS.into(),
        }]
    }

    #[test]
    fn a_rule_that_matches_denies_with_its_message() {
        let reasons = deny_reasons(&sources(), &input("prod", "Fri", &[])).unwrap();
        assert_eq!(
            reasons,
            vec![
                "no prod promotions on Fridays",
                "web needs a human approval"
            ]
        );
    }

    #[test]
    fn nothing_is_denied_when_no_rule_matches() {
        assert_eq!(
            deny_reasons(&sources(), &input("prod", "Tue", &["alice"])).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            deny_reasons(&sources(), &input("dev", "Fri", &[])).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            deny_reasons(&[], &input("prod", "Fri", &[])).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn weekdays_are_three_letter_names() {
        use chrono::TimeZone;
        assert_eq!(
            PolicyInput::weekday_of(Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap()),
            "Fri"
        );
    }
}
