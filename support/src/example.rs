//! The project's own example config repo (`apps/`, `environments/`, `policies/`, `keys/`), as
//! files, as a copy on disk, or seeded into the GitHub stand-in; and the `git` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The example config repo's top-level directories.
pub const EXAMPLE_DIRS: [&str; 4] = ["apps", "environments", "policies", "keys"];

/// The baton checkout (the workspace root).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("support/ sits in the baton checkout")
        .to_path_buf()
}

/// A fresh copy of the example config repo in a temp dir (not a Git repo).
pub fn example_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for d in EXAMPLE_DIRS {
        copy_dir(&project_root().join(d), &dir.path().join(d));
    }
    dir
}

/// The example config repo as (repo-relative path, text) pairs, for seeding a forge.
pub fn example_files() -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                let rel = e
                    .path()
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .to_string();
                out.push((rel, std::fs::read_to_string(e.path()).unwrap()));
            }
        }
    }
    let root = project_root();
    let mut out = Vec::new();
    for d in EXAMPLE_DIRS {
        walk(&root, &root.join(d), &mut out);
    }
    out
}

/// Create `owner/repo` on the GitHub stand-in with `files` on branch `main`.
pub fn seed_repo(forge: &sim::forge::Forge, owner: &str, repo: &str, files: &[(String, String)]) {
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    forge
        .create_repo_with_files(owner, repo, "main", &refs)
        .unwrap();
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Replace `from` by `to` in a file of the repo, asserting that `from` occurs.
pub fn edit(repo: &Path, file: &str, from: &str, to: &str) {
    let path = repo.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} does not contain {from:?}");
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

/// Run `git` in `dir`, asserting success; returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
