//! Bench: read the release history of a config repo with 10,000 promotion commits.
//!
//! Run: `cargo bench --bench history` (optionally `-- 20000` for another size). Builds the
//! repo with git2 in a temp dir (not timed), then times `gitrepo::history::read` over the
//! whole first-parent log, median of 7 runs.

use std::time::{Duration, Instant};

use baton::gitrepo::history::{self, Filter};
use baton::gitrepo::trailers::Promotion;
use baton::image::Digest;

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = git2::Repository::init_bare(dir.path()).expect("init");
    let sig = git2::Signature::now("baton[bot]", "baton@example.com").expect("signature");
    let tree = repo
        .find_tree(repo.treebuilder(None).unwrap().write().unwrap())
        .unwrap();
    let envs = ["dev", "staging", "prod"];
    let apps = ["web", "worker", "api", "cart"];
    let build = Instant::now();
    let mut parent: Option<git2::Oid> = None;
    for i in 0..n {
        let p = Promotion {
            app: apps[i % apps.len()].into(),
            environment: envs[i % envs.len()].into(),
            from: Some(Digest::of(&(i as u64).to_le_bytes())),
            to: Digest::of(&(i as u64 + 1).to_le_bytes()),
            tag: Some(format!("1.{i}.0")),
            approved_by: vec!["alice".into(), "bob".into()],
            promoted_by: Some("carol".into()),
            pull_request: Some(i as u64 + 1),
            rollback_of: None,
        };
        let msg = p.commit_message(
            &format!("Merge pull request #{} from shop/baton/x", i + 1),
            "promote",
        );
        let parents: Vec<git2::Commit<'_>> = parent
            .iter()
            .map(|o| repo.find_commit(*o).unwrap())
            .collect();
        let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        parent = Some(repo.commit(None, &sig, &sig, &msg, &tree, &refs).unwrap());
    }
    let tip = parent.expect("at least one commit");
    eprintln!("built {n} promotion commits in {:?}", build.elapsed());

    let mut times: Vec<Duration> = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let entries = history::read(&repo, tip, &Filter::default()).unwrap();
        times.push(start.elapsed());
        assert_eq!(entries.len(), n);
    }
    times.sort();
    let filtered = {
        let start = Instant::now();
        let f = Filter {
            app: Some("web".into()),
            environment: Some("prod".into()),
            ..Filter::default()
        };
        let e = history::read(&repo, tip, &f).unwrap();
        (start.elapsed(), e.len())
    };
    println!(
        "history: {n} promotion commits read in {:?} (median of 7; min {:?}, max {:?})",
        times[3], times[0], times[6]
    );
    println!(
        "history --app web --env prod: {} entries in {:?}",
        filtered.1, filtered.0
    );
}
