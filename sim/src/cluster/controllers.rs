//! Simulated controllers: workload rollouts progress their status over `rollout_duration`,
//! broken images never become available, Jobs run one pod that succeeds or fails, bare Pods run.
//!
//! All timing is tokio time, so a test that pauses time controls the rollout.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::{Duration, Instant};

use super::store::{Change, EventType, Inner, Writer, now};
use super::{ClusterConfig, Shared, image_matches};

const MANAGER: &str = "kube-controller-manager";

/// Progress of one workload's current rollout.
struct Rollout {
    generation: i64,
    hash: String,
    started: Instant,
    old_available: i64,
    old_revision: String,
    complete: bool,
}

struct JobRun {
    started: Instant,
    pod: String,
    finished: bool,
}

/// (type key, namespace, name).
type ObjectKey = (String, String, String);

/// The types the controllers act on: (store key, apiVersion, kind).
const WATCHED: &[(&str, &str, &str)] = &[
    ("apps/deployments", "apps/v1", "Deployment"),
    ("apps/statefulsets", "apps/v1", "StatefulSet"),
    ("apps/daemonsets", "apps/v1", "DaemonSet"),
    ("batch/jobs", "batch/v1", "Job"),
    ("/pods", "v1", "Pod"),
];

fn object_key(type_key: &str, obj: &Value) -> ObjectKey {
    (
        type_key.to_string(),
        s(obj, "/metadata/namespace").to_string(),
        s(obj, "/metadata/name").to_string(),
    )
}

#[derive(Default)]
struct Controllers {
    rollouts: HashMap<String, Rollout>,
    jobs: HashMap<String, JobRun>,
    /// When each object with a pending transition is due.
    timers: HashMap<ObjectKey, Instant>,
    /// Events up to this resourceVersion have been looked at.
    seen_rv: u64,
    /// The broken-image set of the last pass; a change re-evaluates everything.
    broken: BTreeSet<String>,
    started: bool,
}

pub async fn run(shared: Arc<Shared>) {
    let mut changed = shared.changed.subscribe();
    let mut controllers = Controllers::default();
    loop {
        changed.borrow_and_update();
        let now = Instant::now();
        let next = shared.write(|inner| controllers.reconcile(inner, &shared.config, now));
        let wake = next.unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

fn s<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

fn images(pod_spec: &Value) -> Vec<String> {
    ["containers", "initContainers"]
        .iter()
        .filter_map(|list| pod_spec.get(*list).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("image").and_then(Value::as_str).map(String::from))
        .collect()
}

fn is_broken(inner: &Inner, pod_spec: &Value) -> bool {
    images(pod_spec)
        .iter()
        .any(|image| inner.broken.iter().any(|m| image_matches(image, m)))
}

fn template_hash(template: &Value) -> String {
    let digest = Sha256::digest(super::fields::canonical_json(template).as_bytes());
    hex::encode(&digest[..5])
}

/// A condition, keeping its transition/update times when nothing about it changed.
fn condition(
    obj: &Value,
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
    probe: bool,
) -> Value {
    let old = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
        });
    let same_status = old.filter(|c| s(c, "/status") == status);
    let transition = same_status
        .and_then(|c| c.get("lastTransitionTime"))
        .cloned()
        .unwrap_or(json!(now));
    let unchanged =
        same_status.filter(|c| s(c, "/reason") == reason && s(c, "/message") == message);
    let updated = unchanged
        .and_then(|c| {
            c.get(if probe {
                "lastProbeTime"
            } else {
                "lastUpdateTime"
            })
        })
        .cloned()
        .unwrap_or(json!(now));
    let mut c = json!({"type": ty, "status": status, "lastTransitionTime": transition, "reason": reason, "message": message});
    c[if probe {
        "lastProbeTime"
    } else {
        "lastUpdateTime"
    }] = updated;
    c
}

