//! Leader election on Kubernetes `Lease`s, so that of several replicas only one acts on each
//! thing: the promotion engine, and each cluster's reconciler.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), baton::leader::LeaderError> {
//! use baton::leader::{LeaseConfig, Leadership};
//! let leadership = Leadership::start(client, LeaseConfig::new("baton-system", "baton", "pod-a"))?;
//! let mut leading = leadership.subscribe();
//! while !*leading.borrow_and_update() {
//!     if leading.changed().await.is_err() { break }
//! }
//! let fence = leadership.fence();
//! // ... act while `fence.holds()`; check it right before every write ...
//! leadership.release().await; // on SIGTERM: hand over at once instead of after the lease expires
//! # Ok(()) }
//! ```
//!
//! The protocol is client-go's (`lock.rs`): take a free or expired lease, renew it every
//! `retry_period` with a `resourceVersion` precondition. Its timing, for a lease `duration` D
//! and a `grace` G:
//! - the holder renews every `retry_period` (G/2, at most 2 s);
//! - a holder that has not renewed for the **renew deadline** (D − G) steps down, whatever its
//!   renewal call is doing: the call is abandoned at the deadline, not at the HTTP client's
//!   timeout. [`Fence::holds`] turns false at that instant by the monotonic clock, so a holder
//!   stopped (SIGSTOP, a long GC-like pause, a hung node) and resumed after its lease expired
//!   finds its fence down before its next write, even before its election task has run;
//! - another candidate takes the lease once it has seen it unchanged for D: G is the margin in
//!   which nobody acts;
//! - a follower watches the Lease and campaigns at once when the holder releases it;
//! - release on graceful shutdown ([`Leadership::release`], or dropping the [`Leadership`]);
//!   [`Leadership::abort`] stops without releasing, as a crash would (the lease then expires).
//!
//! GitHub and remote API servers check no fencing token, so a write that raced the deadline can
//! still land; every write baton makes is also idempotent and checks the state it expects
//! (docs/decisions.md).

mod lock;
pub mod shards;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

pub use lock::NUDGE_ANNOTATION;
use lock::{Attempt, Observed};

/// Which Lease, who is asking, and for how long a holder keeps it without renewing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The bot's own namespace (it must exist; the Lease is created there if missing).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This replica's identity, unique among the candidates (the pod name).
    pub identity: String,
    /// How long the lease is valid after each renewal (whole seconds, at least 2 s).
    pub duration: Duration,
    /// The margin between the holder's renew deadline and the lease's expiry (whole seconds,
    /// at least 1 s, less than `duration`): a holder that could not renew for
    /// `duration - grace` stops acting, `grace` before anyone else may start.
    pub grace: Duration,
}

impl LeaseConfig {
    /// A lease of 15 s with a renew deadline of 10 s (client-go's defaults).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            grace: Duration::from_secs(5),
        }
    }

    pub fn with_timing(mut self, duration: Duration, grace: Duration) -> Self {
        self.duration = duration;
        self.grace = grace;
        self
    }

    /// The same candidate and timing for another Lease (a cluster's shard).
    pub fn named(&self, name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..self.clone()
        }
    }

    /// How long the holder keeps acting without a successful renewal.
    pub fn renew_deadline(&self) -> Duration {
        self.duration.saturating_sub(self.grace)
    }

    /// How often the holder renews and a follower looks.
    pub fn retry_period(&self) -> Duration {
        (self.grace / 2).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }

    /// Refuse what the Lease API cannot hold or the timing cannot keep.
    pub fn check(&self) -> Result<(), LeaderError> {
        let problem = if self.identity.is_empty() {
            Some("identity is empty; use the pod name".to_string())
        } else if self.name.is_empty() || self.namespace.is_empty() {
            Some("lease name and namespace must be set".to_string())
        } else if self.duration.subsec_nanos() != 0 || self.grace.subsec_nanos() != 0 {
            Some("duration and grace are whole seconds (the Lease API's unit)".to_string())
        } else if self.grace.is_zero() || self.grace >= self.duration {
            Some(format!(
                "grace ({}s) must be at least 1s and less than the duration ({}s)",
                self.grace.as_secs(),
                self.duration.as_secs()
            ))
        } else {
            None
        };
        match problem {
            Some(message) => Err(LeaderError::Config {
                lease: self.lease(),
                message,
            }),
            None => Ok(()),
        }
    }

    fn lease(&self) -> String {
        format!("Lease/{}/{}", self.namespace, self.name)
    }
}

