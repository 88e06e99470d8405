//! `copyTo` for real: the engine copies a promotion's image to the environment's registry once
//! every other gate has passed and before the merge, on two real `docker-registry` instances
//! (htpasswd auth on the target). The copies are checked with `oci-client` and cosign's format,
//! never with baton's copy code; nothing in these tests pushes to the target.

mod common;
mod registry_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use baton::config::Secret;
use baton::engine::copy::{Copier, pinned_routes};
use baton::engine::{Engine, Outcome, RollbackRequest, Rolled};
use baton::forge::github::{GitHubAuth, GitHubForge};
use baton::gitrepo::files::FsFiles;
use baton::gitrepo::repo::{Auth, ConfigRepo, Identity, Remote};
use baton::gitrepo::trailers::Promotion;
use baton::prcheck::{CheckOutcome, Checker};
use baton::promote::plan::Release;
use baton::registry::cosign::{self, CosignKey, SignatureStatus, simple_signing_payload};
use baton::registry::{ClientOptions, Credential, CredentialStore, RegistryClient, RetryPolicy};
use chrono::Utc;
use oci_client::secrets::RegistryAuth;
use registry_support::*;
use sim::forge::{Forge, Permission, ReviewState};

const OWNER: &str = "shop";
const REPO: &str = "config";
const USER: &str = "prod-pusher";
const PASSWORD: &str = "prod-registry-password";

/// The source registry (anonymous, CI pushes there), the prod registry (htpasswd), a config
/// repo on the GitHub stand-in whose prod environment copies to the prod registry, and the
/// engine's view of time.
struct World {
    forge: Forge,
    src: TestRegistry,
    dst: TestRegistry,
    /// The prod registry through a proxy that can fail requests (what baton talks to).
    dst_proxy: FaultProxy,
    dst_addr: String,
    dir: tempfile::TempDir,
    passes: usize,
    releases: std::collections::BTreeMap<String, Release>,
    key: p256::ecdsa::SigningKey,
    /// The copier the engines share (one process: its backoff survives passes).
    copier: Arc<Copier>,
}

fn client(password: &str, registry: &str) -> RegistryClient {
    let mut store = CredentialStore::new();
    store.insert(registry, Credential::basic(USER, password));
    RegistryClient::new(
        store,
        ClientOptions {
            retry: RetryPolicy {
                attempts: 1,
                ..RetryPolicy::default()
            },
            ..ClientOptions::default()
        },
    )
}

impl World {
    async fn new() -> Self {
        baton::tls::install_crypto_provider();
        let src = TestRegistry::start();
        let dst = TestRegistry::start_with(RegistryOptions {
            htpasswd: Some((USER.into(), PASSWORD.into())),
            ..RegistryOptions::default()
        });
        let (dst_proxy, dst_addr) = FaultProxy::start(&dst.addr).await;
        let key = signing_key("ci");
        let forge = Forge::start().await.unwrap();
        let mut w = Self {
            forge,
            src,
            dst,
            dst_proxy,
            dst_addr: dst_addr.clone(),
            dir: tempfile::tempdir().unwrap(),
            passes: 0,
            releases: Default::default(),
            key,
            copier: Arc::new(Copier::new(client(PASSWORD, &dst_addr))),
        };
        // What prod runs before the story: 0.9.0, pinned in Git, copied by baton's own
        // pre-apply step below (as the reconciler does before it applies prod).
        let initial = w.push_release("0.9.0", false).await;
        let files = w.repo_files(&initial);
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        w.forge
            .create_repo_with_files(OWNER, REPO, "main", &refs)
            .unwrap();
        w.forge.add_user("alice", Permission::Write);
        w.copy_pinned().await;
        w.assert_pins_resolve().await;
        w
    }

