//! Helpers for the reconciler's scenario tests: a `sim` cluster with a reconcile context
//! pointed at it over real HTTP, object builders, and the example environments rendered with
//! `kubectl kustomize` (the renderer's oracle).
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use baton::reconcile::{Context, Options};
use serde::Deserialize;
use serde_json::{Value, json};
use sim::cluster::{Cluster, ClusterConfig};

pub const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// Options for tests: quick retries and timeouts that fail a stuck test in seconds.
pub fn options() -> Options {
    Options {
        retry_base: Duration::from_millis(10),
        health_timeout: Duration::from_secs(20),
        crd_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

pub async fn start() -> (Cluster, Context) {
    start_with(ClusterConfig::default(), options()).await
}

pub async fn start_with(config: ClusterConfig, options: Options) -> (Cluster, Context) {
    let cluster = Cluster::start_with(config).await.unwrap();
    let ctx = Context::for_url(&cluster.url(), options).unwrap();
    (cluster, ctx)
}

pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `kubectl kustomize <dir>` as JSON objects.
pub fn kustomize(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(project_root().join(dir))
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    yaml_serde::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

pub fn config_map(ns: &str, name: &str, value: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"value": value}})
}

pub fn deployment(ns: &str, name: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image, "ports": [{"containerPort": 8080}],
                    "resources": {"requests": {"cpu": "0.1", "memory": "64Mi"}}}]}
            }
        }
    })
}

pub fn web_image(digest: &str) -> String {
    format!("registry.example.com/shop/web:1.4.0@{digest}")
}

/// The pipeline of the example config repo.
pub fn pipeline() -> baton::config::Pipeline {
    baton::config::Pipeline::load(&project_root())
        .unwrap()
        .pipeline
}
