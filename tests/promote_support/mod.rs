//! The promotion scenario tests' world: the GitHub stand-in holding the example config repo,
//! the people and teams its pipeline names, the registry's releases and the reconciler's
//! deployments as plain values, and a brand-new engine (fresh clone, fresh client) for every
//! pass, as after a restart.
#![allow(dead_code)]

use std::collections::BTreeMap;

use baton::config::Secret;
use baton::engine::{Engine, Outcome};
use baton::forge::github::{GitHubAuth, GitHubForge, GitHubOptions};
use baton::gitrepo::repo::{Auth, ConfigRepo, Identity, Remote};
use baton::gitrepo::trailers::Promotion;
use baton::image::Digest;
use baton::promote::plan::Release;
use baton::promote::state::{DeployState, Deployment};
use chrono::{DateTime, Duration, TimeZone, Utc};
use sim::forge::{Forge, ForgeOptions, Permission, PullView};

use crate::common::{example_files, git};

pub const OWNER: &str = "shop";
pub const REPO: &str = "config";
pub const STATUS_MARKER: &str = "<!-- baton:status -->";

/// Tuesday 2026-11-24 10:00 in Berlin: inside prod's window, outside the freeze.
pub fn tuesday_morning() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap()
}

pub struct World {
    pub forge: Forge,
    pub dir: tempfile::TempDir,
    pub passes: usize,
    pub releases: BTreeMap<String, Release>,
    pub deployments: BTreeMap<(String, String), Deployment>,
    pub now: DateTime<Utc>,
    /// The GitHub client options of every engine built from now on.
    pub options: GitHubOptions,
    /// Passes run as the GitHub App (installation tokens for REST and Git, the login asked of
    /// GitHub) instead of with the bot's fixed token.
    pub app_auth: bool,
}

/// The stand-in's App (id 4242, installation 77) signs its JWTs with this key.
pub const APP_KEY: &str = include_str!("../../sim/tests/fixtures/test-app-key.pem");

impl World {
    /// The example config repo as it is.
    pub async fn new() -> Self {
        Self::with_pipeline(|text| text).await
    }

    /// The example config repo with `policies/pipeline.yaml` passed through `edit`.
    pub async fn with_pipeline(edit: impl FnOnce(String) -> String) -> Self {
        Self::with_forge(ForgeOptions::default(), edit).await
    }

    /// A stand-in started with `options` (e.g. another bot login), holding the example config
    /// repo with `policies/pipeline.yaml` passed through `edit`.
    pub async fn with_forge(options: ForgeOptions, edit: impl FnOnce(String) -> String) -> Self {
        baton::tls::install_crypto_provider();
        let forge = Forge::start_with(options).await.unwrap();
        let mut edit = Some(edit);
        let files: Vec<(String, String)> = example_files()
            .into_iter()
            .map(|(p, t)| match edit.take() {
                Some(edit) if p == "policies/pipeline.yaml" => (p, edit(t)),
                other => {
                    edit = other;
                    (p, t)
                }
            })
            .collect();
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        forge
            .create_repo_with_files(OWNER, REPO, "main", &refs)
            .unwrap();
        for (login, perm) in [
            ("alice", Permission::Write),
            ("bob", Permission::Write),
            ("carol", Permission::Maintain),
            ("dev", Permission::Write),
            ("eve", Permission::Read),
            ("ci", Permission::Write),
        ] {
            forge.add_user(login, perm);
        }
        forge.add_team("shop", "release-managers", &["alice", "bob", "carol"]);
        Self {
            forge,
            dir: tempfile::tempdir().unwrap(),
            passes: 0,
            releases: BTreeMap::new(),
            deployments: BTreeMap::new(),
            now: tuesday_morning(),
            options: GitHubOptions::default(),
            app_auth: false,
        }
    }

    /// A brand-new engine, as after a restart: a fresh clone and a fresh client.
    pub fn engine(&mut self) -> Engine<GitHubForge> {
        self.passes += 1;
        let token = Secret::new(self.forge.bot_token());
        let repo = ConfigRepo::open(
            &self.dir.path().join(format!("clone-{}", self.passes)),
            Remote {
                url: self.forge.git_url(OWNER, REPO),
                branch: "main".into(),
                auth: Auth::Token(token.clone()),
            },
            Identity::default(),
        )
        .unwrap();
        let forge = GitHubForge::new(
            &self.forge.url(),
            "shop/config",
            GitHubAuth::Token(token),
            self.forge.bot_login(),
            self.options.clone(),
        )
        .unwrap();
        Engine::new(forge, repo)
    }

    /// A brand-new engine acting as the GitHub App, built as `baton run` builds it: the forge
    /// asks GitHub who it is (`GET /app`), and Git uses the installation token.
    pub async fn app_engine(&mut self) -> Engine<GitHubForge> {
        self.passes += 1;
        let key = self.dir.path().join("app-key.pem");
        std::fs::write(&key, APP_KEY).unwrap();
        let config = baton::config::runtime::GitHubConfig {
            api_url: self.forge.url(),
            app: Some(baton::config::runtime::GitHubApp {
                app_id: 4242,
                installation_id: 77,
                private_key: baton::config::secret::SecretRef::from_file(&key),
            }),
            ..Default::default()
        };
        let forge = GitHubForge::connect_with(&config, "shop/config", self.options.clone())
            .await
            .unwrap();
        let repo = ConfigRepo::open(
            &self.dir.path().join(format!("clone-{}", self.passes)),
            Remote {
                url: self.forge.git_url(OWNER, REPO),
                branch: "main".into(),
                auth: forge.git_auth(),
            },
            Identity::default(),
        )
        .unwrap();
        Engine::new(forge, repo)
    }

