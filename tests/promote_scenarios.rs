//! The promotion engine end to end against the GitHub stand-in over real HTTP: octocrab for
//! the REST API, git2 over smart HTTP for the config repo. Every pass builds a fresh engine
//! (new clone, new client), so each test also proves that a restart between any two steps
//! neither duplicates nor loses work.

use baton::engine::{AppRollout, Outcome, Rollout, RolloutState};
use baton::image::Digest;
use baton::promote::gates::{Gate, Verdict};
use baton::promote::state::DeployState;
use baton_test_support::example::git;
use baton_test_support::promote::{
    OWNER, REPO, World, grouped_example, merged, opened, tuesday_morning, waiting_on,
};
use chrono::{Duration, TimeZone, Utc};
use sim::forge::{PullView, ReviewState};

fn count(outcomes: &[Outcome], f: impl Fn(&Outcome) -> bool) -> usize {
    outcomes.iter().filter(|o| f(o)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_release_is_auto_merged_to_dev_with_trailers_and_an_idle_pass_writes_nothing() {
    let mut w = World::new().await;
    let digest = w.release("web", "1.5.0");

    let out = w.pass().await;
    assert_eq!(
        count(
            &out,
            |o| matches!(o, Outcome::Opened { env, app, .. } if env == "dev" && app == "web")
        ),
        1,
        "{out:?}"
    );
    let pr = w.pr_for("dev", "web");
    assert_eq!(
        pr.title,
        format!("promote web to dev: 1.5.0 ({})", digest.short())
    );
    assert!(
        pr.labels.contains(&"baton:promotion".to_string())
            && pr.labels.contains(&"env:dev".to_string()),
        "{:?}",
        pr.labels
    );

    let out = w.pass().await;
    assert!(
        matches!(&out[..], [Outcome::Merged { env, .. }] if env == "dev"),
        "{out:?}"
    );
    assert!(w.open_prs().is_empty());
    assert!(
        w.main_file("environments/dev/kustomization.yaml")
            .contains(digest.as_str())
    );
    let p = w.last_promotion();
    assert_eq!(
        (
            p.app.as_str(),
            p.environment.as_str(),
            p.tag.as_deref(),
            &p.to
        ),
        ("web", "dev", Some("1.5.0"), &digest)
    );
    assert_eq!(p.pull_request, Some(pr.number));
    assert_eq!(p.promoted_by.as_deref(), Some("baton[bot]"));

    w.forge.reset_calls();
    let out = w.pass().await;
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(
        w.writes(),
        0,
        "an idle pass must not write: {:?}",
        w.forge.calls()
    );
    assert!(
        !w.forge
            .calls()
            .contains_key("GET /orgs/{org}/teams/{team_slug}/members"),
        "with no open PR, team members are not needed: {:?}",
        w.forge.calls()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staging_follows_after_soak_and_a_newer_digest_updates_the_same_pr() {
    let mut w = World::new().await;
    let v15 = w.release("web", "1.5.0");
    w.pass().await; // open dev
    w.pass().await; // merge dev

    w.healthy("dev", "web", &v15, Duration::minutes(5));
    let out = w.pass().await;
    assert!(opened(&out, "staging") == 0, "soak is 10m: {out:?}");

    w.healthy("dev", "web", &v15, Duration::minutes(11));
    let out = w.pass().await;
    assert_eq!(opened(&out, "staging"), 1, "{out:?}");
    let first = w.pr_for("staging", "web");
    assert!(
        first.title.contains("1.5.0"),
        "the tag travels with the digest: {}",
        first.title
    );

    // Staging needs the validate check; without it the PR waits.
    let out = w.pass().await;
    assert!(out.iter().any(|o| matches!(o, Outcome::Waiting { blocking, .. } if blocking.contains("baton/validate"))), "{out:?}");

    // A newer release reaches dev and soaks: the open staging PR is updated, not duplicated.
    let v16 = w.release("web", "1.6.0");
    w.pass().await; // dev PR
    w.pass().await; // dev merge
    w.healthy("dev", "web", &v16, Duration::minutes(30));
    let out = w.pass().await;
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::Updated { pr, .. } if *pr == first.number)),
        "{out:?}"
    );
    let updated = w.pr_for("staging", "web");
    assert_eq!(updated.number, first.number);
    assert!(updated.title.contains("1.6.0"), "{}", updated.title);
    assert!(
        w.bot_comments(first.number)
            .iter()
            .any(|c| c.contains("superseded 1.5.0")),
        "{:?}",
        w.bot_comments(first.number)
    );

    w.validate_passes(&updated.head_sha);
    let out = w.pass().await;
    assert!(merged(&out, "staging"), "{out:?}");
    assert!(
        w.main_file("environments/staging/kustomization.yaml")
            .contains(v16.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prod_merges_only_with_two_team_approvals_and_an_authorized_promote_command() {
    let mut w = World::new().await;
    let (v, prod) = w.walk_to_prod().await;
    assert!(
        prod.title.contains("promote web to prod: 1.5.0"),
        "{}",
        prod.title
    );

    let out = w.pass().await;
    assert!(waiting_on(&out, "approvals"), "{out:?}");

    // Someone outside the team approves; someone with read access tries to promote.
    w.forge
        .review_as(
            "dev",
            OWNER,
            REPO,
            prod.number,
            ReviewState::Approved,
            "lgtm",
        )
        .unwrap();
    w.comment("eve", prod.number, "/promote prod");
    let out = w.pass().await;
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::Answered { command, .. } if command == "/promote prod")),
        "{out:?}"
    );
    assert!(
        w.replies(prod.number)
            .iter()
            .any(|r| r.contains("@eve") && r.contains("needs Write access")),
        "{:?}",
        w.replies(prod.number)
    );
    assert!(!out.iter().any(|o| matches!(o, Outcome::Merged { .. })));

    w.team_approves(prod.number);
    let out = w.pass().await;
    assert!(waiting_on(&out, "command"), "{out:?}");

    w.comment("carol", prod.number, "Looks good.\n/promote prod");
    let replies_before = w.replies(prod.number).len();
    let out = w.pass().await;
    assert!(merged(&out, "prod"), "{out:?}");
    assert_eq!(
        w.replies(prod.number).len(),
        replies_before + 1,
        "one answer to carol"
    );
    let p = w.last_promotion();
    assert_eq!(p.environment, "prod");
    assert_eq!(p.approved_by, vec!["alice".to_string(), "bob".to_string()]);
    assert_eq!(p.promoted_by.as_deref(), Some("carol"));
    // prod pulls its own copy (copyTo), pinned at the same digest.
    let k = w.main_file("environments/prod/kustomization.yaml");
    assert!(
        k.contains(&format!("newName: {}/prod-shop/web", w.registry.host()))
            && k.contains(v.as_str()),
        "{k}"
    );

    // Nothing is answered twice after yet another restart.
    let out = w.pass().await;
    assert!(
        !out.iter().any(|o| matches!(o, Outcome::Answered { .. })),
        "{out:?}"
    );
    assert_eq!(w.replies(prod.number).len(), replies_before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prod_pr_asks_the_release_managers_for_review_once() {
    const ROUTE: &str = "POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers";
    let mut w = World::new().await;
    let (_, prod) = w.walk_to_prod().await;
    assert_eq!(prod.requested_teams, ["release-managers"]);
    assert!(prod.requested_reviewers.is_empty());
    // dev and staging name no approvers: nobody was asked there.
    let earlier: Vec<_> = w
        .forge
        .pulls(OWNER, REPO)
        .into_iter()
        .filter(|p| p.number != prod.number)
        .collect();
    assert_eq!(earlier.len(), 2, "{earlier:?}");
    assert!(
        earlier
            .iter()
            .all(|p| p.requested_reviewers.is_empty() && p.requested_teams.is_empty())
    );
    assert_eq!(w.forge.calls()[ROUTE], 1);

    // Later passes (each a restart) do not ask again.
    w.pass().await;
    w.pass().await;
    assert_eq!(w.forge.calls()[ROUTE], 1);
    assert_eq!(
        w.pr_for("prod", "web").requested_teams,
        ["release-managers"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_request_github_refuses_leaves_the_prod_pr_open_and_is_not_repeated() {
    const ROUTE: &str = "POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers";
    let mut w = World::new().await;
    let pipeline = w.main_file("policies/pipeline.yaml").replace(
        r#"from: ["@shop/release-managers"]"#,
        r#"from: ["@shop/release-managers", "mallory"]"#,
    );
    assert!(pipeline.contains("mallory"), "{pipeline}");
    w.forge
        .commit_files(
            OWNER,
            REPO,
            "main",
            &[("policies/pipeline.yaml", &pipeline)],
            "prod approvers name someone without access",
        )
        .unwrap();
    let (_, prod) = w.walk_to_prod().await;
    assert!(prod.open);
    // GitHub refuses the whole request when one person named is not a collaborator.
    assert!(prod.requested_teams.is_empty() && prod.requested_reviewers.is_empty());
    assert_eq!(w.forge.calls()[ROUTE], 1);
    let out = w.pass().await;
    assert!(
        !out.iter().any(|o| matches!(o, Outcome::Failed { .. })),
        "{out:?}"
    );
    assert_eq!(w.forge.calls()[ROUTE], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_blocks_a_merge_until_unhold() {
    let mut w = World::new().await;
    w.release("web", "1.5.0");
    w.pass().await;
    let pr = w.pr_for("dev", "web");
    w.comment("dev", pr.number, "/hold checking the migration");
    let out = w.pass().await;
    assert!(out.iter().any(|o| matches!(o, Outcome::Waiting { blocking, .. } if blocking.contains("checking the migration"))), "{out:?}");
    assert!(
        w.pr_for("dev", "web")
            .labels
            .contains(&"baton:hold".to_string())
    );

    let out = w.pass().await;
    assert!(
        out.iter()
            .all(|o| !matches!(o, Outcome::Merged { .. } | Outcome::Answered { .. })),
        "{out:?}"
    );

    w.comment("eve", pr.number, "/unhold");
    let out = w.pass().await;
    assert!(
        !out.iter().any(|o| matches!(o, Outcome::Merged { .. })),
        "eve may not unhold: {out:?}"
    );

    w.comment("alice", pr.number, "/unhold");
    let out = w.pass().await;
    assert!(
        out.iter().any(|o| matches!(o, Outcome::Merged { .. })),
        "{out:?}"
    );
    assert_eq!(w.replies(pr.number).len(), 3, "{:?}", w.replies(pr.number));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_freeze_and_a_rego_rule_hold_prod_back() {
    let mut w = World::new().await;
    let (_, prod) = w.walk_to_prod().await;
    w.team_approves(prod.number);
    w.comment("carol", prod.number, "/promote prod");

    // Saturday: the example policy denies weekend promotions (and the window is closed).
    w.now = Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap();
    let out = w.pass().await;
    assert!(
        !out.iter().any(|o| matches!(o, Outcome::Merged { .. })),
        "{out:?}"
    );
    let status = w
        .bot_comments(prod.number)
        .into_iter()
        .find(|b| b.starts_with("<!-- baton:status -->"))
        .unwrap();
    assert!(
        status.contains("no prod promotions at the weekend"),
        "{status}"
    );

    // Inside the holiday freeze, on a Tuesday inside the window.
    w.now = Utc.with_ymd_and_hms(2026, 12, 22, 9, 0, 0).unwrap();
    let out = w.pass().await;
    assert!(out.iter().any(|o| matches!(o, Outcome::Waiting { blocking, .. } if blocking.contains("frozen (holidays)"))), "{out:?}");

    w.now = tuesday_morning();
    let out = w.pass().await;
    assert!(
        out.iter().any(|o| matches!(o, Outcome::Merged { .. })),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_rate_limits_are_recovered_without_duplicates() {
    let mut w = World::new().await;
    w.release("web", "1.5.0");
    w.forge
        .inject(sim::forge::Fault::server_error(502).times(1));
    w.forge
        .inject(sim::forge::Fault::secondary_rate_limit(1).times(1));
    let mut opened = 0;
    for _ in 0..3 {
        let engine = w.engine();
        if let Ok(out) = engine.run_once(&w.releases, &w.deployments, w.now).await {
            opened += count(&out, |o| matches!(o, Outcome::Opened { .. }));
        }
    }
    assert_eq!(opened, 1);
    assert_eq!(
        w.open_prs().len() + usize::from(w.forge.pulls(OWNER, REPO).iter().any(|p| p.merged)),
        1,
        "{:?}",
        w.forge.pulls(OWNER, REPO)
    );
}

/// The promotions `baton history` lists for `env` (newest first), read from the config
/// branch as the command reads it.
fn history(w: &World, env: &str) -> Vec<baton::gitrepo::history::Entry> {
    let repo = git2::Repository::open(w.forge.repo_path(OWNER, REPO)).unwrap();
    let tip = repo.refname_to_id("refs/heads/main").unwrap();
    let filter = baton::gitrepo::history::Filter {
        environment: Some(env.into()),
        ..Default::default()
    };
    baton::gitrepo::history::read(&repo, tip, &filter).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_travels_in_one_pr_per_environment_and_history_keeps_one_entry_per_app() {
    let mut w = World::with_files(&grouped_example()).await;
    let web = w.release("web", "1.5.0");
    let worker = w.release("worker", "release-2.2.0");
    let api = w.release("api", "1.1.0");

    // dev: one PR for the group with both pins, and api's own.
    let out = w.pass().await;
    assert_eq!(opened(&out, "dev"), 2, "{out:?}");
    assert_eq!(w.open_prs().len(), 2, "{:?}", w.open_prs());
    let group = w.pr_for("dev", "shop");
    assert_eq!(
        group.title,
        "promote group shop to dev: web 1.5.0, worker release-2.2.0"
    );
    let body = group.body.clone().unwrap_or_default();
    assert!(
        body.contains(&format!("+    digest: {web}"))
            && body.contains(&format!("+    digest: {worker}")),
        "one change pins both: {body}"
    );
    assert!(w.open_prs_from("baton/dev/web").is_empty());
    assert!(w.open_prs_from("baton/dev/worker").is_empty());
    let api_pr = w.pr_for("dev", "api");
    assert!(
        api_pr.title.starts_with("promote api to dev: 1.1.0"),
        "{}",
        api_pr.title
    );

    // Both merge (dev merges on its own); one merge commit records two promotions.
    let out = w.pass().await;
    assert_eq!(
        count(
            &out,
            |o| matches!(o, Outcome::Merged { env, .. } if env == "dev")
        ),
        2,
        "{out:?}"
    );
    let dev = w.main_file("environments/dev/kustomization.yaml");
    for d in [&web, &worker, &api] {
        assert!(dev.contains(d.as_str()), "{d} pinned in dev: {dev}");
    }
    let entries = history(&w, "dev");
    let grouped: Vec<_> = entries
        .iter()
        .filter(|e| e.promotion.pull_request == Some(group.number))
        .collect();
    assert_eq!(grouped.len(), 2, "{entries:#?}");
    assert_eq!(grouped[0].commit, grouped[1].commit, "one merge commit");
    assert_eq!(
        grouped
            .iter()
            .map(|e| (e.promotion.app.as_str(), &e.promotion.to))
            .collect::<Vec<_>>(),
        [("web", &web), ("worker", &worker)]
    );
    assert!(
        entries
            .iter()
            .any(|e| e.promotion.app == "api" && e.promotion.pull_request == Some(api_pr.number))
    );

    // staging: the group waits until both members have soaked in dev; api does not wait.
    w.healthy("dev", "web", &web, Duration::minutes(15));
    w.healthy("dev", "worker", &worker, Duration::minutes(5));
    w.healthy("dev", "api", &api, Duration::minutes(15));
    let out = w.pass().await;
    assert_eq!(opened(&out, "staging"), 1, "only api: {out:?}");
    w.pr_for("staging", "api");
    assert!(w.open_prs_from("baton/staging/shop").is_empty());

    w.healthy("dev", "worker", &worker, Duration::minutes(11));
    let out = w.pass().await;
    assert_eq!(opened(&out, "staging"), 1, "{out:?}");
    let staging = w.pr_for("staging", "shop");
    assert!(
        staging.title.contains("web 1.5.0") && staging.title.contains("worker release-2.2.0"),
        "{}",
        staging.title
    );

    // The soak gate of the open PR covers every member: worker's clock starts over.
    w.healthy("dev", "worker", &worker, Duration::minutes(2));
    w.validate_passes(&staging.head_sha);
    let out = w.pass().await;
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::Waiting { app, blocking, .. }
            if app == "shop" && blocking.starts_with("soak: worker: soaking in dev until"))),
        "{out:?}"
    );
    assert_eq!(
        count(
            &out,
            |o| matches!(o, Outcome::Merged { app, .. } if app == "shop")
        ),
        0,
        "{out:?}"
    );

    w.healthy("dev", "worker", &worker, Duration::minutes(12));
    let out = w.pass().await;
    assert!(
        out.iter().any(
            |o| matches!(o, Outcome::Merged { env, app, .. } if env == "staging" && app == "shop")
        ),
        "{out:?}"
    );
    let k = w.main_file("environments/staging/kustomization.yaml");
    assert!(
        k.contains(web.as_str()) && k.contains(worker.as_str()),
        "{k}"
    );
    let grouped = history(&w, "staging")
        .into_iter()
        .filter(|e| e.promotion.pull_request == Some(staging.number))
        .count();
    assert_eq!(grouped, 2, "staging's squash commit records both apps");

    // Nothing left to do for the group, and an idle pass writes nothing.
    w.healthy("staging", "api", &api, Duration::minutes(1));
    let out = w.pass().await;
    assert!(
        !out.iter()
            .any(|o| matches!(o, Outcome::Opened { .. } | Outcome::Updated { .. })),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_member_rolls_back_the_whole_group_and_both_digests_are_held() {
    let files: Vec<(String, String)> = grouped_example()
        .into_iter()
        .map(|(p, t)| {
            let t = if p == "policies/pipeline.yaml" {
                t.replacen(
                    "    cluster: dev\n    autoMerge: true\n",
                    "    cluster: dev\n    autoMerge: true\n    onFailure: rollback\n",
                    1,
                )
            } else {
                t
            };
            (p, t)
        })
        .collect();
    let mut w = World::with_files(&files).await;
    let before = w.main_file("environments/dev/kustomization.yaml");
    let web = w.release("web", "1.5.0");
    let worker = w.release("worker", "release-2.2.0");
    w.pass().await; // open the group's dev PR
    let out = w.pass().await; // merge it
    assert!(merged(&out, "dev"), "{out:?}");
    let group = w.promotions()[0].pull_request.unwrap();
    let tip = git(&w.forge.repo_path(OWNER, REPO), &["rev-parse", "main"])
        .trim()
        .to_string();

    // web is healthy, worker fails: the group goes back as a whole.
    let rollout = Rollout {
        env: "dev".into(),
        commit: tip,
        state: RolloutState::Failed {
            reasons: vec!["Deployment/worker: ProgressDeadlineExceeded".into()],
        },
        apps: vec![
            AppRollout {
                app: "web".into(),
                digest: web.clone(),
                state: DeployState::Healthy,
            },
            AppRollout {
                app: "worker".into(),
                digest: worker.clone(),
                state: DeployState::Failed,
            },
        ],
    };
    let engine = w.engine();
    let out = engine.report_rollout(&rollout, w.now).await.unwrap();
    assert_eq!(
        count(&out, |o| matches!(o, Outcome::RollbackOpened { .. })),
        1,
        "{out:?}"
    );
    let rollback = w.pr_for("dev", "shop");
    assert!(
        rollback.labels.contains(&"baton:rollback".to_string()),
        "{:?}",
        rollback.labels
    );
    assert!(
        rollback
            .title
            .starts_with("rollback group shop in dev to web 1.4.0")
            && rollback.title.contains("worker release-2.1.0"),
        "{}",
        rollback.title
    );
    assert!(
        w.timeline(group)
            .iter()
            .any(|l| l.starts_with(&format!("rolling back: #{}", rollback.number))),
        "{:?}",
        w.timeline(group)
    );
    // Reporting again finds the open rollback: nothing is repeated.
    let again = w.engine().report_rollout(&rollout, w.now).await.unwrap();
    assert!(
        !again
            .iter()
            .any(|o| matches!(o, Outcome::RollbackOpened { .. })),
        "{again:?}"
    );
    assert_eq!(w.open_prs().len(), 1, "{:?}", w.open_prs());

    // The rollback merges (no soak) and restores both members' earlier pins.
    let out = w.pass().await;
    assert!(merged(&out, "dev"), "{out:?}");
    assert_eq!(
        w.main_file("environments/dev/kustomization.yaml"),
        before,
        "both members are back where they were"
    );
    let entries = history(&w, "dev");
    let rolled: Vec<_> = entries
        .iter()
        .filter(|e| e.promotion.pull_request == Some(rollback.number))
        .map(|e| (e.promotion.app.as_str(), e.promotion.rollback_of.clone()))
        .collect();
    assert_eq!(
        rolled,
        [("web", Some(web.clone())), ("worker", Some(worker.clone()))]
    );

    // Both digests are held: the same releases are not proposed again, a newer one flows.
    let out = w.pass().await;
    assert!(out.is_empty(), "{out:?}");
    let newer = w.release("worker", "release-2.3.0");
    let out = w.pass().await;
    assert_eq!(opened(&out, "dev"), 1, "{out:?}");
    let next = w.pr_for("dev", "shop");
    assert_eq!(
        next.title, "promote group shop to dev: worker release-2.3.0",
        "web 1.5.0 stays held; {newer} flows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_unhold_and_rollback_on_a_group_pr_act_on_the_whole_group() {
    let mut w = World::with_files(&grouped_example()).await;
    let before = w.main_file("environments/dev/kustomization.yaml");
    let web = w.release("web", "1.5.0");
    let worker = w.release("worker", "release-2.2.0");
    w.pass().await;
    let pr = w.pr_for("dev", "shop");

    w.comment("dev", pr.number, "/hold waiting for the schema change");
    let out = w.pass().await;
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::Waiting { app, blocking, .. }
            if app == "shop" && blocking.contains("waiting for the schema change"))),
        "{out:?}"
    );
    assert!(!merged(&out, "dev"), "{out:?}");
    assert!(
        w.status_comment(pr.number)
            .contains("### baton · shop → dev"),
        "{}",
        w.status_comment(pr.number)
    );

    w.comment("alice", pr.number, "/unhold");
    let out = w.pass().await;
    assert!(
        out.iter()
            .any(|o| matches!(o, Outcome::Merged { app, .. } if app == "shop")),
        "{out:?}"
    );
    let dev = w.main_file("environments/dev/kustomization.yaml");
    assert!(dev.contains(web.as_str()) && dev.contains(worker.as_str()));

    // `/rollback dev` on the merged group PR restores both members in one rollback PR.
    w.comment("alice", pr.number, "/rollback dev");
    let out = w.engine().answer_pr(pr.number).await.unwrap();
    assert_eq!(
        count(&out, |o| matches!(o, Outcome::Answered { .. })),
        1,
        "{out:?}"
    );
    let rollback = w.pr_for("dev", "shop");
    assert!(
        rollback
            .title
            .starts_with("rollback group shop in dev to web 1.4.0")
            && rollback.title.contains("worker release-2.1.0"),
        "{}",
        rollback.title
    );
    assert!(
        w.replies(pr.number).iter().any(|r| r.starts_with(&format!(
            "Rolling back group shop in dev: #{}",
            rollback.number
        ))),
        "{:?}",
        w.replies(pr.number)
    );
    assert_eq!(w.engine().answer_pr(pr.number).await.unwrap(), vec![]);
    let out = w.pass().await;
    assert!(merged(&out, "dev"), "{out:?}");
    assert_eq!(w.main_file("environments/dev/kustomization.yaml"), before);
    let p = w.last_promotion();
    assert_eq!(p.promoted_by.as_deref(), Some("alice"));
}

/// Walk web 1.5.0 and worker release-2.2.0 as group shop through dev and staging, so that prod
/// has the group's PR (waiting for its approvals and `/promote`).
async fn walk_group_to_prod(w: &mut World) -> (Digest, Digest, PullView) {
    let web = w.release("web", "1.5.0");
    let worker = w.release("worker", "release-2.2.0");
    w.pass().await;
    let out = w.pass().await;
    assert!(merged(&out, "dev"), "{out:?}");
    for (app, d) in [("web", &web), ("worker", &worker)] {
        w.healthy("dev", app, d, Duration::minutes(15));
    }
    w.pass().await;
    let staging = w.pr_for("staging", "shop");
    w.validate_passes(&staging.head_sha);
    let out = w.pass().await;
    assert!(merged(&out, "staging"), "{out:?}");
    for (app, d) in [("web", &web), ("worker", &worker)] {
        w.healthy("staging", app, d, Duration::hours(2));
    }
    let out = w.pass().await;
    assert_eq!(opened(&out, "prod"), 1, "{out:?}");
    let prod = w.pr_for("prod", "shop");
    (web, worker, prod)
}

/// The copy gate of a group's PR waiting for prod (`copyTo`) checks every member's copy: it
/// names the member whose image can no longer be copied, and the PR body lists each member's
/// copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_copy_gate_of_a_waiting_group_pr_checks_every_members_copy() {
    let mut w = World::with_files(&grouped_example()).await;
    let (web, worker, prod) = walk_group_to_prod(&mut w).await;
    let copy_gate = |out: &[Outcome]| {
        out.iter()
            .find_map(|o| match o {
                Outcome::Waiting { pr, gates, .. } if *pr == prod.number => {
                    gates.iter().find(|g| g.gate == Gate::Copy).cloned()
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("a copy gate on #{}: {out:?}", prod.number))
    };
    let out = w.pass().await;
    let gate = copy_gate(&out);
    assert_eq!(gate.verdict, Verdict::Passed, "{gate:?}");
    assert!(
        gate.reason.contains(&format!("shop/web@{web}"))
            && gate.reason.contains(&format!("shop/worker@{worker}")),
        "{gate:?}"
    );
    let body = w.pr_for("prod", "shop").body.unwrap_or_default();
    assert!(
        body.contains(&format!("shop/web@{web}"))
            && body.contains(&format!("shop/worker@{worker}")),
        "the copy section names both members: {body}"
    );

    // worker's release disappears from its registry: its copy can no longer be made.
    let gone = reqwest::Client::new()
        .delete(format!(
            "{}/v2/shop/worker/manifests/{worker}",
            w.registry.url()
        ))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.status());
    // (Not `w.pass()`: dev and staging pin the deleted image, which its invariant refuses.)
    let engine = w.engine();
    let out = engine
        .run_once(&w.releases, &w.deployments, w.now)
        .await
        .unwrap();
    let gate = copy_gate(&out);
    assert_eq!(gate.verdict, Verdict::Blocked, "{gate:?}");
    assert!(
        gate.reason.starts_with("worker: ")
            && gate.reason.contains("is no longer in its registry")
            && !gate.reason.contains("web"),
        "{gate:?}"
    );
    let status = w.status_comment(prod.number);
    assert!(
        status.contains("| copy | ⛔ blocked |") && status.contains("worker: "),
        "{status}"
    );
}

/// A group's PR to prod (`copyTo`) merges only after every member's image is copied there (the
/// world's invariant: everything the config branch pins resolves), and its body lists each copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_pr_to_prod_copies_every_member_before_its_merge() {
    // The world's releases are not signed: worker's copy would (rightly) fail its signature.
    let files: Vec<(String, String)> = grouped_example()
        .into_iter()
        .map(|(p, t)| {
            let t = t.replace("    verify: { cosignKey: keys/ci.pub }\n", "");
            (p, t)
        })
        .collect();
    let mut w = World::with_files(&files).await;
    let (web, worker, prod) = walk_group_to_prod(&mut w).await;
    w.validate_passes(&prod.head_sha);
    w.team_approves(prod.number);
    w.comment("carol", prod.number, "/promote prod");
    let out = w.pass().await;
    assert!(
        out.iter().any(
            |o| matches!(o, Outcome::Merged { env, app, .. } if env == "prod" && app == "shop")
        ),
        "{out:?}"
    );
    let k = w.main_file("environments/prod/kustomization.yaml");
    assert!(
        k.contains(web.as_str()) && k.contains(worker.as_str()),
        "{k}"
    );
    let body = w
        .forge
        .pull(OWNER, REPO, prod.number)
        .unwrap()
        .body
        .unwrap_or_default();
    assert_eq!(body.matches("**Copied**").count(), 2, "{body}");
    let timeline = w.timeline(prod.number);
    assert_eq!(
        timeline
            .iter()
            .filter(|l| l.starts_with("copied `"))
            .count(),
        2,
        "{timeline:?}"
    );
}

/// `/retry` on a merged group PR runs the verification of every member the environment runs
/// again (as `/retry` does for an app's PR), not only the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_a_merged_group_pr_runs_every_members_verification_again() {
    let mut w = World::with_files(&grouped_example()).await;
    w.release("web", "1.5.0");
    w.release("worker", "release-2.2.0");
    w.pass().await;
    let pr = w.pr_for("dev", "shop");
    let out = w.pass().await;
    assert!(merged(&out, "dev"), "{out:?}");

    w.comment("alice", pr.number, "/retry");
    let out = w.engine().answer_pr(pr.number).await.unwrap();
    let retried: Vec<(&str, &str)> = out
        .iter()
        .filter_map(|o| match o {
            Outcome::RetryRequested { pr: n, env, app } if *n == pr.number => {
                Some((env.as_str(), app.as_str()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(retried, [("dev", "web"), ("dev", "worker")], "{out:?}");
    assert!(
        w.replies(pr.number).iter().any(|r| r.starts_with(
            "`/retry` by @alice: running the verification of web and worker (group shop) in dev again"
        )),
        "{:?}",
        w.replies(pr.number)
    );
    // Answered once.
    assert_eq!(w.engine().answer_pr(pr.number).await.unwrap(), vec![]);
}
