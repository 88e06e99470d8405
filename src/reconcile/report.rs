//! What a reconcile did and found, as plain data: per-object actions and health, what was
//! pruned, the environment's health, drift and durations. The forge reporting (commit status
//! `baton/<env>`, the PR's status comment) and the planner's view ([`Report::deployments`])
//! are built from it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use super::health::{EnvHealth, Health, HealthStatus};
use super::object::ObjectId;
use crate::config::Pipeline;
use crate::gitrepo::bump::pulled_name;
use crate::image::Digest;
use crate::promote::state::{DeployState, Deployment};

/// What was done to one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "action")]
pub enum Action {
    /// Applied; it did not exist for this environment before.
    Created,
    /// Applied; Git changed it.
    Configured,
    /// Applied again: unchanged in Git, but the live object had drifted (these fields).
    DriftCorrected { fields: Vec<String> },
    /// Not written: the live object matches.
    Unchanged,
}

impl Action {
    /// Whether this action wrote to the API server.
    pub fn wrote(&self) -> bool {
        !matches!(self, Action::Unchanged)
    }

    pub fn name(&self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::DriftCorrected { .. } => "drift corrected",
            Action::Unchanged => "unchanged",
        }
    }
}

/// One object of the environment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReport {
    #[serde(serialize_with = "display")]
    pub object: ObjectId,
    pub api_version: String,
    #[serde(flatten)]
    pub action: Action,
    pub health: Health,
    /// Container images, for pod-bearing kinds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Since when its current rollout has been healthy (workloads), or when it was seen healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_since: Option<DateTime<Utc>>,
    /// Healthy at the last reconcile, not healthy at the start of this one: why
    /// (`Deployment/web: ProgressDeadlineExceeded`). Its healthy time started over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interrupted: Option<String>,
}

/// What happened to an object the environment no longer renders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "outcome")]
pub enum Pruned {
    Deleted {
        object: String,
    },
    /// It was already gone.
    Gone {
        object: String,
    },
    /// Left in place, and dropped from the inventory.
    Skipped {
        object: String,
        reason: String,
    },
}

/// How long each phase took.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Durations {
    #[serde(serialize_with = "millis")]
    pub apply: Duration,
    #[serde(serialize_with = "millis")]
    pub prune: Duration,
    #[serde(serialize_with = "millis")]
    pub health: Duration,
    #[serde(serialize_with = "millis")]
    pub total: Duration,
}

/// The result of one reconcile of one environment.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub env: String,
    pub commit: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub objects: Vec<ObjectReport>,
    pub pruned: Vec<Pruned>,
    /// Deletions the prune guard held back (they stay in the inventory and in the cluster).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune_held: Option<super::prune::PruneHold>,
    pub health: EnvHealth,
    /// Objects whose live state had drifted and were re-applied.
    pub drift: usize,
    pub durations: Durations,
}

/// Counts for a one-line summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub created: usize,
    pub configured: usize,
    pub drift_corrected: usize,
    pub unchanged: usize,
    pub pruned: usize,
}

