//! A native, kustomize-compatible renderer: turns `environments/<env>` (a kustomization and
//! everything it includes) into the list of Kubernetes objects `kubectl kustomize` would print,
//! without running kustomize.
//!
//! ```no_run
//! use std::path::Path;
//! let objects = baton::render::render(Path::new("/srv/config-repo"), Path::new("environments/prod"))?;
//! for o in &objects {
//!     println!("{}", o.id); // apps/v1/Deployment prod/web
//! }
//! print!("{}", baton::render::to_yaml_stream(&objects));
//! # Ok::<(), baton::render::RenderError>(())
//! ```
//!
//! [`render`] returns [`Object`]s: the object as a [`serde_json::Value`] plus its [`ObjectId`]
//! (group, version, kind, namespace, name), in `kubectl kustomize`'s output order.
//! [`to_yaml_stream`] prints them exactly as `kubectl kustomize` does (sorted keys, go-yaml v2
//! quoting and line folding), so the two outputs can be compared byte for byte.
//!
//! Supported: `resources` (files, directories, multi-document files, `*List` kinds),
//! `components`, `namespace`, `namePrefix`, `nameSuffix`, `labels`, `commonLabels`,
//! `commonAnnotations`, `images`, `replicas`, `patches` (strategic merge and JSON 6902, inline
//! or from a file, with targets), `patchesStrategicMerge`, `patchesJson6902`,
//! `configMapGenerator`, `secretGenerator`, `generatorOptions`, `sortOptions`, `replacements`,
//! `vars`, `configurations` (every field-spec section kustomize has), `buildMetadata` (origin
//! and transformer annotations, managed-by label), `openapi` (a custom schema for strategic
//! merge), `generators` and `transformers` entries configuring kustomize's built-in plugins,
//! `helmCharts` (only with [`Options::helm`]: the one place the renderer runs a program), and
//! the legacy `bases` and `imageTags`. Name references are rewritten after renames, as
//! kustomize does. Plugins that would run code (exec, Go, container, KRM functions) are a
//! [`RenderError::Unsupported`] naming the field and the file, as are the fields not
//! implemented yet (`crds`, remote resources). [`explain`] says which step last changed each
//! field of one object. See `docs/render.md`.
//!
//! Files are read only from inside the repo root; a file must also lie under the
//! kustomization that names it (kustomize's root-only rule), and symlinks are resolved before
//! both checks.
//!
//! The module is organised by concern: [`value`] (YAML in, with kustomize's scalar semantics),
//! `emit` (YAML out), `kustomization` (the file model), `loader` (path safety), `generate`,
//! `transform`, `merge` + `schema` (strategic merge), `jsonpatch`, `select` (patch targets),
//! `helm` (`helmCharts`), `explain`,
//! `replace` (replacements), `vars`, `plugins` (built-in plugin configurations), `nameref`,
//! `order`, and `build` (the pipeline).

mod build;
mod configurations;
mod emit;
mod error;
mod explain;
mod fieldspec;
mod generate;
mod helm;
mod jsonpatch;
pub mod kustomization;
mod loader;
mod merge;
mod nameref;
mod order;
mod plugins;
mod replace;
mod resource;
mod schema;
mod select;
mod transform;
pub mod value;
mod vars;

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

pub use error::{Location, RenderError};

/// What the renderer may run. `baton.yaml`'s `render:` section (`config::runtime::
/// RenderSettings::helm_binary`) or `baton render --enable-helm` fills it in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Inflate `helmCharts` with this helm binary (`kubectl kustomize --enable-helm
    /// --helm-command …`); `None` refuses them, saying how to enable helm.
    pub helm: Option<std::path::PathBuf>,
    /// Record which step set each field, for [`explain`].
    pub explain: bool,
}

pub use explain::Field as ExplainedField;

