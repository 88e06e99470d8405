//! The config repo through git2: a bare clone kept in the bot's workdir, fetched before every
//! decision; commits built in memory on top of a fetched tip (no working tree to get out of
//! sync); pushes that retry on a non-fast-forward by re-applying the (idempotent) edit on the
//! new tip.
//!
//! Credentials: https with a token in GitHub's `x-access-token:<token>` form (a fixed one, or one
//! asked of a [`TokenSource`] for every operation, such as a GitHub App's installation token,
//! which expires after an hour), ssh with a key file, or none for local paths. Tokens are handed
//! to libgit2's credential callback only: never written into the remote URL, the clone's config,
//! an error or a log line.
//!
//! Commits are signed with the SSH key `repo.signingKey` names, when there is one
//! ([`super::sign`]).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use git2::{Cred, CredentialType, FetchOptions, Oid, PushOptions, RemoteCallbacks, Repository};

use super::bump::FileChange;
use super::files::TreeFiles;
use super::sign::CommitSigner;
use crate::config::secret::Secret;

/// Where a short-lived https token comes from: asked once per Git operation that needs
/// credentials, so that it may renew the token before it expires.
pub trait TokenSource: Send + Sync + std::fmt::Debug {
    /// A token valid for at least the next few minutes, or why there is none.
    fn token(&self) -> Result<Secret, String>;
}

/// How to authenticate to the remote.
#[derive(Debug, Clone, Default)]
pub enum Auth {
    /// Local paths and anonymous https.
    #[default]
    None,
    /// https with a token (GitHub: personal, fine-grained or installation token).
    Token(Secret),
    /// https with a token asked of its source for every operation (a GitHub App's installation
    /// token, renewed before it expires).
    Source(Arc<dyn TokenSource>),
    /// ssh with a private key file.
    Ssh {
        key: PathBuf,
        passphrase: Option<Secret>,
    },
}

impl Auth {
    /// The credentials the runtime config names for the config repo: `repo.sshKey` for ssh
    /// URLs, else `repo.token`, else the GitHub token for https URLs, else none (local paths).
    pub fn from_config(
        cfg: &crate::config::RuntimeConfig,
    ) -> Result<Self, crate::config::secret::SecretError> {
        let url = cfg.repo.url.as_str();
        let is_ssh = url.starts_with("ssh://")
            || (url.contains('@') && url.contains(':') && !url.contains("://"));
        if is_ssh && let Some(key) = &cfg.repo.ssh_key {
            let passphrase = key.passphrase.as_ref().map(|p| p.resolve()).transpose()?;
            return Ok(Self::Ssh {
                key: key.file.clone(),
                passphrase,
            });
        }
        if let Some(token) = &cfg.repo.token {
            return Ok(Self::Token(token.resolve()?));
        }
        if url.starts_with("http")
            && let Some(token) = &cfg.github.token
        {
            return Ok(Self::Token(token.resolve()?));
        }
        Ok(Self::None)
    }
}

/// Where the config repo lives.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    /// The config branch, e.g. `main`.
    pub branch: String,
    pub auth: Auth,
}

/// Who the bot commits as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Default for Identity {
    fn default() -> Self {
        Self {
            name: "baton[bot]".into(),
            email: "baton[bot]@users.noreply.github.com".into(),
        }
    }
}

impl Identity {
    /// `repo.committer` from the runtime config, else the default.
    pub fn from_config(cfg: &crate::config::RuntimeConfig) -> Self {
        cfg.repo
            .committer
            .as_ref()
            .map(|c| Self {
                name: c.name.clone(),
                email: c.email.clone(),
            })
            .unwrap_or_default()
    }
}

