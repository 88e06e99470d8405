//! Health assessment, kstatus-style: pure functions from a live object's JSON to Healthy,
//! Progressing or Failed, with a reason and a message a person can act on.
//!
//! A workload's health is the health of its *rollout*: once a pod template has rolled out
//! healthy, later changes in the replica count alone (an HPA scaling it) do not make it
//! progressing or failed again; see [`settle`].

use serde::Serialize;
use serde_json::Value;

use super::object::{ObjectId, hash_object, split_api_version};
use crate::promote::state::DeployState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HealthStatus {
    Healthy,
    Progressing,
    Failed,
}

impl HealthStatus {
    pub fn deploy_state(self) -> DeployState {
        match self {
            HealthStatus::Healthy => DeployState::Healthy,
            HealthStatus::Progressing => DeployState::Progressing,
            HealthStatus::Failed => DeployState::Failed,
        }
    }
}

/// The health of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    pub status: HealthStatus,
    /// A short CamelCase reason (`ProgressDeadlineExceeded`, `BackoffLimitExceeded`, ...).
    pub reason: String,
    pub message: String,
}

impl Health {
    fn new(status: HealthStatus, reason: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
    pub fn healthy(reason: &str, message: impl Into<String>) -> Self {
        Self::new(HealthStatus::Healthy, reason, message)
    }
    pub fn progressing(reason: &str, message: impl Into<String>) -> Self {
        Self::new(HealthStatus::Progressing, reason, message)
    }
    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        Self::new(HealthStatus::Failed, reason, message)
    }
    pub fn is_healthy(&self) -> bool {
        self.status == HealthStatus::Healthy
    }
}

/// Assess a live object.
pub fn assess(object: &Value) -> Health {
    let api_version = text(object, "/apiVersion");
    let group = split_api_version(api_version).0;
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return Health::progressing("Terminating", "object is being deleted");
    }
    match (group, text(object, "/kind")) {
        ("apps", "Deployment") => deployment(object),
        ("apps", "StatefulSet") => stateful_set(object),
        ("apps", "DaemonSet") => daemon_set(object),
        ("batch", "Job") => job(object),
        ("", "Pod") => pod(object),
        ("", "PersistentVolumeClaim") => pvc(object),
        ("", "Service") => service(object),
        ("networking.k8s.io", "Ingress") => ingress(object),
        ("batch", "CronJob") => cron_job(object),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(object),
        _ => generic(object),
    }
}

fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn int(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

fn count(object: &Value, pointer: &str) -> i64 {
    int(object, pointer).unwrap_or(0)
}

/// The condition of `type`, as (status, reason, message).
fn condition<'a>(object: &'a Value, ty: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
}

fn condition_is(object: &Value, ty: &str, status: &str) -> bool {
    condition(object, ty).is_some_and(|c| c["status"] == status)
}

