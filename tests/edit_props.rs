//! Property tests for the lossless YAML editor: over generated kustomizations with comments,
//! quoting styles, key orders and indentation, a bump pins exactly the requested image and
//! touches only image lines.

use baton::gitrepo::edit::{ImagePin, pin_kustomize_image};
use baton::image::Pinned;
use proptest::prelude::*;

const TARGET: &str = "reg.example.com/shop/web";
const OTHERS: [&str; 3] = [
    "reg.example.com/shop/worker",
    "nginx",
    "127.0.0.1:5000/cache",
];

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    tag: Option<String>,
    digest: Option<String>,
    order: Vec<usize>,
    quote: u8,
    comment: bool,
}

fn digest() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}"))
}

fn tag() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1.0.0".to_string()),
        Just("v2".to_string()),
        Just("release-3.1".to_string()),
        Just("1.10".to_string())
    ]
}

fn entry(name: String) -> impl Strategy<Value = Entry> {
    (
        proptest::option::of(tag()),
        proptest::option::of(digest()),
        Just(vec![0usize, 1, 2]).prop_shuffle(),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(move |(tag, digest, order, quote, comment)| Entry {
            name: name.clone(),
            tag,
            digest,
            order,
            quote,
            comment,
        })
}

fn quoted(v: &str, q: u8) -> String {
    match q {
        1 => format!("'{v}'"),
        2 => format!("\"{v}\""),
        _ if v.parse::<f64>().is_ok() => format!("\"{v}\""),
        _ => v.to_string(),
    }
}

fn render(entries: &[Entry], dash_indent: usize, header: bool, trailer: bool) -> String {
    let mut out = String::new();
    if header {
        out.push_str("# overlay for some environment\n\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - ../../apps/web # base\n");
    }
    out.push_str("images:\n");
    let pad = " ".repeat(dash_indent);
    for e in entries {
        if e.comment {
            out.push_str(&format!("{pad}# entry for {}\n", e.name));
        }
        out.push_str(&format!("{pad}- name: {}\n", e.name));
        for i in &e.order {
            let line = match i {
                0 => e
                    .tag
                    .as_ref()
                    .map(|t| format!("newTag: {}", quoted(t, e.quote))),
                1 => e
                    .digest
                    .as_ref()
                    .map(|d| format!("digest: {}", quoted(d, e.quote))),
                _ => None,
            };
            if let Some(l) = line {
                out.push_str(&format!(
                    "{pad}  {l}{}\n",
                    if e.comment { "  # pinned" } else { "" }
                ));
            }
        }
    }
    if trailer {
        out.push_str("\n---\n# a second document stays untouched\n");
    }
    out
}

fn scenario() -> impl Strategy<Value = (Vec<Entry>, usize, bool, bool, Option<String>, String)> {
    let names = proptest::sample::subsequence(OTHERS.to_vec(), 0..=3);
    (names, any::<bool>(), 0usize..=2)
        .prop_flat_map(|(others, with_target, dash)| {
            let mut names: Vec<String> = others.into_iter().map(String::from).collect();
            if with_target {
                names.push(TARGET.to_string());
            }
            let entries: Vec<_> = names.into_iter().map(entry).collect();
            (
                entries,
                Just(dash),
                any::<bool>(),
                Just(false),
                proptest::option::of(tag()),
                digest(),
            )
        })
        .prop_filter("a list needs entries or none", |(e, ..)| !e.is_empty())
}

fn images_of(text: &str) -> Vec<serde_json::Value> {
    let doc: serde_json::Value =
        yaml_serde::from_str(text.split("\n---\n").next().unwrap()).unwrap();
    doc["images"].as_array().cloned().unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn a_bump_pins_the_target_and_touches_only_image_lines((entries, dash, header, trailer, new_tag, new_digest) in scenario()) {
        let text = render(&entries, dash, header, trailer);
        let pinned: Pinned = match &new_tag {
            Some(t) => format!("{t}@{new_digest}"),
            None => new_digest.clone(),
        }.parse().unwrap();
        let out = pin_kustomize_image("k.yaml", &text, &ImagePin { image: TARGET, new_name: None, pinned: &pinned }).unwrap();

        // The target reads back with the new digest and tag.
        let images = images_of(&out);
        let target: Vec<_> = images.iter().filter(|i| i["name"] == TARGET).collect();
        prop_assert_eq!(target.len(), 1, "{}", out);
        prop_assert_eq!(target[0]["digest"].as_str(), Some(new_digest.as_str()));
        prop_assert_eq!(target[0]["newTag"].as_str(), new_tag.as_deref());

        // Every other entry is unchanged.
        let before: Vec<_> = images_of(&text).into_iter().filter(|i| i["name"] != TARGET).collect();
        let after: Vec<_> = images.into_iter().filter(|i| i["name"] != TARGET).collect();
        prop_assert_eq!(before, after);

        // Only image lines changed; every comment and the second document survived.
        let diff = similar::TextDiff::from_lines(&text, &out);
        for change in diff.iter_all_changes() {
            if change.tag() != similar::ChangeTag::Equal {
                let line = change.value().trim();
                prop_assert!(
                    line.starts_with("digest:") || line.starts_with("newTag:") || line == format!("- name: {TARGET}") || line == "images:",
                    "changed a non-image line {:?} in\n{}\n=>\n{}", line, text, out
                );
            }
        }
        for comment in text.lines().filter(|l| l.contains('#')) {
            let kept = out.lines().any(|l| l == comment) || comment.trim_start().starts_with("newTag:") || comment.trim_start().starts_with("digest:");
            prop_assert!(kept, "lost {:?}", comment);
        }

        // A second bump to the same pin is a no-op.
        let again = pin_kustomize_image("k.yaml", &out, &ImagePin { image: TARGET, new_name: None, pinned: &pinned }).unwrap();
        prop_assert_eq!(again, out);
    }
}