    fn repo_files(&self, initial: &str) -> Vec<(String, String)> {
        let src = self.src.image("team/web");
        let dst = &self.dst_addr;
        vec![
            (
                "policies/pipeline.yaml".into(),
                format!(
                    "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: {src}\n    bless: {{ semver: \">=0.1.0\" }}\n    verify: {{ cosignKey: keys/ci.pub }}\nenvironments:\n  - name: prod\n    path: environments/prod\n    cluster: prod\n    approvals: {{ count: 1 }}\n    copyTo: {dst}/prod\n"
                ),
            ),
            ("keys/ci.pub".into(), public_pem(&self.key)),
            (
                "apps/web/kustomization.yaml".into(),
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n".into(),
            ),
            (
                "apps/web/deployment.yaml".into(),
                format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {{ app: web }}\n  template:\n    metadata:\n      labels: {{ app: web }}\n    spec:\n      containers:\n        - name: web\n          image: {src}\n"
                ),
            ),
            (
                "environments/prod/kustomization.yaml".into(),
                format!(
                    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: shop-prod\nresources:\n  - ../../apps/web\nimages:\n  - name: {src}\n    newName: {dst}/prod/web\n    newTag: \"0.9.0\"\n    digest: {initial}\n"
                ),
            ),
        ]
    }

    /// CI pushes a signed two-platform index `tag` (with an attestation tag and, when asked, an
    /// OCI referrer in the fallback-tag scheme) to the source registry.
    async fn push_release(&mut self, tag: &str, referrer: bool) -> String {
        let push = Pusher::new(&self.src.addr);
        let img = index(&format!("web {tag}"), false, &[]);
        let d = push.push("team/web", tag, &img).await;
        let payload = simple_signing_payload(&d, &self.src.image("team/web"));
        push.push(
            "team/web",
            &cosign::signature_tag(&d),
            &signature_image(&payload, &cosign_sign(&self.key, &payload), None),
        )
        .await;
        let att = image(&format!("attestation of {tag}"), &ImageOpts::default());
        push.push(
            "team/web",
            &format!("{}.att", d.replacen(':', "-", 1)),
            &att,
        )
        .await;
        if referrer {
            let sbom = signature_image(b"an sbom", "bm90IGEgc2lnbmF0dXJl", Some(&img));
            push.push("team/web", &sbom.digest.clone(), &sbom).await;
            let fallback = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [{
                    "mediaType": OCI_MANIFEST,
                    "digest": sbom.digest,
                    "size": sbom.manifest.len(),
                    "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
                }],
            });
            push.push_manifest(
                "team/web",
                &d.replacen(':', "-", 1),
                serde_json::to_vec(&fallback).unwrap().into(),
                OCI_INDEX,
            )
            .await;
        }
        self.releases.insert(
            "web".into(),
            Release {
                tag: Some(tag.into()),
                digest: d.parse().unwrap(),
            },
        );
        d
    }

    /// A fresh clone of the config repo and a GitHub client, as after a restart.
    fn clients(&mut self) -> (ConfigRepo, GitHubForge) {
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
            Default::default(),
        )
        .unwrap();
        (repo, forge)
    }

    fn engine(&mut self) -> Engine<GitHubForge> {
        let (repo, forge) = self.clients();
        Engine::new(forge, repo).with_copier(self.copier.clone())
    }

    /// `baton/validate` on every open PR, with the copy check.
    async fn validate(&mut self) -> Vec<CheckOutcome> {
        let (repo, forge) = self.clients();
        Checker::new(repo)
            .with_copier(self.copier.clone())
            .run_once(&forge)
            .await
            .unwrap()
    }

    async fn pass(&mut self) -> Vec<Outcome> {
        let engine = self.engine();
        let out = engine
            .run_once(&self.releases, &Default::default(), Utc::now())
            .await
            .unwrap();
        self.assert_pins_resolve().await;
        out
    }

    fn main_file(&self, path: &str) -> String {
        common::git(
            &self.forge.repo_path(OWNER, REPO),
            &["show", &format!("main:{path}")],
        )
    }

    fn export_main(&self) -> tempfile::TempDir {
        let out = tempfile::tempdir().unwrap();
        for path in [
            "policies/pipeline.yaml",
            "environments/prod/kustomization.yaml",
            "apps/web/kustomization.yaml",
            "apps/web/deployment.yaml",
        ] {
            let p = out.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, self.main_file(path)).unwrap();
        }
        out
    }

    /// What the reconciler does before it applies prod.
    async fn copy_pinned(&self) {
        let tree = self.export_main();
        let pipeline = baton::config::Pipeline::load(tree.path()).unwrap().pipeline;
        let pins = pinned_routes(&pipeline, &FsFiles(tree.path()), "prod").unwrap();
        self.copier.ensure_pinned("prod", &pins).await.unwrap();
    }

    /// The invariant: every image prod renders to resolves in its registry (checked with
    /// `oci-client` through the real registry, not the proxy).
    async fn assert_pins_resolve(&self) {
        let tree = self.export_main();
        for object in
            baton::render::render(tree.path(), std::path::Path::new("environments/prod")).unwrap()
        {
            for image in baton::sandbox::demo::container_images(&object.value) {
                let digest = image.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap();
                assert!(
                    image.starts_with(&format!("{}/prod/web:", self.dst_addr)),
                    "{image}"
                );
                assert!(
                    self.dst_has(&digest).await,
                    "prod pins {image}, which the prod registry does not have"
                );
            }
        }
    }

    fn target(&self) -> Pusher {
        Pusher::with_auth(
            &self.dst.addr,
            RegistryAuth::Basic(USER.into(), PASSWORD.into()),
        )
    }

    async fn dst_has(&self, digest: &str) -> bool {
        let url = format!("http://{}/v2/prod/web/manifests/{digest}", self.dst.addr);
        let resp = reqwest::Client::new()
            .head(url)
            .basic_auth(USER, Some(PASSWORD))
            .header("accept", format!("{OCI_INDEX}, {OCI_MANIFEST}"))
            .send()
            .await
            .unwrap();
        resp.status().is_success()
    }

    fn pr(&self) -> sim::forge::PullView {
        self.forge
            .pulls(OWNER, REPO)
            .into_iter()
            .filter(|p| p.open)
            .max_by_key(|p| p.number)
            .expect("an open PR")
    }

    fn status(&self, pr: u64) -> String {
        self.forge
            .comments(OWNER, REPO, pr)
            .into_iter()
            .find(|c| c.body.starts_with("<!-- baton:status -->"))
            .map(|c| c.body)
            .unwrap_or_default()
    }

    fn approve(&self, pr: u64) {
        self.forge
            .review_as("alice", OWNER, REPO, pr, ReviewState::Approved, "")
            .unwrap();
    }

    fn last_promotion(&self) -> Promotion {
        let msg = common::git(
            &self.forge.repo_path(OWNER, REPO),
            &["log", "-1", "--format=%B", "main"],
        );
        Promotion::parse(&msg).unwrap_or_else(|| panic!("no trailers in {msg}"))
    }
}

