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
