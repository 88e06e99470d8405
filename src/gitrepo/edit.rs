//! Lossless edits of YAML files in the config repo: a digest bump changes the one scalar (or
//! line) it must and nothing else. Comments, quoting, key order, indentation, blank lines and
//! `---` markers survive because the file is never re-serialised: edits are splices at the
//! byte spans `crate::yaml` reports.
//!
//! All functions are pure: text in, text out.

use crate::image::Pinned;
use crate::yaml::{self, Node, NodeKind, Pos, Style};

/// Why an edit could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// The file is not valid YAML.
    #[error("{file}:{pos}: invalid YAML: {message}")]
    Syntax {
        file: String,
        pos: Pos,
        message: String,
    },
    /// The file has a shape the editor will not rewrite (and says what to change).
    #[error("{file}:{pos}: {message}")]
    Unsupported {
        file: String,
        pos: Pos,
        message: String,
    },
    /// What should be edited is not in the file.
    #[error("{file}: {message}")]
    NotFound { file: String, message: String },
}

/// What to pin: the app's image name in the bases, an optional new name (a copy in another
/// registry), and the digest with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePin<'a> {
    /// The `name` of the kustomization `images:` entry (the image as the bases write it).
    pub image: &'a str,
    /// `newName`, when the environment pulls from a copy.
    pub new_name: Option<&'a str>,
    pub pinned: &'a Pinned,
}

struct Splice {
    start: usize,
    end: usize,
    text: String,
}

fn apply(text: &str, mut splices: Vec<Splice>) -> String {
    splices.sort_by_key(|s| std::cmp::Reverse(s.start));
    let mut out = text.to_string();
    for s in splices {
        out.replace_range(s.start..s.end, &s.text);
    }
    out
}

fn parse(file: &str, text: &str) -> Result<Node, EditError> {
    yaml::parse(text).map_err(|e| EditError::Syntax {
        file: file.into(),
        pos: e.pos,
        message: e.message,
    })
}

/// A scalar as YAML would need it written to read back as the string `value`: plain when
/// that is unambiguous, else double-quoted.
pub fn scalar_text(value: &str) -> String {
    if plain_is_string(value) {
        value.to_string()
    } else {
        format!("{value:?}")
    }
}

/// Write `value` in the style the old scalar used, unless that style cannot hold it.
fn restyle(old: Style, value: &str) -> String {
    match old {
        Style::SingleQuoted if !value.contains('\n') => format!("'{}'", value.replace('\'', "''")),
        Style::DoubleQuoted => format!("{value:?}"),
        _ => scalar_text(value),
    }
}

/// Whether a plain scalar with this text reads back as that same string under the YAML
/// 1.1 and 1.2 core resolvers Kubernetes tools use.
fn plain_is_string(v: &str) -> bool {
    if v.is_empty() || v.trim() != v {
        return false;
    }
    let lower = v.to_ascii_lowercase();
    let special = [
        "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n", ".nan", ".inf", "-.inf",
        "+.inf",
    ];
    if special.contains(&lower.as_str()) {
        return false;
    }
    let numeric = v.trim_start_matches(['+', '-']);
    let looks_number = !numeric.is_empty()
        && numeric
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && numeric.chars().all(|c| {
            c.is_ascii_hexdigit()
                || matches!(c, '.' | '_' | ':' | 'x' | 'o' | 'e' | 'E' | '+' | '-')
        });
    if looks_number {
        return false;
    }
    let first = v.chars().next().unwrap_or(' ');
    if "-?:,[]{}#&*!|>'\"%@`".contains(first) {
        return false;
    }
    !v.contains(": ") && !v.contains(" #") && !v.ends_with(':') && !v.contains('\n')
}

fn span_of(node: &Node) -> Option<(usize, usize, Style)> {
    match node.kind {
        NodeKind::Scalar {
            span: Some((s, e)),
            style,
            ..
        } => Some((s, e, style)),
        _ => None,
    }
}

/// The byte offset of the start of the line containing `offset`.
fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |i| i + 1)
}

/// The byte offset just past the newline ending the line containing `offset`.
fn line_end(text: &str, offset: usize) -> usize {
    text[offset..]
        .find('\n')
        .map_or(text.len(), |i| offset + i + 1)
}

