//! `baton sandbox`: the whole product on a laptop, with no GitHub token and no cluster. It
//! starts the `sim` stand-ins in-process (GitHub with Git hosting, a Kubernetes API server,
//! an OCI registry), seeds a config repo from the project's own example (`apps/`,
//! `environments/`, `policies/`), writes a `baton.yaml` pointing at them, and runs the same
//! service `baton run` runs. `--demo` then plays a release through every environment
//! ([`demo`]).
//!
//! The stand-ins are real HTTP servers on 127.0.0.1; baton talks to them with its production
//! clients (octocrab, git2, kube, reqwest), exactly as it would to GitHub and a cluster.

pub mod cluster;
pub mod demo;
pub mod example;

pub use cluster::SandboxCluster;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::RuntimeConfig;
use crate::gitrepo::bump;
use crate::gitrepo::files::FsFiles;
use crate::image::Pinned;

/// The config repo's owner and name on the GitHub stand-in.
pub const OWNER: &str = "shop";
pub const REPO: &str = "config";
/// People on the GitHub stand-in: release managers (team `shop/release-managers`).
pub const RELEASE_MANAGERS: [&str; 2] = ["alice", "bob"];

/// Sandbox settings.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Where baton's server listens (port 0: any free port).
    pub listen: SocketAddr,
    /// The soak of staging and prod (the example's 10m and 1h, shortened).
    pub soak: Duration,
    /// Keep files here instead of a temporary directory (kept after exit).
    pub dir: Option<PathBuf>,
    /// Run a real control plane from this directory of binaries (`scripts/kube-assets`)
    /// instead of the Kubernetes stand-in.
    pub kube_assets: Option<PathBuf>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".parse().expect("literal address"),
            soak: Duration::from_secs(3),
            dir: None,
            kube_assets: None,
        }
    }
}

/// Why the sandbox could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start the {what} stand-in: {source}")]
    Start {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Seed(String),
    #[error("cannot start the real control plane: {0}")]
    ControlPlane(String),
    #[error(transparent)]
    Service(#[from] crate::service::ServiceError),
}

/// The running stand-ins and the files the sandbox wrote.
pub struct Sandbox {
    pub forge: sim::forge::Forge,
    pub cluster: SandboxCluster,
    pub registry: sim::registry::Registry,
    /// `baton.yaml`, the kubeconfig, secrets and baton's workdir live here.
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub config_file: PathBuf,
    pub config: RuntimeConfig,
    /// The GitHub webhook secret shared by the stand-in and baton.
    webhook_secret: String,
    /// The digests the environments start on: `app → digest`.
    pub initial: std::collections::BTreeMap<String, String>,
}

/// An image config blob: unique per (repo, tag), with the creation time the `newest: created`
/// blessing rule reads.
pub fn image_config(repo: &str, tag: &str, created: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    let digest = crate::image::Digest::of(format!("{repo}@{tag}").as_bytes()).to_string();
    let revision = &digest["sha256:".len().."sha256:".len() + 40];
    serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "config": { "Labels": {
            "org.opencontainers.image.source": format!("https://github.com/{repo}"),
            "org.opencontainers.image.version": tag,
            // A made-up commit, as CI would stamp the real one.
            "org.opencontainers.image.revision": revision,
        }},
        "rootfs": { "type": "layers", "diff_ids": [] },
    })
    .to_string()
    .into_bytes()
}

impl Sandbox {
    /// Start the stand-ins and seed them with the example config repo. Baton itself is not
    /// started yet.
    pub async fn start(options: &SandboxOptions) -> Result<Self, SandboxError> {
        let soak = options.soak;
        Self::start_with(options, move |registry, seed| {
            // Images the environments start on (and prod's copies, as copyTo would have made).
            let created = chrono::Utc::now() - chrono::Duration::days(1);
            let mut initial = std::collections::BTreeMap::new();
            for (app, tag) in [("web", "1.0.0"), ("worker", "release-2.0.0")] {
                let config = image_config(&format!("shop/{app}"), tag, created);
                let layer = format!("{app} {tag}");
                let digest =
                    registry.push_image(&format!("shop/{app}"), tag, &config, &[layer.as_bytes()]);
                registry.push_image(
                    &format!("prod-shop/{app}"),
                    tag,
                    &config,
                    &[layer.as_bytes()],
                );
                initial.insert(app.to_string(), digest);
            }
            seed_files(seed, &registry.host(), soak, &initial)?;
            Ok(initial)
        })
        .await
    }

