//! Registry webhooks as pure functions: body (and headers) in, "repository R got tag T at
//! digest D" hints out. A hint is never trusted: the bot drops its cache for that tag
//! ([`super::Scanner::invalidate`]) and re-reads the digest from the registry before acting.
//!
//! Supported senders: CNCF distribution notification envelopes (what Debian's
//! `docker-registry` sends), Docker Hub, Harbor (classic and CloudEvents formats), GitHub
//! `package` / `registry_package` events (GHCR), and a generic JSON form
//! `{"image", "tag", "digest"}` authenticated with HMAC-SHA256 over the raw body in
//! `X-Baton-Signature-256: sha256=<hex>` (the GitHub convention).

use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::auth::Secret;
use super::repo::Repo;

/// Header carrying the generic form's signature.
pub const SIGNATURE_HEADER: &str = "x-baton-signature-256";
/// Media type of distribution notification envelopes.
pub const DISTRIBUTION_EVENTS_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.events.v1+json";

/// Who sent a hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Distribution,
    DockerHub,
    Harbor,
    GitHub,
    Generic,
}

/// "Repository R got tag T at digest D", as claimed by a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushHint {
    pub source: Source,
    /// Registry host when the sender says (`None`: unknown, match on repository only).
    pub registry: Option<String>,
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl PushHint {
    /// Whether this hint is about `repo` (registry compared when the sender named one).
    pub fn concerns(&self, repo: &Repo) -> bool {
        if self.repository != repo.repository {
            return false;
        }
        match &self.registry {
            None => true,
            Some(r) => canonical_registry(r) == canonical_registry(&repo.registry),
        }
    }
}

fn canonical_registry(r: &str) -> String {
    match r.to_ascii_lowercase().as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        other => other.to_string(),
    }
}

/// A webhook that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is JSON but not a {0} event")]
    Shape(&'static str),
    #[error("the body is not a webhook baton understands")]
    Unrecognized,
    #[error("missing {SIGNATURE_HEADER} header")]
    MissingSignature,
    #[error("bad {SIGNATURE_HEADER} signature")]
    BadSignature,
}

impl WebhookError {
    /// Authentication failures answer 401; everything else 400.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, Self::MissingSignature | Self::BadSignature)
    }
}

fn is_digest(s: &str) -> bool {
    s.starts_with("sha256:") || s.starts_with("sha512:")
}

fn tag_of(t: Option<String>) -> Option<String> {
    t.filter(|t| !t.is_empty() && !is_digest(t))
}

fn digest_of(d: Option<String>) -> Option<String> {
    d.filter(|d| is_digest(d))
}

const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// CNCF distribution notifications: manifest `push` events. Blob pushes, pulls and deletes
/// are ignored (an empty list, not an error).
pub fn parse_distribution(body: &[u8]) -> Result<Vec<PushHint>, WebhookError> {
    #[derive(Deserialize)]
    struct Envelope {
        events: Vec<Event>,
    }
    #[derive(Deserialize)]
    struct Event {
        action: String,
        target: Target,
        #[serde(default)]
        request: Option<Request>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Target {
        #[serde(default)]
        media_type: String,
        #[serde(default)]
        digest: Option<String>,
        repository: String,
        #[serde(default)]
        tag: Option<String>,
        #[serde(default)]
        url: Option<String>,
    }
    #[derive(Deserialize)]
    struct Request {
        #[serde(default)]
        host: Option<String>,
    }
    let env: Envelope = from_json(body, "distribution notification")?;
    Ok(env
        .events
        .into_iter()
        .filter(|e| e.action == "push" && MANIFEST_TYPES.contains(&e.target.media_type.as_str()))
        .map(|e| PushHint {
            source: Source::Distribution,
            registry: e
                .request
                .and_then(|r| r.host)
                .filter(|h| !h.is_empty())
                .or_else(|| e.target.url.as_deref().and_then(url_host)),
            repository: e.target.repository,
            tag: tag_of(e.target.tag),
            digest: digest_of(e.target.digest),
        })
        .collect())
}

fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    rest.split('/').next().map(str::to_string)
}

/// Docker Hub: `push_data.tag` in `repository.repo_name`. Docker Hub sends no digest.
pub fn parse_docker_hub(body: &[u8]) -> Result<Vec<PushHint>, WebhookError> {
    #[derive(Deserialize)]
    struct Hook {
        push_data: PushData,
        repository: Repository,
    }
    #[derive(Deserialize)]
    struct PushData {
        #[serde(default)]
        tag: Option<String>,
    }
    #[derive(Deserialize)]
    struct Repository {
        repo_name: String,
    }
    let hook: Hook = from_json(body, "Docker Hub")?;
    let name = hook.repository.repo_name;
    let repository = if name.contains('/') {
        name
    } else {
        format!("library/{name}")
    };
    Ok(vec![PushHint {
        source: Source::DockerHub,
        registry: Some("docker.io".into()),
        repository,
        tag: tag_of(hook.push_data.tag),
        digest: None,
    }])
}

