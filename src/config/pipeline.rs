//! The pipeline config that lives in the config repo: `policies/pipeline.yaml`. It names the
//! apps (which image, which tags are blessed, how they are verified), the environments in
//! promotion order, and each environment's gates.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::diag::{self, Diagnostic};
use super::duration::HumanDuration;
use super::window::{Freeze, Window};
use crate::yaml;

/// Where the pipeline lives, relative to the config repo root.
pub const PIPELINE_FILE: &str = "policies/pipeline.yaml";
pub const API_VERSION: &str = "baton.dev/v1";
pub const KIND: &str = "Pipeline";

/// `policies/pipeline.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pipeline {
    /// Always `baton.dev/v1`.
    pub api_version: String,
    /// Always `Pipeline`.
    pub kind: String,
    /// Apps by name, in file order.
    pub apps: IndexMap<String, App>,
    /// Environments in file order; promotion order comes from `after`.
    pub environments: Vec<Environment>,
    /// Release trains, by name: apps whose new digests travel together in one PR per
    /// environment (`groups: { shop: { apps: [web, worker] } }`). Apps in no group get one PR
    /// per app and environment, as always.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub groups: IndexMap<String, Group>,
}

/// A release train: its apps are promoted together, one PR per environment, and their gates
/// (soak, verification, approvals, windows, holds) and rollbacks cover them all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Group {
    /// The member apps (names under `apps:`), at least two, each in no other group.
    pub apps: Vec<String>,
}

/// What is promoted as one PR per environment: a single app, or a group of apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit<'a> {
    /// The app's or the group's name (the last part of the branch `baton/<env>/<name>`).
    pub name: &'a str,
    /// The apps it promotes: the app alone, or the group's members in the group's order.
    pub apps: &'a [String],
    /// Whether this is a group.
    pub group: bool,
}

/// One deployable app: an image repository and the rule that blesses its tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct App {
    /// Image repository without tag or digest, e.g. `registry.example.com/shop/web`. This is
    /// also the `name` of the app's entry in each environment's kustomization `images:`.
    pub image: String,
    /// Which tags are blessed for promotion.
    pub bless: Bless,
    /// Signature verification required before a digest counts as blessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<SignatureCheck>,
    /// Source repository URL, for links in PR bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Where the digest is pinned in each environment (default: the kustomization `images:`).
    #[serde(default, skip_serializing_if = "Pin::is_kustomize")]
    pub pin: Pin,
}

/// The blessing rule: exactly one of `semver`, `regex` or `tag`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Bless {
    /// A semver range, e.g. `>=1.0.0`. Pre-releases match only when the range names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// A regular expression the whole tag must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// A marker tag (e.g. `blessed`): whatever digest it points to is blessed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// How the newest blessed tag is chosen (default `semver`).
    #[serde(default)]
    pub newest: Newest,
}

/// How candidates are ordered to find the newest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Newest {
    /// Highest semantic version (tags that are not versions never win over ones that are).
    #[default]
    Semver,
    /// Latest image creation time (`org.opencontainers.image.created` or config `created`).
    Created,
}

/// The blessing rule, resolved to exactly one kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlessRule<'a> {
    Semver(&'a str),
    Regex(&'a str),
    Tag(&'a str),
}

impl Bless {
    /// The one rule this blessing names; `None` when zero or several are set (a validation
    /// error).
    pub fn rule(&self) -> Option<BlessRule<'_>> {
        match (&self.semver, &self.regex, &self.tag) {
            (Some(s), None, None) => Some(BlessRule::Semver(s)),
            (None, Some(r), None) => Some(BlessRule::Regex(r)),
            (None, None, Some(t)) => Some(BlessRule::Tag(t)),
            _ => None,
        }
    }
}

/// Signature (and attestation) verification: exactly one of `cosignKey` (keyed) or `keyless`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignatureCheck {
    /// PEM public key, relative to the config repo root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosign_key: Option<String>,
    /// Keyless (Fulcio certificate) signatures from an expected identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyless: Option<KeylessCheck>,
    /// In-toto attestations that must be attached and signed the same way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<AttestationCheck>,
}

