//! Property tests for the renderer on random overlay trees (a base of a few apps, an overlay
//! with prefixes, namespaces, labels, annotations, images, generators and patches, sometimes
//! a second overlay on top):
//! - rendering is deterministic: the same tree renders to the same bytes every time;
//! - rendering is idempotent: rendering the rendered stream again (as a plain resource file)
//!   gives the same stream back, so parsing and printing agree with each other;
//! - JSON patches that add annotations, replacements, built-in plugin configurations (labels,
//!   a NamespaceTransformer with `unsetOnly`), custom `namePrefix` field specs from
//!   `configurations`, vars and `transformerAnnotations` do what they say on every tree,
//!   `--explain` names the overlay that last renamed an object, and kustomize's build
//!   annotations never leak out.

use std::path::Path;

use baton::render;
use proptest::prelude::*;

/// Scalars whose YAML reading differs between parsers; they must survive a round trip.
const TRICKY: &[&str] = &[
    "plain",
    "\"0644\"",
    "0644",
    "\"yes\"",
    "yes",
    "1.10",
    "\"1.10\"",
    "\"a b\"",
    "'- dash'",
    "\"x: y\"",
    "\"\"",
    "\"line1\\nline2\\n\"",
    "\"trailing \"",
    "2001-12-14",
    "\"2001-12-14\"",
    "0x1F",
    "1e3",
    "-0",
    "\"~\"",
    "true",
];

#[derive(Debug, Clone)]
struct App {
    name: String,
    with_service: bool,
    with_config: bool,
    odd_value: &'static str,
    replicas: u8,
}

#[derive(Debug, Clone)]
struct Overlay {
    prefix: Option<&'static str>,
    suffix: Option<&'static str>,
    namespace: Option<&'static str>,
    label: Option<&'static str>,
    annotation: Option<&'static str>,
    image_tag: Option<u8>,
    merge_config: bool,
    patch_replicas: Option<u8>,
    json_patch: bool,
    /// A JSON patch adding an annotation to every Deployment (kustomize's build annotations
    /// make the parent exist under `patches:`).
    annotate: bool,
    /// A replacement copying the first app's image into an annotation of every Deployment.
    replace_image: bool,
    /// A built-in LabelTransformer configuration, inline.
    label_plugin: bool,
    /// A var naming the first app's Deployment, referenced from the base.
    var: bool,
    /// A `configurations` file whose `namePrefix` section puts prefixes into an annotation.
    owner_prefix: bool,
    /// A built-in NamespaceTransformer with `unsetOnly`.
    ns_unset_only: bool,
}

fn app() -> impl Strategy<Value = App> {
    (
        prop::sample::select(vec!["web", "api", "db", "cache", "queue"]),
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(TRICKY.to_vec()),
        1u8..5,
    )
        .prop_map(
            |(name, with_service, with_config, odd_value, replicas)| App {
                name: name.to_string(),
                with_service,
                with_config,
                odd_value,
                replicas,
            },
        )
}

