//! `generators` and `transformers` entries whose documents configure kustomize's built-in
//! plugins (`apiVersion: builtin`). Each configuration is turned into the kustomization field
//! that runs the same built-in (a `LabelTransformer` is a `labels` entry, a `PatchTransformer`
//! a `patches` entry, ...), so the built-ins behave exactly as they do from their fields. Any
//! other plugin — exec, Go, container or KRM function — would run code and is refused.

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::{Location, RenderError};
use super::kustomization::{
    FieldSpec, GeneratorKind, GeneratorOptions, GeneratorSpec, HelmChart, HelmGlobals, ImageSpec,
    Kustomization, PatchSpec, ReplicaSpec, Spanned, Target,
};
use super::replace;
use super::resource::scalar_text;
use super::transform;

/// What one configuration asks for.
#[derive(Debug, Clone)]
pub enum Config {
    /// Run the transformers of this (otherwise empty) kustomization.
    Transform(Box<Kustomization>),
    /// Add map entries at these field specs (`LabelTransformer`, `AnnotationsTransformer`).
    SetEntries {
        specs: Vec<FieldSpec>,
        entries: BTreeMap<String, String>,
        what: &'static str,
    },
    /// Name prefix and/or suffix, at the field specs (run even when empty, as in kustomize).
    PrefixSuffix {
        prefix: Option<String>,
        suffix: Option<String>,
        specs: Vec<FieldSpec>,
    },
    /// A namespace transformer with its own field specs and options.
    Namespace(transform::Namespacing),
    /// A replica count at the configuration's own field specs.
    Replicas {
        replica: ReplicaSpec,
        specs: Vec<FieldSpec>,
    },
    /// An image rule, on every container list and at the configuration's own field specs.
    Images {
        image: ImageSpec,
        specs: Vec<FieldSpec>,
    },
    /// `ValueAddTransformer`: put `value` (default: the kustomization directory's name) at
    /// each target's field, or insert it into a file-path value at `filePathPosition`.
    ValueAdd {
        value: String,
        targets: Vec<ValueTarget>,
        /// `targetFilePath`: more targets, from a file.
        target_file: Option<String>,
    },
    /// Objects a generator makes outright (`IAMPolicyGenerator`).
    Objects(Vec<Value>),
    /// A chart to inflate with helm (`HelmChartInflationGenerator`).
    Helm(Box<(HelmChart, HelmGlobals)>),
    /// Content hashes for generated objects now (`HashTransformer`).
    Hash,
    Generate(GeneratorSpec),
}

/// One `ValueAddTransformer` target.
#[derive(Debug, Clone)]
pub struct ValueTarget {
    pub selector: Option<Target>,
    pub field_path: String,
    pub file_path_position: i64,
}

/// Read `targets` of a `ValueAddTransformer` configuration (or of its `targetFilePath`).
pub fn value_targets(list: Option<&Value>, at: &Location) -> Result<Vec<ValueTarget>, RenderError> {
    let bad = |why: &str| RenderError::invalid(at.clone(), "ValueAddTransformer.targets", why);
    let Some(list) = list.filter(|l| !l.is_null()) else {
        return Ok(Vec::new());
    };
    let items = list.as_array().ok_or_else(|| bad("expected a list"))?;
    let d = Doc {
        v: &Value::Null,
        at,
        kind: "ValueAddTransformer",
    };
    items
        .iter()
        .map(|t| {
            let field_path = t.get("fieldPath").map(scalar_text).unwrap_or_default();
            if field_path.is_empty() {
                return Err(bad("fieldPath cannot be empty"));
            }
            let file_path_position = match t.get("filePathPosition") {
                None | Some(Value::Null) => 0,
                Some(v) => v
                    .as_i64()
                    .ok_or_else(|| bad("filePathPosition must be an integer"))?,
            };
            if file_path_position < 0 {
                return Err(bad(&format!(
                    "value of FilePathPosition ({file_path_position}) cannot be negative"
                )));
            }
            Ok(ValueTarget {
                selector: d.target(t.get("selector")),
                field_path,
                file_path_position,
            })
        })
        .collect()
}