/// A Git operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A git2 call failed; `op` says which step.
    #[error("git {op} failed: {message}")]
    Git {
        op: &'static str,
        message: String,
        transient: bool,
    },
    /// The remote refused the push for a reason other than a race (hook, protection, auth).
    #[error("push of {refname} was rejected: {reason}")]
    Rejected { refname: String, reason: String },
    /// Every attempt lost the race against other pushes.
    #[error(
        "push to {branch} still raced other pushes after {attempts} attempts; will retry later"
    )]
    Contended { branch: String, attempts: usize },
    /// The config branch does not exist on the remote.
    #[error("branch {0} does not exist on the remote")]
    NoBranch(String),
    /// The edit could not be made on the fetched tip.
    #[error(transparent)]
    Edit(#[from] super::bump::BumpError),
}

impl GitError {
    /// Whether retrying later may succeed (network trouble, races) as opposed to needing a
    /// person (bad credentials, a refused edit).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Git { transient, .. } => *transient,
            Self::Contended { .. } => true,
            Self::Rejected { .. } | Self::NoBranch(_) | Self::Edit(_) => false,
        }
    }
}

fn git_err<'a>(
    op: &'static str,
    secret: Option<&'a Secret>,
) -> impl Fn(git2::Error) -> GitError + 'a {
    move |e| {
        let mut message = e.message().to_string();
        if let Some(s) = secret {
            message = message.replace(s.expose(), "[redacted]");
        }
        let transient = matches!(
            e.class(),
            git2::ErrorClass::Net | git2::ErrorClass::Http | git2::ErrorClass::Ssh
        ) && e.code() != git2::ErrorCode::Auth;
        GitError::Git {
            op,
            message,
            transient,
        }
    }
}

/// The outcome of [`ConfigRepo::commit_and_push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// A commit was pushed.
    Committed { commit: Oid, attempts: usize },
    /// The tip already had the desired content; nothing was pushed.
    Unchanged { tip: Oid },
}

/// What [`ConfigRepo::prepare_branch`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The remote branch already has the content on the current tip.
    Unchanged { tip: Oid },
    /// A commit of `changes` on `base` is needed.
    Commit {
        base: Oid,
        base_tree: Oid,
        changes: Vec<FileChange>,
    },
}

/// A bare clone of the config repo.
pub struct ConfigRepo {
    repo: Repository,
    remote: Remote,
    identity: Identity,
    signer: Option<CommitSigner>,
}

impl std::fmt::Debug for ConfigRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigRepo")
            .field("path", &self.repo.path())
            .field("url", &self.remote.url)
            .finish()
    }
}

const ORIGIN: &str = "origin";

