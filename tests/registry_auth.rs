//! Registry auth against a real `docker-registry`: HTTP Basic (htpasswd) and the Bearer
//! token flow (`auth.token` with a token server run by the test), credentials from a Docker
//! `config.json`, and secrets kept out of errors.

mod registry_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use baton::config::Pipeline;
use baton::registry::{
    ClientOptions, Credential, CredentialStore, RegistryClient, RegistryError, RequestKind,
    ScanError, ScanOptions, Scanner,
};
use oci_client::secrets::RegistryAuth;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use registry_support::*;
use sha2::{Digest as _, Sha256};

const USER: &str = "ci-bot";
const PASSWORD: &str = "correct-horse-battery-staple";
const GHCR_TOKEN: &str = "ghp_0123456789abcdefghijklmnopqrstuvwxyz";

fn pipeline(image: &str) -> Pipeline {
    Pipeline::parse(
        "p.yaml",
        &format!(
            "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: {image}\n    bless: {{ semver: \">=1.0.0\" }}\nenvironments:\n  - name: dev\n"
        ),
    )
    .unwrap()
    .pipeline
}

fn scanner(credential: Option<Credential>, registry: &str) -> Scanner {
    let mut store = CredentialStore::new();
    if let Some(c) = credential {
        store.insert(registry, c);
    }
    Scanner::new(
        RegistryClient::new(store, ClientOptions::default()),
        ScanOptions::default(),
    )
}

async fn scan_web(s: &Scanner, p: &Pipeline) -> Result<baton::registry::AppScan, ScanError> {
    s.scan_app("web", p.app("web").unwrap(), None).await
}

fn registry_error(e: ScanError) -> RegistryError {
    match e {
        ScanError::Registry { source, .. } => source,
        other => panic!("expected a registry error, got {other}"),
    }
}

#[tokio::test]
async fn basic_auth_with_htpasswd_works_and_bad_credentials_are_a_clear_permanent_error() {
    let reg = TestRegistry::start_with(RegistryOptions {
        htpasswd: Some((USER.into(), PASSWORD.into())),
        ..RegistryOptions::default()
    });
    let push = Pusher::with_auth(&reg.addr, RegistryAuth::Basic(USER.into(), PASSWORD.into()));
    let d = push
        .push("web", "1.0.0", &image("a", &ImageOpts::default()))
        .await;
    let p = pipeline(&reg.image("web"));

    let s = scanner(Some(Credential::basic(USER, PASSWORD)), &reg.addr);
    assert_eq!(
        scan_web(&s, &p).await.unwrap().newest.unwrap().digest,
        Some(d)
    );
    // Once the registry said "Basic", credentials go out up front: no 401 round trips.
    let before = s.client().stats();
    scan_web(&s, &p).await.unwrap();
    assert_eq!(s.client().stats().since(&before).total(), 1);

    let e = registry_error(
        scan_web(
            &scanner(Some(Credential::basic(USER, "hunter2")), &reg.addr),
            &p,
        )
        .await
        .unwrap_err(),
    );
    assert!(
        matches!(e, RegistryError::Unauthorized { status: 401, .. }),
        "{e}"
    );
    assert!(!e.is_transient());
    let text = format!("{e} {e:?}");
    assert!(text.contains(&format!("{}/web", reg.addr)), "{text}");
    assert!(!text.contains("hunter2"), "the password leaked: {text}");

    let e = registry_error(scan_web(&scanner(None, &reg.addr), &p).await.unwrap_err());
    assert!(
        e.to_string()
            .contains("check the credentials configured for"),
        "{e}"
    );
}

#[tokio::test]
async fn the_cli_reads_credentials_from_a_docker_config_json() {
    let reg = TestRegistry::start_with(RegistryOptions {
        htpasswd: Some((USER.into(), PASSWORD.into())),
        ..RegistryOptions::default()
    });
    let push = Pusher::with_auth(&reg.addr, RegistryAuth::Basic(USER.into(), PASSWORD.into()));
    let d = push
        .push("web", "1.2.3", &image("a", &ImageOpts::default()))
        .await;
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(repo.path().join("policies")).unwrap();
    std::fs::write(
        repo.path().join("policies/pipeline.yaml"),
        format!(
            "apiVersion: baton.dev/v1\nkind: Pipeline\napps:\n  web:\n    image: {}\n    bless: {{ semver: \"*\" }}\nenvironments:\n  - name: dev\n",
            reg.image("web")
        ),
    )
    .unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(
        repo.path().join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.addr),
    )
    .unwrap();
    let run = |docker_config: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["registry", "scan", "-o", "json", "--repo"])
            .arg(repo.path())
            .env("DOCKER_CONFIG", docker_config)
            .env_remove("BATON_DOCKER_CONFIG")
            .output()
            .unwrap()
    };
    let out = run(repo.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["apps"][0]["newest"]["digest"], d.as_str());

    let empty = tempfile::tempdir().unwrap();
    let out = run(empty.path());
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["apps"][0]["error"]
            .as_str()
            .unwrap()
            .contains("refused access"),
        "{json}"
    );
}

