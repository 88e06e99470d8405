//! The build: kustomize's `AccumulateTarget` for one kustomization — resources, then
//! generators, then components, then this kustomization's transformers — recursively, and the
//! steps done once at the top (content hashes, name references, local-config pruning, order).

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

/// `buildMetadata` of the top kustomization: kustomize's origin annotation (paths relative to
/// the top directory) and managed-by label (with the version string `kubectl kustomize`
/// reports for its embedded kustomize).
fn add_build_metadata(resources: &mut [Resource], k: &Kustomization, top: &Path) {
    let has = |o: &str| k.build_metadata.iter().any(|m| m.value == o);
    let (origin, managed) = (has("originAnnotations"), has("managedByLabel"));
    for r in resources.iter_mut().filter(|r| !r.is_empty()) {
        if !r.transformations.is_empty() {
            let text = std::mem::take(&mut r.transformations);
            let meta = r.metadata_mut();
            let ann = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(a) = ann {
                a.insert(
                    "alpha.config.kubernetes.io/transformations".into(),
                    Value::String(text),
                );
            }
        }
        if origin {
            let rel = relative_to(&r.origin.file, top);
            let text = match &r.configured_by {
                Some(by) => format!("configuredIn: {rel}\nconfiguredBy:\n{by}"),
                None => format!("path: {rel}\n"),
            };
            let meta = r.metadata_mut();
            let ann = meta
                .entry("annotations")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(a) = ann {
                a.insert("config.kubernetes.io/origin".into(), Value::String(text));
            }
        }
        if managed {
            let meta = r.metadata_mut();
            let labels = meta
                .entry("labels")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(l) = labels {
                l.insert(
                    "app.kubernetes.io/managed-by".into(),
                    Value::String("kustomize-(devel)".into()),
                );
            }
        }
    }
}

/// kustomize's `alpha.config.kubernetes.io/transformations` entry for a transformer that ran
/// over every object in `ra` (it records the transformer whether or not it changed them).
fn record_transformer(
    ra: &mut [Resource],
    configured_in: &str,
    api_version: &str,
    kind: &str,
    name: &str,
    namespace: &str,
) {
    let mut item = format!(
        "- configuredIn: {configured_in}\n  configuredBy:\n    apiVersion: {api_version}\n    kind: {kind}\n"
    );
    if !name.is_empty() {
        item.push_str(&format!("    name: {name}\n"));
    }
    if !namespace.is_empty() {
        item.push_str(&format!("    namespace: {namespace}\n"));
    }
    for r in ra.iter_mut().filter(|r| !r.is_empty()) {
        r.transformations.push_str(&item);
    }
}

/// The objects of one YAML stream (a resource file, or helm's output): every non-empty
/// document; `*List` kinds expand into their items, after the stream's other documents.
fn parse_resources(text: &str, file: &Path) -> Result<Vec<Resource>, RenderError> {
    let docs = value::parse_stream(text).map_err(|e| RenderError::Yaml {
        at: Location::at(file, e.line),
        message: e.message,
    })?;
    let mut queue: std::collections::VecDeque<(Value, usize)> = std::collections::VecDeque::new();
    for d in &docs {
        if d.is_null() {
            continue;
        }
        let v = d.to_value(Dialect::Kyaml).map_err(|e| RenderError::Yaml {
            at: Location::at(file, e.line),
            message: e.message,
        })?;
        queue.push_back((v, d.line()));
    }
    let mut out = Vec::new();
    while let Some((v, line)) = queue.pop_front() {
        let here = Location::at(file, line);
        let obj = match &v {
            Value::Object(m) if m.is_empty() => continue,
            Value::Object(m) => m,
            other => {
                return Err(RenderError::build(
                    here,
                    format!(
                        "expected a Kubernetes object (a mapping), found {}",
                        if other.is_array() {
                            "a list"
                        } else {
                            "a scalar"
                        }
                    ),
                ));
            }
        };
        let kind = obj.get("kind").map(scalar_text).unwrap_or_default();
        if kind.is_empty() {
            return Err(RenderError::build(here, "object has no `kind`"));
        }
        if kind.ends_with("List") {
            match obj.get("items") {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for item in items {
                        queue.push_back((item.clone(), line));
                    }
                }
                Some(_) => {
                    return Err(RenderError::build(
                        here,
                        format!("expected a list in {kind}.items"),
                    ));
                }
            }
            continue;
        }
        let name = obj
            .get("metadata")
            .and_then(|m| m.get("name"))
            .map(scalar_text)
            .unwrap_or_default();
        if name.is_empty() {
            return Err(RenderError::build(
                here,
                format!("{kind} has no metadata.name"),
            ));
        }
        if let Some(path) = null_list_item(&v, &mut Vec::new()) {
            return Err(RenderError::build(
                here,
                format!("{kind} {name}: empty item at {path}"),
            ));
        }
        out.push(Resource::new(v, here));
    }
    Ok(out)
}

