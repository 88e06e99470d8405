//! The kustomization file: its model, and a strict parser with `file:line` errors.
//!
//! kustomize reads this file with `sigs.k8s.io/yaml` (YAML 1.1 scalars) into a Go struct with
//! unknown fields disallowed, so `namePrefix: 12` or `commonLabels: {a: yes}` are errors there,
//! and here too. Field names match case-insensitively, as Go's JSON decoder does. Legacy fields
//! are folded in the same way kustomize folds them (`bases` into `resources`, `imageTags` into
//! `images`, `env` into `envs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::error::{Location, RenderError};
use super::value::{Dialect, Raw};

/// The names kustomize looks for, in order.
pub const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// A string with the line it was written on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub line: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kustomization,
    Component,
}

/// A field spec: where in which kinds a transformer writes (kustomize `FieldSpec`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSpec {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub path: String,
    pub create: bool,
}

#[derive(Debug, Clone, Default)]
pub struct LabelSpec {
    pub pairs: BTreeMap<String, String>,
    pub include_selectors: bool,
    pub include_templates: bool,
    pub fields: Vec<FieldSpec>,
    pub line: usize,
}

/// A patch target (kustomize `Selector`); names and GVK fields are anchored regexes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub label_selector: String,
    pub annotation_selector: String,
}

#[derive(Debug, Clone, Default)]
pub struct PatchSpec {
    pub path: Option<String>,
    pub patch: Option<String>,
    pub target: Option<Target>,
    pub allow_name_change: bool,
    pub allow_kind_change: bool,
    pub line: usize,
    /// Line of the `patch:` value; line N of an inline patch is `patch_line + N` in the file.
    pub patch_line: usize,
}