/// `baton render --explain`: render, then for the object of this `kind` and `name` (and
/// `namespace`, when given) list every field with its value and the file, patch, generator,
/// replacement or transformer that last changed it. Fails if no object, or several, match.
pub fn explain(
    repo_root: &Path,
    dir: &Path,
    options: &Options,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<(ObjectId, Vec<ExplainedField>), RenderError> {
    let options = Options {
        explain: true,
        ..options.clone()
    };
    let (resources, _) = build::run(repo_root, dir, &options)?;
    let hits: Vec<_> = resources
        .iter()
        .filter(|r| {
            r.kind() == kind && r.name() == name && namespace.is_none_or(|ns| r.namespace() == ns)
        })
        .collect();
    let at = Location::file(dir);
    match hits.as_slice() {
        [r] => {
            let id = r.cur_id();
            Ok((
                ObjectId {
                    group: id.gvk.group,
                    version: id.gvk.version,
                    kind: id.gvk.kind,
                    namespace: id.namespace,
                    name: id.name,
                },
                explain::fields(r),
            ))
        }
        [] => Err(RenderError::build(
            at,
            format!("no rendered object is a {kind} named {name:?}; `baton render` lists them"),
        )),
        many => Err(RenderError::build(
            at,
            format!(
                "{} objects are a {kind} named {name:?} (namespaces {}); use --explain {kind}/<namespace>/{name}",
                many.len(),
                many.iter()
                    .map(|r| r.namespace().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// The identity of a rendered object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Empty for cluster-scoped objects and objects without a namespace.
    pub namespace: String,
    pub name: String,
}

impl ObjectId {
    /// Whether the kind is cluster-scoped by the Kubernetes API kustomize knows (custom kinds
    /// are not known here).
    pub fn is_cluster_scoped(&self) -> bool {
        resource::Gvk {
            group: self.group.clone(),
            version: self.version.clone(),
            kind: self.kind.clone(),
        }
        .is_cluster_scoped()
    }

    /// `group/version` (or just `version` for the core group).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} ", self.api_version(), self.kind)?;
        if !self.namespace.is_empty() {
            write!(f, "{}/", self.namespace)?;
        }
        write!(f, "{}", self.name)
    }
}

/// One rendered Kubernetes object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub id: ObjectId,
    /// The object (always a JSON object).
    pub value: Value,
}

/// Render the kustomization in `dir` — relative to `repo_root`, or absolute inside it.
/// Nothing outside `repo_root` is read.
pub fn render(repo_root: &Path, dir: &Path) -> Result<Vec<Object>, RenderError> {
    render_with_warnings(repo_root, dir).map(|(objects, _)| objects)
}

/// [`render`], plus the warnings `kubectl kustomize` prints on stderr for the same tree
/// (deprecated `vars`), for callers that show them.
pub fn render_with_warnings(
    repo_root: &Path,
    dir: &Path,
) -> Result<(Vec<Object>, Vec<String>), RenderError> {
    render_with(repo_root, dir, &Options::default())
}

/// [`render_with_warnings`] with [`Options`]: with a helm binary, `helmCharts` are inflated
/// by running it, as `kubectl kustomize --enable-helm --helm-command …` does.
pub fn render_with(
    repo_root: &Path,
    dir: &Path,
    options: &Options,
) -> Result<(Vec<Object>, Vec<String>), RenderError> {
    let (resources, warnings) = build::run(repo_root, dir, options)?;
    let objects = resources
        .into_iter()
        .map(|r| {
            let id = r.cur_id();
            Object {
                id: ObjectId {
                    group: id.gvk.group,
                    version: id.gvk.version,
                    kind: id.gvk.kind,
                    namespace: id.namespace,
                    name: id.name,
                },
                value: r.value,
            }
        })
        .collect();
    Ok((objects, warnings))
}

/// The objects as a YAML stream, formatted exactly like `kubectl kustomize` output.
pub fn to_yaml_stream(objects: &[Object]) -> String {
    let mut out = String::new();
    for (i, o) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        emit::write_document(&mut out, &o.value);
    }
    out
}

/// One object as a YAML document, formatted like `kubectl kustomize` output.
pub fn to_yaml_document(value: &Value) -> String {
    let mut out = String::new();
    emit::write_document(&mut out, value);
    out
}

/// A value with every mapping's keys sorted (Go's order), for stable JSON output.
pub fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect::<Map<_, _>>(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The objects as a `v1/List`, the shape `kubectl get -o json` prints, keys sorted.
pub fn to_json_list(objects: &[Object]) -> Value {
    let items: Vec<Value> = objects.iter().map(|o| sorted(&o.value)).collect();
    serde_json::json!({"apiVersion": "v1", "items": items, "kind": "List"})
}

/// Parse a YAML stream (such as `kubectl kustomize` output) into values with the same scalar
/// semantics the renderer uses, so two renderings can be compared semantically.
pub fn parse_stream(text: &str) -> Result<Vec<Value>, String> {
    let docs = value::parse_stream(text).map_err(|e| format!("line {}: {}", e.line, e.message))?;
    docs.iter()
        .filter(|d| !d.is_null())
        .map(|d| {
            d.to_plain_value(value::Dialect::Kyaml)
                .map_err(|e| format!("line {}: {}", e.line, e.message))
        })
        .collect()
}
