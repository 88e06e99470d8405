//! docs/registry.md stays true: its `baton.yaml` and `policies/pipeline.yaml` examples parse
//! with baton's own loaders and mean what the page says.

use baton::config::{Pipeline, RuntimeConfig};
use baton::registry::{Credential, CredentialStore};

/// The YAML blocks of the page whose first line names the file they are (`# baton.yaml`).
fn examples(file: &str) -> Vec<String> {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/registry.md")).unwrap();
    page.split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.starts_with(&format!("# {file}")))
        .map(String::from)
        .collect()
}

#[test]
fn the_copy_to_pipeline_example_parses_and_copies_prod_to_its_registry() {
    let blocks = examples("policies/pipeline.yaml");
    assert!(
        !blocks.is_empty(),
        "no pipeline.yaml example in docs/registry.md"
    );
    for yaml in blocks {
        let p = Pipeline::parse("docs/registry.md", &yaml)
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
            .pipeline;
        let route = baton::registry::copier::route(&p, "prod", "web")
            .expect("prod has copyTo")
            .unwrap();
        assert_eq!(
            route.target.to_string(),
            "prod-registry.example.com/shop/web"
        );
        assert!(baton::registry::copier::route(&p, "staging", "web").is_none());
    }
}

#[test]
fn the_baton_yaml_examples_parse_with_credentials_per_registry() {
    let blocks = examples("baton.yaml");
    assert!(
        blocks.len() >= 2,
        "docs/registry.md: {} baton.yaml examples",
        blocks.len()
    );
    let mut hosts = Vec::new();
    for yaml in blocks {
        let c = RuntimeConfig::parse("docs/registry.md", &yaml, [])
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        for (host, entry) in &c.registries {
            assert!(
                entry.password.is_some() != entry.token.is_some(),
                "{host}: {entry:?}"
            );
            hosts.push(host.clone());
        }
    }
    for host in [
        "prod-registry.example.com",
        "ghcr.io",
        "registry.example.com",
    ] {
        assert!(hosts.iter().any(|h| h == host), "{host} in {hosts:?}");
    }
}

#[test]
fn the_docker_config_example_reads_auths_and_names_helpers() {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/registry.md")).unwrap();
    let json = page
        .split("```json\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a config.json example");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, json).unwrap();
    let mut store = CredentialStore::new();
    store.merge_docker_config(&path).unwrap();
    assert_eq!(
        store.get("registry.internal:5000"),
        Some(Credential::basic("ci", "secret"))
    );
    assert!(!store.is_empty());
}

#[test]
fn the_verification_example_parses_into_keyless_and_keyed_requirements() {
    use baton::registry::verify::{Requirements, Trust};
    let yaml = examples("policies/pipeline.yaml")
        .into_iter()
        .find(|b| b.contains("keyless:"))
        .expect("a pipeline.yaml example with keyless verification");
    let p = Pipeline::parse("docs/registry.md", &yaml)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"))
        .pipeline;
    let read = |path: &str| -> Result<Vec<u8>, String> {
        match path {
            "keys/sigstore-trusted-root.json" => Ok(std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/registry_support/sigstore/sigstore-go-public-good.json"
            ))
            .unwrap()),
            "keys/ci.pub" => {
                Ok(std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/keys/ci.pub")).unwrap())
            }
            other => Err(format!("the example names {other}")),
        }
    };
    let web =
        Requirements::from_config(p.app("web").unwrap().verify.as_ref().unwrap(), &read).unwrap();
    let Trust::Keyless(k) = &web.trust else {
        panic!("web is keyless")
    };
    assert_eq!(
        k.identity.issuer,
        "https://token.actions.githubusercontent.com"
    );
    assert!(
        k.identity
            .subject
            .is_match("https://github.com/shop/web/.github/workflows/release.yml@refs/heads/main")
    );
    assert!(
        !k.identity.subject.is_match(
            "https://github.com/shop/web/.github/workflows/release.yml@refs/heads/feature"
        )
    );
    assert_eq!(
        web.attestations,
        [
            "https://slsa.dev/provenance/v1",
            "https://cosign.sigstore.dev/attestation/vuln/v1"
        ]
    );
    let api =
        Requirements::from_config(p.app("api").unwrap().verify.as_ref().unwrap(), &read).unwrap();
    assert!(matches!(api.trust, Trust::Key(_)));
    assert_eq!(api.attestations, ["https://slsa.dev/provenance/v1"]);
}

#[test]
fn the_provenance_policy_example_denies_what_the_page_says() {
    use baton::promote::policy::{PolicyInput, PolicySource, deny_reasons};
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/registry.md")).unwrap();
    let text = page
        .split("```rego\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a rego example")
        .to_string();
    let policies = [PolicySource {
        path: "policies/provenance.rego".into(),
        text,
    }];
    let input = |branch: Option<&str>, critical: u32| {
        PolicyInput {
        app: "web".into(),
        environment: "prod".into(),
        digest: "sha256:00".into(),
        tag: Some("1.0.0".into()),
        from: None,
        now: "2026-03-03T12:00:00Z".into(),
        weekday: "Tue".into(),
        pull_request: 1,
        labels: vec![],
        approvers: vec![],
        passed_checks: vec![],
        attestations: branch
            .map(|b| {
                (
                    "https://slsa.dev/provenance/v1".to_string(),
                    serde_json::json!({"buildDefinition": {"externalParameters": {"workflow": {"ref": format!("refs/heads/{b}")}}}}),
                )
            })
            .into_iter()
            .chain([(
                "https://cosign.sigstore.dev/attestation/vuln/v1".to_string(),
                serde_json::json!({"scanner": {"result": {"critical": critical}}}),
            )])
            .collect(),
    }
    };
    assert!(
        deny_reasons(&policies, &input(Some("main"), 0))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        deny_reasons(&policies, &input(Some("dev"), 0)).unwrap(),
        ["prod takes only images built from main"]
    );
    assert_eq!(
        deny_reasons(&policies, &input(None, 0)).unwrap(),
        ["prod takes only images with build provenance"]
    );
    assert_eq!(
        deny_reasons(&policies, &input(Some("main"), 1)).unwrap(),
        ["critical vulnerabilities"]
    );
}
