//! Rollout reports and rollbacks against the GitHub stand-in over real HTTP: commit statuses
//! `baton/<env>`, the PR timeline, `onFailure: rollback`, `/rollback`, and the hold the
//! rollback's `Baton-Rollback-Of` trailer puts on the rolled-back digest. Rollouts are built
//! as plain values (no cluster); every step runs on a fresh engine, as after a restart.

mod reconcile_support;

use baton::engine::{AppRollout, Outcome, RollbackRequest, Rolled, Rollout, RolloutState};
use baton::forge::Forge as _;
use baton::image::Digest;
use baton::promote::state::{CheckState, DeployState};
use baton_test_support::example::git;
use baton_test_support::promote::{self as shared, OWNER, REPO, opened, tuesday_morning};
use chrono::{Duration, TimeZone, Utc};

/// Asserts that one of `lines` (a timeline, the bot's replies) starts with `prefix`.
#[track_caller]
fn assert_starts(lines: &[String], prefix: &str) {
    assert!(
        lines.iter().any(|l| l.starts_with(prefix)),
        "no line starts with {prefix:?}: {lines:?}"
    );
}

/// The shared promotion world with `onFailure: rollback` in dev too, plus rollout reports.
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

    async fn report(&mut self, rollout: &Rollout) -> Vec<Outcome> {
        let engine = self.engine();
        engine.report_rollout(rollout, self.now).await.unwrap()
    }

    async fn status(&mut self, sha: &str, env: &str) -> Option<CheckState> {
        let engine = self.engine();
        let checks = engine.forge().checks(sha).await.unwrap();
        checks
            .into_iter()
            .find(|c| c.context == format!("baton/{env}"))
            .map(|c| c.state)
    }

    fn open_prs(&self, head: &str) -> Vec<sim::forge::PullView> {
        self.0.open_prs_from(head)
    }

    /// Promote `tag` of web to dev (open, then auto-merge); the merge commit and PR number.
    async fn promote_to_dev(&mut self, tag: &str) -> (Digest, String, u64) {
        let v = self.release("web", tag);
        self.pass().await;
        let pr = self.pr_for("dev", "web").number;
        let out = self.pass().await;
        let sha = out
            .iter()
            .find_map(|o| match o {
                Outcome::Merged { pr: n, sha, .. } if *n == pr => Some(sha.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("#{pr} not merged: {out:?}"));
        (v, sha, pr)
    }
}

fn rollout(env: &str, commit: &str, state: RolloutState, app: (&Digest, DeployState)) -> Rollout {
    Rollout {
        env: env.into(),
        commit: commit.into(),
        state,
        apps: vec![AppRollout {
            app: "web".into(),
            digest: app.0.clone(),
            state: app.1,
        }],
    }
}

fn healthy_state() -> RolloutState {
    RolloutState::Healthy {
        took: std::time::Duration::from_secs(42),
        summary: "Deployment/web: 3/3 replicas available".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_rollout_sets_the_status_and_one_timeline_line_and_a_repeat_writes_nothing() {
    let mut w = World::new().await;
    let (v, sha, pr) = w.promote_to_dev("1.5.0").await;

    let applying = rollout(
        "dev",
        &sha,
        RolloutState::Applying,
        (&v, DeployState::Progressing),
    );
    let out = w.report(&applying).await;
    assert!(
        matches!(&out[..], [Outcome::Reported { pr: Some(n), .. }] if *n == pr),
        "{out:?}"
    );
    assert_eq!(w.status(&sha, "dev").await, Some(CheckState::Pending));

    let healthy = rollout("dev", &sha, healthy_state(), (&v, DeployState::Healthy));
    w.report(&healthy).await;
    assert_eq!(w.status(&sha, "dev").await, Some(CheckState::Success));
    let timeline = w.timeline(pr);
    assert!(timeline[0].starts_with("merged as"), "{timeline:?}");
    assert_eq!(
        timeline[1],
        format!("applying {} (2026-11-24 09:00 UTC)", &sha[..7])
    );
    assert_eq!(
        timeline[2],
        format!(
            "healthy in 42s: Deployment/web: 3/3 replicas available on `{}` (2026-11-24 09:00 UTC)",
            v.short()
        )
    );
    assert_eq!(timeline.len(), 3, "{timeline:?}");
    assert!(
        w.status_comment(pr).contains("\nHealthy in dev.\n"),
        "{}",
        w.status_comment(pr)
    );

    // The same report again (a resync), after a restart: no forge write at all.
    w.forge.reset_calls();
    let out = w.report(&healthy).await;
    assert_eq!(out, vec![]);
    assert_eq!(w.writes(), 0, "{:?}", w.forge.calls());
    assert_eq!(w.timeline(pr).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_rollout_opens_one_rollback_pr_and_the_rolled_back_digest_is_held() {
    let mut w = World::new().await;
    let (good, good_sha, _) = w.promote_to_dev("1.5.0").await;
    let healthy = rollout(
        "dev",
        &good_sha,
        healthy_state(),
        (&good, DeployState::Healthy),
    );
    w.report(&healthy).await;

    let (bad, bad_sha, bad_pr) = w.promote_to_dev("1.6.0").await;
    let failed = rollout(
        "dev",
        &bad_sha,
        RolloutState::Failed {
            reasons: vec![
                "Deployment/shop-dev/web: ProgressDeadlineExceeded: ReplicaSet \"web-1\" has timed out progressing".into(),
            ],
        },
        (&bad, DeployState::Failed),
    );
    let out = w.report(&failed).await;
    let rollback_pr = out
        .iter()
        .find_map(|o| match o {
            Outcome::RollbackOpened { pr, env, .. } if env == "dev" => Some(*pr),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no rollback opened: {out:?}"));
    assert_eq!(w.status(&bad_sha, "dev").await, Some(CheckState::Failure));

    let pr = w.pr_for("dev", "web");
    assert_eq!(pr.number, rollback_pr);
    assert_eq!(
        pr.title,
        format!("rollback web in dev to 1.5.0 ({})", good.short())
    );
    for label in ["baton:rollback", "baton:promotion", "env:dev"] {
        assert!(pr.labels.contains(&label.to_string()), "{:?}", pr.labels);
    }
    let body = pr.body.clone().unwrap_or_default();
    assert!(
        body.contains(&format!("#{bad_pr}")) && body.contains("onFailure: rollback"),
        "{body}"
    );
    let timeline = w.timeline(bad_pr);
    assert_starts(
        &timeline,
        "failed: Deployment/shop-dev/web: ProgressDeadlineExceeded",
    );
    assert_starts(
        &timeline,
        &format!("rolling back: #{rollback_pr} restores `1.5.0`"),
    );

    // Reported again after a restart: nothing new. Asked again directly: the open one.
    w.forge.reset_calls();
    assert_eq!(w.report(&failed).await, vec![]);
    assert_eq!(w.writes(), 0, "{:?}", w.forge.calls());
    let again = w
        .engine()
        .roll_back_now(&RollbackRequest {
            env: "dev".into(),
            app: "web".into(),
            to: None,
            bad: Some(bad.clone()),
            by: None,
            why: "test".into(),
        })
        .await
        .unwrap();
    assert_eq!(again, Rolled::AlreadyOpen { pr: rollback_pr });

    // The planner merges the rollback (dev auto-merges) and does not touch it otherwise.
    let out = w.pass().await;
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::Merged { pr, .. } if *pr == rollback_pr)),
        "{out:?}"
    );
    let p = w.last_promotion();
    assert_eq!(p.to, good);
    assert_eq!(p.from.as_ref(), Some(&bad));
    assert_eq!(p.rollback_of.as_ref(), Some(&bad));
    assert_eq!(p.pull_request, Some(rollback_pr));
    assert_eq!(p.promoted_by.as_deref(), Some(w.forge.bot_login().as_str()));

    // 1.6.0 is still the newest release, but it is not proposed to dev again.
    let out = w.pass().await;
    assert!(
        !out.iter().any(|o| matches!(o, Outcome::Opened { .. })),
        "{out:?}"
    );
    assert!(w.open_prs("baton/dev/web").is_empty());

    // A newer release flows normally.
    let newer = w.release("web", "1.7.0");
    let out = w.pass().await;
    assert!(opened(&out, "dev") > 0, "{out:?}");
    assert!(w.pr_for("dev", "web").title.contains(newer.short()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_prod_needs_an_authorized_user_skips_soak_and_the_window_but_waits_for_approvals()
{
    let mut w = World::new().await;
    let (v, prod_pr) = w.walk_to_prod().await;
    let prod_pr = prod_pr.number;
    w.team_approves(prod_pr);
    w.comment("carol", prod_pr, "/promote prod");
    let out = w.pass().await;
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::Merged { pr, .. } if *pr == prod_pr)),
        "{out:?}"
    );
    let promoted = w.last_promotion();
    let previous = promoted.from.clone().expect("prod pinned a digest before");

    // On the merged PR: someone with read access is refused.
    w.comment("eve", prod_pr, "/rollback prod");
    let out = w.engine().answer_pr(prod_pr).await.unwrap();
    assert!(
        matches!(&out[..], [Outcome::Answered { command, .. }] if command == "/rollback prod"),
        "{out:?}"
    );
    assert!(
        w.replies(prod_pr)
            .last()
            .is_some_and(|r| r.contains("@eve") && r.contains("needs Write access")),
        "{:?}",
        w.replies(prod_pr)
    );
    assert!(w.open_prs("baton/prod/web").is_empty());

    // carol (a release manager) rolls back; answered once, even after a restart.
    w.comment("carol", prod_pr, "/rollback prod");
    w.engine().answer_pr(prod_pr).await.unwrap();
    assert_eq!(w.engine().answer_pr(prod_pr).await.unwrap(), vec![]);
    let rollback = w.pr_for("prod", "web");
    assert!(
        rollback.labels.contains(&"baton:rollback".to_string()),
        "{:?}",
        rollback.labels
    );
    let reply = w.replies(prod_pr).last().cloned().unwrap_or_default();
    assert!(
        reply.starts_with(&format!("Rolling back web in prod: #{}", rollback.number)),
        "{reply}"
    );
    assert_starts(
        &w.timeline(prod_pr),
        &format!("rolling back: #{}", rollback.number),
    );

    // Late at night (outside prod's window), no /promote, no soak: it still waits for
    // the required check, then for the two approvals.
    w.now = Utc.with_ymd_and_hms(2026, 11, 24, 22, 0, 0).unwrap();
    let out = w.pass().await;
    assert!(
        out.iter().any(
            |o| matches!(o, Outcome::Waiting { pr, blocking, .. } if *pr == rollback.number && blocking.starts_with("checks"))
        ),
        "{out:?}"
    );
    w.validate_passes(&rollback.head_sha);
    let out = w.pass().await;
    assert!(
        out.iter().any(
            |o| matches!(o, Outcome::Waiting { pr, blocking, .. } if *pr == rollback.number && blocking.starts_with("approvals"))
        ),
        "{out:?}"
    );
    w.team_approves(rollback.number);
    let out = w.pass().await;
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::Merged { pr, .. } if *pr == rollback.number)),
        "{out:?}"
    );
    let p = w.last_promotion();
    assert_eq!(p.environment, "prod");
    assert_eq!(p.to, previous);
    assert_eq!(p.rollback_of.as_ref(), Some(&v));
    assert_eq!(p.promoted_by.as_deref(), Some("carol"));
    assert_eq!(p.approved_by, vec!["alice".to_string(), "bob".to_string()]);
    assert_eq!(p.tag.as_deref(), Some("1.3.2"), "the tag Git had before");
    let k = git(
        &w.forge.repo_path(OWNER, REPO),
        &["show", "main:environments/prod/kustomization.yaml"],
    );
    assert!(
        k.contains("newTag: \"1.3.2\"") && k.contains(previous.as_str()),
        "{k}"
    );

    // staging still runs 1.5.0 healthy, but prod does not get it proposed again.
    w.now = tuesday_morning() + Duration::days(1);
    w.healthy("staging", "web", &v, Duration::hours(30));
    let out = w.pass().await;
    assert!(opened(&out, "prod") == 0, "{out:?}");
}

/// Render `env` at `commit` of the config repo and reconcile it into the cluster.
async fn reconcile_at(
    w: &World,
    env: &str,
    commit: &str,
    ctx: &baton::reconcile::Context,
) -> Result<baton::reconcile::Report, baton::reconcile::ReconcileError> {
    let checkout = w.dir.path().join(format!("checkout-{}", &commit[..7]));
    git(
        w.dir.path(),
        &[
            "clone",
            "-q",
            w.forge.repo_path(OWNER, REPO).to_str().unwrap(),
            checkout.to_str().unwrap(),
        ],
    );
    git(&checkout, &["checkout", "-q", commit]);
    let env = baton::reconcile::Env::new(env);
    let objects = baton::reconcile::render_input(
        &env,
        commit,
        &checkout,
        &checkout.join(format!("environments/{}", env.name)),
    )?;
    baton::reconcile::reconcile(&env, &objects, commit, ctx).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_image_in_the_cluster_reports_failure_and_opens_a_rollback_pr() {
    let mut w = World::new().await;
    let (cluster, ctx) = reconcile_support::start_with(
        sim::cluster::ClusterConfig {
            rollout_duration: std::time::Duration::from_millis(200),
            progress_deadline: std::time::Duration::from_millis(1_000),
            ..Default::default()
        },
        reconcile_support::options(),
    )
    .await;
    let pipeline_text = git(
        &w.forge.repo_path(OWNER, REPO),
        &["show", "main:policies/pipeline.yaml"],
    );
    let pipeline = baton::config::Pipeline::parse("policies/pipeline.yaml", &pipeline_text)
        .unwrap()
        .pipeline;

    let (good, good_sha, good_pr) = w.promote_to_dev("1.5.0").await;
    let result = reconcile_at(&w, "dev", &good_sha, &ctx).await;
    let rollout = Rollout::from_result("dev", &good_sha, &result, &pipeline);
    assert!(
        matches!(&rollout.state, RolloutState::Healthy { summary, .. } if summary.contains("Deployment/web: 1/1 replicas available")),
        "{rollout:?}"
    );
    assert!(
        rollout
            .apps
            .iter()
            .any(|a| a.app == "web" && a.digest == good && a.state == DeployState::Healthy),
        "{rollout:?}"
    );
    // What the service loop calls with a runner outcome.
    let out = w
        .engine()
        .report_reconcile("dev", &good_sha, &result, w.now)
        .await
        .unwrap();
    assert!(
        matches!(&out[..], [Outcome::Reported { pr: Some(n), .. }] if *n == good_pr),
        "{out:?}"
    );
    assert_eq!(w.status(&good_sha, "dev").await, Some(CheckState::Success));
    assert_starts(&w.timeline(good_pr), "healthy in");

    let (bad, bad_sha, bad_pr) = w.promote_to_dev("1.6.0").await;
    cluster.mark_broken(bad.as_str());
    let result = reconcile_at(&w, "dev", &bad_sha, &ctx).await;
    let rollout = Rollout::from_result("dev", &bad_sha, &result, &pipeline);
    let RolloutState::Failed { reasons } = &rollout.state else {
        panic!("{rollout:?}")
    };
    assert!(
        reasons[0].starts_with("Deployment/shop-dev/web: ProgressDeadlineExceeded"),
        "{reasons:?}"
    );
    let out = w.report(&rollout).await;
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::RollbackOpened { env, app, .. } if env == "dev" && app == "web")),
        "{out:?}"
    );
    assert_eq!(w.status(&bad_sha, "dev").await, Some(CheckState::Failure));
    let rollback = w.pr_for("dev", "web");
    assert!(rollback.title.contains(good.short()), "{}", rollback.title);
    assert_starts(
        &w.timeline(bad_pr),
        "failed: Deployment/shop-dev/web: ProgressDeadlineExceeded",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_on_an_open_promotion_pr_replaces_it_and_the_newer_release_comes_back_after() {
    let mut w = World::new().await;
    let (current, _, _) = w.promote_to_dev("1.5.0").await;
    w.release("web", "1.6.0");
    w.pass().await;
    let open = w.pr_for("dev", "web");
    assert!(open.title.contains("1.6.0"), "{}", open.title);

    w.comment("alice", open.number, "/rollback dev");
    let out = w.pass().await;
    // Closed with a word, replaced by the rollback, which dev auto-merges in the same pass.
    assert!(
        !w.forge.pull(OWNER, REPO, open.number).unwrap().open,
        "#{} still open",
        open.number
    );
    let merged = out
        .iter()
        .find_map(|o| match o {
            Outcome::Merged { pr, .. } => Some(*pr),
            _ => None,
        })
        .unwrap_or_else(|| panic!("nothing merged: {out:?}"));
    assert!(merged > open.number);
    let p = w.last_promotion();
    assert_eq!(p.rollback_of.as_ref(), Some(&current));
    assert_eq!(p.tag.as_deref(), Some("1.4.0"), "the release before 1.5.0");
    assert_eq!(p.promoted_by.as_deref(), Some("alice"));
    let replies = w.replies(open.number);
    assert_starts(&replies, "Closed: web in dev is being rolled back");
    assert_starts(&replies, &format!("Rolling back web in dev: #{merged}"));

    // 1.5.0 is held; 1.6.0 was never rolled back, so it is proposed again.
    let out = w.pass().await;
    assert!(opened(&out, "dev") > 0, "{out:?}");
    assert!(w.pr_for("dev", "web").title.contains("1.6.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_cannot_be_applied_fails_its_status_but_is_not_rolled_back() {
    let mut w = World::new().await;
    let (_, sha, pr) = w.promote_to_dev("1.5.0").await;
    let invalid = Rollout {
        env: "dev".into(),
        commit: sha.clone(),
        state: RolloutState::Invalid {
            reason: "environment dev did not render at abc: environments/dev/kustomization.yaml:3: unknown field".into(),
        },
        apps: vec![],
    };
    let out = w.report(&invalid).await;
    assert!(
        !out.iter()
            .any(|o| matches!(o, Outcome::RollbackOpened { .. })),
        "{out:?}"
    );
    assert_eq!(w.status(&sha, "dev").await, Some(CheckState::Failure));
    assert!(w.open_prs("baton/dev/web").is_empty());
    assert_starts(
        &w.timeline(pr),
        "not applied: environment dev did not render",
    );
}
