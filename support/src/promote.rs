//! The promotion world of the scenario tests and the promotion bench: the GitHub stand-in
//! holding the example config repo, the people and teams its pipeline names, a registry
//! stand-in holding the releases (the example's images moved there: `<registry>/shop/<app>`,
//! prod's `copyTo` `<registry>/prod-shop`), the registry's newest releases and the reconciler's
//! deployments as plain values, and a brand-new engine (fresh client; a fresh clone unless asked
//! to keep the last workdir) for every pass, as after a restart.
//!
//! The invariant after every pass: every image the config branch pins for any environment
//! (rendered, as the reconciler would apply it) resolves in its registry. Prod's copies are
//! never pushed by the world: the copies the example starts with are made once by baton's own
//! pre-apply step ([`baton::engine::copy::Copier::ensure_pinned`]), as a reconciler does on
//! its first start, and every later one by the engine before its merge.

use std::collections::BTreeMap;
use std::sync::Arc;

use baton::config::Secret;
use baton::engine::{Engine, Outcome};
use baton::forge::github::{GitHubAuth, GitHubForge, GitHubOptions};
use baton::gitrepo::repo::{Auth, ConfigRepo, Identity, Remote};
use baton::gitrepo::trailers::Promotion;
use baton::image::Digest;
use baton::promote::plan::Release;
use baton::promote::state::{DeployState, Deployment};
use chrono::{DateTime, Duration, TimeZone, Utc};
use sim::forge::{Forge, ForgeOptions, Permission, PullView, ReviewState};

use baton::engine::copy::{Copier, pinned_routes};
use baton::gitrepo::files::FsFiles;
use baton::registry::RegistryClient;
use baton::sandbox::demo::{container_images, head_image};

use crate::example::{example_files, git, seed_repo};

/// Push `shop/<app>:<tag>` (content derived from both) to the registry; its digest.
pub fn push_image(registry: &sim::registry::Registry, app: &str, tag: &str) -> String {
    let repo = format!("shop/{app}");
    let created = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let config = baton::sandbox::image_config(&repo, tag, created);
    let layer = format!("{app} {tag}");
    registry.push_image(&repo, tag, &config, &[layer.as_bytes()])
}

/// The example pins made-up digests; push each pinned `app:tag` to the registry and pin the
/// digest it got instead (the tags stay as the example has them).
fn repin_to_pushed_images(
    registry: &sim::registry::Registry,
    mut files: Vec<(String, String)>,
) -> Vec<(String, String)> {
    let re = regex::Regex::new(
        r#"(?m)^(\s*- name: [^\n]*/shop/(\w+)\n(?:\s+newName: [^\n]*\n)?\s+newTag: "?([^"\n]+)"?\n\s+digest: )(sha256:[0-9a-f]{64})"#,
    )
    .unwrap();
    for (path, text) in &mut files {
        if !path.ends_with("kustomization.yaml") || !path.starts_with("environments/") {
            continue;
        }
        *text = re
            .replace_all(text, |c: &regex::Captures| {
                format!("{}{}", &c[1], push_image(registry, &c[2], &c[3]))
            })
            .into_owned();
    }
    files
}

pub const OWNER: &str = "shop";
pub const REPO: &str = "config";
pub const STATUS_MARKER: &str = "<!-- baton:status -->";

/// Tuesday 2026-11-24 10:00 in Berlin: inside prod's window, outside the freeze.
pub fn tuesday_morning() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap()
}

/// Where a new engine keeps its clone of the config repo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workdir {
    /// A new, empty directory: a full clone, as a new process on a new volume.
    New,
    /// The directory the previous engine used: a fetch, as a restarted process.
    Kept,
}

