//! Spreading the clusters among replicas: one Lease per cluster (`<prefix>-<cluster>`, e.g.
//! `baton-reconcile-prod-eu`), and one membership Lease per replica (`<prefix>-member-<id>`) so
//! that each replica knows how many are alive. A replica takes free or expired cluster leases
//! while it holds fewer than its fair share (the clusters divided by the live replicas, rounded
//! up) and hands back what it holds beyond it, so a new replica gets work and a dead one's
//! clusters move to the others within the lease duration. Each held cluster has its own
//! [`Fence`], exactly as the engine's single lease has.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::ListParams;
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::lock::{self, Attempt, Observed};
use super::{Fence, LeaderError, LeaseConfig};

/// The clusters this replica holds now, each with the fence its writes wait for.
pub type Held = BTreeMap<String, Fence>;

/// A running campaign for a set of cluster leases.
pub struct Shards {
    held: watch::Receiver<Held>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Shards {
    /// Campaign for `clusters`, with `base`'s namespace, identity and timing; the cluster
    /// leases are named `<base.name>-<cluster>` and the membership lease
    /// `<base.name>-member-<identity>`.
    pub fn start(
        client: Client,
        base: LeaseConfig,
        clusters: impl IntoIterator<Item = String>,
    ) -> Result<Self, LeaderError> {
        base.check()?;
        let clusters: BTreeSet<String> = clusters.into_iter().collect();
        for c in &clusters {
            base.named(lease_name(&base.name, c)).check()?;
        }
        let (tx, held) = watch::channel(Held::new());
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(campaign(client, base, clusters, tx, stopped));
        Ok(Self {
            held,
            stop: Some(stop),
            task,
        })
    }

    /// The clusters held now; changes whenever one is taken or given up.
    pub fn subscribe(&self) -> watch::Receiver<Held> {
        self.held.clone()
    }

    /// Stop and release every lease held, so that the others take them at once.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Stop without releasing, as a crash would.
    pub fn abort(mut self) {
        self.task.abort();
        for fence in self.held.borrow().values() {
            fence.drop_down();
        }
        drop(self.stop.take());
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The Lease name of `cluster`'s reconciler.
pub fn lease_name(prefix: &str, cluster: &str) -> String {
    format!("{prefix}-{cluster}")
}

fn member_name(prefix: &str, identity: &str) -> String {
    format!("{prefix}-member-{identity}")
}

/// How many clusters each of `members` live replicas should hold at most.
pub fn fair_share(clusters: usize, members: usize) -> usize {
    clusters.div_ceil(members.max(1))
}

/// Which free clusters to try first: an order that differs per replica, so that replicas
/// starting together do not all reach for the same lease.
fn spread_order(clusters: &BTreeSet<String>, identity: &str) -> Vec<String> {
    let mut order: Vec<String> = clusters.iter().cloned().collect();
    if order.is_empty() {
        return order;
    }
    let seed = identity
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    let n = order.len();
    order.rotate_left(seed % n);
    order
}

async fn campaign(
    client: Client,
    base: LeaseConfig,
    clusters: BTreeSet<String>,
    tx: watch::Sender<Held>,
    mut stop: oneshot::Receiver<()>,
) {
    let api: Api<Lease> = Api::namespaced(client, &base.namespace);
    let member = member_name(&base.name, &base.identity);
    let member_prefix = format!("{}-member-", base.name);
    let mut observed: BTreeMap<String, Observed> = BTreeMap::new();
    let mut fences: BTreeMap<String, Fence> = BTreeMap::new();
    let order = spread_order(&clusters, &base.identity);
    loop {
        let round = async {
            let now = Instant::now();
            // Alive: this replica's own membership, renewed first.
            let mut mine_seen = observed.remove(&member).unwrap_or_default();
            let _ = lock::acquire_or_renew(
                &api,
                &member,
                &base.identity,
                base.duration,
                &mut mine_seen,
            )
            .await;
            observed.insert(member.clone(), mine_seen);
            // Who else is alive, and who holds what.
            let Ok(list) = api.list(&ListParams::default()).await else {
                return;
            };
            let mut members = 1;
            let mut holders: BTreeMap<String, Option<String>> = BTreeMap::new();
            for lease in &list.items {
                let Some(name) = lease.metadata.name.clone() else {
                    continue;
                };
                let seen = observed.entry(name.clone()).or_default();
                seen.saw(lease, now);
                let live = seen.holder.is_some() && !seen.expired(base.duration, now);
                if name != member && name.starts_with(&member_prefix) && live {
                    members += 1;
                }
                if let Some(c) = clusters.iter().find(|c| lease_name(&base.name, c) == name) {
                    holders.insert(c.clone(), live.then(|| seen.holder.clone()).flatten());
                }
            }
            let fair = fair_share(clusters.len(), members);
            let mut mine: Vec<String> = order
                .iter()
                .filter(|c| {
                    holders.get(*c).cloned().flatten().as_deref() == Some(base.identity.as_str())
                })
                .cloned()
                .collect();
            // Beyond the fair share: hand the last ones back.
            while mine.len() > fair {
                let Some(extra) = mine.pop() else { break };
                if let Some(f) = fences.remove(&extra) {
                    f.drop_down();
                }
                let _ = lock::release(&api, &lease_name(&base.name, &extra), &base.identity).await;
                tracing::info!(cluster = %extra, fair, "handing a cluster to another replica");
            }
            // Renew what is held, then take free ones up to the fair share.
            let candidates: Vec<String> = order
                .iter()
                .filter(|c| {
                    mine.contains(c)
                        || (mine.len() < fair && holders.get(*c).cloned().flatten().is_none())
                })
                .cloned()
                .collect();
            for c in candidates {
                let holding = mine.contains(&c);
                if !holding && mine.len() >= fair {
                    continue;
                }
                let name = lease_name(&base.name, &c);
                let started = Instant::now();
                let seen = observed.entry(name.clone()).or_default();
                match lock::acquire_or_renew(&api, &name, &base.identity, base.duration, seen).await
                {
                    Ok(Attempt::Holding) => {
                        let fence = fences
                            .entry(c.clone())
                            .or_insert_with(|| Fence::new(base.renew_deadline()));
                        fence.renewed(started);
                        if !holding {
                            mine.push(c.clone());
                            tracing::info!(cluster = %c, "took the cluster's lease");
                        }
                    }
                    Ok(Attempt::HeldBy(_) | Attempt::Lost) => {
                        if let Some(f) = fences.remove(&c) {
                            f.drop_down();
                            tracing::warn!(cluster = %c, "lost the cluster's lease");
                        }
                        mine.retain(|m| m != &c);
                    }
                    Err(e) => {
                        tracing::warn!(cluster = %c, error = %e, "cannot renew or take the cluster's lease");
                    }
                }
            }
        };
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = tokio::time::timeout(base.renew_deadline(), round) => {}
        }
        // Whatever did not renew within its deadline is no longer held.
        fences.retain(|c, f| {
            let holds = f.holds();
            if !holds {
                tracing::warn!(cluster = %c, "no renewal within the renew deadline; giving the cluster up");
            }
            holds
        });
        tx.send_if_modified(|held| {
            let changed = held.keys().ne(fences.keys());
            if changed {
                *held = fences.clone();
            }
            changed
        });
        let next = fences
            .values()
            .filter_map(Fence::down_at)
            .min()
            .map(|down| down.saturating_duration_since(Instant::now()))
            .unwrap_or(base.retry_period())
            .min(base.retry_period());
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = tokio::time::sleep(next) => {}
        }
    }
    tx.send_replace(Held::new());
    for (c, f) in std::mem::take(&mut fences) {
        f.drop_down();
        let _ = tokio::time::timeout(
            base.renew_deadline(),
            lock::release(&api, &lease_name(&base.name, &c), &base.identity),
        )
        .await;
    }
    let _ = tokio::time::timeout(
        base.renew_deadline(),
        lock::release(&api, &member, &base.identity),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fair_share_rounds_up_so_every_cluster_has_room() {
        assert_eq!(fair_share(6, 3), 2);
        assert_eq!(fair_share(6, 2), 3);
        assert_eq!(fair_share(7, 3), 3);
        assert_eq!(fair_share(1, 3), 1);
        assert_eq!(fair_share(6, 0), 6);
        for clusters in 0..20 {
            for members in 1..8 {
                assert!(fair_share(clusters, members) * members >= clusters);
            }
        }
    }

    #[test]
    fn replicas_start_their_search_at_different_clusters() {
        let clusters: BTreeSet<String> = (1..=6).map(|i| format!("c{i}")).collect();
        let firsts: BTreeSet<String> = ["baton-a", "baton-b", "baton-c", "pod-7f9c"]
            .iter()
            .map(|id| spread_order(&clusters, id)[0].clone())
            .collect();
        assert!(firsts.len() > 1, "every replica starts at the same cluster");
        let order = spread_order(&clusters, "baton-a");
        assert_eq!(
            order.iter().cloned().collect::<BTreeSet<_>>(),
            clusters,
            "a rotation, nothing lost"
        );
    }
}
