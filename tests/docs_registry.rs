//! docs/registry.md stays true: its `baton.yaml` and `policies/pipeline.yaml` examples parse
//! with baton's own loaders and mean what the page says.

use baton::config::{Pipeline, RuntimeConfig};

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
        !blocks.is_empty(),
        "no baton.yaml example in docs/registry.md"
    );
    for yaml in blocks {
        let c = RuntimeConfig::parse("docs/registry.md", &yaml, [])
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert!(
            c.registries.contains_key("prod-registry.example.com"),
            "{yaml}"
        );
    }
}
