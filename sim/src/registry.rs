//! A small in-memory OCI distribution registry (anonymous, HTTP) for the sandbox and tests:
//! base check, catalog, tag lists with `n`/`last` pagination, manifests and blobs (GET, HEAD,
//! PUT, DELETE), monolithic and chunked uploads, cross-repository mounts, the referrers API, and
//! CNCF distribution notifications POSTed to a configured URL on every manifest push.
//!
//! See docs/sim.md for where it differs from a real registry.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::Server;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";

/// `sha256:<hex>` of some bytes.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Clone)]
struct Manifest {
    media_type: String,
    body: Bytes,
}

#[derive(Default)]
struct Repo {
    manifests: HashMap<String, Manifest>,
    tags: BTreeMap<String, String>,
    blobs: BTreeSet<String>,
}

struct Upload {
    repo: String,
    data: Vec<u8>,
}

/// One notification delivery attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    /// The envelope that was sent.
    pub envelope: Value,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it could not be delivered, if it was not.
    pub error: Option<String>,
}

#[derive(Default)]
struct Inner {
    repos: BTreeMap<String, Repo>,
    blobs: HashMap<String, Bytes>,
    uploads: HashMap<String, Upload>,
    notify_url: Option<String>,
    deliveries: Vec<Delivery>,
    counts: BTreeMap<String, u64>,
    faults: Vec<(u16, Option<u32>)>,
    serial: u64,
}

struct Shared {
    inner: Mutex<Inner>,
    /// `127.0.0.1:PORT`, for URLs in notifications.
    host: Mutex<String>,
    http: reqwest::Client,
    delivered: tokio::sync::Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running registry on an ephemeral 127.0.0.1 port.
pub struct Registry {
    server: Server,
    handle: RegistryHandle,
}

impl Registry {
    /// Start an empty registry that sends no notifications.
    pub async fn start() -> std::io::Result<Self> {
        let handle = RegistryHandle {
            shared: Arc::new(Shared {
                inner: Mutex::new(Inner::default()),
                host: Mutex::new(String::new()),
                http: reqwest::Client::new(),
                delivered: tokio::sync::Notify::new(),
            }),
        };
        let server = Server::start(router(handle.shared.clone())).await?;
        *handle.shared.host.lock().unwrap_or_else(|p| p.into_inner()) = server.addr().to_string();
        Ok(Self { server, handle })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// `127.0.0.1:PORT`, the registry part of image references (`127.0.0.1:PORT/shop/web:1.0`).
    pub fn host(&self) -> String {
        self.server.addr().to_string()
    }

    /// A cloneable handle for control calls.
    pub fn handle(&self) -> RegistryHandle {
        self.handle.clone()
    }

    /// Stop serving.
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

impl std::ops::Deref for Registry {
    type Target = RegistryHandle;
    fn deref(&self) -> &RegistryHandle {
        &self.handle
    }
}

/// Control calls: seeding images, notifications, faults, counters.
#[derive(Clone)]
pub struct RegistryHandle {
    shared: Arc<Shared>,
}

impl RegistryHandle {
    /// POST a CNCF distribution notification envelope to `url` on every manifest push (`None`
    /// turns notifications off).
    pub fn set_notify_url(&self, url: Option<&str>) {
        self.shared.lock().notify_url = url.map(String::from);
    }

    /// Push an OCI image (config and layer blobs plus a manifest) without HTTP, tagging it, and
    /// notify like an HTTP push would. Returns the manifest digest.
    pub fn push_image(&self, repo: &str, tag: &str, config: &[u8], layers: &[&[u8]]) -> String {
        let mut inner = self.shared.lock();
        let r = inner.repos.entry(repo.to_string()).or_default();
        let mut descriptors = Vec::new();
        for layer in layers {
            let d = digest_of(layer);
            r.blobs.insert(d.clone());
            descriptors.push(json!({"mediaType": OCI_LAYER, "digest": d, "size": layer.len()}));
        }
        let config_digest = digest_of(config);
        r.blobs.insert(config_digest.clone());
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": descriptors,
        });
        for blob in layers.iter().chain([&config]) {
            inner
                .blobs
                .insert(digest_of(blob), Bytes::copy_from_slice(blob));
        }
        let body = Bytes::from(serde_json::to_vec(&manifest).expect("JSON serializes"));
        let digest = digest_of(&body);
        let r = inner.repos.get_mut(repo).expect("created above");
        r.manifests.insert(
            digest.clone(),
            Manifest {
                media_type: OCI_MANIFEST.into(),
                body: body.clone(),
            },
        );
        r.tags.insert(tag.to_string(), digest.clone());
        drop(inner);
        self.notify_push(
            repo,
            Some(tag),
            &digest,
            OCI_MANIFEST,
            body.len(),
            "baton-sim",
        );
        digest
    }