/// `path` (relative to the repo root) as seen from directory `dir` (also repo-relative).
fn relative_to(path: &Path, dir: &Path) -> String {
    let p: Vec<_> = path.components().collect();
    let d: Vec<_> = dir.components().collect();
    let common = p.iter().zip(&d).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..d.len() {
        out.push("..");
    }
    for c in &p[common..] {
        out.push(c);
    }
    out.display().to_string()
}

/// Append content hashes to the names of generated objects that want one.
fn add_hashes(resources: &mut [Resource]) {
    for r in resources
        .iter_mut()
        .filter(|r| r.needs_hash && !r.is_empty())
    {
        let hash = generate::content_hash(&r.value);
        r.store_previous_id();
        let name = format!("{}-{hash}", r.name());
        r.set_name(name);
        // kustomize leaves the request in place: a HashTransformer plugin's hash gets the
        // final hash appended again at the end of the build.
    }
}

/// kustomize's last step reads its JSON back with a YAML 1.1 parser, for which U+0085 (NEXT
/// LINE) inside a quoted string is a line break and gets folded: one break becomes a space,
/// several become newlines, and spaces around them are dropped.
fn fold_next_lines(v: &mut Value) {
    fn fold(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find('\u{85}') {
            out.push_str(rest[..i].trim_end_matches(' '));
            rest = &rest[i + '\u{85}'.len_utf8()..];
            let mut breaks = 1;
            loop {
                let trimmed = rest.trim_start_matches(' ');
                match trimmed.strip_prefix('\u{85}') {
                    Some(after) => {
                        breaks += 1;
                        rest = after;
                    }
                    None => {
                        rest = trimmed;
                        break;
                    }
                }
            }
            if breaks == 1 {
                out.push(' ');
            } else {
                out.extend(std::iter::repeat_n('\n', breaks - 1));
            }
        }
        out.push_str(rest);
        out
    }
    match v {
        Value::String(s) if s.contains('\u{85}') => *s = fold(s),
        Value::Array(items) => items.iter_mut().for_each(fold_next_lines),
        Value::Object(m) => {
            if m.keys().any(|k| k.contains('\u{85}')) {
                let old = std::mem::take(m);
                *m = old
                    .into_iter()
                    .map(|(k, v)| (if k.contains('\u{85}') { fold(&k) } else { k }, v))
                    .collect();
            }
            m.values_mut().for_each(fold_next_lines);
        }
        _ => {}
    }
}

/// kustomize rewrites every annotation as a string when it strips its build annotations.
fn stringify_annotations(v: &mut Value) {
    if let Some(Value::Object(a)) = v.get_mut("metadata").and_then(|m| m.get_mut("annotations")) {
        for val in a.values_mut() {
            if !val.is_string() && !val.is_object() && !val.is_array() {
                *val = Value::String(scalar_text(val));
            }
        }
    }
}