impl Report {
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for o in &self.objects {
            match o.action {
                Action::Created => c.created += 1,
                Action::Configured => c.configured += 1,
                Action::DriftCorrected { .. } => c.drift_corrected += 1,
                Action::Unchanged => c.unchanged += 1,
            }
        }
        c.pruned = self
            .pruned
            .iter()
            .filter(|p| matches!(p, Pruned::Deleted { .. }))
            .count();
        c
    }

    /// Objects written to the API server.
    pub fn writes(&self) -> usize {
        self.objects.iter().filter(|o| o.action.wrote()).count()
    }

    pub fn object(&self, id: &str) -> Option<&ObjectReport> {
        self.objects.iter().find(|o| o.object.to_string() == id)
    }

    /// `dev at 1a2b3c4: healthy; 2 created, 1 configured, 0 drift corrected, 9 unchanged, 1 pruned in 4.2s`
    pub fn summary(&self) -> String {
        let c = self.counts();
        let state = match self.health.state {
            DeployState::Healthy => "healthy",
            DeployState::Progressing => "progressing",
            DeployState::Failed => "failed",
        };
        let held = self
            .prune_held
            .as_ref()
            .map(|h| format!("; {}", h.describe(&self.env)))
            .unwrap_or_default();
        format!(
            "{} at {}: {state}; {} created, {} configured, {} drift corrected, {} unchanged, {} pruned in {:.1}s{held}",
            self.env,
            &self.commit[..self.commit.len().min(7)],
            c.created,
            c.configured,
            c.drift_corrected,
            c.unchanged,
            c.pruned,
            self.durations.total.as_secs_f64()
        )
    }

    /// What this environment runs for each of the pipeline's apps, for the planner. An app
    /// is found by its container images: the app's `image`, or its copy under the
    /// environment's `copyTo`; its digest is the one pinned after `@`. Its state is the worst
    /// health among the objects that run it. Apps the environment does not run (or does not
    /// pin by digest) are left out.
    pub fn deployments(&self, pipeline: &Pipeline) -> Vec<Deployment> {
        let environment = pipeline.environment(&self.env);
        let mut out = Vec::new();
        for (name, app) in &pipeline.apps {
            let mut repos = vec![app.image.clone()];
            if let Some(copy) = environment.and_then(|e| pulled_name(e, app)) {
                repos.push(copy);
            }
            let mut digest: Option<Digest> = None;
            let mut worst = HealthStatus::Healthy;
            let mut since: Option<DateTime<Utc>> = None;
            let mut found = false;
            for o in &self.objects {
                let pinned: Vec<Option<Digest>> = o
                    .images
                    .iter()
                    .map(|i| split_image(i))
                    .filter(|(repo, _, _)| repos.iter().any(|r| r == repo))
                    .map(|(_, _, d)| d.and_then(|d| d.parse().ok()))
                    .collect();
                if pinned.is_empty() {
                    continue;
                }
                found = true;
                if digest.is_none() {
                    digest = pinned.into_iter().flatten().next();
                }
                worst = worse(worst, o.health.status);
                since = match (since, o.healthy_since) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
            let (true, Some(digest)) = (found, digest) else {
                continue;
            };
            let state = worst.deploy_state();
            out.push(Deployment {
                env: self.env.clone(),
                app: name.clone(),
                digest,
                state,
                healthy_since: (state == DeployState::Healthy)
                    .then(|| since.unwrap_or(self.finished_at)),
                restarted: None,
            });
        }
        out
    }
}

fn worse(a: HealthStatus, b: HealthStatus) -> HealthStatus {
    use HealthStatus::*;
    match (a, b) {
        (Failed, _) | (_, Failed) => Failed,
        (Progressing, _) | (_, Progressing) => Progressing,
        _ => Healthy,
    }
}

/// `repo[:tag][@digest]` → (repo, tag, digest). A `:` belongs to the tag only after the last
/// `/` (a registry host may carry a port).
pub fn split_image(image: &str) -> (&str, Option<&str>, Option<&str>) {
    let (rest, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d)),
        None => (image, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[slash..].find(':') {
        Some(colon) => (
            &rest[..slash + colon],
            Some(&rest[slash + colon + 1..]),
            digest,
        ),
        None => (rest, None, digest),
    }
}

fn display<S: Serializer, T: std::fmt::Display>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:4c58c90f14978d5f4dd361f5347b51ca8aa93e55e46c5e39dbb11ccdb91a7c2c";
    const D2: &str = "sha256:c14b0af4f3c10d66634eb3dcb48c7962c1288ffb5c77d149e62e79161f8eeb8d";

    const PIPELINE: &str = r#"
apiVersion: baton.dev/v1
kind: Pipeline
apps:
  web:
    image: registry.example.com/shop/web
    bless: { semver: ">=1.0.0" }
  worker:
    image: registry.example.com/shop/worker
    bless: { semver: ">=1.0.0" }
  absent:
    image: registry.example.com/shop/absent
    bless: { semver: ">=1.0.0" }
