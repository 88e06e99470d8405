//! The built-in transformers of one kustomization: namespace, name prefix and suffix, labels,
//! annotations, images and replicas. Each follows the corresponding kustomize plugin, including
//! which objects it skips and which previous identities it records for name references.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Map, Value};

use super::error::{Location, RenderError};
use super::fieldspec::{self, Create};
use super::kustomization::{FieldSpec, ImageSpec, Kustomization, LabelSpec, ReplicaSpec};
use super::resource::{Gvk, Resource};

fn fail(r: &Resource, what: &str, e: String) -> RenderError {
    RenderError::build(r.origin.clone(), format!("{what} on {}: {e}", r.cur_id()))
}

/// Set `key: value` (strings) in the mapping reached by each spec.
fn set_entries(
    r: &mut Resource,
    specs: &[FieldSpec],
    entries: &BTreeMap<String, String>,
    what: &str,
) -> Result<(), RenderError> {
    if entries.is_empty() {
        return Ok(());
    }
    let gvk = r.gvk();
    for spec in specs.iter().filter(|s| fieldspec::matches_gvk(s, &gvk)) {
        let result = fieldspec::visit(&mut r.value, spec, Create::Map, &mut |node| {
            if node.is_null() {
                *node = Value::Object(Map::new());
            }
            let m = node
                .as_object_mut()
                .ok_or_else(|| format!("`{}` is not a mapping", spec.path))?;
            for (k, v) in entries {
                m.insert(k.clone(), Value::String(v.clone()));
            }
            Ok(())
        });
        result.map_err(|e| fail(r, what, e))?;
    }
    Ok(())
}

/// Which RBAC subjects a namespace transformer points at its namespace
/// (`setRoleBindingSubjects`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Subjects {
    /// Subjects named `default` (the kustomization field; the plugin's default).
    #[default]
    DefaultOnly,
    /// Every subject of kind `ServiceAccount`.
    AllServiceAccounts,
    /// None.
    None,
}

/// A namespace transformer: the `namespace:` field or a `NamespaceTransformer` configuration.
#[derive(Debug, Clone, Default)]
pub struct Namespacing {
    pub namespace: String,
    /// Fields besides `metadata.namespace` that hold the namespace (kustomize's table for the
    /// field, extended by `configurations`; a plugin's own `fieldSpecs`).
    pub specs: Vec<FieldSpec>,
    /// Only set fields that are empty (`unsetOnly`).
    pub unset_only: bool,
    pub subjects: Subjects,
}

/// Set `metadata.namespace` on namespaced objects and the namespace at every field spec (a core
/// `Namespace`'s name among them), and point RBAC subjects at it — kustomize's namespace filter.
pub fn namespace(
    resources: &mut [Resource],
    n: &Namespacing,
    file: &std::path::Path,
) -> Result<(), RenderError> {
    if n.namespace.is_empty() {
        return Ok(());
    }
    let ns = n.namespace.as_str();
    let set = |node: &mut Value| {
        let empty = match node {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            _ => false,
        };
        if !n.unset_only || empty {
            *node = Value::String(ns.to_string());
        }
    };
    for r in resources.iter_mut() {
        if r.is_empty() {
            continue;
        }
        r.store_previous_id();
        let gvk = r.gvk();
        if !gvk.is_cluster_scoped() {
            let meta = r.metadata_mut();
            let node = meta.entry("namespace").or_insert(Value::Null);
            set(node);
        }
        let rbac = matches!(gvk.kind.as_str(), "RoleBinding" | "ClusterRoleBinding");
        if rbac && let Some(Value::Array(subjects)) = r.value.get_mut("subjects") {
            for s in subjects.iter_mut() {
                let Value::Object(m) = s else { continue };
                let hit = match n.subjects {
                    Subjects::DefaultOnly => {
                        m.get("name").and_then(Value::as_str) == Some("default")
                    }
                    Subjects::AllServiceAccounts => {
                        m.get("kind").and_then(Value::as_str) == Some("ServiceAccount")
                    }
                    Subjects::None => false,
                };
                if hit {
                    set(m.entry("namespace").or_insert(Value::Null));
                }
            }
        }
        // kustomize renames only `apiVersion: v1` Namespaces (any `metadata/name` spec is
        // dropped for other API versions); `metadata.namespace` has its own rule above.
        let core = r.api_version() == "v1";
        for spec in n
            .specs
            .iter()
            .filter(|s| fieldspec::matches_gvk(s, &gvk))
            .filter(|s| s.path != "metadata/namespace")
            .filter(|s| core || s.path != "metadata/name")
            .filter(|s| !(rbac && s.path == "subjects/namespace"))
        {
            let result = fieldspec::visit(&mut r.value, spec, Create::Scalar, &mut |node| {
                if node.is_object() || node.is_array() {
                    return Err(format!(
                        "namespace field specs must target scalar nodes (`{}`)",
                        spec.path
                    ));
                }
                set(node);
                Ok(())
            });
            result.map_err(|e| fail(r, "setting the namespace", e))?;
        }
    }
    check_unique(resources, file, "namespace")
}

