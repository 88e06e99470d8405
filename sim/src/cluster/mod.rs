//! A Kubernetes API server stand-in: discovery, CRUD, watch, server-side apply and simulated
//! workload controllers, served over real HTTP so kubectl and kube-rs talk to it unchanged.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let cluster = sim::cluster::Cluster::start().await?;
//! // kube: `Config::new(cluster.url().parse().unwrap())`; kubectl: `--server <url>`.
//! cluster.mark_broken("registry.example.com/shop/web:2.0.0");
//! # Ok(()) }
//! ```
//!
//! Objects are JSON values (any kind works); see docs/sim.md for what is simulated and where it
//! differs from a real API server.

mod api;
mod controllers;
mod defaults;
mod faults;
pub mod fields;
mod resources;
mod selectors;
mod store;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{Counts, Fault, FaultKind, RequestKey};
pub use store::ApiError;

use crate::Server;
use store::{Change, Inner, Writer};

/// Timing of the simulated controllers. Durations run on tokio time, so tests may pause it.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// From a workload's spec change until its rollout is complete (all replicas available).
    pub rollout_duration: Duration,
    /// A Deployment whose rollout has not completed by then (a broken image) reports
    /// `Progressing=False, reason ProgressDeadlineExceeded`. Used instead of
    /// `spec.progressDeadlineSeconds`, which is defaulted to 600 s like the real API server.
    pub progress_deadline: Duration,
    /// From a Job's creation until its pod succeeds or fails.
    pub job_duration: Duration,
    /// Nodes a DaemonSet schedules onto.
    pub nodes: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            rollout_duration: Duration::from_millis(300),
            progress_deadline: Duration::from_secs(2),
            job_duration: Duration::from_millis(300),
            nodes: 1,
        }
    }
}

impl ClusterConfig {
    /// The default timing, but rollouts take `rollout` and one that has not completed after
    /// `deadline` (a broken image) fails.
    pub fn rollouts(rollout: Duration, deadline: Duration) -> Self {
        Self {
            rollout_duration: rollout,
            progress_deadline: deadline,
            ..Self::default()
        }
    }
}

/// State shared by the HTTP handlers, the controllers and the handle.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// The latest resourceVersion; watches and controllers wait on it.
    changed: watch::Sender<u64>,
    /// Bumped to end every open watch.
    disconnect: watch::Sender<u64>,
    config: ClusterConfig,
}

impl Shared {
    fn new(config: ClusterConfig) -> Arc<Self> {
        let inner = Inner::new();
        let rv = inner.rv;
        Arc::new(Self {
            inner: Mutex::new(inner),
            changed: watch::Sender::new(rv),
            disconnect: watch::Sender::new(0),
            config,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Run `f` under the lock, then wake watches and controllers if it changed anything.
    fn write<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let (result, before, after) = {
            let mut inner = self.lock();
            let before = inner.rv;
            let result = f(&mut inner);
            (result, before, inner.rv)
        };
        if after != before {
            self.changed.send_replace(after);
        }
        result
    }
}

/// A running Kubernetes API stand-in on an ephemeral 127.0.0.1 port.
pub struct Cluster {
    server: Server,
    handle: ClusterHandle,
    controllers: AbortOnDrop,
}

/// Stops the controller task when the cluster goes away.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Cluster {
    /// Start with the default timings.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(ClusterConfig::default()).await
    }

    /// Start with the given timings.
    pub async fn start_with(config: ClusterConfig) -> std::io::Result<Self> {
        let shared = Shared::new(config);
        let server = Server::start(api::router(shared.clone())).await?;
        let controllers = AbortOnDrop(tokio::spawn(controllers::run(shared.clone())));
        Ok(Self {
            server,
            handle: ClusterHandle { shared },
            controllers,
        })
    }

    /// `http://127.0.0.1:PORT`, the API server URL for kube `Config::new` or `kubectl --server`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// A cloneable handle for control calls.
    pub fn handle(&self) -> ClusterHandle {
        self.handle.clone()
    }