/// The furthest byte any scalar inside `node` reaches.
fn node_end(node: &Node) -> usize {
    match &node.kind {
        NodeKind::Scalar {
            span: Some((_, e)), ..
        } => *e,
        NodeKind::Scalar { .. } | NodeKind::Alias => node.pos.offset + 1,
        NodeKind::Mapping { entries, .. } => entries
            .iter()
            .map(|(k, v)| node_end(k).max(node_end(v)))
            .max()
            .unwrap_or(node.pos.offset),
        NodeKind::Sequence { items, .. } => {
            items.iter().map(node_end).max().unwrap_or(node.pos.offset)
        }
    }
}

/// Pin an app's image in a kustomization: set `digest` (and `newTag` to the tag, removing a
/// stale `newTag` when no tag is known; and `newName` when given) on the `images:` entry
/// whose `name` is the app's image, adding the entry — or `images:` itself — when missing.
pub fn pin_kustomize_image(
    file: &str,
    text: &str,
    pin: &ImagePin<'_>,
) -> Result<String, EditError> {
    let root = parse(file, text)?;
    if !matches!(root.kind, NodeKind::Mapping { flow: false, .. }) {
        return Err(EditError::Unsupported {
            file: file.into(),
            pos: root.pos,
            message: "a kustomization must be a block mapping".into(),
        });
    }
    let Some((images_key, images)) = root.entry("images") else {
        return Ok(append_images_block(text, pin));
    };
    let entry = images
        .items()
        .iter()
        .find(|e| e.get("name").and_then(Node::as_str) == Some(pin.image));
    match (&images.kind, entry) {
        (_, Some(entry)) => edit_entry(file, text, entry, pin),
        (NodeKind::Sequence { flow: false, items }, None) => Ok(append_entry(text, items, pin)),
        (NodeKind::Sequence { flow: true, items }, None) if items.is_empty() => {
            // `images: []`: replace the empty flow sequence by a block one.
            let key_col = images_key.pos.column - 1;
            let start = images.pos.offset;
            let end = text[start..]
                .find(']')
                .map(|i| start + i + 1)
                .unwrap_or(start);
            let block = entry_lines(key_col + 2, pin);
            Ok(apply(
                text,
                vec![Splice {
                    start,
                    end,
                    text: format!("\n{}", block.trim_end_matches('\n')),
                }],
            ))
        }
        _ => Err(EditError::Unsupported {
            file: file.into(),
            pos: images.pos,
            message: "images: is not a block sequence; write it as a list of `- name: …` entries"
                .into(),
        }),
    }
}

fn desired_fields<'a>(pin: &'a ImagePin<'a>) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("newName", pin.new_name.map(str::to_string)),
        ("newTag", pin.pinned.tag.clone()),
        ("digest", Some(pin.pinned.digest.to_string())),
    ]
}

fn edit_entry(
    file: &str,
    text: &str,
    entry: &Node,
    pin: &ImagePin<'_>,
) -> Result<String, EditError> {
    let NodeKind::Mapping { entries, flow } = &entry.kind else {
        return Err(EditError::Unsupported {
            file: file.into(),
            pos: entry.pos,
            message: "an images: entry must be a mapping".into(),
        });
    };
    if *flow {
        return edit_flow_entry(file, text, entry, pin);
    }
    let indent = entries.first().map(|(k, _)| k.pos.column - 1).unwrap_or(0);
    let mut splices = Vec::new();
    let mut missing = Vec::new();
    for (key, want) in desired_fields(pin) {
        let current = entries.iter().find(|(k, _)| k.as_str() == Some(key));
        match (current, want) {
            (Some((_, v)), Some(want)) => {
                if v.as_str() == Some(want.as_str()) {
                    continue;
                }
                let Some((s, e, style)) = span_of(v) else {
                    return Err(EditError::Unsupported {
                        file: file.into(),
                        pos: v.pos,
                        message: format!("{key} must be a one-line scalar for baton to edit it"),
                    });
                };
                splices.push(Splice {
                    start: s,
                    end: e,
                    text: restyle(style, &want),
                });
            }
            (Some((k, v)), None) if key == "newTag" => {
                // A digest without a tag: a stale tag would mislead readers, so the line goes.
                let start = line_start(text, k.pos.offset);
                let only_key_on_line = text[start..k.pos.offset].trim().is_empty();
                if !only_key_on_line {
                    return Err(EditError::Unsupported {
                        file: file.into(),
                        pos: k.pos,
                        message: "newTag shares its line with another key; put it on its own line"
                            .into(),
                    });
                }
                splices.push(Splice {
                    start,
                    end: line_end(text, node_end(v).max(k.pos.offset)),
                    text: String::new(),
                });
            }
            (Some(_), None) => {} // newName is left as written when no copy is asked for
            (None, Some(want)) => missing.push((key, want)),
            (None, None) => {}
        }
    }
    if !missing.is_empty() {
        // New keys go on their own lines after the entry's last line, at the entry's indent.
        let at = line_end(text, node_end(entry).saturating_sub(1));
        let mut lines = String::new();
        if at == text.len() && !text.ends_with('\n') {
            lines.push('\n');
        }
        for (key, value) in missing {
            lines.push_str(&format!(
                "{}{key}: {}\n",
                " ".repeat(indent),
                scalar_text(&value)
            ));
        }
        splices.push(Splice {
            start: at,
            end: at,
            text: lines,
        });
    }
    Ok(apply(text, splices))
}

