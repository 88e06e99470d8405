//! Parity suite for the renderer: every tree under tests/render/fixtures/ renders to what
//! `kubectl kustomize` printed for it (expected.yaml, produced by
//! `scripts/render-fixtures.sh regen`), or fails with the error its error.txt describes.
//! No kubectl needed here; `scripts/render-fixtures.sh check` re-verifies the goldens.

use std::path::{Path, PathBuf};

use baton::render;

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/render/fixtures");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/render/fixtures exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn name(case: &Path) -> String {
    case.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn the_suite_has_at_least_sixty_trees() {
    let cases = fixtures();
    let parity = cases
        .iter()
        .filter(|c| !c.join("error.txt").exists())
        .count();
    assert!(cases.len() >= 60, "only {} fixture trees", cases.len());
    assert!(
        parity >= 60,
        "only {parity} parity fixtures (with expected.yaml)"
    );
}

#[test]
fn every_fixture_renders_semantically_equal_to_kubectl_kustomize() {
    let mut failures = Vec::new();
    for case in fixtures()
        .into_iter()
        .filter(|c| !c.join("error.txt").exists())
    {
        let expected_text =
            std::fs::read_to_string(case.join("expected.yaml")).unwrap_or_else(|e| {
                panic!(
                    "{}: no expected.yaml ({e}); run scripts/render-fixtures.sh regen",
                    name(&case)
                )
            });
        let expected = render::parse_stream(&expected_text).unwrap();
        match render::render(&case, Path::new(".")) {
            Err(e) => failures.push(format!("{}: baton failed: {e}", name(&case))),
            Ok(objects) => {
                // Both streams read with the same parser: equal documents, in the same order.
                let text = render::to_yaml_stream(&objects);
                let got = render::parse_stream(&text).unwrap();
                if got != expected {
                    let diff = similar::TextDiff::from_lines(&expected_text, &text)
                        .unified_diff()
                        .header("kubectl kustomize", "baton")
                        .to_string();
                    failures.push(format!("{}: objects differ\n{diff}", name(&case)));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_fixture_prints_byte_identical_to_kubectl_kustomize() {
    let mut failures = Vec::new();
    for case in fixtures()
        .into_iter()
        .filter(|c| !c.join("error.txt").exists())
    {
        let expected = std::fs::read_to_string(case.join("expected.yaml")).unwrap();
        let Ok(objects) = render::render(&case, Path::new(".")) else {
            continue;
        };
        let got = render::to_yaml_stream(&objects);
        if got != expected {
            let diff = similar::TextDiff::from_lines(&expected, &got)
                .unified_diff()
                .header("kubectl kustomize", "baton")
                .to_string();
            failures.push(format!("{}:\n{diff}", name(&case)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} fixture(s) print differently:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_error_fixture_fails_with_its_message() {
    let mut failures = Vec::new();
    for case in fixtures()
        .into_iter()
        .filter(|c| c.join("error.txt").exists())
    {
        let want = std::fs::read_to_string(case.join("error.txt")).unwrap();
        match render::render(&case, Path::new(".")) {
            Ok(_) => failures.push(format!("{}: rendered, but must fail", name(&case))),
            Err(e) => {
                let text = e.to_string();
                for line in want.lines().filter(|l| !l.trim().is_empty()) {
                    if !text.contains(line) {
                        failures.push(format!(
                            "{}: error {text:?} does not mention {line:?}",
                            name(&case)
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn rendering_is_deterministic_across_runs() {
    for case in fixtures()
        .into_iter()
        .filter(|c| !c.join("error.txt").exists())
    {
        let a = render::to_yaml_stream(&render::render(&case, Path::new(".")).unwrap());
        let b = render::to_yaml_stream(&render::render(&case, Path::new(".")).unwrap());
        assert_eq!(a, b, "{}", name(&case));
    }
}

#[test]
fn vars_carry_kustomizes_deprecation_warning() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/render/fixtures");
    let (_, warnings) =
        render::render_with_warnings(&root.join("vars-in-base-and-overlay"), Path::new("."))
            .unwrap();
    // One per kustomization with vars (the overlay and its base), as kubectl kustomize prints.
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings[0].contains("'vars' is deprecated. Please use 'replacements' instead."));
    let (_, none) = render::render_with_warnings(
        &root.join("replacements-field-paths-and-options"),
        Path::new("."),
    )
    .unwrap();
    assert!(none.is_empty(), "{none:?}");
}

#[test]
fn explain_names_the_step_that_last_changed_each_field() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/render/fixtures/build-metadata-transformer-annotations");
    let (id, fields) = render::explain(
        &case,
        Path::new("."),
        &render::Options::default(),
        "Service",
        None,
        "p-b-svc-s",
    )
    .unwrap();
    assert_eq!(id.namespace, "ns");
    let source = |path: &str| {
        fields
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no field {path} in {fields:?}"))
            .source
            .clone()
    };
    for (path, from) in [
        ("kind", "base/res.yaml:13"),
        ("metadata.name", "kustomization.yaml nameSuffix"),
        ("metadata.namespace", "kustomization.yaml namespace"),
        (
            "metadata.labels.a",
            "base/kustomization.yaml labels/commonLabels",
        ),
        (
            "metadata.labels.c",
            "comp/kustomization.yaml labels/commonLabels",
        ),
        (
            "metadata.annotations.target",
            "kustomization.yaml replacements",
        ),
        (
            "metadata.annotations.stamped",
            "transformers: AnnotationsTransformer/stamp",
        ),
        ("spec.type", "kustomization.yaml patchesStrategicMerge"),
        ("spec.ports[0].port", "kustomization.yaml patchesJson6902"),
    ] {
        assert!(
            source(path).ends_with(from),
            "{path}: {} (want {from})",
            source(path)
        );
    }
    let (_, dep) = render::explain(
        &case,
        Path::new("."),
        &render::Options::default(),
        "Deployment",
        Some("ns"),
        "p-b-web-s",
    )
    .unwrap();
    let image = dep
        .iter()
        .find(|f| f.path.ends_with(".image"))
        .expect("an image field");
    assert!(
        image.source.ends_with("kustomization.yaml images"),
        "{image:?}"
    );
    assert!(
        render::explain(
            &case,
            Path::new("."),
            &render::Options::default(),
            "Service",
            None,
            "nope"
        )
        .is_err()
    );
}
