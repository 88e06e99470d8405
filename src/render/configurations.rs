//! `configurations`: files of custom field specs that extend kustomize's built-in tables for
//! the transformers of a kustomization — which fields name other objects (`nameReference`),
//! where common labels and annotations go, which fields hold images, and where `$(VAR)`
//! references are expanded, and where name prefixes and suffixes, namespaces, `labels`
//! entries (also with `includeTemplates`) and replica counts go. As in kustomize, a kustomization's configurations also apply to
//! every kustomization that includes it (they travel up with its resources).

use std::path::Path;

use serde_json::Value;

use super::error::{Location, RenderError};
use super::fieldspec::{self, BackRef};
use super::kustomization::FieldSpec;
use super::resource::{Gvk, scalar_text};
use super::value::{self, Dialect};

/// The transformer configuration of a kustomization as kustomize accumulates it. The tables
/// of the transformers whose specs kustomize merges and sorts on every step (prefix, suffix,
/// namespace, labels, annotations, replicas) are held whole, built-in specs included, and
/// merged exactly as kustomize merges them, because which of two overlapping specs survives
/// depends on it. The other sections hold only the specs added to baton's built-in tables.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub name_references: Vec<BackRef>,
    pub images: Vec<FieldSpec>,
    pub var_references: Vec<FieldSpec>,
    pub common_labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
    pub name_prefix: Vec<FieldSpec>,
    pub name_suffix: Vec<FieldSpec>,
    pub namespace: Vec<FieldSpec>,
    /// Added to every `labels:` entry (kustomize's `labels` section).
    pub labels: Vec<FieldSpec>,
    /// Added to `labels:` entries with `includeTemplates`.
    pub template_labels: Vec<FieldSpec>,
    pub replicas: Vec<FieldSpec>,
}

fn push_unique(into: &mut Vec<FieldSpec>, more: &[FieldSpec]) {
    for fs in more {
        if !into.contains(fs) {
            into.push(fs.clone());
        }
    }
}

fn sorted(specs: &[FieldSpec]) -> Vec<FieldSpec> {
    let mut v = specs.to_vec();
    fieldspec::sort_table(&mut v);
    v
}

impl Extra {
    /// kustomize's default configuration (`MakeDefaultConfig`).
    pub fn builtin() -> Extra {
        Extra {
            common_labels: sorted(fieldspec::common_labels()),
            common_annotations: sorted(fieldspec::common_annotations()),
            name_prefix: sorted(fieldspec::name_affix()),
            name_suffix: sorted(fieldspec::name_affix()),
            namespace: sorted(fieldspec::namespace_fields()),
            template_labels: sorted(fieldspec::template_labels()),
            replicas: sorted(fieldspec::replicas()),
            ..Extra::default()
        }
    }

    /// `TransformerConfig.Merge`; fails on kustomize's `conflicting fieldspecs`.
    pub fn merge(&mut self, other: &Extra) -> Result<(), String> {
        self.name_references
            .extend(other.name_references.iter().cloned());
        push_unique(&mut self.images, &other.images);
        push_unique(&mut self.var_references, &other.var_references);
        let tables: [(&mut Vec<FieldSpec>, &Vec<FieldSpec>, &str); 8] = [
            (
                &mut self.common_labels,
                &other.common_labels,
                "commonLabels",
            ),
            (
                &mut self.common_annotations,
                &other.common_annotations,
                "commonAnnotations",
            ),
            (&mut self.name_prefix, &other.name_prefix, "namePrefix"),
            (&mut self.name_suffix, &other.name_suffix, "nameSuffix"),
            (&mut self.namespace, &other.namespace, "namespace"),
            (&mut self.labels, &other.labels, "labels"),
            (
                &mut self.template_labels,
                &other.template_labels,
                "templateLabels",
            ),
            (&mut self.replicas, &other.replicas, "replicas"),
        ];
        for (into, more, name) in tables {
            fieldspec::merge_table(into, more)
                .map_err(|e| format!("failed to merge {name} fieldSpec: {e}"))?;
        }
        Ok(())
    }
}

fn specs(v: &Value, at: &Location, section: &str) -> Result<Vec<FieldSpec>, RenderError> {
    let items = match v {
        Value::Null => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => {
            return Err(RenderError::invalid(
                at.clone(),
                format!("configurations.{section}"),
                "expected a list of field specs",
            ));
        }
    };
    Ok(items
        .iter()
        .map(|i| {
            let s = |k: &str| i.get(k).map(scalar_text).unwrap_or_default();
            FieldSpec {
                group: s("group"),
                version: s("version"),
                kind: s("kind"),
                path: s("path"),
                create: i.get("create").and_then(Value::as_bool).unwrap_or(false),
            }
        })
        .collect())
}

/// Parse one configuration file.
pub fn parse(text: &str, file: &Path) -> Result<Extra, RenderError> {
    let at = Location::file(file);
    let docs = value::parse_stream(text).map_err(|e| RenderError::Yaml {
        at: Location::at(file, e.line),
        message: e.message,
    })?;
    let mut out = Extra::default();
    for d in docs.iter().filter(|d| !d.is_null()) {
        let v = d
            .to_plain_value(Dialect::Yaml11)
            .map_err(|e| RenderError::Yaml {
                at: Location::at(file, e.line),
                message: e.message,
            })?;
        let Value::Object(m) = v else {
            return Err(RenderError::invalid(
                at.clone(),
                "configurations",
                "expected a mapping of field-spec lists",
            ));
        };
        for (section, list) in &m {
            match section.as_str() {
                "nameReference" => {
                    for rule in list.as_array().into_iter().flatten() {
                        let s = |k: &str| rule.get(k).map(scalar_text).unwrap_or_default();
                        let gvk = Gvk {
                            group: s("group"),
                            version: s("version"),
                            kind: s("kind"),
                        };
                        out.name_references.push(BackRef {
                            group: gvk.group,
                            version: gvk.version,
                            kind: gvk.kind,
                            referrers: specs(
                                rule.get("fieldSpecs").unwrap_or(&Value::Null),
                                &at,
                                section,
                            )?,
                        });
                    }
                }
                "commonLabels" => out.common_labels = sorted(&specs(list, &at, section)?),
                "commonAnnotations" => out.common_annotations = sorted(&specs(list, &at, section)?),
                "images" => out.images = specs(list, &at, section)?,
                "varReference" => out.var_references = specs(list, &at, section)?,
                "namePrefix" => out.name_prefix = sorted(&specs(list, &at, section)?),
                "nameSuffix" => out.name_suffix = sorted(&specs(list, &at, section)?),
                "namespace" => out.namespace = sorted(&specs(list, &at, section)?),
                "labels" => out.labels = sorted(&specs(list, &at, section)?),
                "templateLabels" => out.template_labels = sorted(&specs(list, &at, section)?),
                "replicas" => out.replicas = sorted(&specs(list, &at, section)?),
                other => {
                    return Err(RenderError::invalid(
                        at.clone(),
                        "configurations",
                        format!("unknown section {other:?}"),
                    ));
                }
            }
        }
    }
    Ok(out)
}
