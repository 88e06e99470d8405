//! Test support for the registry tests: a real Debian `docker-registry` on 127.0.0.1 with an
//! ephemeral port and temp storage, images built by the test and pushed with `oci-client`
//! (an independent client), a fault-injecting proxy, a webhook listener and a token server.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use sha2::{Digest as _, Sha256};

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The registry binary: `$BATON_DOCKER_REGISTRY`, else `docker-registry` on `PATH` or in
/// `/usr/bin`. Tests fail (not skip) without it: CI installs it.
pub fn registry_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("BATON_DOCKER_REGISTRY") {
        return PathBuf::from(p);
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
    {
        let p = Path::new(dir).join("docker-registry");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "these tests need Debian's docker-registry (`apt-get install -y docker-registry`), \
         or BATON_DOCKER_REGISTRY pointing at a distribution `registry` binary"
    );
}

#[derive(Default, Clone)]
pub struct RegistryOptions {
    /// `(user, password)`: htpasswd auth (bcrypt hash made with `htpasswd -B`).
    pub htpasswd: Option<(String, String)>,
    /// Token auth: (realm URL, path of the certificate bundle).
    pub token: Option<(String, PathBuf)>,
    /// Notification endpoint URL.
    pub notify: Option<String>,
}

/// A running `docker-registry`, killed on drop.
pub struct TestRegistry {
    /// `127.0.0.1:<port>`
    pub addr: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TestRegistry {
    pub fn start() -> Self {
        Self::start_with(RegistryOptions::default())
    }

    pub fn start_with(opts: RegistryOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
            dir.path().join("data").display()
        );
        if let Some((user, pass)) = &opts.htpasswd {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, pass])
                .output()
                .expect("htpasswd (apt-get install -y apache2-utils)");
            assert!(out.status.success());
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: baton-test\n    path: {}\n",
                file.display()
            ));
        }
        if let Some((realm, bundle)) = &opts.token {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: baton-test-registry\n    issuer: baton-test-issuer\n    rootcertbundle: {}\n",
                bundle.display()
            ));
        }
        if let Some(url) = &opts.notify {
            config.push_str(&format!(
                "notifications:\n  endpoints:\n    - name: baton\n      url: {url}\n      timeout: 2s\n      threshold: 10\n      backoff: 200ms\n"
            ));
        }
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(registry_binary())
            .arg("serve")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start docker-registry");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let rest = &line[i + "listening on ".len()..];
                    let addr: String = rest
                        .chars()
                        .take_while(|c| !c.is_whitespace() && *c != '"')
                        .collect();
                    let _ = tx.send(addr);
                }
                if std::env::var_os("BATON_TEST_REGISTRY_LOG").is_some() {
                    eprintln!("registry: {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("docker-registry did not report its listening address");
        TestRegistry {
            addr,
            child,
            _dir: dir,
        }
    }

    /// Replace the registry's htpasswd file with one user (the registry reads it again when it
    /// changes).
    pub fn set_htpasswd(&self, user: &str, pass: &str) {
        let out = Command::new("htpasswd")
            .args(["-Bbn", user, pass])
            .output()
            .expect("htpasswd (apt-get install -y apache2-utils)");
        assert!(out.status.success());
        let file = self._dir.path().join("htpasswd");
        let tmp = self._dir.path().join("htpasswd.new");
        std::fs::write(&tmp, out.stdout).unwrap();
        std::fs::rename(tmp, file).unwrap();
    }

    pub fn image(&self, repository: &str) -> String {
        format!("{}/{repository}", self.addr)
    }

    pub fn repo(&self, repository: &str) -> baton::registry::Repo {
        baton::registry::Repo::new(&self.addr, repository)
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An image built by the test.
#[derive(Clone)]
pub struct TestImage {
    pub blobs: Vec<Bytes>,
    pub manifest: Bytes,
    pub media_type: &'static str,
    pub digest: String,
    /// Children of an index, pushed first.
    pub children: Vec<TestImage>,
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Default, Clone)]
pub struct ImageOpts {
    pub docker: bool,
    pub created: Option<String>,
    pub arch: Option<String>,
    pub labels: Vec<(String, String)>,
    pub annotations: Vec<(String, String)>,
}

/// A single-platform image whose content depends on `seed`.
pub fn image(seed: &str, opts: &ImageOpts) -> TestImage {
    let layer = Bytes::from(format!("layer of {seed}").into_bytes());
    let labels: serde_json::Map<String, serde_json::Value> = opts
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    let mut config = serde_json::json!({
        "architecture": opts.arch.clone().unwrap_or_else(|| "amd64".into()),
        "os": "linux",
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]},
    });
    if let Some(c) = &opts.created {
        config["created"] = c.clone().into();
    }
    let config = Bytes::from(serde_json::to_vec(&config).unwrap());
    let (mt, config_mt, layer_mt) = if opts.docker {
        (
            DOCKER_MANIFEST,
            "application/vnd.docker.container.image.v1+json",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        )
    } else {
        (
            OCI_MANIFEST,
            "application/vnd.oci.image.config.v1+json",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )
    };
    let mut manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "config": {"mediaType": config_mt, "size": config.len(), "digest": digest(&config)},
        "layers": [{"mediaType": layer_mt, "size": layer.len(), "digest": digest(&layer)}],
    });
    if !opts.annotations.is_empty() {
        let a: serde_json::Map<String, serde_json::Value> = opts
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        manifest["annotations"] = a.into();
    }
    let manifest = Bytes::from(serde_json::to_vec(&manifest).unwrap());
    TestImage {
        digest: digest(&manifest),
        blobs: vec![config, layer],
        manifest,
        media_type: mt,
        children: vec![],
    }
}

