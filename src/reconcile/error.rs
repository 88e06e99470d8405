//! Why a reconcile did not finish, and whether trying again can help.

use std::time::Duration;

use super::object::InputProblem;

/// A reconcile that could not finish. A rollout that ends unhealthy is not an error: that is
/// a [`super::Report`] whose health is Failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The environment did not render; nothing was applied or pruned.
    #[error("environment {env} did not render at {commit}: {source}")]
    Render {
        env: String,
        commit: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The config repo could not be read at the tip (fetch, export, pipeline); nothing was
    /// applied or pruned.
    #[error("environment {env}: cannot read the config repo: {message}")]
    Source {
        env: String,
        message: String,
        transient: bool,
    },
    /// Rendered objects that cannot be applied; nothing was applied or pruned.
    #[error("environment {env} has {} invalid object(s); nothing was applied:\n{}", problems.len(), list(problems))]
    InvalidInput {
        env: String,
        problems: Vec<InputProblem>,
    },
    /// Objects of kinds the cluster does not serve and no CustomResourceDefinition in the
    /// environment defines; nothing was applied or pruned.
    #[error(
        "environment {env} uses kinds the cluster does not serve; nothing was applied (install their CRDs first or add them to the environment):\n{}",
        list(objects)
    )]
    UnknownKinds { env: String, objects: Vec<String> },
    /// Objects outside baton's RBAC scope on the cluster (cluster-scoped objects, or other
    /// namespaces, under `scope: namespaces`); nothing was applied or pruned.
    #[error(
        "environment {env} renders object(s) outside baton's RBAC scope ({scope}); nothing was applied (remove them from the environment, add their namespaces to the chart's rbac.namespaces and the cluster's namespaces in baton.yaml, or deploy baton with rbac.scope: cluster):\n{}",
        list(objects)
    )]
    OutOfScope {
        env: String,
        scope: String,
        objects: Vec<String>,
    },
    /// Objects the environment's `allow:` does not cover; nothing was applied or pruned.
    #[error(
        "environment {env} renders object(s) outside its allow: ({allow}); nothing was applied (remove them, or widen allow: in policies/pipeline.yaml through a PR the environment's approvers approve):\n{}",
        list(objects)
    )]
    NotAllowed {
        env: String,
        allow: String,
        objects: Vec<String>,
    },
    /// The API server refused a call made as an environment's ServiceAccount (`message`
    /// names the environment, the account, the verb, resource and namespace, and what to
    /// grant); nothing was applied or pruned when it was a read or a dry run.
    #[error("{message}")]
    Forbidden { env: String, message: String },
    /// A call to the API server failed.
    #[error("{action} {object}: {}", describe(source))]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    /// The API server's dry run refused some objects; nothing was applied or pruned.
    #[error("the API server refused {} of {total} object(s) in a dry run; nothing was applied:\n{}", failures.len(), list(failures))]
    DryRun {
        failures: Vec<ObjectFailure>,
        total: usize,
    },
    /// Some objects could not be applied; the others were, and nothing was pruned.
    #[error("{} of {total} object(s) could not be applied; nothing was pruned:\n{}", failures.len(), list(failures))]
    Apply {
        failures: Vec<ObjectFailure>,
        total: usize,
    },
    /// Every object applied, but some removed objects could not be pruned (they stay in the
    /// inventory and are tried again).
    #[error("{} of {total} removed object(s) could not be pruned:\n{}", failures.len(), list(failures))]
    Prune {
        failures: Vec<ObjectFailure>,
        total: usize,
    },
    /// A CustomResourceDefinition was applied but the API did not serve it in time.
    #[error("CustomResourceDefinition {name} was not established within {}s", waited.as_secs())]
    CrdNotEstablished { name: String, waited: Duration },
    /// The inventory ConfigMap holds something baton did not write.
    #[error("inventory ConfigMap {namespace}/{name} is unreadable ({message}); fix or delete it")]
    Inventory {
        namespace: String,
        name: String,
        message: String,
    },
}

/// One object that could not be applied or pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFailure {
    pub object: String,
    pub message: String,
    pub transient: bool,
}

impl std::fmt::Display for ObjectFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| format!("- {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ReconcileError {
    /// Whether retrying the same input may succeed (API outages, conflicts, timeouts), as
    /// opposed to needing a change in Git or in the cluster's configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Render { .. }
            | ReconcileError::InvalidInput { .. }
            | ReconcileError::UnknownKinds { .. }
            | ReconcileError::OutOfScope { .. }
            | ReconcileError::NotAllowed { .. }
            | ReconcileError::Forbidden { .. }
            | ReconcileError::Inventory { .. } => false,
            ReconcileError::Api { source, .. } => is_transient(source),
            ReconcileError::Apply { failures, .. }
            | ReconcileError::DryRun { failures, .. }
            | ReconcileError::Prune { failures, .. } => failures.iter().all(|f| f.transient),
            ReconcileError::CrdNotEstablished { .. } => true,
            ReconcileError::Source { transient, .. } => *transient,
        }
    }
}