/// A path to a list that has a null item, if any (kustomize rejects such resources).
fn null_list_item(v: &Value, path: &mut Vec<String>) -> Option<String> {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                if let Some(p) = null_list_item(x, path) {
                    return Some(p);
                }
                path.pop();
            }
            None
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                if x.is_null() {
                    return Some(format!("{}[{i}]", path.join(".")));
                }
                path.push(format!("[{i}]"));
                if let Some(p) = null_list_item(x, path) {
                    return Some(p);
                }
                path.pop();
            }
            None
        }
        _ => None,
    }
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

    /// Run the transformers of `k`. `builtin`: `k` is a kustomization (its fields are
    /// kustomize's built-in transformers, recorded as such for `transformerAnnotations`), not
    /// the stand-in for one built-in plugin configuration (recorded by the caller).
    fn transform(
        &mut self,
        k: &Kustomization,
        dir: &Resolved,
        ra: &mut Vec<Resource>,
        cfg: &Extra,
        builtin: bool,
    ) -> Result<(), RenderError> {
        let configured_in = match (&self.track_transformers, builtin) {
            (Some(top), true) => Some(relative_to(&k.file, top)),
            _ => None,
        };
        let explain = self.explain;
        let note = |ra: &mut Vec<Resource>, kind: &str| {
            if let Some(c) = &configured_in {
                record_transformer(ra, c, "builtin", kind, "", "");
            }
            if explain && builtin {
                let field = match kind {
                    "PatchStrategicMergeTransformer" => "patchesStrategicMerge",
                    "PatchTransformer" => "patches",
                    "NamespaceTransformer" => "namespace",
                    "PrefixTransformer" => "namePrefix",
                    "SuffixTransformer" => "nameSuffix",
                    "LabelTransformer" => "labels/commonLabels",
                    "AnnotationsTransformer" => "commonAnnotations",
                    "PatchJson6902Transformer" => "patchesJson6902",
                    "ReplicaCountTransformer" => "replicas",
                    "ImageTagTransformer" => "images",
                    "ReplacementTransformer" => "replacements",
                    other => other,
                };
                explain::step(ra, &format!("{} {field}", k.file.display()));
            }
        };
        if explain && builtin {
            explain::step(ra, "");
        }
        // patchesStrategicMerge (legacy)
        for entry in &k.patches_strategic_merge {
            let at = Location::at(&k.file, entry.line);
            let patches = match inline_patches(&entry.value) {
                Some(p) => p,
                None => {
                    let r = self.loader.resolve(
                        &dir.abs,
                        &entry.value,
                        &at,
                        "patchesStrategicMerge",
                        false,
                    )?;
                    let text = self.loader.read_text(&r, &at)?;
                    parse_smp(&text, &Location::file(&r.rel))?
                }
            };
            let mut index = name_index(ra);
            for p in patches {
                apply_untargeted(
                    self.openapi.as_deref(),
                    ra,
                    &mut index,
                    &p,
                    &at,
                    false,
                    false,
                )?;
            }
            ra.retain(|r| !r.is_empty());
        }
        if !k.patches_strategic_merge.is_empty() {
            note(ra, "PatchStrategicMergeTransformer");
        }
        // patches
        for p in &k.patches {
            self.apply_patch(k, dir, ra, p, "patches")?;
            note(ra, "PatchTransformer");
        }
        if !k.namespace.is_empty() {
            let n = transform::Namespacing {
                namespace: k.namespace.clone(),
                specs: cfg.namespace.clone(),
                ..Default::default()
            };
            transform::namespace(ra, &n, &k.file)?;
            note(ra, "NamespaceTransformer");
        }
        if !k.name_prefix.is_empty() {
            transform::affix(ra, &k.name_prefix, true, &cfg.name_prefix)?;
            note(ra, "PrefixTransformer");
        }
        if !k.name_suffix.is_empty() {
            transform::affix(ra, &k.name_suffix, false, &cfg.name_suffix)?;
            note(ra, "SuffixTransformer");
        }
        transform::labels(
            ra,
            k,
            transform::LabelTables {
                common: &cfg.common_labels,
                labels: &cfg.labels,
                templates: &cfg.template_labels,
            },
        )?;
        // kustomize runs one label transformer per `labels` entry and one for `commonLabels`.
        if !k.labels.is_empty() || !k.common_labels.is_empty() {
            for _ in 0..=k.labels.len() {
                note(ra, "LabelTransformer");
            }
        }
        transform::annotations(ra, k, &cfg.common_annotations)?;
        if !k.common_annotations.is_empty() {
            note(ra, "AnnotationsTransformer");
        }
        for p in &k.patches_json6902 {
            self.apply_patch(k, dir, ra, p, "patchesJson6902")?;
            note(ra, "PatchJson6902Transformer");
        }
        if !k.replicas.is_empty() {
            transform::replicas(ra, &k.replicas, &cfg.replicas, &k.file)?;
            for _ in &k.replicas {
                note(ra, "ReplicaCountTransformer");
            }
        }
        transform::images(ra, k, &cfg.images)?;
        for _ in &k.images {
            note(ra, "ImageTagTransformer");
        }
        if !k.replacements.is_empty() {
            let loader = &mut self.loader;
            let reps = replace::collect(&k.replacements, |path, line| {
                let at = Location::at(&k.file, line);
                let r = loader.resolve(&dir.abs, path, &at, "replacements.path", false)?;
                let text = loader.read_text(&r, &at)?;
                Ok((text.to_string(), r.rel))
            })?;
            replace::apply(ra, &reps)?;
            note(ra, "ReplacementTransformer");
        }
        for entry in plugins::in_kustomize_order(&k.transformers) {
            for plugin in self.load_plugins(k, dir, entry, "transformers")? {
                match &plugin.config {
                    plugins::Config::Transform(kk) => self.transform(kk, dir, ra, cfg, false)?,
                    plugins::Config::SetEntries {
                        specs,
                        entries,
                        what,
                    } => transform::set_map_entries(ra, specs, entries, what)?,
                    plugins::Config::PrefixSuffix {
                        prefix,
                        suffix,
                        specs,
                    } => {
                        if let Some(prefix) = prefix {
                            transform::affix(ra, prefix, true, specs)?;
                        }
                        if let Some(suffix) = suffix {
                            transform::affix(ra, suffix, false, specs)?;
                        }
                    }
                    plugins::Config::Namespace(n) => transform::namespace(ra, n, &plugin.at.file)?,
                    plugins::Config::Replicas { replica, specs } => transform::replicas(
                        ra,
                        std::slice::from_ref(replica),
                        specs,
                        &plugin.at.file,
                    )?,
                    plugins::Config::Images { image, specs } => {
                        let mut kk = Kustomization::empty(&plugin.at.file);
                        kk.images.push(image.clone());
                        transform::images(ra, &kk, specs)?;
                    }
                    plugins::Config::Hash => add_hashes(ra),
                    plugins::Config::ValueAdd {
                        value,
                        targets,
                        target_file,
                    } => {
                        let mut targets = targets.clone();
                        if let Some(f) = target_file {
                            let r = self.loader.resolve(
                                &dir.abs,
                                f,
                                &plugin.at,
                                "ValueAddTransformer.targetFilePath",
                                false,
                            )?;
                            let text = self.loader.read_text(&r, &plugin.at)?;
                            let doc = value::parse_stream(&text)
                                .ok()
                                .and_then(|d| d.into_iter().find(|d| !d.is_null()))
                                .and_then(|d| d.to_value(Dialect::Kyaml).ok())
                                .unwrap_or(Value::Null);
                            targets.extend(plugins::value_targets(
                                doc.get("targets"),
                                &Location::file(&r.rel),
                            )?);
                        }
                        let value = if value.is_empty() {
                            dir.abs
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        } else {
                            value.clone()
                        };
                        for t in &targets {
                            let sel = match &t.selector {
                                Some(s) => Some(Selector::new(s).map_err(|e| {
                                    RenderError::invalid(
                                        plugin.at.clone(),
                                        "ValueAddTransformer.targets.selector",
                                        e,
                                    )
                                })?),
                                None => None,
                            };
                            for r in ra.iter_mut().filter(|r| !r.is_empty()) {
                                if sel.as_ref().is_some_and(|s| !s.matches(r)) {
                                    continue;
                                }
                                if t.field_path == "metadata/namespace" {
                                    let n = transform::Namespacing {
                                        namespace: value.clone(),
                                        ..Default::default()
                                    };
                                    transform::namespace(
                                        std::slice::from_mut(r),
                                        &n,
                                        &plugin.at.file,
                                    )?;
                                } else {
                                    transform::value_add(
                                        r,
                                        &value,
                                        &t.field_path,
                                        t.file_path_position,
                                    )?;
                                }
                            }
                        }
                    }
                    plugins::Config::Generate(_)
                    | plugins::Config::Objects(_)
                    | plugins::Config::Helm(_) => {}
                }
                if let Some(top) = &self.track_transformers {
                    let (kind, name, namespace) = &plugin.id;
                    let c = relative_to(&plugin.at.file, top);
                    record_transformer(ra, &c, "builtin", kind, name, namespace);
                }
                if self.explain {
                    let (kind, name, _) = &plugin.id;
                    explain::step(ra, &format!("{} transformers: {kind}/{name}", plugin.at));
                }
            }
        }
        Ok(())
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

    fn apply_patch(
        &mut self,
        k: &Kustomization,
        dir: &Resolved,
        ra: &mut Vec<Resource>,
        p: &PatchSpec,
        field: &str,
    ) -> Result<(), RenderError> {
        let at = Location::at(&k.file, p.line);
        let (text, source, from_file) = match (&p.path, &p.patch) {
            (Some(_), Some(_)) => {
                return Err(RenderError::invalid(
                    at,
                    field,
                    "give either `path` or `patch`, not both",
                ));
            }
            (None, None) => {
                return Err(RenderError::invalid(
                    at,
                    field,
                    "give a `path` or a `patch`",
                ));
            }
            (Some(path), None) => {
                let r =
                    self.loader
                        .resolve(&dir.abs, path, &at, &format!("{field}.path"), false)?;
                let text = self.loader.read_text(&r, &at)?;
                (text.to_string(), Location::file(&r.rel), true)
            }
            (None, Some(patch)) => (patch.clone(), Location::at(&k.file, p.patch_line), false),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(RenderError::invalid(at, field, "the patch is empty"));
        }
        // kustomize compares `test` values with the patch's own JSON text only when the patch
        // is JSON as written (an inline patch is trimmed first, a file is not).
        let raw_json = if from_file {
            text.starts_with('[')
        } else {
            trimmed.starts_with('[')
        };
        let json_ops = if trimmed.starts_with('[') {
            let v: Value = serde_json::from_str(trimmed).map_err(|e| RenderError::Yaml {
                at: source.clone(),
                message: format!("invalid JSON patch: {e}"),
            })?;
            Some(v)
        } else {
            let docs = value::parse_stream(&text).map_err(|e| RenderError::Yaml {
                at: offset_line(&source, e.line),
                message: e.message,
            })?;
            let real: Vec<&Raw> = docs.iter().filter(|d| !d.is_null()).collect();
            match real.as_slice() {
                [one] if matches!(one, Raw::Seq { .. }) => Some(
                    one.to_plain_value(Dialect::Yaml11)
                        .map_err(|e| RenderError::Yaml {
                            at: offset_line(&source, e.line),
                            message: e.message,
                        })?,
                ),
                _ => None,
            }
        };
        if let Some(ops) = json_ops {
            let ops = jsonpatch::decode(&ops, raw_json).map_err(|e| {
                RenderError::build(source.clone(), format!("invalid JSON patch: {e}"))
            })?;
            if ops.ops.is_empty() {
                let why = if field == "patchesJson6902" {
                    "patch appears to be empty"
                } else {
                    "illegally qualifies as both an SM and JSON patch (an empty list)"
                };
                return Err(RenderError::invalid(at, field, why));
            }
            let Some(target) = &p.target else {
                return Err(RenderError::invalid(
                    at,
                    format!("{field}.target"),
                    "a JSON 6902 patch needs a `target`",
                ));
            };
            if field == "patchesJson6902" && target.name.is_empty() {
                return Err(RenderError::invalid(
                    at,
                    format!("{field}.target.name"),
                    "must specify the target name",
                ));
            }
            let sel =
                Selector::new(target).map_err(|e| RenderError::invalid(at.clone(), field, e))?;
            for r in ra.iter_mut().filter(|r| !r.is_empty() && sel.matches(r)) {
                // `patches` records the previous id first; `patchesJson6902` does not. Either
                // way the patch sees kustomize's build annotations, so `add` to
                // /metadata/annotations/x works exactly where kustomize's does.
                if field == "patches" {
                    r.store_previous_id();
                }
                let id = r.cur_id();
                let origin = r.origin.clone();
                r.with_build_annotations(|v| jsonpatch::apply(v, &ops))
                    .map_err(|e| {
                        RenderError::build(
                            at.clone(),
                            format!("JSON patch on {id} (from {origin}): {e}"),
                        )
                    })?;
            }
            return Ok(());
        }
        if field == "patchesJson6902" {
            return Err(RenderError::invalid(
                at,
                field,
                "expected a list of JSON 6902 operations",
            ));
        }
        let patches = parse_smp(&text, &source)?;
        match &p.target {
            None => {
                let mut index = name_index(ra);
                for patch in &patches {
                    apply_untargeted(
                        self.openapi.as_deref(),
                        ra,
                        &mut index,
                        patch,
                        &at,
                        p.allow_name_change,
                        p.allow_kind_change,
                    )?;
                }
            }
            Some(target) => {
                let sel = Selector::new(target)
                    .map_err(|e| RenderError::invalid(at.clone(), field, e))?;
                let selected: Vec<ResId> = ra
                    .iter()
                    .filter(|r| !r.is_empty() && sel.matches(r))
                    .map(Resource::cur_id)
                    .collect();
                for patch in &patches {
                    for r in ra.iter_mut() {
                        if !r.is_empty() && selected.iter().any(|id| id.equals(&r.cur_id())) {
                            apply_smp(
                                self.openapi.as_deref(),
                                r,
                                patch,
                                &at,
                                p.allow_name_change,
                                p.allow_kind_change,
                            )?;
                        }
                    }
                }
            }
        }
        ra.retain(|r| !r.is_empty());
        Ok(())
    }
}