impl SignatureCheck {
    /// The files of the config repo the check reads (the key, or the trusted root).
    pub fn files(&self) -> Vec<&str> {
        self.cosign_key
            .iter()
            .map(String::as_str)
            .chain(self.keyless.iter().map(|k| k.trusted_root.as_str()))
            .collect()
    }
}

/// `verify.keyless`: the certificate must chain to a Fulcio CA of `trustedRoot` (a sigstore
/// trusted-root JSON file in the config repo) and name the OIDC `issuer` and the `subject`
/// (exactly) or a subject matching `subjectRegex` (the whole SAN: an email, or a workflow URI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KeylessCheck {
    pub trusted_root: String,
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_regex: Option<String>,
}

/// `verify.attestations[]`: an in-toto attestation of this predicate type must be attached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AttestationCheck {
    pub predicate_type: String,
}

/// Where an app's digest is written in an environment, relative to the environment path.
/// No `file`: the kustomization's `images:` entry. `file` and `key`: a Helm-style values
/// file, the scalar at the dotted `key`. `file` alone: a plain manifest, every container
/// `image:` of this app.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Pin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// For values files: write the bare digest (`digest`, default) or `image@digest`
    /// (`reference`).
    #[serde(default)]
    pub format: PinFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PinFormat {
    #[default]
    Digest,
    Reference,
}

impl Pin {
    pub fn is_kustomize(&self) -> bool {
        self.file.is_none()
    }
}

/// One environment and its gates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Environment {
    pub name: String,
    /// Kustomize overlay directory (default `environments/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Cluster name in the runtime config (default: the environment name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The environment whose healthy digests this one receives; none for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Merge as soon as the other gates pass, without approvals.
    #[serde(default)]
    pub auto_merge: bool,
    /// How long the previous environment must have run a digest healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soak: Option<HumanDuration>,
    /// Check or status contexts that must be green on the PR head (`validate` means
    /// `baton/validate`; other names are taken as written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_checks: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<Approvals>,
    /// `required`: a `/promote <env>` comment by an authorized user is needed to merge.
    #[serde(default)]
    pub command: CommandGate,
    /// Merges happen only inside one of these windows (none: any time).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freezes: Vec<Freeze>,
    /// Copy each promoted image by digest to this registry repository prefix first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_to: Option<String>,
    /// What happens when a rollout fails.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// How promotion PRs are merged.
    #[serde(default)]
    pub merge_method: MergeMethod,
    /// Acceptance tests: Kubernetes Jobs run in this environment's cluster after each
    /// promoted digest's rollout is healthy. The next environment's soak counts only from
    /// when they passed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify: Vec<VerifyStep>,
    /// Guards on what a reconcile may delete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneSettings>,
    /// Where the environment may apply: its namespaces and kinds. Anything else it renders
    /// fails `baton validate` and `baton/validate`, and is never sent to the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Allow>,
    /// `serviceAccount: <namespace>/<name>`: the environment's apply, prune, dry run and health
    /// reads run as this ServiceAccount through Kubernetes impersonation (as Flux's
    /// `serviceAccountName`), so it can do no more than that account's RBAC allows; baton's
    /// own identity needs only `impersonate` on it. None: baton's own identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// A ServiceAccount an environment acts as (`serviceAccount: team-a/deployer`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl ServiceAccountRef {
    /// `namespace/name`, each a valid Kubernetes name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((namespace, name)) = text.split_once('/') else {
            return Err(format!(
                "{text:?} is not <namespace>/<name> (e.g. team-a/deployer)"
            ));
        };
        if !super::validate::is_dns_label(namespace) {
            return Err(format!(
                "{namespace:?} in {text:?} is not a namespace name (a DNS label: lower-case letters, digits and '-', at most 63)"
            ));
        }
        let subdomain = name.len() <= 253 && name.split('.').all(super::validate::is_dns_label);
        if !subdomain {
            return Err(format!(
                "{name:?} in {text:?} is not a ServiceAccount name (lower-case letters, digits, '-' and '.')"
            ));
        }
        Ok(Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// The user name the API server gives the account: `system:serviceaccount:<ns>:<name>`.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl std::fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `allow: { namespaces: [shop], kinds: [apps/Deployment, Service, ConfigMap] }`, as an Argo CD
/// AppProject limits an Application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Allow {
    /// The namespaces its namespaced objects may be in.
    pub namespaces: Vec<String>,
    /// The kinds it may render: `Kind` (core group), `group/Kind`, or `group/*`. Empty: every
    /// namespaced kind. A cluster-scoped kind (`rbac.authorization.k8s.io/ClusterRole`,
    /// `Namespace`) must be named exactly; no wildcard covers one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
}