/// A multi-platform index (OCI, or a Docker manifest list) over amd64 and arm64 images.
pub fn index(seed: &str, docker: bool, annotations: &[(&str, &str)]) -> TestImage {
    let children: Vec<TestImage> = ["amd64", "arm64"]
        .iter()
        .map(|arch| {
            image(
                &format!("{seed}-{arch}"),
                &ImageOpts {
                    docker,
                    arch: Some(arch.to_string()),
                    created: Some("2026-03-01T12:00:00Z".into()),
                    ..ImageOpts::default()
                },
            )
        })
        .collect();
    let mt = if docker { DOCKER_LIST } else { OCI_INDEX };
    let mut doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": mt,
        "manifests": children.iter().zip(["amd64", "arm64"]).map(|(c, arch)| serde_json::json!({
            "mediaType": c.media_type,
            "size": c.manifest.len(),
            "digest": c.digest,
            "platform": {"architecture": arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    });
    if !annotations.is_empty() {
        doc["annotations"] = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    let manifest = Bytes::from(serde_json::to_vec(&doc).unwrap());
    TestImage {
        digest: digest(&manifest),
        blobs: vec![],
        manifest,
        media_type: mt,
        children,
    }
}

/// A deterministic P-256 key pair for cosign tests.
pub fn signing_key(seed: &str) -> SigningKey {
    SigningKey::from_slice(&Sha256::digest(seed.as_bytes())).unwrap()
}

pub fn public_pem(key: &SigningKey) -> String {
    use p256::pkcs8::EncodePublicKey;
    key.verifying_key()
        .to_public_key_pem(p256::pkcs8::LineEnding::LF)
        .unwrap()
}

/// Base64 DER ECDSA-SHA256 signature, as in cosign's signature annotation.
pub fn cosign_sign(key: &SigningKey, payload: &[u8]) -> String {
    let sig: p256::ecdsa::Signature = key.sign(payload);
    base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
}

/// A signature manifest in cosign's layout: one simple-signing layer with the signature
/// annotation; optionally with a `subject` (referrers mode).
pub fn signature_image(
    payload: &[u8],
    signature_b64: &str,
    subject: Option<&TestImage>,
) -> TestImage {
    let payload = Bytes::copy_from_slice(payload);
    let config = Bytes::from(
        serde_json::to_vec(&serde_json::json!({
            "architecture": "", "os": "", "config": {},
            "created": "0001-01-01T00:00:00Z",
            "rootfs": {"type": "layers", "diff_ids": [digest(&payload)]},
        }))
        .unwrap(),
    );
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": digest(&config)},
        "layers": [{
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": payload.len(),
            "digest": digest(&payload),
            "annotations": {"dev.cosignproject.cosign/signature": signature_b64},
        }],
    });
    if let Some(s) = subject {
        m["artifactType"] = "application/vnd.dev.cosign.artifact.sig.v1+json".into();
        m["subject"] = serde_json::json!({"mediaType": s.media_type, "size": s.manifest.len(), "digest": s.digest});
    }
    let manifest = Bytes::from(serde_json::to_vec(&m).unwrap());
    TestImage {
        digest: digest(&manifest),
        blobs: vec![config, payload],
        manifest,
        media_type: OCI_MANIFEST,
        children: vec![],
    }
}

/// Pushes with `oci-client`, an implementation independent of baton's.
pub struct Pusher {
    client: Client,
    registry: String,
    auth: RegistryAuth,
}

impl Pusher {
    pub fn new(registry: &str) -> Self {
        Self::with_auth(registry, RegistryAuth::Anonymous)
    }

    pub fn with_auth(registry: &str, auth: RegistryAuth) -> Self {
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..ClientConfig::default()
        });
        Self {
            client,
            registry: registry.to_string(),
            auth,
        }
    }

    fn reference(&self, repo: &str, tag_or_digest: &str) -> Reference {
        if tag_or_digest.contains(':') {
            Reference::with_digest(self.registry.clone(), repo.into(), tag_or_digest.into())
        } else {
            Reference::with_tag(self.registry.clone(), repo.into(), tag_or_digest.into())
        }
    }

    /// Push an image (children and blobs first) under `reference` (a tag or its digest).
    pub async fn push(&self, repo: &str, reference: &str, img: &TestImage) -> String {
        let r = self.reference(repo, reference);
        self.client
            .auth(&r, &self.auth, oci_client::RegistryOperation::Push)
            .await
            .unwrap();
        for child in &img.children {
            Box::pin(self.push(repo, &child.digest, child)).await;
        }
        for blob in &img.blobs {
            self.put_blob(&r, repo, blob).await;
        }
        if reference.contains(':') && matches!(self.auth, RegistryAuth::Anonymous) {
            // oci-client panics when a registry (go-containerregistry's) answers a push by
            // digest without a `Location`; a plain PUT does the same.
            let put = reqwest::Client::new()
                .put(format!(
                    "http://{}/v2/{repo}/manifests/{reference}",
                    self.registry
                ))
                .header("content-type", img.media_type)
                .body(img.manifest.clone())
                .send()
                .await
                .unwrap();
            assert!(put.status().is_success(), "manifest push: {}", put.status());
            return img.digest.clone();
        }
        self.client
            .push_manifest_raw(&r, img.manifest.clone(), img.media_type.parse().unwrap())
            .await
            .unwrap();
        img.digest.clone()
    }

    /// Push a blob with `oci-client`; go-containerregistry's registry answers its monolithic
    /// upload without a `Location`, so there (anonymous only) the two-step upload of the
    /// distribution spec is done by hand.
    async fn put_blob(&self, r: &Reference, repo: &str, blob: &Bytes) {
        let d = digest(blob);
        if self.client.push_blob(r, blob.clone(), &d).await.is_ok() {
            return;
        }
        let http = reqwest::Client::new();
        let start = http
            .post(format!("http://{}/v2/{repo}/blobs/uploads/", self.registry))
            .send()
            .await
            .unwrap();
        let loc = start.headers()["location"].to_str().unwrap().to_string();
        let url = if loc.starts_with("http") {
            loc
        } else {
            format!("http://{}{loc}", self.registry)
        };
        let sep = if url.contains('?') { '&' } else { '?' };
        let put = http
            .put(format!("{url}{sep}digest={d}"))
            .header("content-type", "application/octet-stream")
            .body(blob.clone())
            .send()
            .await
            .unwrap();
        assert!(put.status().is_success(), "blob upload: {}", put.status());
    }

    /// Push only the blobs of `img` (children excluded).
    pub async fn push_blobs(&self, repo: &str, img: &TestImage) {
        let r = self.reference(repo, "latest");
        self.client
            .auth(&r, &self.auth, oci_client::RegistryOperation::Push)
            .await
            .unwrap();
        for blob in &img.blobs {
            self.client
                .push_blob(&r, blob.clone(), &digest(blob))
                .await
                .unwrap();
        }
    }

    /// Push only a manifest (its blobs must be there).
    pub async fn push_manifest(&self, repo: &str, tag: &str, manifest: Bytes, media_type: &str) {
        let r = self.reference(repo, tag);
        self.client
            .push_manifest_raw(&r, manifest, media_type.parse().unwrap())
            .await
            .unwrap();
    }

    /// Pull a manifest's raw bytes and digest (to check copies independently).
    pub async fn pull_manifest(&self, repo: &str, reference: &str) -> (Bytes, String) {
        let r = self.reference(repo, reference);
        self.client
            .pull_manifest_raw(
                &r,
                &self.auth,
                &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST],
            )
            .await
            .unwrap()
    }

    pub async fn blob_exists(&self, repo: &str, digest: &str) -> bool {
        let r = self.reference(repo, "latest");
        self.client.blob_exists(&r, digest).await.unwrap()
    }
}

