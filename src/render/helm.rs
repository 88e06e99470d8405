//! `helmCharts`: kustomize's built-in `HelmChartInflationGenerator`. The only part of the
//! renderer that runs a program: the `helm` binary, and only when `baton.yaml` says
//! `render: { helm: true }` (as `kubectl kustomize` needs `--enable-helm`). baton prepares
//! exactly what kustomize v5.5 hands to helm — the same `helm template` arguments, a values
//! file merged from `valuesInline` the same way — so helm prints the same objects.
//!
//! Charts come from the config repo (`chartHome`, default `charts/` next to the
//! kustomization) or, with `repo: oci://…`, are pulled by helm into a temporary directory
//! (kustomize pulls into `chartHome`; baton never writes into the repo). Other chart
//! repositories are refused: vendor the chart into the repo.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::error::{Location, RenderError};
use super::kustomization::{HelmChart, HelmGlobals};
use super::loader::{Loader, Resolved};
use super::merge;
use super::value::{self, Dialect};

/// Why `helmCharts` is refused when helm is off.
pub const ENABLE_HINT: &str = "it runs the helm binary, which baton does only when baton.yaml says `render: { helm: true }` (optionally `helmCommand: /path/to/helm`) or `baton render --enable-helm` is given — like `kubectl kustomize --enable-helm`";

