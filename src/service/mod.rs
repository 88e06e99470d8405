//! `baton run`: the long-running service. It wires the pieces together and owns no decision:
//! the webhook/status server ([`crate::server`]), the registry watcher and promotion engine
//! ([`crate::engine`]) in one loop, and one reconcile runner per cluster
//! ([`crate::reconcile::runner`]) fed by renders of the config branch tip.
//!
//! ```text
//! registry hints ─┐                 ┌─► merged / branch moved ─► runner.trigger(env)
//! GitHub events ──┼─► promotion loop┤
//! plan interval ──┘  (scan, plan,   └─► engine outcomes (logs, metrics)
//!                     act)
//! runner outcomes ─► reports per env ─► deployments (soak) ─► nudge the promotion loop
//! ```
//!
//! Shutdown (SIGTERM, Ctrl-C or the caller's future): the promotion loop finishes the pass in
//! flight and stops; reconciles in flight are abandoned (applies are idempotent; the next start
//! picks up); the server stops accepting and drains.

pub mod dashboard;
mod dora;
mod fence;
mod notify;
mod persist;
mod promotion;
mod reports;
mod shards;
pub mod source;
mod status;

use status::web_url;

pub use persist::{home_cluster, home_store, load_deployments};

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};

use crate::config::RuntimeConfig;
use crate::config::pipeline::Pipeline;
use crate::engine::copy::Copier;
use crate::engine::{Engine, Outcome};
use crate::forge::github::GitHubForge;
use crate::gitrepo::repo::{Auth, ConfigRepo, Identity, Remote};
use crate::promote::plan::Release;
use crate::promote::state::Deployment;
use crate::reconcile::runner::{Input, Runner, Schedule};
use crate::reconcile::{self, Env, ReconcileError, Report};
use crate::registry::scan::Scanner;
use crate::server::AppState;

pub use source::TipSource;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Git(#[from] crate::gitrepo::repo::GitError),
    #[error(transparent)]
    Forge(#[from] crate::forge::ForgeError),
    #[error("cluster {cluster}: {message}")]
    Cluster { cluster: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("policies/pipeline.yaml at the config branch tip: {0}")]
    Pipeline(String),
}

/// Knobs that are not part of `baton.yaml` (set by `baton run` flags or the sandbox).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Reconciler behaviour for every cluster (namespace, timeouts, prune).
    pub reconcile: reconcile::Options,
    /// Leader election among replicas; `None`: this process always acts.
    pub leader: Option<LeaderOptions>,
}

/// Leader election on a `Lease` (see [`crate::leader`]). The Lease lives in the cluster baton
/// runs in: the one configured with `inCluster: true`, else the first one in `baton.yaml`.
#[derive(Debug, Clone)]
pub struct LeaderOptions {
    pub lease_name: String,
    /// The Lease's namespace; default: that cluster's `namespace`.
    pub namespace: Option<String>,
    /// This replica's identity (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
}

/// How [`Service::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Asked to stop.
    Shutdown,
}

impl RunOptions {
    /// For the sandbox: rollouts are judged within a minute.
    pub fn sandbox() -> Self {
        Self {
            reconcile: reconcile::Options {
                health_timeout: Duration::from_secs(60),
                ..Default::default()
            },
            leader: None,
        }
    }
}

type SourceFn = Box<dyn Fn(Env) -> BoxFuture<'static, Result<Input, ReconcileError>> + Send + Sync>;

/// What the loops share: the latest reconcile report per environment, the registry's
/// newest releases, and the persisted state ([`crate::state`]: soak clocks, verifications,
/// `/retry`, rollout marks).
#[derive(Default)]
pub struct Shared {
    pub reports: Mutex<BTreeMap<String, Report>>,
    pub releases: Mutex<BTreeMap<String, Release>>,
    /// What a restart must not lose, kept in the home cluster (also `/prune <env>`
    /// approvals: the commit whose held deletions may go ahead).
    pub state: crate::state::store::StateStore,
}