/// Poll `cond` until it holds or `timeout` passes.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut cond: F) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serve `router` on 127.0.0.1 with an ephemeral port; returns `host:port`.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// Collects the requests a registry sends it (notifications).
#[derive(Clone, Default)]
pub struct Listener {
    pub received: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl Listener {
    pub async fn start() -> (Self, String) {
        let me = Self::default();
        let state = me.clone();
        let router = axum::Router::new().fallback(
            |State(s): State<Listener>, headers: HeaderMap, body: Bytes| async move {
                s.received.lock().unwrap().push((headers, body));
                StatusCode::OK
            },
        );
        let addr = serve(router.with_state(state)).await;
        (me, format!("http://{addr}/webhooks/registry"))
    }
}

/// A fault to inject for requests whose path contains `path`.
#[derive(Clone)]
pub struct Fault {
    pub path: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// How many requests to fail (then forward).
    pub times: usize,
}

/// A proxy in front of a real registry that can fail requests on purpose.
#[derive(Clone)]
pub struct FaultProxy {
    upstream: String,
    faults: Arc<Mutex<Vec<Fault>>>,
    /// (method, path, when) of every request seen.
    pub seen: Arc<Mutex<Vec<(String, String, Instant)>>>,
    /// Serve tag lists in pages of this size with `Link` headers, as GHCR, Harbor and
    /// distribution 3 do (Debian's distribution 2.8 ignores `n` on tag lists).
    page_tags: Arc<Mutex<Option<usize>>>,
    http: reqwest::Client,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> (Self, String) {
        let me = Self {
            upstream: upstream.to_string(),
            faults: Arc::default(),
            seen: Arc::default(),
            page_tags: Arc::default(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        };
        let router = axum::Router::new().fallback(proxy).with_state(me.clone());
        let addr = serve(router).await;
        (me, addr)
    }

    pub fn inject(&self, fault: Fault) {
        self.faults.lock().unwrap().push(fault);
    }

    /// Stop failing requests.
    pub fn clear(&self) {
        self.faults.lock().unwrap().clear();
    }

    pub fn page_tags(&self, size: usize) {
        *self.page_tags.lock().unwrap() = Some(size);
    }

    pub fn requests_to(&self, path: &str) -> Vec<Instant> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| p.contains(path))
            .map(|(_, _, t)| *t)
            .collect()
    }
}

