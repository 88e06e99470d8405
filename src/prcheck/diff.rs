//! What a change to the config repo does to one environment's rendered objects: which objects
//! are added, changed or removed, which images move, and the unified diff of the manifests.
//! Pure: the caller renders both sides.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::render::{self, Object, ObjectId};

/// An image reference that changes in an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageChange {
    /// The repository, without tag or digest (`registry.example.com/shop/web`).
    pub name: String,
    /// The references before (`:1.4.0@sha256:…`, the part after the name), sorted; empty
    /// when the image is new.
    pub from: Vec<String>,
    /// The references after; empty when the image is gone.
    pub to: Vec<String>,
}

/// The effect of a change on one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvDiff {
    pub added: Vec<ObjectId>,
    pub changed: Vec<ObjectId>,
    pub removed: Vec<ObjectId>,
    pub images: Vec<ImageChange>,
}

impl EnvDiff {
    /// Nothing rendered differs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// An object's identity for comparison: the API version may change without the object
/// changing identity (`extensions/v1beta1` → `apps/v1`).
fn key(id: &ObjectId) -> (String, String, String, String) {
    (
        id.group.clone(),
        id.kind.clone(),
        id.namespace.clone(),
        id.name.clone(),
    )
}

/// Compare the objects an environment renders before and after a change.
pub fn diff(before: &[Object], after: &[Object]) -> EnvDiff {
    let old: BTreeMap<_, &Object> = before.iter().map(|o| (key(&o.id), o)).collect();
    let new: BTreeMap<_, &Object> = after.iter().map(|o| (key(&o.id), o)).collect();
    let mut out = EnvDiff::default();
    for (k, o) in &new {
        match old.get(k) {
            None => out.added.push(o.id.clone()),
            Some(b) if b.value != o.value => out.changed.push(o.id.clone()),
            Some(_) => {}
        }
    }
    for (k, o) in &old {
        if !new.contains_key(k) {
            out.removed.push(o.id.clone());
        }
    }
    out.images = image_changes(before, after);
    out
}

/// Every image reference of the objects, by repository name.
fn images(objects: &[Object]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for o in objects {
        collect_images(&o.value, false, &mut out);
    }
    out
}

/// Collect `image:` values of containers (any list named `*ontainers`, so pod templates,
/// CronJob job templates and custom resources that follow the convention are all seen).
fn collect_images(v: &Value, in_containers: bool, out: &mut BTreeMap<String, BTreeSet<String>>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if in_containers && k == "image" {
                    if let Value::String(reference) = child {
                        let (name, rest) = split_reference(reference);
                        out.entry(name.to_string())
                            .or_default()
                            .insert(rest.to_string());
                    }
                    continue;
                }
                let containers = k.ends_with("ontainers") && child.is_array();
                collect_images(child, containers, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_images(item, in_containers, out);
            }
        }
        _ => {}
    }
}

/// `registry:5000/shop/web:1.4@sha256:…` → (`registry:5000/shop/web`, `:1.4@sha256:…`).
fn split_reference(reference: &str) -> (&str, &str) {
    let end = reference.find('@').unwrap_or(reference.len());
    let without_digest = &reference[..end];
    let last_slash = without_digest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let name_end = without_digest[last_slash..]
        .find(':')
        .map(|i| last_slash + i)
        .unwrap_or(end);
    reference.split_at(name_end)
}

fn image_changes(before: &[Object], after: &[Object]) -> Vec<ImageChange> {
    let (old, new) = (images(before), images(after));
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let from = old.get(name).cloned().unwrap_or_default();
            let to = new.get(name).cloned().unwrap_or_default();
            (from != to).then(|| ImageChange {
                name: name.clone(),
                from: from.into_iter().collect(),
                to: to.into_iter().collect(),
            })
        })
        .collect()
}

/// The unified diff of the rendered manifests, object by object (`a/<object>` → `b/<object>`),
/// cut at about `limit` bytes on a line boundary with a note naming `baton render <env>`.
/// Empty when nothing differs.
pub fn unified(env: &str, before: &[Object], after: &[Object], limit: usize) -> String {
    let old: BTreeMap<_, &Object> = before.iter().map(|o| (key(&o.id), o)).collect();
    let new: BTreeMap<_, &Object> = after.iter().map(|o| (key(&o.id), o)).collect();
    let keys: BTreeSet<_> = old.keys().chain(new.keys()).collect();
    let mut out = String::new();
    for k in keys {
        let (b, a) = (old.get(k), new.get(k));
        if let (Some(b), Some(a)) = (b, a)
            && b.value == a.value
        {
            continue;
        }
        let text = |o: Option<&&Object>| {
            o.map(|o| render::to_yaml_document(&redacted(o)))
                .unwrap_or_default()
        };
        let (bt, at) = (text(b), text(a));
        let label = |o: Option<&&Object>, side: &str| match o {
            Some(o) => format!("{side}/{}", o.id),
            None => "/dev/null".to_string(),
        };
        let piece = similar::TextDiff::from_lines(&bt, &at)
            .unified_diff()
            .context_radius(3)
            .header(&label(b, "a"), &label(a, "b"))
            .to_string();
        out.push_str(&piece);
    }
    cut(out, limit, env)
}