fn condition_text(c: &Value, field: &str) -> String {
    c.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Progressing until the controller has seen the current generation.
fn stale_generation(object: &Value) -> Option<Health> {
    let generation = int(object, "/metadata/generation")?;
    let observed = int(object, "/status/observedGeneration").unwrap_or(0);
    (observed < generation).then(|| {
        Health::progressing(
            "ObservedGenerationStale",
            format!(
                "waiting for the controller to observe generation {generation} (seen {observed})"
            ),
        )
    })
}

fn rfc3339(v: Option<&Value>) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(v?.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// When a condition last changed (`lastUpdateTime`, else `lastTransitionTime`).
fn condition_time(c: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    rfc3339(c.get("lastUpdateTime")).or_else(|| rfc3339(c.get("lastTransitionTime")))
}

/// The last write to the object itself (not its `status` or `scale` subresource), from the API
/// server's `managedFields` times.
fn last_spec_write(o: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    o.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .filter(|m| {
            m.get("subresource")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        })
        .filter_map(|m| rfc3339(m.get("time")))
        .max()
}

fn deployment(d: &Value) -> Health {
    // Conditions describe the generation the controller last saw: right after a new template is
    // applied (a rollback after a failed rollout), the old `ProgressDeadlineExceeded` is stale.
    if let Some(h) = stale_generation(d) {
        return h;
    }
    if let Some(c) = condition(d, "Progressing")
        && c["status"] == "False"
        && c["reason"] == "ProgressDeadlineExceeded"
    {
        // The controller can observe a new generation before it re-evaluates progress: right
        // after a rollback to a ReplicaSet that still runs, it keeps the old deadline condition
        // for a sync or two (seen on the real API server). A deadline last updated before the
        // object's spec was last written is about the previous rollout. Both times are in whole
        // seconds; the same second counts as before, since this rollout's own deadline comes at
        // least `progressDeadlineSeconds` after its write.
        if let (Some(updated), Some(written)) = (condition_time(c), last_spec_write(d))
            && updated <= written
        {
            return Health::progressing(
                "DeadlineFromPreviousRollout",
                "the progress deadline reported was exceeded by the previous rollout",
            );
        }
        let message = condition_text(c, "message");
        return Health::failed(
            "ProgressDeadlineExceeded",
            if message.is_empty() {
                "the rollout did not progress within its deadline".into()
            } else {
                message
            },
        );
    }
    if d.pointer("/spec/paused") == Some(&Value::Bool(true)) {
        return Health::healthy("Paused", "rollout is paused");
    }
    let want = int(d, "/spec/replicas").unwrap_or(1);
    let replicas = count(d, "/status/replicas");
    let updated = count(d, "/status/updatedReplicas");
    let available = count(d, "/status/availableReplicas");
    if updated < want {
        Health::progressing(
            "RolloutInProgress",
            format!("{updated} of {want} replicas updated"),
        )
    } else if replicas > updated {
        Health::progressing(
            "OldReplicasPending",
            format!("{} old replicas pending termination", replicas - updated),
        )
    } else if available < updated {
        Health::progressing(
            "WaitingForAvailable",
            format!("{available} of {want} updated replicas available"),
        )
    } else {
        Health::healthy(
            "Available",
            format!("{available}/{want} replicas available"),
        )
    }
}

fn stateful_set(s: &Value) -> Health {
    if let Some(h) = stale_generation(s) {
        return h;
    }
    let want = int(s, "/spec/replicas").unwrap_or(1);
    let ready = count(s, "/status/readyReplicas");
    let rolling = text(s, "/spec/updateStrategy/type") != "OnDelete";
    let partition = count(s, "/spec/updateStrategy/rollingUpdate/partition");
    if rolling && partition == 0 {
        let updated = count(s, "/status/updatedReplicas");
        if updated < want {
            return Health::progressing(
                "RolloutInProgress",
                format!("{updated} of {want} replicas updated"),
            );
        }
        let (current, update) = (
            text(s, "/status/currentRevision"),
            text(s, "/status/updateRevision"),
        );
        if current != update {
            return Health::progressing(
                "RolloutInProgress",
                format!("waiting for revision {update} to replace {current}"),
            );
        }
    }
    if ready < want {
        return Health::progressing(
            "WaitingForReady",
            format!("{ready} of {want} replicas ready"),
        );
    }
    Health::healthy("Ready", format!("{ready}/{want} replicas ready"))
}

fn daemon_set(d: &Value) -> Health {
    if let Some(h) = stale_generation(d) {
        return h;
    }
    let Some(desired) = int(d, "/status/desiredNumberScheduled") else {
        return Health::progressing("WaitingForStatus", "no status reported yet");
    };
    let updated = count(d, "/status/updatedNumberScheduled");
    let available = count(d, "/status/numberAvailable");
    if updated < desired {
        Health::progressing(
            "RolloutInProgress",
            format!("{updated} of {desired} scheduled pods updated"),
        )
    } else if available < desired {
        Health::progressing(
            "WaitingForAvailable",
            format!("{available} of {desired} pods available"),
        )
    } else {
        Health::healthy("Available", format!("{available}/{desired} pods available"))
    }
}

fn job(j: &Value) -> Health {
    if let Some(c) = condition(j, "Failed").filter(|c| c["status"] == "True") {
        let reason = condition_text(c, "reason");
        let message = condition_text(c, "message");
        return Health::failed(
            if reason.is_empty() {
                "JobFailed"
            } else {
                &reason
            },
            if message.is_empty() {
                "the job failed".to_string()
            } else {
                message
            },
        );
    }
    if condition_is(j, "Complete", "True") {
        return Health::healthy(
            "Complete",
            format!("{} succeeded", count(j, "/status/succeeded")),
        );
    }
    if j.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
        return Health::healthy("Suspended", "the job is suspended");
    }
    Health::progressing(
        "Running",
        format!(
            "{} active, {} succeeded, {} failed",
            count(j, "/status/active"),
            count(j, "/status/succeeded"),
            count(j, "/status/failed")
        ),
    )
}

/// Container waiting reasons that do not resolve by waiting.
const BAD_WAITING: [&str; 6] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

fn pod(p: &Value) -> Health {
    match text(p, "/status/phase") {
        "Succeeded" => return Health::healthy("Succeeded", "pod completed"),
        "Failed" => {
            let message = text(p, "/status/message");
            return Health::failed(
                "PodFailed",
                if message.is_empty() {
                    "pod failed"
                } else {
                    message
                },
            );
        }
        _ => {}
    }
    let statuses = ["/status/initContainerStatuses", "/status/containerStatuses"];
    for pointer in statuses {
        for cs in p
            .pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let reason = text(cs, "/state/waiting/reason");
            if BAD_WAITING.contains(&reason) {
                let message = text(cs, "/state/waiting/message");
                return Health::failed(
                    reason,
                    format!(
                        "container {}: {}",
                        text(cs, "/name"),
                        if message.is_empty() { reason } else { message }
                    ),
                );
            }
        }
    }
    if text(p, "/status/phase") == "Running" && condition_is(p, "Ready", "True") {
        return Health::healthy("Ready", "pod is running and ready");
    }
    if text(p, "/status/phase") == "Running" && condition(p, "Ready").is_none() {
        // Controllers that report no conditions (the API stand-in, some kubelets' first
        // report) still say Running.
        return Health::healthy("Running", "pod is running");
    }
    Health::progressing(
        "PodNotReady",
        format!("pod is {}", text(p, "/status/phase").to_lowercase()),
    )
}