/// Drop zero counters, as the API server's `omitempty` does.
fn counters(pairs: &[(&str, i64)]) -> serde_json::Map<String, Value> {
    pairs
        .iter()
        .filter(|(_, n)| *n != 0)
        .map(|(k, n)| (k.to_string(), json!(n)))
        .collect()
}

fn write_status(inner: &mut Inner, api_version: &str, kind: &str, obj: &Value, status: Value) {
    if obj.get("status") == Some(&status) {
        return;
    }
    let Some(t) = inner.type_for_kind(api_version, kind) else {
        return;
    };
    let mut new = obj.clone();
    new["status"] = status;
    let writer = Writer {
        manager: MANAGER.into(),
        subresource: Some("status".into()),
        dry_run: false,
    };
    let (ns, name) = (
        s(obj, "/metadata/namespace").to_string(),
        s(obj, "/metadata/name").to_string(),
    );
    if let Err(error) = inner.write(&t, &ns, &name, Change::Replace(new), &writer, false) {
        tracing::debug!(
            ?error,
            kind,
            name,
            "simulated controller could not write status"
        );
    }
}

impl Controllers {
    /// One pass over all workloads. Returns when the next timed transition is due.
    /// One pass over the workloads that changed since the last pass or whose timer is due (all
    /// of them after a change to the broken-image set). Returns when the next timer is due.
    fn reconcile(
        &mut self,
        inner: &mut Inner,
        config: &ClusterConfig,
        now: Instant,
    ) -> Option<Instant> {
        let full =
            !self.started || self.seen_rv < inner.oldest_resumable() || self.broken != inner.broken;
        let mut todo: BTreeSet<ObjectKey> = BTreeSet::new();
        if full {
            for (key, api_version, kind) in WATCHED {
                let Some(t) = inner.type_for_kind(api_version, kind) else {
                    continue;
                };
                for obj in inner.list(&t, None) {
                    todo.insert(object_key(key, &obj));
                }
            }
        } else {
            let start = inner.history.partition_point(|e| e.rv <= self.seen_rv);
            for event in inner.history.range(start..) {
                if !WATCHED.iter().any(|(key, _, _)| *key == event.key) {
                    continue;
                }
                if event.kind == EventType::Deleted {
                    let uid = s(&event.object, "/metadata/uid");
                    self.rollouts.remove(uid);
                    self.jobs.remove(uid);
                    self.timers.remove(&object_key(&event.key, &event.object));
                } else {
                    todo.insert(object_key(&event.key, &event.object));
                }
            }
            todo.extend(
                self.timers
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(k, _)| k.clone()),
            );
        }
        self.started = true;
        self.broken = inner.broken.clone();
        for key in todo {
            let (type_key, namespace, name) = &key;
            let Some((_, api_version, kind)) = WATCHED.iter().find(|(k, _, _)| k == type_key)
            else {
                continue;
            };
            let Some(t) = inner.type_for_kind(api_version, kind) else {
                continue;
            };
            let Some(obj) = inner.get(&t, namespace, name) else {
                self.timers.remove(&key);
                continue;
            };
            let due = match *kind {
                "Job" => self.job(inner, config, now, &obj),
                "Pod" => {
                    bare_pod(inner, &obj);
                    None
                }
                _ => self.workload(inner, config, now, kind, &obj),
            };
            match due {
                Some(at) => self.timers.insert(key, at),
                None => self.timers.remove(&key),
            };
        }
        // Our own status writes need no second look.
        self.seen_rv = inner.rv;
        self.timers.values().min().copied()
    }

    fn workload(
        &mut self,
        inner: &mut Inner,
        config: &ClusterConfig,
        now: Instant,
        kind: &str,
        obj: &Value,
    ) -> Option<Instant> {
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return None;
        }
        let uid = s(obj, "/metadata/uid").to_string();
        let name = s(obj, "/metadata/name").to_string();
        let generation = int(obj, "/metadata/generation");
        let desired = if kind == "DaemonSet" {
            i64::from(config.nodes)
        } else {
            obj.pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .unwrap_or(1)
        };
        let template = obj.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let broken = is_broken(inner, template.get("spec").unwrap_or(&json!({})));
        let current_available = match kind {
            "DaemonSet" => int(obj, "/status/numberAvailable"),
            _ => int(obj, "/status/availableReplicas"),
        };
        let rollout = self.rollouts.entry(uid).or_insert_with(|| Rollout {
            generation: 0,
            hash: String::new(),
            started: now,
            old_available: 0,
            old_revision: String::new(),
            complete: false,
        });
        if rollout.generation != generation {
            let old_revision = if rollout.hash.is_empty() {
                String::new()
            } else {
                format!("{name}-{}", rollout.hash)
            };
            *rollout = Rollout {
                generation,
                old_available: if rollout.hash.is_empty() {
                    0
                } else {
                    current_available.min(desired)
                },
                old_revision: if rollout.hash == hash {
                    format!("{name}-{hash}")
                } else {
                    old_revision
                },
                hash: hash.clone(),
                started: now,
                complete: false,
            };
        }
        let elapsed = now.saturating_duration_since(rollout.started);
        if !broken && elapsed >= config.rollout_duration {
            rollout.complete = true;
        }
        let complete = rollout.complete;
        let deadline_passed = broken && !complete && elapsed >= config.progress_deadline;
        let available = if complete {
            desired
        } else {
            rollout.old_available
        };
        let revision = format!("{name}-{hash}");
        let stamp = now_stamp();
        let status = match kind {
            "Deployment" => {
                let surge = ((desired + 3) / 4).max(1).min(desired);
                let updated = if complete || !broken { desired } else { surge };
                let replicas = if complete || !broken {
                    desired
                } else {
                    rollout.old_available + surge
                };
                let max_unavailable = desired / 4;
                let (avail_status, avail_reason, avail_msg) =
                    if available >= desired - max_unavailable {
                        (
                            "True",
                            "MinimumReplicasAvailable",
                            "Deployment has minimum availability.",
                        )
                    } else {
                        (
                            "False",
                            "MinimumReplicasUnavailable",
                            "Deployment does not have minimum availability.",
                        )
                    };
                let (prog_status, prog_reason, prog_msg) = if complete {
                    (
                        "True",
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet \"{revision}\" has successfully progressed."),
                    )
                } else if deadline_passed {
                    (
                        "False",
                        "ProgressDeadlineExceeded",
                        format!("ReplicaSet \"{revision}\" has timed out progressing."),
                    )
                } else {
                    (
                        "True",
                        "ReplicaSetUpdated",
                        format!("ReplicaSet \"{revision}\" is progressing."),
                    )
                };
                let mut status = json!({"observedGeneration": generation});
                status.as_object_mut().expect("object").extend(counters(&[
                    ("replicas", replicas),
                    ("updatedReplicas", updated),
                    ("readyReplicas", available),
                    ("availableReplicas", available),
                    ("unavailableReplicas", (desired - available).max(0)),
                ]));
                status["conditions"] = json!([
                    condition(
                        obj,
                        "Available",
                        avail_status,
                        avail_reason,
                        avail_msg,
                        &stamp,
                        false
                    ),
                    condition(
                        obj,
                        "Progressing",
                        prog_status,
                        prog_reason,
                        &prog_msg,
                        &stamp,
                        false
                    ),
                ]);
                status
            }
            "StatefulSet" => {
                let current_revision = if complete || rollout.old_revision.is_empty() {
                    revision.clone()
                } else {
                    rollout.old_revision.clone()
                };
                let mut status = json!({
                    "observedGeneration": generation,
                    "replicas": desired,
                    "currentRevision": current_revision,
                    "updateRevision": revision,
                    "collisionCount": 0,
                });
                status.as_object_mut().expect("object").extend(counters(&[
                    ("readyReplicas", available),
                    ("availableReplicas", available),
                    (
                        "currentReplicas",
                        if complete {
                            desired
                        } else {
                            rollout.old_available
                        },
                    ),
                    ("updatedReplicas", if complete { desired } else { 0 }),
                ]));
                status
            }
            _ => {
                let mut status = json!({
                    "observedGeneration": generation,
                    "currentNumberScheduled": desired,
                    "desiredNumberScheduled": desired,
                    "numberMisscheduled": 0,
                    "numberReady": available,
                });
                status.as_object_mut().expect("object").extend(counters(&[
                    ("numberAvailable", available),
                    (
                        "updatedNumberScheduled",
                        if complete || !broken { desired } else { 0 },
                    ),
                    ("numberUnavailable", (desired - available).max(0)),
                ]));
                status
            }
        };
        let due = if complete {
            None
        } else if broken {
            (!deadline_passed).then_some(rollout.started + config.progress_deadline)
        } else {
            Some(rollout.started + config.rollout_duration)
        };
        write_status(inner, "apps/v1", kind, obj, status);
        due
    }

    fn job(
        &mut self,
        inner: &mut Inner,
        config: &ClusterConfig,
        now: Instant,
        job: &Value,
    ) -> Option<Instant> {
        let finished = job
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    matches!(s(c, "/type"), "Complete" | "Failed") && s(c, "/status") == "True"
                })
            });
        if finished
            || job.pointer("/spec/suspend") == Some(&json!(true))
            || job.pointer("/metadata/deletionTimestamp").is_some()
        {
            return None;
        }
        let uid = s(job, "/metadata/uid").to_string();
        let (namespace, name) = (
            s(job, "/metadata/namespace").to_string(),
            s(job, "/metadata/name").to_string(),
        );
        let stamp = now_stamp();
        let pod_spec = job
            .pointer("/spec/template/spec")
            .cloned()
            .unwrap_or(json!({}));
        if !self.jobs.contains_key(&uid) {
            let pod_name = format!("{name}-{}", inner.random_suffix());
            let mut labels = job
                .pointer("/spec/template/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            for (k, v) in [
                ("batch.kubernetes.io/job-name", &name),
                ("job-name", &name),
                ("batch.kubernetes.io/controller-uid", &uid),
                ("controller-uid", &uid),
            ] {
                labels[k] = json!(v);
            }
            let mut spec = pod_spec.clone();
            spec["nodeName"] = json!("sim-node-1");
            let pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": namespace, "labels": labels,
                    "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
                "spec": spec,
            });
            let pod_type = inner.type_for_kind("v1", "Pod").expect("built in");
            let writer = Writer {
                manager: MANAGER.into(),
                subresource: None,
                dry_run: false,
            };
            if let Ok(created) = inner.write(
                &pod_type,
                &namespace,
                &pod_name,
                Change::Replace(pod),
                &writer,
                true,
            ) {
                write_status(
                    inner,
                    "v1",
                    "Pod",
                    &created,
                    pod_status("Running", &pod_spec, None, &stamp),
                );
            }
            inner
                .logs
                .entry((namespace.clone(), pod_name.clone()))
                .or_insert_with(|| format!("sim: job {namespace}/{name} running\n"));
            self.jobs.insert(
                uid.clone(),
                JobRun {
                    started: now,
                    pod: pod_name,
                    finished: false,
                },
            );
            write_status(
                inner,
                "batch/v1",
                "Job",
                job,
                json!({"startTime": stamp, "active": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}}),
            );
            return Some(now + config.job_duration);
        }
        let run = self.jobs.get_mut(&uid).expect("checked above");
        if run.finished {
            return None;
        }
        if now < run.started + config.job_duration {
            return Some(run.started + config.job_duration);
        }
        run.finished = true;
        let pod_name = run.pod.clone();
        let env_fail = pod_spec
            .get("containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c.get("env").and_then(Value::as_array).into_iter().flatten())
            .any(|e| s(e, "/name") == "SIM_JOB_FAIL" && matches!(s(e, "/value"), "true" | "1"));
        let failed = env_fail || is_broken(inner, &pod_spec);
        let exit = if failed { 1 } else { 0 };
        let pod_type = inner.type_for_kind("v1", "Pod").expect("built in");
        if let Some(pod) = inner.get(&pod_type, &namespace, &pod_name) {
            write_status(
                inner,
                "v1",
                "Pod",
                &pod,
                pod_status(
                    if failed { "Failed" } else { "Succeeded" },
                    &pod_spec,
                    Some(exit),
                    &stamp,
                ),
            );
        }
        let key = (namespace.clone(), pod_name.clone());
        let generated = job_log(&namespace, &name, &pod_name, &pod_spec, exit);
        match inner.logs.get_mut(&key) {
            Some(log) if log.starts_with("sim: job ") => *log = generated,
            Some(_) => {}
            None => {
                inner.logs.insert(key, generated);
            }
        }
        let status = if failed {
            json!({"startTime": s(job, "/status/startTime"), "failed": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
            "conditions": [
                condition(job, "FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", &stamp, true),
                condition(job, "Failed", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", &stamp, true),
            ]})
        } else {
            json!({"startTime": s(job, "/status/startTime"), "completionTime": stamp, "succeeded": 1, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
            "conditions": [
                condition(job, "SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods", &stamp, true),
                condition(job, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods", &stamp, true),
            ]})
        };
        write_status(inner, "batch/v1", "Job", job, status);
        None
    }
}

fn now_stamp() -> String {
    now()
}

fn job_log(namespace: &str, job: &str, pod: &str, pod_spec: &Value, exit: i32) -> String {
    let mut log = format!("sim: job {namespace}/{job} pod {pod}\n");
    for c in pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let words: Vec<String> = ["command", "args"]
            .iter()
            .filter_map(|k| c.get(*k).and_then(Value::as_array))
            .flatten()
            .filter_map(|w| w.as_str().map(String::from))
            .collect();
        log.push_str(&format!(
            "sim: container {} image {} ran {:?}\n",
            s(c, "/name"),
            s(c, "/image"),
            words.join(" ")
        ));
        for e in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            if s(e, "/name") == "SIM_JOB_LOG" {
                log.push_str(s(e, "/value"));
                if !log.ends_with('\n') {
                    log.push('\n');
                }
            }
        }
    }
    log.push_str(&format!("sim: exit code {exit}\n"));
    log
}