/// Render one chart: what `helm template` prints.
pub fn inflate(
    helm: &Path,
    chart: &HelmChart,
    globals: &HelmGlobals,
    loader: &mut Loader,
    dir: &Resolved,
    kfile: &Path,
) -> Result<String, RenderError> {
    let at = Location::at(kfile, chart.line);
    let invalid = |why: String| RenderError::invalid(at.clone(), "helmCharts", why);
    if chart.name.is_empty() {
        return Err(invalid("chart name cannot be empty".into()));
    }
    let merge_mode = match chart.values_merge.as_str() {
        "" | "override" => "override",
        "merge" => "merge",
        "replace" => "replace",
        _ => {
            return Err(invalid(
                "valuesMerge must be one of [merge override replace]".into(),
            ));
        }
    };
    let home = if globals.chart_home.is_empty() {
        "charts"
    } else {
        globals.chart_home.as_str()
    };
    if Path::new(home).is_absolute() {
        return Err(RenderError::PathRefused {
            at: at.clone(),
            field: "helmGlobals.chartHome".into(),
            path: home.into(),
            why: "is absolute; keep charts inside the config repo".into(),
        });
    }
    // kustomize's absChartHome: `<chartHome>/<name>-<version>` for a versioned remote chart.
    let home = if !chart.version.is_empty() && !chart.repo.is_empty() {
        format!("{home}/{}-{}", chart.name, chart.version)
    } else {
        home.to_string()
    };
    let tmp = tempfile::Builder::new()
        .prefix("baton-helm-")
        .tempdir()
        .map_err(|e| {
            RenderError::build(
                at.clone(),
                format!("cannot create a temporary directory: {e}"),
            )
        })?;
    let config_home = tmp.path().join("helm");
    let run = |args: &[String]| -> Result<String, RenderError> {
        let out = Command::new(helm)
            .args(args)
            .env("HELM_CONFIG_HOME", &config_home)
            .env("HELM_CACHE_HOME", config_home.join(".cache"))
            .env("HELM_DATA_HOME", config_home.join(".data"))
            .output()
            .map_err(|e| {
                RenderError::build(
                    at.clone(),
                    format!(
                        "unable to run {} (is it installed? set render.helmCommand in baton.yaml): {e}",
                        helm.display()
                    ),
                )
            })?;
        if !out.status.success() {
            return Err(RenderError::build(
                at.clone(),
                format!(
                    "`helm {}` failed: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        String::from_utf8(out.stdout)
            .map_err(|_| RenderError::build(at.clone(), "helm printed output that is not UTF-8"))
    };

    // The chart: in the repo, or pulled from an OCI registry.
    let chart_entry = format!("{home}/{}", chart.name);
    let (chart_dir, pulled): (PathBuf, bool) = match loader.resolve(
        &dir.abs,
        &chart_entry,
        &at,
        "helmCharts",
        true,
    ) {
        Ok(r) if r.is_dir => (r.abs, false),
        Ok(_) | Err(RenderError::BadReference { .. }) => {
            if chart.repo.is_empty() {
                return Err(invalid(format!(
                    "no repo specified for pull, no chart found at '{}'",
                    loader.rel(&dir.abs.join(&chart_entry)).display()
                )));
            }
            if !chart.repo.starts_with("oci://") {
                return Err(RenderError::Unsupported {
                        at: at.clone(),
                        field: format!("helmCharts (repo {:?})", chart.repo),
                        why: "charts are pulled only from OCI registries; vendor the chart into the repo under chartHome".into(),
                    });
            }
            let untar = tmp.path().join("charts");
            let mut args: Vec<String> = vec![
                "pull".into(),
                "--untar".into(),
                "--untardir".into(),
                untar.display().to_string(),
                format!("{}/{}", chart.repo.trim_end_matches('/'), chart.name),
            ];
            if !chart.version.is_empty() {
                args.extend(["--version".into(), chart.version.clone()]);
            }
            if chart.devel {
                args.push("--devel".into());
            }
            run(&args)?;
            (untar.join(&chart.name), true)
        }
        Err(e) => return Err(e),
    };

    // The values file helm gets, as kustomize writes it.
    let values_file: PathBuf = match &chart.values_inline {
        Some(Value::Object(m)) if !m.is_empty() => {
            let inline = Value::Object(m.clone());
            let merged = if merge_mode == "replace" {
                inline
            } else {
                let chart_values = chart_values(chart, &chart_dir, pulled, loader, dir, &at)?;
                let (dest, patch) = if merge_mode == "override" {
                    (chart_values, inline)
                } else {
                    (inline, chart_values)
                };
                merge::strategic_merge(&dest, &patch, merge::Root::Builtin(None))
                    .map_err(|e| invalid(format!("could not merge values: {e}")))?
                    .unwrap_or(Value::Object(Default::default()))
            };
            let path = tmp
                .path()
                .join(format!("{}-kustomize-values.yaml", chart.name));
            // JSON is YAML, and keeps every value's type for helm's parser.
            std::fs::write(&path, serde_json::to_string(&merged).unwrap_or_default()).map_err(
                |e| RenderError::build(at.clone(), format!("cannot write helm values: {e}")),
            )?;
            path
        }
        _ => values_path(chart, &chart_dir, pulled, loader, dir, &at)?,
    };
    let mut extra = Vec::new();
    for f in &chart.additional_values_files {
        let r = loader.resolve(&dir.abs, f, &at, "helmCharts.additionalValuesFiles", false)?;
        extra.push(r.abs);
    }

    // kustomize's `HelmChart.AsHelmArgs`.
    let mut args: Vec<String> = vec!["template".into()];
    if chart.release_name.is_empty() {
        args.push("--generate-name".into());
    } else {
        args.push(chart.release_name.clone());
    }
    args.push(chart_dir.display().to_string());
    if !chart.namespace.is_empty() {
        args.extend(["--namespace".into(), chart.namespace.clone()]);
    }
    if !chart.name_template.is_empty() {
        args.extend(["--name-template".into(), chart.name_template.clone()]);
    }
    args.extend(["-f".into(), values_file.display().to_string()]);
    for f in extra {
        args.extend(["-f".into(), f.display().to_string()]);
    }
    for v in &chart.api_versions {
        args.extend(["--api-versions".into(), v.clone()]);
    }
    if !chart.kube_version.is_empty() {
        args.extend(["--kube-version".into(), chart.kube_version.clone()]);
    }
    for (on, flag) in [
        (chart.include_crds, "--include-crds"),
        (chart.skip_tests, "--skip-tests"),
        (chart.skip_hooks, "--no-hooks"),
        (chart.debug, "--debug"),
        (chart.devel, "--devel"),
    ] {
        if on {
            args.push(flag.into());
        }
    }
    run(&args)
}

/// The chart's values file: `valuesFile` (relative to the kustomization), else the chart's
/// own `values.yaml`.
fn values_path(
    chart: &HelmChart,
    chart_dir: &Path,
    pulled: bool,
    loader: &mut Loader,
    dir: &Resolved,
    at: &Location,
) -> Result<PathBuf, RenderError> {
    if !chart.values_file.is_empty() {
        let r = loader.resolve(
            &dir.abs,
            &chart.values_file,
            at,
            "helmCharts.valuesFile",
            false,
        )?;
        return Ok(r.abs);
    }
    let own = chart_dir.join("values.yaml");
    if pulled {
        return Ok(own);
    }
    let rel = own
        .strip_prefix(&dir.abs)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| own.display().to_string());
    let r = loader.resolve(&dir.abs, &rel, at, "helmCharts (values.yaml)", false)?;
    Ok(r.abs)
}

/// The values file read as kustomize reads it before merging (kyaml, YAML 1.2 scalars).
fn chart_values(
    chart: &HelmChart,
    chart_dir: &Path,
    pulled: bool,
    loader: &mut Loader,
    dir: &Resolved,
    at: &Location,
) -> Result<Value, RenderError> {
    let path = values_path(chart, chart_dir, pulled, loader, dir, at)?;
    let text = std::fs::read_to_string(&path).map_err(|source| RenderError::Io {
        at: at.clone(),
        path: path.clone(),
        source,
    })?;
    let docs = value::parse_stream(&text).map_err(|e| RenderError::Yaml {
        at: Location::at(loader.rel(&path), e.line),
        message: e.message,
    })?;
    match docs.iter().find(|d| !d.is_null()) {
        None => Ok(Value::Object(Default::default())),
        Some(d) => d.to_value(Dialect::Kyaml).map_err(|e| RenderError::Yaml {
            at: Location::at(loader.rel(&path), e.line),
            message: e.message,
        }),
    }
}
