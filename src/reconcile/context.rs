//! What a reconcile needs besides its input: the cluster client, options, the discovery
//! cache, and what was learnt about each environment's rollouts. One [`Context`] per
//! cluster, shared by every environment on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::Client;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use super::discovery::Discovery;
use super::health::RolloutMark;
use super::object::ObjectId;
use super::prune::PruneGuard;
use super::scope::Scope;
use crate::config::pipeline::ServiceAccountRef;

/// How the reconciler behaves. `Default` is what production uses.
#[derive(Debug, Clone)]
pub struct Options {
    /// Server-side apply field manager.
    pub field_manager: String,
    /// Take ownership of fields other managers hold (`kubectl apply --force-conflicts`).
    /// Without it, a conflict fails the object with the other manager's name.
    pub force: bool,
    /// Namespace of the inventory ConfigMaps (the bot's own namespace).
    pub namespace: String,
    /// Where baton's RBAC lets it act: lists and watches are per namespace under
    /// [`Scope::Namespaces`], and objects outside it are refused.
    pub scope: Scope,
    /// Server-side dry run every object about to be written before the first write, so that
    /// objects the API server refuses stop the reconcile with nothing applied.
    pub dry_run: bool,
    /// Delete what an environment no longer renders.
    pub prune: bool,
    /// Also prune Namespaces (and everything in them).
    pub prune_namespaces: bool,
    /// Also prune CustomResourceDefinitions (and every custom resource of them).
    pub prune_crds: bool,
    /// Wait for health after applying, up to the environment's timeout.
    pub wait_for_health: bool,
    /// How long an environment may take to become healthy, unless the [`Env`] says.
    pub health_timeout: Duration,
    /// How long a CRD may take to be established.
    pub crd_timeout: Duration,
    /// API calls in flight at once within one apply stage.
    pub concurrency: usize,
    /// Retries of one API call on a transient error, before the reconcile fails.
    pub call_retries: u32,
    /// First delay between those retries (doubling, with jitter).
    pub retry_base: Duration,
    /// Environments reconciled at once on this cluster.
    pub max_concurrent_envs: usize,
    /// List and watch per namespace of the objects even under [`Scope::Cluster`]: an
    /// environment acting as a ServiceAccount (set by [`Context::acting_as`]).
    pub per_namespace_lists: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            field_manager: "baton".into(),
            force: true,
            namespace: "baton-system".into(),
            scope: Scope::Cluster,
            dry_run: true,
            prune: true,
            prune_namespaces: false,
            prune_crds: false,
            wait_for_health: true,
            health_timeout: Duration::from_secs(600),
            crd_timeout: Duration::from_secs(60),
            concurrency: 8,
            call_retries: 2,
            retry_base: Duration::from_millis(200),
            max_concurrent_envs: 4,
            per_namespace_lists: false,
        }
    }
}

/// One environment as the reconciler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Env {
    pub name: String,
    /// Overrides [`Options::health_timeout`].
    pub health_timeout: Option<Duration>,
    /// How much one reconcile may delete without an approval.
    pub prune: PruneGuard,
    /// Where the environment may apply (`allow:` in the pipeline); `None`: anywhere baton's
    /// own scope reaches.
    pub allow: Option<crate::config::pipeline::Allow>,
    /// The ServiceAccount the environment acts as (`serviceAccount:` in the pipeline): its
    /// apply, prune, dry run, discovery and health reads go through impersonation
    /// (`super::identity`). `None`: baton's own identity.
    pub service_account: Option<crate::config::pipeline::ServiceAccountRef>,
}

impl Env {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            health_timeout: None,
            prune: PruneGuard::default(),
            allow: None,
            service_account: None,
        }
    }

    pub fn with_service_account(
        mut self,
        service_account: Option<crate::config::pipeline::ServiceAccountRef>,
    ) -> Self {
        self.service_account = service_account;
        self
    }

    pub fn with_allow(mut self, allow: Option<crate::config::pipeline::Allow>) -> Self {
        self.allow = allow;
        self
    }

    pub fn with_prune_guard(mut self, guard: PruneGuard) -> Self {
        self.prune = guard;
        self
    }

    pub fn with_health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = Some(timeout);
        self
    }
}

/// What is remembered about an environment between reconciles. The service persists it
/// ([`Remembered`], through `crate::state`), so that a restart keeps each rollout's mark and
/// healthy time.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct EnvMemory {
    /// Workloads whose rollout was healthy: the template, and since when.
    pub rollouts: HashMap<ObjectId, (RolloutMark, DateTime<Utc>)>,
    /// Other healthy objects (Jobs, CronJobs, …): the rendered hash they were healthy with,
    /// and since when, so that an unchanged one keeps its time.
    pub healthy: HashMap<ObjectId, (String, DateTime<Utc>)>,
}

/// [`EnvMemory`] in a form that can be written down: objects by their inventory id
/// (`<namespace>_<name>_<group>_<kind>`).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remembered {
    /// Workloads whose rollout was healthy.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, RememberedRollout>,
    /// Other healthy objects: the rendered hash, and since when.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub healthy: BTreeMap<String, RememberedObject>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RememberedRollout {
    pub template: String,
    pub available: i64,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RememberedObject {
    pub hash: String,
    pub since: DateTime<Utc>,
}

impl Remembered {
    pub fn is_empty(&self) -> bool {
        self.rollouts.is_empty() && self.healthy.is_empty()
    }
}

