//! Leader election (`baton::leader`) between candidates against the `sim` Kubernetes stand-in,
//! which serves `coordination.k8s.io/v1` Leases over real HTTP. Lease times are wall-clock
//! (the Lease API's `renewTime`), so these tests run in real time with a 3 s lease.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton::leader::{Leadership, LeaseConfig};
use serde_json::Value;
use sim::cluster::{Cluster, Fault};
use tokio::sync::watch;

const LEASE: &str = "baton";
const NS: &str = "default";
const DURATION: Duration = Duration::from_secs(3);
const GRACE: Duration = Duration::from_secs(1);
/// The library backs off up to 1 s (random) before taking over an expired lease.
const TAKEOVER_SLACK: Duration = Duration::from_millis(1500);

async fn start() -> (Cluster, kube::Client) {
    baton::tls::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(cluster.url().parse().unwrap())).unwrap();
    (cluster, client)
}

fn candidate(client: &kube::Client, identity: &str) -> Leadership {
    Leadership::start(
        client.clone(),
        LeaseConfig::new(NS, LEASE, identity).with_timing(DURATION, GRACE),
    )
    .unwrap()
}

/// Wait until `rx` shows `want`, up to `within`; the time it took, or `None`.
async fn becomes(rx: &mut watch::Receiver<bool>, want: bool, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    tokio::time::timeout(within, rx.wait_for(|v| *v == want))
        .await
        .ok()?
        .ok()?;
    Some(started.elapsed())
}

fn lease(cluster: &Cluster) -> Value {
    cluster
        .get("coordination.k8s.io/v1", "Lease", NS, LEASE)
        .expect("the lease exists")
}

