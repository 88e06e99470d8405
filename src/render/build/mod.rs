//! The build: kustomize's `AccumulateTarget` for one kustomization — resources, then
//! generators, then components, then this kustomization's transformers — recursively, and the
//! steps done once at the top (content hashes, name references, local-config pruning, order).

mod meta;
mod patches;
mod transformers;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::configurations::{self, Extra};
use super::error::{Location, RenderError};
use super::explain;
use super::generate;
use super::helm;
use super::jsonpatch;
use super::kustomization::{self, Kind, Kustomization, PatchSpec};
use super::loader::{Loader, Resolved};
use super::merge;
use super::nameref;
use super::order;
use super::plugins;
use super::replace;
use super::resource::{Behavior, ResId, Resource, scalar_text};
use super::schema;
use super::select::Selector;
use super::transform;
use super::value::{self, Dialect, Raw};
use super::vars;

use meta::*;
use patches::*;

pub struct Builder {
    loader: Loader,
    /// Directories being built, for cycle detection.
    stack: Vec<PathBuf>,
    /// `vars` of every kustomization in the tree, resolved once at the end.
    vars: Vec<vars::Var>,
    /// What `kubectl kustomize` would print on stderr.
    warnings: Vec<String>,
    /// The top directory when its `buildMetadata` asks for `transformerAnnotations`: every
    /// transformer that runs is then recorded on the objects it ran over.
    track_transformers: Option<PathBuf>,
    /// The custom OpenAPI schema, once a kustomization has set one (`openapi.path`); like
    /// kustomize's global schema, the first kustomization loaded that names one sets it for
    /// the rest of the build, and a built-in `version` counts as set.
    openapi: Option<std::rc::Rc<schema::Custom>>,
    openapi_set: bool,
    /// The helm binary, when `helmCharts` may run it.
    helm: Option<PathBuf>,
    /// Trace which step set each field (`baton render --explain`).
    explain: bool,
}

/// Render the kustomization in `dir` (relative to `repo_root`, or absolute inside it).
pub fn run(
    repo_root: &Path,
    dir: &Path,
    options: &super::Options,
) -> Result<(Vec<Resource>, Vec<String>), RenderError> {
    let loader = Loader::new(repo_root)?;
    let entry = loader.resolve_entry(dir)?;
    let mut b = Builder {
        loader,
        stack: Vec::new(),
        vars: Vec::new(),
        warnings: Vec::new(),
        track_transformers: None,
        openapi: None,
        openapi_set: false,
        helm: options.helm.clone(),
        explain: options.explain,
    };
    if !entry.is_dir {
        return Err(RenderError::BadReference {
            at: Location::file(&entry.rel),
            field: "render".into(),
            path: dir.display().to_string(),
            message: "is not a directory; render a directory that holds a kustomization.yaml"
                .into(),
        });
    }
    let k = b.load(
        &entry,
        Kind::Kustomization,
        &Location::file(&entry.rel),
        "render",
    )?;
    if k.build_metadata
        .iter()
        .any(|m| m.value == "transformerAnnotations")
    {
        b.track_transformers = Some(entry.rel.clone());
    }
    let mut resources = Vec::new();
    let cfg = b.accumulate(&k, &entry, &mut resources, Extra::default())?;
    resources.retain(|r| !r.is_empty());

    let explain = |ra: &mut Vec<Resource>, what: &str| {
        if b.explain {
            explain::step(ra, &format!("{} {what}", k.file.display()));
        }
    };
    add_build_metadata(&mut resources, &k, &entry.rel);
    explain(&mut resources, "buildMetadata");
    add_hashes(&mut resources);
    explain(
        &mut resources,
        "content-hash name suffix (generated objects)",
    );
    nameref::fix(&mut resources, &cfg.name_references)?;
    explain(&mut resources, "name references (follows renamed objects)");
    vars::resolve(&mut resources, &b.vars, &cfg.var_references)?;
    explain(&mut resources, "vars");
    resources.retain(|r| {
        r.value
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get("config.kubernetes.io/local-config"))
            .map(scalar_text)
            .as_deref()
            != Some("true")
    });
    order::sort(&mut resources, k.sort_options.as_ref());
    for r in resources.iter_mut() {
        stringify_annotations(&mut r.value);
        fold_next_lines(&mut r.value);
    }
    Ok((resources, b.warnings))
}