impl Shared {
    /// What each environment runs, for the planner's soak gate: the persisted state, read
    /// the same way by `baton plan` ([`crate::state::deployments`]).
    pub fn deployments(&self, pipeline: &Pipeline) -> BTreeMap<(String, String), Deployment> {
        crate::state::deployments(&self.state.snapshot(), pipeline)
    }
}

/// A started service: the listener is bound, clients are built, nothing runs yet.
pub struct Service {
    loops: Arc<Loops>,
    leader: Option<(kube::Client, crate::leader::LeaseConfig)>,
    /// Guards the verification Jobs' cluster writes by the engine's lease.
    engine_guard: fence::WriteGuard,
    listener: tokio::net::TcpListener,
}

impl Service {
    /// Build every client, clone the config repo and bind the listen address.
    pub async fn start(cfg: RuntimeConfig, options: RunOptions) -> Result<Self, ServiceError> {
        crate::tls::install_crypto_provider();
        let repo_slug = cfg.github_repository().ok_or_else(|| {
            ServiceError::Config(format!(
                "cannot tell the GitHub repository from repo.url {:?}; set github.repository",
                cfg.repo.url
            ))
        })?;
        // Who baton is comes from GitHub; the Git credentials follow the forge's (an App's
        // installation token, renewed before it expires) unless baton.yaml names its own.
        let forge = GitHubForge::connect(&cfg.github, &repo_slug).await?;
        let auth = match Auth::from_config(&cfg).map_err(|e| ServiceError::Config(e.to_string()))? {
            Auth::None if cfg.repo.url.starts_with("http") => forge.git_auth(),
            auth => auth,
        };
        let remote = Remote {
            url: cfg.repo.url.clone(),
            branch: cfg.repo.branch.clone(),
            auth,
        };
        // The signing key is checked at start: a bad one stops baton with the field named.
        let signer = crate::gitrepo::sign::CommitSigner::from_config(&cfg)
            .map_err(|e| ServiceError::Config(e.to_string()))?;
        if let Some(signer) = &signer {
            if crate::forge::Forge::makes_verified_commits(&forge) {
                tracing::info!(
                    "repo.signingKey is not used: as a GitHub App, baton's commits are made and signed by GitHub"
                );
            } else {
                tracing::info!(fingerprint = %signer.fingerprint(), "bot commits are signed");
            }
        }
        let engine_repo = ConfigRepo::open(
            &cfg.workdir.join("promote.git"),
            remote.clone(),
            Identity::from_config(&cfg),
        )?
        .with_signer(signer);
        let reconcile_repo = ConfigRepo::open(
            &cfg.workdir.join("reconcile.git"),
            remote.clone(),
            Identity::default(),
        )?;
        let checker_repo = ConfigRepo::open(
            &cfg.workdir.join("prcheck.git"),
            remote.clone(),
            Identity::default(),
        )?;

        let render_options = crate::render::Options {
            helm: cfg.render.helm_binary(),
            ..Default::default()
        };
        let source = Arc::new(
            TipSource::new(reconcile_repo, cfg.workdir.join("trees"))
                .with_render_options(render_options.clone()),
        );
        let (_, pipeline) = tokio::task::block_in_place(|| source.refresh())
            .map_err(|e| ServiceError::Pipeline(e.to_string()))?;

        let mut store = crate::registry::auth::CredentialStore::from_config(&cfg.registries)
            .map_err(|e| ServiceError::Config(format!("registries: {e}")))?;
        if let Some(path) = &cfg.docker_config {
            store
                .merge_docker_config(path)
                .map_err(|e| ServiceError::Config(format!("dockerConfig: {e}")))?;
        }
        let client = crate::registry::client::RegistryClient::new(store, Default::default());
        let copier = Arc::new(Copier::new(client.clone()));
        let scanner = Arc::new(Scanner::new(
            client,
            crate::registry::scan::ScanOptions {
                notified_list_reuse: cfg.intervals.registry_fallback.0,
                ..Default::default()
            },
        ));
        let checker = Arc::new(
            crate::prcheck::Checker::new(checker_repo)
                .with_copier(copier.clone())
                .with_render_options(render_options.clone()),
        );

        let bot_login = crate::forge::Forge::bot_login(&forge).to_owned();
        let links = crate::engine::deployments::DeploymentLinks {
            repository: web_url(&cfg),
            status_page: cfg.server.public_url.clone(),
        };
        let engine = Arc::new(
            Engine::new(forge, engine_repo)
                .with_copier(copier.clone())
                .with_deployments(links),
        );

        let webhook_secret = cfg
            .github
            .webhook_secret
            .as_ref()
            .map(|s| s.resolve())
            .transpose()
            .map_err(|e| ServiceError::Config(format!("github.webhookSecret: {e}")))?;
        let mut state = AppState::new(webhook_secret, bot_login);
        state.auth = cfg
            .server
            .auth
            .as_ref()
            .map(crate::server::auth::Guard::resolve)
            .transpose()
            .map_err(|e| ServiceError::Config(e.to_string()))?;
        if let Some(hook) = &cfg.server.registry_webhook {
            let resolve = |field: &str, secret: &Option<crate::config::SecretRef>| {
                secret
                    .as_ref()
                    .map(|s| s.resolve())
                    .transpose()
                    .map_err(|e| {
                        ServiceError::Config(format!("server.registryWebhook.{field}: {e}"))
                    })
            };
            state.registry_token = resolve("token", &hook.token)?;
            state.registry_hmac = resolve("hmacSecret", &hook.hmac_secret)?;
        }
        let state = Arc::new(state);
        state.set_history(Arc::new(crate::server::history::GitHistory::new(
            cfg.workdir.join("reconcile.git"),
            cfg.repo.branch.clone(),
        )));

        // One runner per cluster, each with the environments that live on it.
        let mut by_cluster: BTreeMap<String, Vec<Env>> = BTreeMap::new();
        for env in &pipeline.environments {
            by_cluster
                .entry(env.cluster().to_string())
                .or_default()
                .push(Env::new(&env.name));
        }
        let schedule = Schedule {
            resync: cfg.intervals.resync.0,
            ..Schedule::default()
        };
        let mut runners = Vec::new();
        let mut env_runner = BTreeMap::new();
        let announced: Arc<Mutex<BTreeMap<String, String>>> = Arc::default();
        let mut contexts = BTreeMap::new();
        let mut verify_contexts = BTreeMap::new();
        let mut clusters = Vec::new();
        let lease_cluster = home_cluster(&cfg).map(|(name, c)| (name.clone(), c.clone()));
        let leader = match (&options.leader, lease_cluster) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ServiceError::Config(
                    "leader election needs a cluster for its Lease; define one under clusters:"
                        .into(),
                ));
            }
            (Some(l), Some((name, cluster_cfg))) => {
                // The Lease's own client is not guarded: it renews the fence.
                let ctx =
                    cluster_context(&name, &cluster_cfg, options.reconcile.clone(), None).await?;
                let namespace = l
                    .namespace
                    .clone()
                    .unwrap_or_else(|| cluster_cfg.namespace.clone());
                let duration = Duration::from_secs(l.lease_duration.as_secs().max(2));
                let grace = Duration::from_secs((duration.as_secs() / 3).max(1));
                let lease = crate::leader::LeaseConfig::new(namespace, &l.lease_name, &l.identity)
                    .with_timing(duration, grace);
                lease
                    .check()
                    .map_err(|e| ServiceError::Config(format!("leader election: {e}")))?;
                Some((ctx.client.clone(), lease))
            }
        };
        // With leader election, each cluster's reconciler writes under its cluster's lease,
        // the verification Jobs under the engine's, and the state under any this replica holds.
        let sharded = leader.is_some();
        let guard = || {
            if sharded {
                fence::WriteGuard::closed()
            } else {
                fence::WriteGuard::default()
            }
        };
        let engine_guard = guard();
        let state_guard = guard();
        let shared = Arc::new(Shared {
            state: persist::store_in_home(&cfg, Some(&state_guard)).await?,
            ..Default::default()
        });
        let leading = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for (cluster, envs) in by_cluster {
            let cluster_cfg = cfg.clusters.get(&cluster).ok_or_else(|| {
                ServiceError::Config(format!(
                    "policies/pipeline.yaml places environment(s) {} on cluster `{cluster}`, which baton.yaml does not define under clusters:",
                    envs.iter().map(|e| e.name.as_str()).collect::<Vec<_>>().join(", ")
                ))
            })?;
            let mut opts = options.reconcile.clone();
            opts.namespace = cluster_cfg.namespace.clone();
            opts.scope = reconcile::Scope::of(cluster_cfg);
            let cluster_guard = guard();
            let ctx = Arc::new(
                cluster_context(&cluster, cluster_cfg, opts.clone(), Some(&cluster_guard)).await?,
            );
            let verify_ctx = if sharded {
                Arc::new(cluster_context(&cluster, cluster_cfg, opts, Some(&engine_guard)).await?)
            } else {
                ctx.clone()
            };
            for e in &envs {
                env_runner.insert(e.name.clone(), runners.len());
                contexts.insert(e.name.clone(), ctx.clone());
                verify_contexts.insert(e.name.clone(), verify_ctx.clone());
            }
            clusters.push(shards::ClusterRunner {
                name: cluster.clone(),
                guard: cluster_guard,
                envs: envs.iter().map(|e| e.name.clone()).collect(),
            });
            let leading = leading.clone();
            let src = source.clone();
            let engine = engine.clone();
            let announced = announced.clone();
            let copier = copier.clone();
            let shared = shared.clone();
            let f: SourceFn = Box::new(move |env: Env| {
                let src = src.clone();
                let engine = engine.clone();
                let announced = announced.clone();
                let copier = copier.clone();
                let shared = shared.clone();
                let leading = leading.clone();
                Box::pin(async move {
                    let name = env.name.clone();
                    let render = src.clone();
                    let input = tokio::task::spawn_blocking(move || render.input(&env))
                        .await
                        .unwrap_or_else(|e| {
                            Err(ReconcileError::Source {
                                env: String::new(),
                                message: format!("the render task failed: {e}"),
                                transient: true,
                            })
                        })?;
                    let mut input = input;
                    if let Some(guard) = input.prune.as_mut() {
                        // An approval may come from the replica that leads the engine.
                        if let Err(e) = shared.state.refresh(std::slice::from_ref(&name)).await {
                            tracing::debug!(env = %name, error = %e, "cannot read /prune approvals again");
                        }
                        guard.approved = shared
                            .state
                            .with(&name, |s| s.and_then(|s| s.prune_approved.clone()));
                    }
                    ensure_copies(&copier, &src, &name, &input.commit).await?;
                    // GitHub is written only by the replica that leads the engine.
                    // Never held up by GitHub's write pacing: an apply does not wait for it.
                    if leading.load(std::sync::atomic::Ordering::SeqCst) {
                        let announce =
                            reports::announce_applying(&engine, &announced, &name, &input.commit);
                        if tokio::time::timeout(ANNOUNCE_WITHIN, announce)
                            .await
                            .is_err()
                        {
                            tracing::debug!(env = %name, "GitHub's write pacing holds the \"applying\" status back; applying without it");
                        }
                    }
                    Ok(input)
                })
            });
            runners.push(Arc::new(Runner::new(ctx, envs, schedule.clone(), f)));
        }

        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| ServiceError::Listen {
                addr: cfg.listen,
                source,
            })?;
        let notifier = Arc::new(notify::notifier(&cfg, shared.clone(), state.clone())?);
        let loops = Arc::new(Loops {
            dashboard: cfg.github.dashboard.then(dashboard::Dashboard::default),
            notifier,
            cfg,
            state,
            shared,
            engine,
            scanner,
            checker,
            source,
            runners,
            env_runner,
            contexts,
            verify_contexts,
            clusters,
            held_envs: Mutex::new(std::collections::BTreeSet::new()),
            leading,
            state_guard,
            reported: Mutex::new(BTreeMap::new()),
            remote_rollouts: Mutex::new(BTreeMap::new()),
            remote_ready: tokio::sync::Notify::new(),
            triggered_tip: Mutex::new(None),
            in_flight: Mutex::new(std::collections::BTreeSet::new()),
            repo_slug,
            history: Mutex::new(None),
            dora: tokio::sync::Mutex::new(dora::DoraState::default()),
            dora_facts: Mutex::new(Arc::new(crate::dora::Facts::default())),
            last_outcomes: Mutex::new(Vec::new()),
            reconciles: Mutex::new(BTreeMap::new()),
            replicated: leader.is_some(),
        });
        Ok(Self {
            loops,
            leader,
            engine_guard,
            listener,
        })
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.loops.cfg.listen)
    }

    /// Run until `shutdown` resolves. With leader election the server answers at once (a
    /// follower is Ready), the clusters whose Lease this replica holds are reconciled from the
    /// start, and the promotion loop runs while this replica holds the engine's Lease (it stops
    /// when the Lease goes to another replica, and starts again if it comes back).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Exit {
        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = {
            let rx = stop_rx.clone();
            move || {
                let mut rx = rx.clone();
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                }
            }
        };
        tracing::info!(addr = %self.local_addr(), repo = %self.loops.cfg.repo.url, "baton is running");

        let server = {
            let app = crate::server::app(self.loops.state.clone());
            let stop = stopped();
            let listener = self.listener;
            tokio::spawn(async move {
                let app = app.into_make_service_with_connect_info::<SocketAddr>();
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "the HTTP server stopped");
                }
            })
        };

        let mut shutdown = std::pin::pin!(shutdown);
        // Every replica reconciles: all the clusters without election, else those whose
        // Lease it holds (`<lease>-reconcile-<cluster>`), whether or not it leads the engine.
        let (out_tx, out_rx) = mpsc::channel(64);
        let reports = tokio::spawn(self.loops.clone().report_loop(out_rx));
        let mut reconcilers = Vec::new();
        let mut shards = None;
        let leadership = match &self.leader {
            None => {
                // The rollout marks first: a reconcile that ran without them would see every
                // workload healthy only from now, and restart the soak clocks.
                self.loops.restore_state().await;
                self.loops.hold_all();
                for r in &self.loops.runners {
                    reconcilers.push(tokio::spawn(r.clone().run(out_tx.clone(), stopped())));
                }
                reconcilers.push(tokio::spawn(self.loops.clone().watch_tip(stop_rx.clone())));
                None
            }
            Some((client, lease)) => {
                ensure_namespace(client, &lease.namespace).await;
                let started = crate::leader::Leadership::start(client.clone(), lease.clone())
                    .and_then(|l| {
                        let clusters = self.loops.clusters.iter().map(|c| c.name.clone());
                        // `baton-leader` → `baton-reconcile-<cluster>`.
                        let prefix = lease.name.strip_suffix("-leader").unwrap_or(&lease.name);
                        let base = lease.named(format!("{prefix}-reconcile"));
                        crate::leader::shards::Shards::start(client.clone(), base, clusters)
                            .map(|s| (l, s))
                    });
                match started {
                    Ok((l, s)) => {
                        reconcilers.push(tokio::spawn(self.loops.clone().run_shards(
                            s.subscribe(),
                            out_tx.clone(),
                            stop_rx.clone(),
                        )));
                        reconcilers
                            .push(tokio::spawn(self.loops.clone().watch_tip(stop_rx.clone())));
                        shards = Some(s);
                        Some(l)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "leader election cannot start");
                        let _ = stop_tx.send(true);
                        drop(out_tx);
                        let _ = reports.await;
                        let _ = server.await;
                        return Exit::Shutdown;
                    }
                }
            }
        };
        drop(out_tx);
        // Lead the engine when this replica holds its Lease; when the Lease goes to another
        // replica, stop the engine's loops and follow again (the clusters held here keep being
        // reconciled), until shutdown.
        loop {
            let leads = match &leadership {
                None => true,
                Some(l) => {
                    tracing::info!(identity = %self.leader.as_ref().map(|(_, c)| c.identity.as_str()).unwrap_or(""), "waiting to lead");
                    // A follower is Ready: it serves the status page, reconciles the clusters
                    // it holds, and passes the webhooks it receives on to the holder by nudging
                    // it through the Lease.
                    self.loops.state.set_ready(true);
                    let forward = self.leader.clone().map(|(client, lease)| {
                        tokio::spawn(forward_nudges(self.loops.state.clone(), client, lease))
                    });
                    let mut leading = l.subscribe();
                    let leads = tokio::select! {
                        r = leading.wait_for(|v| *v) => r.is_ok(),
                        _ = &mut shutdown => false,
                    };
                    if let Some(f) = forward {
                        f.abort();
                    }
                    leads
                }
            };
            if !leads {
                break;
            }
            let shut = lead(
                &self.loops,
                &self.engine_guard,
                leadership.as_ref(),
                &mut shutdown,
            )
            .await;
            if shut || leadership.is_none() {
                break;
            }
            tracing::error!(
                "lost the engine's lease to another replica; following again (the clusters held here are still reconciled)"
            );
        }
        tracing::info!("shutting down: finishing the step in flight");
        let _ = stop_tx.send(true);
        self.loops.state.set_ready(false);
        let mut reports = reports;
        let finished = async {
            for t in reconcilers.iter_mut() {
                let _ = t.await;
            }
            let _ = (&mut reports).await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, finished)
            .await
            .is_err()
        {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "the reconciles in flight did not finish in time; stopping them");
            for t in &reconcilers {
                t.abort();
            }
            reports.abort();
        }
        if let Some(s) = shards {
            s.release().await;
        }
        if let Some(l) = leadership {
            l.release().await;
        }
        let _ = server.await;
        tracing::info!("baton stopped");
        Exit::Shutdown
    }
}