impl Allow {
    /// Why an object of `group`/`kind` (in `namespace`, `None` when cluster-scoped) is not
    /// allowed, if it is not.
    pub fn refusal(&self, group: &str, kind: &str, namespace: Option<&str>) -> Option<String> {
        let name = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{group}/{kind}")
        };
        let exact = self.kinds.contains(&name);
        let matched = exact
            || self.kinds.is_empty()
            || self
                .kinds
                .iter()
                .any(|k| k.strip_suffix("/*").is_some_and(|g| g == group));
        match namespace {
            None if !exact => Some(format!(
                "cluster-scoped kind {name} is not named in allow.kinds"
            )),
            Some(_) if !matched => Some(format!("kind {name} is not in allow.kinds")),
            Some(ns) if !self.namespaces.iter().any(|n| n == ns) => Some(format!(
                "namespace {ns} is not in allow.namespaces ({})",
                self.namespaces.join(", ")
            )),
            _ => None,
        }
    }
}

/// `prune: { maxFraction: 0.3 }`: a render that would delete more than this share of the
/// objects baton manages in the environment waits for an approver's `/prune <env>` instead of
/// deleting (a moved overlay or a broken `resources:` list would otherwise delete everything).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PruneSettings {
    /// Between 0 and 1 (default [`PruneSettings::DEFAULT_MAX_FRACTION`]); 1 turns the guard off.
    #[serde(default = "PruneSettings::default_max_fraction")]
    pub max_fraction: f64,
}

impl PruneSettings {
    pub const DEFAULT_MAX_FRACTION: f64 = 0.3;

    fn default_max_fraction() -> f64 {
        Self::DEFAULT_MAX_FRACTION
    }
}

impl Environment {
    /// The ServiceAccount the environment acts as; `None` when it names none or names one
    /// that does not parse (`baton validate` reports that).
    pub fn service_account(&self) -> Option<ServiceAccountRef> {
        self.service_account
            .as_deref()
            .and_then(|s| ServiceAccountRef::parse(s).ok())
    }

    /// The share of the environment's objects one reconcile may delete without `/prune`.
    pub fn prune_max_fraction(&self) -> f64 {
        self.prune
            .map(|p| p.max_fraction)
            .unwrap_or(PruneSettings::DEFAULT_MAX_FRACTION)
    }
}

/// One acceptance test of an environment: `{ job: environments/staging/verify/smoke.yaml,
/// timeout: 10m }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VerifyStep {
    /// A `batch/v1` Job manifest, relative to the config repo root. Keep it out of the
    /// environment's kustomization, or it would also be applied as part of the environment.
    pub job: String,
    /// How long one run may take, from the Job's creation (default [`VerifyStep::DEFAULT_TIMEOUT`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

impl VerifyStep {
    pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
            .map(|t| t.as_duration())
            .unwrap_or(Self::DEFAULT_TIMEOUT)
    }
}