/// Lines of an inline patch count from the first line of the `patch:` value.
fn offset_line(source: &Location, line: usize) -> Location {
    match source.line {
        Some(base) => Location::at(&source.file, base + line.saturating_sub(1)),
        None => Location::at(&source.file, line),
    }
}

/// Strategic-merge patch documents.
fn parse_smp(text: &str, source: &Location) -> Result<Vec<Value>, RenderError> {
    let docs = value::parse_stream(text).map_err(|e| RenderError::Yaml {
        at: offset_line(source, e.line),
        message: e.message,
    })?;
    let mut out = Vec::new();
    for d in docs.iter().filter(|d| !d.is_null()) {
        let v = d
            .to_patch_value(Dialect::Kyaml)
            .map_err(|e| RenderError::Yaml {
                at: offset_line(source, e.line),
                message: e.message,
            })?;
        if !v.is_object() {
            return Err(RenderError::build(
                source.clone(),
                "a strategic-merge patch must be a mapping",
            ));
        }
        out.push(v);
    }
    if out.is_empty() {
        return Err(RenderError::build(source.clone(), "the patch is empty"));
    }
    Ok(out)
}

/// A `patchesStrategicMerge` entry that is patch text rather than a file name.
fn inline_patches(entry: &str) -> Option<Vec<Value>> {
    let docs = value::parse_stream(entry).ok()?;
    let mut out = Vec::new();
    for d in docs.iter().filter(|d| !d.is_null()) {
        let v = d.to_patch_value(Dialect::Kyaml).ok()?;
        if !v.is_object() {
            return None;
        }
        out.push(v);
    }
    if out.is_empty() { None } else { Some(out) }
}

