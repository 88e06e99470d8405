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
    assert!(waiting_for_first_consumer(&pvc("Pending"), &class).is_some_and(|h| h.is_healthy()));
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
    let cluster_ip = json!({"apiVersion": "v1", "kind": "Service", "spec": {"type": "ClusterIP"}});
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
        assess(&cr(
            2,
            json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]})
        ))
        .is_healthy()
    );
    assert_eq!(
        assess(&cr(
            3,
            json!({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]})
        ))
        .reason,
        "ObservedGenerationStale"
    );
    assert_eq!(
        assess(&cr(
            2,
            json!({"conditions": [{"type": "Ready", "status": "True", "observedGeneration": 1}]})
        ))
        .status,
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