    /// Start the stand-ins; `seed` pushes images to the registry and writes the config repo's
    /// files into the directory it is given, and returns the digests apps start on.
    pub async fn start_with(
        options: &SandboxOptions,
        seed: impl FnOnce(
            &sim::registry::Registry,
            &Path,
        ) -> Result<std::collections::BTreeMap<String, String>, SandboxError>,
    ) -> Result<Self, SandboxError> {
        crate::tls::install_crypto_provider();
        let (dir, tmp) = match &options.dir {
            Some(d) => {
                std::fs::create_dir_all(d).map_err(|e| SandboxError::Seed(e.to_string()))?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("baton-sandbox-")
                    .tempdir()
                    .map_err(|e| SandboxError::Seed(e.to_string()))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let forge = sim::forge::Forge::start_with(sim::forge::ForgeOptions {
            root: Some(dir.join("github")),
            ..Default::default()
        })
        .await
        .map_err(|source| SandboxError::Start {
            what: "GitHub",
            source,
        })?;
        let cluster = SandboxCluster::start(options.kube_assets.as_deref()).await?;
        let registry =
            sim::registry::Registry::start()
                .await
                .map_err(|source| SandboxError::Start {
                    what: "registry",
                    source,
                })?;

        let seed_dir = dir.join("seed");
        let initial = seed(&registry, &seed_dir)?;
        if cluster.is_real() {
            real_cluster_timings(&seed_dir)?;
        }
        let files = read_tree(&seed_dir)?;
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        forge
            .create_repo_with_files(OWNER, REPO, "main", &refs)
            .map_err(|e| SandboxError::Seed(format!("cannot create {OWNER}/{REPO}: {e:?}")))?;
        for person in RELEASE_MANAGERS {
            forge.add_user(person, sim::forge::Permission::Write);
        }
        forge.add_user("carol", sim::forge::Permission::Read);
        forge.add_team(OWNER, "release-managers", &RELEASE_MANAGERS);

        // baton.yaml, as a user would write it, with secrets in files.
        let webhook_secret = "sandbox-webhook-secret".to_string();
        let write = |name: &str, text: &str| -> Result<PathBuf, SandboxError> {
            let p = dir.join(name);
            std::fs::write(&p, text)
                .map_err(|e| SandboxError::Seed(format!("{}: {e}", p.display())))?;
            Ok(p)
        };
        let token_file = write("github-token", &forge.bot_token())?;
        let secret_file = write("webhook-secret", &webhook_secret)?;
        let kubeconfig = write("kubeconfig", &cluster.kubeconfig())?;
        let clusters: Vec<String> = crate::config::Pipeline::load(&seed_dir)
            .map_err(|e| SandboxError::Seed(format!("the seeded pipeline: {e}")))?
            .pipeline
            .environments
            .iter()
            .map(|e| e.cluster().to_string())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let yaml = format!(
            "# Written by `baton sandbox`: baton against local stand-ins.\n\
             repo:\n  url: {url}\n  branch: main\n\
             github:\n  apiUrl: {api}\n  repository: {OWNER}/{REPO}\n  token: {{ file: {token} }}\n  webhookSecret: {{ file: {secret} }}\n  botLogin: {bot}\n\
             clusters:\n{clusters}\
             listen: {listen}\n\
             intervals:\n  registry: 5s\n  plan: 2s\n  resync: 30s\n\
             workdir: {workdir}\n",
            url = forge.git_url(OWNER, REPO),
            api = forge.url(),
            token = token_file.display(),
            secret = secret_file.display(),
            bot = forge.bot_login(),
            clusters = clusters
                .iter()
                .map(|c| format!("  {c}:\n    kubeconfig: {}\n", kubeconfig.display()))
                .collect::<String>(),
            listen = options.listen,
            workdir = dir.join("work").display(),
        );
        let config_file = write("baton.yaml", &yaml)?;
        let config = RuntimeConfig::parse(&config_file.display().to_string(), &yaml, [])
            .map_err(|e| SandboxError::Seed(format!("the sandbox's baton.yaml: {e}")))?;
        Ok(Self {
            forge,
            cluster,
            registry,
            dir,
            _tmp: tmp,
            config_file,
            config,
            webhook_secret,
            initial,
        })
    }

    /// Start baton against the stand-ins, and point their webhooks at it.
    pub async fn start_baton(
        &self,
        options: crate::service::RunOptions,
    ) -> Result<crate::service::Service, SandboxError> {
        let service = crate::service::Service::start(self.config.clone(), options).await?;
        self.connect(service.local_addr());
        Ok(service)
    }

    /// Point the stand-ins' webhooks (GitHub events, registry pushes) at a baton listening on
    /// `addr`: in this process, or a `baton run` started with the sandbox's `baton.yaml`.
    pub fn connect(&self, addr: SocketAddr) {
        self.forge.add_webhook(
            &format!("http://{addr}/webhooks/github"),
            &self.webhook_secret,
        );
        self.registry
            .set_notify_url(Some(&format!("http://{addr}/webhooks/registry")));
    }

    /// The stand-in's REST URL listing the config repo's pull requests.
    pub fn pulls_url(&self) -> String {
        format!("{}/repos/{OWNER}/{REPO}/pulls?state=all", self.forge.url())
    }

    /// Push `repo:tag` (a new image) to the registry stand-in; returns its digest.
    pub fn push(&self, app: &str, tag: &str) -> String {
        let config = image_config(&format!("shop/{app}"), tag, chrono::Utc::now());
        let layer = format!("{app} {tag}");
        self.registry
            .push_image(&format!("shop/{app}"), tag, &config, &[layer.as_bytes()])
    }
}

/// Replace `from` with `to` in `text`, failing when `from` is missing (the example changed and
/// the sandbox must follow).
/// On a real cluster a failed rollout is declared by the Deployment controller after the
/// Deployment's `progressDeadlineSeconds` (600 by default): shorten it to 10 s, as the stand-in's
/// 3 s deadline does, so the demo's broken release fails in seconds.
fn real_cluster_timings(seed: &Path) -> Result<(), SandboxError> {
    for app in ["web", "worker"] {
        let file = seed.join("apps").join(app).join("deployment.yaml");
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let edited = replace(
            &file.display().to_string(),
            &text,
            "\nspec:\n",
            "\nspec:\n  progressDeadlineSeconds: 10\n",
        )?;
        std::fs::write(&file, edited)
            .map_err(|e| SandboxError::Seed(format!("{}: {e}", file.display())))?;
    }
    Ok(())
}

fn replace(file: &str, text: &str, from: &str, to: &str) -> Result<String, SandboxError> {
    if !text.contains(from) {
        return Err(SandboxError::Seed(format!(
            "{file}: the sandbox expected {from:?} in the example; update src/sandbox/mod.rs"
        )));
    }
    Ok(text.replace(from, to))
}

/// Write the example config repo to `seed`, adapted to the stand-ins: images in the local
/// registry, soaks shortened, prod's windows, freezes and weekend rule lifted (so that the
/// demo runs at any hour), worker's signature check off (the sandbox has no CI key), dev
/// rolling back a failed rollout, and every environment pinned to the `initial` digests.
pub fn seed_files(
    seed: &Path,
    registry_host: &str,
    soak: Duration,
    initial: &std::collections::BTreeMap<String, String>,
) -> Result<(), SandboxError> {
    let soak = crate::config::HumanDuration(soak).to_string();
    for (path, text) in example::FILES {
        let mut text = text
            .replace(
                "prod-registry.example.com/shop",
                &format!("{registry_host}/prod-shop"),
            )
            .replace(
                "registry.example.com/shop",
                &format!("{registry_host}/shop"),
            );
        if *path == "policies/pipeline.yaml" {
            text = replace(path, &text, "soak: 10m", &format!("soak: {soak}"))?;
            text = replace(path, &text, "soak: 1h", &format!("soak: {soak}"))?;
            text = replace(
                path,
                &text,
                "    windows: [\"0 9 * * MON-THU for 7h in Europe/Berlin\"]\n",
                "",
            )?;
            text = replace(
                path,
                &text,
                "    freezes:\n      - { from: 2026-12-20, to: 2027-01-04, reason: holidays, timeZone: Europe/Berlin }\n",
                "",
            )?;
            text = replace(path, &text, "    verify: { cosignKey: keys/ci.pub }\n", "")?;
            text = replace(
                path,
                &text,
                "    cluster: dev\n    autoMerge: true\n",
                "    cluster: dev\n    autoMerge: true\n    onFailure: rollback\n",
            )?;
        }
        if *path == "policies/promotion.rego" {
            let start = text
                .find("deny contains msg if {\n\tinput.environment == \"prod\"\n\tinput.weekday")
                .ok_or_else(|| {
                    SandboxError::Seed(format!(
                        "{path}: the weekend rule moved; update src/sandbox/mod.rs"
                    ))
                })?;
            text.truncate(start);
        }
        let dest = seed.join(path);
        std::fs::create_dir_all(dest.parent().expect("a file path"))
            .and_then(|_| std::fs::write(&dest, text))
            .map_err(|e| SandboxError::Seed(format!("{}: {e}", dest.display())))?;
    }
    let loaded = crate::config::Pipeline::load(seed)
        .map_err(|e| SandboxError::Seed(format!("the sandbox pipeline: {e}")))?;
    for env in &loaded.pipeline.environments {
        for (app, digest) in initial {
            let tag = if app == "web" {
                "1.0.0"
            } else {
                "release-2.0.0"
            };
            let pinned: Pinned = format!("{tag}@{digest}")
                .parse()
                .map_err(|e| SandboxError::Seed(format!("{e}")))?;
            let change = bump::plan(&FsFiles(seed), &loaded.pipeline, &env.name, app, &pinned)
                .map_err(|e| SandboxError::Seed(format!("pin {app} in {}: {e}", env.name)))?;
            change
                .write(seed)
                .map_err(|e| SandboxError::Seed(format!("pin {app} in {}: {e}", env.name)))?;
        }
    }
    let problems = crate::config::validate::validate_repo(seed);
    if !problems.is_empty() {
        return Err(SandboxError::Seed(format!(
            "the sandbox's config repo does not validate:\n{}",
            problems
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        )));
    }
    Ok(())
}

fn read_tree(root: &Path) -> Result<Vec<(String, String)>, SandboxError> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| SandboxError::Seed(format!("{}: {e}", dir.display())))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| SandboxError::Seed(format!("{}: {e}", p.display())))?;
                let rel = p
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, text));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeded_config_repo_validates_and_pins_the_initial_digests_everywhere() {
        let dir = tempfile::tempdir().unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        let initial = [
            ("web".to_string(), digest.clone()),
            ("worker".to_string(), digest.clone()),
        ]
        .into_iter()
        .collect();
        seed_files(
            dir.path(),
            "127.0.0.1:5000",
            Duration::from_secs(3),
            &initial,
        )
        .unwrap();
        let pipeline = std::fs::read_to_string(dir.path().join("policies/pipeline.yaml")).unwrap();
        assert!(
            pipeline.contains("image: 127.0.0.1:5000/shop/web"),
            "{pipeline}"
        );
        assert!(!pipeline.contains("windows:"), "{pipeline}");
        assert!(pipeline.contains("soak: 3s"), "{pipeline}");
        let prod = std::fs::read_to_string(dir.path().join("environments/prod/kustomization.yaml"))
            .unwrap();
        assert!(
            prod.contains("newName: 127.0.0.1:5000/prod-shop/web"),
            "{prod}"
        );
        assert_eq!(prod.matches(&digest).count(), 2, "{prod}");
        let rego = std::fs::read_to_string(dir.path().join("policies/promotion.rego")).unwrap();
        assert!(!rego.contains("weekday"), "{rego}");
        assert!(rego.contains("release tag"), "{rego}");
    }
}
