//! Real helm on `charts/baton`, for `tests/chart.rs` and `tests/chart_real.rs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn chart_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/charts/baton"))
}

/// The helm the kube-assets hold. Fails the test, saying how to build it, when missing.
pub fn helm() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = controlplane::assets_dir(root).unwrap_or_else(|e| panic!("{e}"));
    let helm = dir.join("helm");
    assert!(
        helm.is_file(),
        "{} is missing; run scripts/kube-assets",
        helm.display()
    );
    helm
}

/// Run helm with `args` and `overrides` as a values file: (success, stdout, stderr).
pub fn helm_run(args: &[&str], overrides: &Value) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("overrides.yaml");
    std::fs::write(&values, serde_json::to_string(overrides).unwrap()).unwrap();
    let out = Command::new(helm())
        .args(args)
        .arg("-f")
        .arg(&values)
        // helm keeps caches and config under HOME; keep them out of the user's.
        .env("HELM_CACHE_HOME", dir.path().join("cache"))
        .env("HELM_CONFIG_HOME", dir.path().join("config"))
        .env("HELM_DATA_HOME", dir.path().join("data"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every object `helm template` renders with `overrides` over values.yaml.
pub fn render_chart(release: &str, namespace: &str, overrides: Value) -> Vec<Value> {
    let chart = chart_dir().to_str().unwrap();
    let (ok, stdout, stderr) = helm_run(
        &["template", release, chart, "--namespace", namespace],
        &overrides,
    );
    assert!(ok, "helm template failed:\n{stderr}");
    let mut objects = Vec::new();
    for doc in stdout.split("\n---\n") {
        let doc = doc.strip_prefix("---\n").unwrap_or(doc);
        let v: Value = yaml_serde::from_str(doc)
            .unwrap_or_else(|e| panic!("helm rendered invalid YAML: {e}\n{doc}"));
        if !v.is_null() {
            assert!(
                v["apiVersion"].is_string()
                    && v["kind"].is_string()
                    && v["metadata"]["name"].is_string(),
                "an object needs apiVersion, kind and metadata.name:\n{doc}"
            );
            objects.push(v);
        }
    }
    assert!(!objects.is_empty(), "helm rendered nothing");
    objects
}