/// The object as shown in a diff: a Secret's values are replaced by a hash prefix, so that a
/// change is visible without its content (PR bodies are read by everyone with read access).
fn redacted(o: &Object) -> Value {
    let mut v = o.value.clone();
    if o.id.kind == "Secret" && o.id.group.is_empty() {
        for field in ["data", "stringData"] {
            if let Some(Value::Object(m)) = v.get_mut(field) {
                for value in m.values_mut() {
                    let digest = crate::image::Digest::of(value.to_string().as_bytes());
                    *value = Value::String(format!("(redacted, {})", digest.short()));
                }
            }
        }
    }
    v
}

/// A Markdown code fence longer than any run of backticks in `text`.
pub fn fence(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

/// Cut `text` at the last line boundary under `limit` bytes, with a pointer to the full output.
pub fn cut(mut text: String, limit: usize, env: &str) -> String {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let end = text[..end].rfind('\n').map(|i| i + 1).unwrap_or(0);
    text.truncate(end);
    text.push_str(&format!(
        "… (truncated; run `baton render {env}` for the full output)\n"
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(kind: &str, name: &str, value: Value) -> Object {
        let mut v = json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name, "namespace": "shop"}});
        if let (Value::Object(m), Value::Object(extra)) = (&mut v, value) {
            m.extend(extra);
        }
        Object {
            id: ObjectId {
                group: if kind == "Deployment" { "apps" } else { "" }.into(),
                version: "v1".into(),
                kind: kind.into(),
                namespace: "shop".into(),
                name: name.into(),
            },
            value: v,
        }
    }

    fn deploy(name: &str, replicas: u64, image: &str) -> Object {
        obj(
            "Deployment",
            name,
            json!({"spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": name, "image": image}]}}}}),
        )
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn objects_are_sorted_into_added_changed_and_removed() {
        let before = vec![
            deploy("web", 1, "reg/web:1@x"),
            obj("ConfigMap", "old", json!({})),
            obj("Service", "web", json!({})),
        ];
        let after = vec![
            deploy("web", 3, "reg/web:1@x"),
            obj("ConfigMap", "new", json!({})),
            obj("Service", "web", json!({})),
        ];
        let d = diff(&before, &after);
        let names = |ids: &[ObjectId]| ids.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&d.added), ["new"]);
        assert_eq!(names(&d.changed), ["web"]);
        assert_eq!(d.changed[0].kind, "Deployment");
        assert_eq!(names(&d.removed), ["old"]);
        assert!(d.images.is_empty(), "{:?}", d.images);
        assert!(!d.is_empty());
        assert!(diff(&before, &before).is_empty());
    }

    #[test]
    fn a_new_digest_is_an_image_change_from_the_old_reference_to_the_new() {
        let before = vec![deploy("web", 1, &format!("reg:5000/shop/web:1.4@{D1}"))];
        let after = vec![deploy("web", 1, &format!("reg:5000/shop/web:1.5@{D2}"))];
        let d = diff(&before, &after);
        assert_eq!(
            d.images,
            vec![ImageChange {
                name: "reg:5000/shop/web".into(),
                from: vec![format!(":1.4@{D1}")],
                to: vec![format!(":1.5@{D2}")],
            }]
        );
    }

    #[test]
    fn references_split_at_tag_and_digest_but_not_at_a_registry_port() {
        assert_eq!(split_reference("reg:5000/a/b"), ("reg:5000/a/b", ""));
        assert_eq!(split_reference("reg:5000/a/b:1"), ("reg:5000/a/b", ":1"));
        assert_eq!(split_reference("b@sha256:ab"), ("b", "@sha256:ab"));
        assert_eq!(split_reference("a/b:1@sha256:ab"), ("a/b", ":1@sha256:ab"));
    }

    #[test]
    fn the_unified_diff_shows_the_changed_line_under_the_object_name() {
        let before = vec![deploy("web", 1, "reg/web:1")];
        let after = vec![deploy("web", 3, "reg/web:1")];
        let text = unified("staging", &before, &after, 10_000);
        assert!(text.contains("--- a/apps/v1/Deployment shop/web"), "{text}");
        assert!(text.contains("-  replicas: 1\n+  replicas: 3\n"), "{text}");
        assert_eq!(unified("staging", &before, &before, 10_000), "");
    }

    #[test]
    fn secret_values_never_appear_in_the_diff_but_their_change_does() {
        let secret = |v: &str| Object {
            id: ObjectId {
                group: String::new(),
                version: "v1".into(),
                kind: "Secret".into(),
                namespace: "shop".into(),
                name: "db".into(),
            },
            value: json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"}, "data": {"password": v}}),
        };
        let text = unified(
            "dev",
            &[secret("aHVudGVyMg==")],
            &[secret("c3dvcmRmaXNo")],
            10_000,
        );
        assert!(
            !text.contains("aHVudGVyMg==") && !text.contains("c3dvcmRmaXNo"),
            "{text}"
        );
        assert!(text.contains("-  password: (redacted, sha256:"), "{text}");
    }

    #[test]
    fn fences_are_longer_than_any_backtick_run_inside() {
        assert_eq!(fence("plain"), "```");
        assert_eq!(fence("a ```` b"), "`````");
    }

    #[test]
    fn long_diffs_are_cut_on_a_line_with_a_pointer_to_baton_render() {
        let before: Vec<_> = (0..200)
            .map(|i| obj("ConfigMap", &format!("c{i}"), json!({})))
            .collect();
        let text = unified("prod", &before, &[], 2_000);
        assert!(text.len() < 2_100, "{}", text.len());
        assert!(
            text.ends_with("(truncated; run `baton render prod` for the full output)\n"),
            "{text}"
        );
        let body = text.rsplit_once("… (truncated").unwrap().0;
        assert!(body.ends_with('\n'));
    }
}