    /// A kubeconfig that points at this server (for kubectl's `--kubeconfig` or `KUBECONFIG`).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {}\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\nusers:\n- name: sim\n  user: {{}}\n",
            self.url()
        )
    }

    /// Stop serving and stop the controllers.
    pub async fn stop(self) {
        self.controllers.0.abort();
        self.server.stop().await;
    }
}

impl std::ops::Deref for Cluster {
    type Target = ClusterHandle;
    fn deref(&self) -> &ClusterHandle {
        &self.handle
    }
}

/// Build the router without a socket (for `tower::ServiceExt::oneshot` tests). Controllers are
/// not running; objects do not progress.
pub fn router(config: ClusterConfig) -> (Router, ClusterHandle) {
    let shared = Shared::new(config);
    (api::router(shared.clone()), ClusterHandle { shared })
}

/// Control calls: broken images, faults, counters, direct object access.
#[derive(Clone)]
pub struct ClusterHandle {
    shared: Arc<Shared>,
}

impl ClusterHandle {
    /// Mark an image broken: rollouts that use it never become available (Deployments end with
    /// `ProgressDeadlineExceeded`), Jobs that use it fail. `image` is a full reference
    /// (`repo:tag`, `repo@sha256:...`), a digest (`sha256:...`) or a tag (`2.0.0`).
    pub fn mark_broken(&self, image: &str) {
        self.shared.lock().broken.insert(image.to_string());
        self.wake();
    }

    /// Undo [`ClusterHandle::mark_broken`].
    pub fn unmark_broken(&self, image: &str) {
        self.shared.lock().broken.remove(image);
        self.wake();
    }

    /// Add a fault; faults are checked in the order added, the first match wins.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Remove all faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// End every open watch stream (clients see the connection end and must re-watch).
    pub fn disconnect_watches(&self) {
        self.shared.disconnect.send_modify(|n| *n += 1);
    }

    /// Requests served since start or the last [`ClusterHandle::reset_counts`].
    pub fn counts(&self) -> Counts {
        self.shared.lock().counts.clone()
    }

    /// Zero the request counters.
    pub fn reset_counts(&self) {
        self.shared.lock().counts = Counts::default();
    }

    /// The current resourceVersion of the whole store (it increases with every change).
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Set the log a pod's containers print (served at `/api/v1/namespaces/N/pods/P/log`).
    pub fn set_pod_log(&self, namespace: &str, pod: &str, log: &str) {
        self.shared
            .lock()
            .logs
            .insert((namespace.into(), pod.into()), log.into());
    }

    /// Get an object (`api_version` like `apps/v1`, `kind` like `Deployment`).
    pub fn get(&self, api_version: &str, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let inner = self.shared.lock();
        let t = inner.type_for_kind(api_version, kind)?;
        inner.get(&t, namespace, name)
    }

    /// All objects of a kind (in one namespace, or all with `None`).
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let inner = self.shared.lock();
        inner
            .type_for_kind(api_version, kind)
            .map(|t| inner.list(&t, namespace))
            .unwrap_or_default()
    }

    /// Server-side apply an object as `manager` (force), bypassing HTTP and the counters: for
    /// seeding a scenario.
    pub fn apply(&self, manager: &str, object: Value) -> Result<Value, ApiError> {
        let (api_version, kind, name, namespace) = identity(&object)?;
        self.shared.write(|inner| {
            let t = inner.type_for_kind(&api_version, &kind).ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    format!("no kind {kind:?} in {api_version}"),
                )
            })?;
            let writer = Writer {
                manager: manager.into(),
                subresource: None,
                dry_run: false,
            };
            inner.write(
                &t,
                &namespace,
                &name,
                Change::Apply {
                    config: object,
                    force: true,
                },
                &writer,
                false,
            )
        })
    }

    /// Delete an object, bypassing HTTP and the counters.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.shared.write(|inner| {
            let t = inner.type_for_kind(api_version, kind).ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    format!("no kind {kind:?} in {api_version}"),
                )
            })?;
            inner.delete(&t, namespace, name, &Default::default())
        })
    }

    /// Wait (on tokio time) until `check` holds for the object, or `timeout` passes. Returns the
    /// object that satisfied it.
    pub async fn wait_for(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let mut changed = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changed.borrow_and_update();
            if let Some(obj) = self
                .get(api_version, kind, namespace, name)
                .filter(|o| check(o))
            {
                return Some(obj);
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return None },
                _ = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }

    fn wake(&self) {
        // Controllers re-evaluate on any change notification.
        let rv = self.shared.lock().rv;
        self.shared.changed.send_replace(rv);
    }
}