    /// Tags of a repository, sorted.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        self.shared
            .lock()
            .repos
            .get(repo)
            .map(|r| r.tags.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The manifest digest a tag points at.
    pub fn digest(&self, repo: &str, tag: &str) -> Option<String> {
        self.shared.lock().repos.get(repo)?.tags.get(tag).cloned()
    }

    /// Notification deliveries so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Wait until at least `n` deliveries were attempted, or `timeout` passes (tokio time).
    pub async fn wait_for_deliveries(
        &self,
        n: usize,
        timeout: std::time::Duration,
    ) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.delivered.notified();
            let deliveries = self.deliveries();
            if deliveries.len() >= n {
                return deliveries;
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return self.deliveries(),
            }
        }
    }

    /// Answer the next `times` registry requests (all, when `None`) with HTTP `code`.
    pub fn inject_status(&self, code: u16, times: Option<u32>) {
        self.shared.lock().faults.push((code, times));
    }

    /// Remove injected faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Requests served, keyed `"<method> <kind>"` (`GET manifest`, `PUT manifest`, `HEAD blob`,
    /// `POST upload`, `PATCH upload`, `PUT upload`, `GET tags`, `GET catalog`, `GET base`, ...).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.shared.lock().counts.clone()
    }

    fn notify_push(
        &self,
        repo: &str,
        tag: Option<&str>,
        digest: &str,
        media_type: &str,
        size: usize,
        user_agent: &str,
    ) {
        let Some(url) = self.shared.lock().notify_url.clone() else {
            return;
        };
        let host = self
            .shared
            .host
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let id = {
            let mut inner = self.shared.lock();
            inner.serial += 1;
            format!("{:08x}-0000-4000-8000-{:012x}", inner.serial, inner.serial)
        };
        let mut target = json!({
            "mediaType": media_type,
            "size": size,
            "digest": digest,
            "length": size,
            "repository": repo,
            "url": format!("http://{host}/v2/{repo}/manifests/{digest}"),
        });
        if let Some(tag) = tag {
            target["tag"] = json!(tag);
        }
        let envelope = json!({"events": [{
            "id": id,
            "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "action": "push",
            "target": target,
            "request": {"id": id, "addr": "127.0.0.1", "host": host, "method": "PUT", "useragent": user_agent},
            "actor": {},
            "source": {"addr": host, "instanceID": "baton-sim"},
        }]});
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let result = shared
                .http
                .post(&url)
                .header(header::CONTENT_TYPE, EVENTS_MEDIA_TYPE)
                .body(serde_json::to_vec(&envelope).expect("JSON serializes"))
                .send()
                .await;
            let delivery = match result {
                Ok(resp) => Delivery {
                    envelope,
                    status: Some(resp.status().as_u16()),
                    error: None,
                },
                Err(error) => Delivery {
                    envelope,
                    status: None,
                    error: Some(error.to_string()),
                },
            };
            shared.lock().deliveries.push(delivery);
            shared.delivered.notify_waiters();
        });
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_sim/deliveries", get(|State(s): State<Arc<Shared>>| async move { axum::Json(s.lock().deliveries.clone()) }))
        .route(
            "/_sim/notify",
            post(|State(s): State<Arc<Shared>>, axum::Json(body): axum::Json<Value>| async move {
                s.lock().notify_url = body.get("url").and_then(Value::as_str).map(String::from);
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/_sim/faults",
            post(|State(s): State<Arc<Shared>>, axum::Json(body): axum::Json<Value>| async move {
                let code = body.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
                let times = body.get("times").and_then(Value::as_u64).map(|t| t as u32);
                s.lock().faults.push((code, times));
                StatusCode::CREATED
            })
            .delete(|State(s): State<Arc<Shared>>| async move {
                s.lock().faults.clear();
                StatusCode::NO_CONTENT
            }),
        )
        .route("/_sim/requests", get(|State(s): State<Arc<Shared>>| async move { axum::Json(s.lock().counts.clone()) }))
        .fallback(handle)
        .with_state(shared)
}

fn error(status: StatusCode, code: &str, message: &str, detail: Value) -> Response {
    let body = json!({"errors": [{"code": code, "message": message, "detail": detail}]});
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

fn blob_unknown(digest: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
        "blob unknown to registry",
        json!(digest),
    )
}

fn manifest_unknown(reference: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
        "manifest unknown",
        json!({"Tag": reference}),
    )
}