fn pvc(c: &Value) -> Health {
    match text(c, "/status/phase") {
        "Bound" => Health::healthy("Bound", "claim is bound"),
        "Lost" => Health::failed("ClaimLost", "the bound volume was lost"),
        phase => Health::progressing(
            "Pending",
            format!(
                "claim is {}",
                if phase.is_empty() { "pending" } else { phase }
            ),
        ),
    }
}

fn service(s: &Value) -> Health {
    if text(s, "/spec/type") != "LoadBalancer" {
        return Health::healthy("Ready", "service is ready");
    }
    let ingress = s
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|i| !i.is_empty());
    if ingress {
        Health::healthy("LoadBalancerReady", "load balancer has an address")
    } else {
        // kstatus: a Service is current once it exists; an address may never come (no
        // load-balancer controller) and is not the rollout's to wait for.
        Health::healthy(
            "LoadBalancerPending",
            "the load balancer has no address yet",
        )
    }
}

/// An Ingress is served by whatever ingress controller the cluster runs, which may be none, or
/// one that never writes an address: like a LoadBalancer Service (and kstatus), it is healthy
/// once it exists, and the reason says whether a controller has published an address.
fn ingress(i: &Value) -> Health {
    let addresses: Vec<&str> = i
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| {
            a.get("ip")
                .or_else(|| a.get("hostname"))
                .and_then(Value::as_str)
        })
        .collect();
    if addresses.is_empty() {
        Health::healthy(
            "IngressAddressPending",
            "no ingress controller has published an address",
        )
    } else {
        Health::healthy(
            "IngressReady",
            format!("served at {}", addresses.join(", ")),
        )
    }
}