fn edit_flow_entry(
    file: &str,
    text: &str,
    entry: &Node,
    pin: &ImagePin<'_>,
) -> Result<String, EditError> {
    let start = entry.pos.offset;
    let end = text[start..]
        .find('}')
        .map(|i| start + i + 1)
        .ok_or_else(|| EditError::Unsupported {
            file: file.into(),
            pos: entry.pos,
            message: "unterminated flow mapping".into(),
        })?;
    let mut fields: Vec<(String, String)> = Vec::new();
    for (k, v) in entry.entries() {
        let key = k.as_str().unwrap_or_default().to_string();
        let Some((s, e, _)) = span_of(v) else {
            return Err(EditError::Unsupported {
                file: file.into(),
                pos: v.pos,
                message: format!("{key} must be a scalar"),
            });
        };
        fields.push((key, text[s..e].to_string()));
    }
    for (key, want) in desired_fields(pin) {
        let pos = fields.iter().position(|(k, _)| k == key);
        match (pos, want) {
            (Some(i), Some(w)) if entry.get(key).and_then(Node::as_str) != Some(w.as_str()) => {
                fields[i].1 = scalar_text(&w);
            }
            (Some(i), None) if key == "newTag" => {
                fields.remove(i);
            }
            (None, Some(w)) => fields.push((key.to_string(), scalar_text(&w))),
            _ => {}
        }
    }
    let inner = &text[start + 1..end - 1];
    let pad = if inner.starts_with(' ') { " " } else { "" };
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let new = format!("{{{pad}{body}{pad}}}");
    if new == text[start..end] {
        return Ok(text.to_string());
    }
    Ok(apply(
        text,
        vec![Splice {
            start,
            end,
            text: new,
        }],
    ))
}

fn entry_lines(dash_col: usize, pin: &ImagePin<'_>) -> String {
    let pad = " ".repeat(dash_col);
    let mut out = format!("{pad}- name: {}\n", scalar_text(pin.image));
    for (key, value) in desired_fields(pin) {
        if let Some(v) = value {
            out.push_str(&format!("{pad}  {key}: {}\n", scalar_text(&v)));
        }
    }
    out
}

fn append_entry(text: &str, items: &[Node], pin: &ImagePin<'_>) -> String {
    let last = items
        .last()
        .expect("a block sequence has at least one item");
    // The item's own position is its first key; the dash sits two columns before it.
    let item_col = last.pos.column - 1;
    let dash_col = {
        let ls = line_start(text, last.pos.offset);
        text[ls..last.pos.offset]
            .find('-')
            .unwrap_or(item_col.saturating_sub(2))
    };
    let at = line_end(text, node_end(last).saturating_sub(1));
    let mut insert = String::new();
    if at == text.len() && !text.ends_with('\n') {
        insert.push('\n');
    }
    insert.push_str(&entry_lines(dash_col, pin));
    apply(
        text,
        vec![Splice {
            start: at,
            end: at,
            text: insert,
        }],
    )
}

fn append_images_block(text: &str, pin: &ImagePin<'_>) -> String {
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("images:\n");
    out.push_str(&entry_lines(2, pin));
    out
}

/// Set the scalar at the dotted `key` of a Helm-style values file to `value`, keeping its
/// quoting. The key must exist (baton does not invent structure in values files).
pub fn set_value(file: &str, text: &str, key: &str, value: &str) -> Result<String, EditError> {
    let root = parse(file, text)?;
    let (node, found) = root.lookup(key);
    if !found {
        return Err(EditError::NotFound {
            file: file.into(),
            message: format!(
                "key {key:?} not found; create it once by hand, baton keeps it up to date"
            ),
        });
    }
    if node.as_str() == Some(value) {
        return Ok(text.to_string());
    }
    let Some((s, e, style)) = span_of(node) else {
        return Err(EditError::Unsupported {
            file: file.into(),
            pos: node.pos,
            message: format!("{key} must be a one-line scalar"),
        });
    };
    Ok(apply(
        text,
        vec![Splice {
            start: s,
            end: e,
            text: restyle(style, value),
        }],
    ))
}