fn identity(object: &Value) -> Result<(String, String, String, String), ApiError> {
    let s = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (api_version, kind, name) = (s("/apiVersion"), s("/kind"), s("/metadata/name"));
    if api_version.is_empty() || kind.is_empty() || name.is_empty() {
        return Err(ApiError::bad_request(
            "apiVersion, kind and metadata.name are required",
        ));
    }
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    Ok((api_version, kind, name, namespace))
}

/// Whether a container image matches a broken marker.
pub(crate) fn image_matches(image: &str, marker: &str) -> bool {
    image == marker
        || image.ends_with(&format!("@{marker}"))
        || image.ends_with(&format!(":{marker}"))
        || image.starts_with(&format!("{marker}@"))
        || image.contains(&format!(":{marker}@"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": image}]}}}})
    }

    /// Deployment `default/web` once `check` holds, within `timeout`; panics with `what`.
    async fn web_when(
        cluster: &Cluster,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        cluster
            .wait_for("apps/v1", "Deployment", "default", "web", timeout, check)
            .await
            .expect(what)
    }

    fn condition(d: &Value, ty: &str) -> Option<(String, String)> {
        d.pointer("/status/conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == ty)
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or_default().to_string(),
                    c["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
    }

    #[tokio::test(start_paused = true)]
    async fn rollouts_follow_tokio_time_so_paused_tests_control_them() {
        let config = ClusterConfig::rollouts(Duration::from_secs(30), Duration::from_secs(600));
        let cluster = Cluster::start_with(config).await.unwrap();
        let started = tokio::time::Instant::now();
        cluster.apply("baton", deployment("web:1")).unwrap();
        let progressing = web_when(&cluster, Duration::from_secs(1), "observed at once", |d| {
            d.pointer("/status/observedGeneration") == Some(&json!(1))
        })
        .await;
        assert_eq!(
            condition(&progressing, "Available"),
            Some(("False".into(), "MinimumReplicasUnavailable".into()))
        );

        let done = web_when(&cluster, Duration::from_secs(120), "completes", |d| {
            d.pointer("/status/availableReplicas") == Some(&json!(2))
        })
        .await;
        assert!(
            started.elapsed() >= Duration::from_secs(30),
            "not before rollout_duration"
        );
        assert_eq!(
            condition(&done, "Progressing"),
            Some(("True".into(), "NewReplicaSetAvailable".into()))
        );

        cluster.mark_broken("web:2");
        cluster.apply("baton", deployment("web:2")).unwrap();
        let failed = web_when(
            &cluster,
            Duration::from_secs(3600),
            "deadline exceeded",
            |d| {
                condition(d, "Progressing")
                    .is_some_and(|(_, reason)| reason == "ProgressDeadlineExceeded")
            },
        )
        .await;
        assert_eq!(failed.pointer("/status/availableReplicas"), Some(&json!(2)));
        assert_eq!(
            failed.pointer("/status/observedGeneration"),
            Some(&json!(2))
        );
    }

    #[test]
    fn broken_markers_match_full_references_digests_and_tags() {
        let image = "registry.example.com/shop/web:2.0.0@sha256:abc";
        for marker in [
            image,
            "sha256:abc",
            "registry.example.com/shop/web:2.0.0",
            "2.0.0",
        ] {
            assert!(image_matches(image, marker), "{marker}");
        }
        assert!(!image_matches(image, "1.0.0"));
        assert!(!image_matches("web:12.0.0", "2.0.0"));
    }
}