fn name_unknown(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
        "repository name not known to registry",
        json!({"name": name}),
    )
}

fn digest_invalid(detail: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
        "provided digest did not match uploaded content",
        json!(detail),
    )
}

fn empty(status: StatusCode, headers: &[(&str, String)]) -> Response {
    let mut resp = Response::builder().status(status);
    for (k, v) in headers {
        resp = resp.header(*k, v);
    }
    resp.header("Docker-Distribution-API-Version", "registry/2.0")
        .header(header::CONTENT_LENGTH, "0")
        .body(Body::empty())
        .expect("valid headers")
}

enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Uploads(String, Option<String>),
    Blob(String, String),
    Referrers(String, String),
}

fn parse(path: &str) -> Option<Route> {
    let rest = path.strip_prefix("/v2")?;
    let rest = rest.strip_prefix('/').unwrap_or(rest);
    if rest.is_empty() {
        return Some(Route::Base);
    }
    if rest == "_catalog" {
        return Some(Route::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name.into()));
    }
    if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
        return Some(Route::Manifest(name.into(), reference.into()));
    }
    if let Some((name, tail)) = rest.rsplit_once("/blobs/uploads") {
        let id = tail.trim_start_matches('/');
        return Some(Route::Uploads(
            name.into(),
            (!id.is_empty()).then(|| id.to_string()),
        ));
    }
    if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
        return Some(Route::Blob(name.into(), digest.into()));
    }
    if let Some((name, digest)) = rest.rsplit_once("/referrers/") {
        return Some(Route::Referrers(name.into(), digest.into()));
    }
    None
}

/// `n`/`last` pagination over sorted names, with the `Link` header of the next page.
fn page(
    all: Vec<String>,
    params: &HashMap<String, String>,
    path: &str,
) -> (Vec<String>, Option<String>) {
    let after: Vec<String> = match params.get("last") {
        Some(last) => all.into_iter().filter(|t| t > last).collect(),
        None => all,
    };
    match params.get("n").and_then(|n| n.parse::<usize>().ok()) {
        Some(n) if n < after.len() => {
            let page: Vec<String> = after.into_iter().take(n).collect();
            let last = page.last().cloned().unwrap_or_default();
            (
                page,
                Some(format!("<{path}?last={last}&n={n}>; rel=\"next\"")),
            )
        }
        _ => (after, None),
    }
}