async fn proxy(State(p): State<FaultProxy>, req: Request) -> Response {
    let method = req.method().clone();
    let path_q = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_default();
    p.seen
        .lock()
        .unwrap()
        .push((method.to_string(), path_q.clone(), Instant::now()));
    let fault = {
        let mut faults = p.faults.lock().unwrap();
        let hit = faults
            .iter_mut()
            .find(|f| f.times > 0 && path_q.contains(&f.path));
        hit.map(|f| {
            f.times -= 1;
            f.clone()
        })
    };
    if let Some(f) = fault {
        let mut b = Response::builder().status(f.status);
        for (k, v) in &f.headers {
            b = b.header(k, v);
        }
        return b.body(Body::from(f.body)).unwrap();
    }
    let page = *p.page_tags.lock().unwrap();
    if let (Some(n), Some(i)) = (page, path_q.find("/tags/list")) {
        let list_path = &path_q[..i + "/tags/list".len()];
        let resp = p
            .http
            .get(format!("http://{}{list_path}", p.upstream))
            .send()
            .await
            .unwrap();
        let mut all: serde_json::Value = resp.json().await.unwrap();
        let mut tags: Vec<String> = serde_json::from_value(all["tags"].take()).unwrap();
        tags.sort();
        let last = path_q
            .split(['?', '&'])
            .find_map(|kv| kv.strip_prefix("last="))
            .map(str::to_string);
        let rest: Vec<String> = tags
            .into_iter()
            .filter(|t| last.as_ref().is_none_or(|l| t > l))
            .collect();
        let pageful: Vec<String> = rest.iter().take(n).cloned().collect();
        let mut b = Response::builder()
            .status(200)
            .header("content-type", "application/json");
        if rest.len() > n {
            b = b.header(
                "link",
                format!("<{list_path}?last={}&n={n}>; rel=\"next\"", pageful[n - 1]),
            );
        }
        all["tags"] = pageful.into();
        return b
            .body(Body::from(serde_json::to_vec(&all).unwrap()))
            .unwrap();
    }
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap();
    let mut out = p
        .http
        .request(method, format!("http://{}{path_q}", p.upstream))
        .body(body);
    for (k, v) in headers.iter() {
        if k != "host" && k != "content-length" && k != "transfer-encoding" {
            out = out.header(k, v);
        }
    }
    let resp = out.send().await.unwrap();
    let mut b = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if k != "transfer-encoding" && k != "connection" && k != "content-length" {
            b = b.header(k, v);
        }
    }
    b.body(Body::from(resp.bytes().await.unwrap())).unwrap()
}

