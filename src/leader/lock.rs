//! One `coordination.k8s.io/v1` Lease as a lock: read it, take or renew it with an optimistic
//! `resourceVersion` precondition, release it. The same protocol as client-go's
//! `resourcelock.LeaseLock`: a holder's lease counts as expired once this candidate has seen
//! its record unchanged for a whole `leaseDurationSeconds` (local monotonic time, so clock
//! skew between replicas does not matter), or when its `renewTime` is more than two lease
//! durations behind this machine's clock (a lease left by a process long gone, seen at start).

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

/// The annotation a follower bumps to ask the holder to act now (a webhook it received).
pub const NUDGE_ANNOTATION: &str = "baton.dev/nudge";

/// What this candidate last saw of the Lease, and when (its own clock).
#[derive(Debug, Clone, Default)]
pub struct Observed {
    resource_version: Option<String>,
    pub holder: Option<String>,
    renew_time: Option<Timestamp>,
    seen_at: Option<Instant>,
    pub nudge: Option<String>,
}

impl Observed {
    /// Record `lease` as seen at `now`; the clock restarts only when the record changed.
    pub fn saw(&mut self, lease: &Lease, now: Instant) {
        let rv = lease.metadata.resource_version.clone();
        let spec = lease.spec.clone().unwrap_or_default();
        let changed = rv != self.resource_version || self.seen_at.is_none();
        self.resource_version = rv;
        self.holder = spec.holder_identity.filter(|h| !h.is_empty());
        self.renew_time = spec.renew_time.map(|t| t.0);
        self.nudge = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NUDGE_ANNOTATION).cloned());
        if changed {
            self.seen_at = Some(now);
        }
    }

    /// Whether another holder's lease may be taken: unchanged for `duration` as this candidate
    /// saw it, or renewed more than twice `duration` ago by the wall clock.
    pub fn expired(&self, duration: Duration, now: Instant) -> bool {
        let unchanged_long = self
            .seen_at
            .is_some_and(|seen| now.saturating_duration_since(seen) >= duration);
        let stale = self.renew_time.is_some_and(|renewed| {
            let age = Timestamp::now().duration_since(renewed);
            age.as_secs() > 2 * duration.as_secs() as i64
        });
        unchanged_long || stale
    }
}

/// The outcome of one attempt to take or renew.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This candidate holds the lease (taken or renewed just now).
    Holding,
    /// Someone else holds it and it has not expired.
    HeldBy(String),
    /// Another candidate wrote first; look again next time.
    Lost,
}

/// Take the lease if it is free, expired or already ours; renew it if ours.
pub async fn acquire_or_renew(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    duration: Duration,
    observed: &mut Observed,
) -> Result<Attempt, kube::Error> {
    let now = Instant::now();
    let Some(lease) = api.get_opt(name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            spec: Some(holding_spec(None, identity, duration)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                observed.saw(&created, now);
                Ok(Attempt::Holding)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Lost),
            Err(e) => Err(e),
        };
    };
    observed.saw(&lease, now);
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    if let Some(h) = &holder
        && h != identity
        && !observed.expired(duration, now)
    {
        return Ok(Attempt::HeldBy(h.clone()));
    }
    let mut next = lease.clone();
    next.spec = Some(holding_spec(Some(&spec), identity, duration));
    match api.replace(name, &PostParams::default(), &next).await {
        Ok(written) => {
            observed.saw(&written, now);
            Ok(Attempt::Holding)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Lost),
        Err(e) => Err(e),
    }
}

/// The spec of a lease held by `identity` from now: the acquire time and transition count
/// carry over when it already held it.
fn holding_spec(previous: Option<&LeaseSpec>, identity: &str, duration: Duration) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    let ours = previous.is_some_and(|p| p.holder_identity.as_deref() == Some(identity));
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(identity.to_string()),
        lease_duration_seconds: Some(duration.as_secs().clamp(1, i32::MAX as u64) as i32),
        acquire_time: if ours {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(now.clone())
        },
        renew_time: Some(now),
        lease_transitions: Some(if ours || previous.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..Default::default()
    }
}

/// Give the lease up if this candidate holds it, so that the next one takes it at once.
pub async fn release(api: &Api<Lease>, name: &str, identity: &str) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    match api.replace(name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(()),
        // Someone wrote since: then it is not ours to release any more.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Ask the holder to act now: bump the nudge annotation (a merge patch; the holder sees it at
/// its next look, which a watch makes immediate).
pub async fn nudge(api: &Api<Lease>, name: &str, why: &str) -> Result<(), kube::Error> {
    let value = format!("{} {why}", Timestamp::now());
    let patch = serde_json::json!({ "metadata": { "annotations": { NUDGE_ANNOTATION: value } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(rv: &str, holder: Option<&str>, renewed_secs_ago: i64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: Some(MicroTime(
                    Timestamp::now()
                        .checked_sub(k8s_openapi::jiff::SignedDuration::from_secs(
                            renewed_secs_ago,
                        ))
                        .unwrap(),
                )),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_lease_expires_only_after_a_whole_duration_unchanged_as_this_candidate_saw_it() {
        let d = Duration::from_secs(15);
        let t0 = Instant::now();
        let mut seen = Observed::default();
        seen.saw(&lease("1", Some("a"), 0), t0);
        assert!(!seen.expired(d, t0 + Duration::from_secs(14)));
        assert!(seen.expired(d, t0 + Duration::from_secs(15)));
        // A renewal (new resourceVersion) restarts the clock; seeing the same record does not.
        seen.saw(&lease("2", Some("a"), 0), t0 + Duration::from_secs(10));
        assert!(!seen.expired(d, t0 + Duration::from_secs(20)));
        seen.saw(&lease("2", Some("a"), 0), t0 + Duration::from_secs(20));
        assert!(seen.expired(d, t0 + Duration::from_secs(25)));
    }

    #[test]
    fn a_lease_renewed_long_ago_by_the_wall_clock_is_expired_at_first_sight() {
        let d = Duration::from_secs(15);
        let now = Instant::now();
        let mut seen = Observed::default();
        seen.saw(&lease("7", Some("gone"), 31), now);
        assert!(seen.expired(d, now));
        let mut fresh = Observed::default();
        fresh.saw(&lease("8", Some("alive"), 20), now);
        assert!(
            !fresh.expired(d, now),
            "within two durations: skew is allowed"
        );
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let d = Duration::from_secs(15);
        let first = holding_spec(None, "a", d);
        assert_eq!(first.lease_transitions, Some(0));
        let renewed = holding_spec(Some(&first), "a", d);
        assert_eq!(renewed.acquire_time, first.acquire_time);
        assert_eq!(renewed.lease_transitions, Some(0));
        let taken = holding_spec(Some(&renewed), "b", d);
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.holder_identity.as_deref(), Some("b"));
        assert_eq!(taken.lease_duration_seconds, Some(15));
    }
}