fn kind_of(route: &Route) -> &'static str {
    match route {
        Route::Base => "base",
        Route::Catalog => "catalog",
        Route::Tags(_) => "tags",
        Route::Manifest(..) => "manifest",
        Route::Uploads(..) => "upload",
        Route::Blob(..) => "blob",
        Route::Referrers(..) => "referrers",
    }
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params: HashMap<String, String> =
        Query::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    let Some(route) = parse(uri.path()) else {
        return error(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            "the operation is unsupported",
            json!(uri.path()),
        );
    };
    let fault = {
        let mut inner = s.lock();
        *inner
            .counts
            .entry(format!("{method} {}", kind_of(&route)))
            .or_default() += 1;
        match inner.faults.first_mut() {
            Some((code, times)) => {
                let code = *code;
                if let Some(t) = times {
                    *t = t.saturating_sub(1);
                    if *t == 0 {
                        inner.faults.remove(0);
                    }
                }
                Some(code)
            }
            None => None,
        }
    };
    if let Some(code) = fault {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let name = if code == 429 {
            "TOOMANYREQUESTS"
        } else {
            "UNKNOWN"
        };
        return error(status, name, "injected fault", json!(code));
    }
    let handle = RegistryHandle { shared: s.clone() };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match (route, method.clone()) {
        (Route::Base, Method::GET | Method::HEAD) => {
            let mut resp = axum::Json(json!({})).into_response();
            resp.headers_mut().insert(
                "Docker-Distribution-API-Version",
                HeaderValue::from_static("registry/2.0"),
            );
            resp
        }
        (Route::Catalog, Method::GET) => {
            let all: Vec<String> = s.lock().repos.keys().cloned().collect();
            let (repos, link) = page(all, &params, "/v2/_catalog");
            with_link(
                axum::Json(json!({"repositories": repos})).into_response(),
                link,
            )
        }
        (Route::Tags(name), Method::GET) => {
            let Some(all) = s
                .lock()
                .repos
                .get(&name)
                .map(|r| r.tags.keys().cloned().collect::<Vec<_>>())
            else {
                return name_unknown(&name);
            };
            let (tags, link) = page(all, &params, &format!("/v2/{name}/tags/list"));
            with_link(
                axum::Json(json!({"name": name, "tags": tags})).into_response(),
                link,
            )
        }
        (Route::Manifest(name, reference), Method::GET | Method::HEAD) => {
            let found = {
                let inner = s.lock();
                inner.repos.get(&name).and_then(|r| {
                    let digest = if reference.contains(':') {
                        reference.clone()
                    } else {
                        r.tags.get(&reference)?.clone()
                    };
                    r.manifests.get(&digest).map(|m| (digest, m.clone()))
                })
            };
            let Some((digest, manifest)) = found else {
                return manifest_unknown(&reference);
            };
            let resp = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, &manifest.media_type)
                .header(header::CONTENT_LENGTH, manifest.body.len())
                .header("Docker-Content-Digest", &digest)
                .header("Docker-Distribution-API-Version", "registry/2.0");
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(manifest.body)
            };
            resp.body(body).expect("valid headers")
        }
        (Route::Manifest(name, reference), Method::PUT) => {
            put_manifest(&s, &handle, &name, &reference, &headers, body, &user_agent)
        }
        (Route::Manifest(name, reference), Method::DELETE) => {
            let mut inner = s.lock();
            let Some(repo) = inner.repos.get_mut(&name) else {
                return name_unknown(&name);
            };
            if repo.manifests.remove(&reference).is_none() {
                return manifest_unknown(&reference);
            }
            repo.tags.retain(|_, d| *d != reference);
            empty(StatusCode::ACCEPTED, &[])
        }
        (Route::Blob(name, digest), Method::GET | Method::HEAD) => {
            let blob = {
                let inner = s.lock();
                let linked = inner
                    .repos
                    .get(&name)
                    .is_some_and(|r| r.blobs.contains(&digest));
                if linked {
                    inner.blobs.get(&digest).cloned()
                } else {
                    None
                }
            };
            let Some(blob) = blob else {
                return blob_unknown(&digest);
            };
            let resp = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, blob.len())
                .header("Docker-Content-Digest", &digest)
                .header("Docker-Distribution-API-Version", "registry/2.0");
            let body = if method == Method::HEAD {
                Body::empty()
            } else {
                Body::from(blob)
            };
            resp.body(body).expect("valid headers")
        }
        (Route::Blob(name, digest), Method::DELETE) => {
            let mut inner = s.lock();
            let removed = inner
                .repos
                .get_mut(&name)
                .is_some_and(|r| r.blobs.remove(&digest));
            if removed {
                empty(StatusCode::ACCEPTED, &[])
            } else {
                blob_unknown(&digest)
            }
        }
        (Route::Uploads(name, None), Method::POST) => start_upload(&s, &name, &params, body),
        (Route::Uploads(name, Some(id)), method) => {
            upload(&s, &name, &id, method, &params, &headers, body)
        }
        (Route::Referrers(name, digest), Method::GET) => referrers(&s, &name, &digest, &params),
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the operation is unsupported",
            json!(method.as_str()),
        ),
    }
}