/// Two resources may not end up with the same identity.
pub fn check_unique(
    resources: &[Resource],
    file: &std::path::Path,
    field: &str,
) -> Result<(), RenderError> {
    let mut seen: std::collections::HashMap<(Gvk, String, String), usize> =
        std::collections::HashMap::new();
    for (i, r) in resources.iter().enumerate() {
        if r.is_empty() {
            continue;
        }
        let id = r.cur_id();
        let key = (
            id.gvk.clone(),
            id.effective_namespace().to_string(),
            id.name.clone(),
        );
        if let Some(j) = seen.insert(key, i) {
            return Err(RenderError::build(
                Location::file(file),
                format!(
                    "`{field}` makes two resources the same object {id} (from {} and {}); give them distinct names",
                    resources[j].origin, r.origin
                ),
            ));
        }
    }
    Ok(())
}

fn skips_renames(id_gvk: &Gvk) -> bool {
    id_gvk.kind == "CustomResourceDefinition"
        || id_gvk.kind == "Namespace"
        || (id_gvk.kind == "APIService" && id_gvk.group == "apiregistration.k8s.io")
}

/// A name prefix or suffix and where it goes: `namePrefix`/`nameSuffix` with kustomize's
/// table (`metadata/name`, extended by `configurations`), or a prefix/suffix transformer's own
/// `fieldSpecs`. As in kustomize, CRDs, Namespaces and APIServices are never touched; a
/// `metadata/name` spec renames the object (recording its previous id), any other spec puts
/// the affix in front of (or behind) that field's value, creating it when the spec says so.
pub fn affix(
    resources: &mut [Resource],
    affix: &str,
    is_prefix: bool,
    specs: &[FieldSpec],
) -> Result<(), RenderError> {
    for r in resources.iter_mut() {
        let org = r.org_id().gvk;
        if r.is_empty() || skips_renames(&org) {
            continue;
        }
        for spec in specs {
            if !org.is_selected_by(&spec.group, &spec.version, &spec.kind) {
                continue;
            }
            if spec.path == "metadata/name" && !affix.is_empty() {
                if is_prefix {
                    r.prefixes.push(affix.to_string());
                } else {
                    r.suffixes.push(affix.to_string());
                }
                r.store_previous_id();
            }
            if !fieldspec::matches_gvk(spec, &r.gvk()) {
                continue;
            }
            let result = fieldspec::visit(&mut r.value, spec, Create::Scalar, &mut |node| {
                let old = match &*node {
                    Value::Null => String::new(),
                    Value::Object(_) | Value::Array(_) => {
                        return Err(format!("`{}` is not a scalar", spec.path));
                    }
                    other => super::resource::scalar_text(other),
                };
                *node = Value::String(if is_prefix {
                    format!("{affix}{old}")
                } else {
                    format!("{old}{affix}")
                });
                Ok(())
            });
            result.map_err(|e| {
                fail(
                    r,
                    if is_prefix {
                        "adding the name prefix"
                    } else {
                        "adding the name suffix"
                    },
                    e,
                )
            })?;
        }
    }
    Ok(())
}

/// The label transformers' tables (kustomize's, as `configurations` extended them).
#[derive(Debug, Clone, Copy, Default)]
pub struct LabelTables<'a> {
    /// `commonLabels` (also `labels` with `includeSelectors`).
    pub common: &'a [FieldSpec],
    /// `labels` (every `labels:` entry).
    pub labels: &'a [FieldSpec],
    /// `templateLabels` (`labels` with `includeTemplates`).
    pub templates: &'a [FieldSpec],
}

