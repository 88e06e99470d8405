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

/// `namespace:` — set `metadata.namespace` on namespaced objects, rename Namespace objects,
/// point `default` RBAC subjects and a few service references at the namespace.
pub fn namespace(
    resources: &mut [Resource],
    ns: &str,
    k: &Kustomization,
) -> Result<(), RenderError> {
    if ns.is_empty() {
        return Ok(());
    }
    for r in resources.iter_mut() {
        if r.is_empty() {
            continue;
        }
        r.store_previous_id();
        let gvk = r.gvk();
        if !gvk.is_cluster_scoped() {
            r.metadata_mut()
                .insert("namespace".into(), Value::String(ns.to_string()));
        }
        if matches!(gvk.kind.as_str(), "RoleBinding" | "ClusterRoleBinding")
            && let Some(Value::Array(subjects)) = r.value.get_mut("subjects")
        {
            for s in subjects.iter_mut() {
                if let Value::Object(m) = s
                    && m.get("name").and_then(Value::as_str) == Some("default")
                {
                    m.insert("namespace".into(), Value::String(ns.to_string()));
                }
            }
        }
        // kustomize renames only `apiVersion: v1` Namespaces; a `Namespace` kind of another
        // group is an ordinary object.
        let core_namespace = r.api_version() == "v1";
        for spec in fieldspec::namespace_fields()
            .iter()
            .filter(|s| fieldspec::matches_gvk(s, &gvk))
            .filter(|s| core_namespace || s.path != "metadata/name")
        {
            let result = fieldspec::visit(&mut r.value, spec, Create::Scalar, &mut |node| {
                if node.is_object() || node.is_array() {
                    return Err(format!("`{}` is not a scalar", spec.path));
                }
                *node = Value::String(ns.to_string());
                Ok(())
            });
            result.map_err(|e| fail(r, "setting the namespace", e))?;
        }
    }
    check_unique(resources, &k.file, "namespace")
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

/// `namePrefix:` and `nameSuffix:`.
pub fn prefix_suffix(resources: &mut [Resource], prefix: &str, suffix: &str) {
    prefix_suffix_where(resources, prefix, suffix, &|_| true);
}

/// A `PrefixSuffixTransformer` configuration: only objects its field specs select.
pub fn prefix_suffix_for(
    resources: &mut [Resource],
    prefix: &str,
    suffix: &str,
    specs: &[FieldSpec],
) {
    prefix_suffix_where(resources, prefix, suffix, &|gvk| {
        specs.iter().any(|s| fieldspec::matches_gvk(s, gvk))
    });
}

fn prefix_suffix_where(
    resources: &mut [Resource],
    prefix: &str,
    suffix: &str,
    selected: &dyn Fn(&Gvk) -> bool,
) {
    for (affix, is_prefix) in [(prefix, true), (suffix, false)] {
        if affix.is_empty() {
            continue;
        }
        for r in resources.iter_mut() {
            if r.is_empty() || skips_renames(&r.org_id().gvk) || !selected(&r.gvk()) {
                continue;
            }
            if is_prefix {
                r.prefixes.push(affix.to_string());
            } else {
                r.suffixes.push(affix.to_string());
            }
            r.store_previous_id();
            let name = r.name().to_string();
            let name = if is_prefix {
                format!("{affix}{name}")
            } else {
                format!("{name}{affix}")
            };
            r.set_name(name);
        }
    }
}

fn merge_specs(into: &mut Vec<FieldSpec>, more: &[FieldSpec]) -> Result<(), String> {
    for fs in more {
        match into.iter().find(|x| {
            x.path == fs.path && x.group == fs.group && x.version == fs.version && x.kind == fs.kind
        }) {
            Some(x) if x.create != fs.create => {
                return Err(format!("conflicting fieldspecs for path {}", fs.path));
            }
            Some(_) => {}
            None => into.push(fs.clone()),
        }
    }
    Ok(())
}

/// `labels:` entries, then `commonLabels:`.
/// `extra`: common-label field specs from `configurations`.
pub fn labels(
    resources: &mut [Resource],
    k: &Kustomization,
    extra: &[FieldSpec],
) -> Result<(), RenderError> {
    let mut common = fieldspec::common_labels().to_vec();
    merge_specs(&mut common, extra)
        .map_err(|e| RenderError::invalid(Location::file(&k.file), "configurations", e))?;
    let mut plans: Vec<(Vec<FieldSpec>, &BTreeMap<String, String>)> = Vec::new();
    for l in &k.labels {
        plans.push((
            label_specs(l, &common)
                .map_err(|e| RenderError::invalid(Location::at(&k.file, l.line), "labels", e))?,
            &l.pairs,
        ));
    }
    plans.push((common.clone(), &k.common_labels));
    for (specs, pairs) in &plans {
        for r in resources.iter_mut().filter(|r| !r.is_empty()) {
            set_entries(r, specs, pairs, "adding labels")?;
        }
    }
    Ok(())
}

fn label_specs(l: &LabelSpec, common: &[FieldSpec]) -> Result<Vec<FieldSpec>, String> {
    let mut specs = l.fields.clone();
    if l.include_selectors {
        merge_specs(&mut specs, common)?;
    } else {
        merge_specs(
            &mut specs,
            &[FieldSpec {
                path: "metadata/labels".into(),
                create: true,
                ..Default::default()
            }],
        )?;
        if l.include_templates {
            merge_specs(&mut specs, fieldspec::template_labels())?;
        }
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

/// `commonAnnotations:`.
pub fn annotations(
    resources: &mut [Resource],
    k: &Kustomization,
    extra: &[FieldSpec],
) -> Result<(), RenderError> {
    let mut specs = fieldspec::common_annotations().to_vec();
    merge_specs(&mut specs, extra)
        .map_err(|e| RenderError::invalid(Location::file(&k.file), "configurations", e))?;
    for r in resources.iter_mut().filter(|r| !r.is_empty()) {
        set_entries(r, &specs, &k.common_annotations, "adding annotations")?;
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
pub fn replicas(
    resources: &mut [Resource],
    specs: &[ReplicaSpec],
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
        for fs in fieldspec::replicas() {
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
            return Err(RenderError::invalid(
                Location::at(file, rep.line),
                "replicas",
                format!(
                    "no Deployment, ReplicationController, ReplicaSet or StatefulSet is named {:?}; fix the name or remove the entry",
                    rep.name
                ),
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

#[cfg(test)]
mod tests {
    use super::*;

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
