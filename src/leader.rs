//! Leader election on a Kubernetes `Lease`, so that of several replicas only one acts.
//!
//! ```no_run
//! # async fn demo(client: kube::Client) -> Result<(), baton::leader::LeaderError> {
//! use baton::leader::{LeaseConfig, Leadership};
//! let leadership = Leadership::start(client, LeaseConfig::new("baton-system", "baton", "pod-a"))?;
//! let mut leading = leadership.subscribe();
//! while !*leading.borrow_and_update() {
//!     if leading.changed().await.is_err() { break }
//! }
//! // ... act while `*leading.borrow()` is true; stop acting when it turns false ...
//! leadership.release().await; // on SIGTERM: hand over at once instead of after the lease expires
//! # Ok(()) }
//! ```
//!
//! The protocol is `kube-lease-manager`'s (server-side apply on `coordination.k8s.io/v1`
//! `Lease`, renewal `grace` before expiry, takeover of an expired lease). baton adds around it:
//! - a holder that cannot reach the API server steps down at once (publishes `false`) and
//!   rejoins when the API answers again (reclaiming its own lease if it still holds it);
//! - a follower watches the Lease and takes over as soon as the holder releases it, instead of
//!   sleeping until the old expiry (the library alone only notices at expiry);
//! - release on graceful shutdown ([`Leadership::release`], or dropping the [`Leadership`]);
//!   [`Leadership::abort`] stops without releasing, as a crash would (the lease then expires).
//!
//! Lease durations are whole seconds (the `Lease` API's unit); a follower takes over a dead
//! holder's lease within `duration` after its last renewal plus up to one second of random
//! back-off (the library's collision avoidance).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kube_lease_manager::{LeaseCreateMode, LeaseManager, LeaseManagerError, LeaseParams};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// Which Lease, who is asking, and for how long a holder keeps it without renewing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The bot's own namespace (it must exist; the Lease is created there if missing).
    pub namespace: String,
    /// The Lease's name (one per shard when clusters are sharded across replicas).
    pub name: String,
    /// This replica's identity, unique among the candidates (the pod name).
    pub identity: String,
    /// How long the lease is valid after each renewal (whole seconds, at least 2 s).
    pub duration: Duration,
    /// How long before expiry the holder renews (whole seconds, at least 1 s, less than
    /// `duration`).
    pub grace: Duration,
}

impl LeaseConfig {
    /// A lease of 15 s renewed 5 s before expiry (client-go's defaults are 15 s / 10 s).
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

    /// Refuse what the Lease API or the library cannot do (it would panic).
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
        source: LeaseManagerError,
    },
}

impl LeaderError {
    /// Whether trying again can help: API problems yes, configuration no.
    pub fn is_transient(&self) -> bool {
        matches!(self, LeaderError::Lease { .. })
    }
}

/// A running election for one Lease. `true` on [`Leadership::subscribe`] means this replica
/// holds the lease and may act.
pub struct Leadership {
    leading: watch::Receiver<bool>,
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
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(campaign(client, config, tx, stopped));
        Ok(Self {
            leading,
            stop: Some(stop),
            task,
        })
    }

    /// Whether this replica leads now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// A receiver of the leadership state (`true`: leading), for `select!` and `/readyz`.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.clone()
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

/// The election loop: (re)build the manager, follow its state, step down on errors, take over
/// when the holder releases, release on stop.
async fn campaign(
    client: Client,
    config: LeaseConfig,
    tx: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    let lease = config.lease();
    let mut failures: u32 = 0;
    loop {
        let built = tokio::select! {
            biased;
            _ = &mut stop => return,
            built = build(&client, &config) => built,
        };
        let manager = match built {
            Ok(manager) => manager,
            Err(source) => {
                let e = LeaderError::Lease {
                    lease: lease.clone(),
                    source,
                };
                tracing::warn!(error = %e, "cannot join the leader election; retrying");
                failures += 1;
                if pause_or_stop(&config, failures, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        loop {
            let leading = *tx.borrow();
            tokio::select! {
                biased;
                _ = &mut stop => {
                    tx.send_replace(false);
                    match tokio::time::timeout(config.duration, manager.release()).await {
                        Ok(Ok(())) => tracing::info!(%lease, identity = %config.identity, "released the lease"),
                        Ok(Err(e)) => tracing::warn!(%lease, error = %e, "could not release the lease; it expires on its own"),
                        Err(_) => tracing::warn!(%lease, "releasing the lease timed out; it expires on its own"),
                    }
                    return;
                }
                changed = manager.changed() => match changed {
                    Ok(now) => {
                        failures = 0;
                        if now != leading {
                            tracing::info!(%lease, identity = %config.identity, leading = now, "leadership changed");
                        }
                        tx.send_replace(now);
                    }
                    Err(source) => {
                        tx.send_replace(false);
                        let e = LeaderError::Lease { lease: lease.clone(), source };
                        tracing::warn!(error = %e, was_leading = leading, "lease API error; not leading until it answers again");
                        failures += 1;
                        if pause_or_stop(&config, failures, &mut stop).await {
                            return;
                        }
                        break;
                    }
                },
                () = released_by_holder(&api, &config.name, &config.identity), if !leading => {
                    tracing::debug!(%lease, "the holder released the lease; campaigning at once");
                    break;
                }
            }
        }
    }
}

async fn build(client: &Client, config: &LeaseConfig) -> Result<LeaseManager, LeaseManagerError> {
    let params = LeaseParams::new(
        config.identity.clone(),
        config.duration.as_secs(),
        config.grace.as_secs(),
    )
    .with_field_manager(format!("baton-leader-{}", config.identity));
    LeaseManager::new(
        client.clone(),
        config.name.clone(),
        config.namespace.clone(),
        params,
        LeaseCreateMode::AutoCreate,
    )
    .await
}

/// Wait before retrying (doubling from 1 s up to the lease duration), or return `true` when
/// asked to stop meanwhile.
async fn pause_or_stop(
    config: &LeaseConfig,
    failures: u32,
    stop: &mut oneshot::Receiver<()>,
) -> bool {
    let wait = crate::reconcile::error::backoff(
        failures.saturating_sub(1),
        Duration::from_secs(1),
        config.duration,
    );
    tokio::select! {
        biased;
        _ = stop => true,
        _ = tokio::time::sleep(wait) => false,
    }
}

/// Resolves when the Lease, seen held by another identity, becomes free (its holder released
/// it). A free lease at the start does not count: the manager takes that one by itself.
async fn released_by_holder(api: &Api<Lease>, name: &str, me: &str) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api.clone(), config)
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    let mut held_by_other = false;
    while let Some(event) = stream.next().await {
        let Ok(lease) = event else { continue };
        match lease.spec.and_then(|s| s.holder_identity) {
            Some(holder) if holder != me => held_by_other = true,
            None if held_by_other => return,
            _ => {}
        }
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

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
