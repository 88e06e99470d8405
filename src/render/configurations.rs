//! `configurations`: files of custom field specs that extend kustomize's built-in tables for
//! the transformers of a kustomization — which fields name other objects (`nameReference`),
//! where common labels and annotations go, which fields hold images, and where `$(VAR)`
//! references are expanded. As in kustomize, a kustomization's configurations also apply to
//! every kustomization that includes it (they travel up with its resources).

use std::path::Path;

use serde_json::Value;

use super::error::{Location, RenderError};
use super::fieldspec::BackRef;
use super::kustomization::FieldSpec;
use super::resource::{Gvk, scalar_text};
use super::value::{self, Dialect};

/// Field specs added to the built-in tables.
#[derive(Debug, Clone, Default)]
pub struct Extra {
    pub name_references: Vec<BackRef>,
    pub common_labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
    pub images: Vec<FieldSpec>,
    pub var_references: Vec<FieldSpec>,
}

fn push_unique(into: &mut Vec<FieldSpec>, more: &[FieldSpec]) {
    for fs in more {
        if !into.contains(fs) {
            into.push(fs.clone());
        }
    }
}

impl Extra {
    pub fn merge(&mut self, other: &Extra) {
        self.name_references
            .extend(other.name_references.iter().cloned());
        push_unique(&mut self.common_labels, &other.common_labels);
        push_unique(&mut self.common_annotations, &other.common_annotations);
        push_unique(&mut self.images, &other.images);
        push_unique(&mut self.var_references, &other.var_references);
    }
}

/// The sections kustomize's configuration files may hold that baton does not apply yet.
const NOT_IMPLEMENTED: &[&str] = &[
    "namePrefix",
    "nameSuffix",
    "namespace",
    "metadataLabels",
    "templateLabels",
    "replicas",
];

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
                "commonLabels" => out.common_labels = specs(list, &at, section)?,
                "commonAnnotations" => out.common_annotations = specs(list, &at, section)?,
                "images" => out.images = specs(list, &at, section)?,
                "varReference" => out.var_references = specs(list, &at, section)?,
                other if NOT_IMPLEMENTED.contains(&other) => {
                    if !list.as_array().is_none_or(Vec::is_empty) {
                        return Err(RenderError::Unsupported {
                            at: at.clone(),
                            field: format!("configurations: {other}"),
                            why: "custom field specs for this transformer are not implemented"
                                .into(),
                        });
                    }
                }
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