impl Builder {
    fn load(
        &mut self,
        dir: &Resolved,
        expect: Kind,
        at: &Location,
        field: &str,
    ) -> Result<Kustomization, RenderError> {
        let Some(file) = self.loader.kustomization_file(dir)? else {
            return Err(RenderError::BadReference {
                at: at.clone(),
                field: field.to_string(),
                path: dir.rel.display().to_string(),
                message: "has no kustomization.yaml, kustomization.yml or Kustomization".into(),
            });
        };
        let text = self.loader.read_text(&file, at)?;
        let k = kustomization::parse(&text, &file.rel)?;
        self.set_openapi(&k, dir)?;
        match (expect, k.kind) {
            (Kind::Component, Kind::Kustomization) => Err(RenderError::BadReference {
                at: at.clone(),
                field: field.to_string(),
                path: dir.rel.display().to_string(),
                message: "is a Kustomization; `components` takes directories whose kustomization has `kind: Component`".into(),
            }),
            (Kind::Kustomization, Kind::Component) => Err(RenderError::BadReference {
                at: at.clone(),
                field: field.to_string(),
                path: dir.rel.display().to_string(),
                message: "is a Component; list it under `components`, not `resources`".into(),
            }),
            _ => Ok(k),
        }
    }

    /// kustomize's `openapi.SetSchema`: only the first schema set counts.
    fn set_openapi(&mut self, k: &Kustomization, dir: &Resolved) -> Result<(), RenderError> {
        if self.openapi_set {
            return Ok(());
        }
        let at = Location::file(&k.file);
        let version = k.openapi.get("version").filter(|v| !v.is_empty());
        if let Some(path) = k.openapi.get("path") {
            if version.is_some() {
                return Err(RenderError::invalid(
                    at,
                    "openapi",
                    "builtin version and custom schema provided, cannot use both",
                ));
            }
            let r = self
                .loader
                .resolve(&dir.abs, path, &at, "openapi.path", false)?;
            let text = self.loader.read_text(&r, &at)?;
            let docs = value::parse_stream(&text).map_err(|e| RenderError::Yaml {
                at: Location::at(&r.rel, e.line),
                message: e.message,
            })?;
            let doc = match docs.iter().find(|d| !d.is_null()) {
                Some(d) => d.to_value(Dialect::Kyaml).map_err(|e| RenderError::Yaml {
                    at: Location::at(&r.rel, e.line),
                    message: e.message,
                })?,
                None => Value::Null,
            };
            let custom = schema::Custom::new(doc)
                .map_err(|e| RenderError::invalid(Location::file(&r.rel), "openapi.path", e))?;
            self.openapi = Some(std::rc::Rc::new(custom));
            self.openapi_set = true;
        } else if let Some(v) = version {
            // kustomize v5.5 builds in one Kubernetes schema, the one baton models.
            if v != "v1.21.2" {
                return Err(RenderError::invalid(
                    at,
                    "openapi.version",
                    format!("{v:?}: the specified OpenAPI version is not built in (v1.21.2 is)"),
                ));
            }
            self.openapi_set = true;
        }
        Ok(())
    }

    fn enter(&mut self, dir: &Resolved, at: &Location) -> Result<(), RenderError> {
        if self.stack.contains(&dir.abs) {
            return Err(RenderError::build(
                at.clone(),
                format!("cycle: {} includes itself", dir.rel.display()),
            ));
        }
        self.stack.push(dir.abs.clone());
        Ok(())
    }

    /// Build one kustomization into `ra`; returns the field specs its `configurations` (and
    /// those of everything it includes) add, which apply to the kustomizations above it too.
    /// `cfg` is the configuration accumulated so far: empty for a kustomization, the
    /// including kustomization's for a component (which runs on its accumulator).
    fn accumulate(
        &mut self,
        k: &Kustomization,
        dir: &Resolved,
        ra: &mut Vec<Resource>,
        cfg: Extra,
    ) -> Result<Extra, RenderError> {
        self.enter(dir, &Location::file(&k.file))?;
        let result = self.accumulate_inner(k, dir, ra, cfg);
        self.stack.pop();
        result
    }