fn merged(out: &[Outcome]) -> bool {
    out.iter().any(|o| matches!(o, Outcome::Merged { .. }))
}

fn blocking(out: &[Outcome]) -> String {
    out.iter()
        .find_map(|o| match o {
            Outcome::Waiting { blocking, .. } => Some(blocking.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_multi_arch_release_is_copied_with_its_signatures_before_the_merge() {
    let mut w = World::new().await;
    let d = w.push_release("1.0.0", true).await;
    let img = index("web 1.0.0", false, &[]);
    assert_eq!(img.digest, d, "the index digest is what is promoted");

    let out = w.pass().await;
    assert!(
        out.iter().any(|o| matches!(o, Outcome::Opened { .. })),
        "{out:?}"
    );
    let pr = w.pr().number;
    // While approvals wait: the copy gate checked the source and the target, copied nothing.
    let out = w.pass().await;
    assert!(blocking(&out).starts_with("approvals"), "{out:?}");
    let status = w.status(pr);
    assert!(
        status.contains("| copy | ✅ passed |") && status.contains("accepts pushes"),
        "{status}"
    );
    let body = w.pr().body.unwrap_or_default();
    assert!(
        body.contains(&format!("**Copy to `{}/prod/web`**", w.dst_addr))
            && body.contains(&format!("{}/team/web@{d}", w.src.addr)),
        "{body}"
    );
    assert!(!w.dst_has(&d).await, "copied before the gates passed");

    w.approve(pr);
    let out = w.pass().await;
    assert!(merged(&out), "{out:?}");

    // Pinned by the index digest, in the prod registry's name.
    let k = w.main_file("environments/prod/kustomization.yaml");
    assert!(
        k.contains(&format!("newName: {}/prod/web", w.dst_addr)) && k.contains(&d),
        "{k}"
    );
    // Checked independently: the index, every platform and every blob, the same bytes.
    let target = w.target();
    let (bytes, at) = target.pull_manifest("prod/web", "1.0.0").await;
    assert_eq!((at.as_str(), &bytes), (d.as_str(), &img.manifest));
    for child in &img.children {
        let (b, _) = target.pull_manifest("prod/web", &child.digest).await;
        assert_eq!(b, child.manifest);
        for blob in &child.blobs {
            assert!(target.blob_exists("prod/web", &digest(blob)).await);
        }
    }
    // The signature over the index verifies on the copy; the attestation and the referrer
    // (listed in the target's fallback index, the target having no referrers API) came along.
    let key = CosignKey::from_pem(&public_pem(&w.key), "keys/ci.pub").unwrap();
    let copy = baton::registry::Repo::new(&w.dst.addr, "prod/web");
    let anon_fails = cosign::verify_image(&RegistryClient::anonymous(), &copy, &d, &key).await;
    assert!(anon_fails.is_err(), "the prod registry needs credentials");
    assert!(matches!(
        cosign::verify_image(&client(PASSWORD, &w.dst.addr), &copy, &d, &key)
            .await
            .unwrap(),
        SignatureStatus::Verified { .. }
    ));
    let hex = d.replacen(':', "-", 1);
    target
        .pull_manifest("prod/web", &format!("{hex}.att"))
        .await;
    let (fallback, _) = target.pull_manifest("prod/web", &hex).await;
    let fallback: serde_json::Value = serde_json::from_slice(&fallback).unwrap();
    assert_eq!(fallback["manifests"].as_array().map(Vec::len), Some(1));

    // The PR says what was copied, from where, and when; so do the timeline and the merge.
    let body = w
        .forge
        .pull(OWNER, REPO, pr)
        .unwrap()
        .body
        .unwrap_or_default();
    assert!(
        body.contains(&format!(
            "**Copied** `{}/team/web@{d}` → `{}/prod/web@{d}` at ",
            w.src.addr, w.dst_addr
        )) && body.contains("platforms linux/amd64, linux/arm64")
            && body.contains("signature copied"),
        "{body}"
    );
    let status = w.status(pr);
    let copied = status.find("- copied `");
    let merged_at = status.find("- merged as");
    assert!(
        copied.is_some() && merged_at.is_some() && copied < merged_at,
        "{status}"
    );
    let msg = common::git(
        &w.forge.repo_path(OWNER, REPO),
        &["log", "-1", "--format=%B", "main"],
    );
    assert!(msg.contains("| copy | ✅ passed | copied `"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_copy_is_a_gate_with_its_reason_retried_with_backoff_never_skipped() {
    let mut w = World::new().await;
    let d = w.push_release("1.1.0", false).await;
    w.pass().await;
    let pr = w.pr().number;
    w.approve(pr);
    // The prod registry fails every manifest write.
    w.dst_proxy.inject(Fault {
        path: "/v2/prod/web/manifests/".into(),
        status: 503,
        headers: vec![],
        body: bytes::Bytes::from_static(
            b"{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"maintenance\"}]}",
        ),
        times: usize::MAX,
    });
    let copier = Arc::new({
        let mut c = Copier::new(client(PASSWORD, &w.dst_addr));
        c.backoff = baton::registry::copier::Backoff {
            first: Duration::from_secs(2),
            max: Duration::from_secs(2),
        };
        c
    });
    w.copier = copier;

    let out = w.pass().await;
    assert!(!merged(&out), "merged without its image: {out:?}");
    let why = blocking(&out);
    assert!(
        why.starts_with("copy: copying `")
            && why.contains("failed (attempt 1)")
            && why.contains("HTTP 503"),
        "{why}"
    );
    let status = w.status(pr);
    assert!(
        status.contains("| copy | ⏳ waiting | copying `"),
        "{status}"
    );
    let body = w.pr().body.unwrap_or_default();
    assert!(body.contains("failed** (attempt 1)"), "{body}");

    // Within the backoff, the next pass does not try again.
    let writes = w.dst_proxy.requests_to("/manifests/").len();
    let out = w.pass().await;
    assert!(
        !merged(&out) && blocking(&out).contains("attempt 1"),
        "{out:?}"
    );
    assert_eq!(w.dst_proxy.requests_to("/manifests/").len(), writes);

    // The registry recovers; once the backoff has passed, the copy is retried and the PR merges.
    w.dst_proxy.clear();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let out = w.pass().await;
        if merged(&out) {
            break;
        }
        assert!(blocking(&out).starts_with("copy:"), "{out:?}");
        assert!(Instant::now() < deadline, "never retried: {out:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(attempts > 1, "the retry waited for its backoff");
    assert!(w.dst_has(&d).await);
    assert_eq!(w.last_promotion().to.to_string(), d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_target_credentials_block_the_copy_gate_while_other_gates_wait() {
    let mut w = World::new().await;
    w.push_release("1.2.0", false).await;
    w.copier = Arc::new(Copier::new(client("hunter2", &w.dst_addr)));
    w.pass().await;
    let pr = w.pr().number;
    w.pass().await;
    let status = w.status(pr);
    assert!(
        status.contains("| copy | ⛔ blocked |")
            && status.contains("cannot be pushed to")
            && status.contains("check the credentials configured for"),
        "{status}"
    );
    assert!(!status.contains("hunter2"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_gone_from_the_source_registry_blocks_the_copy_gate() {
    let mut w = World::new().await;
    let d = w.push_release("1.3.0", false).await;
    w.pass().await;
    let pr = w.pr().number;
    let gone = reqwest::Client::new()
        .delete(format!("http://{}/v2/team/web/manifests/{d}", w.src.addr))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.status());
    w.pass().await;
    let status = w.status(pr);
    assert!(
        status.contains("| copy | ⛔ blocked |") && status.contains("is no longer in its registry"),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_to_a_release_missing_from_the_target_copies_it_again() {
    let mut w = World::new().await;
    let old = w.push_release("1.0.0", false).await;
    w.pass().await;
    w.approve(w.pr().number);
    assert!(merged(&w.pass().await));
    w.push_release("1.1.0", false).await;
    w.pass().await;
    w.approve(w.pr().number);
    assert!(merged(&w.pass().await));

    // The prod registry loses 1.0.0 (a retention policy, a clean-up).
    let deleted = reqwest::Client::new()
        .delete(format!("http://{}/v2/prod/web/manifests/{old}", w.dst.addr))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{}", deleted.status());
    assert!(!w.dst_has(&old).await);

    let engine = w.engine();
    let rolled = engine
        .roll_back_now(&RollbackRequest {
            env: "prod".into(),
            app: "web".into(),
            to: Some("1.0.0".into()),
            bad: None,
            by: Some("alice".into()),
            why: "a test".into(),
        })
        .await
        .unwrap();
    let Rolled::Opened { pr, .. } = rolled else {
        panic!("{rolled:?}")
    };
    w.approve(pr);
    let out = w.pass().await;
    assert!(merged(&out), "{out:?}");
    assert_eq!(w.last_promotion().to.to_string(), old);
    assert!(
        w.dst_has(&old).await,
        "the rollback's digest was copied again"
    );
    assert!(w.status(pr).contains("- copied `"), "{}", w.status(pr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baton_validate_fails_a_promotion_whose_image_can_no_longer_be_copied() {
    let mut w = World::new().await;
    w.push_release("1.4.0", false).await;
    w.pass().await;
    let pr = w.pr();
    let checked = w.validate().await;
    assert_eq!(
        checked,
        vec![CheckOutcome::Checked {
            pr: pr.number,
            sha: pr.head_sha.clone(),
            passed: true
        }]
    );

    // A newer release updates the PR; its image is deleted from the source before the check.
    let d = w.push_release("1.5.0", false).await;
    w.pass().await;
    let pr = w.pr();
    let gone = reqwest::Client::new()
        .delete(format!("http://{}/v2/team/web/manifests/{d}", w.src.addr))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success());
    let checked = w.validate().await;
    assert_eq!(
        checked,
        vec![CheckOutcome::Checked {
            pr: pr.number,
            sha: pr.head_sha.clone(),
            passed: false
        }]
    );
    let comment = w
        .forge
        .comments(OWNER, REPO, pr.number)
        .into_iter()
        .map(|c| c.body)
        .find(|b| b.contains("copyTo:"))
        .unwrap_or_default();
    assert!(
        comment.contains(&format!(
            "copyTo: `{}/team/web@{d}` is not in its registry, so it cannot be copied to `{}/prod/web`",
            w.src.addr, w.dst_addr
        )),
        "{comment}"
    );
}