/// One term as the engine's leader: the promotion loop and the notifier run until
/// `shutdown` (returns true) or until the Lease goes to another replica (false).
async fn lead(
    loops: &Arc<Loops>,
    engine_guard: &fence::WriteGuard,
    leadership: Option<&crate::leader::Leadership>,
    shutdown: &mut std::pin::Pin<&mut (impl Future<Output = ()> + Send)>,
) -> bool {
    let (term_tx, term_rx) = watch::channel(false);
    let mut nudges = None;
    if let Some(l) = leadership {
        tracing::info!("leading: starting the promotion loop");
        // Nothing is written to GitHub once the lease may have passed to another replica;
        // verification Jobs and the state wait for it too.
        loops.engine.forge().set_fence(l.fence());
        engine_guard.add(l.fence());
        loops.state_guard.add(l.fence());
        nudges = Some(tokio::spawn(take_nudges(loops.state.clone(), l.nudges())));
    }
    loops
        .leading
        .store(true, std::sync::atomic::Ordering::SeqCst);
    if leadership.is_some() {
        // Without election it was read before the reconcilers started.
        loops.restore_state().await;
    }
    loops.state.metrics.leader.set(1);
    let mut notifier = tokio::spawn(loops.notifier.clone().run(term_rx.clone()));
    let mut promote = tokio::spawn(loops.clone().promotion_loop(term_rx));
    let lost = async {
        match leadership {
            Some(l) => {
                let mut leading = l.subscribe();
                let lost = leading.wait_for(|v| !*v).await.is_ok();
                if !lost {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    let shut = tokio::select! {
        _ = shutdown.as_mut() => true,
        _ = lost => false,
    };
    let _ = term_tx.send(true);
    loops
        .leading
        .store(false, std::sync::atomic::Ordering::SeqCst);
    // The step in flight gets a grace period: a write waiting its turn in GitHub's pacing
    // queue may take minutes. Every step is safe to interrupt (docs/decisions.md), so
    // after the grace it is stopped.
    let finished = async {
        let _ = (&mut promote).await;
        let _ = (&mut notifier).await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, finished)
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?SHUTDOWN_GRACE,
            "the step in flight did not finish in time; stopping it (the next start picks up where it left)"
        );
        promote.abort();
        notifier.abort();
    }
    if let Some(n) = nudges {
        n.abort();
    }
    loops.state.metrics.leader.set(0);
    shut
}

/// On a follower: each webhook that would wake the engine nudges the lease holder instead.
async fn forward_nudges(
    state: Arc<crate::server::AppState>,
    client: kube::Client,
    lease: crate::leader::LeaseConfig,
) {
    loop {
        state.nudge.notified().await;
        if let Err(e) = crate::leader::nudge(&client, &lease, "webhook").await {
            tracing::warn!(error = %e, "could not pass a webhook on to the leader; it acts at its next pass");
        }
    }
}

/// On the holder: a nudge from a follower wakes the engine as a webhook would.
async fn take_nudges(state: Arc<crate::server::AppState>, mut nudges: watch::Receiver<u64>) {
    while nudges.changed().await.is_ok() {
        state.nudge.notify_one();
    }
}

/// How long an apply waits to say "applying" on GitHub (a best-effort status) before it goes
/// ahead without it.
const ANNOUNCE_WITHIN: Duration = Duration::from_secs(2);

/// How long a shutdown waits for the step in flight before stopping it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Before an environment with `copyTo` is applied: every image it pins is in its `copyTo`
/// registry (copied again when missing). Until it is, nothing is applied.
async fn ensure_copies(
    copier: &Copier,
    source: &TipSource,
    env: &str,
    commit: &str,
) -> Result<(), ReconcileError> {
    let Some(pipeline) = source.pipeline() else {
        return Ok(());
    };
    let tree = source.tree(commit);
    let pins =
        crate::engine::copy::pinned_routes(&pipeline, &crate::gitrepo::files::FsFiles(&tree), env)
            .map_err(|message| ReconcileError::Source {
                env: env.to_string(),
                message,
                transient: false,
            })?;
    copier
        .ensure_pinned(env, &pins)
        .await
        .map(|_| ())
        .map_err(|message| ReconcileError::Source {
            env: env.to_string(),
            message,
            transient: true,
        })
}

/// Promotions from Git, newest first.
type Promotions = Arc<Vec<crate::gitrepo::history::Entry>>;

/// What the loops need, shared between their tasks.
struct Loops {
    /// Delivers `notify:` events in a task of its own.
    notifier: Arc<notify::Notifier>,
    cfg: RuntimeConfig,
    state: Arc<AppState>,
    shared: Arc<Shared>,
    engine: Arc<Engine<GitHubForge>>,
    scanner: Arc<Scanner>,
    checker: Arc<crate::prcheck::Checker>,
    source: Arc<TipSource>,
    runners: Vec<Arc<Runner<SourceFn>>>,
    env_runner: BTreeMap<String, usize>,
    contexts: BTreeMap<String, Arc<reconcile::Context>>,
    /// Per environment, the context verification Jobs are run with (guarded by the engine's
    /// lease; the reconcilers' by their cluster's).
    verify_contexts: BTreeMap<String, Arc<reconcile::Context>>,
    /// The clusters, in the order of `runners`.
    clusters: Vec<shards::ClusterRunner>,
    /// The environments whose cluster this replica reconciles now.
    held_envs: Mutex<std::collections::BTreeSet<String>>,
    /// Whether this replica runs the engine (leads, or there is no election).
    leading: Arc<std::sync::atomic::AtomicBool>,
    /// Guards the state's writes by whichever lease this replica holds.
    state_guard: fence::WriteGuard,
    /// The last rollout of each environment reported on GitHub by this replica.
    reported: Mutex<BTreeMap<String, crate::engine::Rollout>>,
    /// Rollouts other replicas persisted, waiting for the report loop (the newest per env).
    remote_rollouts: Mutex<BTreeMap<String, crate::engine::Rollout>>,
    remote_ready: tokio::sync::Notify,
    /// The config branch tip the reconcilers were last triggered for.
    triggered_tip: Mutex<Option<String>>,
    /// Verifications running: (env, app, digest, attempt).
    in_flight: Mutex<std::collections::BTreeSet<(String, String, String, u32)>>,
    repo_slug: String,
    /// Promotions read from Git, by the tip they were read at.
    history: Mutex<Option<(Option<String>, Promotions)>>,
    /// What the DORA metrics need beyond Git, and when it was last read.
    dora: tokio::sync::Mutex<dora::DoraState>,
    /// The facts as of the last read, for building the report with the view.
    dora_facts: Mutex<Arc<crate::dora::Facts>>,
    /// The last pass's outcomes (the blocking gate of each waiting PR).
    last_outcomes: Mutex<Vec<Outcome>>,
    reconciles: Mutex<BTreeMap<String, crate::server::view::ReconcileSummary>>,
    /// The promotion dashboard issue (`github.dashboard`), when on.
    dashboard: Option<dashboard::Dashboard>,
    /// Other replicas may serve the status page (leader election): the leader keeps the open
    /// PRs in the persisted state for them.
    replicated: bool,
}

impl Loops {
    fn trigger(&self, env: &str) {
        self.source.invalidate();
        if let Some(&i) = self.env_runner.get(env) {
            self.runners[i].trigger(env);
        }
    }

    fn trigger_all(&self) {
        for env in self.env_runner.keys() {
            self.trigger(env);
        }
    }
}

/// Create the lease's namespace if it is missing (in Kubernetes it is the release namespace,
/// which exists; elsewhere, e.g. the sandbox, it may not).
async fn ensure_namespace(client: &kube::Client, namespace: &str) {
    use k8s_openapi::api::core::v1::Namespace;
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    match api.get_opt(namespace).await {
        Ok(None) => {}
        Ok(Some(_)) => return,
        Err(e) => {
            // Under a namespaced RBAC scope baton may not read Namespaces; the chart's release
            // namespace exists, and a missing one shows up as the Lease's own error.
            tracing::debug!(%namespace, error = %e, "cannot read the lease namespace; assuming it exists");
            return;
        }
    }
    let ns = serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace }
    });
    if let Err(e) = api
        .patch(
            namespace,
            &kube::api::PatchParams::apply("baton"),
            &kube::api::Patch::Apply(ns),
        )
        .await
    {
        tracing::warn!(%namespace, error = %e, "cannot create the lease namespace");
    }
}