/// Required approvals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Approvals {
    pub count: u32,
    /// Users (`alice`) or teams (`@org/team`) whose approvals count; empty: anyone with
    /// write access.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CommandGate {
    #[default]
    Optional,
    Required,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnFailure {
    /// Report the failure and hold further promotions of the app to the environment.
    #[default]
    Hold,
    /// Open a PR restoring the previous healthy digest, and hold.
    Rollback,
    /// Report only.
    Ignore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MergeMethod {
    #[default]
    Merge,
    Squash,
}

impl Environment {
    /// The overlay directory relative to the repo root.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(
            self.path
                .clone()
                .unwrap_or_else(|| format!("environments/{}", self.name)),
        )
    }

    pub fn cluster(&self) -> &str {
        self.cluster.as_deref().unwrap_or(&self.name)
    }

    /// The status/check context this environment reports under.
    pub fn status_context(&self) -> String {
        format!("baton/{}", self.name)
    }

    /// The status/check context of this environment's acceptance tests.
    pub fn verify_status_context(&self) -> String {
        format!("baton/{}/verify", self.name)
    }
}

/// A pipeline file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file does not parse or does not match the schema.
    #[error("{0}")]
    Invalid(Diagnostic),
}

/// A loaded pipeline with the source it came from, so that later checks can point at lines.
#[derive(Debug, Clone)]
pub struct LoadedPipeline {
    pub pipeline: Pipeline,
    /// Path relative to the repo root.
    pub file: String,
    pub tree: yaml::Node,
}

impl Pipeline {
    /// Read and parse `policies/pipeline.yaml` under `repo`. Only syntax and schema are
    /// checked here; `config::validate` checks meaning and the repo.
    pub fn load(repo: &Path) -> Result<LoadedPipeline, LoadError> {
        let path = repo.join(PIPELINE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Read {
            path: PIPELINE_FILE.to_string(),
            source,
        })?;
        Self::parse(PIPELINE_FILE, &text)
    }

    /// Parse pipeline text; `file` is only used in diagnostics.
    pub fn parse(file: &str, text: &str) -> Result<LoadedPipeline, LoadError> {
        let tree = yaml::parse(text).map_err(|e| {
            LoadError::Invalid(Diagnostic::new(
                file,
                Some(e.pos),
                "",
                format!("invalid YAML: {}", e.message),
            ))
        })?;
        let pipeline: Pipeline = yaml_serde::from_str(text)
            .map_err(|e| LoadError::Invalid(diag::refine(diag::from_serde(file, &e), &tree)))?;
        Ok(LoadedPipeline {
            pipeline,
            file: file.to_string(),
            tree,
        })
    }

    pub fn app(&self, name: &str) -> Option<&App> {
        self.apps.get(name)
    }

    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// The environments that come right after `name` (`after: name`).
    pub fn next_environments(&self, name: &str) -> impl Iterator<Item = &Environment> {
        self.environments
            .iter()
            .filter(move |e| e.after.as_deref() == Some(name))
    }

    /// Environments in promotion order: each after the one it follows, ties in file order.
    /// Environments on a cycle or after an unknown name are left out (validation reports them).
    pub fn promotion_order(&self) -> Vec<&Environment> {
        let mut placed: BTreeSet<&str> = BTreeSet::new();
        let mut out = Vec::new();
        loop {
            let before = out.len();
            for env in &self.environments {
                if placed.contains(env.name.as_str()) {
                    continue;
                }
                let ready = match &env.after {
                    None => true,
                    Some(prev) => placed.contains(prev.as_str()),
                };
                if ready {
                    placed.insert(&env.name);
                    out.push(env);
                }
            }
            if out.len() == before {
                return out;
            }
        }
    }

    /// The group `app` belongs to, if any (the first that names it; validation refuses an app
    /// in two groups).
    pub fn group_of(&self, app: &str) -> Option<&str> {
        self.groups
            .iter()
            .find(|(_, g)| g.apps.iter().any(|a| a == app))
            .map(|(name, _)| name.as_str())
    }

