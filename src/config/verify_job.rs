//! The acceptance-test Jobs an environment's `verify:` steps name: each a `batch/v1` Job
//! manifest in the config repo, read and checked here (by `baton validate` and before a run);
//! `reconcile::verify` runs them in the cluster.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use serde_json::Value;

use super::diag::Diagnostic;
use super::files::resolve_in_repo;
use super::pipeline::{Environment, VerifyStep};
use super::validate::is_dns_label;
use crate::yaml;

/// One acceptance test, loaded from the config repo: the Job manifest as written and its
/// timeout.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyJob {
    /// The manifest's `metadata.name` (a DNS label): part of run names and the job label.
    pub name: String,
    /// The manifest's file, relative to the repo root.
    pub file: String,
    /// Where runs are created: the manifest's `metadata.namespace`, else `default`.
    pub namespace: String,
    /// The Job as written (without status).
    pub manifest: Job,
    /// How long one run may take, from the creation of its Job.
    pub timeout: Duration,
}

impl VerifyJob {
    /// Read and check the manifest of `step` under `repo_root` (a checkout or export of the
    /// commit being verified). Paths that leave the repo are refused.
    pub fn load(repo_root: &Path, step: &VerifyStep) -> Result<Self, Diagnostic> {
        let path = resolve_in_repo(repo_root, &step.job)
            .map_err(|why| Diagnostic::new(&step.job, None, "", why))?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Diagnostic::new(&step.job, None, "", format!("cannot read: {e}")))?;
        Self::parse(&step.job, &text, step.timeout())
    }

    /// Every verify job of `env`, in pipeline order.
    pub fn load_all(repo_root: &Path, env: &Environment) -> Result<Vec<Self>, Diagnostic> {
        env.verify
            .iter()
            .map(|step| Self::load(repo_root, step))
            .collect()
    }

    /// Check manifest text: one YAML document, `apiVersion: batch/v1`, `kind: Job`, a
    /// `metadata.name` that is a DNS label, and at least one container. `file` is for
    /// diagnostics.
    pub fn parse(file: &str, text: &str, timeout: Duration) -> Result<Self, Diagnostic> {
        let tree = yaml::parse(text).map_err(|e| {
            Diagnostic::new(
                file,
                Some(e.pos),
                "",
                format!("invalid YAML: {}", e.message),
            )
        })?;
        let at = |path: &str| Some(tree.lookup(path).0.pos);
        let field = |path: &str| tree.get(path).and_then(yaml::Node::as_str);
        match (field("apiVersion"), field("kind")) {
            (Some("batch/v1"), Some("Job")) => {}
            (api, kind) => {
                return Err(Diagnostic::new(
                    file,
                    at("kind"),
                    "kind",
                    format!(
                        "is {} {}; a verify step must be a batch/v1 Job",
                        api.unwrap_or("(no apiVersion)"),
                        kind.unwrap_or("(no kind)")
                    ),
                ));
            }
        }
        let value: Value = yaml_serde::from_str(text)
            .map_err(|e| Diagnostic::new(file, Some(tree.pos), "", format!("invalid YAML: {e}")))?;
        let mut manifest: Job = serde_json::from_value(value).map_err(|e| {
            Diagnostic::new(
                file,
                Some(tree.pos),
                "",
                format!("is not a valid batch/v1 Job: {e}"),
            )
        })?;
        manifest.status = None;
        let name = manifest.metadata.name.clone().unwrap_or_default();
        if !is_dns_label(&name) {
            return Err(Diagnostic::new(
                file,
                at("metadata.name"),
                "metadata.name",
                format!(
                    "{name:?} must be set to a DNS label (lowercase letters, digits and '-'); it names the runs"
                ),
            ));
        }
        let has_containers = manifest
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .is_some_and(|p| !p.containers.is_empty());
        if !has_containers {
            return Err(Diagnostic::new(
                file,
                at("spec.template.spec.containers"),
                "spec.template.spec.containers",
                "the Job has no containers",
            ));
        }
        Ok(Self {
            namespace: manifest
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name,
            file: file.to_string(),
            manifest,
            timeout,
        })
    }
}