/// A reconcile context for a cluster of `baton.yaml`.
pub(crate) async fn cluster_context(
    name: &str,
    cfg: &crate::config::runtime::ClusterConfig,
    options: reconcile::Options,
    guard: Option<&fence::WriteGuard>,
) -> Result<reconcile::Context, ServiceError> {
    let err = |message: String| ServiceError::Cluster {
        cluster: name.to_string(),
        message,
    };
    let config = if cfg.in_cluster {
        kube::Config::incluster().map_err(|e| err(format!("in-cluster config: {e}")))?
    } else {
        let path: PathBuf = cfg
            .kubeconfig
            .clone()
            .ok_or_else(|| err("set inCluster: true or kubeconfig: <file>".into()))?;
        let kubeconfig = kube::config::Kubeconfig::read_from(&path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        let options = kube::config::KubeConfigOptions {
            context: cfg.context.clone(),
            ..Default::default()
        };
        kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| err(format!("{}: {e}", path.display())))?
    };
    let client = match guard {
        None => kube::Client::try_from(config).map_err(|e| err(e.to_string()))?,
        Some(guard) => kube::client::ClientBuilder::try_from(config)
            .map_err(|e| err(e.to_string()))?
            .with_layer(guard)
            .build(),
    };
    Ok(reconcile::Context::new(client, options))
}