    fn accumulate_inner(
        &mut self,
        k: &Kustomization,
        dir: &Resolved,
        ra: &mut Vec<Resource>,
        mut cfg: Extra,
    ) -> Result<Extra, RenderError> {
        let merge_err =
            |e: String| RenderError::invalid(Location::file(&k.file), "configurations", e);
        let mut index = name_index(ra);
        for entry in &k.resources {
            let at = Location::at(&k.file, entry.line);
            let r = self
                .loader
                .resolve(&dir.abs, &entry.value, &at, "resources", true)?;
            let loaded = if r.is_dir {
                let sub = self.load(&r, Kind::Kustomization, &at, "resources")?;
                let mut sub_ra = Vec::new();
                let sub_cfg = self.accumulate(&sub, &r, &mut sub_ra, Extra::default())?;
                cfg.merge(&sub_cfg).map_err(merge_err)?;
                sub_ra
            } else {
                self.load_resources(&r, &at)?
            };
            append_all(ra, &mut index, loaded, &at)?;
        }
        let mut files = Extra::default();
        for entry in &k.configurations {
            let at = Location::at(&k.file, entry.line);
            let r = self
                .loader
                .resolve(&dir.abs, &entry.value, &at, "configurations", false)?;
            let text = self.loader.read_text(&r, &at)?;
            files
                .merge(&configurations::parse(&text, &r.rel)?)
                .map_err(|e| RenderError::invalid(at.clone(), "configurations", e))?;
        }
        // kustomize's `MakeTransformerConfig`: the defaults, extended by the files.
        let mut own = Extra::builtin();
        if !k.configurations.is_empty() {
            own.merge(&files).map_err(merge_err)?;
        }
        cfg.merge(&own).map_err(merge_err)?;
        if self.explain {
            explain::step(ra, "");
        }
        for spec in k.config_map_generator.iter().chain(&k.secret_generator) {
            let res = generate::generate(
                &mut self.loader,
                &dir.abs,
                &k.file,
                spec,
                k.generator_options.as_ref(),
            )?;
            absorb(ra, &mut index, res)?;
        }
        for chart in &k.helm_charts {
            let Some(helm_bin) = self.helm.clone() else {
                return Err(RenderError::Unsupported {
                    at: Location::at(&k.file, chart.line),
                    field: "helmCharts".into(),
                    why: helm::ENABLE_HINT.into(),
                });
            };
            let text = helm::inflate(
                &helm_bin,
                chart,
                &k.helm_globals,
                &mut self.loader,
                dir,
                &k.file,
            )?;
            for mut res in parse_resources(&text, &k.file)? {
                res.origin = Location::at(&k.file, chart.line);
                res.configured_by =
                    Some("  apiVersion: builtin\n  kind: HelmChartInflationGenerator\n".into());
                absorb(ra, &mut index, res)?;
            }
        }
        for entry in plugins::in_kustomize_order(&k.generators) {
            for plugin in self.load_plugins(k, dir, entry, "generators")? {
                if let plugins::Config::Generate(spec) = &plugin.config {
                    let mut res = generate::generate(
                        &mut self.loader,
                        &dir.abs,
                        &plugin.at.file,
                        spec,
                        None,
                    )?;
                    let mut by = format!(
                        "  apiVersion: builtin\n  kind: {}Generator\n  name: {}\n",
                        res.kind(),
                        spec.name
                    );
                    if !spec.namespace.is_empty() {
                        by.push_str(&format!("  namespace: {}\n", spec.namespace));
                    }
                    res.configured_by = Some(by);
                    absorb(ra, &mut index, res)?;
                } else if let plugins::Config::Helm(h) = &plugin.config {
                    let (chart, globals) = &**h;
                    let Some(helm_bin) = self.helm.clone() else {
                        return Err(RenderError::Unsupported {
                            at: plugin.at.clone(),
                            field: "generators (HelmChartInflationGenerator)".into(),
                            why: helm::ENABLE_HINT.into(),
                        });
                    };
                    let text = helm::inflate(
                        &helm_bin,
                        chart,
                        globals,
                        &mut self.loader,
                        dir,
                        &plugin.at.file,
                    )?;
                    let (_, name, namespace) = &plugin.id;
                    let mut by =
                        "  apiVersion: builtin\n  kind: HelmChartInflationGenerator\n".to_string();
                    if !name.is_empty() {
                        by.push_str(&format!("  name: {name}\n"));
                    }
                    if !namespace.is_empty() {
                        by.push_str(&format!("  namespace: {namespace}\n"));
                    }
                    for mut res in parse_resources(&text, &plugin.at.file)? {
                        res.origin = plugin.at.clone();
                        res.configured_by = Some(by.clone());
                        absorb(ra, &mut index, res)?;
                    }
                } else if let plugins::Config::Objects(objs) = &plugin.config {
                    let (kind, name, namespace) = &plugin.id;
                    for v in objs {
                        let mut res = Resource::new(v.clone(), plugin.at.clone());
                        let mut by = format!("  apiVersion: builtin\n  kind: {kind}\n");
                        if !name.is_empty() {
                            by.push_str(&format!("  name: {name}\n"));
                        }
                        if !namespace.is_empty() {
                            by.push_str(&format!("  namespace: {namespace}\n"));
                        }
                        res.configured_by = Some(by);
                        absorb(ra, &mut index, res)?;
                    }
                }
            }
        }
        if self.explain {
            let what = "generators (configMapGenerator, secretGenerator, helmCharts, generators)";
            explain::step(ra, &format!("{} {what}", k.file.display()));
        }
        for entry in &k.components {
            let at = Location::at(&k.file, entry.line);
            let r = self
                .loader
                .resolve(&dir.abs, &entry.value, &at, "components", true)?;
            if !r.is_dir {
                return Err(RenderError::BadReference {
                    at,
                    field: "components".into(),
                    path: entry.value.clone(),
                    message: "is a file; `components` takes directories".into(),
                });
            }
            let ck = self.load(&r, Kind::Component, &at, "components")?;
            cfg = self.accumulate(&ck, &r, ra, cfg)?;
        }
        self.transform(k, dir, ra, &cfg, true)?;
        if !k.vars.is_empty() {
            self.warnings.push(vars::DEPRECATION.to_string());
        }
        for v in &k.vars {
            if self.vars.iter().any(|x| x.name == v.name) {
                return Err(RenderError::build(
                    v.at.clone(),
                    format!("var '{}' already encountered", v.name),
                ));
            }
            self.vars.push(v.clone());
        }
        Ok(cfg)
    }

