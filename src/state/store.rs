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

use super::{EnvState, KEY, KEY_GZ, MAX_BYTES, PLAIN_BYTES};

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
#[derive(Debug, Clone)]
struct Entry {
    state: EnvState,
    /// The ConfigMap's resourceVersion when read or written (`None`: it does not exist).
    version: Option<String>,
    /// The text the ConfigMap holds, when it is known to equal `state` (or the form of it
    /// that fits).
    written: Option<String>,
}

/// An environment with no ConfigMap: its state is empty, and that empty state is what is
/// stored (nothing to write). A refresh replaces it with what another replica wrote since.
impl Default for Entry {
    fn default() -> Self {
        let state = EnvState::default();
        Self {
            written: Some(state.encode()),
            state,
            version: None,
        }
    }
}

impl Entry {
    /// Whether `state` holds a change the ConfigMap does not have yet.
    fn unwritten(&self) -> bool {
        match stored_form(&self.state) {
            Ok((text, _)) => self.written.as_deref() != Some(text.as_str()),
            Err(_) => true,
        }
    }
}

/// The first encoding of `state` whose stored form fits (a large one gzipped), or the size
/// of the smallest when none does.
fn stored_form(state: &EnvState) -> Result<(String, Stored), usize> {
    let mut last = 0;
    state
        .encodings()
        .find_map(|text| {
            let stored = Stored::of(&text);
            last = stored.len();
            (last <= MAX_BYTES).then_some((text, stored))
        })
        .ok_or(last)
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

    /// Read again the environments another replica writes (a cluster reconciled elsewhere,
    /// the engine's `/retry` and `/prune`). An environment with a change not written yet keeps
    /// what this process holds; its next write meets the other's with a 409 and merges.
    pub async fn refresh(&self, envs: &[String]) -> Result<(), StoreError> {
        if self.api.is_none() {
            return Ok(());
        }
        for env in envs {
            let fresh = self.read(env).await?;
            let mut entries = self.entries();
            if !entries.get(env).is_some_and(Entry::unwritten) {
                entries.insert(env.clone(), fresh);
            }
        }
        Ok(())
    }

    /// Read part of one environment's state without copying the whole of it.
    pub fn with<T>(&self, env: &str, read: impl FnOnce(Option<&EnvState>) -> T) -> T {
        read(self.entries().get(env).map(|e| &e.state))
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
        let text = document(&cm).map_err(|message| StoreError::Unreadable {
            namespace: namespace.clone(),
            name: name.clone(),
            message,
        })?;
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
            let (text, stored, version) = {
                let entries = self.entries();
                let Some(entry) = entries.get(env) else {
                    return Ok(());
                };
                let (text, stored) = match stored_form(&entry.state) {
                    Ok(form) => form,
                    Err(last) => {
                        return Err(StoreError::Api {
                            namespace: namespace.clone(),
                            name,
                            message: format!(
                                "{last} bytes (gzipped) is over the {MAX_BYTES} bytes kept, even with only each app's running digest"
                            ),
                            transient: false,
                        });
                    }
                };
                if entry.written.as_deref() == Some(text.as_str()) {
                    return Ok(());
                }
                (text, stored, entry.version.clone())
            };
            let cm = config_map(&name, namespace, env, &stored, version.as_deref());
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

/// How a document is kept in its ConfigMap: plain JSON up to [`PLAIN_BYTES`], gzipped in
/// `binaryData` beyond (the other key empty).
enum Stored {
    Plain(String),
    Gzip(Vec<u8>),
}

impl Stored {
    fn of(text: &str) -> Self {
        if text.len() <= PLAIN_BYTES {
            return Self::Plain(text.to_string());
        }
        use std::io::Write as _;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes())
            .and_then(|()| gz.finish())
            .map(Self::Gzip)
            .expect("gzip into memory cannot fail")
    }

    /// The bytes it takes in the ConfigMap (base64 for `binaryData`).
    fn len(&self) -> usize {
        match self {
            Self::Plain(t) => t.len(),
            Self::Gzip(b) => b.len().div_ceil(3) * 4,
        }
    }
}

/// The document a ConfigMap holds (gzipped or plain; none is an empty text).
pub fn document(cm: &ConfigMap) -> Result<String, String> {
    if let Some(gz) = cm
        .binary_data
        .as_ref()
        .and_then(|d| d.get(KEY_GZ))
        .filter(|b| !b.0.is_empty())
    {
        use std::io::Read as _;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz.0[..])
            .read_to_string(&mut text)
            .map_err(|e| format!("key {KEY_GZ}: not gzipped JSON: {e}"))?;
        return Ok(text);
    }
    Ok(cm
        .data
        .as_ref()
        .and_then(|d| d.get(KEY))
        .cloned()
        .unwrap_or_default())
}