    /// What gets one PR per environment, in the order of `apps:`: each app in no group alone,
    /// and each group (with its known members) where its first member is declared.
    pub fn units(&self) -> Vec<Unit<'_>> {
        let mut out: Vec<Unit<'_>> = Vec::new();
        for (name, _) in self.apps.iter() {
            match self.group_of(name) {
                None => out.push(Unit {
                    name,
                    apps: std::slice::from_ref(name),
                    group: false,
                }),
                Some(group) if !out.iter().any(|u| u.group && u.name == group) => {
                    let (name, g) = self.groups.get_key_value(group).expect("found above");
                    out.push(Unit {
                        name,
                        apps: &g.apps,
                        group: true,
                    });
                }
                Some(_) => {}
            }
        }
        out
    }

    /// What is wrong with `groups:`, as (field, message): a member that is not an app, an app
    /// in two groups or twice in one, a group of fewer than two apps, a group name that is not
    /// a DNS label or is also an app's name (both name the branch `baton/<env>/<name>`).
    pub fn group_problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut member_of: IndexMap<&str, &str> = IndexMap::new();
        for (name, group) in &self.groups {
            let base = format!("groups.{name}");
            if !super::validate::is_dns_label(name) {
                out.push((base.clone(), format!("group name {name:?} must be lowercase letters, digits and '-' (it is used in branch names)")));
            }
            if self.apps.contains_key(name) {
                out.push((base.clone(), format!("group {name:?} has the name of an app; both would use the branch baton/<env>/{name}, so rename the group")));
            }
            if group.apps.len() < 2 {
                out.push((format!("{base}.apps"), format!("group {name:?} needs at least two apps (an app alone is promoted on its own without a group)")));
            }
            for (i, app) in group.apps.iter().enumerate() {
                let field = format!("{base}.apps[{i}]");
                if !self.apps.contains_key(app) {
                    let hint = diag::suggest(app, self.apps.keys().map(String::as_str))
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    out.push((
                        field,
                        format!(
                            "{app:?} is not an app of this pipeline (apps: {}){hint}",
                            self.app_names().join(", ")
                        ),
                    ));
                    continue;
                }
                match member_of.get(app.as_str()) {
                    Some(other) if *other == name.as_str() => out.push((field, format!("{app:?} is listed twice in group {name:?}"))),
                    Some(other) => out.push((field, format!("app {app:?} is already in group {other:?}; an app travels in one release train at most"))),
                    None => {
                        member_of.insert(app, name);
                    }
                }
            }
        }
        out
    }

    /// Names that `--app` and `--env` accept, for error messages.
    pub fn app_names(&self) -> Vec<&str> {
        self.apps.keys().map(String::as_str).collect()
    }

    pub fn environment_names(&self) -> Vec<&str> {
        self.environments.iter().map(|e| e.name.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"
apiVersion: baton.dev/v1
kind: Pipeline
apps:
  web:
    image: registry.example.com/shop/web
    bless: { semver: ">=1.0.0" }
environments:
  - name: prod
    after: staging
    soak: 1h
  - name: dev
    autoMerge: true
  - name: staging
    after: dev
    soak: 10m
"#;

    #[test]
    fn parses_the_documented_shape_with_defaults() {
        let p = Pipeline::parse("p.yaml", SMALL).unwrap().pipeline;
        let dev = p.environment("dev").unwrap();
        assert!(dev.auto_merge);
        assert_eq!(dev.path(), PathBuf::from("environments/dev"));
        assert_eq!(dev.cluster(), "dev");
        assert_eq!(dev.on_failure, OnFailure::Hold);
        assert_eq!(
            p.environment("staging").unwrap().soak.unwrap().0.as_secs(),
            600
        );
        assert_eq!(
            p.app("web").unwrap().bless.rule(),
            Some(BlessRule::Semver(">=1.0.0"))
        );
    }

    #[test]
    fn promotion_order_follows_after_not_file_order() {
        let p = Pipeline::parse("p.yaml", SMALL).unwrap().pipeline;
        let names: Vec<_> = p
            .promotion_order()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["dev", "staging", "prod"]);
        let next: Vec<_> = p
            .next_environments("dev")
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(next, ["staging"]);
    }

    #[test]
    fn an_unknown_key_is_located_and_a_fix_suggested() {
        let text = SMALL.replace("    soak: 10m", "    soka: 10m");
        let Err(LoadError::Invalid(d)) = Pipeline::parse("policies/pipeline.yaml", &text) else {
            panic!("expected a schema error")
        };
        assert_eq!(d.line, Some(16), "{d}");
        assert!(d.message.contains("did you mean `soak`?"), "{d}");
        assert!(d.field.starts_with("environments[2]"), "{d}");
    }

    #[test]
    fn verify_steps_parse_next_to_an_apps_signature_check() {
        let text = SMALL.replace(
            "    soak: 10m\n",
            "    soak: 10m\n    verify:\n      - { job: environments/staging/verify/smoke.yaml, timeout: 2m }\n      - job: environments/staging/verify/e2e.yaml\n",
        ) + "";
        let text = text.replace(
            "    bless: { semver: \">=1.0.0\" }\n",
            "    bless: { semver: \">=1.0.0\" }\n    verify: { cosignKey: keys/ci.pub }\n",
        );
        let p = Pipeline::parse("p.yaml", &text).unwrap().pipeline;
        let staging = p.environment("staging").unwrap();
        assert_eq!(staging.verify.len(), 2);
        assert_eq!(
            staging.verify[0].job,
            "environments/staging/verify/smoke.yaml"
        );
        assert_eq!(staging.verify[0].timeout().as_secs(), 120);
        assert_eq!(staging.verify[1].timeout(), VerifyStep::DEFAULT_TIMEOUT);
        assert_eq!(staging.verify_status_context(), "baton/staging/verify");
        assert!(p.environment("dev").unwrap().verify.is_empty());
        assert_eq!(
            p.app("web")
                .unwrap()
                .verify
                .as_ref()
                .unwrap()
                .cosign_key
                .as_deref()
                .unwrap(),
            "keys/ci.pub"
        );
    }

    #[test]
    fn an_unknown_key_in_a_verify_step_is_located_and_a_fix_suggested() {
        let text = SMALL.replace(
            "    soak: 10m\n",
            "    soak: 10m\n    verify:\n      - { job: smoke.yaml, timout: 2m }\n",
        );
        let Err(LoadError::Invalid(d)) = Pipeline::parse("policies/pipeline.yaml", &text) else {
            panic!("expected a schema error")
        };
        assert!(d.message.contains("did you mean `timeout`?"), "{d}");
        assert_eq!(d.line, Some(18), "{d}");
        assert!(d.field.starts_with("environments[2].verify[0]"), "{d}");
    }

    #[test]
    fn a_bad_duration_is_located_at_its_value() {
        let text = SMALL.replace("soak: 1h", "soak: 1 hour");
        let Err(LoadError::Invalid(d)) = Pipeline::parse("policies/pipeline.yaml", &text) else {
            panic!("expected a schema error")
        };
        assert_eq!((d.line, d.column), (Some(11), Some(11)), "{d}");
        assert_eq!(d.field, "environments[0].soak", "{d}");
        assert!(d.message.contains("invalid duration"), "{d}");
    }

    #[test]
    fn invalid_yaml_is_reported_with_its_position() {
        let Err(LoadError::Invalid(d)) = Pipeline::parse("p.yaml", "apps: [\n") else {
            panic!("expected a syntax error")
        };
        assert!(d.message.starts_with("invalid YAML"), "{d}");
        assert!(d.line.is_some(), "{d}");
    }

    const GROUPED: &str = r#"
apiVersion: baton.dev/v1
kind: Pipeline
apps:
  web: { image: reg/web, bless: { semver: ">=1.0.0" } }
  api: { image: reg/api, bless: { semver: ">=1.0.0" } }
  worker: { image: reg/worker, bless: { semver: ">=1.0.0" } }
groups:
  shop:
    apps: [web, worker]
environments:
  - { name: dev }
"#;

    fn problems(text: &str) -> Vec<(String, String)> {
        Pipeline::parse("p.yaml", text)
            .unwrap()
            .pipeline
            .group_problems()
    }

    #[test]
    fn a_group_makes_one_unit_where_its_first_member_is_declared() {
        let p = Pipeline::parse("p.yaml", GROUPED).unwrap().pipeline;
        assert!(p.group_problems().is_empty(), "{:?}", p.group_problems());
        let units: Vec<_> = p
            .units()
            .iter()
            .map(|u| (u.name, u.apps.to_vec(), u.group))
            .collect();
        assert_eq!(
            units,
            [
                ("shop", vec!["web".to_string(), "worker".to_string()], true),
                ("api", vec!["api".to_string()], false),
            ]
        );
        assert_eq!(p.group_of("worker"), Some("shop"));
        assert_eq!(p.group_of("api"), None);
    }

    #[test]
    fn without_groups_every_app_is_its_own_unit() {
        let p = Pipeline::parse("p.yaml", SMALL).unwrap().pipeline;
        assert!(p.groups.is_empty());
        let units: Vec<_> = p.units().iter().map(|u| (u.name, u.group)).collect();
        assert_eq!(units, [("web", false)]);
    }

    #[test]
    fn an_unknown_group_member_is_named_with_a_suggestion() {
        let found = problems(&GROUPED.replace("[web, worker]", "[web, wroker]"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "groups.shop.apps[1]");
        assert!(found[0].1.contains("\"wroker\" is not an app"), "{found:?}");
        assert!(found[0].1.contains("did you mean `worker`?"), "{found:?}");
    }

    #[test]
    fn an_app_in_two_groups_is_refused_at_its_second_listing() {
        let text = GROUPED.replace(
            "    apps: [web, worker]\n",
            "    apps: [web, worker]\n  backend:\n    apps: [api, worker]\n",
        );
        let found = problems(&text);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "groups.backend.apps[1]");
        assert!(
            found[0].1.contains("already in group \"shop\""),
            "{found:?}"
        );
    }

    #[test]
    fn small_duplicated_or_misnamed_groups_are_refused() {
        let found = problems(&GROUPED.replace("[web, worker]", "[web]"));
        assert_eq!(found[0].0, "groups.shop.apps", "{found:?}");
        assert!(found[0].1.contains("at least two apps"), "{found:?}");

        let found = problems(&GROUPED.replace("[web, worker]", "[web, web]"));
        assert_eq!(found[0].0, "groups.shop.apps[1]", "{found:?}");
        assert!(found[0].1.contains("listed twice"), "{found:?}");

        let found = problems(&GROUPED.replace("  shop:\n", "  api:\n"));
        assert_eq!(found[0].0, "groups.api", "{found:?}");
        assert!(found[0].1.contains("name of an app"), "{found:?}");

        let found = problems(&GROUPED.replace("  shop:\n", "  Shop_Train:\n"));
        assert!(found[0].1.contains("lowercase letters"), "{found:?}");
    }

    #[test]
    fn an_unknown_key_in_a_group_is_located() {
        let text = GROUPED.replace("    apps: [web, worker]", "    app: [web, worker]");
        let Err(LoadError::Invalid(d)) = Pipeline::parse("policies/pipeline.yaml", &text) else {
            panic!("expected a schema error")
        };
        assert!(d.field.starts_with("groups.shop"), "{d}");
        assert!(d.message.contains("apps"), "{d}");
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### `policies/pipeline.yaml`")
            .nth(1)
            .expect("README documents the pipeline");
        let yaml = section
            .split("```yaml\n")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .expect("a yaml block");
        let p = Pipeline::parse("README.md", yaml).unwrap().pipeline;
        let names: Vec<_> = p
            .promotion_order()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(names, ["dev", "staging", "prod"]);
    }
}