/// `labels:` entries, then `commonLabels:`.
pub fn labels(
    resources: &mut [Resource],
    k: &Kustomization,
    extra: LabelTables<'_>,
) -> Result<(), RenderError> {
    let common = extra.common;
    let templates = extra.templates;
    let mut plans: Vec<(Vec<FieldSpec>, &BTreeMap<String, String>)> = Vec::new();
    for l in &k.labels {
        plans.push((
            label_specs(l, extra.labels, common, templates)
                .map_err(|e| RenderError::invalid(Location::at(&k.file, l.line), "labels", e))?,
            &l.pairs,
        ));
    }
    plans.push((common.to_vec(), &k.common_labels));
    for (specs, pairs) in &plans {
        for r in resources.iter_mut().filter(|r| !r.is_empty()) {
            set_entries(r, specs, pairs, "adding labels")?;
        }
    }
    Ok(())
}

/// kustomize's order: the entry's own `fields`, the `labels` table, then selectors and
/// templates (`includeSelectors`) or templates if asked and `metadata/labels`.
fn label_specs(
    l: &LabelSpec,
    labels: &[FieldSpec],
    common: &[FieldSpec],
    templates: &[FieldSpec],
) -> Result<Vec<FieldSpec>, String> {
    let mut specs = l.fields.clone();
    fieldspec::merge_into(&mut specs, labels)?;
    if l.include_selectors {
        fieldspec::merge_into(&mut specs, common)?;
    } else {
        if l.include_templates {
            fieldspec::merge_into(&mut specs, templates)?;
        }
        fieldspec::merge_into(
            &mut specs,
            &[FieldSpec {
                path: "metadata/labels".into(),
                create: true,
                ..Default::default()
            }],
        )?;
    }
    Ok(specs)
}

/// Add `entries` at `specs` in every object (`LabelTransformer`, `AnnotationsTransformer`).
pub fn set_map_entries(
    resources: &mut [Resource],
    specs: &[FieldSpec],
    entries: &BTreeMap<String, String>,
    what: &str,
) -> Result<(), RenderError> {
    for r in resources.iter_mut().filter(|r| !r.is_empty()) {
        set_entries(r, specs, entries, what)?;
    }
    Ok(())
}

/// `commonAnnotations:` at `specs` (kustomize's table as `configurations` extended it).
pub fn annotations(
    resources: &mut [Resource],
    k: &Kustomization,
    specs: &[FieldSpec],
) -> Result<(), RenderError> {
    for r in resources.iter_mut().filter(|r| !r.is_empty()) {
        set_entries(r, specs, &k.common_annotations, "adding annotations")?;
    }
    Ok(())
}

/// An image reference split into name, tag and digest (kustomize `image.Split`).
fn split_image(image: &str) -> (String, String, String) {
    let slash = image.find('/').filter(|&i| i > 0).unwrap_or(0);
    let search = &image[slash..];
    let id = search.find('@');
    let ic = search.find(':');
    match (id, ic) {
        (None, None) => (image.to_string(), String::new(), String::new()),
        (Some(d), c) if c.is_none() || d < c.unwrap_or(usize::MAX) => {
            let d = d + slash;
            (
                image[..d].to_string(),
                String::new(),
                image[d + 1..].to_string(),
            )
        }
        (Some(d), Some(c)) => {
            let (d, c) = (d + slash, c + slash);
            (
                image[..c].to_string(),
                image[c + 1..d].to_string(),
                image[d + 1..].to_string(),
            )
        }
        (None, Some(c)) => {
            let c = c + slash;
            (
                image[..c].to_string(),
                image[c + 1..].to_string(),
                String::new(),
            )
        }
        (Some(_), None) => unreachable!("covered by the digest-only arm"),
    }
}

struct ImageRule<'a> {
    spec: &'a ImageSpec,
    matcher: ImageMatcher,
}

/// kustomize matches an image against the regex
/// `^NAME(:[a-zA-Z0-9_.{}-]*)?(@sha256:[a-zA-Z0-9_.{}-]*)?$` with NAME unescaped. Names are
/// almost always plain (their only metacharacter is `.`, a one-character wildcard), and those
/// are matched by hand: compiling hundreds of regexes costs more than the whole render.
enum ImageMatcher {
    Plain(Vec<char>),
    Regex(Regex),
}

fn tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '{' | '}' | '-')
}

