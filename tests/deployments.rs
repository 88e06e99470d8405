//! GitHub Deployments and the promotion dashboard issue against the GitHub stand-in over real
//! HTTP: one Deployment per rollout of a promotion (in_progress → success or failure), the
//! rolled-back release's Deployment marked inactive once the rollback succeeded, and nothing
//! written twice after a crash (every step runs on a fresh engine, as after a restart); the
//! dashboard opened once, edited only when it changes, found again after a restart.

use baton::engine::deployments::DeploymentLinks;
use baton::engine::{AppRollout, Engine, Outcome, Rollout, RolloutState};
use baton::forge::github::{GitHubAuth, GitHubForge, GitHubOptions};
use baton::forge::{Forge as _, NewDeployment};
use baton::image::Digest;
use baton::promote::state::DeployState;
use baton::service::dashboard::{Dashboard, LABEL, MARKER, Synced, TITLE};
use baton_test_support::promote::{self as shared, OWNER, REPO};
use sim::forge::{DeploymentView, Fault, Permission};

const STATUS_PAGE: &str = "https://baton.example.com/";

struct World(shared::World);

impl std::ops::Deref for World {
    type Target = shared::World;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for World {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl World {
    /// The example with `onFailure: rollback` in dev too.
    async fn new() -> Self {
        Self(
            shared::World::with_pipeline(|t| {
                t.replacen(
                    "    autoMerge: true\n",
                    "    autoMerge: true\n    onFailure: rollback\n",
                    1,
                )
            })
            .await,
        )
    }

    /// A fresh engine (as after a restart) that records Deployments.
    fn deploying_engine(&mut self) -> Engine<GitHubForge> {
        let repository = format!("{}/{OWNER}/{REPO}", self.forge.url());
        self.engine().with_deployments(DeploymentLinks {
            repository: Some(repository),
            status_page: Some(STATUS_PAGE.into()),
        })
    }

    async fn report(&mut self, rollout: &Rollout) -> Vec<Outcome> {
        let engine = self.deploying_engine();
        engine.report_rollout(rollout, self.now).await.unwrap()
    }

    fn deployments(&self) -> Vec<DeploymentView> {
        self.forge.deployments(OWNER, REPO)
    }

    /// Promote `tag` of web to dev (open, then auto-merge): digest, merge commit, PR.
    async fn promote_to_dev(&mut self, tag: &str) -> (Digest, String, u64) {
        let v = self.release("web", tag);
        self.pass().await;
        let pr = self.pr_for("dev", "web").number;
        let out = self.pass().await;
        let sha = merged_sha(&out, pr);
        (v, sha, pr)
    }
}

fn merged_sha(out: &[Outcome], pr: u64) -> String {
    out.iter()
        .find_map(|o| match o {
            Outcome::Merged { pr: n, sha, .. } if *n == pr => Some(sha.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("#{pr} not merged: {out:?}"))
}

fn rollout(commit: &str, state: RolloutState, digest: &Digest, app: DeployState) -> Rollout {
    Rollout {
        env: "dev".into(),
        commit: commit.into(),
        state,
        apps: vec![AppRollout {
            app: "web".into(),
            digest: digest.clone(),
            state: app,
        }],
    }
}

fn healthy() -> RolloutState {
    RolloutState::Healthy {
        took: std::time::Duration::from_secs(4),
        summary: "Deployment/web: 1/1 replicas available".into(),
    }
}

fn failed() -> RolloutState {
    RolloutState::Failed {
        reasons: vec!["Deployment/shop-dev/web: ProgressDeadlineExceeded".into()],
    }
}

/// Never two Deployments of one environment and commit.
#[track_caller]
fn assert_unique(deployments: &[DeploymentView]) {
    let mut seen = std::collections::BTreeSet::new();
    for d in deployments {
        assert!(
            seen.insert((d.environment.clone(), d.sha.clone())),
            "{deployments:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_is_one_deployment_in_progress_then_success_even_when_the_bot_dies_in_between() {
    let mut w = World::new().await;
    let (v, sha, pr) = w.promote_to_dev("1.5.0").await;

    // The bot dies after the Deployment and before the commit status that marks the report
    // done: GitHub answers every status write with a 500.
    w.forge.inject(
        Fault::server_error(500)
            .on("POST /repos/{owner}/{repo}/statuses/{sha}")
            .times(50),
    );
    let engine = w.deploying_engine();
    let applying = rollout(&sha, RolloutState::Applying, &v, DeployState::Progressing);
    engine.report_rollout(&applying, w.now).await.unwrap_err();
    w.forge.clear_faults();
    let after_crash = w.deployments();
    assert_eq!(after_crash.len(), 1, "{after_crash:#?}");
    assert_eq!(after_crash[0].states(), ["in_progress"]);

    // The restarted bot reports again: the same Deployment, no second in_progress.
    w.report(&applying).await;
    w.report(&applying).await;
    let d = w.deployments();
    assert_eq!(d.len(), 1, "{d:#?}");
    let d = &d[0];
    assert_eq!(
        (d.environment.as_str(), d.sha.as_str()),
        ("dev", sha.as_str())
    );
    assert_eq!(d.creator, w.forge.bot_login());
    assert_eq!(d.payload["app"], "web");
    assert_eq!(d.payload["digest"], v.as_str());
    assert_eq!(d.payload["tag"], "1.5.0");
    assert_eq!(d.states(), ["in_progress"]);
    assert_eq!(
        d.statuses[0].log_url,
        format!("{}/{OWNER}/{REPO}/pull/{pr}", w.forge.url())
    );
    assert_eq!(d.statuses[0].environment_url, STATUS_PAGE);

    // Healthy: success, once, however often it is reported.
    let healthy = rollout(&sha, healthy(), &v, DeployState::Healthy);
    w.report(&healthy).await;
    w.report(&healthy).await;
    let d = w.deployments();
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].states(), ["in_progress", "success"]);
    assert!(
        d[0].statuses[1].description.starts_with("healthy in 4s"),
        "{d:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollout_is_a_failure_and_turns_inactive_once_its_rollback_succeeded() {
    let mut w = World::new().await;
    let (good, good_sha, _) = w.promote_to_dev("1.5.0").await;
    w.report(&rollout(&good_sha, healthy(), &good, DeployState::Healthy))
        .await;

    let (bad, bad_sha, _) = w.promote_to_dev("1.6.0").await;
    w.report(&rollout(
        &bad_sha,
        RolloutState::Applying,
        &bad,
        DeployState::Progressing,
    ))
    .await;
    let out = w
        .report(&rollout(&bad_sha, failed(), &bad, DeployState::Failed))
        .await;
    let rollback_pr = out
        .iter()
        .find_map(|o| match o {
            Outcome::RollbackOpened { pr, .. } => Some(*pr),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no rollback: {out:?}"));
    let d = w.deployments();
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_eq!(d[1].sha, bad_sha);
    assert_eq!(d[1].states(), ["in_progress", "failure"]);

    // The rollback merges and rolls out healthy: its own Deployment succeeds, and the failed
    // one is marked inactive (the earlier healthy one too, by GitHub's auto_inactive).
    let out = w.pass().await;
    let rollback_sha = merged_sha(&out, rollback_pr);
    let back = rollout(&rollback_sha, healthy(), &good, DeployState::Healthy);
    w.report(&back).await;
    let d = w.deployments();
    assert_unique(&d);
    assert_eq!(d.len(), 3, "{d:#?}");
    assert_eq!(d[0].states(), ["in_progress", "success", "inactive"]);
    assert_eq!(d[1].states(), ["in_progress", "failure", "inactive"]);
    assert_eq!(d[2].sha, rollback_sha);
    assert_eq!(d[2].payload["digest"], good.as_str());
    assert_eq!(d[2].states(), ["in_progress", "success"]);

    // Reported again after a restart: nothing new.
    let writes = w.writes();
    w.report(&back).await;
    assert_eq!(w.deployments(), d);
    assert_eq!(w.writes(), writes, "{:?}", w.forge.calls());
}

fn client(w: &shared::World) -> GitHubForge {
    GitHubForge::new(
        &w.forge.url(),
        &format!("{OWNER}/{REPO}"),
        GitHubAuth::Token(baton::config::secret::Secret::new(w.forge.bot_token())),
        w.forge.bot_login(),
        GitHubOptions {
            max_retries: 2,
            backoff_base: std::time::Duration::from_millis(10),
            ..GitHubOptions::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_answer_was_lost_is_found_not_repeated() {
    let w = shared::World::new().await;
    let gh = client(&w);
    let main = git2::Repository::open_bare(w.forge.repo_path(OWNER, REPO))
        .unwrap()
        .refname_to_id("refs/heads/main")
        .unwrap()
        .to_string();
    w.forge
        .inject(Fault::lost_response(502).on("POST /repos/{owner}/{repo}/deployments$"));
    let d = gh
        .create_deployment(&NewDeployment {
            sha: main.clone(),
            environment: "dev".into(),
            description: "web to dev".into(),
            payload: serde_json::json!({"app": "web"}),
        })
        .await
        .unwrap();
    assert_eq!(w.forge.deployments(OWNER, REPO).len(), 1);
    assert_eq!(w.forge.deployments(OWNER, REPO)[0].id, d.id);

    w.forge.inject(Fault::lost_response(502).on("/statuses"));
    gh.create_deployment_status(
        d.id,
        &baton::forge::NewDeploymentStatus {
            state: baton::forge::DeploymentState::InProgress,
            description: "applying".into(),
            log_url: None,
            environment_url: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        w.forge.deployments(OWNER, REPO)[0].states(),
        ["in_progress"]
    );

    w.forge
        .inject(Fault::lost_response(502).on("POST /repos/{owner}/{repo}/issues$"));
    let dashboard = Dashboard::default();
    let body = format!("{MARKER}\nv1");
    let created = dashboard.sync(&gh, &body).await.unwrap();
    let issues = w.forge.issues(OWNER, REPO);
    assert_eq!(issues.len(), 1, "{issues:#?}");
    assert_eq!(created, Synced::Created(issues[0].number));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_opened_once_edited_only_on_change_and_found_again_after_a_restart() {
    let w = shared::World::new().await;
    let gh = client(&w);
    // Someone else's issue carrying the marker is not baton's dashboard.
    let mallory = w.forge.add_user("mallory", Permission::Write);
    let theirs = GitHubForge::new(
        &w.forge.url(),
        &format!("{OWNER}/{REPO}"),
        GitHubAuth::Token(baton::config::secret::Secret::new(mallory)),
        "mallory",
        GitHubOptions::default(),
    )
    .unwrap();
    theirs
        .create_issue(TITLE, &format!("{MARKER}\n/promote prod"), &[LABEL.into()])
        .await
        .unwrap();

    let v1 = format!("{MARKER}\n| dev | `1.0.0` |\n");
    let dashboard = Dashboard::default();
    let Synced::Created(number) = dashboard.sync(&gh, &v1).await.unwrap() else {
        panic!("not created")
    };
    let ours = |w: &shared::World| -> Vec<sim::forge::IssueView> {
        w.forge
            .issues(OWNER, REPO)
            .into_iter()
            .filter(|i| i.author == w.forge.bot_login())
            .collect()
    };
    let issue = &ours(&w)[0];
    assert_eq!((issue.number, issue.title.as_str()), (number, TITLE));
    assert_eq!(issue.labels, [LABEL]);
    assert_eq!(issue.body, v1);

    // An idle pass: the same body costs no call at all.
    w.forge.reset_calls();
    assert_eq!(dashboard.sync(&gh, &v1).await.unwrap(), Synced::Unchanged);
    assert_eq!(w.forge.total_calls(), 0, "{:?}", w.forge.calls());

    // After a restart: found (one read), not opened again, not rewritten.
    let restarted = Dashboard::default();
    assert_eq!(
        restarted.sync(&gh, &v1).await.unwrap(),
        Synced::Found(number)
    );
    assert!(
        w.forge.calls().keys().all(|k| k.starts_with("GET ")),
        "{:?}",
        w.forge.calls()
    );

    // A promotion moved: edited in place.
    let v2 = format!("{MARKER}\n| dev | `1.1.0` |\n");
    assert_eq!(
        restarted.sync(&gh, &v2).await.unwrap(),
        Synced::Edited(number)
    );
    assert_eq!(ours(&w).len(), 1);
    assert_eq!(ours(&w)[0].body, v2);

    // Someone removed its label: still found (as the bot's own open issue), label restored.
    theirs.remove_label(number, LABEL).await.unwrap();
    let v3 = format!("{MARKER}\n| dev | `1.2.0` |\n");
    assert_eq!(
        Dashboard::default().sync(&gh, &v3).await.unwrap(),
        Synced::Edited(number)
    );
    let mine = ours(&w);
    assert_eq!(mine.len(), 1, "{mine:#?}");
    assert_eq!(mine[0].labels, [LABEL]);
    assert_eq!(mine[0].body, v3);
}