fn patch_id(patch: &Value) -> ResId {
    let s = |path: &[&str]| -> String {
        let mut v = patch;
        for p in path {
            match v.get(p) {
                Some(x) => v = x,
                None => return String::new(),
            }
        }
        scalar_text(v)
    };
    ResId {
        gvk: super::resource::Gvk::from_api_version(&s(&["apiVersion"]), &s(&["kind"])),
        namespace: s(&["metadata", "namespace"]),
        name: s(&["metadata", "name"]),
    }
}

/// Positions of resources under every name they have had (current and previous), so that
/// finding a patch's or a generator's target does not scan every resource.
type NameIndex = HashMap<String, Vec<usize>>;

fn name_index(ra: &[Resource]) -> NameIndex {
    let mut index = NameIndex::new();
    for (i, r) in ra.iter().enumerate() {
        index_add(&mut index, r, i);
    }
    index
}

fn index_add(index: &mut NameIndex, r: &Resource, i: usize) {
    let mut names: Vec<&str> = r.prev_ids.iter().map(|p| p.name.as_str()).collect();
    names.push(r.name());
    names.sort_unstable();
    names.dedup();
    for n in names {
        index.entry(n.to_string()).or_default().push(i);
    }
}

/// Resources (by position) whose current or previous identity equals `id`.
fn matching(ra: &[Resource], index: &NameIndex, id: &ResId) -> Vec<usize> {
    let mut out: Vec<usize> = index
        .get(&id.name)
        .map(|v| {
            v.iter()
                .copied()
                .filter(|&i| !ra[i].is_empty() && ra[i].matches_any_id(id))
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    out.dedup();
    out
}

/// A patch without a target applies to the one resource whose current or previous identity
/// equals the patch's own.
fn apply_untargeted(
    custom: Option<&schema::Custom>,
    ra: &mut [Resource],
    index: &mut NameIndex,
    patch: &Value,
    at: &Location,
    allow_name_change: bool,
    allow_kind_change: bool,
) -> Result<(), RenderError> {
    let id = patch_id(patch);
    let matches = matching(ra, index, &id);
    match matches.as_slice() {
        [i] => {
            apply_smp(
                custom,
                &mut ra[*i],
                patch,
                at,
                allow_name_change,
                allow_kind_change,
            )?;
            if allow_name_change {
                index_add(index, &ra[*i], *i);
            }
            Ok(())
        }
        [] => Err(RenderError::build(
            at.clone(),
            format!(
                "the patch targets {id}, which is not among the resources; check its apiVersion, kind, name and namespace"
            ),
        )),
        _ => Err(RenderError::build(
            at.clone(),
            format!("the patch matches several resources with id {id}; add a target"),
        )),
    }
}

fn apply_smp(
    custom: Option<&schema::Custom>,
    r: &mut Resource,
    patch: &Value,
    at: &Location,
    allow_name_change: bool,
    allow_kind_change: bool,
) -> Result<(), RenderError> {
    let mut patch = patch.clone();
    if let Value::Object(m) = &mut patch
        && m.contains_key("apiVersion")
    {
        m.insert(
            "apiVersion".into(),
            Value::String(r.api_version().to_string()),
        );
    }
    if allow_name_change || allow_kind_change {
        r.store_previous_id();
    }
    let (name, ns, kind) = (
        r.name().to_string(),
        r.namespace().to_string(),
        r.kind().to_string(),
    );
    let root = match custom {
        None => merge::Root::Builtin(schema::for_resource(&r.gvk())),
        Some(c) => merge::Root::Custom(c.for_resource(r.api_version(), r.kind()).map(|s| (c, s))),
    };
    let merged = merge::strategic_merge(&r.value, &patch, root).map_err(|e| {
        RenderError::build(
            at.clone(),
            format!("patching {} (from {}): {e}", r.cur_id(), r.origin),
        )
    })?;
    match merged {
        None => r.value = Value::Object(Map::new()),
        Some(v) => {
            r.value = v;
            if !allow_kind_change {
                r.set_kind(&kind);
            }
            if !allow_name_change {
                r.set_name(name);
            }
            r.set_namespace(&ns);
        }
    }
    Ok(())
}

/// Add resources, refusing a second object with the same identity.
fn append_all(
    ra: &mut Vec<Resource>,
    index: &mut NameIndex,
    more: Vec<Resource>,
    at: &Location,
) -> Result<(), RenderError> {
    for r in more {
        let id = r.cur_id();
        let existing = index.get(&id.name).and_then(|v| {
            v.iter()
                .map(|&i| &ra[i])
                .find(|x| x.name() == id.name && !x.is_empty() && x.cur_id().equals(&id))
        });
        if let Some(existing) = existing {
            return Err(RenderError::build(
                at.clone(),
                format!(
                    "{id} is defined twice (in {} and {}); kustomize refuses duplicate objects — rename one or add a namePrefix to one base",
                    existing.origin, r.origin
                ),
            ));
        }
        index_add(index, &r, ra.len());
        ra.push(r);
    }
    Ok(())
}

/// Add a generated resource: create it, or merge/replace the existing one of the same id.
fn absorb(
    ra: &mut Vec<Resource>,
    index: &mut NameIndex,
    mut new: Resource,
) -> Result<(), RenderError> {
    let id = new.cur_id();
    let behavior = match new.behavior.unwrap_or_default() {
        Behavior::Unspecified => Behavior::Create,
        b => b,
    };
    let matches = matching(ra, index, &id);
    match (matches.as_slice(), behavior) {
        ([], Behavior::Create) => {
            let at = new.origin.clone();
            append_all(ra, index, vec![new], &at)
        }
        ([], _) => Err(RenderError::build(
            new.origin.clone(),
            format!(
                "{id} does not exist, so it cannot be merged or replaced; use behavior: create or fix the name"
            ),
        )),
        ([_], Behavior::Create) => Err(RenderError::build(
            new.origin.clone(),
            format!("{id} already exists; use behavior: merge or replace to change it"),
        )),
        ([i], _) => {
            let old = &ra[*i];
            let mut labels = old.labels();
            labels.extend(new.labels());
            let mut annotations = old.annotations();
            annotations.extend(new.annotations());
            new.set_string_map("labels", labels);
            new.set_string_map("annotations", annotations);
            new.set_name(old.name().to_string());
            new.set_namespace(old.namespace());
            new.prev_ids = old.prev_ids.clone();
            new.prefixes = old.prefixes.clone();
            new.suffixes = old.suffixes.clone();
            new.needs_hash = old.needs_hash && new.needs_hash;
            if behavior == Behavior::Merge {
                for field in ["data", "binaryData"] {
                    let mut merged: Map<String, Value> = match old.value.get(field) {
                        Some(Value::Object(m)) => m
                            .iter()
                            .map(|(k, v)| (k.clone(), Value::String(scalar_text(v))))
                            .collect(),
                        _ => Map::new(),
                    };
                    if let Some(Value::Object(m)) = new.value.get(field) {
                        for (k, v) in m {
                            merged.insert(k.clone(), Value::String(scalar_text(v)));
                        }
                    }
                    if !merged.is_empty() {
                        super::resource::object_mut(&mut new.value)
                            .insert(field.to_string(), Value::Object(merged));
                    }
                }
            }
            new.behavior = old.behavior;
            ra[*i] = new;
            Ok(())
        }
        (_, _) => Err(RenderError::build(
            new.origin.clone(),
            format!("several objects could accept the merge of {id}"),
        )),
    }
}
