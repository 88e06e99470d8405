//! Helpers shared by the real-client suites: the `git` CLI, isolated from the user's config.
#![allow(dead_code)]

use std::path::Path;

/// Run `git args...` in `dir` with no global or system config and no prompts; panics with the
/// output on failure and returns stdout.
pub async fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_output(dir, args).await;
    assert!(
        out.status.success(),
        "git {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Like [`git`] but returns the whole output, successful or not.
pub async fn git_output(dir: &Path, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.com")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.com")
        .output()
        .await
        .expect("git runs")
}

/// A fresh working repository in `dir` with one commit on `main` holding `files`.
pub async fn work_repo(dir: &Path, files: &[(&str, &str)]) {
    git(dir, &["init", "-q", "-b", "main"]).await;
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    git(dir, &["add", "-A"]).await;
    git(dir, &["commit", "-q", "-m", "initial"]).await;
}