/// A Docker token server: checks Basic credentials, grants the requested scopes, signs an
/// ES256 JWT whose `kid` is the libtrust fingerprint of the key in the registry's
/// `rootcertbundle`.
#[derive(Clone)]
struct TokenServer {
    key: SigningKey,
    kid: String,
    requests: Arc<AtomicUsize>,
}

fn libtrust_kid(key: &SigningKey) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let der = key.verifying_key().to_public_key_der().unwrap();
    let hash = Sha256::digest(der.as_bytes());
    let mut bits = 0u64;
    let mut n = 0;
    let mut out = String::new();
    for b in &hash[..30] {
        bits = (bits << 8) | *b as u64;
        n += 8;
        while n >= 5 {
            n -= 5;
            out.push(ALPHABET[((bits >> n) & 31) as usize] as char);
        }
    }
    out.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn issue_token(
    State(ts): State<TokenServer>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    ts.requests.fetch_add(1, Ordering::SeqCst);
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    // What a `token:` (GHCR-style) sends: the token as the password of the default user.
    let token = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{GHCR_TOKEN}",
            baton::registry::auth::TOKEN_USERNAME
        ))
    );
    let sent = headers.get("authorization").and_then(|v| v.to_str().ok());
    if sent != Some(expected.as_str()) && sent != Some(token.as_str()) {
        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
    }
    let access: Vec<serde_json::Value> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = chrono::Utc::now().timestamp();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": ts.kid});
    let claims = serde_json::json!({
        "iss": "baton-test-issuer", "sub": USER, "aud": "baton-test-registry",
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", ts.requests.load(Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(&header).unwrap()),
        b64url(&serde_json::to_vec(&claims).unwrap())
    );
    let sig: p256::ecdsa::Signature = ts.key.sign(signing_input.as_bytes());
    let token = format!("{signing_input}.{}", b64url(&sig.to_bytes()));
    axum::Json(serde_json::json!({"token": token, "expires_in": 300})).into_response()
}

/// A `docker-registry` with `auth: token`, and the token server it trusts.
async fn token_registry() -> (TestRegistry, TokenServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let (key_pem, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=baton-test-token",
            "-keyout",
        ])
        .arg(&key_pem)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let key = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(&key_pem).unwrap()).unwrap();
    let ts = TokenServer {
        kid: libtrust_kid(&key),
        key,
        requests: Arc::default(),
    };
    let token_addr = serve(
        axum::Router::new()
            .route("/token", axum::routing::get(issue_token))
            .with_state(ts.clone()),
    )
    .await;
    let reg = TestRegistry::start_with(RegistryOptions {
        token: Some((format!("http://{token_addr}/token"), cert)),
        ..RegistryOptions::default()
    });
    (reg, ts, dir)
}

#[tokio::test]
async fn the_bearer_token_flow_works_and_tokens_are_reused_across_scans() {
    let (reg, _ts, _dir) = token_registry().await;
    let push = Pusher::with_auth(&reg.addr, RegistryAuth::Basic(USER.into(), PASSWORD.into()));
    let d = push
        .push("shop/web", "1.0.0", &image("t", &ImageOpts::default()))
        .await;
    let p = pipeline(&reg.image("shop/web"));

    let s = scanner(Some(Credential::basic(USER, PASSWORD)), &reg.addr);
    let got = scan_web(&s, &p).await.unwrap();
    assert_eq!(got.newest.unwrap().digest, Some(d));
    assert_eq!(s.client().stats().get(&reg.addr, RequestKind::Token), 1);
    let before = s.client().stats();
    scan_web(&s, &p).await.unwrap();
    let delta = s.client().stats().since(&before);
    assert_eq!(delta.total(), 1, "the cached token is reused: {delta}");

    let e = registry_error(
        scan_web(
            &scanner(Some(Credential::basic(USER, "hunter2")), &reg.addr),
            &p,
        )
        .await
        .unwrap_err(),
    );
    assert!(matches!(e, RegistryError::Token { .. }), "{e}");
    assert!(!e.is_transient());
    let text = format!("{e} {e:?}");
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("hunter2"), "the password leaked: {text}");
}

