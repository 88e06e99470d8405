//! Where [`EnvState`] is kept: one ConfigMap per environment, `baton-state-<env>`, in baton's
//! namespace of its home cluster (the one `inCluster: true`, else the first in `baton.yaml`:
//! the cluster of its Lease). Written with server-side apply (field manager `baton`) carrying
//! the `resourceVersion` last read as a precondition: a write based on a stale read is
//! refused (409), and the update is then applied again to what the API server holds.
//!
//! The store keeps the last state it read or wrote per environment in memory, so readers
//! (`deployments`, the status page) never wait on the API; a change is written at once, and
//! an unchanged state is never written (an idle resync makes no write). A failed write is
//! logged and tried again with the next change or [`StateStore::flush`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{EnvState, KEY, MAX_BYTES};

/// Why the persisted state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("ConfigMap/{namespace}/{name}: {message}")]
    Api {
        namespace: String,
        name: String,
        message: String,
        /// Worth trying again (the API server was unreachable or busy, or a write raced).
        transient: bool,
    },
    #[error("ConfigMap/{namespace}/{name} key {KEY}: {message}")]
    Unreadable {
        namespace: String,
        name: String,
        message: String,
    },
}

/// One environment's state as last read or written.
#[derive(Debug, Clone, Default)]
struct Entry {
    state: EnvState,
    /// The ConfigMap's resourceVersion when read or written (`None`: it does not exist).
    version: Option<String>,
    /// The text the ConfigMap holds, when it is known to equal `state`.
    written: Option<String>,
}

/// The persisted state of every environment.
pub struct StateStore {
    api: Option<(Api<ConfigMap>, String)>,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// One write at a time (the service is one writer; this keeps its own writes ordered).
    writing: tokio::sync::Mutex<()>,
}

impl Default for StateStore {
    fn default() -> Self {
        Self::memory()
    }
}

