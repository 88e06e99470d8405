//! The config repo through git2 against real Git: a bare remote on disk, and the `git` CLI
//! as an independent observer.

mod common;

use std::path::Path;

use baton::config::Pipeline;
use baton::gitrepo::bump;
use baton::gitrepo::repo::{Auth, ConfigRepo, GitError, Identity, Pushed, Remote};
use baton::gitrepo::trailers::Promotion;
use baton::image::{Digest, Pinned};
use common::{EXAMPLE_DIRS, copy_dir, git, project_root};

/// A bare "remote" seeded with the example config repo, plus a scratch clone for pushing
/// competing commits.
fn remote() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    for d in EXAMPLE_DIRS {
        copy_dir(&project_root().join(d), &seed.join(d));
    }
    git(&seed, &["init", "-q", "-b", "main"]);
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-qm", "seed"]);
    let bare = dir.path().join("remote.git");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            "--bare",
            seed.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
    (dir, bare.to_str().unwrap().to_string())
}

fn open(dir: &Path, url: &str) -> ConfigRepo {
    ConfigRepo::open(
        &dir.join("work.git"),
        Remote {
            url: url.into(),
            branch: "main".into(),
            auth: Auth::None,
        },
        Identity::default(),
    )
    .unwrap()
}

fn pinned(seed: &str) -> Pinned {
    Pinned {
        tag: Some("9.9.9".into()),
        digest: Digest::of(seed.as_bytes()),
    }
}

/// Push a commit that touches another file, from a separate clone, as a competing writer.
fn push_competing_commit(root: &Path, url: &str, n: usize) {
    let clone = root.join(format!("other-{n}"));
    git(root, &["clone", "-q", url, clone.to_str().unwrap()]);
    std::fs::write(
        clone.join(format!("apps/web/NOTE-{n}.md")),
        "unrelated change\n",
    )
    .unwrap();
    git(&clone, &["add", "-A"]);
    git(&clone, &["commit", "-qm", "unrelated"]);
    git(&clone, &["push", "-q", "origin", "main"]);
}

#[test]
fn a_bump_is_committed_with_trailers_and_changes_only_the_image_lines() {
    let (root, url) = remote();
    let repo = open(root.path(), &url);
    repo.fetch().unwrap();
    let pipeline = Pipeline::parse(
        "p",
        &repo
            .files_at(repo.tip().unwrap())
            .unwrap()
            .unwrap_read("policies/pipeline.yaml"),
    )
    .unwrap()
    .pipeline;
    let pin = pinned("v9");
    let promotion = Promotion {
        app: "web".into(),
        environment: "dev".into(),
        from: None,
        to: pin.digest.clone(),
        tag: pin.tag.clone(),
        approved_by: vec![],
        promoted_by: Some("baton[bot]".into()),
        pull_request: Some(7),
        rollback_of: None,
    };
    let message = promotion.commit_message("promote web to dev: 9.9.9", "");
    let pushed = repo
        .commit_and_push("main", &message, 3, &mut |files| {
            Ok(vec![bump::plan(files, &pipeline, "dev", "web", &pin)?])
        })
        .unwrap();
    assert!(
        matches!(pushed, Pushed::Committed { attempts: 1, .. }),
        "{pushed:?}"
    );

    let log = git(Path::new(&url), &["log", "-1", "--format=%an%n%B", "main"]);
    assert!(
        log.starts_with("baton[bot]\npromote web to dev: 9.9.9"),
        "{log}"
    );
    assert_eq!(
        Promotion::parse(log.split_once('\n').unwrap().1),
        Some(promotion)
    );
    let diff = git(Path::new(&url), &["diff", "--unified=0", "main~1", "main"]);
    let changed: Vec<_> = diff
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .collect();
    assert_eq!(changed.len(), 4, "{diff}");
    assert!(
        changed
            .iter()
            .all(|l| l.contains("newTag:") || l.contains("digest:")),
        "{diff}"
    );
}

#[test]
fn the_same_bump_twice_pushes_nothing_the_second_time() {
    let (root, url) = remote();
    let repo = open(root.path(), &url);
    repo.fetch().unwrap();
    let pipeline = Pipeline::load(&project_root()).unwrap().pipeline;
    let pin = pinned("v10");
    let mut edit = |files: &baton::gitrepo::files::TreeFiles<'_>| {
        Ok(vec![bump::plan(
            files, &pipeline, "staging", "worker", &pin,
        )?])
    };
    assert!(matches!(
        repo.commit_and_push("main", "bump", 3, &mut edit).unwrap(),
        Pushed::Committed { .. }
    ));
    let tip = git(Path::new(&url), &["rev-parse", "main"]);
    assert!(matches!(
        repo.commit_and_push("main", "bump", 3, &mut edit).unwrap(),
        Pushed::Unchanged { .. }
    ));
    assert_eq!(git(Path::new(&url), &["rev-parse", "main"]), tip);
}