fn with_link(mut resp: Response, link: Option<String>) -> Response {
    if let Some(link) = link {
        resp.headers_mut()
            .insert(header::LINK, link.parse().expect("ASCII link"));
    }
    resp.headers_mut().insert(
        "Docker-Distribution-API-Version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

fn put_manifest(
    s: &Arc<Shared>,
    handle: &RegistryHandle,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Bytes,
    user_agent: &str,
) -> Response {
    let digest = digest_of(&body);
    if reference.contains(':') && reference != digest {
        return digest_invalid(reference);
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
            "manifest invalid",
            json!("not JSON"),
        );
    };
    let media_type = parsed
        .get("mediaType")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| {
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        })
        .unwrap_or_else(|| OCI_MANIFEST.into());
    let mut inner = s.lock();
    let repo = inner.repos.entry(name.to_string()).or_default();
    // Everything a manifest references must already be in the repository.
    let blobs: Vec<&str> = parsed
        .get("config")
        .into_iter()
        .chain(
            parsed
                .get("layers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )
        .filter_map(|d| d.get("digest").and_then(Value::as_str))
        .collect();
    if let Some(missing) = blobs.iter().find(|d| !repo.blobs.contains(**d)) {
        return error(
            StatusCode::BAD_REQUEST,
            "MANIFEST_BLOB_UNKNOWN",
            "blob unknown to registry",
            json!(missing),
        );
    }
    let children: Vec<&str> = parsed
        .get("manifests")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("digest").and_then(Value::as_str))
        .collect();
    if let Some(missing) = children.iter().find(|d| !repo.manifests.contains_key(**d)) {
        return error(
            StatusCode::BAD_REQUEST,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            json!(missing),
        );
    }
    let size = body.len();
    repo.manifests.insert(
        digest.clone(),
        Manifest {
            media_type: media_type.clone(),
            body,
        },
    );
    let tag = (!reference.contains(':')).then_some(reference);
    if let Some(tag) = tag {
        repo.tags.insert(tag.to_string(), digest.clone());
    }
    drop(inner);
    handle.notify_push(name, tag, &digest, &media_type, size, user_agent);
    let mut headers = vec![
        ("Location", format!("/v2/{name}/manifests/{digest}")),
        ("Docker-Content-Digest", digest),
    ];
    if let Some(subject) = parsed.pointer("/subject/digest").and_then(Value::as_str) {
        headers.push(("OCI-Subject", subject.to_string()));
    }
    empty(StatusCode::CREATED, &headers)
}

fn new_upload(inner: &mut Inner, name: &str, data: Vec<u8>) -> String {
    inner.serial += 1;
    let id = format!("{:08x}-sim-upload-{:012x}", inner.serial, inner.serial);
    inner.uploads.insert(
        id.clone(),
        Upload {
            repo: name.to_string(),
            data,
        },
    );
    id
}

fn start_upload(
    s: &Arc<Shared>,
    name: &str,
    params: &HashMap<String, String>,
    body: Bytes,
) -> Response {
    let mut inner = s.lock();
    if let (Some(digest), Some(from)) = (params.get("mount"), params.get("from")) {
        let mountable = inner
            .repos
            .get(from)
            .is_some_and(|r| r.blobs.contains(digest));
        if mountable {
            inner
                .repos
                .entry(name.to_string())
                .or_default()
                .blobs
                .insert(digest.clone());
            return empty(
                StatusCode::CREATED,
                &[
                    ("Location", format!("/v2/{name}/blobs/{digest}")),
                    ("Docker-Content-Digest", digest.clone()),
                ],
            );
        }
    }
    if let Some(digest) = params.get("digest") {
        if digest_of(&body) != *digest {
            return digest_invalid(digest);
        }
        inner.blobs.insert(digest.clone(), body);
        inner
            .repos
            .entry(name.to_string())
            .or_default()
            .blobs
            .insert(digest.clone());
        return empty(
            StatusCode::CREATED,
            &[
                ("Location", format!("/v2/{name}/blobs/{digest}")),
                ("Docker-Content-Digest", digest.clone()),
            ],
        );
    }
    let id = new_upload(&mut inner, name, Vec::new());
    empty(
        StatusCode::ACCEPTED,
        &[
            ("Location", format!("/v2/{name}/blobs/uploads/{id}")),
            ("Range", "0-0".into()),
            ("Docker-Upload-UUID", id),
        ],
    )
}

fn upload(
    s: &Arc<Shared>,
    name: &str,
    id: &str,
    method: Method,
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = s.lock();
    let Some(upload) = inner.uploads.get_mut(id).filter(|u| u.repo == name) else {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "blob upload unknown to registry",
            json!(id),
        );
    };
    let range = |len: usize| {
        if len == 0 {
            "0-0".to_string()
        } else {
            format!("0-{}", len - 1)
        }
    };
    let location = format!("/v2/{name}/blobs/uploads/{id}");
    match method {
        Method::GET => empty(
            StatusCode::NO_CONTENT,
            &[
                ("Location", location),
                ("Range", range(upload.data.len())),
                ("Docker-Upload-UUID", id.into()),
            ],
        ),
        Method::PATCH => {
            if let Some(start) = headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.split('-').next())
                .and_then(|s| s.trim().parse::<usize>().ok())
                && start != upload.data.len()
            {
                return error(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "BLOB_UPLOAD_INVALID",
                    "blob upload invalid",
                    json!("out of order chunk"),
                );
            }
            upload.data.extend_from_slice(&body);
            let len = upload.data.len();
            empty(
                StatusCode::ACCEPTED,
                &[
                    ("Location", location),
                    ("Range", range(len)),
                    ("Docker-Upload-UUID", id.into()),
                ],
            )
        }
        Method::PUT => {
            let Some(digest) = params.get("digest") else {
                return digest_invalid("digest parameter missing");
            };
            upload.data.extend_from_slice(&body);
            if digest_of(&upload.data) != *digest {
                return digest_invalid(digest);
            }
            let upload = inner.uploads.remove(id).expect("found above");
            inner.blobs.insert(digest.clone(), Bytes::from(upload.data));
            inner
                .repos
                .entry(name.to_string())
                .or_default()
                .blobs
                .insert(digest.clone());
            empty(
                StatusCode::CREATED,
                &[
                    ("Location", format!("/v2/{name}/blobs/{digest}")),
                    ("Docker-Content-Digest", digest.clone()),
                ],
            )
        }
        Method::DELETE => {
            inner.uploads.remove(id);
            empty(StatusCode::NO_CONTENT, &[])
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the operation is unsupported",
            json!(method.as_str()),
        ),
    }
}