/// Rewrite every container `image:` of `pin.image` or `pin.new_name` (any tag or digest) in
/// a plain manifest stream to `name[:tag]@digest`, where name is `new_name` when given. At
/// least one must exist.
pub fn pin_manifest_images(
    file: &str,
    text: &str,
    pin: &ImagePin<'_>,
) -> Result<String, EditError> {
    let (pinned, name) = (pin.pinned, pin.new_name.unwrap_or(pin.image));
    let names: Vec<&str> = [Some(pin.image), pin.new_name]
        .into_iter()
        .flatten()
        .collect();
    let docs = yaml::parse_documents(text).map_err(|e| EditError::Syntax {
        file: file.into(),
        pos: e.pos,
        message: e.message,
    })?;
    let want = match &pinned.tag {
        Some(t) => format!("{name}:{t}@{}", pinned.digest),
        None => format!("{name}@{}", pinned.digest),
    };
    let mut splices = Vec::new();
    let mut found = 0;
    for doc in &docs {
        collect_images(doc, &names, &mut |node| {
            found += 1;
            if node.as_str() != Some(want.as_str())
                && let Some((s, e, style)) = span_of(node)
            {
                splices.push(Splice {
                    start: s,
                    end: e,
                    text: restyle(style, &want),
                });
            }
        });
    }
    if found == 0 {
        return Err(EditError::NotFound {
            file: file.into(),
            message: format!("no container image: {} found", names.join(" or ")),
        });
    }
    Ok(apply(text, splices))
}

fn collect_images(node: &Node, names: &[&str], f: &mut dyn FnMut(&Node)) {
    match &node.kind {
        NodeKind::Mapping { entries, .. } => {
            for (k, v) in entries {
                if k.as_str() == Some("image")
                    && v.as_str()
                        .is_some_and(|s| names.contains(&repository_of(s)))
                {
                    f(v);
                } else {
                    collect_images(v, names, f);
                }
            }
        }
        NodeKind::Sequence { items, .. } => items.iter().for_each(|i| collect_images(i, names, f)),
        _ => {}
    }
}