/// One configuration with where it came from.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub config: Config,
    pub at: Location,
    /// `kind`, `metadata.name` and `metadata.namespace` of the configuration.
    pub id: (String, String, String),
}

/// Built-in kinds baton does not run, with the reason.
const DECLINED: &[(&str, &str)] = &[
    (
        "SortOrderTransformer",
        "kustomize does not load it as a plugin either (unable to load builtin); use the kustomization's sortOptions",
    ),
    (
        "LegacyOrderTransformer",
        "kustomize does not load it as a plugin either (unable to load builtin); use the kustomization's sortOptions",
    ),
];

struct Doc<'a> {
    v: &'a Value,
    at: &'a Location,
    kind: &'a str,
}

impl Doc<'_> {
    fn bad(&self, field: &str, want: &str) -> RenderError {
        RenderError::invalid(
            self.at.clone(),
            format!("{}.{field}", self.kind),
            format!("expected {want}"),
        )
    }

    fn string(&self, field: &str) -> Result<String, RenderError> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Object(_) | Value::Array(_)) => Err(self.bad(field, "a string")),
            Some(other) => Ok(scalar_text(other)),
        }
    }

    fn meta(&self, field: &str) -> String {
        self.v
            .get("metadata")
            .and_then(|m| m.get(field))
            .map(scalar_text)
            .unwrap_or_default()
    }

    fn boolean(&self, v: Option<&Value>, field: &str) -> Result<bool, RenderError> {
        match v {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            _ => Err(self.bad(field, "true or false")),
        }
    }

    fn strings(&self, field: &str) -> Result<Vec<String>, RenderError> {
        match self.v.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::Object(_) | Value::Array(_) => Err(self.bad(field, "a list of strings")),
                    other => Ok(scalar_text(other)),
                })
                .collect(),
            _ => Err(self.bad(field, "a list of strings")),
        }
    }

    fn string_map(
        &self,
        v: Option<&Value>,
        field: &str,
    ) -> Result<BTreeMap<String, String>, RenderError> {
        match v {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(self.bad(&format!("{field}.{k}"), "a string")),
                })
                .collect(),
            _ => Err(self.bad(field, "a mapping of strings")),
        }
    }

    fn field_specs(&self) -> Result<Vec<FieldSpec>, RenderError> {
        let Some(v) = self.v.get("fieldSpecs").filter(|v| !v.is_null()) else {
            return Ok(Vec::new());
        };
        let items = v
            .as_array()
            .ok_or_else(|| self.bad("fieldSpecs", "a list"))?;
        items
            .iter()
            .map(|i| {
                let s = |k: &str| i.get(k).map(scalar_text).unwrap_or_default();
                Ok(FieldSpec {
                    group: s("group"),
                    version: s("version"),
                    kind: s("kind"),
                    path: s("path"),
                    create: self.boolean(i.get("create"), "fieldSpecs.create")?,
                })
            })
            .collect()
    }

    fn target(&self, v: Option<&Value>) -> Option<Target> {
        let t = v.filter(|v| v.is_object())?;
        let s = |k: &str| t.get(k).map(scalar_text).unwrap_or_default();
        Some(Target {
            group: s("group"),
            version: s("version"),
            kind: s("kind"),
            name: s("name"),
            namespace: s("namespace"),
            label_selector: s("labelSelector"),
            annotation_selector: s("annotationSelector"),
        })
    }

    fn generator(&self, kind: GeneratorKind) -> Result<GeneratorSpec, RenderError> {
        let mut name = self.string("name")?;
        if name.is_empty() {
            name = self.meta("name");
        }
        let mut namespace = self.string("namespace")?;
        if namespace.is_empty() {
            namespace = self.meta("namespace");
        }
        let mut envs = self.strings("envs")?;
        let env = self.string("env")?;
        if !env.is_empty() {
            envs.push(env);
        }
        let options = match self.v.get("options").filter(|o| !o.is_null()) {
            None => None,
            Some(o) => Some(GeneratorOptions {
                labels: self.string_map(o.get("labels"), "options.labels")?,
                annotations: self.string_map(o.get("annotations"), "options.annotations")?,
                disable_name_suffix_hash: self.boolean(
                    o.get("disableNameSuffixHash"),
                    "options.disableNameSuffixHash",
                )?,
                immutable: self.boolean(o.get("immutable"), "options.immutable")?,
            }),
        };
        let behavior = self.string("behavior")?;
        if !matches!(behavior.as_str(), "" | "create" | "merge" | "replace") {
            return Err(self.bad("behavior", "create, merge or replace"));
        }
        Ok(GeneratorSpec {
            kind,
            name,
            namespace,
            behavior,
            literals: self.strings("literals")?,
            files: self.strings("files")?,
            envs,
            options,
            secret_type: self.string("type")?,
            line: self.at.line.unwrap_or(1),
        })
    }
}