environments:
  - name: dev
  - name: prod
    after: dev
    copyTo: prod-registry.example.com/shop
"#;

    fn object(name: &str, images: &[String], health: Health) -> ObjectReport {
        ObjectReport {
            object: ObjectId {
                group: "apps".into(),
                kind: "Deployment".into(),
                namespace: Some("shop".into()),
                name: name.into(),
            },
            api_version: "apps/v1".into(),
            action: Action::Unchanged,
            health,
            images: images.to_vec(),
            healthy_since: None,
            interrupted: None,
        }
    }

    fn report(env: &str, objects: Vec<ObjectReport>) -> Report {
        let now = Utc::now();
        Report {
            env: env.into(),
            commit: "0123456789abcdef".into(),
            started_at: now,
            finished_at: now,
            health: EnvHealth::of(objects.iter().map(|o| (&o.object, &o.health))),
            objects,
            pruned: vec![],
            prune_held: None,
            drift: 0,
            durations: Durations::default(),
        }
    }

    #[test]
    fn images_split_into_repository_tag_and_digest() {
        assert_eq!(
            split_image("registry.example.com:5000/shop/web:1.4.0@sha256:ab"),
            (
                "registry.example.com:5000/shop/web",
                Some("1.4.0"),
                Some("sha256:ab")
            )
        );
        assert_eq!(
            split_image("localhost:5000/web"),
            ("localhost:5000/web", None, None)
        );
        assert_eq!(
            split_image("web@sha256:ab"),
            ("web", None, Some("sha256:ab"))
        );
    }

    #[test]
    fn each_app_gets_its_pinned_digest_and_the_worst_health_of_its_objects() {
        let p = Pipeline::parse("p.yaml", PIPELINE).unwrap().pipeline;
        let web = format!("registry.example.com/shop/web:1.4.0@{D1}");
        let worker = format!("registry.example.com/shop/worker@{D2}");
        let r = report(
            "dev",
            vec![
                object(
                    "web",
                    &[web.clone(), "sidecar:1".into()],
                    Health::healthy("Available", ""),
                ),
                object(
                    "web-canary",
                    std::slice::from_ref(&web),
                    Health::progressing("RolloutInProgress", ""),
                ),
                object(
                    "worker",
                    &[worker],
                    Health::failed("ProgressDeadlineExceeded", ""),
                ),
            ],
        );
        let deployments = r.deployments(&p);
        let summary: Vec<(&str, &str, DeployState)> = deployments
            .iter()
            .map(|d| (d.app.as_str(), d.digest.as_str(), d.state))
            .collect();
        assert_eq!(
            summary,
            [
                ("web", D1, DeployState::Progressing),
                ("worker", D2, DeployState::Failed)
            ]
        );
    }

    #[test]
    fn an_environment_with_copy_to_is_matched_by_the_copied_image_name() {
        let p = Pipeline::parse("p.yaml", PIPELINE).unwrap().pipeline;
        let copied = format!("prod-registry.example.com/shop/web:1.4.0@{D1}");
        let r = report(
            "prod",
            vec![object("web", &[copied], Health::healthy("Available", ""))],
        );
        let d = r.deployments(&p);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].app.as_str(), d[0].state),
            ("web", DeployState::Healthy)
        );
        assert_eq!(d[0].healthy_since, Some(r.finished_at));
    }

    #[test]
    fn the_summary_counts_actions() {
        let mut r = report(
            "dev",
            vec![object("web", &[], Health::healthy("Available", ""))],
        );
        r.pruned.push(Pruned::Deleted {
            object: "ConfigMap/shop/old".into(),
        });
        assert_eq!(
            r.summary(),
            "dev at 0123456: healthy; 0 created, 0 configured, 0 drift corrected, 1 unchanged, 1 pruned in 0.0s"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["objects"][0]["object"], "Deployment/shop/web");
        assert_eq!(json["objects"][0]["action"], "unchanged");
    }
}
