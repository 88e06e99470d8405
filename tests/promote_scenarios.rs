//! The promotion engine end to end against the GitHub stand-in over real HTTP: octocrab for
//! the REST API, git2 over smart HTTP for the config repo. Every pass builds a fresh engine
//! (new clone, new client), so each test also proves that a restart between any two steps
//! neither duplicates nor loses work.

use baton::engine::Outcome;
use baton_test_support::promote::{
    OWNER, REPO, World, merged, opened, tuesday_morning, waiting_on,
};
use chrono::{Duration, TimeZone, Utc};
use sim::forge::ReviewState;

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
        k.contains("newName: prod-registry.example.com/shop/web") && k.contains(v.as_str()),
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
