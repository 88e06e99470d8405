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
        ..Options::default()
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
        ..Options::default()
    };
    let err = render::render_with(&case, Path::new("."), &settings)
        .expect_err("no helm, no render")
        .to_string();
    assert!(
        err.contains("/nonexistent/helm") && err.contains("render.helmCommand"),
        "{err}"
    );
}

mod registry_support;

/// helm with its config, cache and data kept in `dir`.
fn helm_in(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new(chart_support::helm())
        .args(args)
        .env("HELM_CONFIG_HOME", dir.join("config"))
        .env("HELM_CACHE_HOME", dir.join("cache"))
        .env("HELM_DATA_HOME", dir.join("data"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn an_oci_chart_is_pulled_from_a_local_registry_renders_like_the_same_chart_in_the_repo_and_nothing_is_written_into_the_repo()
 {
    let registry = registry_support::TestRegistry::start();
    let work = tempfile::tempdir().unwrap();
    let chart = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/render/helm-fixtures/chart-merge-modes/vendor/shop");
    let pkg = work.path().join("pkg");
    helm_in(
        work.path(),
        &[
            "package",
            chart.to_str().unwrap(),
            "-d",
            pkg.to_str().unwrap(),
        ],
    );
    let tgz = pkg.join("shop-0.3.0.tgz");
    let oci = format!("oci://{}/charts", registry.addr);
    helm_in(
        work.path(),
        &["push", tgz.to_str().unwrap(), &oci, "--plain-http"],
    );

    let entry = "  releaseName: r\n  valuesInline: {replicas: 7}\n";
    let local = work.path().join("local");
    copy_dir(&chart, &local.join("charts/shop"));
    std::fs::write(
        local.join("kustomization.yaml"),
        format!("helmCharts:\n- name: shop\n{entry}"),
    )
    .unwrap();
    let pulled = work.path().join("pulled");
    std::fs::create_dir_all(&pulled).unwrap();
    std::fs::write(
        pulled.join("kustomization.yaml"),
        format!("helmCharts:\n- name: shop\n  repo: {oci}\n  version: 0.3.0\n{entry}"),
    )
    .unwrap();

    let options = with_helm();
    let (from_repo, _) = render::render_with(&local, Path::new("."), &options).unwrap();
    let (from_oci, _) = render::render_with(&pulled, Path::new("."), &options).unwrap();
    let (a, b) = (
        render::to_yaml_stream(&from_repo),
        render::to_yaml_stream(&from_oci),
    );
    assert!(a.contains("replicas: 7"), "{a}");
    assert_eq!(
        a, b,
        "the pulled chart renders as the same chart in the repo"
    );
    let left: Vec<_> = std::fs::read_dir(&pulled)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["kustomization.yaml"], "baton wrote into the repo");
    // Where kubectl is installed, it is the oracle for the pulled chart too.
    let helm = chart_support::helm();
    if let Ok(out) = std::process::Command::new("kubectl")
        .args(["kustomize", "--enable-helm", "--helm-command"])
        .arg(&helm)
        .arg(&pulled)
        .output()
        && out.status.success()
    {
        assert_eq!(String::from_utf8_lossy(&out.stdout), b);
    }
}