/// Why leader election could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The configuration cannot work; fix it.
    #[error("{lease}: {message}")]
    Config { lease: String, message: String },
    /// The Lease could not be read or written (retried by the election task itself).
    #[error("{lease}: {source}")]
    Lease {
        lease: String,
        #[source]
        source: kube::Error,
    },
}

impl LeaderError {
    /// Whether trying again can help: API problems yes, configuration no.
    pub fn is_transient(&self) -> bool {
        matches!(self, LeaderError::Lease { .. })
    }
}

/// Whether this replica may act on what a lease guards, right now. Checked before every write:
/// it turns false at the renew deadline by the monotonic clock, whether or not the election
/// task has run since (a process resumed after SIGSTOP sees it false at once).
#[derive(Clone)]
pub struct Fence(Arc<FenceState>);

struct FenceState {
    base: Instant,
    /// Nanoseconds after `base` of the start of the last successful renewal; 0: not holding.
    renewed: AtomicU64,
    /// `None`: no election, always holds.
    deadline: Option<Duration>,
}

impl Fence {
    /// A fence that always holds (one replica, no election).
    pub fn always() -> Self {
        Self(Arc::new(FenceState {
            base: Instant::now(),
            renewed: AtomicU64::new(0),
            deadline: None,
        }))
    }

    fn new(deadline: Duration) -> Self {
        Self(Arc::new(FenceState {
            base: Instant::now(),
            renewed: AtomicU64::new(0),
            deadline: Some(deadline),
        }))
    }

    /// Whether the lease is held and its last renewal is younger than the renew deadline.
    pub fn holds(&self) -> bool {
        self.holds_at(Instant::now())
    }

    fn holds_at(&self, now: Instant) -> bool {
        let Some(deadline) = self.0.deadline else {
            return true;
        };
        match self.0.renewed.load(Ordering::SeqCst) {
            0 => false,
            n => now < self.0.base + Duration::from_nanos(n) + deadline,
        }
    }

    /// When the fence goes down unless renewed again (`None`: not holding, or no election).
    fn down_at(&self) -> Option<Instant> {
        let deadline = self.0.deadline?;
        match self.0.renewed.load(Ordering::SeqCst) {
            0 => None,
            n => Some(self.0.base + Duration::from_nanos(n) + deadline),
        }
    }

    fn renewed(&self, at: Instant) {
        let n = at.saturating_duration_since(self.0.base).as_nanos().max(1) as u64;
        self.0.renewed.store(n, Ordering::SeqCst);
    }

    fn drop_down(&self) {
        self.0.renewed.store(0, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("holds", &self.holds())
            .finish()
    }
}

/// A running election for one Lease. `true` on [`Leadership::subscribe`] means this replica
/// holds the lease and may act.
pub struct Leadership {
    leading: watch::Receiver<bool>,
    nudges: watch::Receiver<u64>,
    fence: Fence,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Leadership {
    /// Start campaigning in a background task (needs a tokio runtime). Fails only on a
    /// configuration that cannot work; API errors are retried by the task, which reports
    /// `false` meanwhile.
    pub fn start(client: Client, config: LeaseConfig) -> Result<Self, LeaderError> {
        config.check()?;
        let (tx, leading) = watch::channel(false);
        let (nudge_tx, nudges) = watch::channel(0);
        let (stop, stopped) = oneshot::channel();
        let fence = Fence::new(config.renew_deadline());
        let task = tokio::spawn(campaign(
            client,
            config,
            Publish {
                leading: tx,
                nudges: nudge_tx,
                fence: fence.clone(),
            },
            stopped,
        ));
        Ok(Self {
            leading,
            nudges,
            fence,
            stop: Some(stop),
            task,
        })
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow() && self.fence.holds()
    }

    /// A receiver of the leadership state (`true`: leading), for `select!` and `/readyz`.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// The fence to check right before each write made under this lease.
    pub fn fence(&self) -> Fence {
        self.fence.clone()
    }

    /// Changes each time a follower nudges the holder ([`nudge`]) while this replica holds it.
    pub fn nudges(&self) -> watch::Receiver<u64> {
        self.nudges.clone()
    }

    /// Graceful shutdown: stop renewing and release the lease (the next candidate takes over at
    /// once), then return. The state turns `false` before the lease is released.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Err(e) = (&mut self.task).await
            && e.is_panic()
        {
            tracing::error!(error = %e, "leader election task panicked");
        }
    }