    /// One promotion pass on a new engine; panics if it fails.
    pub async fn pass(&mut self) -> Vec<Outcome> {
        let engine = if self.app_auth {
            self.app_engine().await
        } else {
            self.engine()
        };
        engine
            .run_once(&self.releases, &self.deployments, self.now)
            .await
            .unwrap()
    }

    /// The registry's newest blessed release of `app` is now `tag` (digest derived from it).
    pub fn release(&mut self, app: &str, tag: &str) -> Digest {
        let digest = Digest::of(format!("{app}:{tag}").as_bytes());
        self.releases.insert(
            app.into(),
            Release {
                tag: Some(tag.into()),
                digest: digest.clone(),
            },
        );
        digest
    }

    /// `env` runs `digest` of `app`, healthy for `since`.
    pub fn healthy(&mut self, env: &str, app: &str, digest: &Digest, since: Duration) {
        self.deployments.insert(
            (env.into(), app.into()),
            Deployment {
                env: env.into(),
                app: app.into(),
                digest: digest.clone(),
                state: DeployState::Healthy,
                healthy_since: Some(self.now - since),
            },
        );
    }

    /// Every open pull request.
    pub fn open_prs(&self) -> Vec<PullView> {
        self.forge
            .pulls(OWNER, REPO)
            .into_iter()
            .filter(|p| p.open)
            .collect()
    }

    /// The open pull requests from branch `head`.
    pub fn open_prs_from(&self, head: &str) -> Vec<PullView> {
        self.open_prs()
            .into_iter()
            .filter(|p| p.head_ref == head)
            .collect()
    }

    /// The one open PR of `app` to `env`; panics unless there is exactly one.
    pub fn pr_for(&self, env: &str, app: &str) -> PullView {
        let head = format!("baton/{env}/{app}");
        let mut prs = self.open_prs_from(&head);
        assert_eq!(
            prs.len(),
            1,
            "expected exactly one open PR for {head}: {prs:?}"
        );
        prs.remove(0)
    }

    /// A file on the config branch.
    pub fn main_file(&self, path: &str) -> String {
        git(
            &self.forge.repo_path(OWNER, REPO),
            &["show", &format!("main:{path}")],
        )
    }

    /// The trailers of the config branch tip.
    pub fn last_promotion(&self) -> Promotion {
        let msg = git(
            &self.forge.repo_path(OWNER, REPO),
            &["log", "-1", "--format=%B", "main"],
        );
        Promotion::parse(&msg).unwrap_or_else(|| panic!("no trailers in {msg}"))
    }

    /// Every promotion commit on the config branch, newest first.
    pub fn promotions(&self) -> Vec<Promotion> {
        git(
            &self.forge.repo_path(OWNER, REPO),
            &["log", "--format=%B%x00", "main"],
        )
        .split('\0')
        .filter_map(Promotion::parse)
        .collect()
    }

    /// Calls that change something, by route (a Git fetch is a POST to git-upload-pack but
    /// reads).
    pub fn write_calls(&self) -> BTreeMap<String, u64> {
        self.forge
            .calls()
            .into_iter()
            .filter(|(k, _)| !k.starts_with("GET ") && !k.ends_with("/git-upload-pack"))
            .collect()
    }

    /// How many calls changed something.
    pub fn writes(&self) -> u64 {
        self.write_calls().values().sum()
    }

    /// `who` comments `body` on `pr`; the comment id.
    /// CI's `baton/validate` passes on `sha`.
    pub fn validate_passes(&self, sha: &str) {
        self.forge
            .set_status_as("ci", OWNER, REPO, sha, "baton/validate", "success")
            .unwrap();
    }

    /// Walk web 1.5.0 through dev and staging (soaked, checks green) so that prod has a PR,
    /// whose checks are green too.
    pub async fn walk_to_prod(&mut self) -> (Digest, PullView) {
        let v = self.release("web", "1.5.0");
        self.pass().await;
        self.pass().await;
        self.healthy("dev", "web", &v, Duration::minutes(15));
        self.pass().await;
        let staging = self.pr_for("staging", "web");
        self.validate_passes(&staging.head_sha);
        self.pass().await;
        self.healthy("staging", "web", &v, Duration::hours(2));
        self.pass().await;
        let prod = self.pr_for("prod", "web");
        self.validate_passes(&prod.head_sha);
        (v, prod)
    }

    pub fn comment(&self, who: &str, pr: u64, body: &str) -> u64 {
        self.forge.comment_as(who, OWNER, REPO, pr, body).unwrap()
    }

    /// The bot's comments on `pr`, oldest first.
    pub fn bot_comments(&self, pr: u64) -> Vec<String> {
        let bot = self.forge.bot_login();
        self.forge
            .comments(OWNER, REPO, pr)
            .into_iter()
            .filter(|c| c.user == bot)
            .map(|c| c.body)
            .collect()
    }

    /// The bot's comments on `pr` other than its status comment: its answers.
    pub fn replies(&self, pr: u64) -> Vec<String> {
        self.bot_comments(pr)
            .into_iter()
            .filter(|b| !b.starts_with(STATUS_MARKER))
            .collect()
    }

    /// The bot's status comment on `pr`; panics unless there is exactly one.
    pub fn status_comment(&self, pr: u64) -> String {
        let mut status: Vec<String> = self
            .bot_comments(pr)
            .into_iter()
            .filter(|b| b.starts_with(STATUS_MARKER))
            .collect();
        assert_eq!(status.len(), 1, "one status comment on #{pr}: {status:?}");
        status.remove(0)
    }

    /// The timeline of `pr`'s status comment.
    pub fn timeline(&self, pr: u64) -> Vec<String> {
        baton::engine::text::timeline(&self.status_comment(pr))
    }
}