    /// Read the resources of one file: every non-empty document; `*List` kinds expand into
    /// their items (appended after the file's other documents, as kustomize does).
    fn load_resources(
        &mut self,
        file: &Resolved,
        at: &Location,
    ) -> Result<Vec<Resource>, RenderError> {
        let text = self.loader.read_text(file, at)?;
        parse_resources(&text, &file.rel)
    }

    /// The built-in plugin configurations of one `generators`/`transformers` entry: inline
    /// text, a file of documents, or a directory whose kustomization renders to them.
    fn load_plugins(
        &mut self,
        k: &Kustomization,
        dir: &Resolved,
        entry: &kustomization::Spanned<String>,
        field: &str,
    ) -> Result<Vec<plugins::Plugin>, RenderError> {
        let at = Location::at(&k.file, entry.line);
        let mut docs: Vec<(Value, Location)> = Vec::new();
        if plugins::is_inline(&entry.value) {
            let parsed = value::parse_stream(&entry.value).map_err(|e| RenderError::Yaml {
                at: offset_line(&at, e.line),
                message: e.message,
            })?;
            for d in parsed.iter().filter(|d| !d.is_null()) {
                let v = d.to_value(Dialect::Kyaml).map_err(|e| RenderError::Yaml {
                    at: offset_line(&at, e.line),
                    message: e.message,
                })?;
                docs.push((v, at.clone()));
            }
        } else {
            let r = self
                .loader
                .resolve(&dir.abs, &entry.value, &at, field, true)?;
            let loaded = if r.is_dir {
                let sub = self.load(&r, Kind::Kustomization, &at, field)?;
                let mut sub_ra = Vec::new();
                self.accumulate(&sub, &r, &mut sub_ra, Extra::default())?;
                sub_ra
            } else {
                self.load_resources(&r, &at)?
            };
            docs.extend(loaded.into_iter().map(|r| (r.value, r.origin)));
        }
        docs.iter()
            .map(|(v, at)| plugins::parse(v, at, field))
            .collect()
    }
}