impl From<&EnvMemory> for Remembered {
    fn from(m: &EnvMemory) -> Self {
        Self {
            rollouts: m
                .rollouts
                .iter()
                .map(|(id, (mark, since))| {
                    let r = RememberedRollout {
                        template: mark.template.clone(),
                        available: mark.available,
                        since: *since,
                    };
                    (id.to_inventory(), r)
                })
                .collect(),
            healthy: m
                .healthy
                .iter()
                .map(|(id, (hash, since))| {
                    let r = RememberedObject {
                        hash: hash.clone(),
                        since: *since,
                    };
                    (id.to_inventory(), r)
                })
                .collect(),
        }
    }
}

impl From<&Remembered> for EnvMemory {
    fn from(r: &Remembered) -> Self {
        Self {
            rollouts: r
                .rollouts
                .iter()
                .filter_map(|(id, m)| {
                    let mark = RolloutMark {
                        template: m.template.clone(),
                        available: m.available,
                    };
                    Some((ObjectId::from_inventory(id)?, (mark, m.since)))
                })
                .collect(),
            healthy: r
                .healthy
                .iter()
                .filter_map(|(id, o)| {
                    Some((ObjectId::from_inventory(id)?, (o.hash.clone(), o.since)))
                })
                .collect(),
        }
    }
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid API server URL {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("cannot build a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// Shared state of the reconciler for one cluster. A clone shares it (memory, locks,
/// discovery).
#[derive(Clone)]
pub struct Context {
    /// The identity calls are made as: baton's own, or (in the view
    /// [`Context::acting_as`] returns) an environment's ServiceAccount.
    pub client: Client,
    pub options: Options,
    pub(crate) discovery: Arc<Discovery>,
    /// What every identity's view of the cluster shares.
    shared: Arc<Shared>,
}

struct Shared {
    memory: Mutex<HashMap<String, EnvMemory>>,
    env_locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    env_slots: Arc<Semaphore>,
    /// One impersonating client per ServiceAccount, over baton's own connection.
    impersonating: Mutex<HashMap<ServiceAccountRef, Client>>,
}

impl Context {
    pub fn new(client: Client, options: Options) -> Self {
        let slots = options.max_concurrent_envs.max(1);
        Self {
            client,
            options,
            discovery: Arc::default(),
            shared: Arc::new(Shared {
                memory: Mutex::default(),
                env_locks: Mutex::default(),
                env_slots: Arc::new(Semaphore::new(slots)),
                impersonating: Mutex::default(),
            }),
        }
    }

    /// The view of this cluster that `env` acts through: itself when the environment names no
    /// ServiceAccount, else the same context (discovery cache, memory, locks) whose client
    /// impersonates the account and whose lists and watches name a namespace (the account's
    /// Roles are usually per namespace). baton's own identity still reads and writes the
    /// inventory ([`Context::client`] of `self`).
    pub fn acting_as(&self, env: &Env) -> std::borrow::Cow<'_, Context> {
        let Some(sa) = &env.service_account else {
            return std::borrow::Cow::Borrowed(self);
        };
        let client = self
            .shared
            .impersonating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sa.clone())
            .or_insert_with(|| super::identity::impersonating(&self.client, sa))
            .clone();
        let mut options = self.options.clone();
        options.per_namespace_lists = true;
        std::borrow::Cow::Owned(Context {
            client,
            options,
            discovery: self.discovery.clone(),
            shared: self.shared.clone(),
        })
    }

    /// A context for the API server at `url` without credentials (the `sim` stand-in, or
    /// `kubectl proxy`). Installs the process's TLS crypto provider first.
    pub fn for_url(url: &str, options: Options) -> Result<Self, ClientError> {
        crate::tls::install_crypto_provider();
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| ClientError::Url {
                url: url.to_string(),
                message: e.to_string(),
            })?;
        let client = Client::try_from(kube::Config::new(uri)).map_err(ClientError::Client)?;
        Ok(Self::new(client, options))
    }

    /// Where to list or watch objects of one resource (see [`Scope::list_namespaces`]),
    /// per namespace also under a cluster scope when [`Options::per_namespace_lists`].
    pub(crate) fn list_scope(&self) -> std::borrow::Cow<'_, Scope> {
        match &self.options.scope {
            Scope::Cluster if self.options.per_namespace_lists => {
                std::borrow::Cow::Owned(Scope::Namespaces(Default::default()))
            }
            scope => std::borrow::Cow::Borrowed(scope),
        }
    }

    pub(crate) fn memory(&self, env: &str) -> EnvMemory {
        self.shared
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(env)
            .cloned()
            .unwrap_or_default()
    }

    /// What is remembered about `env`'s rollouts, to be written down.
    pub fn remembered(&self, env: &str) -> Remembered {
        Remembered::from(&self.memory(env))
    }

    /// Restore what a previous process remembered about `env` (after a restart or a
    /// failover), unless this process already learnt something itself.
    pub fn restore(&self, env: &str, remembered: &Remembered) {
        let mut memory = self.shared.memory.lock().unwrap_or_else(|p| p.into_inner());
        memory
            .entry(env.to_string())
            .or_insert_with(|| EnvMemory::from(remembered));
    }

    pub(crate) fn remember(&self, env: &str, memory: EnvMemory) {
        self.shared
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(env.to_string(), memory);
    }

    /// Wait for this environment's turn: one reconcile per environment at a time, and at
    /// most [`Options::max_concurrent_envs`] environments at once.
    pub(crate) async fn turn(&self, env: &str) -> (OwnedMutexGuard<()>, OwnedSemaphorePermit) {
        let lock = self
            .shared
            .env_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(env.to_string())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        let permit = self
            .shared
            .env_slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        (guard, permit)
    }
}