/// Harbor `PUSH_ARTIFACT` (classic format) or `harbor.artifact.pushed` (CloudEvents).
pub fn parse_harbor(body: &[u8]) -> Result<Vec<PushHint>, WebhookError> {
    #[derive(Deserialize)]
    struct Hook {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        event_data: Option<Data>,
        #[serde(default)]
        data: Option<Data>,
    }
    #[derive(Deserialize)]
    struct Data {
        #[serde(default)]
        resources: Vec<Resource>,
        repository: Repository,
    }
    #[derive(Deserialize)]
    struct Resource {
        #[serde(default)]
        digest: Option<String>,
        #[serde(default)]
        tag: Option<String>,
        #[serde(default)]
        resource_url: Option<String>,
    }
    #[derive(Deserialize)]
    struct Repository {
        repo_full_name: String,
    }
    let hook: Hook = from_json(body, "Harbor")?;
    if hook.kind != "PUSH_ARTIFACT" && hook.kind != "harbor.artifact.pushed" {
        return Ok(Vec::new());
    }
    let data = hook
        .event_data
        .or(hook.data)
        .ok_or(WebhookError::Shape("Harbor"))?;
    let repository = data.repository.repo_full_name;
    Ok(data
        .resources
        .into_iter()
        .map(|r| PushHint {
            source: Source::Harbor,
            registry: r
                .resource_url
                .as_deref()
                .and_then(|u| u.split('/').next())
                .map(str::to_string),
            repository: repository.clone(),
            tag: tag_of(r.tag),
            digest: digest_of(r.digest),
        })
        .collect())
}

/// GitHub `package` (and the older `registry_package`) events, `published` action, container
/// packages only. `event` is the `X-GitHub-Event` header; the server has checked the GitHub
/// signature before calling this.
pub fn parse_github(event: &str, body: &[u8]) -> Result<Vec<PushHint>, WebhookError> {
    #[derive(Deserialize)]
    struct Hook {
        action: String,
        #[serde(default)]
        package: Option<Package>,
        #[serde(default)]
        registry_package: Option<Package>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
        namespace: String,
        package_type: String,
        #[serde(default)]
        package_version: Option<Version>,
        #[serde(default)]
        registry: Option<Registry>,
    }
    #[derive(Deserialize)]
    struct Version {
        #[serde(default)]
        version: Option<String>,
        #[serde(default)]
        container_metadata: Option<ContainerMetadata>,
    }
    #[derive(Deserialize)]
    struct ContainerMetadata {
        #[serde(default)]
        tag: Option<Tag>,
    }
    #[derive(Deserialize)]
    struct Tag {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        digest: Option<String>,
    }
    #[derive(Deserialize)]
    struct Registry {
        #[serde(default)]
        url: Option<String>,
    }
    if event != "package" && event != "registry_package" {
        return Ok(Vec::new());
    }
    let hook: Hook = from_json(body, "GitHub package")?;
    let Some(pkg) = hook.package.or(hook.registry_package) else {
        return Err(WebhookError::Shape("GitHub package"));
    };
    if hook.action != "published" || !pkg.package_type.eq_ignore_ascii_case("container") {
        return Ok(Vec::new());
    }
    let (mut tag, mut digest) = (None, None);
    if let Some(v) = pkg.package_version {
        if let Some(t) = v.container_metadata.and_then(|c| c.tag) {
            tag = tag_of(t.name);
            digest = digest_of(t.digest);
        }
        if digest.is_none() {
            digest = digest_of(v.version);
        }
    }
    Ok(vec![PushHint {
        source: Source::GitHub,
        registry: Some(
            pkg.registry
                .and_then(|r| r.url)
                .as_deref()
                .and_then(url_host)
                .unwrap_or_else(|| "ghcr.io".into()),
        ),
        repository: format!("{}/{}", pkg.namespace, pkg.name).to_ascii_lowercase(),
        tag,
        digest,
    }])
}

/// The generic form, after checking its HMAC-SHA256 signature (`sha256=<hex>` over the raw
/// body) in constant time. Nothing is parsed before the signature checks out.
pub fn parse_generic(
    body: &[u8],
    signature: Option<&str>,
    secret: &Secret,
) -> Result<Vec<PushHint>, WebhookError> {
    verify_hmac(body, signature, secret)?;
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Generic {
        image: String,
        #[serde(default)]
        tag: Option<String>,
        #[serde(default)]
        digest: Option<String>,
    }
    let g: Generic = from_json(body, "generic")?;
    let repo = Repo::parse(&g.image).map_err(|_| WebhookError::Shape("generic"))?;
    Ok(vec![PushHint {
        source: Source::Generic,
        registry: Some(repo.registry),
        repository: repo.repository,
        tag: tag_of(g.tag),
        digest: digest_of(g.digest),
    }])
}