impl ImageMatcher {
    fn is_match(&self, value: &str) -> bool {
        match self {
            ImageMatcher::Regex(re) => re.is_match(value),
            ImageMatcher::Plain(name) => {
                let mut chars = value.chars();
                for &n in name {
                    match chars.next() {
                        Some(c) if n == '.' || c == n => {}
                        _ => return false,
                    }
                }
                let rest = chars.as_str();
                let rest = match rest.strip_prefix(':') {
                    Some(r) => r.trim_start_matches(tag_char),
                    None => rest,
                };
                let rest = match rest.strip_prefix("@sha256:") {
                    Some(r) => r.trim_start_matches(tag_char),
                    None => rest,
                };
                rest.is_empty()
            }
        }
    }
}

impl<'a> ImageRule<'a> {
    fn new(spec: &'a ImageSpec, file: &std::path::Path) -> Result<Self, RenderError> {
        let plain = !spec.name.chars().any(|c| "\\+*?()|[]{}^$".contains(c));
        let matcher = if plain {
            ImageMatcher::Plain(spec.name.chars().collect())
        } else {
            let pattern = format!(
                "^{}(:[a-zA-Z0-9_.{{}}-]*)?(@sha256:[a-zA-Z0-9_.{{}}-]*)?$",
                spec.name
            );
            ImageMatcher::Regex(Regex::new(&pattern).map_err(|e| {
                RenderError::invalid(
                    Location::at(file, spec.line),
                    "images.name",
                    format!("{:?} is not usable as an image name: {e}", spec.name),
                )
            })?)
        };
        Ok(ImageRule { spec, matcher })
    }

    fn apply(&self, value: &str) -> Option<String> {
        if !self.matcher.is_match(value) {
            return None;
        }
        let (mut name, mut tag, mut digest) = split_image(value);
        let s = self.spec;
        if !s.new_name.is_empty() {
            name = s.new_name.clone();
        }
        match (s.new_tag.is_empty(), s.digest.is_empty()) {
            (false, false) => {
                tag = s.new_tag.clone();
                digest = s.digest.clone();
            }
            (false, true) => {
                tag = s.new_tag.clone();
                digest.clear();
            }
            (true, false) => {
                tag.clear();
                digest = s.digest.clone();
            }
            (true, true) => {}
        }
        if !tag.is_empty() {
            name = format!("{name}:{tag}");
        }
        if !digest.is_empty() {
            name = format!("{name}@{digest}");
        }
        Some(name)
    }
}