    /// Stop at once without releasing, as a crash would: the lease stays held until it
    /// expires. For tests and for a process that must not touch the API any more.
    pub fn abort(mut self) {
        self.task.abort();
        self.fence.drop_down();
        // Dropped after the abort, so the task never sees the stop signal.
        drop(self.stop.take());
    }
}

impl Drop for Leadership {
    /// Dropping without [`Leadership::release`] releases in the background.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Ask whoever holds `config`'s lease to act now (a follower that received a webhook).
pub async fn nudge(client: &Client, config: &LeaseConfig, why: &str) -> Result<(), LeaderError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    lock::nudge(&api, &config.name, why)
        .await
        .map_err(|source| LeaderError::Lease {
            lease: config.lease(),
            source,
        })
}

/// Who holds `config`'s lease now, if anyone (an expired holder still counts; for reports).
pub async fn holder(client: &Client, config: &LeaseConfig) -> Result<Option<String>, LeaderError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let lease = api
        .get_opt(&config.name)
        .await
        .map_err(|source| LeaderError::Lease {
            lease: config.lease(),
            source,
        })?;
    Ok(lease
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// Where the election task reports.
struct Publish {
    leading: watch::Sender<bool>,
    nudges: watch::Sender<u64>,
    fence: Fence,
}

impl Publish {
    fn set(&self, now: bool, config: &LeaseConfig) {
        if !now {
            self.fence.drop_down();
        }
        let was = self.leading.send_replace(now);
        if was != now {
            tracing::info!(lease = %config.lease(), identity = %config.identity, leading = now, "leadership changed");
        }
    }
}

/// The election loop: take or renew every retry period; step down at the renew deadline; wake
/// early when the holder releases; release on stop.
async fn campaign(
    client: Client,
    config: LeaseConfig,
    publish: Publish,
    mut stop: oneshot::Receiver<()>,
) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let lease = config.lease();
    let released = Arc::new(Notify::new());
    let watch_task = tokio::spawn(watch_releases(
        api.clone(),
        config.name.clone(),
        released.clone(),
    ));
    let mut observed = Observed::default();
    // The nudge annotation as last seen; a change seen while holding is a nudge.
    let mut last_nudge: Option<Option<String>> = None;
    let mut failures: u32 = 0;
    loop {
        let started = Instant::now();
        // A holder's attempt may take until its deadline; a follower's one retry period
        // stretched to the renew deadline (a hung call must not block the loop forever).
        let limit = match publish.fence.down_at() {
            Some(down) => down.saturating_duration_since(started),
            None => config.renew_deadline(),
        };
        let attempt = tokio::select! {
            biased;
            _ = &mut stop => break,
            r = tokio::time::timeout(limit, lock::acquire_or_renew(&api, &config.name, &config.identity, config.duration, &mut observed)) => r,
        };
        match attempt {
            Ok(Ok(Attempt::Holding)) => {
                failures = 0;
                publish.fence.renewed(started);
                publish.set(true, &config);
                if last_nudge
                    .as_ref()
                    .is_some_and(|last| *last != observed.nudge)
                {
                    publish.nudges.send_modify(|n| *n += 1);
                }
                last_nudge = Some(observed.nudge.clone());
            }
            Ok(Ok(Attempt::HeldBy(_) | Attempt::Lost)) => {
                failures = 0;
                last_nudge = Some(observed.nudge.clone());
                publish.set(false, &config);
            }
            Ok(Err(source)) => {
                failures += 1;
                let e = LeaderError::Lease {
                    lease: lease.clone(),
                    source,
                };
                tracing::warn!(error = %e, "cannot renew or take the lease; retrying");
                if !publish.fence.holds() {
                    publish.set(false, &config);
                }
            }
            Err(_) => {
                failures += 1;
                if !publish.fence.holds() {
                    tracing::warn!(%lease, deadline = ?config.renew_deadline(), "the lease call did not answer before the renew deadline; stepping down");
                    publish.set(false, &config);
                }
            }
        }
        // Wait for the next look: one retry period, backing off while the API fails; a holder
        // wakes at its deadline to step down, a follower when the holder releases.
        let pause = if failures > 0 {
            crate::reconcile::error::backoff(failures - 1, config.retry_period(), config.duration)
                .min(config.retry_period() * 4)
        } else {
            config.retry_period()
        };
        let down = publish.fence.down_at();
        let leading = *publish.leading.borrow();
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = async {
                match down {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                if !publish.fence.holds() {
                    tracing::warn!(%lease, "no renewal within the renew deadline; stepping down");
                    publish.set(false, &config);
                }
            }
            _ = released.notified(), if !leading => {
                tracing::debug!(%lease, "the holder released the lease; campaigning at once");
            }
            _ = tokio::time::sleep(pause) => {}
        }
    }
    watch_task.abort();
    let held = publish.fence.holds() || *publish.leading.borrow();
    publish.set(false, &config);
    if held {
        match tokio::time::timeout(
            config.renew_deadline(),
            lock::release(&api, &config.name, &config.identity),
        )
        .await
        {
            Ok(Ok(())) => {
                tracing::info!(%lease, identity = %config.identity, "released the lease")
            }
            Ok(Err(e)) => {
                tracing::warn!(%lease, error = %e, "could not release the lease; it expires on its own")
            }
            Err(_) => {
                tracing::warn!(%lease, "releasing the lease timed out; it expires on its own")
            }
        }
    }
}

/// Notifies whenever the Lease is seen without a holder after having had one (released).
async fn watch_releases(api: Api<Lease>, name: String, released: Arc<Notify>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff().applied_objects();
    futures::pin_mut!(stream);
    let mut held = false;
    while let Some(event) = stream.next().await {
        let Ok(lease) = event else { continue };
        match lease
            .spec
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
        {
            Some(_) => held = true,
            None if held => {
                held = false;
                released.notify_one();
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_goes_down_at_the_renew_deadline_by_the_monotonic_clock() {
        let fence = Fence::new(Duration::from_secs(10));
        assert!(!fence.holds(), "not holding before the first renewal");
        let renewed = Instant::now();
        fence.renewed(renewed);
        assert!(fence.holds_at(renewed + Duration::from_secs(9)));
        // A process stopped (SIGSTOP) and resumed 11 s later: whatever the election task has
        // or has not done since, the fence is down.
        assert!(!fence.holds_at(renewed + Duration::from_secs(11)));
        fence.drop_down();
        assert!(!fence.holds_at(renewed));
        assert!(Fence::always().holds());
    }

    #[test]
    fn timing_derives_the_renew_deadline_and_retry_period_from_duration_and_grace() {
        let c = LeaseConfig::new("ns", "baton", "a");
        assert_eq!(c.renew_deadline(), Duration::from_secs(10));
        assert_eq!(c.retry_period(), Duration::from_secs(2));
        let short = c.with_timing(Duration::from_secs(3), Duration::from_secs(1));
        assert_eq!(short.renew_deadline(), Duration::from_secs(2));
        assert_eq!(short.retry_period(), Duration::from_millis(500));
    }

    #[test]
    fn lease_timing_is_checked_before_the_library_would_panic() {
        let ok = LeaseConfig::new("ns", "baton", "a");
        assert!(ok.check().is_ok());
        let bad = |d: u64, g: u64| {
            ok.clone()
                .with_timing(Duration::from_secs(d), Duration::from_secs(g))
                .check()
                .unwrap_err()
                .to_string()
        };
        assert!(
            bad(5, 5).contains("less than the duration"),
            "{}",
            bad(5, 5)
        );
        assert!(bad(5, 0).contains("at least 1s"));
        let fractional = ok
            .clone()
            .with_timing(Duration::from_millis(2500), Duration::from_secs(1))
            .check()
            .unwrap_err();
        assert!(fractional.to_string().contains("whole seconds"));
        assert!(!fractional.is_transient());
        let nobody = LeaseConfig::new("ns", "baton", "").check().unwrap_err();
        assert!(
            nobody
                .to_string()
                .starts_with("Lease/ns/baton: identity is empty"),
            "{nobody}"
        );
    }
}
