//! The persisted state (`baton::state::store`) as replicas share it, against the `sim`
//! Kubernetes stand-in: each replica writes the environments it reconciles and reads again
//! the ones others write.

use baton::state::store::StateStore;
use sim::cluster::Cluster;

const NS: &str = "default";

async fn start() -> (Cluster, kube::Client) {
    baton::tls::install_crypto_provider();
    let cluster = Cluster::start().await.unwrap();
    let client = kube::Client::try_from(kube::Config::new(cluster.url().parse().unwrap())).unwrap();
    (cluster, client)
}

fn envs(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

/// The bug shards_real met in CI: a replica started before prod's ConfigMap existed, and
/// its status page never showed what the replica reconciling prod wrote there.
#[tokio::test]
async fn a_replica_that_read_an_environment_before_it_existed_sees_what_another_wrote_since() {
    let (_cluster, client) = start().await;
    let follower = StateStore::kube(client.clone(), NS);
    let reconciler = StateStore::kube(client, NS);
    follower.load(&envs(&["prod"])).await.unwrap();
    assert!(!follower.get("prod").retry_pending("web"));

    reconciler.update("prod", |s| s.request_retry("web")).await;
    follower.refresh(&envs(&["prod"])).await.unwrap();
    assert!(
        follower.get("prod").retry_pending("web"),
        "the refresh reads what the other replica wrote"
    );
}

#[tokio::test]
async fn a_refresh_keeps_a_change_not_written_yet_and_the_next_write_merges_both() {
    let (cluster, client) = start().await;
    let leader = StateStore::kube(client.clone(), NS);
    let reconciler = StateStore::kube(client, NS);
    leader.load(&envs(&["prod"])).await.unwrap();
    reconciler.load(&envs(&["prod"])).await.unwrap();

    leader.change("prod", |s| s.request_retry("web"));
    reconciler
        .update("prod", |s| s.request_retry("worker"))
        .await;
    leader.refresh(&envs(&["prod"])).await.unwrap();
    assert!(
        leader.get("prod").retry_pending("web"),
        "a change not written yet is not lost to a refresh"
    );

    leader.update("prod", |s| s.request_retry("web")).await;
    let fresh = StateStore::kube(
        kube::Client::try_from(kube::Config::new(cluster.url().parse().unwrap())).unwrap(),
        NS,
    );
    fresh.load(&envs(&["prod"])).await.unwrap();
    let prod = fresh.get("prod");
    assert!(
        prod.retry_pending("web") && prod.retry_pending("worker"),
        "{prod:?}"
    );
}

#[tokio::test]
async fn an_environment_nobody_changed_gets_no_config_map() {
    let (cluster, client) = start().await;
    let store = StateStore::kube(client, NS);
    store.load(&envs(&["prod"])).await.unwrap();
    store.update("prod", |_| ()).await;
    store.flush().await.unwrap();
    assert!(
        cluster
            .get("v1", "ConfigMap", NS, &StateStore::name("prod"))
            .is_none(),
        "an empty state is what a missing ConfigMap already says"
    );
}
