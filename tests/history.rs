//! `baton history` through the real binary on a repo whose merge and squash commits carry
//! Baton-* trailers, written with the `git` CLI like GitHub would.

mod common;

use std::path::Path;

use baton::gitrepo::trailers::Promotion;
use baton::image::Digest;
use common::{baton, git, stdout};

fn promotion(app: &str, env: &str, n: u8, pr: u64) -> Promotion {
    Promotion {
        app: app.into(),
        environment: env.into(),
        from: Some(Digest::of(&[n - 1])),
        to: Digest::of(&[n]),
        tag: Some(format!("1.{n}.0")),
        approved_by: if env == "prod" {
            vec!["alice".into(), "bob".into()]
        } else {
            vec![]
        },
        promoted_by: Some(if env == "prod" {
            "carol".into()
        } else {
            "baton[bot]".into()
        }),
        pull_request: Some(pr),
        rollback_of: None,
    }
}

/// Write `file` in the work tree at `d` and commit everything with `message`.
fn commit_file(d: &Path, file: &str, text: &str, message: &str) {
    std::fs::write(d.join(file), text).unwrap();
    git(d, &["add", "-A"]);
    git(d, &["commit", "-qm", message]);
}

/// main with: a --no-ff merge of a promotion branch, a squash commit, an ordinary commit,
/// and a side-branch commit whose trailers are not on the first-parent line.
fn repo_with_history() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    commit_file(d, "README", "config\n", "initial");

    git(d, &["checkout", "-qb", "baton/dev/web"]);
    // The branch commit carries trailers too, but it is not first-parent from main.
    commit_file(
        d,
        "dev",
        "1\n",
        &promotion("web", "dev", 9, 99).commit_message("branch commit", ""),
    );
    git(d, &["checkout", "-q", "main"]);
    let merge = promotion("web", "dev", 1, 1).commit_message(
        "Merge pull request #1 from shop/baton/dev/web",
        "promote web to dev: 1.1.0",
    );
    git(
        d,
        &["merge", "-q", "--no-ff", "baton/dev/web", "-m", &merge],
    );

    commit_file(
        d,
        "prod",
        "2\n",
        &promotion("web", "prod", 2, 2).commit_message("promote web to prod: 1.2.0 (#2)", ""),
    );

    commit_file(d, "README", "edited\n", "docs: unrelated change");

    commit_file(
        d,
        "worker",
        "3\n",
        &promotion("worker", "dev", 3, 3).commit_message("promote worker to dev", ""),
    );
    dir
}

fn run(repo: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec!["history", "--repo", repo.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = baton(&args);
    (
        out.status.code().unwrap(),
        stdout(&out) + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn history_lists_merge_and_squash_promotions_newest_first() {
    let repo = repo_with_history();
    let (code, out) = run(repo.path(), &[]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(
        lines.len(),
        4,
        "header + 3 promotions, not the side-branch commit:\n{out}"
    );
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("APPROVED BY"),
        "{out}"
    );
    assert!(
        lines[1].contains("dev  ") && lines[1].contains("worker") && lines[1].contains("#3"),
        "{out}"
    );
    assert!(
        lines[2].contains("prod")
            && lines[2].contains("1.2.0")
            && lines[2].contains("alice,bob")
            && lines[2].contains("carol"),
        "{out}"
    );
    assert!(
        lines[3].contains("web")
            && lines[3].contains("#1")
            && lines[3].contains(Digest::of(&[1]).short()),
        "{out}"
    );
}

#[test]
fn history_filters_by_app_and_environment_and_prints_json() {
    let repo = repo_with_history();
    let (code, out) = run(
        repo.path(),
        &["--app", "web", "--env", "prod", "-o", "json"],
    );
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["app"], "web");
    assert_eq!(entries[0]["environment"], "prod");
    assert_eq!(entries[0]["to"], Digest::of(&[2]).as_str());
    assert_eq!(
        entries[0]["approvedBy"],
        serde_json::json!(["alice", "bob"])
    );
    assert_eq!(entries[0]["pullRequest"], 2);
    assert_eq!(entries[0]["commit"].as_str().unwrap().len(), 40);
}

#[test]
fn history_since_the_future_is_empty_and_a_bad_since_is_an_error() {
    let repo = repo_with_history();
    let (code, out) = run(repo.path(), &["--since", "2999-01-01"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no promotions recorded"), "{out}");
    let (code, out) = run(repo.path(), &["--since", "yesterday-ish"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("--since"), "{out}");
}

#[test]
fn history_outside_a_git_repository_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(dir.path(), &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is not inside a Git repository"), "{out}");
}

/// What a merge queue that rebases lands: baton's promotion commit (the trailers known before
/// the PR) and, on it, its record commit (no file changed, the whole record). History shows the
/// promotion once, with the record's approvers; a later promotion of the same release that
/// changes a file is not folded into it.
#[test]
fn a_rebased_promotion_and_its_record_commit_are_one_entry_with_approvers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    git(d, &["init", "-q", "-b", "main"]);
    commit_file(d, "README", "config\n", "initial");
    let full = promotion("web", "prod", 4, 7);
    let mut partial = full.clone();
    partial.approved_by.clear();
    partial.promoted_by = None;
    partial.pull_request = None;
    commit_file(
        d,
        "prod",
        "4\n",
        &partial.commit_message("promote web to prod: 1.4.0", ""),
    );
    git(
        d,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            &full.commit_message("promote web to prod: 1.4.0", "The audit record."),
        ],
    );
    let (code, out) = run(d, &["-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entries = v.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{out}");
    assert_eq!(
        entries[0]["approvedBy"],
        serde_json::json!(["alice", "bob"])
    );
    assert_eq!(entries[0]["promotedBy"], "carol");
    assert_eq!(entries[0]["pullRequest"], 7);

    // The same trailers on a commit that changes a file are a promotion of their own.
    commit_file(d, "prod", "4 again\n", &partial.commit_message("again", ""));
    let (_, out) = run(d, &["-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2, "{out}");
}