pub struct World {
    pub forge: Forge,
    pub registry: sim::registry::Registry,
    pub dir: tempfile::TempDir,
    /// Workdirs made so far; the last one is [`Workdir::Kept`].
    pub workdirs: usize,
    pub releases: BTreeMap<String, Release>,
    pub deployments: BTreeMap<(String, String), Deployment>,
    pub now: DateTime<Utc>,
    /// The GitHub client options of every engine built from now on.
    pub options: GitHubOptions,
    /// Passes run as the GitHub App (installation tokens for REST and Git, the login asked of
    /// GitHub) instead of with the bot's fixed token.
    pub app_auth: bool,
    /// The key token-auth engines sign their commits with (`repo.signingKey`).
    pub signer: Option<baton::gitrepo::sign::CommitSigner>,
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
        Self::with_files_on(options, &files).await
    }

    /// A config repo of `files` (repo-relative path, text), with the example's people; the
    /// example's registries are moved to the world's registry stand-in and every pinned release
    /// is pushed there.
    pub async fn with_files(files: &[(String, String)]) -> Self {
        Self::with_files_on(ForgeOptions::default(), files).await
    }

    /// [`World::with_files`] on a stand-in started with `options`.
    pub async fn with_files_on(options: ForgeOptions, files: &[(String, String)]) -> Self {
        baton::tls::install_crypto_provider();
        let forge = Forge::start_with(options).await.unwrap();
        let registry = sim::registry::Registry::start().await.unwrap();
        let host = registry.host();
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(p, t)| {
                let t = t
                    .replace(
                        "prod-registry.example.com/shop",
                        &format!("{host}/prod-shop"),
                    )
                    .replace("registry.example.com/shop", &format!("{host}/shop"));
                (p.clone(), t)
            })
            .collect();
        let files = repin_to_pushed_images(&registry, files);
        seed_repo(&forge, OWNER, REPO, &files);
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
        let w = Self {
            forge,
            registry,
            dir: tempfile::tempdir().unwrap(),
            workdirs: 0,
            releases: BTreeMap::new(),
            deployments: BTreeMap::new(),
            now: tuesday_morning(),
            options: GitHubOptions::default(),
            app_auth: false,
            signer: None,
        };
        w.copy_pinned_images().await;
        w.assert_images_resolve().await;
        w
    }
    /// A registry client for the world's registry stand-in, as after a restart.
    pub fn copier(&self) -> Arc<Copier> {
        Arc::new(Copier::new(RegistryClient::anonymous()))
    }

    /// What a reconciler does before it applies an environment with `copyTo`: copy what the
    /// config branch pins there and the target lacks (baton's own code path).
    pub async fn copy_pinned_images(&self) {
        let tree = self.export_main();
        let pipeline = baton::config::Pipeline::load(tree.path()).unwrap().pipeline;
        let copier = self.copier();
        for env in &pipeline.environments {
            let pins = pinned_routes(&pipeline, &FsFiles(tree.path()), &env.name).unwrap();
            copier.ensure_pinned(&env.name, &pins).await.unwrap();
        }
    }

    /// The config branch exported to a temporary directory.
    fn export_main(&self) -> tempfile::TempDir {
        let out = tempfile::tempdir().unwrap();
        let archive = std::process::Command::new("git")
            .args(["archive", "--format=tar", "main"])
            .current_dir(self.forge.repo_path(OWNER, REPO))
            .output()
            .unwrap();
        assert!(archive.status.success());
        let mut tar = std::process::Command::new("tar")
            .args(["-x", "-C"])
            .arg(out.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        tar.stdin
            .take()
            .unwrap()
            .write_all(&archive.stdout)
            .unwrap();
        assert!(tar.wait().unwrap().success());
        out
    }

    /// Every image reference the config branch's environments render to (what the
    /// reconcilers apply) that does not resolve in its registry.
    pub async fn unresolved_images(&self) -> Vec<String> {
        let tree = self.export_main();
        let pipeline = baton::config::Pipeline::load(tree.path()).unwrap().pipeline;
        let mut images = std::collections::BTreeSet::new();
        for env in &pipeline.environments {
            for object in baton::render::render(tree.path(), &env.path()).unwrap() {
                images.extend(container_images(&object.value));
            }
        }
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        for image in &images {
            if let Err(why) = head_image(&http, image).await {
                out.push(format!("{image}: {why}"));
            }
        }
        out
    }

    /// The invariant after every step: nothing the config branch pins is missing.
    pub async fn assert_images_resolve(&self) {
        let unresolved = self.unresolved_images().await;
        assert!(
            unresolved.is_empty(),
            "pinned on the config branch but not in the registry: {unresolved:#?}"
        );
    }

    /// A brand-new engine, as after a restart: a fresh clone and a fresh client.
    pub fn engine(&mut self) -> Engine<GitHubForge> {
        self.engine_in(Workdir::New)
    }

    /// A brand-new engine (fresh client) whose clone is in `workdir`.
    pub fn engine_in(&mut self, workdir: Workdir) -> Engine<GitHubForge> {
        if workdir == Workdir::New || self.workdirs == 0 {
            self.workdirs += 1;
        }
        let token = Secret::new(self.forge.bot_token());
        let repo = ConfigRepo::open(
            &self.dir.path().join(format!("clone-{}", self.workdirs)),
            Remote {
                url: self.forge.git_url(OWNER, REPO),
                branch: "main".into(),
                auth: Auth::Token(token.clone()),
            },
            Identity::default(),
        )
        .unwrap()
        .with_signer(self.signer.clone());
        let forge = GitHubForge::new(
            &self.forge.url(),
            &format!("{OWNER}/{REPO}"),
            GitHubAuth::Token(token),
            self.forge.bot_login(),
            self.options.clone(),
        )
        .unwrap();
        Engine::new(forge, repo).with_copier(self.copier())
    }

    /// A brand-new engine acting as the GitHub App, built as `baton run` builds it: the forge
    /// asks GitHub who it is (`GET /app`), and Git uses the installation token.
    pub async fn app_engine(&mut self) -> Engine<GitHubForge> {
        self.workdirs += 1;
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
        let forge =
            GitHubForge::connect_with(&config, &format!("{OWNER}/{REPO}"), self.options.clone())
                .await
                .unwrap();
        let repo = ConfigRepo::open(
            &self.dir.path().join(format!("clone-{}", self.workdirs)),
            Remote {
                url: self.forge.git_url(OWNER, REPO),
                branch: "main".into(),
                auth: forge.git_auth(),
            },
            Identity::default(),
        )
        .unwrap();
        Engine::new(forge, repo).with_copier(self.copier())
    }

    /// One promotion pass of `engine` on the world's releases, deployments and clock; panics
    /// if it fails.
    pub async fn run(&self, engine: &Engine<GitHubForge>) -> Vec<Outcome> {
        let out = engine
            .run_once(&self.releases, &self.deployments, self.now)
            .await
            .unwrap();
        self.assert_images_resolve().await;
        out
    }

    /// One promotion pass on a new engine with a fresh clone; panics if it fails.
    pub async fn pass(&mut self) -> Vec<Outcome> {
        self.pass_in(Workdir::New).await
    }

    /// One promotion pass on a new engine whose clone is in `workdir`; panics if it fails.
    pub async fn pass_in(&mut self, workdir: Workdir) -> Vec<Outcome> {
        let engine = if self.app_auth {
            self.app_engine().await
        } else {
            self.engine_in(workdir)
        };
        self.run(&engine).await
    }

    /// CI pushes `tag` of `app` to the registry and it becomes the newest blessed release.
    pub fn release(&mut self, app: &str, tag: &str) -> Digest {
        let digest: Digest = push_image(&self.registry, app, tag).parse().unwrap();
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
                restarted: None,
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

    /// Every promotion the config branch records, newest commit first (a group's commit
    /// records one per member, in its order).
    pub fn promotions(&self) -> Vec<Promotion> {
        git(
            &self.forge.repo_path(OWNER, REPO),
            &["log", "--first-parent", "--format=%B%x00", "main"],
        )
        .split('\0')
        .flat_map(Promotion::parse_all)
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

    /// `who` approves `pr` at its head.
    pub fn approve(&self, who: &str, pr: u64) {
        self.forge
            .review_as(who, OWNER, REPO, pr, ReviewState::Approved, "")
            .unwrap();
    }

    /// The two release managers prod needs (alice and bob) approve `pr`.
    pub fn team_approves(&self, pr: u64) {
        for who in ["alice", "bob"] {
            self.approve(who, pr);
        }
    }

    /// `who` comments `body` on `pr`; the comment id.
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

/// The example config repo with web and worker in one release train (`groups: shop`) and a
/// third app, api, on its own. Its pins are made up here and pushed to the registry stand-in
/// by the world, like the example's.
pub fn grouped_example() -> Vec<(String, String)> {
    let api = |new_name: bool| {
        format!(
            "images:\n  - name: registry.example.com/shop/api\n{}    newTag: \"1.0.0\"\n    digest: sha256:{}\n",
            if new_name {
                "    newName: prod-registry.example.com/shop/api\n"
            } else {
                ""
            },
            "0".repeat(64)
        )
    };
    example_files()
        .into_iter()
        .map(|(path, text)| {
            let text = match path.as_str() {
                "policies/pipeline.yaml" => text.replacen(
                    "\nenvironments:\n",
                    "  api:\n    image: registry.example.com/shop/api\n    bless: { semver: \">=1.0.0\" }\n\ngroups:\n  shop: { apps: [web, worker] }\n\nenvironments:\n",
                    1,
                ),
                "environments/prod/kustomization.yaml" => text.replacen("images:\n", &api(true), 1),
                p if p.starts_with("environments/") && p.ends_with("/kustomization.yaml") => {
                    text.replacen("images:\n", &api(false), 1)
                }
                _ => text,
            };
            (path, text)
        })
        .collect()
}

/// Whether a pass merged a PR to `env`.
pub fn merged(out: &[Outcome], env: &str) -> bool {
    out.iter()
        .any(|o| matches!(o, Outcome::Merged { env: e, .. } if e == env))
}

/// How many PRs to `env` a pass opened.
pub fn opened(out: &[Outcome], env: &str) -> usize {
    out.iter()
        .filter(|o| matches!(o, Outcome::Opened { env: e, .. } if e == env))
        .count()
}

/// Whether a pass left a PR waiting on a gate whose description starts with `gate`.
pub fn waiting_on(out: &[Outcome], gate: &str) -> bool {
    out.iter()
        .any(|o| matches!(o, Outcome::Waiting { blocking, .. } if blocking.starts_with(gate)))
}