impl StateStore {
    /// A store in memory only (no cluster to keep it in).
    pub fn memory() -> Self {
        Self {
            api: None,
            entries: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// A store in `namespace` of the cluster `client` talks to.
    pub fn kube(client: kube::Client, namespace: &str) -> Self {
        Self {
            api: Some((Api::namespaced(client, namespace), namespace.to_string())),
            ..Self::memory()
        }
    }

    /// `baton-state-<env>`.
    pub fn name(env: &str) -> String {
        format!("baton-state-{env}")
    }

    /// Whether the state is kept in a cluster.
    pub fn is_persistent(&self) -> bool {
        self.api.is_some()
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read each environment's ConfigMap (a missing one is an empty state). What this
    /// process already holds for an environment is replaced.
    pub async fn load(&self, envs: &[String]) -> Result<(), StoreError> {
        for env in envs {
            let entry = self.read(env).await?;
            self.entries().insert(env.clone(), entry);
        }
        Ok(())
    }

    async fn read(&self, env: &str) -> Result<Entry, StoreError> {
        let Some((api, namespace)) = &self.api else {
            return Ok(Entry::default());
        };
        let name = Self::name(env);
        let found = api
            .get_opt(&name)
            .await
            .map_err(|e| api_error(namespace, &name, e))?;
        let Some(cm) = found else {
            return Ok(Entry::default());
        };
        let text = cm
            .data
            .as_ref()
            .and_then(|d| d.get(KEY))
            .cloned()
            .unwrap_or_default();
        let state = EnvState::decode(&text).map_err(|message| StoreError::Unreadable {
            namespace: namespace.clone(),
            name: name.clone(),
            message,
        })?;
        Ok(Entry {
            written: Some(state.encode()),
            state,
            version: cm.metadata.resource_version,
        })
    }

    /// Every environment's state as this process knows it.
    pub fn snapshot(&self) -> BTreeMap<String, EnvState> {
        self.entries()
            .iter()
            .map(|(k, e)| (k.clone(), e.state.clone()))
            .collect()
    }

    /// One environment's state.
    pub fn get(&self, env: &str) -> EnvState {
        self.entries()
            .get(env)
            .map(|e| e.state.clone())
            .unwrap_or_default()
    }

    /// Change an environment's state in memory and write it down when it changed. Returns
    /// what `change` returned. A write refused because another writer changed the ConfigMap
    /// reads it again and applies `change` to what it holds (at most three times); other
    /// failures are logged, and the change is written with the next one.
    pub async fn update<T>(&self, env: &str, change: impl Fn(&mut EnvState) -> T) -> T {
        let out = {
            let mut entries = self.entries();
            change(&mut entries.entry(env.to_string()).or_default().state)
        };
        if let Err(e) = self.write(env, &change).await {
            tracing::warn!(%env, error = %e, "cannot write baton's state; trying again with the next change");
        }
        out
    }

    /// Change an environment's state in memory only; [`StateStore::flush`] or the next
    /// [`StateStore::update`] of it writes it.
    pub fn change<T>(&self, env: &str, change: impl FnOnce(&mut EnvState) -> T) -> T {
        change(&mut self.entries().entry(env.to_string()).or_default().state)
    }

    /// Write whatever is not written yet.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let envs: Vec<String> = self.entries().keys().cloned().collect();
        for env in envs {
            self.write(&env, &|_: &mut EnvState| {}).await?;
        }
        Ok(())
    }

    async fn write<T>(
        &self,
        env: &str,
        change: &impl Fn(&mut EnvState) -> T,
    ) -> Result<(), StoreError> {
        let Some((api, namespace)) = &self.api else {
            return Ok(());
        };
        let _turn = self.writing.lock().await;
        let name = Self::name(env);
        for _ in 0..3 {
            let (text, version) = {
                let entries = self.entries();
                let Some(entry) = entries.get(env) else {
                    return Ok(());
                };
                let text = entry.state.encode();
                if entry.written.as_deref() == Some(text.as_str()) {
                    return Ok(());
                }
                (text, entry.version.clone())
            };
            if text.len() > MAX_BYTES {
                return Err(StoreError::Api {
                    namespace: namespace.clone(),
                    name,
                    message: format!("{} bytes is over the {MAX_BYTES} bytes kept", text.len()),
                    transient: false,
                });
            }
            let cm = config_map(&name, namespace, env, &text, version.as_deref());
            let result = match &version {
                // Server-side apply with the resourceVersion read as a precondition.
                Some(_) => {
                    api.patch(
                        &name,
                        &PatchParams::apply("baton").force(),
                        &Patch::Apply(&cm),
                    )
                    .await
                }
                // Create: refused if another writer created it meanwhile.
                None => match serde_json::from_value::<ConfigMap>(cm) {
                    Ok(cm) => api.create(&PostParams::default(), &cm).await,
                    Err(e) => unreachable!("a ConfigMap built here always parses: {e}"),
                },
            };
            match result {
                Ok(written) => {
                    let mut entries = self.entries();
                    let entry = entries.entry(env.to_string()).or_default();
                    entry.version = written.metadata.resource_version;
                    entry.written = Some(text);
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    // Someone else wrote it: apply the change to what they wrote.
                    tracing::debug!(%env, "baton's state changed under this write; reading it again");
                    let mut fresh = self.read(env).await?;
                    change(&mut fresh.state);
                    self.entries().insert(env.to_string(), fresh);
                }
                Err(kube::Error::Api(s)) if s.code == 404 && version.is_some() => {
                    // Deleted since it was read: create it again.
                    if let Some(entry) = self.entries().get_mut(env) {
                        entry.version = None;
                        entry.written = None;
                    }
                }
                Err(e) => return Err(api_error(namespace, &name, e)),
            }
        }
        Err(StoreError::Api {
            namespace: namespace.clone(),
            name,
            message: "it kept changing under three writes in a row".into(),
            transient: true,
        })
    }
}

fn config_map(
    name: &str,
    namespace: &str,
    env: &str,
    text: &str,
    version: Option<&str>,
) -> serde_json::Value {
    let mut metadata = json!({
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "baton", "baton.dev/state-of": env},
    });
    if let Some(v) = version {
        metadata["resourceVersion"] = json!(v);
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {KEY: text},
    })
}

fn api_error(namespace: &str, name: &str, e: kube::Error) -> StoreError {
    let transient = crate::reconcile::error::is_transient(&e);
    StoreError::Api {
        namespace: namespace.to_string(),
        name: name.to_string(),
        message: crate::reconcile::error::describe(&e),
        transient,
    }
}