#[test]
fn a_push_that_loses_a_race_is_reapplied_on_the_new_tip() {
    let (root, url) = remote();
    let repo = open(root.path(), &url);
    let pipeline = Pipeline::load(&project_root()).unwrap().pipeline;
    let pin = pinned("v11");
    let mut calls = 0;
    let pushed = repo
        .commit_and_push("main", "bump web in prod", 3, &mut |files| {
            calls += 1;
            if calls == 1 {
                // Another writer pushes between our fetch and our push.
                push_competing_commit(root.path(), &url, calls);
            }
            Ok(vec![bump::plan(files, &pipeline, "prod", "web", &pin)?])
        })
        .unwrap();
    assert!(
        matches!(pushed, Pushed::Committed { attempts: 2, .. }),
        "{pushed:?}"
    );
    let log = git(Path::new(&url), &["log", "--format=%s", "main"]);
    assert!(
        log.starts_with("bump web in prod\nunrelated\nseed"),
        "{log}"
    );
}

#[test]
fn a_push_that_keeps_losing_gives_up_after_the_bound() {
    let (root, url) = remote();
    let repo = open(root.path(), &url);
    let pipeline = Pipeline::load(&project_root()).unwrap().pipeline;
    let pin = pinned("v12");
    let mut calls = 0;
    let err = repo
        .commit_and_push("main", "bump", 2, &mut |files| {
            calls += 1;
            push_competing_commit(root.path(), &url, calls);
            Ok(vec![bump::plan(files, &pipeline, "dev", "worker", &pin)?])
        })
        .unwrap_err();
    assert!(
        matches!(err, GitError::Contended { attempts: 2, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(calls, 2);
}

#[test]
fn a_promotion_branch_is_published_once_and_rebuilt_when_main_moves() {
    let (root, url) = remote();
    let repo = open(root.path(), &url);
    let pipeline = Pipeline::load(&project_root()).unwrap().pipeline;
    let pin = pinned("v13");
    let mut edit = |files: &baton::gitrepo::files::TreeFiles<'_>| {
        Ok(vec![bump::plan(files, &pipeline, "dev", "web", &pin)?])
    };
    let first = repo
        .publish_branch("baton/dev/web", "promote web to dev", &mut edit)
        .unwrap();
    assert!(matches!(first, Pushed::Committed { .. }));
    assert!(matches!(
        repo.publish_branch("baton/dev/web", "promote web to dev", &mut edit)
            .unwrap(),
        Pushed::Unchanged { .. }
    ));
    push_competing_commit(root.path(), &url, 1);
    assert!(matches!(
        repo.publish_branch("baton/dev/web", "promote web to dev", &mut edit)
            .unwrap(),
        Pushed::Committed { .. }
    ));
    // The branch sits directly on the new main tip.
    let parent = git(Path::new(&url), &["rev-parse", "baton/dev/web~1"]);
    assert_eq!(parent, git(Path::new(&url), &["rev-parse", "main"]));
}

#[test]
fn a_missing_branch_is_a_clear_permanent_error() {
    let (root, url) = remote();
    let repo = ConfigRepo::open(
        &root.path().join("w.git"),
        Remote {
            url,
            branch: "trunk".into(),
            auth: Auth::None,
        },
        Identity::default(),
    )
    .unwrap();
    let err = repo.fetch().unwrap_err();
    assert_eq!(err.to_string(), "branch trunk does not exist on the remote");
    assert!(!err.is_transient());
}

trait ReadExt {
    fn unwrap_read(&self, path: &str) -> String;
}

impl ReadExt for baton::gitrepo::files::TreeFiles<'_> {
    fn unwrap_read(&self, path: &str) -> String {
        use baton::gitrepo::files::Files;
        self.read(path).unwrap().unwrap()
    }
}

#[test]
fn an_exported_commit_renders_like_the_worktree_it_came_from() {
    let (_remote_dir, url) = remote();
    let work = tempfile::tempdir().unwrap();
    let repo = open(work.path(), &url);
    let tip = repo.fetch().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("export");
    repo.export(tip, &dest).unwrap();
    let from_git = baton::render::render(&dest, "environments/dev".as_ref()).unwrap();
    let from_example = baton::render::render(&project_root(), "environments/dev".as_ref()).unwrap();
    assert_eq!(
        baton::render::to_yaml_stream(&from_git),
        baton::render::to_yaml_stream(&from_example)
    );
    assert!(dest.join("policies/pipeline.yaml").is_file());
}