fn referrers(
    s: &Arc<Shared>,
    name: &str,
    digest: &str,
    params: &HashMap<String, String>,
) -> Response {
    let inner = s.lock();
    let mut descriptors = Vec::new();
    if let Some(repo) = inner.repos.get(name) {
        for (d, m) in &repo.manifests {
            let Ok(parsed) = serde_json::from_slice::<Value>(&m.body) else {
                continue;
            };
            if parsed.pointer("/subject/digest").and_then(Value::as_str) != Some(digest) {
                continue;
            }
            let artifact_type = parsed
                .get("artifactType")
                .or_else(|| parsed.pointer("/config/mediaType"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if params
                .get("artifactType")
                .is_some_and(|want| *want != artifact_type)
            {
                continue;
            }
            let mut desc = json!({"mediaType": m.media_type, "digest": d, "size": m.body.len(), "artifactType": artifact_type});
            if let Some(annotations) = parsed.get("annotations") {
                desc["annotations"] = annotations.clone();
            }
            descriptors.push(desc);
        }
    }
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors});
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if params.contains_key("artifactType") {
        resp.headers_mut().insert(
            "OCI-Filters-Applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_nested_repository_names_parse() {
        assert!(matches!(parse("/v2/"), Some(Route::Base)));
        assert!(matches!(parse("/v2/shop/web/tags/list"), Some(Route::Tags(n)) if n == "shop/web"));
        assert!(
            matches!(parse("/v2/shop/web/manifests/1.0"), Some(Route::Manifest(n, r)) if n == "shop/web" && r == "1.0")
        );
        assert!(
            matches!(parse("/v2/shop/web/blobs/uploads/"), Some(Route::Uploads(n, None)) if n == "shop/web")
        );
        assert!(
            matches!(parse("/v2/shop/web/blobs/uploads/abc"), Some(Route::Uploads(_, Some(id))) if id == "abc")
        );
        assert!(
            matches!(parse("/v2/a/blobs/sha256:00"), Some(Route::Blob(n, d)) if n == "a" && d == "sha256:00")
        );
    }

    #[test]
    fn tag_pages_link_to_the_next_page() {
        let tags: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let params: HashMap<String, String> = [("n".to_string(), "2".to_string())].into();
        let (page1, link) = page(tags.clone(), &params, "/v2/x/tags/list");
        assert_eq!(page1, ["a", "b"]);
        assert_eq!(link.unwrap(), "</v2/x/tags/list?last=b&n=2>; rel=\"next\"");
        let params: HashMap<String, String> =
            [("n".into(), "2".into()), ("last".into(), "b".into())].into();
        assert_eq!(
            page(tags, &params, "/v2/x/tags/list"),
            (vec!["c".to_string()], None)
        );
    }
}