#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    pub name: String,
    pub new_name: String,
    pub new_tag: String,
    pub digest: String,
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct ReplicaSpec {
    pub name: String,
    pub count: i64,
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeneratorOptions {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub disable_name_suffix_hash: bool,
    pub immutable: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeneratorKind {
    ConfigMap,
    Secret,
}

#[derive(Debug, Clone)]
pub struct GeneratorSpec {
    pub kind: GeneratorKind,
    pub name: String,
    pub namespace: String,
    pub behavior: String,
    pub literals: Vec<String>,
    pub files: Vec<String>,
    pub envs: Vec<String>,
    pub options: Option<GeneratorOptions>,
    /// Secrets only.
    pub secret_type: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortOrder {
    Legacy {
        order_first: Option<Vec<String>>,
        order_last: Option<Vec<String>>,
    },
    Fifo,
}

#[derive(Debug, Clone)]
pub struct Kustomization {
    /// The file, relative to the repo root.
    pub file: PathBuf,
    pub kind: Kind,
    pub name_prefix: String,
    pub name_suffix: String,
    pub namespace: String,
    pub common_labels: BTreeMap<String, String>,
    pub labels: Vec<LabelSpec>,
    pub common_annotations: BTreeMap<String, String>,
    pub patches_strategic_merge: Vec<Spanned<String>>,
    pub patches_json6902: Vec<PatchSpec>,
    pub patches: Vec<PatchSpec>,
    pub images: Vec<ImageSpec>,
    pub replicas: Vec<ReplicaSpec>,
    pub resources: Vec<Spanned<String>>,
    pub components: Vec<Spanned<String>>,
    pub config_map_generator: Vec<GeneratorSpec>,
    pub secret_generator: Vec<GeneratorSpec>,
    pub generator_options: Option<GeneratorOptions>,
    pub sort_options: Option<SortOrder>,
    pub replacements: Vec<super::replace::Entry>,
    /// Built-in plugin configurations: file paths, directories or inline documents.
    pub generators: Vec<Spanned<String>>,
    pub transformers: Vec<Spanned<String>>,
    /// `managedByLabel`, `originAnnotations` (honoured on the top kustomization only, as in
    /// kustomize).
    pub build_metadata: Vec<Spanned<String>>,
    pub vars: Vec<super::vars::Var>,
    pub configurations: Vec<Spanned<String>>,
    /// `openapi`: `path` of a custom schema document, or a built-in `version`.
    pub openapi: BTreeMap<String, String>,
    pub helm_charts: Vec<HelmChart>,
    pub helm_globals: HelmGlobals,
}

/// `helmGlobals`.
#[derive(Debug, Clone, Default)]
pub struct HelmGlobals {
    /// Where charts live, relative to the kustomization (default `charts`).
    pub chart_home: String,
    pub config_home: String,
}

/// One `helmCharts` entry (kustomize's `HelmChartInflationGenerator`).
#[derive(Debug, Clone, Default)]
pub struct HelmChart {
    pub name: String,
    pub version: String,
    pub repo: String,
    pub release_name: String,
    pub namespace: String,
    pub additional_values_files: Vec<String>,
    pub values_file: String,
    /// `valuesInline`, read as kustomize reads the kustomization (YAML 1.1).
    pub values_inline: Option<Value>,
    pub values_merge: String,
    pub include_crds: bool,
    pub skip_hooks: bool,
    pub api_versions: Vec<String>,
    pub kube_version: String,
    pub name_template: String,
    pub skip_tests: bool,
    pub debug: bool,
    pub devel: bool,
    pub line: usize,
}

impl Kustomization {
    /// A kustomization with no fields set (to run one built-in through its field).
    pub fn empty(file: &Path) -> Self {
        Kustomization {
            file: file.to_path_buf(),
            kind: Kind::Kustomization,
            name_prefix: String::new(),
            name_suffix: String::new(),
            namespace: String::new(),
            common_labels: BTreeMap::new(),
            labels: Vec::new(),
            common_annotations: BTreeMap::new(),
            patches_strategic_merge: Vec::new(),
            patches_json6902: Vec::new(),
            patches: Vec::new(),
            images: Vec::new(),
            replicas: Vec::new(),
            resources: Vec::new(),
            components: Vec::new(),
            config_map_generator: Vec::new(),
            secret_generator: Vec::new(),
            generator_options: None,
            sort_options: None,
            replacements: Vec::new(),
            generators: Vec::new(),
            transformers: Vec::new(),
            build_metadata: Vec::new(),
            vars: Vec::new(),
            configurations: Vec::new(),
            openapi: BTreeMap::new(),
            helm_charts: Vec::new(),
            helm_globals: HelmGlobals::default(),
        }
    }
}

/// Fields kustomize has and baton does not implement, with the reason given to the user.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("crds", "CRD-declared name references are not implemented"),
    ("validators", "validator plugins would run arbitrary code"),
    (
        "helmChartInflationGenerator",
        "Helm inflation runs the helm binary",
    ),
];

const KNOWN: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "namePrefix",
    "nameSuffix",
    "namespace",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "patchesStrategicMerge",
    "patchesJson6902",
    "patches",
    "images",
    "imageTags",
    "replicas",
    "resources",
    "bases",
    "components",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "sortOptions",
    "openapi",
    "helmCharts",
    "helmGlobals",
    "replacements",
    "generators",
    "transformers",
    "buildMetadata",
    "vars",
    "configurations",
];

pub(super) struct Dec<'a> {
    pub(super) file: &'a Path,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl Dec<'_> {
    pub(super) fn at(&self, line: usize) -> Location {
        Location::at(self.file, line)
    }

    pub(super) fn err(&self, raw: &Raw, field: &str, message: impl Into<String>) -> RenderError {
        RenderError::invalid(self.at(raw.line()), field, message)
    }

    pub(super) fn scalar(&self, raw: &Raw, field: &str) -> Result<Value, RenderError> {
        match raw {
            Raw::Scalar { .. } => raw
                .to_plain_value(Dialect::Yaml11)
                .map_err(|e| RenderError::invalid(self.at(e.line), field, e.message)),
            Raw::Seq { .. } => Err(self.err(raw, field, "expected a scalar, found a list")),
            Raw::Map { .. } => Err(self.err(raw, field, "expected a scalar, found a mapping")),
        }
    }

    pub(super) fn string(&self, raw: &Raw, field: &str) -> Result<String, RenderError> {
        match self.scalar(raw, field)? {
            Value::Null => Ok(String::new()),
            Value::String(s) => Ok(s),
            other => Err(self.err(
                raw,
                field,
                format!(
                    "expected a string, found {} (quote it: \"{}\")",
                    type_name(&other),
                    raw.text().unwrap_or_default()
                ),
            )),
        }
    }

    pub(super) fn boolean(&self, raw: &Raw, field: &str) -> Result<bool, RenderError> {
        match self.scalar(raw, field)? {
            Value::Null => Ok(false),
            Value::Bool(b) => Ok(b),
            other => Err(self.err(
                raw,
                field,
                format!("expected true or false, found {}", type_name(&other)),
            )),
        }
    }

    pub(super) fn int(&self, raw: &Raw, field: &str) -> Result<i64, RenderError> {
        match self.scalar(raw, field)? {
            Value::Null => Ok(0),
            Value::Number(n) if n.as_i64().is_some() => Ok(n.as_i64().unwrap_or_default()),
            other => Err(self.err(
                raw,
                field,
                format!("expected an integer, found {}", type_name(&other)),
            )),
        }
    }

    pub(super) fn list<'r>(&self, raw: &'r Raw, field: &str) -> Result<&'r [Raw], RenderError> {
        match raw {
            Raw::Seq { items, .. } => Ok(items),
            _ if raw.is_null() => Ok(&[]),
            _ => Err(self.err(raw, field, "expected a list")),
        }
    }

    pub(super) fn strings(
        &self,
        raw: &Raw,
        field: &str,
    ) -> Result<Vec<Spanned<String>>, RenderError> {
        self.list(raw, field)?
            .iter()
            .map(|item| {
                Ok(Spanned {
                    value: self.string(item, field)?,
                    line: item.line(),
                })
            })
            .collect()
    }

    pub(super) fn plain_strings(&self, raw: &Raw, field: &str) -> Result<Vec<String>, RenderError> {
        Ok(self
            .strings(raw, field)?
            .into_iter()
            .map(|s| s.value)
            .collect())
    }

    pub(super) fn string_map(
        &self,
        raw: &Raw,
        field: &str,
    ) -> Result<BTreeMap<String, String>, RenderError> {
        if raw.is_null() {
            return Ok(BTreeMap::new());
        }
        let entries = raw
            .entries()
            .ok_or_else(|| self.err(raw, field, "expected a mapping of strings"))?;
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let key = match self.scalar(k, field)? {
                Value::String(s) => s,
                other => super::resource::scalar_text(&other),
            };
            let value = self.string(v, &format!("{field}.{key}"))?;
            out.insert(key, value);
        }
        Ok(out)
    }

    /// The entries of a mapping, checked against `allowed` (case-insensitively, like Go's
    /// JSON decoder), keyed by the canonical name.
    pub(super) fn fields<'r>(
        &self,
        raw: &'r Raw,
        field: &str,
        allowed: &[&'static str],
    ) -> Result<Vec<(&'static str, &'r Raw)>, RenderError> {
        if raw.is_null() {
            return Ok(Vec::new());
        }
        let entries = raw
            .entries()
            .ok_or_else(|| self.err(raw, field, "expected a mapping"))?;
        let mut out = Vec::new();
        for (k, v) in entries {
            let name = k.text().unwrap_or_default();
            match allowed.iter().find(|a| a.eq_ignore_ascii_case(name)) {
                Some(canonical) => out.push((*canonical, v)),
                None => {
                    let field = if field.is_empty() {
                        name.to_string()
                    } else {
                        format!("{field}.{name}")
                    };
                    return Err(RenderError::invalid(
                        self.at(k.line()),
                        field,
                        format!(
                            "unknown field (kustomize rejects it too); known fields here: {}",
                            allowed.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn field_specs(&self, raw: &Raw, field: &str) -> Result<Vec<FieldSpec>, RenderError> {
        let mut out = Vec::new();
        for item in self.list(raw, field)? {
            let mut fs = FieldSpec::default();
            for (name, v) in
                self.fields(item, field, &["group", "version", "kind", "path", "create"])?
            {
                match name {
                    "group" => fs.group = self.string(v, field)?,
                    "version" => fs.version = self.string(v, field)?,
                    "kind" => fs.kind = self.string(v, field)?,
                    "path" => fs.path = self.string(v, field)?,
                    _ => fs.create = self.boolean(v, field)?,
                }
            }
            out.push(fs);
        }
        Ok(out)
    }

    fn target(&self, raw: &Raw, field: &str, legacy: bool) -> Result<Option<Target>, RenderError> {
        if raw.is_null() {
            return Ok(None);
        }
        let allowed: &[&'static str] = if legacy {
            &["group", "version", "kind", "name", "namespace"]
        } else {
            &[
                "group",
                "version",
                "kind",
                "name",
                "namespace",
                "labelSelector",
                "annotationSelector",
            ]
        };
        let mut t = Target::default();
        for (name, v) in self.fields(raw, field, allowed)? {
            let s = self.string(v, &format!("{field}.{name}"))?;
            match name {
                "group" => t.group = s,
                "version" => t.version = s,
                "kind" => t.kind = s,
                "name" => t.name = s,
                "namespace" => t.namespace = s,
                "labelSelector" => t.label_selector = s,
                _ => t.annotation_selector = s,
            }
        }
        Ok(Some(t))
    }

    fn patches(&self, raw: &Raw, field: &str, legacy: bool) -> Result<Vec<PatchSpec>, RenderError> {
        let mut out = Vec::new();
        for item in self.list(raw, field)? {
            let mut p = PatchSpec {
                line: item.line(),
                ..Default::default()
            };
            for (name, v) in self.fields(item, field, &["path", "patch", "target", "options"])? {
                match name {
                    "path" => {
                        p.path = Some(self.string(v, &format!("{field}.path"))?)
                            .filter(|s| !s.is_empty())
                    }
                    "patch" => {
                        p.patch = Some(self.string(v, &format!("{field}.patch"))?)
                            .filter(|s| !s.trim().is_empty());
                        p.patch_line = v.line();
                    }
                    "target" => p.target = self.target(v, &format!("{field}.target"), legacy)?,
                    _ => {
                        let f = format!("{field}.options");
                        for (opt, ov) in
                            self.fields(v, &f, &["allowNameChange", "allowKindChange"])?
                        {
                            if opt == "allowNameChange" {
                                p.allow_name_change = self.boolean(ov, &f)?;
                            } else {
                                p.allow_kind_change = self.boolean(ov, &f)?;
                            }
                        }
                    }
                }
            }
            out.push(p);
        }
        Ok(out)
    }

    fn images(&self, raw: &Raw, field: &str) -> Result<Vec<ImageSpec>, RenderError> {
        let mut out = Vec::new();
        for item in self.list(raw, field)? {
            let mut img = ImageSpec {
                line: item.line(),
                ..Default::default()
            };
            for (name, v) in self.fields(item, field, &["name", "newName", "newTag", "digest"])? {
                let s = self.string(v, &format!("{field}.{name}"))?;
                match name {
                    "name" => img.name = s,
                    "newName" => img.new_name = s,
                    "newTag" => img.new_tag = s,
                    _ => img.digest = s,
                }
            }
            out.push(img);
        }
        Ok(out)
    }

    fn generator_options(
        &self,
        raw: &Raw,
        field: &str,
    ) -> Result<Option<GeneratorOptions>, RenderError> {
        if raw.is_null() {
            return Ok(None);
        }
        let mut o = GeneratorOptions::default();
        for (name, v) in self.fields(
            raw,
            field,
            &[
                "labels",
                "annotations",
                "disableNameSuffixHash",
                "immutable",
            ],
        )? {
            let f = format!("{field}.{name}");
            match name {
                "labels" => o.labels = self.string_map(v, &f)?,
                "annotations" => o.annotations = self.string_map(v, &f)?,
                "disableNameSuffixHash" => o.disable_name_suffix_hash = self.boolean(v, &f)?,
                _ => o.immutable = self.boolean(v, &f)?,
            }
        }
        Ok(Some(o))
    }

    fn generators(
        &self,
        raw: &Raw,
        field: &str,
        kind: GeneratorKind,
    ) -> Result<Vec<GeneratorSpec>, RenderError> {
        let allowed: &[&'static str] = match kind {
            GeneratorKind::ConfigMap => &[
                "name",
                "namespace",
                "behavior",
                "literals",
                "files",
                "envs",
                "env",
                "options",
            ],
            GeneratorKind::Secret => &[
                "name",
                "namespace",
                "behavior",
                "literals",
                "files",
                "envs",
                "env",
                "options",
                "type",
            ],
        };
        let mut out = Vec::new();
        for item in self.list(raw, field)? {
            let mut g = GeneratorSpec {
                kind,
                name: String::new(),
                namespace: String::new(),
                behavior: String::new(),
                literals: Vec::new(),
                files: Vec::new(),
                envs: Vec::new(),
                options: None,
                secret_type: String::new(),
                line: item.line(),
            };
            let mut env = None;
            for (name, v) in self.fields(item, field, allowed)? {
                let f = format!("{field}.{name}");
                match name {
                    "name" => g.name = self.string(v, &f)?,
                    "namespace" => g.namespace = self.string(v, &f)?,
                    "behavior" => {
                        g.behavior = self.string(v, &f)?;
                        if !matches!(g.behavior.as_str(), "" | "create" | "merge" | "replace") {
                            return Err(self.err(
                                v,
                                &f,
                                format!(
                                    "unknown behavior {:?}; use create, merge or replace",
                                    g.behavior
                                ),
                            ));
                        }
                    }
                    "literals" => g.literals = self.plain_strings(v, &f)?,
                    "files" => g.files = self.plain_strings(v, &f)?,
                    "envs" => g.envs = self.plain_strings(v, &f)?,
                    "env" => env = Some(self.string(v, &f)?).filter(|s| !s.is_empty()),
                    "options" => g.options = self.generator_options(v, &f)?,
                    _ => g.secret_type = self.string(v, &f)?,
                }
            }
            g.envs.extend(env);
            out.push(g);
        }
        Ok(out)
    }

    fn helm_charts(&self, raw: &Raw, field: &str) -> Result<Vec<HelmChart>, RenderError> {
        const ALLOWED: &[&str] = &[
            "name",
            "version",
            "repo",
            "releaseName",
            "namespace",
            "additionalValuesFiles",
            "valuesFile",
            "valuesInline",
            "valuesMerge",
            "includeCRDs",
            "skipHooks",
            "apiVersions",
            "kubeVersion",
            "nameTemplate",
            "skipTests",
            "debug",
            "devel",
        ];
        let mut out = Vec::new();
        for item in self.list(raw, field)? {
            let mut c = HelmChart {
                line: item.line(),
                ..HelmChart::default()
            };
            for (name, v) in self.fields(item, field, ALLOWED)? {
                let f = format!("{field}.{name}");
                match name {
                    "name" => c.name = self.string(v, &f)?,
                    "version" => c.version = self.string(v, &f)?,
                    "repo" => c.repo = self.string(v, &f)?,
                    "releaseName" => c.release_name = self.string(v, &f)?,
                    "namespace" => c.namespace = self.string(v, &f)?,
                    "additionalValuesFiles" => {
                        c.additional_values_files = self.plain_strings(v, &f)?
                    }
                    "valuesFile" => c.values_file = self.string(v, &f)?,
                    "valuesInline" => {
                        let value = v
                            .to_plain_value(Dialect::Yaml11)
                            .map_err(|e| RenderError::invalid(self.at(e.line), &f, e.message))?;
                        if !(value.is_object() || value.is_null()) {
                            return Err(self.err(v, &f, "expected a mapping"));
                        }
                        c.values_inline = Some(value).filter(|v| !v.is_null());
                    }
                    "valuesMerge" => c.values_merge = self.string(v, &f)?,
                    "includeCRDs" => c.include_crds = self.boolean(v, &f)?,
                    "skipHooks" => c.skip_hooks = self.boolean(v, &f)?,
                    "apiVersions" => c.api_versions = self.plain_strings(v, &f)?,
                    "kubeVersion" => c.kube_version = self.string(v, &f)?,
                    "nameTemplate" => c.name_template = self.string(v, &f)?,
                    "skipTests" => c.skip_tests = self.boolean(v, &f)?,
                    "debug" => c.debug = self.boolean(v, &f)?,
                    _ => c.devel = self.boolean(v, &f)?,
                }
            }
            out.push(c);
        }
        Ok(out)
    }

    fn sort_options(&self, raw: &Raw, field: &str) -> Result<Option<SortOrder>, RenderError> {
        if raw.is_null() {
            return Ok(None);
        }
        let mut order = None;
        let mut legacy = None;
        for (name, v) in self.fields(raw, field, &["order", "legacySortOptions"])? {
            if name == "order" {
                order = Some((self.string(v, &format!("{field}.order"))?, v));
            } else {
                let f = format!("{field}.legacySortOptions");
                let mut first = None;
                let mut last = None;
                for (n, lv) in self.fields(v, &f, &["orderFirst", "orderLast"])? {
                    let list = self.plain_strings(lv, &format!("{f}.{n}"))?;
                    if n == "orderFirst" {
                        first = Some(list);
                    } else {
                        last = Some(list);
                    }
                }
                legacy = Some((first, last, v));
            }
        }
        match order {
            Some((o, _)) if o == "fifo" => {
                if let Some((_, _, v)) = legacy {
                    return Err(self.err(
                        v,
                        field,
                        "legacySortOptions only applies to order: legacy",
                    ));
                }
                Ok(Some(SortOrder::Fifo))
            }
            Some((o, _)) if o == "legacy" => {
                let (order_first, order_last) =
                    legacy.map(|(f, l, _)| (f, l)).unwrap_or((None, None));
                Ok(Some(SortOrder::Legacy {
                    order_first,
                    order_last,
                }))
            }
            Some((o, v)) => Err(self.err(
                v,
                &format!("{field}.order"),
                format!("unknown order {o:?}; use legacy or fifo"),
            )),
            None => Err(self.err(raw, field, "sortOptions needs an order: legacy or fifo")),
        }
    }
}

/// Parse a kustomization file's text. `file` is the path relative to the repo root (for errors).
pub fn parse(text: &str, file: &Path) -> Result<Kustomization, RenderError> {
    let docs = super::value::parse_stream(text).map_err(|e| RenderError::Yaml {
        at: Location::at(file, e.line),
        message: e.message,
    })?;
    let docs: Vec<&Raw> = docs.iter().filter(|d| !d.is_null()).collect();
    let root = match docs.as_slice() {
        [] => {
            return Err(RenderError::build(
                Location::file(file),
                "the kustomization is empty; list resources, components or generators in it",
            ));
        }
        [one] => *one,
        [_, second, ..] => {
            return Err(RenderError::Yaml {
                at: Location::at(file, second.line()),
                message: "a kustomization file holds one YAML document".into(),
            });
        }
    };
    let d = Dec { file };
    let entries = root.entries().ok_or_else(|| {
        RenderError::invalid(
            Location::at(file, root.line()),
            "(top level)",
            "expected a mapping",
        )
    })?;

    for (k, v) in entries {
        let name = k.text().unwrap_or_default();
        if let Some((field, why)) = UNSUPPORTED
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(name))
        {
            let empty = v.is_null()
                || matches!(v, Raw::Seq { items, .. } if items.is_empty())
                || matches!(v, Raw::Map { entries, .. } if entries.is_empty());
            if !empty {
                return Err(RenderError::Unsupported {
                    at: Location::at(file, k.line()),
                    field: field.to_string(),
                    why: why.to_string(),
                });
            }
        }
    }
    let mut allowed: Vec<&'static str> = KNOWN.to_vec();
    allowed.extend(UNSUPPORTED.iter().map(|(f, _)| *f));

    let mut k = Kustomization::empty(file);
    let mut bases = Vec::new();
    let mut image_tags = Vec::new();
    let mut meaningful = false;
    for (name, v) in d.fields(root, "", &allowed)? {
        if !matches!(name, "apiVersion" | "kind" | "metadata") {
            meaningful = true;
        }
        match name {
            "apiVersion" | "metadata" => {}
            "kind" => {
                k.kind = match d.string(v, name)?.as_str() {
                    "" | "Kustomization" => Kind::Kustomization,
                    "Component" => Kind::Component,
                    other => {
                        return Err(d.err(
                            v,
                            name,
                            format!("unknown kind {other:?}; use Kustomization or Component"),
                        ));
                    }
                }
            }
            "namePrefix" => k.name_prefix = d.string(v, name)?,
            "nameSuffix" => k.name_suffix = d.string(v, name)?,
            "namespace" => k.namespace = d.string(v, name)?,
            "commonLabels" => k.common_labels = d.string_map(v, name)?,
            "commonAnnotations" => k.common_annotations = d.string_map(v, name)?,
            "labels" => {
                for item in d.list(v, name)? {
                    let mut l = LabelSpec {
                        line: item.line(),
                        ..Default::default()
                    };
                    for (f, lv) in d.fields(
                        item,
                        name,
                        &["pairs", "includeSelectors", "includeTemplates", "fields"],
                    )? {
                        let field = format!("labels.{f}");
                        match f {
                            "pairs" => l.pairs = d.string_map(lv, &field)?,
                            "includeSelectors" => l.include_selectors = d.boolean(lv, &field)?,
                            "includeTemplates" => l.include_templates = d.boolean(lv, &field)?,
                            _ => l.fields = d.field_specs(lv, &field)?,
                        }
                    }
                    k.labels.push(l);
                }
            }
            "patchesStrategicMerge" => k.patches_strategic_merge = d.strings(v, name)?,
            "patchesJson6902" => k.patches_json6902 = d.patches(v, name, true)?,
            "patches" => k.patches = d.patches(v, name, false)?,
            "images" => k.images = d.images(v, name)?,
            "imageTags" => image_tags = d.images(v, name)?,
            "replicas" => {
                for item in d.list(v, name)? {
                    let mut r = ReplicaSpec {
                        name: String::new(),
                        count: 0,
                        line: item.line(),
                    };
                    for (f, rv) in d.fields(item, name, &["name", "count"])? {
                        if f == "name" {
                            r.name = d.string(rv, "replicas.name")?;
                        } else {
                            r.count = d.int(rv, "replicas.count")?;
                        }
                    }
                    k.replicas.push(r);
                }
            }
            "resources" => k.resources = d.strings(v, name)?,
            "bases" => bases = d.strings(v, name)?,
            "components" => k.components = d.strings(v, name)?,
            "configMapGenerator" => {
                k.config_map_generator = d.generators(v, name, GeneratorKind::ConfigMap)?
            }
            "secretGenerator" => {
                k.secret_generator = d.generators(v, name, GeneratorKind::Secret)?
            }
            "generatorOptions" => k.generator_options = d.generator_options(v, name)?,
            "sortOptions" => k.sort_options = d.sort_options(v, name)?,
            "openapi" => k.openapi = d.string_map(v, name)?,
            "helmCharts" => k.helm_charts = d.helm_charts(v, name)?,
            "helmGlobals" => {
                for (n, gv) in d.fields(v, name, &["chartHome", "configHome"])? {
                    let s = d.string(gv, &format!("{name}.{n}"))?;
                    if n == "chartHome" {
                        k.helm_globals.chart_home = s;
                    } else {
                        k.helm_globals.config_home = s;
                    }
                }
            }
            "replacements" => k.replacements = super::replace::parse_entries(&d, v, name)?,
            "vars" => k.vars = super::vars::parse(&d, v, name)?,
            "configurations" => k.configurations = d.strings(v, name)?,
            "generators" => k.generators = d.strings(v, name)?,
            "transformers" => k.transformers = d.strings(v, name)?,
            "buildMetadata" => {
                k.build_metadata = d.strings(v, name)?;
                for m in &k.build_metadata {
                    match m.value.as_str() {
                        "managedByLabel" | "originAnnotations" | "transformerAnnotations" => {}
                        other => {
                            return Err(RenderError::invalid(
                                Location::at(file, m.line),
                                name,
                                format!(
                                    "unknown option {other:?}; use managedByLabel, originAnnotations or transformerAnnotations"
                                ),
                            ));
                        }
                    }
                }
            }
            _ => {} // an empty unsupported field
        }
    }
    if !meaningful {
        return Err(RenderError::build(
            Location::file(file),
            "the kustomization is empty; list resources, components or generators in it",
        ));
    }
    k.resources.extend(bases);
    k.images.extend(image_tags);
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Kustomization, RenderError> {
        parse(text, Path::new("envs/dev/kustomization.yaml"))
    }

    #[test]
    fn parses_the_common_fields() {
        let k = parse_str(
            "resources:\n- ../base\nnamePrefix: dev-\ncommonLabels:\n  app: web\nimages:\n- name: web\n  newTag: \"1.10\"\nreplicas:\n- name: web\n  count: 3\n",
        )
        .unwrap();
        assert_eq!(k.resources[0].value, "../base");
        assert_eq!(k.resources[0].line, 2);
        assert_eq!(k.name_prefix, "dev-");
        assert_eq!(k.common_labels["app"], "web");
        assert_eq!(k.images[0].new_tag, "1.10");
        assert_eq!(k.replicas[0].count, 3);
    }

    #[test]
    fn unsupported_fields_name_the_field_and_line() {
        let err = parse_str("resources: [a.yaml]\ncrds: [crd.json]\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("envs/dev/kustomization.yaml:2: `crds` is not supported"),
            "{text}"
        );
    }

    #[test]
    fn unknown_fields_are_rejected_like_kustomize() {
        let err = parse_str("resources: [a.yaml]\nfoo: bar\n").unwrap_err();
        assert!(
            err.to_string().contains(":2: `foo`: unknown field"),
            "{err}"
        );
    }

    #[test]
    fn yaml11_scalars_in_string_fields_are_type_errors() {
        let err = parse_str("resources: [a.yaml]\ncommonLabels:\n  enabled: yes\n").unwrap_err();
        assert!(
            err.to_string()
                .contains(":3: `commonLabels.enabled`: expected a string, found a boolean"),
            "{err}"
        );
        let err = parse_str("images:\n- name: a\n  newTag: 1.10\n").unwrap_err();
        assert!(err.to_string().contains("found a number"), "{err}");
    }

    #[test]
    fn legacy_fields_fold_into_their_successors() {
        let k = parse_str("resources: [a]\nbases: [b]\nimageTags:\n- name: x\n  newTag: v2\nconfigMapGenerator:\n- name: c\n  env: e.env\n  envs: [f.env]\n").unwrap();
        let res: Vec<_> = k.resources.iter().map(|r| r.value.as_str()).collect();
        assert_eq!(res, ["a", "b"]);
        assert_eq!(k.images.len(), 1);
        assert_eq!(k.config_map_generator[0].envs, ["f.env", "e.env"]);
    }

    #[test]
    fn field_names_match_case_insensitively() {
        let k = parse_str("Resources: [a]\nNAMEPREFIX: p-\n").unwrap();
        assert_eq!(k.name_prefix, "p-");
    }

    #[test]
    fn an_empty_kustomization_is_an_error() {
        assert!(parse_str("kind: Component\n").is_err());
        assert!(parse_str("").is_err());
    }
}