/// A CronJob has no rollout: it is healthy once it exists (kstatus: current). The Jobs it starts
/// are the controller's, not rendered by baton, so a failing run is not the environment's health.
fn cron_job(c: &Value) -> Health {
    if c.pointer("/spec/suspend") == Some(&Value::Bool(true)) {
        return Health::healthy("Suspended", "the schedule is suspended");
    }
    let last = text(c, "/status/lastScheduleTime");
    Health::healthy(
        "Scheduled",
        format!(
            "runs on schedule \"{}\"{}",
            text(c, "/spec/schedule"),
            if last.is_empty() {
                String::new()
            } else {
                format!(", last at {last}")
            }
        ),
    )
}

/// A pending claim whose StorageClass binds on first use (`volumeBindingMode:
/// WaitForFirstConsumer`) and that no pod has used yet: healthy, it is waiting as designed.
/// `None` when that is not the case.
pub fn waiting_for_first_consumer(claim: &Value, class: &Value) -> Option<Health> {
    let pending =
        text(claim, "/status/phase") == "Pending" || text(claim, "/status/phase").is_empty();
    let selected = claim
        .pointer("/metadata/annotations")
        .and_then(|a| a.get("volume.kubernetes.io/selected-node"))
        .is_some();
    (pending && !selected && text(class, "/volumeBindingMode") == "WaitForFirstConsumer").then(
        || {
            Health::healthy(
                "WaitForFirstConsumer",
                "the claim is bound when a pod first uses it",
            )
        },
    )
}

fn crd(c: &Value) -> Health {
    if condition_is(c, "NamesAccepted", "False") {
        let message = condition(c, "NamesAccepted")
            .map(|c| condition_text(c, "message"))
            .unwrap_or_default();
        return Health::failed("NamesNotAccepted", message);
    }
    if condition_is(c, "Established", "True") {
        Health::healthy("Established", "the API serves it")
    } else {
        Health::progressing("NotEstablished", "waiting for the API to serve it")
    }
}

/// Custom resources and everything else: `status.observedGeneration`, then the conditions
/// kstatus reads (`Stalled`, `Reconciling`, `Ready`). No status at all is healthy.
fn generic(o: &Value) -> Health {
    if o.pointer("/status/observedGeneration").is_some()
        && let Some(h) = stale_generation(o)
    {
        return h;
    }
    if let Some(c) = condition(o, "Stalled").filter(|c| c["status"] == "True") {
        return Health::failed("Stalled", condition_text(c, "message"));
    }
    if let Some(c) = condition(o, "Ready") {
        let generation = int(o, "/metadata/generation");
        let observed = c.get("observedGeneration").and_then(Value::as_i64);
        if let (Some(g), Some(seen)) = (generation, observed)
            && seen < g
        {
            return Health::progressing(
                "ObservedGenerationStale",
                format!("Ready reflects generation {seen}, not {g}"),
            );
        }
        let reason = condition_text(c, "reason");
        let message = condition_text(c, "message");
        return if c["status"] == "True" {
            Health::healthy("Ready", message)
        } else {
            Health::progressing(
                if reason.is_empty() {
                    "NotReady"
                } else {
                    &reason
                },
                message,
            )
        };
    }
    if let Some(c) = condition(o, "Reconciling").filter(|c| c["status"] == "True") {
        return Health::progressing("Reconciling", condition_text(c, "message"));
    }
    Health::healthy("Current", "")
}

/// What is remembered about a workload whose rollout was healthy: which pod template rolled
/// out and how many replicas were available then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutMark {
    pub template: String,
    pub available: i64,
}

fn available(object: &Value) -> Option<i64> {
    match text(object, "/kind") {
        "Deployment" => Some(count(object, "/status/availableReplicas")),
        "StatefulSet" => Some(count(object, "/status/readyReplicas")),
        "DaemonSet" => Some(count(object, "/status/numberAvailable")),
        _ => None,
    }
}