/// The Go test tools `scripts/test-tools` builds (cosign v3, oci-registry): `$BATON_TEST_TOOLS`,
/// else what `scripts/test-tools --check` prints. Tests fail (not skip) without them: CI builds
/// them.
pub fn test_tools() -> PathBuf {
    if let Some(dir) = std::env::var_os("BATON_TEST_TOOLS") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/test-tools"))
        .arg("--check")
        .output()
        .expect("run scripts/test-tools --check");
    assert!(
        out.status.success(),
        "these tests need cosign and oci-registry: run scripts/test-tools (it builds them from \
         Go modules and prints their directory; .ci/run does this) or set BATON_TEST_TOOLS"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl TestRegistry {
    /// go-containerregistry's registry with the OCI referrers API (in memory), from
    /// `scripts/test-tools`.
    pub fn start_referrers() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(test_tools().join("oci-registry"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start oci-registry");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("serving on port ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line[i + "serving on port ".len()..].trim().to_string());
                }
                if std::env::var_os("BATON_TEST_REGISTRY_LOG").is_some() {
                    eprintln!("oci-registry: {line}");
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("oci-registry did not report its port");
        TestRegistry {
            addr: format!("127.0.0.1:{port}"),
            child,
            _dir: dir,
        }
    }
}

/// The real cosign v3 with a fresh key pair, offline: keyed signing with no transparency log
/// (an empty signing config), and every request that is not for 127.0.0.1 sent to a closed
/// port (cosign tries sigstore's TUF mirror and must not reach it).
pub struct Cosign {
    pub dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Cosign {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let me = Self {
            bin: test_tools().join("cosign"),
            dir,
        };
        let out = me.run(&["generate-key-pair"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(
            me.dir.path().join("signing-config.json"),
            r#"{"mediaType":"application/vnd.dev.sigstore.signingconfig.v0.2+json","rekorTlogConfig":{},"tsaConfig":{}}"#,
        )
        .unwrap();
        me
    }

    pub fn public_key_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cosign.pub")).unwrap()
    }

    pub fn key(&self) -> baton::registry::CosignKey {
        baton::registry::CosignKey::from_pem(&self.public_key_pem(), "cosign.pub").unwrap()
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(&self.bin)
            .args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env("COSIGN_PASSWORD", "")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env_remove("SIGSTORE_ID_TOKEN")
            .output()
            .expect("run cosign")
    }

    fn must(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "cosign {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `cosign sign` as v3 does by default: a sigstore bundle attached as a referrer (or in the
    /// referrers fallback index on a registry without the API). `image` is `host/repo@digest`.
    pub fn sign(&self, image: &str) {
        self.must(&[
            "sign",
            "--key",
            "cosign.key",
            "--signing-config",
            "signing-config.json",
            "--allow-http-registry",
            "-y",
            image,
        ]);
    }

    /// `cosign sign` in the legacy layout (`sha256-<hex>.sig`, simple signing), as cosign v2.
    pub fn sign_legacy(&self, image: &str) {
        self.must(&[
            "sign",
            "--key",
            "cosign.key",
            "--new-bundle-format=false",
            "--use-signing-config=false",
            "--tlog-upload=false",
            "--allow-http-registry",
            "-y",
            image,
        ]);
    }

    /// `cosign attest --type <kind>` with `predicate` (JSON).
    pub fn attest(&self, image: &str, kind: &str, predicate: &serde_json::Value) {
        let file = self.dir.path().join(format!("{kind}.predicate.json"));
        std::fs::write(&file, serde_json::to_vec(predicate).unwrap()).unwrap();
        self.must(&[
            "attest",
            "--key",
            "cosign.key",
            "--signing-config",
            "signing-config.json",
            "--type",
            kind,
            "--predicate",
            file.to_str().unwrap(),
            "--allow-http-registry",
            "-y",
            image,
        ]);
    }

    /// `cosign verify` with this key and no transparency log.
    pub fn verify(&self, image: &str) -> std::process::Output {
        self.run(&[
            "verify",
            "--key",
            "cosign.pub",
            "--insecure-ignore-tlog",
            "--allow-http-registry",
            image,
        ])
    }

    /// `cosign verify-attestation --type <kind>` with this key and no transparency log.
    pub fn verify_attestation(&self, image: &str, kind: &str) -> std::process::Output {
        self.run(&[
            "verify-attestation",
            "--key",
            "cosign.pub",
            "--type",
            kind,
            "--insecure-ignore-tlog",
            "--allow-http-registry",
            image,
        ])
    }
}