fn pod_status(phase: &str, pod_spec: &Value, exit: Option<i32>, now: &str) -> Value {
    let statuses: Vec<Value> = pod_spec
        .get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let state = match (phase, exit) {
                ("Pending", _) => json!({"waiting": {"reason": "ImagePullBackOff", "message": format!("Back-off pulling image \"{}\"", s(c, "/image"))}}),
                (_, Some(code)) => json!({"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" }, "startedAt": now, "finishedAt": now}}),
                _ => json!({"running": {"startedAt": now}}),
            };
            json!({"name": s(c, "/name"), "image": s(c, "/image"), "imageID": "", "ready": phase == "Running", "restartCount": 0, "started": phase == "Running", "state": state})
        })
        .collect();
    let ready = if phase == "Running" { "True" } else { "False" };
    json!({
        "phase": phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Ready", "status": ready, "lastTransitionTime": now},
        ],
        "hostIP": "10.0.0.1",
        "podIP": "10.244.0.10",
        "startTime": now,
        "containerStatuses": statuses,
    })
}

/// Pods nobody owns run at once, or wait forever on a broken image.
fn bare_pod(inner: &mut Inner, pod: &Value) {
    if pod.pointer("/metadata/ownerReferences").is_some() || pod.pointer("/status/phase").is_some()
    {
        return;
    }
    let spec = pod.get("spec").cloned().unwrap_or(json!({}));
    let phase = if is_broken(inner, &spec) {
        "Pending"
    } else {
        "Running"
    };
    write_status(
        inner,
        "v1",
        "Pod",
        pod,
        pod_status(phase, &spec, None, &now()),
    );
}