/// The mark to remember for a healthy workload; `None` for other kinds.
pub fn rollout_mark(object: &Value) -> Option<RolloutMark> {
    let available = available(object)?;
    let template = object.pointer("/spec/template")?;
    Some(RolloutMark {
        template: hash_object(template),
        available,
    })
}

/// Health tied to the rollout: a workload whose current pod template already rolled out
/// healthy stays healthy while replica counts change (an HPA scaling it, a node drained), as
/// long as it keeps at least as many replicas available as it had when healthy, or as it
/// now wants. A new template (a new digest) is judged afresh.
pub fn settle(object: &Value, health: Health, previous: Option<&RolloutMark>) -> Health {
    if health.is_healthy() {
        return health;
    }
    let (Some(previous), Some(now)) = (previous, rollout_mark(object)) else {
        return health;
    };
    let want = match text(object, "/kind") {
        "DaemonSet" => count(object, "/status/desiredNumberScheduled"),
        _ => int(object, "/spec/replicas").unwrap_or(1),
    };
    if now.template == previous.template && now.available >= previous.available.min(want) {
        Health::healthy(
            "Scaling",
            format!(
                "the rollout is healthy; scaling: {} ({})",
                health.message, health.reason
            ),
        )
    } else {
        health
    }
}

/// An object's health, with its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectHealth {
    pub object: String,
    #[serde(flatten)]
    pub health: Health,
}

/// The environment's health: Failed if anything failed, else Progressing if anything is,
/// else Healthy. The objects that are not healthy are listed, failed ones first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvHealth {
    pub state: DeployState,
    pub unhealthy: Vec<ObjectHealth>,
}