/// API errors worth retrying: server errors, throttling, conflicts that are not field
/// ownership, expired watches and broken connections. Validation, authorization, missing
/// namespaces and field-manager conflicts need a person.
pub fn is_transient(error: &kube::Error) -> bool {
    match error {
        kube::Error::Api(status) => match status.code {
            409 => !is_field_conflict(status),
            // A server-side apply of a field the schema does not declare.
            500 if status.message.contains("field not declared in schema") => false,
            408 | 410 | 429 => true,
            code => code >= 500,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => true,
        _ => false,
    }
}

/// The API server refused to change a field that is immutable (a Job's template, a
/// selector, a StatefulSet's `volumeClaimTemplates`, a Service's `clusterIP`).
pub fn is_immutable(status: &kube::core::Status) -> bool {
    status.code == 422
        && [
            "field is immutable",
            "may not change once set",
            "Forbidden: updates to statefulset spec for fields other than",
        ]
        .iter()
        .any(|m| status.message.contains(m))
}

/// A server-side apply conflict with another field manager (needs `force` or a person).
pub fn is_field_conflict(status: &kube::core::Status) -> bool {
    status.code == 409
        && status
            .details
            .as_ref()
            .is_some_and(|d| d.causes.iter().any(|c| c.reason == "FieldManagerConflict"))
}

/// What to do about a 403: the API server's message already names the user, verb, resource and
/// namespace.
pub(crate) const FORBIDDEN_HINT: &str = "; baton's identity lacks this permission: grant it (the chart's rbac.rules, and rbac.namespaces under rbac.scope: namespaces; docs/deployment.md)";

/// [`describe`], with `hint` (given the API server's message) in place of the advice to grant
/// baton's own identity a refused permission.
pub(crate) fn describe_with(error: &kube::Error, hint: impl Fn(&str) -> String) -> String {
    match error {
        kube::Error::Api(status) if status.code == 403 => format!(
            "{} ({} {}){}",
            status.message,
            status.code,
            status.reason,
            hint(&status.message)
        ),
        other => describe(other),
    }
}

/// The API server's message, without kube's debug dump.
pub fn describe(error: &kube::Error) -> String {
    describe_change(error, None, None)
}

/// The fields a refusal of an immutable change names. The StatefulSet refusal names only
/// `spec` ("updates to statefulset spec for fields other than 'replicas', 'template', … are
/// forbidden"); given what baton applied and the live object, the fields of `spec` that changed
/// and are not in the server's list of mutable ones are named instead
/// (`spec.volumeClaimTemplates`).
fn refused_fields(
    status: &kube::core::Status,
    applied: Option<&serde_json::Value>,
    live: Option<&serde_json::Value>,
) -> Vec<String> {
    let named: Vec<String> = status
        .details
        .iter()
        .flat_map(|d| &d.causes)
        .map(|c| c.field.clone())
        .filter(|f| !f.is_empty())
        .collect();
    if let (Some(applied), Some(live)) = (applied, live)
        && named.iter().all(|f| f == "spec")
    {
        let mutable: Vec<&str> = status.message.split('\'').skip(1).step_by(2).collect();
        let mut changed: Vec<String> = super::diff::differences(applied, live)
            .iter()
            .filter_map(|path| path.strip_prefix(".spec."))
            .filter_map(|rest| rest.split(['.', '[']).next())
            .filter(|field| !mutable.contains(field))
            .map(|field| format!("spec.{field}"))
            .collect();
        changed.sort();
        changed.dedup();
        if !changed.is_empty() {
            return changed;
        }
    }
    named
}

/// [`describe`], naming the fields of an immutable change from what baton applied and the
/// live object when the server's refusal is too coarse (see [`refused_fields`]).
pub fn describe_change(
    error: &kube::Error,
    applied: Option<&serde_json::Value>,
    live: Option<&serde_json::Value>,
) -> String {
    match error {
        kube::Error::Api(status) if is_immutable(status) => {
            // The server's message dumps the whole old value; name the fields instead.
            let fields = refused_fields(status, applied, live);
            let head = status.message.split(": ").next().unwrap_or_default();
            let message = if fields.is_empty() || head.is_empty() {
                status.message.clone()
            } else {
                format!("{head}: {}: field is immutable", fields.join(", "))
            };
            format!(
                "{message} ({} {}); the field cannot change once set: annotate the object with baton.dev/replace: \"true\" to let baton delete and re-create it",
                status.code, status.reason
            )
        }
        kube::Error::Api(status) => {
            let mut text = format!("{} ({} {})", status.message, status.code, status.reason);
            if is_field_conflict(status) {
                text.push_str("; another field manager owns these fields: apply with force, or remove them from the other manager");
            }
            if status.code == 403 {
                text.push_str(FORBIDDEN_HINT);
            }
            text
        }
        other => other.to_string(),
    }
}

/// Exponential backoff with jitter: `base · 2^attempt` capped at `max`, then a random point in
/// its upper half, so that retries of many environments spread out.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    backoff_at(attempt, base, max, random_unit())
}