/// Check `sha256=<hex>` HMAC-SHA256 of `body` under `secret`.
pub fn verify_hmac(
    body: &[u8],
    signature: Option<&str>,
    secret: &Secret,
) -> Result<(), WebhookError> {
    let sig = signature.ok_or(WebhookError::MissingSignature)?;
    let hex_sig = sig
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::BadSignature)?;
    let given = hex::decode(hex_sig).map_err(|_| WebhookError::BadSignature)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if expected.len() == given.len() && bool::from(expected.ct_eq(&given[..])) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// The `sha256=<hex>` signature of `body`, for senders and tests.
pub fn sign(body: &[u8], secret: &Secret) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Recognise the sender from headers and body and parse. A body with the generic signature
/// header is only accepted with a valid signature; so is an unrecognised body when a generic
/// secret is configured. The server should authenticate the other senders (a shared token
/// in `Authorization`, configured on the registry) before calling this.
pub fn parse(
    headers: &HeaderMap,
    body: &[u8],
    generic_secret: Option<&Secret>,
) -> Result<Vec<PushHint>, WebhookError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(sig) = header(SIGNATURE_HEADER) {
        return match generic_secret {
            Some(secret) => parse_generic(body, Some(sig), secret),
            None => Err(WebhookError::BadSignature),
        };
    }
    if let Some(event) = header("x-github-event") {
        return parse_github(event, body);
    }
    if header("content-type").is_some_and(|c| c.starts_with(DISTRIBUTION_EVENTS_MEDIA_TYPE)) {
        return parse_distribution(body);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    if value.get("events").is_some() {
        parse_distribution(body)
    } else if value.get("push_data").is_some() {
        parse_docker_hub(body)
    } else if value.get("event_data").is_some()
        || value
            .get("type")
            .and_then(|t| t.as_str())
            .is_some_and(|t| t.starts_with("harbor."))
    {
        parse_harbor(body)
    } else if let Some(secret) = generic_secret {
        parse_generic(body, None, secret)
    } else {
        Err(WebhookError::Unrecognized)
    }
}

