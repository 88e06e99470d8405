//! `helmCharts` with the real helm (from `scripts/kube-assets`, as tests/chart.rs finds it):
//! every tree under tests/render/helm-fixtures/ renders byte-identical to what
//! `kubectl kustomize --enable-helm --helm-command $HELM` printed for it (expected.yaml, from
//! `scripts/render-fixtures.sh regen`), or fails with its error.txt; without helm enabled
//! each tree is refused with the way to enable it.

mod chart_support;

use std::path::{Path, PathBuf};

use baton::render::{self, Options};

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/render/helm-fixtures");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/render/helm-fixtures exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn with_helm() -> Options {
    Options {
        helm: Some(chart_support::helm()),
    }
}

#[test]
fn every_helm_fixture_prints_byte_identical_to_kubectl_kustomize_enable_helm() {
    let settings = with_helm();
    let mut checked = 0;
    for case in cases()
        .into_iter()
        .filter(|c| !c.join("error.txt").exists())
    {
        let expected = std::fs::read_to_string(case.join("expected.yaml")).unwrap();
        let (objects, _) = render::render_with(&case, Path::new("."), &settings)
            .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        let got = render::to_yaml_stream(&objects);
        assert!(
            got == expected,
            "{}: differs from kubectl kustomize --enable-helm:\n{}",
            case.display(),
            similar::TextDiff::from_lines(&expected, &got).unified_diff()
        );
        checked += 1;
    }
    assert!(checked >= 2, "only {checked} helm parity fixtures");
}

#[test]
fn every_helm_error_fixture_fails_with_its_message() {
    let settings = with_helm();
    for case in cases().into_iter().filter(|c| c.join("error.txt").exists()) {
        let want = std::fs::read_to_string(case.join("error.txt")).unwrap();
        let err = match render::render_with(&case, Path::new("."), &settings) {
            Ok(_) => panic!("{}: rendered, but must fail", case.display()),
            Err(e) => e.to_string(),
        };
        for line in want.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                err.contains(line),
                "{}: {err:?} lacks {line:?}",
                case.display()
            );
        }
    }
}

#[test]
fn without_render_helm_a_chart_is_refused_with_how_to_enable_it() {
    for case in cases()
        .into_iter()
        .filter(|c| !c.join("error.txt").exists())
    {
        let err = render::render(&case, Path::new("."))
            .err()
            .unwrap_or_else(|| panic!("{}: rendered without helm", case.display()))
            .to_string();
        assert!(
            err.contains("helmCharts") && err.contains("render: { helm: true }"),
            "{}: {err}",
            case.display()
        );
    }
}

#[test]
fn a_helm_command_that_does_not_exist_is_a_clear_error() {
    let case = cases()
        .into_iter()
        .find(|c| !c.join("error.txt").exists())
        .unwrap();
    let settings = Options {
        helm: Some(PathBuf::from("/nonexistent/helm")),
    };
    let err = render::render_with(&case, Path::new("."), &settings)
        .err()
        .expect("no helm, no render")
        .to_string();
    assert!(
        err.contains("/nonexistent/helm") && err.contains("render.helmCommand"),
        "{err}"
    );
}