/// [`backoff`] with the random draw given (`unit` in `[0, 1)`).
pub fn backoff_at(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(attempt.min(31)));
    let capped = exp.min(max);
    capped / 2 + capped.mul_f64(unit.clamp(0.0, 1.0) / 2.0)
}

/// A number in `[0, 1)` from the standard library's randomly keyed hasher (no RNG crate for
/// a jitter).
fn random_unit() -> f64 {
    use std::hash::BuildHasher;
    let bits =
        std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use kube::core::response::{StatusCause, StatusDetails};

    fn api(code: u16, reason: &str) -> kube::Error {
        kube::Error::Api(Box::new(Status {
            code,
            reason: reason.into(),
            message: "m".into(),
            ..Default::default()
        }))
    }

    #[test]
    fn server_errors_throttling_and_plain_conflicts_are_transient() {
        for (code, reason) in [
            (500, "InternalError"),
            (503, "ServiceUnavailable"),
            (429, "TooManyRequests"),
            (409, "Conflict"),
            (410, "Expired"),
        ] {
            assert!(is_transient(&api(code, reason)), "{code}");
        }
        for (code, reason) in [
            (400, "BadRequest"),
            (403, "Forbidden"),
            (404, "NotFound"),
            (422, "Invalid"),
        ] {
            assert!(!is_transient(&api(code, reason)), "{code}");
        }
    }

    #[test]
    fn a_field_manager_conflict_is_permanent_and_says_what_to_do() {
        let conflict = kube::Error::Api(Box::new(Status {
            code: 409,
            reason: "Conflict".into(),
            message: "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
                .into(),
            details: Some(StatusDetails {
                causes: vec![StatusCause {
                    reason: "FieldManagerConflict".into(),
                    message: "conflict with \"kubectl\"".into(),
                    field: ".spec.replicas".into(),
                }],
                name: "web".into(),
                group: "apps".into(),
                kind: "deployments".into(),
                uid: String::new(),
                retry_after_seconds: 0,
            }),
            ..Default::default()
        }));
        assert!(!is_transient(&conflict));
        assert!(describe(&conflict).contains("apply with force"));
    }

    #[test]
    fn a_stateful_set_refusal_of_its_whole_spec_names_the_fields_that_changed() {
        // As the real API server words it (v1.36).
        let refusal = kube::Error::Api(Box::new(Status {
            code: 422,
            reason: "Invalid".into(),
            message: "StatefulSet.apps \"db\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into(),
            details: Some(StatusDetails {
                causes: vec![StatusCause {
                    reason: "FieldValueForbidden".into(),
                    message: "Forbidden: updates to statefulset spec …".into(),
                    field: "spec".into(),
                }],
                name: "db".into(),
                group: "apps".into(),
                kind: "StatefulSet".into(),
                uid: String::new(),
                retry_after_seconds: 0,
            }),
            ..Default::default()
        }));
        let sts = |size: &str, replicas: i64| {
            serde_json::json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"replicas": replicas,
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"resources": {"requests": {"storage": size}}}}]}})
        };
        let text = describe_change(&refusal, Some(&sts("2Gi", 3)), Some(&sts("1Gi", 1)));
        assert!(
            text.starts_with(
                "StatefulSet.apps \"db\" is invalid: spec.volumeClaimTemplates: field is immutable (422 Invalid)"
            ),
            "{text}"
        );
        assert!(text.contains("baton.dev/replace"), "{text}");
        // Without the live object, the server's own word.
        assert!(
            describe(&refusal).contains("is invalid: spec: field is immutable"),
            "{}",
            describe(&refusal)
        );
    }

    #[test]
    fn input_problems_are_permanent_and_partial_applies_are_as_transient_as_their_failures() {
        let e = ReconcileError::InvalidInput {
            env: "dev".into(),
            problems: vec![],
        };
        assert!(!e.is_transient());
        let failure = |transient| ObjectFailure {
            object: "Deployment/shop/web".into(),
            message: "boom".into(),
            transient,
        };
        let e = |fs| ReconcileError::Apply {
            failures: fs,
            total: 3,
        };
        assert!(e(vec![failure(true), failure(true)]).is_transient());
        assert!(!e(vec![failure(true), failure(false)]).is_transient());
        assert_eq!(
            e(vec![failure(true)]).to_string(),
            "1 of 3 object(s) could not be applied; nothing was pruned:\n- Deployment/shop/web: boom"
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters_in_the_upper_half() {
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(backoff_at(0, base, max, 0.0), Duration::from_millis(500));
        assert_eq!(backoff_at(3, base, max, 0.0), Duration::from_secs(4));
        let high = backoff_at(3, base, max, 0.999);
        assert!(high > Duration::from_millis(7990) && high < Duration::from_secs(8));
        assert_eq!(backoff_at(30, base, max, 0.0), Duration::from_secs(30));
        for attempt in 0..40 {
            let d = backoff(attempt, base, max);
            assert!(d <= max, "{d:?}");
        }
    }
}
