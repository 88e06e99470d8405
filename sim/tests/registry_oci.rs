//! The OCI registry stand-in checked with oci-client: chunked and monolithic pushes, pulls, tag
//! pagination, digests, referrers, and the CNCF distribution notifications it sends.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::Value;
use sim::Server;
use sim::registry::{Registry, digest_of};
use tokio::sync::mpsc;

fn client(monolithic: bool) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        use_monolithic_push: monolithic,
        ..Default::default()
    })
}

fn reference(registry: &Registry, repo_and_tag: &str) -> Reference {
    format!("{}/{repo_and_tag}", registry.host())
        .parse()
        .unwrap()
}

async fn push(client: &Client, image: &Reference, layer: &[u8]) -> String {
    let config = Config::oci_v1(br#"{"architecture":"amd64","os":"linux"}"#.to_vec(), None);
    let pushed = client
        .push(
            image,
            &[ImageLayer::oci_v1(layer.to_vec(), None)],
            config,
            &RegistryAuth::Anonymous,
            None,
        )
        .await
        .unwrap();
    let (_, digest) = client
        .pull_image_manifest(image, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    assert!(
        pushed.manifest_url.ends_with(&digest) || pushed.manifest_url.contains("/manifests/"),
        "{}",
        pushed.manifest_url
    );
    digest
}

#[tokio::test]
async fn an_image_pushed_in_chunks_pulls_back_byte_for_byte() {
    let registry = Registry::start().await.unwrap();
    let client = client(false);
    let image = reference(&registry, "shop/web:1.0.0");
    let digest = push(&client, &image, b"layer one").await;

    let pulled = client
        .pull(
            &image,
            &RegistryAuth::Anonymous,
            vec![IMAGE_LAYER_MEDIA_TYPE],
        )
        .await
        .unwrap();
    assert_eq!(pulled.layers[0].data.as_ref(), b"layer one");
    assert_eq!(pulled.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(
        client
            .fetch_manifest_digest(&image, &RegistryAuth::Anonymous)
            .await
            .unwrap(),
        digest
    );
    let by_digest = reference(&registry, &format!("shop/web@{digest}"));
    client
        .pull_image_manifest(&by_digest, &RegistryAuth::Anonymous)
        .await
        .expect("pull by digest");

    let counts = registry.counts();
    assert!(
        counts.get("PATCH upload").copied().unwrap_or(0) >= 1,
        "{counts:?}"
    );
    assert_eq!(registry.digest("shop/web", "1.0.0"), Some(digest));
}

#[tokio::test]
async fn a_monolithic_push_stores_the_blob_under_its_digest() {
    let registry = Registry::start().await.unwrap();
    let client = client(true);
    let image = reference(&registry, "shop/api:2.0");
    push(&client, &image, b"api layer").await;
    assert_eq!(registry.counts().get("PATCH upload"), None);
    let layer = reference(&registry, "shop/api:2.0");
    let mut out = Vec::new();
    let (manifest, _) = client
        .pull_image_manifest(&layer, &RegistryAuth::Anonymous)
        .await
        .unwrap();
    client
        .pull_blob(&layer, &manifest.layers[0], &mut out)
        .await
        .unwrap();
    assert_eq!(out, b"api layer");
    assert_eq!(manifest.layers[0].digest, digest_of(b"api layer"));
}

#[tokio::test]
async fn tags_list_pages_with_n_and_last() {
    let registry = Registry::start().await.unwrap();
    for tag in ["1.0.0", "1.1.0", "2.0.0"] {
        registry.push_image("shop/web", tag, b"{}", &[tag.as_bytes()]);
    }
    let client = client(false);
    let image = reference(&registry, "shop/web:latest");
    let all = client
        .list_tags(&image, &RegistryAuth::Anonymous, None, None)
        .await
        .unwrap();
    assert_eq!(all.tags, ["1.0.0", "1.1.0", "2.0.0"]);
    let first = client
        .list_tags(&image, &RegistryAuth::Anonymous, Some(2), None)
        .await
        .unwrap();
    assert_eq!(first.tags, ["1.0.0", "1.1.0"]);
    let rest = client
        .list_tags(&image, &RegistryAuth::Anonymous, Some(2), Some("1.1.0"))
        .await
        .unwrap();
    assert_eq!(rest.tags, ["2.0.0"]);

    let resp = reqwest::get(format!("{}/v2/shop/web/tags/list?n=1", registry.url()))
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["link"],
        "</v2/shop/web/tags/list?last=1.0.0&n=1>; rel=\"next\""
    );
    let catalog: Value = reqwest::get(format!("{}/v2/_catalog", registry.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(catalog["repositories"], serde_json::json!(["shop/web"]));
}

#[tokio::test]
async fn unknown_manifests_and_repositories_are_404s_with_registry_error_codes() {
    let registry = Registry::start().await.unwrap();
    let client = client(false);
    let err = client
        .pull_image_manifest(
            &reference(&registry, "shop/none:1"),
            &RegistryAuth::Anonymous,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("MANIFEST_UNKNOWN")
            || err.to_string().contains("manifest unknown"),
        "{err}"
    );
    let resp = reqwest::get(format!("{}/v2/shop/none/tags/list", registry.url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "NAME_UNKNOWN");
}

#[tokio::test]
async fn a_manifest_push_sends_a_distribution_notification_envelope() {
    let (tx, mut rx) = mpsc::unbounded_channel::<(HeaderMap, Value)>();
    let receiver = Server::start(Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                tx.send((headers, serde_json::from_slice(&body).unwrap()))
                    .unwrap();
                "ok"
            }
        }),
    ))
    .await
    .unwrap();
    let registry = Registry::start().await.unwrap();
    registry.set_notify_url(Some(&format!("{}/hook", receiver.url())));

    let client = client(false);
    let digest = push(&client, &reference(&registry, "shop/web:1.2.3"), b"payload").await;
    let (headers, envelope) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        headers["content-type"],
        "application/vnd.docker.distribution.events.v1+json"
    );
    let event = &envelope["events"][0];
    assert_eq!(event["action"], "push");
    assert_eq!(event["target"]["repository"], "shop/web");
    assert_eq!(event["target"]["tag"], "1.2.3");
    assert_eq!(event["target"]["digest"], digest.as_str());
    assert_eq!(
        event["target"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    let deliveries = registry
        .wait_for_deliveries(1, Duration::from_secs(10))
        .await;
    assert_eq!(deliveries[0].status, Some(200));
}

#[tokio::test]
async fn referrers_lists_manifests_whose_subject_is_the_image() {
    let registry = Registry::start().await.unwrap();
    let image_digest = registry.push_image("shop/web", "1.0.0", b"{}", &[b"l"]);
    // A signature-like artifact pointing at the image, pushed over HTTP.
    let http = reqwest::Client::new();
    let empty = b"{}";
    let empty_digest = digest_of(empty);
    let up = http
        .post(format!(
            "{}/v2/shop/web/blobs/uploads/?digest={empty_digest}",
            registry.url()
        ))
        .body(empty.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(up.status(), 201);
    let artifact = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty_digest, "size": 2}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": image_digest, "size": 1},
    });
    let body = serde_json::to_vec(&artifact).unwrap();
    let put = http
        .put(format!(
            "{}/v2/shop/web/manifests/{}",
            registry.url(),
            digest_of(&body)
        ))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(put.headers()["oci-subject"], image_digest.as_str());

    let client = client(false);
    let index = client
        .pull_referrers(
            &reference(&registry, &format!("shop/web@{image_digest}")),
            None,
        )
        .await
        .unwrap();
    assert_eq!(index.manifests.len(), 1);
    assert_eq!(
        index.manifests[0].artifact_type.as_deref(),
        Some("application/vnd.dev.cosign.artifact.sig.v1+json")
    );
}