/// Read the configurations in one `generators`/`transformers` document. `field` says which
/// list named it: a generator configuration under `transformers` (or the reverse) is refused,
/// as kustomize refuses it.
pub fn parse(v: &Value, at: &Location, field: &str) -> Result<Plugin, RenderError> {
    let api_version = v.get("apiVersion").map(scalar_text).unwrap_or_default();
    let kind = v.get("kind").map(scalar_text).unwrap_or_default();
    let runs_code = v
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get("config.kubernetes.io/function"))
        .is_some();
    if api_version != "builtin" || runs_code {
        return Err(RenderError::Unsupported {
            at: at.clone(),
            field: field.to_string(),
            why: format!(
                "{kind} ({api_version}) is not one of kustomize's built-in plugins; exec, Go, container and KRM-function plugins would run arbitrary code"
            ),
        });
    }
    if let Some((_, why)) = DECLINED.iter().find(|(k, _)| *k == kind) {
        return Err(RenderError::Unsupported {
            at: at.clone(),
            field: format!("{field} ({kind})"),
            why: why.to_string(),
        });
    }
    let d = Doc { v, at, kind: &kind };
    let is_generator = matches!(
        kind.as_str(),
        "ConfigMapGenerator"
            | "SecretGenerator"
            | "IAMPolicyGenerator"
            | "HelmChartInflationGenerator"
    );
    if is_generator != (field == "generators") {
        return Err(RenderError::invalid(
            at.clone(),
            field,
            format!(
                "{kind} is not a {}",
                if field == "generators" {
                    "generator"
                } else {
                    "transformer"
                }
            ),
        ));
    }
    let mut k = Kustomization::empty(&at.file);
    let line = at.line.unwrap_or(1);
    let config = match kind.as_str() {
        "ConfigMapGenerator" => Config::Generate(d.generator(GeneratorKind::ConfigMap)?),
        "SecretGenerator" => Config::Generate(d.generator(GeneratorKind::Secret)?),
        "LabelTransformer" | "AnnotationsTransformer" => {
            let (key, what) = if kind == "LabelTransformer" {
                ("labels", "adding labels")
            } else {
                ("annotations", "adding annotations")
            };
            Config::SetEntries {
                specs: d.field_specs()?,
                entries: d.string_map(v.get(key), key)?,
                what,
            }
        }
        "PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer" => {
            if v.get("fieldSpecs").is_none_or(Value::is_null) {
                return Err(RenderError::invalid(
                    at.clone(),
                    format!("{kind}.fieldSpecs"),
                    "fieldSpecs is not expected to be nil (list where the affix goes, e.g. `- path: metadata/name`)",
                ));
            }
            let (prefix, suffix) = match kind.as_str() {
                "PrefixTransformer" => (Some(d.string("prefix")?), None),
                "SuffixTransformer" => (None, Some(d.string("suffix")?)),
                _ => (Some(d.string("prefix")?), Some(d.string("suffix")?)),
            };
            Config::PrefixSuffix {
                prefix,
                suffix,
                specs: d.field_specs()?,
            }
        }
        "ImageTagTransformer" => {
            let t = v.get("imageTag").cloned().unwrap_or(Value::Null);
            let s = |f: &str| t.get(f).map(scalar_text).unwrap_or_default();
            Config::Images {
                image: ImageSpec {
                    name: s("name"),
                    new_name: s("newName"),
                    new_tag: s("newTag"),
                    digest: s("digest"),
                    line,
                },
                specs: d.field_specs()?,
            }
        }
        "ReplicaCountTransformer" => {
            let r = v.get("replica").cloned().unwrap_or(Value::Null);
            let count = match r.get("count") {
                None | Some(Value::Null) => 0,
                Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64().unwrap_or_default(),
                _ => return Err(d.bad("replica.count", "an integer")),
            };
            Config::Replicas {
                replica: ReplicaSpec {
                    name: r.get("name").map(scalar_text).unwrap_or_default(),
                    count,
                    line,
                },
                specs: d.field_specs()?,
            }
        }
        "NamespaceTransformer" => {
            let subjects = match d.string("setRoleBindingSubjects")?.as_str() {
                "" | "defaultOnly" => transform::Subjects::DefaultOnly,
                "allServiceAccounts" => transform::Subjects::AllServiceAccounts,
                "none" => transform::Subjects::None,
                other => {
                    return Err(RenderError::invalid(
                        at.clone(),
                        format!("{kind}.setRoleBindingSubjects"),
                        format!(
                            "invalid value {other:?} for setRoleBindingSubjects: must be one of \"defaultOnly\", \"none\" or \"allServiceAccounts\""
                        ),
                    ));
                }
            };
            Config::Namespace(transform::Namespacing {
                namespace: d.meta("namespace"),
                specs: d.field_specs()?,
                unset_only: d.boolean(v.get("unsetOnly"), "unsetOnly")?,
                subjects,
            })
        }
        "PatchTransformer" => {
            let options = v.get("options");
            let flag = |f: &str| {
                options
                    .and_then(|o| o.get(f))
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
            };
            let patch = d.string("patch")?;
            k.patches.push(PatchSpec {
                path: Some(d.string("path")?).filter(|s| !s.is_empty()),
                patch: Some(patch.trim().to_string()).filter(|s| !s.is_empty()),
                target: d.target(v.get("target")),
                allow_name_change: flag("allowNameChange"),
                allow_kind_change: flag("allowKindChange"),
                line,
                patch_line: line,
            });
            Config::Transform(Box::new(k))
        }
        "PatchJson6902Transformer" => {
            k.patches_json6902.push(PatchSpec {
                path: Some(d.string("path")?).filter(|s| !s.is_empty()),
                patch: Some(d.string("jsonOp")?).filter(|s| !s.trim().is_empty()),
                target: d.target(v.get("target")),
                allow_name_change: false,
                allow_kind_change: false,
                line,
                patch_line: line,
            });
            Config::Transform(Box::new(k))
        }
        "PatchStrategicMergeTransformer" => {
            for p in d.strings("paths")? {
                k.patches_strategic_merge.push(Spanned { value: p, line });
            }
            let inline = d.string("patches")?;
            if !inline.trim().is_empty() {
                k.patches_strategic_merge.push(Spanned {
                    value: inline,
                    line,
                });
            }
            Config::Transform(Box::new(k))
        }
        "ReplacementTransformer" => {
            let list = v.get("replacements").cloned().unwrap_or(Value::Null);
            let text = serde_json::to_string(&list).unwrap_or_default();
            k.replacements = replace::parse_inline_json(&text, &at.file, line)?;
            Config::Transform(Box::new(k))
        }
        "HashTransformer" => Config::Hash,
        "ValueAddTransformer" => {
            let target_file = Some(d.string("targetFilePath")?).filter(|s| !s.is_empty());
            let targets = value_targets(v.get("targets"), at)?;
            if targets.is_empty() && target_file.is_none() {
                return Err(RenderError::invalid(
                    at.clone(),
                    "ValueAddTransformer.targets",
                    "must specify at least one target",
                ));
            }
            Config::ValueAdd {
                value: d.string("value")?.trim().to_string(),
                targets,
                target_file,
            }
        }
        "HelmChartInflationGenerator" => {
            let strings = |f: &str| d.strings(f);
            let flag = |f: &str| d.boolean(v.get(f), f);
            let chart = HelmChart {
                name: d.string("name")?,
                version: d.string("version")?,
                repo: d.string("repo")?,
                release_name: d.string("releaseName")?,
                namespace: d.string("namespace")?,
                additional_values_files: strings("additionalValuesFiles")?,
                values_file: d.string("valuesFile")?,
                values_inline: v.get("valuesInline").filter(|x| x.is_object()).cloned(),
                values_merge: d.string("valuesMerge")?,
                include_crds: flag("includeCRDs")?,
                skip_hooks: flag("skipHooks")?,
                api_versions: strings("apiVersions")?,
                kube_version: d.string("kubeVersion")?,
                name_template: d.string("nameTemplate")?,
                skip_tests: flag("skipTests")?,
                debug: flag("debug")?,
                devel: flag("devel")?,
                line,
            };
            let globals = HelmGlobals {
                chart_home: d.string("chartHome")?,
                config_home: d.string("configHome")?,
            };
            Config::Helm(Box::new((chart, globals)))
        }
        "IAMPolicyGenerator" => {
            let cloud = d.string("cloud")?;
            if cloud != "gke" {
                return Err(RenderError::invalid(
                    at.clone(),
                    "IAMPolicyGenerator.cloud",
                    format!("cloud provider {cloud} not supported yet (kustomize supports gke)"),
                ));
            }
            let get = |a: &str, b: &str| {
                v.get(a)
                    .and_then(|x| x.get(b))
                    .map(scalar_text)
                    .unwrap_or_default()
            };
            let mut meta = serde_json::Map::new();
            meta.insert(
                "annotations".into(),
                serde_json::json!({
                    "iam.gke.io/gcp-service-account": format!(
                        "{}@{}.iam.gserviceaccount.com",
                        get("serviceAccount", "name"),
                        get("serviceAccount", "projectId")
                    )
                }),
            );
            meta.insert(
                "name".into(),
                Value::String(get("kubernetesService", "name")),
            );
            let ns = get("kubernetesService", "namespace");
            if !ns.is_empty() {
                meta.insert("namespace".into(), Value::String(ns));
            }
            Config::Objects(vec![serde_json::json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": meta,
            })])
        }
        other => {
            return Err(RenderError::Unsupported {
                at: at.clone(),
                field: field.to_string(),
                why: format!("{other:?} is not a built-in kustomize plugin"),
            });
        }
    };
    Ok(Plugin {
        config,
        at: at.clone(),
        id: (kind.clone(), d.meta("name"), d.meta("namespace")),
    })
}

/// Does a `generators`/`transformers` entry hold configuration text rather than a path?
pub fn is_inline(entry: &str) -> bool {
    entry.contains('\n')
}

/// kustomize loads inline configurations first, then files and directories, each group in
/// the order written.
pub fn in_kustomize_order(
    entries: &[super::kustomization::Spanned<String>],
) -> Vec<&super::kustomization::Spanned<String>> {
    let (mut inline, paths): (Vec<_>, Vec<_>) = entries.iter().partition(|e| is_inline(&e.value));
    inline.extend(paths);
    inline
}