#[tokio::test]
async fn a_ghcr_style_token_goes_through_the_token_endpoint_as_basic() {
    let (reg, ts, dir) = token_registry().await;
    let push = Pusher::with_auth(&reg.addr, RegistryAuth::Basic(USER.into(), PASSWORD.into()));
    let d = push
        .push("shop/web", "1.0.0", &image("g", &ImageOpts::default()))
        .await;
    let file = dir.path().join("ghcr-token");
    std::fs::write(&file, GHCR_TOKEN).unwrap();
    let cfg: indexmap::IndexMap<String, baton::registry::auth::CredentialConfig> =
        yaml_serde::from_str(&format!(
            "\"{}\": {{ token: {{ file: {} }} }}",
            reg.addr,
            file.display()
        ))
        .unwrap();
    let before = ts.requests.load(Ordering::SeqCst);
    let s = Scanner::new(
        RegistryClient::new(
            CredentialStore::from_config(&cfg).unwrap(),
            ClientOptions::default(),
        ),
        ScanOptions::default(),
    );
    let got = scan_web(&s, &pipeline(&reg.image("shop/web")))
        .await
        .unwrap();
    assert_eq!(got.newest.unwrap().digest, Some(d));
    assert_eq!(ts.requests.load(Ordering::SeqCst), before + 1);
    assert_eq!(s.client().stats().get(&reg.addr, RequestKind::Token), 1);
}

/// A credential helper script in `dir` answering `user` with the password in `dir/secret`,
/// logging each call to `dir/calls`.
fn helper_script(dir: &std::path::Path, user: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let script = format!(
        "#!/bin/sh\nread server\necho \"$1 $server\" >> {d}/calls\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"%s\"}}' \"$server\" \"$(cat {d}/secret)\"\n",
        d = dir.display()
    );
    let p = dir.join("docker-credential-rotating");
    std::fs::write(&p, script).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn a_helper_whose_password_rotates_with_the_registrys_htpasswd_keeps_scans_working() {
    let reg = TestRegistry::start_with(RegistryOptions {
        htpasswd: Some((USER.into(), "first-password".into())),
        ..RegistryOptions::default()
    });
    let push = Pusher::with_auth(
        &reg.addr,
        RegistryAuth::Basic(USER.into(), "first-password".into()),
    );
    let d = push
        .push("web", "1.0.0", &image("h", &ImageOpts::default()))
        .await;
    let dir = tempfile::tempdir().unwrap();
    helper_script(dir.path(), USER);
    std::fs::write(dir.path().join("secret"), "first-password").unwrap();
    let docker = dir.path().join("config.json");
    std::fs::write(
        &docker,
        format!(r#"{{"credHelpers":{{"{}":"rotating"}}}}"#, reg.addr),
    )
    .unwrap();
    let mut store = CredentialStore::new();
    store.set_helper_dir(dir.path());
    store.merge_docker_config(&docker).unwrap();
    let s = Scanner::new(
        RegistryClient::new(store, ClientOptions::default()),
        ScanOptions::default(),
    );
    let p = pipeline(&reg.image("web"));
    assert_eq!(
        scan_web(&s, &p).await.unwrap().newest.unwrap().digest,
        Some(d.clone())
    );
    let calls = || {
        std::fs::read_to_string(dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(calls(), 1);
    assert_eq!(
        scan_web(&s, &p).await.unwrap().newest.unwrap().digest,
        Some(d.clone())
    );
    assert_eq!(calls(), 1, "the helper's answer is kept");

    // The password rotates (as ECR's does every 12 hours) while the scanner keeps running.
    reg.set_htpasswd(USER, "second-password");
    std::fs::write(dir.path().join("secret"), "second-password").unwrap();
    let got = scan_web(&s, &p).await;
    assert_eq!(got.unwrap().newest.unwrap().digest, Some(d));
    assert_eq!(calls(), 2, "refused once, the helper is asked again");
}

#[tokio::test]
async fn a_password_file_rotated_with_the_registrys_htpasswd_is_read_again() {
    let reg = TestRegistry::start_with(RegistryOptions {
        htpasswd: Some((USER.into(), "first-password".into())),
        ..RegistryOptions::default()
    });
    let push = Pusher::with_auth(
        &reg.addr,
        RegistryAuth::Basic(USER.into(), "first-password".into()),
    );
    let d = push
        .push("web", "1.0.0", &image("f", &ImageOpts::default()))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "first-password").unwrap();
    let cfg: indexmap::IndexMap<String, baton::registry::auth::CredentialConfig> =
        yaml_serde::from_str(&format!(
            "\"{}\": {{ username: {USER}, password: {{ file: {} }} }}",
            reg.addr,
            file.display()
        ))
        .unwrap();
    let s = Scanner::new(
        RegistryClient::new(
            CredentialStore::from_config(&cfg).unwrap(),
            ClientOptions::default(),
        ),
        ScanOptions::default(),
    );
    let p = pipeline(&reg.image("web"));
    assert_eq!(
        scan_web(&s, &p).await.unwrap().newest.unwrap().digest,
        Some(d.clone())
    );

    reg.set_htpasswd(USER, "the-rotated-password");
    std::fs::write(&file, "the-rotated-password").unwrap();
    let before = s.client().stats();
    let got = scan_web(&s, &p).await;
    assert_eq!(got.unwrap().newest.unwrap().digest, Some(d));
    assert_eq!(
        s.client().stats().since(&before).total(),
        1,
        "the new password went out with the first request: no refusal round trip"
    );
}