/// Apply the image rules, in order, to every `image` of every `containers`/`initContainers`
/// list anywhere in the object (kustomize applies rule after rule over all objects; the
/// result per field is the same).
fn update_containers(node: &mut Value, rules: &[ImageRule<'_>]) {
    match node {
        Value::Object(m) => {
            for (key, v) in m.iter_mut() {
                update_containers(v, rules);
                if (key == "containers" || key == "initContainers")
                    && let Value::Array(items) = v
                {
                    for c in items.iter_mut() {
                        if let Some(img) = c.get_mut("image")
                            && let Some(s) = img.as_str()
                        {
                            let mut current = s.to_string();
                            let mut changed = false;
                            for rule in rules {
                                if let Some(new) = rule.apply(&current) {
                                    current = new;
                                    changed = true;
                                }
                            }
                            if changed {
                                *img = Value::String(current);
                            }
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            for i in items {
                update_containers(i, rules);
            }
        }
        _ => {}
    }
}

/// `images:` — rewrite `image` fields of every `containers`/`initContainers` list.
/// `extra`: fields holding an image, from `configurations`.
pub fn images(
    resources: &mut [Resource],
    k: &Kustomization,
    extra: &[FieldSpec],
) -> Result<(), RenderError> {
    if k.images.is_empty() {
        return Ok(());
    }
    let rules = k
        .images
        .iter()
        .map(|spec| ImageRule::new(spec, &k.file))
        .collect::<Result<Vec<_>, _>>()?;
    for r in resources.iter_mut().filter(|r| !r.is_empty()) {
        if r.kind() == "CustomResourceDefinition" {
            continue;
        }
        update_containers(&mut r.value, &rules);
        let gvk = r.gvk();
        for spec in extra.iter().filter(|s| fieldspec::matches_gvk(s, &gvk)) {
            let result = fieldspec::visit(&mut r.value, spec, Create::Nothing, &mut |node| {
                if let Some(s) = node.as_str() {
                    let mut current = s.to_string();
                    let mut changed = false;
                    for rule in &rules {
                        if let Some(new) = rule.apply(&current) {
                            current = new;
                            changed = true;
                        }
                    }
                    if changed {
                        *node = Value::String(current);
                    }
                }
                Ok(())
            });
            result.map_err(|e| fail(r, "updating images", e))?;
        }
    }
    Ok(())
}

/// `replicas:` — set `spec.replicas` of the workloads with that (original or current) name.
/// `table`: where replica counts go (kustomize's table, extended by `configurations`, or a
/// `ReplicaCountTransformer`'s own `fieldSpecs`).
pub fn replicas(
    resources: &mut [Resource],
    specs: &[ReplicaSpec],
    table: &[FieldSpec],
    file: &std::path::Path,
) -> Result<(), RenderError> {
    // Positions of resources under every name they have had.
    let mut by_name: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
    for (i, r) in resources.iter().enumerate() {
        if r.is_empty() {
            continue;
        }
        by_name.entry(r.name()).or_default().push(i);
        for p in &r.prev_ids {
            by_name.entry(p.name.as_str()).or_default().push(i);
        }
    }
    let mut plan: Vec<(usize, &FieldSpec, &ReplicaSpec)> = Vec::new();
    for rep in specs {
        let mut found = false;
        let mut candidates = by_name.get(rep.name.as_str()).cloned().unwrap_or_default();
        candidates.sort_unstable();
        candidates.dedup();
        for fs in table {
            for &i in &candidates {
                let r = &resources[i];
                let mut ids = r.prev_res_ids();
                ids.push(r.cur_id());
                let ids_match = ids.iter().any(|id| {
                    id.name == rep.name && id.gvk.is_selected_by(&fs.group, &fs.version, &fs.kind)
                });
                if !ids_match {
                    continue;
                }
                found = true;
                if fieldspec::matches_gvk(fs, &r.gvk()) {
                    plan.push((i, fs, rep));
                }
            }
        }
        if !found {
            let kinds: Vec<String> = table
                .iter()
                .map(|fs| {
                    let mut k = fs.kind.clone();
                    if !fs.group.is_empty() {
                        k = format!("{k}.{}", fs.group);
                    }
                    if k.is_empty() { "any kind".into() } else { k }
                })
                .collect();
            let why = if kinds.is_empty() {
                format!(
                    "resource with name {} does not match a config: no fieldSpecs say where replica counts go (e.g. `- path: spec/replicas` with `kind: Deployment`)",
                    rep.name
                )
            } else {
                format!(
                    "no object of the kinds replica counts apply to ({}) is named {:?}; fix the name or remove the entry",
                    kinds.join(", "),
                    rep.name
                )
            };
            return Err(RenderError::invalid(
                Location::at(file, rep.line),
                "replicas",
                why,
            ));
        }
    }
    for (i, fs, rep) in plan {
        let count = rep.count;
        let r = &mut resources[i];
        fieldspec::visit(&mut r.value, fs, Create::Scalar, &mut |node| {
            *node = Value::Number(count.into());
            Ok(())
        })
        .map_err(|e| fail(r, "setting replicas", e))?;
    }
    Ok(())
}

/// kyaml's `filesys.InsertPathPart`: `part` inserted into the `/`-separated `path` at `pos`
/// (an absolute path keeps its leading `/`), the result cleaned like Go's `filepath.Join`.
fn insert_path_part(path: &str, pos: usize, part: &str) -> String {
    if part.is_empty() {
        return path.to_string();
    }
    let mut parts: Vec<&str> = if path.is_empty() {
        Vec::new()
    } else {
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() {
            vec![""]
        } else {
            trimmed.split('/').collect()
        }
    };
    let mut pos = pos.min(parts.len());
    if parts.first() == Some(&"") && pos < parts.len() {
        pos += 1;
    }
    parts.insert(pos, part);
    let absolute = parts.first() == Some(&"");
    let mut clean: Vec<&str> = Vec::new();
    for p in parts.iter().skip(usize::from(absolute)) {
        match *p {
            "" | "." => {}
            ".." => {
                if clean.last().is_some_and(|l| *l != "..") {
                    clean.pop();
                } else if !absolute {
                    clean.push("..");
                }
            }
            other => clean.push(other),
        }
    }
    let joined = clean.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// `ValueAddTransformer` on one object: set the field at `field_path` (created as needed) to
/// `value`, or with `file_path_position` > 0 insert `value` into the path the field holds.
pub fn value_add(
    r: &mut Resource,
    value: &str,
    field_path: &str,
    file_path_position: i64,
) -> Result<(), RenderError> {
    let path = fieldspec::split_path(field_path);
    let (origin, id) = (r.origin.clone(), r.cur_id());
    let err = |why: &str| {
        RenderError::build(
            origin.clone(),
            format!("ValueAddTransformer on {id}: `{field_path}` {why}"),
        )
    };
    let mut node = &mut r.value;
    for (i, name) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        let Value::Object(m) = node else {
            return Err(err("does not lead through mappings"));
        };
        node = m.entry(name.clone()).or_insert_with(|| {
            if last {
                Value::Null
            } else {
                Value::Object(Map::new())
            }
        });
        if !last && node.is_null() {
            *node = Value::Object(Map::new());
        }
    }
    let old = match &*node {
        Value::Object(_) | Value::Array(_) => {
            return Err(err("is not a scalar"));
        }
        Value::Null => String::new(),
        other => super::resource::scalar_text(other),
    };
    let new = if file_path_position > 0 {
        insert_path_part(&old, (file_path_position - 1) as usize, value)
    } else {
        value.to_string()
    };
    *node = Value::String(new);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parts_insert_like_kyaml() {
        assert_eq!(insert_path_part("", 0, "P"), "P");
        assert_eq!(insert_path_part("/", 3, "P"), "/P");
        assert_eq!(insert_path_part("pie", 0, "P"), "P/pie");
        assert_eq!(insert_path_part("/pie", 0, "P"), "/P/pie");
        assert_eq!(insert_path_part("raw", 1, "P"), "raw/P");
        assert_eq!(insert_path_part("/raw", 7, "P"), "/raw/P");
        assert_eq!(insert_path_part("a/b/c", 1, "P"), "a/P/b/c");
        assert_eq!(insert_path_part("x", 0, ""), "x");
    }

    #[test]
    fn images_split_like_kustomize() {
        assert_eq!(split_image("nginx"), ("nginx".into(), "".into(), "".into()));
        assert_eq!(
            split_image("nginx:1.2"),
            ("nginx".into(), "1.2".into(), "".into())
        );
        assert_eq!(
            split_image("reg:5000/a/b:v1"),
            ("reg:5000/a/b".into(), "v1".into(), "".into())
        );
        assert_eq!(
            split_image("a/b@sha256:abc"),
            ("a/b".into(), "".into(), "sha256:abc".into())
        );
        assert_eq!(
            split_image("a/b:v1@sha256:abc"),
            ("a/b".into(), "v1".into(), "sha256:abc".into())
        );
    }

    #[test]
    fn image_rules_replace_tag_and_digest_together() {
        let spec = ImageSpec {
            name: "web".into(),
            new_name: "reg/web".into(),
            digest: "sha256:ff".into(),
            ..Default::default()
        };
        let rule = ImageRule::new(&spec, std::path::Path::new("k.yaml")).unwrap();
        assert_eq!(rule.apply("web:1.0").as_deref(), Some("reg/web@sha256:ff"));
        assert_eq!(rule.apply("webx:1.0"), None);
        assert_eq!(rule.apply("other/web:1.0"), None);
        // The name is a regex, unescaped, as in kustomize: `.` matches any character.
        let dotted = ImageSpec {
            name: "a.b".into(),
            new_tag: "2".into(),
            ..Default::default()
        };
        let rule = ImageRule::new(&dotted, std::path::Path::new("k.yaml")).unwrap();
        assert_eq!(rule.apply("axb:1").as_deref(), Some("axb:2"));
    }

    #[test]
    fn hand_matched_names_agree_with_kustomizes_regex() {
        let names = ["nginx", "a.b", "reg.io:5000/team/app", "x"];
        let values = [
            "nginx",
            "nginx:1",
            "nginx:1.2-alpine",
            "nginx@sha256:ab",
            "nginx:1@sha256:ab",
            "nginxx",
            "nginx:",
            "nginx:a:b",
            "nginx@sha256:",
            "nginx@sha512:ab",
            "nginx:1@sha256:a@b",
            "a.b",
            "axb:1",
            "ab",
            "reg.io:5000/team/app:v1",
            "regxio:5000/team/app",
            "reg.io:5000/team/app@sha256:ff",
            "x:{{.Tag}}",
            "x:tag with space",
            "é",
        ];
        for name in names {
            let re = Regex::new(&format!(
                "^{name}(:[a-zA-Z0-9_.{{}}-]*)?(@sha256:[a-zA-Z0-9_.{{}}-]*)?$"
            ))
            .unwrap();
            let plain = ImageMatcher::Plain(name.chars().collect());
            for v in values {
                assert_eq!(plain.is_match(v), re.is_match(v), "{name} vs {v}");
            }
        }
    }
}