fn config_map(
    name: &str,
    namespace: &str,
    env: &str,
    stored: &Stored,
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
    let mut cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
    });
    // Both keys, the unused one empty: a key left out would stay as the first write (a create,
    // not an apply) left it, since server-side apply removes only the fields it owns.
    let (plain, gz) = match stored {
        Stored::Plain(text) => (text.clone(), String::new()),
        Stored::Gzip(bytes) => {
            use base64::Engine as _;
            (
                String::new(),
                base64::engine::general_purpose::STANDARD.encode(bytes),
            )
        }
    };
    cm["data"] = json!({ KEY: plain });
    cm["binaryData"] = json!({ KEY_GZ: gz });
    cm
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::fleet;

    fn stored_and_read(state: &EnvState) -> (serde_json::Value, EnvState, usize) {
        let (text, stored) = state
            .encodings()
            .find_map(|text| {
                let stored = Stored::of(&text);
                (stored.len() <= MAX_BYTES).then(|| (text.clone(), stored.len()))
            })
            .expect("some encoding fits");
        let cm = config_map(
            "baton-state-prod",
            "baton-system",
            "prod",
            &Stored::of(&text),
            None,
        );
        let parsed: ConfigMap = serde_json::from_value(cm.clone()).unwrap();
        let back = EnvState::decode(&document(&parsed).unwrap()).unwrap();
        (cm, back, stored)
    }

    #[test]
    fn a_small_state_stays_plain_json_and_a_thousand_apps_are_gzipped_whole() {
        let small = fleet(10, 1);
        let (cm, back, _) = stored_and_read(&small);
        assert!(cm["data"][KEY].as_str().is_some_and(|t| t.starts_with('{')));
        assert_eq!(cm["binaryData"][KEY_GZ], "");
        assert_eq!(back, small);

        // The scale bench's environment: 1,000 apps with a release, a verification and a
        // rollout mark each is over the plain limit, and fits gzipped without losing anything.
        let big = fleet(1000, 1);
        assert!(big.encode().len() > PLAIN_BYTES);
        let (cm, back, stored) = stored_and_read(&big);
        assert_eq!(cm["data"][KEY], "");
        assert!(
            cm["binaryData"][KEY_GZ]
                .as_str()
                .is_some_and(|b| !b.is_empty())
        );
        assert_eq!(back, big, "nothing trimmed");
        assert!(stored < MAX_BYTES / 2, "{stored} bytes stored");
    }

    #[test]
    fn four_releases_of_a_thousand_apps_fit_with_every_running_clock() {
        let four = fleet(1000, 4);
        let (_, back, stored) = stored_and_read(&four);
        assert!(stored <= MAX_BYTES);
        assert_eq!(
            back.deployments("prod", true),
            four.deployments("prod", true)
        );
    }

    #[test]
    fn a_damaged_gzip_is_an_error_naming_the_key() {
        let cm = ConfigMap {
            binary_data: Some(
                [(
                    KEY_GZ.to_string(),
                    k8s_openapi::ByteString(b"not gzip".to_vec()),
                )]
                .into_iter()
                .collect(),
            ),
            ..Default::default()
        };
        let err = document(&cm).unwrap_err();
        assert!(err.contains(KEY_GZ), "{err}");
    }
}