fn overlay() -> impl Strategy<Value = Overlay> {
    (
        prop::option::of(prop::sample::select(vec!["dev-", "prod-", "x-"])),
        prop::option::of(prop::sample::select(vec!["-v1", "-blue"])),
        prop::option::of(prop::sample::select(vec!["shop", "team-a"])),
        prop::option::of(prop::sample::select(TRICKY.to_vec())),
        prop::option::of(prop::sample::select(TRICKY.to_vec())),
        prop::option::of(0u8..40),
        any::<bool>(),
        prop::option::of(1u8..9),
        any::<bool>(),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        (any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                prefix,
                suffix,
                namespace,
                label,
                annotation,
                image_tag,
                merge_config,
                patch_replicas,
                json_patch,
                (annotate, replace_image, label_plugin, var),
                (owner_prefix, ns_unset_only),
            )| Overlay {
                prefix,
                suffix,
                namespace,
                label,
                annotation,
                image_tag,
                merge_config,
                patch_replicas,
                json_patch,
                annotate,
                replace_image,
                label_plugin,
                var,
                owner_prefix,
                ns_unset_only,
            },
        )
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn build_tree(root: &Path, apps: &[App], overlays: &[Overlay]) -> String {
    let mut seen = std::collections::BTreeSet::new();
    let apps: Vec<&App> = apps
        .iter()
        .filter(|a| seen.insert(a.name.clone()))
        .collect();
    let mut base = String::from("resources:\n");
    let mut gens = String::new();
    for a in &apps {
        let n = &a.name;
        base += &format!("- {n}.yaml\n");
        let mut docs = format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {n}\n  annotations:\n    odd: {odd}\nspec:\n  replicas: {r}\n  selector:\n    matchLabels: {{app: {n}}}\n  template:\n    metadata:\n      labels: {{app: {n}}}\n    spec:\n      containers:\n      - name: {n}\n        image: registry.example.com/{n}:1.0\n        env:\n        - name: ODD\n          value: {odd}\n        - name: REF\n          value: $(VAR0)-$(VAR1)-$(VAR2)\n",
            odd = a.odd_value,
            r = a.replicas
        );
        if a.with_config {
            docs += &format!(
                "        envFrom:\n        - configMapRef:\n            name: {n}-config\n"
            );
            gens += &format!("- name: {n}-config\n  literals:\n  - KEY={n}\n");
        }
        if a.with_service {
            docs += &format!(
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {n}\nspec:\n  selector: {{app: {n}}}\n  ports:\n  - port: 80\n"
            );
        }
        write(root, &format!("base/{n}.yaml"), &docs);
    }
    if !gens.is_empty() {
        base += &format!("configMapGenerator:\n{gens}");
    }
    write(root, "base/kustomization.yaml", &base);

    let mut below = "base".to_string();
    for (i, o) in overlays.iter().enumerate() {
        let dir = format!("overlay{i}");
        let mut k = format!("resources:\n- ../{below}\n");
        if let Some(p) = o.prefix {
            k += &format!("namePrefix: {p}{i}\n");
        }
        if let Some(s) = o.suffix {
            k += &format!("nameSuffix: {s}\n");
        }
        if let Some(ns) = o.namespace {
            k += &format!("namespace: {ns}\n");
        }
        if let Some(l) = o.label {
            // Label values must be strings in a kustomization: quote whatever was drawn.
            k += &format!(
                "labels:\n- pairs:\n    drawn{i}: {:?}\n  includeSelectors: {}\n",
                l.trim_matches('"'),
                i % 2 == 0
            );
        }
        if let Some(a) = o.annotation {
            k += &format!(
                "commonAnnotations:\n  drawn{i}: {:?}\n",
                a.trim_matches('"')
            );
        }
        if let Some(t) = o.image_tag {
            k += "images:\n";
            for a in &apps {
                k += &format!(
                    "- name: registry.example.com/{}\n  newTag: \"1.{t}\"\n",
                    a.name
                );
            }
        }
        if o.merge_config
            && let Some(a) = apps.iter().find(|a| a.with_config)
        {
            k += &format!(
                "configMapGenerator:\n- name: {}-config\n  behavior: merge\n  literals:\n  - LEVEL=overlay{i}\n",
                a.name
            );
        }
        let mut patches = String::new();
        if let Some(r) = o.patch_replicas {
            let n = &apps[0].name;
            patches += &format!(
                "- patch: |-\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata:\n      name: {n}\n    spec:\n      replicas: {r}\n"
            );
        }
        if o.json_patch {
            patches += &format!(
                "- target:\n    kind: Deployment\n  patch: |-\n    - op: add\n      path: /metadata/labels\n      value: {{patched: \"{i}\"}}\n"
            );
        }
        if o.annotate {
            patches += &format!(
                "- target:\n    kind: Deployment\n  patch: |-\n    - op: add\n      path: /metadata/annotations/overlay{i}\n      value: added\n"
            );
        }
        if !patches.is_empty() {
            k += &format!("patches:\n{patches}");
        }
        if o.replace_image {
            k += &format!(
                "replacements:\n- source:\n    kind: Deployment\n    name: {n}\n    fieldPath: spec.template.spec.containers.0.image\n  targets:\n  - select:\n      kind: Deployment\n    fieldPaths: [metadata.annotations.image-copy]\n    options: {{create: true}}\n",
                n = apps[0].name
            );
        }
        let mut transformers = String::new();
        if o.label_plugin {
            transformers += &format!(
                "- |-\n  apiVersion: builtin\n  kind: LabelTransformer\n  metadata:\n    name: plugin{i}\n  labels:\n    plugin{i}: \"on\"\n  fieldSpecs:\n  - path: metadata/labels\n    create: true\n"
            );
        }
        if o.ns_unset_only {
            transformers += &format!(
                "- |-\n  apiVersion: builtin\n  kind: NamespaceTransformer\n  metadata:\n    name: ns{i}\n    namespace: kept{i}\n  unsetOnly: true\n"
            );
        }
        if !transformers.is_empty() {
            k += &format!("transformers:\n{transformers}");
        }
        if o.owner_prefix {
            write(
                root,
                &format!("{dir}/prefix-fields.yaml"),
                "namePrefix:\n- path: metadata/annotations/owner\n  kind: Deployment\n  create: true\n",
            );
            k += "configurations: [prefix-fields.yaml]\n";
        }
        if o.var {
            k += &format!(
                "vars:\n- name: VAR{i}\n  objref:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: {}\n",
                apps[0].name
            );
        }
        if i + 1 == overlays.len() {
            k += "buildMetadata: [transformerAnnotations]\n";
        }
        write(root, &format!("{dir}/kustomization.yaml"), &k);
        below = dir;
    }
    below
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn rendering_is_deterministic_and_idempotent(
        apps in prop::collection::vec(app(), 1..4),
        overlays in prop::collection::vec(overlay(), 0..3),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let top = build_tree(tmp.path(), &apps, &overlays);
        let first = render::render(tmp.path(), Path::new(&top)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let text = render::to_yaml_stream(&first);
        let again = render::to_yaml_stream(&render::render(tmp.path(), Path::new(&top)).unwrap());
        prop_assert_eq!(&text, &again, "two renders of the same tree differ");
        prop_assert!(!text.contains("internal.config.kubernetes.io"), "build annotations leaked:\n{}", text);

        let deployments: Vec<&serde_json::Value> = first
            .iter()
            .filter(|o| o.id.kind == "Deployment")
            .map(|o| &o.value)
            .collect();
        for (i, o) in overlays.iter().enumerate() {
            for d in &deployments {
                let ann = &d["metadata"]["annotations"];
                if o.annotate {
                    prop_assert_eq!(&ann[format!("overlay{i}")], "added");
                }
                // A later overlay's JSON patch replaces metadata.labels wholesale.
                if o.label_plugin && !overlays[i + 1..].iter().any(|l| l.json_patch) {
                    prop_assert_eq!(&d["metadata"]["labels"][format!("plugin{i}")], "on");
                }
            }
            if o.var {
                let first_app = first
                    .iter()
                    .find(|x| x.id.kind == "Deployment" && x.value["spec"]["template"]["spec"]["containers"][0]["name"] == apps[0].name.as_str())
                    .unwrap();
                let refs = deployments.iter().map(|d| d["spec"]["template"]["spec"]["containers"][0]["env"][1]["value"].as_str().unwrap_or_default().to_string());
                for r in refs {
                    prop_assert!(r.contains(&first_app.id.name), "VAR{} not replaced by {}: {}", i, first_app.id.name, r);
                }
            }
        }
        // Custom prefix field specs: once configured, every later prefix lands in the field.
        if let Some(first) = overlays.iter().position(|o| o.owner_prefix) {
            for (i, o) in overlays.iter().enumerate().skip(first) {
                if let Some(p) = o.prefix {
                    for d in &deployments {
                        let owner = d["metadata"]["annotations"]["owner"].as_str().unwrap_or_default();
                        prop_assert!(owner.contains(&format!("{p}{i}")), "owner {:?} lacks {}{}", owner, p, i);
                    }
                }
            }
        }
        // unsetOnly: a namespace once set stays; objects never set get the plugin's.
        for (i, o) in overlays.iter().enumerate() {
            if o.ns_unset_only && !overlays[i + 1..].iter().any(|l| l.namespace.is_some()) {
                let set_before = overlays[..=i].iter().any(|l| l.namespace.is_some());
                for d in &deployments {
                    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
                    if set_before {
                        prop_assert!(ns != format!("kept{i}"), "unsetOnly overwrote a namespace");
                    } else {
                        prop_assert!(!ns.is_empty(), "unsetOnly left a Deployment without a namespace");
                    }
                }
            }
        }
        // transformerAnnotations on the top overlay: every object lists the transformers that
        // ran over it, as a YAML list naming where each is configured.
        if !overlays.is_empty() {
            for o in &first {
                let t = o.value["metadata"]["annotations"]["alpha.config.kubernetes.io/transformations"].as_str().unwrap_or_default();
                let list = render::parse_stream(t).unwrap();
                let items = list.first().and_then(|l| l.as_array()).cloned().unwrap_or_default();
                for it in &items {
                    prop_assert!(it["configuredIn"].as_str().is_some_and(|c| c.ends_with("kustomization.yaml")), "{}", t);
                    prop_assert_eq!(&it["configuredBy"]["apiVersion"], "builtin");
                }
            }
        }
        // --explain: the name of a Deployment was last set by the last overlay that renamed.
        let d0 = first.iter().find(|o| o.id.kind == "Deployment").unwrap();
        let (_, fields) = render::explain(tmp.path(), Path::new(&top), &render::Options::default(), "Deployment", Some(&d0.id.namespace), &d0.id.name)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let name_source = &fields.iter().find(|f| f.path == "metadata.name").unwrap().source;
        let want = match overlays.iter().enumerate().rev().find(|(_, o)| o.prefix.is_some() || o.suffix.is_some()) {
            Some((i, o)) => format!("overlay{i}/kustomization.yaml {}", if o.suffix.is_some() { "nameSuffix" } else { "namePrefix" }),
            None => "base/".to_string(),
        };
        prop_assert!(name_source.contains(&want), "metadata.name from {:?}, want {:?}", name_source, want);
        if overlays.iter().any(|o| o.replace_image) {
            let source = deployments
                .iter()
                .find(|d| d["spec"]["template"]["spec"]["containers"][0]["name"] == apps[0].name.as_str())
                .unwrap();
            let image = &source["spec"]["template"]["spec"]["containers"][0]["image"];
            // The last overlay with a replacement wins; images may change after it, so only
            // check that some image of the first app was copied.
            for d in &deployments {
                let copy = d["metadata"]["annotations"]["image-copy"].as_str().unwrap_or_default();
                prop_assert!(copy.starts_with(&format!("registry.example.com/{}:", apps[0].name)), "image-copy {:?} (source image {})", copy, image);
            }
        }

        // Render the output again, as a plain resource file.
        write(tmp.path(), "rerender/all.yaml", &text);
        write(tmp.path(), "rerender/kustomization.yaml", "resources:\n- all.yaml\n");
        let second = render::render(tmp.path(), Path::new("rerender")).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(render::to_yaml_stream(&second), text.clone(), "rendering the output again changed it");
        let values: Vec<_> = second.iter().map(|o| o.value.clone()).collect();
        prop_assert_eq!(values, render::parse_stream(&text).unwrap());
    }
}

/// JSON-like values with strings that stress quoting, folding and block scalars.
fn value() -> impl Strategy<Value = serde_json::Value> {
    let text = prop_oneof![
        prop::sample::select(vec![
            "",
            " ",
            "yes",
            "no",
            "y",
            "n",
            "on",
            "off",
            "true",
            "null",
            "~",
            "0644",
            "0x1F",
            "1e3",
            "1.10",
            "-",
            "- x",
            "x: y",
            "#c",
            "a #b",
            "@at",
            "`b",
            "'q'",
            "\"dq\"",
            "2001-12-14",
            "1:20",
            "<<",
            "é",
            "😀",
            "a\tb",
            "\u{1}",
            "line\n",
            "line\nmore",
            "a \nb\n",
            "\n\nx",
            "  lead\n",
            "x\n\n\n",
            "\r\n",
            "---",
            "...",
            "{a}",
            "[b]",
            "%x",
            "!tag",
            "&anchor",
            "*alias",
            "|",
            ">",
            "?",
            ":",
            ",",
            "\u{a0}",
            "\u{85}",
            "\u{2028}",
            "\u{feff}x",
        ])
        .prop_map(String::from),
        "[ -~]{0,120}",
        "[a-z ]{60,200}",
        "[a-z:#'\" \\-\\n]{0,40}",
        any::<String>(),
    ];
    let leaf = prop_oneof![
        text.clone().prop_map(serde_json::Value::String),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        (-1e25f64..1e25f64).prop_map(baton::render::value::number_from_f64),
        any::<bool>().prop_map(serde_json::Value::Bool),
        Just(serde_json::Value::Null),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            // A key `<<` is printed plain (as kubectl kustomize does) and then reads back as a
            // merge key, in go-yaml as here: leave it out.
            prop::collection::btree_map(
                text.clone().prop_filter("merge key", |k| k != "<<"),
                inner,
                0..5
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn printed_yaml_reads_back_to_the_same_values(
        fields in prop::collection::btree_map("[a-zA-Z0-9 ._/-]{0,12}", value(), 0..6)
    ) {
        let v = serde_json::Value::Object(fields.into_iter().collect());
        let printed = render::to_yaml_document(&v);
        let back = render::parse_stream(&printed).map_err(|e| TestCaseError::fail(format!("{e}\n{printed}")))?;
        prop_assert_eq!(back, vec![v], "{}", printed);
    }
}