fn from_json<'a, T: Deserialize<'a>>(
    body: &'a [u8],
    what: &'static str,
) -> Result<T, WebhookError> {
    let _: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::NotJson(e.to_string()))?;
    serde_json::from_slice(body).map_err(|_| WebhookError::Shape(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:3c5b0d2fa8e4a1b3d0e2c4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a4b6";

    #[test]
    fn distribution_envelopes_yield_manifest_pushes_only() {
        let body = format!(
            r#"{{"events":[
              {{"id":"1","action":"push","target":{{"mediaType":"application/octet-stream","digest":"sha256:00","repository":"shop/web"}},"request":{{"host":"reg.example.com"}}}},
              {{"id":"2","action":"push","target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D}","repository":"shop/web","tag":"1.4.2","url":"http://reg.example.com/v2/shop/web/manifests/{D}"}},"request":{{"host":"reg.example.com","method":"PUT"}}}},
              {{"id":"3","action":"pull","target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{D}","repository":"shop/web","tag":"1.4.2"}}}}
            ]}}"#
        );
        let hints = parse_distribution(body.as_bytes()).unwrap();
        assert_eq!(
            hints,
            vec![PushHint {
                source: Source::Distribution,
                registry: Some("reg.example.com".into()),
                repository: "shop/web".into(),
                tag: Some("1.4.2".into()),
                digest: Some(D.into()),
            }]
        );
        assert!(hints[0].concerns(&Repo::new("reg.example.com", "shop/web")));
        assert!(!hints[0].concerns(&Repo::new("other.example.com", "shop/web")));
    }

    #[test]
    fn docker_hub_hooks_name_the_tag_and_official_images_get_library() {
        let body = br#"{"callback_url":"https://registry.hub.docker.com/u/x/hook/1/","push_data":{"pushed_at":1417566161,"pusher":"trustedbuilder","tag":"latest"},"repository":{"repo_name":"svendowideit/testhook","name":"testhook","namespace":"svendowideit"}}"#;
        let h = parse_docker_hub(body).unwrap();
        assert_eq!(h[0].repository, "svendowideit/testhook");
        assert_eq!(h[0].tag.as_deref(), Some("latest"));
        assert_eq!(h[0].digest, None);
        assert!(h[0].concerns(&Repo::parse("svendowideit/testhook").unwrap()));
        let official = br#"{"push_data":{"tag":"1"},"repository":{"repo_name":"nginx"}}"#;
        assert_eq!(
            parse_docker_hub(official).unwrap()[0].repository,
            "library/nginx"
        );
    }

    #[test]
    fn harbor_push_artifact_in_both_formats() {
        let classic = format!(
            r#"{{"type":"PUSH_ARTIFACT","occur_at":1680501893,"operator":"admin","event_data":{{"resources":[{{"digest":"{D}","tag":"v2","resource_url":"harbor.example.com/shop/web:v2"}}],"repository":{{"name":"web","namespace":"shop","repo_full_name":"shop/web","repo_type":"private"}}}}}}"#
        );
        let h = parse_harbor(classic.as_bytes()).unwrap();
        assert_eq!(h[0].registry.as_deref(), Some("harbor.example.com"));
        assert_eq!(
            (h[0].tag.as_deref(), h[0].digest.as_deref()),
            (Some("v2"), Some(D))
        );
        let cloud = format!(
            r#"{{"specversion":"1.0","type":"harbor.artifact.pushed","data":{{"resources":[{{"digest":"{D}","tag":"{D}","resource_url":"h.io/shop/web@{D}"}}],"repository":{{"repo_full_name":"shop/web"}}}}}}"#
        );
        let h = parse_harbor(cloud.as_bytes()).unwrap();
        assert_eq!(h[0].tag, None, "a tag equal to the digest is no tag");
        let deleted = br#"{"type":"DELETE_ARTIFACT","event_data":{"resources":[],"repository":{"repo_full_name":"a/b"}}}"#;
        assert!(parse_harbor(deleted).unwrap().is_empty());
    }

    #[test]
    fn github_package_published_events_for_containers() {
        let body = format!(
            r#"{{"action":"published","package":{{"name":"Web","namespace":"Shop","package_type":"CONTAINER","package_version":{{"version":"{D}","container_metadata":{{"tag":{{"name":"1.4.2","digest":"{D}"}}}},"package_url":"ghcr.io/shop/web:1.4.2"}},"registry":{{"url":"https://ghcr.io/shop"}}}}}}"#
        );
        let h = parse_github("package", body.as_bytes()).unwrap();
        assert_eq!(
            h,
            vec![PushHint {
                source: Source::GitHub,
                registry: Some("ghcr.io".into()),
                repository: "shop/web".into(),
                tag: Some("1.4.2".into()),
                digest: Some(D.into()),
            }]
        );
        let legacy = body.replace("\"package\":", "\"registry_package\":");
        assert_eq!(
            parse_github("registry_package", legacy.as_bytes()).unwrap(),
            h
        );
        let npm = body.replace("CONTAINER", "npm");
        assert!(parse_github("package", npm.as_bytes()).unwrap().is_empty());
        assert!(parse_github("push", b"{}").unwrap().is_empty());
    }

    #[test]
    fn the_generic_form_needs_a_valid_hmac_before_it_is_parsed() {
        let secret = Secret::new("webhook-secret");
        let body =
            format!(r#"{{"image":"reg.example.com/shop/web","tag":"1.4.2","digest":"{D}"}}"#);
        let sig = sign(body.as_bytes(), &secret);
        let h = parse_generic(body.as_bytes(), Some(&sig), &secret).unwrap();
        assert_eq!(h[0].repository, "shop/web");
        assert_eq!(h[0].registry.as_deref(), Some("reg.example.com"));
        assert_eq!(
            parse_generic(body.as_bytes(), None, &secret),
            Err(WebhookError::MissingSignature)
        );
        let tampered = body.replace("1.4.2", "9.9.9");
        assert_eq!(
            parse_generic(tampered.as_bytes(), Some(&sig), &secret),
            Err(WebhookError::BadSignature)
        );
        // A bad signature on garbage is still a signature error, not a parse error.
        assert_eq!(
            parse_generic(b"not json", Some("sha256=00"), &secret),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn parse_recognises_the_sender() {
        let mut headers = HeaderMap::new();
        let hub = br#"{"push_data":{"tag":"1"},"repository":{"repo_name":"a/b"}}"#;
        assert_eq!(
            parse(&headers, hub, None).unwrap()[0].source,
            Source::DockerHub
        );
        assert_eq!(
            parse(&headers, b"{}", None),
            Err(WebhookError::Unrecognized)
        );
        assert!(matches!(
            parse(&headers, b"<xml/>", None),
            Err(WebhookError::NotJson(_))
        ));
        headers.insert(SIGNATURE_HEADER, "sha256=00".parse().unwrap());
        assert!(parse(&headers, hub, None).unwrap_err().is_unauthorized());
    }
}