fn holder(cluster: &Cluster) -> Option<String> {
    lease(cluster)["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

/// Wait until the holder renews the lease (its `renewTime` moves), up to a lease duration.
async fn next_renewal(cluster: &Cluster) {
    let before = lease(cluster)["spec"]["renewTime"].clone();
    cluster
        .wait_for(
            "coordination.k8s.io/v1",
            "Lease",
            NS,
            LEASE,
            DURATION + Duration::from_secs(1),
            |l| l["spec"]["renewTime"] != before && !l["spec"]["renewTime"].is_null(),
        )
        .await
        .expect("the holder renews within the lease duration");
}

/// Two candidates, and which of them led first: (leader, follower, their receivers).
async fn elect(
    client: &kube::Client,
) -> (
    (Leadership, watch::Receiver<bool>, &'static str),
    (Leadership, watch::Receiver<bool>, &'static str),
) {
    let a = candidate(client, "replica-a");
    let b = candidate(client, "replica-b");
    let (mut ra, mut rb) = (a.subscribe(), b.subscribe());
    let a_first = tokio::time::timeout(DURATION * 3, async {
        tokio::select! {
            _ = ra.wait_for(|v| *v) => true,
            _ = rb.wait_for(|v| *v) => false,
        }
    })
    .await
    .expect("one candidate leads within a few lease durations");
    if a_first {
        ((a, ra, "replica-a"), (b, rb, "replica-b"))
    } else {
        ((b, rb, "replica-b"), (a, ra, "replica-a"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_candidates_exactly_one_leads_and_keeps_leading_across_renewals() {
    let (cluster, client) = start().await;
    let ((leader, _, leader_id), (follower, follower_rx, _)) = elect(&client).await;

    // The follower must never lead while the leader renews.
    let follower_led = Arc::new(AtomicBool::new(*follower_rx.borrow()));
    let flag = follower_led.clone();
    let mut watch_follower = follower_rx.clone();
    let monitor = tokio::spawn(async move {
        while watch_follower.changed().await.is_ok() {
            if *watch_follower.borrow() {
                flag.store(true, Ordering::SeqCst);
            }
        }
    });
    for _ in 0..2 {
        next_renewal(&cluster).await;
        assert!(leader.is_leader());
        assert!(!follower.is_leader());
        assert_eq!(holder(&cluster).as_deref(), Some(leader_id));
    }
    assert!(!follower_led.load(Ordering::SeqCst), "both led at once");
    monitor.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_dies_without_releasing_the_other_takes_over_after_the_lease_expires() {
    let (cluster, client) = start().await;
    let ((leader, mut leader_rx, _), (follower, mut follower_rx, follower_id)) =
        elect(&client).await;

    leader.abort();
    let took = becomes(&mut follower_rx, true, DURATION * 3)
        .await
        .expect("the follower takes over");
    assert!(
        took <= DURATION + TAKEOVER_SLACK,
        "took {took:?}, lease duration {DURATION:?}"
    );
    assert_eq!(holder(&cluster).as_deref(), Some(follower_id));
    assert!(follower.is_leader());
    // The dead leader's state is whatever it last was; it no longer renews anything.
    let _ = leader_rx.borrow_and_update();
    follower.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_release_hands_over_at_once() {
    let (cluster, client) = start().await;
    let ((leader, mut leader_rx, _), (_follower, mut follower_rx, follower_id)) =
        elect(&client).await;
    // Right after a renewal the lease has a whole duration left: a takeover now can only come
    // from the release, not from expiry.
    next_renewal(&cluster).await;

    let started = Instant::now();
    leader.release().await;
    assert!(
        !*leader_rx.borrow_and_update(),
        "a released leader no longer leads"
    );
    let took = becomes(&mut follower_rx, true, DURATION)
        .await
        .expect("the follower takes over");
    let total = started.elapsed();
    // Without watching the lease, the follower would notice only at its next scheduled look
    // (about a second after the renewal), or at expiry.
    assert!(
        total < Duration::from_millis(600),
        "took {total:?} ({took:?} after the release returned); expiry would be {DURATION:?}"
    );
    assert_eq!(holder(&cluster).as_deref(), Some(follower_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_reach_the_api_server_steps_down() {
    let (cluster, client) = start().await;
    let leader = candidate(&client, "replica-a");
    let mut rx = leader.subscribe();
    becomes(&mut rx, true, DURATION * 2)
        .await
        .expect("a lone candidate leads");

    cluster.inject(Fault::status(500).resource("leases"));
    let stepped_down = becomes(&mut rx, false, DURATION * 2).await;
    assert!(
        stepped_down.is_some_and(|t| t <= DURATION),
        "stepped down after {stepped_down:?}; the lease lasts {DURATION:?}"
    );

    cluster.clear_faults();
    becomes(&mut rx, true, DURATION * 4)
        .await
        .expect("it leads again once the API answers (its own lease, or a free one)");
    leader.release().await;
    assert_eq!(holder(&cluster), None, "the lease was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewal_hangs_steps_down_at_the_renew_deadline_not_the_client_timeout() {
    let (cluster, client) = start().await;
    let leader = candidate(&client, "replica-a");
    let mut rx = leader.subscribe();
    becomes(&mut rx, true, DURATION * 2)
        .await
        .expect("a lone candidate leads");
    let fence = leader.fence();
    assert!(fence.holds());
    next_renewal(&cluster).await;

    // Every lease call now hangs far longer than the lease (the HTTP client would wait minutes).
    cluster.inject(Fault::delay(Duration::from_secs(60)).resource("leases"));
    let hung_at = Instant::now();
    let stepped_down = becomes(&mut rx, false, DURATION * 2)
        .await
        .expect("the leader steps down while its call still hangs");
    let deadline = DURATION - GRACE;
    assert!(
        stepped_down <= deadline + Duration::from_millis(500),
        "stepped down after {stepped_down:?}; the renew deadline is {deadline:?}"
    );
    assert!(
        !fence.holds(),
        "the fence is down by the time the state says so"
    );
    assert!(
        hung_at.elapsed() < DURATION,
        "it stopped acting before the lease could expire ({:?})",
        hung_at.elapsed()
    );
    cluster.clear_faults();
    leader.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_holder_drops_its_fence_at_once() {
    let (_cluster, client) = start().await;
    let leader = candidate(&client, "replica-a");
    let mut rx = leader.subscribe();
    becomes(&mut rx, true, DURATION * 2)
        .await
        .expect("a lone candidate leads");
    let fence = leader.fence();
    // Stop the election task dead, as a crash of the election would: nothing renews any more,
    // so nothing may act under this lease either.
    leader.abort();
    let fence_after_abort = fence.holds();
    assert!(
        !fence_after_abort,
        "abort drops the fence at once (a crashed holder acts no more)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_nudges_the_holder_through_the_lease() {
    let (_cluster, client) = start().await;
    let ((leader, _, _), (_follower, _, _)) = elect(&client).await;
    let mut nudges = leader.nudges();
    nudges.borrow_and_update();
    baton::leader::nudge(
        &client,
        &LeaseConfig::new(NS, LEASE, "replica-x").with_timing(DURATION, GRACE),
        "webhook push",
    )
    .await
    .expect("the nudge is written");
    tokio::time::timeout(DURATION, nudges.changed())
        .await
        .expect("the holder sees the nudge within a renewal")
        .expect("the election runs");
}

// ---------------------------------------------------------------------------------------
// Shards: one Lease per cluster, spread among the replicas.

use baton::leader::shards::{Held, Shards};
use std::collections::BTreeMap;

fn shard_candidate(client: &kube::Client, identity: &str, clusters: &[String]) -> Shards {
    Shards::start(
        client.clone(),
        LeaseConfig::new(NS, "baton-reconcile", identity).with_timing(DURATION, GRACE),
        clusters.iter().cloned(),
    )
    .unwrap()
}

/// Poll the replicas' held sets until `ok` holds for them (every 50 ms, up to `within`).
async fn shards_settle(
    replicas: &[(&str, watch::Receiver<Held>)],
    within: Duration,
    ok: impl Fn(&BTreeMap<String, Vec<String>>) -> bool,
) -> BTreeMap<String, Vec<String>> {
    let started = Instant::now();
    loop {
        let now: BTreeMap<String, Vec<String>> = replicas
            .iter()
            .map(|(id, rx)| (id.to_string(), rx.borrow().keys().cloned().collect()))
            .collect();
        if ok(&now) {
            return now;
        }
        assert!(
            started.elapsed() < within,
            "not settled within {within:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every cluster held by exactly one replica, and each replica holds `per` of them.
fn spread_evenly(held: &BTreeMap<String, Vec<String>>, clusters: &[String], per: usize) -> bool {
    let mut all: Vec<&String> = held.values().flatten().collect();
    all.sort();
    let each = held.values().all(|h| h.len() == per);
    all.len() == clusters.len() && all.iter().zip(clusters).all(|(a, b)| *a == b) && each
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_six_clusters_and_a_dead_ones_move_within_the_lease_duration() {
    let (cluster, client) = start().await;
    let clusters: Vec<String> = (1..=6).map(|i| format!("c{i}")).collect();
    let a = shard_candidate(&client, "replica-a", &clusters);
    let b = shard_candidate(&client, "replica-b", &clusters);
    let c = shard_candidate(&client, "replica-c", &clusters);
    let replicas = [
        ("replica-a", a.subscribe()),
        ("replica-b", b.subscribe()),
        ("replica-c", c.subscribe()),
    ];
    let held = shards_settle(&replicas, DURATION * 10, |h| spread_evenly(h, &clusters, 2)).await;
    // The leases agree with what each replica believes it holds.
    for (id, mine) in &held {
        for c in mine {
            let lease = cluster
                .get(
                    "coordination.k8s.io/v1",
                    "Lease",
                    NS,
                    &format!("baton-reconcile-{c}"),
                )
                .unwrap();
            assert_eq!(lease["spec"]["holderIdentity"], id.as_str(), "{c}");
        }
    }

    // replica-c dies without releasing: its two clusters move to the others.
    let dead: Vec<String> = held["replica-c"].clone();
    c.abort();
    let died = Instant::now();
    let survivors = [replicas[0].clone(), replicas[1].clone()];
    shards_settle(&survivors, DURATION * 6, |h| spread_evenly(h, &clusters, 3)).await;
    let moved = died.elapsed();
    // Its cluster leases expire one lease duration after their last renewal; its membership
    // too, after which the survivors' fair share grows to 3. A few looks more to take them.
    assert!(
        moved < DURATION * 2 + Duration::from_secs(2),
        "{dead:?} moved after {moved:?} with a {DURATION:?} lease"
    );

    // A graceful stop hands over at once: b's clusters go to a.
    b.release().await;
    shards_settle(&[replicas[0].clone()], DURATION * 4, |h| {
        h["replica-a"].len() == clusters.len()
    })
    .await;
    a.release().await;
}