/// `reg:5000/a/b:tag@sha256:…` → `reg:5000/a/b`.
pub fn repository_of(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn pinned(s: &str) -> Pinned {
        s.parse().unwrap()
    }

    fn pin<'a>(p: &'a Pinned) -> ImagePin<'a> {
        ImagePin {
            image: "reg/web",
            new_name: None,
            pinned: p,
        }
    }

    #[test]
    fn a_bump_changes_only_the_digest_and_tag_scalars() {
        let text = format!(
            "# overlay\nresources:\n  - ../base   # the base\n\nimages:\n  # web\n  - name: reg/web\n    newTag: \"1.0.0\"   # shown, not trusted\n    digest: {D1}\n  - name: reg/worker\n    digest: {D1}\n"
        );
        let p = pinned(&format!("1.1.0@{D2}"));
        let out = pin_kustomize_image("k.yaml", &text, &pin(&p)).unwrap();
        let expected = text
            .replacen("\"1.0.0\"", "\"1.1.0\"", 1)
            .replacen(D1, D2, 1);
        assert_eq!(out, expected);
    }

    #[test]
    fn a_bump_to_the_same_pin_changes_nothing() {
        let text = format!("images:\n- name: reg/web\n  newTag: 1.1.0\n  digest: {D2}\n");
        let p = pinned(&format!("1.1.0@{D2}"));
        assert_eq!(
            pin_kustomize_image("k.yaml", &text, &pin(&p)).unwrap(),
            text
        );
    }

    #[test]
    fn a_digest_only_bump_removes_a_stale_tag_line() {
        let text = format!(
            "images:\n  - name: reg/web\n    newTag: 1.0.0 # old\n    digest: {D1}\nnamespace: x\n"
        );
        let p = pinned(D2);
        let out = pin_kustomize_image("k.yaml", &text, &pin(&p)).unwrap();
        assert_eq!(
            out,
            format!("images:\n  - name: reg/web\n    digest: {D2}\nnamespace: x\n")
        );
    }

    #[test]
    fn a_missing_digest_key_is_added_at_the_entry_indent() {
        let text = "images:\n  - name: reg/web\n    newTag: \"1.0.0\"\n# trailing comment\n";
        let p = pinned(&format!("1.0.0@{D1}"));
        let out = pin_kustomize_image("k.yaml", text, &pin(&p)).unwrap();
        assert_eq!(
            out,
            format!(
                "images:\n  - name: reg/web\n    newTag: \"1.0.0\"\n    digest: {D1}\n# trailing comment\n"
            )
        );
    }

    #[test]
    fn a_missing_entry_is_appended_in_the_list_style_in_use() {
        let text = format!("images:\n- name: reg/other\n  digest: {D1}\nreplicas: []\n");
        let p = pinned(&format!("2.0@{D2}"));
        let out = pin_kustomize_image("k.yaml", &text, &pin(&p)).unwrap();
        assert_eq!(
            out,
            format!(
                "images:\n- name: reg/other\n  digest: {D1}\n- name: reg/web\n  newTag: \"2.0\"\n  digest: {D2}\nreplicas: []\n"
            )
        );
    }

    #[test]
    fn a_missing_images_list_is_added_at_the_end() {
        let text = "resources:\n- a.yaml";
        let p = pinned(D1);
        let out = pin_kustomize_image("k.yaml", text, &pin(&p)).unwrap();
        assert_eq!(
            out,
            format!("resources:\n- a.yaml\nimages:\n  - name: reg/web\n    digest: {D1}\n")
        );
    }

    #[test]
    fn flow_entries_are_rewritten_in_flow_style() {
        let text = format!("images:\n  - {{ name: reg/web, newTag: '1', digest: {D1} }} # keep\n");
        let p = pinned(&format!("2@{D2}"));
        let out = pin_kustomize_image("k.yaml", &text, &pin(&p)).unwrap();
        assert_eq!(
            out,
            format!("images:\n  - {{ name: reg/web, newTag: \"2\", digest: {D2} }} # keep\n")
        );
    }

    #[test]
    fn new_name_is_set_for_copies() {
        let text = format!("images:\n  - name: reg/web\n    newName: old/web\n    digest: {D1}\n");
        let p = pinned(D2);
        let out = pin_kustomize_image(
            "k.yaml",
            &text,
            &ImagePin {
                image: "reg/web",
                new_name: Some("prod/web"),
                pinned: &p,
            },
        )
        .unwrap();
        assert_eq!(
            out,
            format!("images:\n  - name: reg/web\n    newName: prod/web\n    digest: {D2}\n")
        );
    }

    #[test]
    fn values_files_keep_quoting() {
        let text = format!("web:\n  image:\n    digest: '{D1}' # pinned\n");
        let out = set_value("v.yaml", &text, "web.image.digest", D2).unwrap();
        assert_eq!(
            out,
            format!("web:\n  image:\n    digest: '{D2}' # pinned\n")
        );
        assert!(matches!(
            set_value("v.yaml", &text, "web.tag", D2),
            Err(EditError::NotFound { .. })
        ));
    }

    #[test]
    fn manifests_get_every_container_of_the_image_pinned() {
        let text = "---\nkind: Deployment\nspec:\n  template:\n    spec:\n      containers:\n        - name: a\n          image: reg/web:1.0\n        - name: b\n          image: \"reg/sidecar:2\"\n---\nkind: Job\nspec:\n  template:\n    spec:\n      initContainers:\n      - image: reg/web\n";
        let p = pinned(&format!("1.1@{D2}"));
        let out = pin_manifest_images("m.yaml", text, &pin(&p)).unwrap();
        let want = format!("reg/web:1.1@{D2}");
        assert_eq!(
            out,
            text.replacen("reg/web:1.0", &want, 1).replacen(
                "image: reg/web\n",
                &format!("image: {want}\n"),
                1
            )
        );
        let none = ImagePin {
            image: "reg/none",
            new_name: None,
            pinned: &p,
        };
        assert!(pin_manifest_images("m.yaml", text, &none).is_err());
    }

    #[test]
    fn plain_scalars_are_quoted_only_when_they_would_not_read_back_as_strings() {
        for s in [
            "1.0", "1", "1.0.0", "yes", "null", "0644", "1e3", "", "-x", "a: b",
        ] {
            assert!(scalar_text(s).starts_with('"'), "{s}");
        }
        for s in ["v1.2", "release-2.0.5", D1, "reg/web"] {
            assert_eq!(scalar_text(s), s);
        }
    }

    #[test]
    fn repository_of_strips_tag_and_digest_but_not_the_port() {
        assert_eq!(repository_of("reg:5000/a/b:1.0@sha256:x"), "reg:5000/a/b");
        assert_eq!(repository_of("reg:5000/a/b"), "reg:5000/a/b");
        assert_eq!(repository_of("nginx:1"), "nginx");
    }
}
