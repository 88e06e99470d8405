//! The reconciler on a real control plane (etcd, kube-apiserver, controller-manager, scheduler
//! and kwok, from `scripts/kube-assets`), each scenario also run on the `sim` stand-in and the
//! two outcomes compared: where they differ, the stand-in is wrong (or the difference is listed
//! in docs/sim.md).

#[macro_use]
mod kube_support;

use std::time::Duration;

use baton::promote::state::DeployState;
use baton::reconcile::{Action, Env, reconcile};
use kube_support::*;

async fn apply_then_idle_resync(b: Backend, ns: String) -> Vec<String> {
    let (client, user) = identity(&b, &unique("baton-apply")).await;
    let ctx = baton::reconcile::Context::new(client, options(&format!("{ns}-inv")));
    let env = Env::new(&ns);
    let objects = vec![
        namespace(&ns),
        config_map(&ns, "settings", "1"),
        deployment(&ns, "web", &image(D1), 2),
    ];
    let first = reconcile(&env, &objects, "1", &ctx).await.unwrap();
    assert_eq!(
        first.health.state,
        DeployState::Healthy,
        "{}: {}",
        b.name(),
        first.health.summary()
    );
    let mut story = outcome(&first);

    let writes_before = match &b {
        Backend::Real(cp) => cp.writes_by(&user).len(),
        Backend::Sim(_) => 0,
    };
    for _ in 0..3 {
        let again = reconcile(&env, &objects, "1", &ctx).await.unwrap();
        assert!(
            again.objects.iter().all(|o| o.action == Action::Unchanged),
            "{}: {:?}",
            b.name(),
            outcome(&again)
        );
        assert_eq!(again.drift, 0);
    }
    if let Backend::Real(cp) = &b {
        let writes = cp.writes_by(&user);
        assert_eq!(
            writes[writes_before..].to_vec(),
            Vec::<String>::new(),
            "the API server's audit log shows writes during idle resyncs"
        );
        assert!(writes_before > 0, "the first apply was audited: {writes:?}");
    }
    story.push("3 idle resyncs: unchanged".into());
    story
}

#[tokio::test]
async fn an_apply_becomes_healthy_and_idle_resyncs_write_nothing_per_the_api_servers_audit_log() {
    let story = on_both!(apply_then_idle_resync);
    assert!(
        story
            .iter()
            .any(|l| l.starts_with("Deployment/") && l.contains("created")),
        "{story:?}"
    );
}

async fn broken_rollout(b: Backend, ns: String) -> Vec<String> {
    let ctx = b.context(options(&format!("{ns}-inv"))).await;
    let env = Env::new(&ns).with_health_timeout(Duration::from_secs(60));
    let good = vec![namespace(&ns), deployment(&ns, "web", &image(D1), 2)];
    let first = reconcile(&env, &good, "1", &ctx).await.unwrap();
    assert_eq!(
        first.health.state,
        DeployState::Healthy,
        "{}",
        first.health.summary()
    );
    b.mark_broken(D2);
    let bad = vec![namespace(&ns), deployment(&ns, "web", &image(D2), 2)];
    let second = reconcile(&env, &bad, "2", &ctx).await.unwrap();
    let web = second.object(&format!("Deployment/{ns}/web")).unwrap();
    vec![
        format!("{:?}", second.health.state),
        web.health.reason.clone(),
    ]
}

#[tokio::test]
async fn a_broken_image_fails_with_progress_deadline_exceeded_from_the_real_deployment_controller()
{
    let story = on_both!(broken_rollout);
    assert_eq!(story, ["Failed", "ProgressDeadlineExceeded"]);
}