impl ConfigRepo {
    /// Open the bare clone at `dir`, creating it (empty, then fetched) if needed.
    pub fn open(dir: &Path, remote: Remote, identity: Identity) -> Result<Self, GitError> {
        let secret = remote_secret(&remote);
        let repo = match Repository::open_bare(dir) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(dir).map_err(|e| GitError::Git {
                    op: "init",
                    message: e.to_string(),
                    transient: false,
                })?;
                Repository::init_bare(dir).map_err(git_err("init", secret))?
            }
        };
        match repo.find_remote(ORIGIN) {
            Ok(_) => repo
                .remote_set_url(ORIGIN, &remote.url)
                .map_err(git_err("remote", secret))?,
            Err(_) => {
                repo.remote_with_fetch(ORIGIN, &remote.url, "+refs/heads/*:refs/remotes/origin/*")
                    .map_err(git_err("remote", secret))?;
            }
        }
        Ok(Self {
            repo,
            remote,
            identity,
            signer: None,
        })
    }

    /// Sign every commit this clone makes with `signer` (none: unsigned).
    pub fn with_signer(mut self, signer: Option<CommitSigner>) -> Self {
        self.signer = signer;
        self
    }

    pub fn git(&self) -> &Repository {
        &self.repo
    }

    pub fn branch(&self) -> &str {
        &self.remote.branch
    }

    fn callbacks(&self) -> RemoteCallbacks<'_> {
        let mut cb = RemoteCallbacks::new();
        let auth = self.remote.auth.clone();
        let tries = RefCell::new(0u32);
        cb.credentials(move |_url, username, allowed| {
            // libgit2 asks again after a refused credential; stop instead of looping.
            *tries.borrow_mut() += 1;
            if *tries.borrow() > 3 {
                return Err(git2::Error::from_str("credentials were refused"));
            }
            match &auth {
                Auth::Token(token) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                    Cred::userpass_plaintext("x-access-token", token.expose())
                }
                Auth::Source(source) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                    let token = source.token().map_err(|e| {
                        git2::Error::from_str(&format!("no token for Git over https: {e}"))
                    })?;
                    Cred::userpass_plaintext("x-access-token", token.expose())
                }
                Auth::Ssh { key, passphrase } if allowed.contains(CredentialType::SSH_KEY) => {
                    Cred::ssh_key(
                        username.unwrap_or("git"),
                        None,
                        key,
                        passphrase.as_ref().map(Secret::expose),
                    )
                }
                _ => Err(git2::Error::from_str(
                    "the remote asked for credentials baton was not given",
                )),
            }
        });
        cb
    }

    /// Fetch every branch of the remote; returns the config branch tip.
    pub fn fetch(&self) -> Result<Oid, GitError> {
        let secret = remote_secret(&self.remote);
        let mut remote = self
            .repo
            .find_remote(ORIGIN)
            .map_err(git_err("fetch", secret))?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(self.callbacks());
        opts.prune(git2::FetchPrune::On);
        remote
            .fetch(
                &["+refs/heads/*:refs/remotes/origin/*"],
                Some(&mut opts),
                None,
            )
            .map_err(git_err("fetch", secret))?;
        self.tip()
    }

    /// Fetch the heads of pull requests (`refs/pull/<n>/head`, where GitHub keeps them for
    /// PRs from forks too) to `refs/remotes/origin/pull/<n>`.
    pub fn fetch_pull_heads(&self) -> Result<(), GitError> {
        let secret = remote_secret(&self.remote);
        let mut remote = self
            .repo
            .find_remote(ORIGIN)
            .map_err(git_err("fetch", secret))?;
        let mut opts = FetchOptions::new();
        opts.remote_callbacks(self.callbacks());
        remote
            .fetch(
                &["+refs/pull/*/head:refs/remotes/origin/pull/*"],
                Some(&mut opts),
                None,
            )
            .map_err(git_err("fetch", secret))
    }

    /// Whether the clone has the commit.
    pub fn has_commit(&self, oid: Oid) -> bool {
        self.repo.find_commit(oid).is_ok()
    }

    /// The best common ancestor of two commits, if they have one.
    pub fn merge_base(&self, a: Oid, b: Oid) -> Result<Option<Oid>, GitError> {
        match self.repo.merge_base(a, b) {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git_err("merge-base", None)(e)),
        }
    }

    /// The config branch tip as last fetched.
    pub fn tip(&self) -> Result<Oid, GitError> {
        self.remote_branch(&self.remote.branch)?
            .ok_or_else(|| GitError::NoBranch(self.remote.branch.clone()))
    }

    /// A remote branch's tip as last fetched, if it exists.
    pub fn remote_branch(&self, branch: &str) -> Result<Option<Oid>, GitError> {
        match self
            .repo
            .refname_to_id(&format!("refs/remotes/origin/{branch}"))
        {
            Ok(oid) => Ok(Some(oid)),
            Err(e) if e.code() == git2::ErrorCode::NotFound => Ok(None),
            Err(e) => Err(git_err("resolve", None)(e)),
        }
    }

    /// The files of a commit.
    pub fn files_at(&self, commit: Oid) -> Result<TreeFiles<'_>, GitError> {
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(git_err("read", None))?;
        Ok(TreeFiles {
            repo: &self.repo,
            tree,
        })
    }

    /// The tree of `parent` with `changes` applied (written to the object database).
    fn tree_with(
        &self,
        parent: &git2::Commit<'_>,
        changes: &[FileChange],
    ) -> Result<Oid, GitError> {
        let e = git_err("commit", None);
        let base = parent.tree().map_err(&e)?;
        let mut update = git2::build::TreeUpdateBuilder::new();
        for change in changes.iter().filter(|c| !c.is_noop()) {
            let blob = self.repo.blob(change.after.as_bytes()).map_err(&e)?;
            let mode = base
                .get_path(Path::new(&change.path))
                .map(|t| t.filemode())
                .unwrap_or(0o100644);
            let mode = if mode == 0o100755 {
                git2::FileMode::BlobExecutable
            } else {
                git2::FileMode::Blob
            };
            update.upsert(change.path.as_str(), blob, mode);
        }
        update.create_updated(&self.repo, &base).map_err(&e)
    }

    /// Build a commit on `parent` with `changes` applied, without touching any ref; signed
    /// when the clone has a signer.
    pub fn commit(
        &self,
        parent: Oid,
        changes: &[FileChange],
        message: &str,
    ) -> Result<Oid, GitError> {
        let e = git_err("commit", None);
        let parent = self.repo.find_commit(parent).map_err(&e)?;
        let tree_id = self.tree_with(&parent, changes)?;
        let tree = self.repo.find_tree(tree_id).map_err(&e)?;
        let sig = git2::Signature::now(&self.identity.name, &self.identity.email).map_err(&e)?;
        let Some(signer) = &self.signer else {
            return self
                .repo
                .commit(None, &sig, &sig, message, &tree, &[&parent])
                .map_err(&e);
        };
        // What `git commit -S` signs: the commit object without its signature header.
        let content = self
            .repo
            .commit_create_buffer(&sig, &sig, message, &tree, &[&parent])
            .map_err(&e)?;
        let content = std::str::from_utf8(&content).map_err(|err| GitError::Git {
            op: "commit",
            message: format!("the commit object is not UTF-8: {err}"),
            transient: false,
        })?;
        let signature = signer
            .sign(content.as_bytes())
            .map_err(|err| GitError::Git {
                op: "sign",
                message: err.to_string(),
                transient: false,
            })?;
        self.repo
            .commit_signed(content, &signature, Some("gpgsig"))
            .map_err(&e)
    }

    /// Push `commit` to `refs/heads/<branch>`. `force` is for branches the bot owns
    /// (`baton/<env>/<app>`); the config branch is never force-pushed. Returns `Ok(false)`
    /// when the remote refused because it has moved on (non-fast-forward).
    pub fn push(&self, commit: Oid, branch: &str, force: bool) -> Result<bool, GitError> {
        let secret = remote_secret(&self.remote);
        let local_ref = format!("refs/baton/push/{branch}");
        self.repo
            .reference(&local_ref, commit, true, "baton push")
            .map_err(git_err("push", secret))?;
        let refspec = format!(
            "{}{local_ref}:refs/heads/{branch}",
            if force { "+" } else { "" }
        );
        let rejection: RefCell<Option<String>> = RefCell::new(None);
        let mut remote = self
            .repo
            .find_remote(ORIGIN)
            .map_err(git_err("push", secret))?;
        let result = {
            let mut cb = self.callbacks();
            cb.push_update_reference(|_refname, status| {
                if let Some(msg) = status {
                    *rejection.borrow_mut() = Some(msg.to_string());
                }
                Ok(())
            });
            let mut opts = PushOptions::new();
            opts.remote_callbacks(cb);
            remote.push(&[refspec.as_str()], Some(&mut opts))
        };
        let _ = self
            .repo
            .find_reference(&local_ref)
            .and_then(|mut r| r.delete());
        match result {
            Err(e) if e.code() == git2::ErrorCode::NotFastForward => return Ok(false),
            Err(e) if is_race_message(e.message()) => return Ok(false),
            Err(e) => return Err(git_err("push", secret)(e)),
            Ok(()) => {}
        }
        match rejection.into_inner() {
            None => {
                // Record what we pushed so that the next read sees it without a fetch.
                let _ = self.repo.reference(
                    &format!("refs/remotes/origin/{branch}"),
                    commit,
                    true,
                    "baton push",
                );
                Ok(true)
            }
            Some(reason) if is_race_message(&reason) => Ok(false),
            Some(reason) => Err(GitError::Rejected {
                refname: format!("refs/heads/{branch}"),
                reason,
            }),
        }
    }

    /// Commit an edit to `branch` and push it, racing safely with other writers: fetch,
    /// compute the changes from the fetched tip with `edit`, commit, push; on a
    /// non-fast-forward, fetch and start over, at most `attempts` times. The edit must be
    /// idempotent: when it changes nothing on the new tip, nothing is pushed.
    pub fn commit_and_push(
        &self,
        branch: &str,
        message: &str,
        attempts: usize,
        edit: &mut dyn FnMut(&TreeFiles<'_>) -> Result<Vec<FileChange>, super::bump::BumpError>,
    ) -> Result<Pushed, GitError> {
        for attempt in 1..=attempts.max(1) {
            self.fetch()?;
            let tip = self
                .remote_branch(branch)?
                .ok_or_else(|| GitError::NoBranch(branch.to_string()))?;
            let changes = edit(&self.files_at(tip)?)?;
            if changes.iter().all(FileChange::is_noop) {
                return Ok(Pushed::Unchanged { tip });
            }
            let commit = self.commit(tip, &changes, message)?;
            if self.push(commit, branch, false)? {
                tracing::info!(branch, %commit, attempt, "pushed");
                return Ok(Pushed::Committed {
                    commit,
                    attempts: attempt,
                });
            }
            tracing::info!(
                branch,
                attempt,
                "push raced another writer; refetching and re-applying"
            );
        }
        Err(GitError::Contended {
            branch: branch.to_string(),
            attempts,
        })
    }

    /// What publishing the bot-owned `branch` needs: nothing, when the remote branch already
    /// has exactly `edit`'s content on the config branch tip (fetched first), or a commit of
    /// `changes` on `base` (whose tree is `base_tree`). [`Self::publish_branch`] makes it with
    /// git2 and pushes; under GitHub App auth the engine makes it through GitHub's Git data API.
    pub fn prepare_branch(
        &self,
        branch: &str,
        edit: &mut dyn FnMut(&TreeFiles<'_>) -> Result<Vec<FileChange>, super::bump::BumpError>,
    ) -> Result<Prepared, GitError> {
        let base = self.fetch()?;
        let changes = edit(&self.files_at(base)?)?;
        if let Some(existing) = self.remote_branch(branch)? {
            let same_base = self
                .repo
                .find_commit(existing)
                .ok()
                .and_then(|c| c.parent_id(0).ok())
                == Some(base);
            let base_commit = self.repo.find_commit(base).map_err(git_err("read", None))?;
            if same_base && self.tree_of(existing)? == self.tree_with(&base_commit, &changes)? {
                return Ok(Prepared::Unchanged { tip: existing });
            }
        }
        Ok(Prepared::Commit {
            base,
            base_tree: self.tree_of(base)?,
            changes,
        })
    }

    /// Point the bot-owned `branch` at a commit of `changes` on top of the config branch tip
    /// and force-push it (promotion branches are rebuilt, never merged into). When the
    /// remote branch already has exactly that content on the current tip, nothing is pushed.
    pub fn publish_branch(
        &self,
        branch: &str,
        message: &str,
        edit: &mut dyn FnMut(&TreeFiles<'_>) -> Result<Vec<FileChange>, super::bump::BumpError>,
    ) -> Result<Pushed, GitError> {
        let (base, changes) = match self.prepare_branch(branch, edit)? {
            Prepared::Unchanged { tip } => return Ok(Pushed::Unchanged { tip }),
            Prepared::Commit { base, changes, .. } => (base, changes),
        };
        let commit = self.commit(base, &changes, message)?;
        if !self.push(commit, branch, true)? {
            return Err(GitError::Rejected {
                refname: format!("refs/heads/{branch}"),
                reason: "force push refused".into(),
            });
        }
        Ok(Pushed::Committed {
            commit,
            attempts: 1,
        })
    }

    /// Write the files of `commit` under `dir` (which must not exist or be empty), for the
    /// parts that read a directory (the renderer, `baton validate`). Symlinks are written as
    /// files holding their target path, so that nothing in the export points outside `dir`.
    pub fn export(&self, commit: Oid, dir: &Path) -> Result<(), GitError> {
        let e = |op: &'static str| {
            move |err: std::io::Error| GitError::Git {
                op,
                message: err.to_string(),
                transient: false,
            }
        };
        let tree = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(git_err("read", None))?;
        std::fs::create_dir_all(dir).map_err(e("export"))?;
        let mut failure = None;
        tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
            let Ok(name) = entry.name() else {
                return git2::TreeWalkResult::Skip;
            };
            let path = dir.join(root).join(name);
            let result = match entry.kind() {
                Some(git2::ObjectType::Tree) => std::fs::create_dir_all(&path),
                Some(git2::ObjectType::Blob) => match self.repo.find_blob(entry.id()) {
                    Ok(blob) => std::fs::write(&path, blob.content()),
                    Err(err) => Err(std::io::Error::other(err.to_string())),
                },
                // Submodules: nothing to render from.
                _ => return git2::TreeWalkResult::Skip,
            };
            match result {
                Ok(()) => git2::TreeWalkResult::Ok,
                Err(err) => {
                    failure = Some(std::io::Error::new(
                        err.kind(),
                        format!("{}: {err}", path.display()),
                    ));
                    git2::TreeWalkResult::Abort
                }
            }
        })
        .map_err(git_err("export", None))
        .or_else(|err| if failure.is_some() { Ok(()) } else { Err(err) })?;
        match failure {
            Some(err) => Err(e("export")(err)),
            None => Ok(()),
        }
    }

    /// The commits whose content `head` has unchanged: `head`, then each first parent reached
    /// through commits that change no file (a promotion's record commit), up to and including
    /// the first one that does. An approval of any of them approves what `head` merges.
    pub fn same_content(&self, head: Oid) -> Vec<Oid> {
        let mut out = vec![head];
        let mut at = head;
        // Bounded: a record commit is made once per change of approvers.
        for _ in 0..16 {
            let Ok(commit) = self.repo.find_commit(at) else {
                break;
            };
            let Ok(parent) = commit.parent(0) else {
                break;
            };
            if commit.tree_id() != parent.tree_id() {
                break;
            }
            at = parent.id();
            out.push(at);
        }
        out
    }

    /// The message of a commit in the clone.
    pub fn message_of(&self, commit: Oid) -> Result<String, GitError> {
        self.repo
            .find_commit(commit)
            .map(|c| String::from_utf8_lossy(c.message_bytes()).into_owned())
            .map_err(git_err("read", None))
    }

    /// Put a commit with `message` and no change on top of the bot-owned `branch`, whose tip
    /// must be `head` (a fast-forward push; signed like every bot commit).
    pub fn push_record(&self, branch: &str, head: Oid, message: &str) -> Result<Oid, GitError> {
        let commit = self.commit(head, &[], message)?;
        if !self.push(commit, branch, false)? {
            return Err(GitError::Rejected {
                refname: format!("refs/heads/{branch}"),
                reason: "the branch moved while its record commit was made".into(),
            });
        }
        Ok(commit)
    }

    pub fn tree_of(&self, commit: Oid) -> Result<Oid, GitError> {
        self.repo
            .find_commit(commit)
            .map(|c| c.tree_id())
            .map_err(git_err("read", None))
    }
}

fn remote_secret(remote: &Remote) -> Option<&Secret> {
    match &remote.auth {
        Auth::Token(t) => Some(t),
        _ => None,
    }
}

fn is_race_message(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("non-fast-forward")
        || m.contains("fetch first")
        || m.contains("not fast-forward")
        || m.contains("cannot lock ref")
}
