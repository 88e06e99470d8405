//! The sandbox's Kubernetes: the in-process `sim` stand-in by default, or a real control plane
//! started from a directory of binaries (`baton sandbox --kube-assets DIR`, built by
//! `scripts/kube-assets`). The demo and the tests read the cluster through [`SandboxCluster`]
//! and cannot tell which one runs.

use std::path::Path;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use serde_json::Value;

use super::SandboxError;

pub enum SandboxCluster {
    /// `sim::cluster`: simulated controllers, rollouts of 500 ms, a 3 s progress deadline.
    Sim(sim::cluster::Cluster),
    /// etcd, kube-apiserver, controller-manager, scheduler and kwok, all real.
    Real {
        control_plane: Box<controlplane::ControlPlane>,
        client: kube::Client,
    },
}

impl SandboxCluster {
    pub async fn start(kube_assets: Option<&Path>) -> Result<Self, SandboxError> {
        match kube_assets {
            None => {
                let cluster = sim::cluster::Cluster::start_with(sim::cluster::ClusterConfig {
                    rollout_duration: Duration::from_millis(500),
                    progress_deadline: Duration::from_secs(3),
                    ..Default::default()
                })
                .await
                .map_err(|source| SandboxError::Start {
                    what: "Kubernetes",
                    source,
                })?;
                Ok(Self::Sim(cluster))
            }
            Some(dir) => {
                let control_plane = controlplane::ControlPlane::start(dir)
                    .await
                    .map_err(|e| SandboxError::ControlPlane(e.to_string()))?;
                let client = control_plane
                    .client()
                    .await
                    .map_err(|e| SandboxError::ControlPlane(e.to_string()))?;
                Ok(Self::Real {
                    control_plane: Box::new(control_plane),
                    client,
                })
            }
        }
    }

    /// Whether this is the real control plane.
    pub fn is_real(&self) -> bool {
        matches!(self, Self::Real { .. })
    }

    /// The stand-in, for what only it can do (faults, counters).
    pub fn sim(&self) -> Option<&sim::cluster::Cluster> {
        match self {
            Self::Sim(c) => Some(c),
            Self::Real { .. } => None,
        }
    }

    /// The real control plane, when it runs.
    pub fn control_plane(&self) -> Option<&controlplane::ControlPlane> {
        match self {
            Self::Sim(_) => None,
            Self::Real { control_plane, .. } => Some(control_plane),
        }
    }

    pub fn url(&self) -> String {
        match self {
            Self::Sim(c) => c.url(),
            Self::Real { control_plane, .. } => control_plane.server().to_string(),
        }
    }

    /// A kubeconfig with full access (the stand-in has no authentication).
    pub fn kubeconfig(&self) -> String {
        match self {
            Self::Sim(c) => c.kubeconfig(),
            Self::Real { control_plane, .. } => control_plane.kubeconfig(),
        }
    }

    /// From now on pods whose image matches `marker` (reference, tag or digest) never become
    /// ready, and Job pods with it fail.
    pub fn mark_broken(&self, marker: &str) -> Result<(), SandboxError> {
        match self {
            Self::Sim(c) => {
                c.mark_broken(marker);
                Ok(())
            }
            Self::Real { control_plane, .. } => control_plane
                .mark_broken(marker)
                .map_err(|e| SandboxError::ControlPlane(e.to_string())),
        }
    }

    /// One object, or `None`. On the real cluster this is a blocking API call: call it from a
    /// multi-threaded tokio runtime (as the CLI's is).
    pub fn get(&self, api_version: &str, kind: &str, ns: &str, name: &str) -> Option<Value> {
        match self {
            Self::Sim(c) => c.get(api_version, kind, ns, name),
            Self::Real { client, .. } => blocking(async {
                let api = dynamic(
                    client,
                    api_version,
                    kind,
                    Some(ns).filter(|n| !n.is_empty()),
                )
                .await?;
                let obj = api.get_opt(name).await.ok()??;
                serde_json::to_value(obj).ok()
            }),
        }
    }

    /// Every object of a kind (in one namespace, or all).
    pub fn list(&self, api_version: &str, kind: &str, ns: Option<&str>) -> Vec<Value> {
        match self {
            Self::Sim(c) => c.list(api_version, kind, ns),
            Self::Real { client, .. } => blocking(async {
                let api = dynamic(client, api_version, kind, ns).await?;
                let list = api.list(&ListParams::default()).await.ok()?;
                Some(
                    list.items
                        .into_iter()
                        .filter_map(|o| serde_json::to_value(o).ok())
                        .collect(),
                )
            })
            .unwrap_or_default(),
        }
    }
}

fn blocking<T>(f: impl std::future::Future<Output = Option<T>>) -> Option<T> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

async fn dynamic(
    client: &kube::Client,
    api_version: &str,
    kind: &str,
    ns: Option<&str>,
) -> Option<Api<DynamicObject>> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await.ok()?;
    Some(match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    })
}
