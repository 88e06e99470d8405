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
mod tests;