impl EnvHealth {
    pub fn of<'a>(objects: impl IntoIterator<Item = (&'a ObjectId, &'a Health)>) -> Self {
        let mut unhealthy: Vec<ObjectHealth> = objects
            .into_iter()
            .filter(|(_, h)| !h.is_healthy())
            .map(|(id, h)| ObjectHealth {
                object: id.to_string(),
                health: h.clone(),
            })
            .collect();
        unhealthy.sort_by_key(|o| o.health.status != HealthStatus::Failed);
        let state = match unhealthy.first().map(|o| o.health.status) {
            None => DeployState::Healthy,
            Some(HealthStatus::Failed) => DeployState::Failed,
            Some(_) => DeployState::Progressing,
        };
        Self { state, unhealthy }
    }

    /// One line per unhealthy object: `Deployment/shop/web: ProgressDeadlineExceeded: ...`.
    pub fn summary(&self) -> String {
        self.unhealthy
            .iter()
            .map(|o| format!("{}: {}: {}", o.object, o.health.reason, o.health.message))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    //! Objects below are recorded from API servers (trimmed to the fields that matter).
    use super::*;
    use serde_json::json;

    fn deployment(generation: i64, status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "generation": generation},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "web", "image": "web@sha256:aa"}]}}},
            "status": status})
    }

    #[test]
    fn a_completed_deployment_rollout_is_healthy() {
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                 "message": "ReplicaSet \"web-5d8f7c9b6\" has successfully progressed."}]}),
        );
        assert_eq!(
            assess(&d),
            Health::healthy("Available", "3/3 replicas available")
        );
    }

    #[test]
    fn a_deployment_is_progressing_until_its_generation_is_observed() {
        let d = deployment(
            3,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        let h = assess(&d);
        assert_eq!(h.status, HealthStatus::Progressing);
        assert_eq!(h.reason, "ObservedGenerationStale");
    }

    #[test]
    fn a_deployment_mid_rollout_is_progressing_with_counts() {
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}),
        );
        assert_eq!(
            assess(&d),
            Health::progressing("RolloutInProgress", "1 of 3 replicas updated")
        );
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        assert_eq!(assess(&d).reason, "OldReplicasPending");
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}),
        );
        assert_eq!(assess(&d).reason, "WaitingForAvailable");
    }

    #[test]
    fn a_deployment_past_its_progress_deadline_has_failed_with_the_controllers_message() {
        let d = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3, "unavailableReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                 "message": "ReplicaSet \"web-7c9f\" has timed out progressing."}]}),
        );
        assert_eq!(
            assess(&d),
            Health::failed(
                "ProgressDeadlineExceeded",
                "ReplicaSet \"web-7c9f\" has timed out progressing."
            )
        );
    }

    #[test]
    fn a_deadline_from_the_previous_generation_does_not_fail_a_new_rollout() {
        // A rollback applied over a failed rollout: generation 3, the controller's last word
        // (about generation 2) is still ProgressDeadlineExceeded.
        let d = deployment(
            3,
            json!({"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        );
        let h = assess(&d);
        assert_eq!(h.status, HealthStatus::Progressing, "{h:?}");
        assert_eq!(h.reason, "ObservedGenerationStale");
    }

    #[test]
    fn a_deadline_last_updated_before_the_last_write_is_the_previous_rollouts() {
        // The real controller observed the rollback's generation but still shows the broken
        // rollout's deadline, stamped before baton applied the rollback.
        let mut d = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "lastUpdateTime": "2026-12-02T10:00:05Z", "lastTransitionTime": "2026-12-02T10:00:05Z"}]}),
        );
        d["metadata"]["managedFields"] = json!([
            {"manager": "baton", "operation": "Apply", "time": "2026-12-02T10:00:09Z"},
            {"manager": "kube-controller-manager", "operation": "Update", "subresource": "status", "time": "2026-12-02T10:00:10Z"}
        ]);
        let h = assess(&d);
        assert_eq!(h.status, HealthStatus::Progressing, "{h:?}");
        assert_eq!(h.reason, "DeadlineFromPreviousRollout");

        // Stamped in the same second as the write: still the previous rollout's.
        d["status"]["conditions"][0]["lastUpdateTime"] = json!("2026-12-02T10:00:09Z");
        assert_eq!(assess(&d).status, HealthStatus::Progressing);

        // A deadline exceeded after the last write is this rollout's: failed.
        d["status"]["conditions"][0]["lastUpdateTime"] = json!("2026-12-02T10:00:20Z");
        assert_eq!(assess(&d).status, HealthStatus::Failed);
    }

    #[test]
    fn an_hpa_scaling_a_healthy_rollout_does_not_make_it_progressing_or_failed() {
        let healthy = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        assert!(assess(&healthy).is_healthy());
        let mark = rollout_mark(&healthy).unwrap();

        // The HPA raised spec.replicas to 6: a new generation, same template.
        let mut scaled = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 6, "updatedReplicas": 6, "availableReplicas": 3,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]}),
        );
        scaled["spec"]["replicas"] = json!(6);
        let raw = assess(&scaled);
        assert_eq!(raw.status, HealthStatus::Failed);
        let settled = settle(&scaled, raw, Some(&mark));
        assert_eq!(settled.status, HealthStatus::Healthy);
        assert_eq!(settled.reason, "Scaling");

        // Scaled down to 2: fewer available than before, but all it wants.
        let mut down = deployment(
            4,
            json!({"observedGeneration": 3, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
        );
        down["spec"]["replicas"] = json!(2);
        assert!(settle(&down, assess(&down), Some(&mark)).is_healthy());
    }

    #[test]
    fn a_new_template_or_lost_replicas_are_judged_afresh_despite_an_earlier_healthy_rollout() {
        let healthy = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}),
        );
        let mark = rollout_mark(&healthy).unwrap();
        let mut new_digest = deployment(
            3,
            json!({"observedGeneration": 3, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3}),
        );
        new_digest["spec"]["template"]["spec"]["containers"][0]["image"] = json!("web@sha256:bb");
        assert_eq!(
            settle(&new_digest, assess(&new_digest), Some(&mark)).status,
            HealthStatus::Progressing
        );
        let crashing = deployment(
            2,
            json!({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 1}),
        );
        assert_eq!(
            settle(&crashing, assess(&crashing), Some(&mark)).status,
            HealthStatus::Progressing
        );
    }

    #[test]
    fn statefulsets_wait_for_the_update_revision_and_ready_replicas() {
        let s = |status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "generation": 1},
            "spec": {"replicas": 2, "updateStrategy": {"type": "RollingUpdate"}}, "status": status})
        };
        let rolling = s(
            json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2,
            "currentRevision": "db-1", "updateRevision": "db-2"}),
        );
        assert_eq!(
            assess(&rolling),
            Health::progressing(
                "RolloutInProgress",
                "waiting for revision db-2 to replace db-1"
            )
        );
        let done = s(
            json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2, "currentReplicas": 2,
            "currentRevision": "db-2", "updateRevision": "db-2"}),
        );
        assert!(assess(&done).is_healthy());
    }

    #[test]
    fn daemonsets_wait_for_every_scheduled_pod() {
        let d = |available: i64| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "generation": 1},
            "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "currentNumberScheduled": 3,
                "updatedNumberScheduled": 3, "numberReady": available, "numberAvailable": available}})
        };
        assert_eq!(assess(&d(2)).reason, "WaitingForAvailable");
        assert!(assess(&d(3)).is_healthy());
    }

    #[test]
    fn jobs_are_healthy_when_complete_and_failed_with_the_controllers_reason() {
        let job = |conditions: Value| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate", "generation": 1},
            "status": {"active": 1, "conditions": conditions}})
        };
        assert_eq!(assess(&job(json!([]))).status, HealthStatus::Progressing);
        assert!(
            assess(&job(json!([
                {"type": "SuccessCriteriaMet", "status": "True"},
                {"type": "Complete", "status": "True"}
            ])))
            .is_healthy()
        );
        assert_eq!(
            assess(&job(json!([
                {"type": "FailureTarget", "status": "True"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}
            ]))),
            Health::failed(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit"
            )
        );
    }

    #[test]
    fn pods_that_cannot_pull_their_image_have_failed() {
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "status": {"phase": "Pending", "containerStatuses": [{"name": "web", "ready": false,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"web:2\""}}}]}});
        assert_eq!(
            assess(&p),
            Health::failed(
                "ImagePullBackOff",
                "container web: Back-off pulling image \"web:2\""
            )
        );
        let running = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
        assert!(assess(&running).is_healthy());
        let unready = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}});
        assert_eq!(assess(&unready).status, HealthStatus::Progressing);
    }

    #[test]
    fn claims_and_load_balancers_wait_for_binding_and_an_address() {
        let pvc = |phase: &str| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": phase}});
        assert!(assess(&pvc("Bound")).is_healthy());
        assert_eq!(assess(&pvc("Pending")).status, HealthStatus::Progressing);
        assert_eq!(assess(&pvc("Lost")).status, HealthStatus::Failed);
        let lb = |status: Value| json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}, "status": status});
        let pending = assess(&lb(json!({"loadBalancer": {}})));
        assert_eq!(pending.reason, "LoadBalancerPending");
        assert!(
            pending.is_healthy(),
            "kstatus: not a failure, not waited for"
        );
        let class = json!({"volumeBindingMode": "WaitForFirstConsumer"});
        assert!(
            waiting_for_first_consumer(&pvc("Pending"), &class).is_some_and(|h| h.is_healthy())
        );
        assert!(
            waiting_for_first_consumer(&pvc("Pending"), &json!({"volumeBindingMode": "Immediate"}))
                .is_none()
        );
        let mut used = pvc("Pending");
        used["metadata"] = json!({"annotations": {"volume.kubernetes.io/selected-node": "n1"}});
        assert!(waiting_for_first_consumer(&used, &class).is_none());
        assert!(
            assess(&lb(
                json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}})
            ))
            .is_healthy()
        );
        let cluster_ip =
            json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "ClusterIP"}});
        assert!(assess(&cluster_ip).is_healthy());
    }

    #[test]
    fn ingresses_and_cronjobs_are_healthy_once_they_exist_and_say_what_they_wait_for() {
        let ing = |status: Value| json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web", "generation": 1}, "status": status});
        assert_eq!(
            assess(&ing(json!({"loadBalancer": {}}))),
            Health::healthy(
                "IngressAddressPending",
                "no ingress controller has published an address"
            )
        );
        assert_eq!(
            assess(&ing(
                json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}})
            )),
            Health::healthy("IngressReady", "served at 203.0.113.7, lb.example.com")
        );
        let cron = |spec: Value, status: Value| json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "generation": 1}, "spec": spec, "status": status});
        assert_eq!(
            assess(&cron(json!({"schedule": "0 3 * * *"}), json!({}))),
            Health::healthy("Scheduled", "runs on schedule \"0 3 * * *\"")
        );
        assert_eq!(
            assess(&cron(
                json!({"schedule": "0 3 * * *"}),
                json!({"lastScheduleTime": "2026-12-02T03:00:00Z"})
            ))
            .message,
            "runs on schedule \"0 3 * * *\", last at 2026-12-02T03:00:00Z"
        );
        assert_eq!(
            assess(&cron(
                json!({"schedule": "0 3 * * *", "suspend": true}),
                json!({})
            ))
            .reason,
            "Suspended"
        );
    }

    #[test]
    fn custom_resources_follow_ready_stalled_and_observed_generation() {
        let cr = |generation: i64, status: Value| json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "generation": generation}, "status": status});
        assert!(
            assess(&cr(1, json!(null))).is_healthy(),
            "no status: nothing to wait for"
        );
        assert!(
            assess(&cr(2, json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]})))
                .is_healthy()
        );
        assert_eq!(
            assess(&cr(3, json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}))).reason,
            "ObservedGenerationStale"
        );
        assert_eq!(
            assess(&cr(2, json!({"conditions": [{"type": "Ready", "status": "True", "observedGeneration": 1}]}))).status,
            HealthStatus::Progressing
        );
        assert_eq!(
            assess(&cr(
                1,
                json!({"conditions": [{"type": "Ready", "status": "False", "reason": "Provisioning", "message": "creating bucket"}]})
            )),
            Health::progressing("Provisioning", "creating bucket")
        );
        assert_eq!(
            assess(&cr(
                1,
                json!({"conditions": [{"type": "Stalled", "status": "True", "message": "quota exceeded"}]})
            )),
            Health::failed("Stalled", "quota exceeded")
        );
    }

    #[test]
    fn crds_are_healthy_once_established() {
        let crd = |conditions: Value| json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "status": {"conditions": conditions}});
        assert!(
            assess(&crd(json!([{"type": "NamesAccepted", "status": "True"}, {"type": "Established", "status": "True"}])))
                .is_healthy()
        );
        assert_eq!(assess(&crd(json!([]))).status, HealthStatus::Progressing);
    }

    #[test]
    fn the_environment_fails_if_any_object_failed_and_lists_failures_first() {
        let id = |name: &str| ObjectId {
            group: "apps".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: name.into(),
        };
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let ok = Health::healthy("Available", "");
        let slow = Health::progressing("RolloutInProgress", "1 of 3 replicas updated");
        let bad = Health::failed("ProgressDeadlineExceeded", "timed out");
        let env = EnvHealth::of([(&a, &ok), (&b, &slow), (&c, &bad)]);
        assert_eq!(env.state, DeployState::Failed);
        assert_eq!(
            env.summary(),
            "Deployment/shop/c: ProgressDeadlineExceeded: timed out\nDeployment/shop/b: RolloutInProgress: 1 of 3 replicas updated"
        );
        assert_eq!(
            EnvHealth::of([(&a, &ok), (&b, &slow)]).state,
            DeployState::Progressing
        );
        assert_eq!(EnvHealth::of([(&a, &ok)]).state, DeployState::Healthy);
    }
}
