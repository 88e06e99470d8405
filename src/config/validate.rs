//! `baton validate`: the pipeline checked for meaning and against the repo it lives in.
//! Every problem is a [`Diagnostic`] at `file:line:column`; nothing here writes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::diag::{Diagnostic, suggest};
use super::files::{FsFiles, resolve_in_repo};
use super::pipeline::{Approvals, BlessRule, LoadError, LoadedPipeline, PIPELINE_FILE, Pipeline};
use super::policy::{compile, read_policies};
use super::verify_job::VerifyJob;
use crate::image::{Digest, is_valid_repository};
use crate::yaml::{self, Node, Pos};

/// Kustomization file names, in the order kustomize looks for them.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Load and check the pipeline of the repo at `repo`. An empty result means valid.
pub fn validate_repo(repo: &Path) -> Vec<Diagnostic> {
    match Pipeline::load(repo) {
        Ok(loaded) => validate(repo, &loaded),
        Err(LoadError::Invalid(d)) => vec![d],
        Err(e @ LoadError::Read { .. }) => vec![Diagnostic::new(
            PIPELINE_FILE,
            None,
            "",
            format!("{e}; is --repo pointing at a config repo checkout?"),
        )],
    }
}

/// Check a loaded pipeline against the repo.
pub fn validate(repo: &Path, loaded: &LoadedPipeline) -> Vec<Diagnostic> {
    let mut v = Validator {
        repo,
        loaded,
        out: Vec::new(),
    };
    v.header();
    v.apps();
    v.groups();
    v.environments();
    v.policies();
    v.out
}

struct Validator<'a> {
    repo: &'a Path,
    loaded: &'a LoadedPipeline,
    out: Vec<Diagnostic>,
}

impl Validator<'_> {
    fn p(&self) -> &Pipeline {
        &self.loaded.pipeline
    }

    fn at(&self, field: &str) -> Option<Pos> {
        let (node, _) = self.loaded.tree.lookup(field);
        Some(node.pos)
    }

    fn error(&mut self, field: &str, message: impl Into<String>) {
        let pos = self.at(field);
        self.out
            .push(Diagnostic::new(&self.loaded.file, pos, field, message));
    }

    fn header(&mut self) {
        if self.p().api_version != super::pipeline::API_VERSION {
            let got = self.p().api_version.clone();
            self.error(
                "apiVersion",
                format!(
                    "is {got:?}; the only supported version is {:?}",
                    super::pipeline::API_VERSION
                ),
            );
        }
        if self.p().kind != super::pipeline::KIND {
            let got = self.p().kind.clone();
            self.error(
                "kind",
                format!(
                    "is {got:?}; this file must be kind {:?}",
                    super::pipeline::KIND
                ),
            );
        }
    }

    fn apps(&mut self) {
        if self.p().apps.is_empty() {
            self.error("apps", "no apps are defined; add at least one under apps:");
        }
        let apps: Vec<_> = self
            .p()
            .apps
            .iter()
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect();
        let mut images = BTreeMap::new();
        for (name, app) in &apps {
            let base = format!("apps.{name}");
            if !is_dns_label(name) {
                self.error(&base, format!("app name {name:?} must be lowercase letters, digits and '-' (it is used in branch names and labels)"));
            }
            if !is_valid_repository(&app.image) {
                self.error(&format!("{base}.image"), format!("{:?} is not an image repository; write it without tag or digest, e.g. registry.example.com/shop/web", app.image));
            }
            if let Some(other) = images.insert(app.image.clone(), name.clone()) {
                self.error(
                    &format!("{base}.image"),
                    format!(
                        "image {:?} is already used by app {other:?}; each app needs its own image",
                        app.image
                    ),
                );
            }
            match app.bless.rule() {
                None => self.error(&format!("{base}.bless"), "set exactly one of semver (a version range), regex (a tag pattern) or tag (a marker tag such as blessed)"),
                Some(BlessRule::Semver(range)) => {
                    if let Err(e) = semver::VersionReq::parse(range) {
                        self.error(&format!("{base}.bless.semver"), format!("{range:?} is not a semver range ({e}); write e.g. \">=1.0.0\" or \"^2.3\""));
                    }
                }
                Some(BlessRule::Regex(re)) => {
                    if let Err(e) = regex::Regex::new(re) {
                        self.error(&format!("{base}.bless.regex"), format!("invalid regular expression: {e}"));
                    }
                }
                Some(BlessRule::Tag(tag)) => {
                    if !crate::image::is_valid_tag(tag) {
                        self.error(&format!("{base}.bless.tag"), format!("{tag:?} is not a valid tag"));
                    }
                }
            }
            if let Some(check) = &app.verify {
                self.signature_check(&base, check);
            }
            if app.pin.key.is_some() && app.pin.file.is_none() {
                self.error(
                    &format!("{base}.pin.key"),
                    "pin.key needs pin.file (the values file the key is in)",
                );
            }
        }
    }

    /// `verify:`: one of `cosignKey` (a PEM public key) or `keyless` (a trusted root, an issuer,
    /// a subject or subject regex), each file readable in the config repo.
    fn groups(&mut self) {
        for (field, message) in self.p().group_problems() {
            self.error(&field, message);
        }
    }

    fn signature_check(&mut self, base: &str, check: &super::pipeline::SignatureCheck) {
        let field = format!("{base}.verify");
        match (&check.cosign_key, &check.keyless) {
            (Some(_), Some(_)) => {
                self.error(&field, "set one of cosignKey or keyless, not both");
            }
            (None, None) => self.error(&field, "set cosignKey or keyless"),
            (Some(key), None) => {
                let field = format!("{base}.verify.cosignKey");
                match self.read_in_repo(key) {
                    Err(why) => self.error(&field, why),
                    Ok(text) if text.contains("-----BEGIN PUBLIC KEY-----") => {}
                    Ok(_) => self.error(
                        &field,
                        format!("{key} is not a PEM public key (-----BEGIN PUBLIC KEY-----)"),
                    ),
                }
            }
            (None, Some(k)) => {
                let root = format!("{base}.verify.keyless.trustedRoot");
                match self.read_in_repo(&k.trusted_root) {
                    Err(why) => self.error(&root, why),
                    Ok(text) => {
                        // The full parse is the registry's; here, that it is the right file.
                        let media_type = serde_json::from_str::<serde_json::Value>(&text)
                            .ok()
                            .and_then(|v| v["mediaType"].as_str().map(str::to_string))
                            .unwrap_or_default();
                        if !media_type.starts_with("application/vnd.dev.sigstore.trustedroot") {
                            self.error(
                                &root,
                                format!(
                                    "{} is not a sigstore trusted root (mediaType \
                                     application/vnd.dev.sigstore.trustedroot+json)",
                                    k.trusted_root
                                ),
                            );
                        }
                    }
                }
                let field = format!("{base}.verify.keyless");
                match (&k.subject, &k.subject_regex) {
                    (Some(_), Some(_)) => {
                        self.error(&field, "set one of subject or subjectRegex, not both")
                    }
                    (None, None) => self.error(
                        &field,
                        "set subject (exact) or subjectRegex: the identity the certificate must name",
                    ),
                    (None, Some(r)) => {
                        if let Err(e) = regex::Regex::new(r) {
                            self.error(&format!("{field}.subjectRegex"), e.to_string());
                        }
                    }
                    (Some(_), None) => {}
                }
            }
        }
    }

    fn read_in_repo(&self, rel: &str) -> Result<String, String> {
        let path = resolve_in_repo(self.repo, rel)?;
        std::fs::read_to_string(&path).map_err(|e| format!("cannot read {rel}: {e}"))
    }

    fn environments(&mut self) {
        let envs = self.p().environments.clone();
        if envs.is_empty() {
            self.error(
                "environments",
                "no environments are defined; add at least one under environments:",
            );
            return;
        }
        let names: Vec<&str> = envs.iter().map(|e| e.name.as_str()).collect();
        let mut seen = BTreeSet::new();
        for (i, env) in envs.iter().enumerate() {
            let base = format!("environments[{i}]");
            if !is_dns_label(&env.name) {
                self.error(
                    &format!("{base}.name"),
                    format!(
                        "environment name {:?} must be lowercase letters, digits and '-'",
                        env.name
                    ),
                );
            }
            if !seen.insert(env.name.as_str()) {
                self.error(
                    &format!("{base}.name"),
                    format!("environment {:?} is defined twice", env.name),
                );
            }
            match &env.after {
                Some(prev) if prev == &env.name => self.error(
                    &format!("{base}.after"),
                    "an environment cannot come after itself",
                ),
                Some(prev) if !names.contains(&prev.as_str()) => {
                    let hint = suggest(prev, names.iter().copied())
                        .map(|s| format!(" (did you mean {s:?}?)"))
                        .unwrap_or_default();
                    self.error(
                        &format!("{base}.after"),
                        format!(
                            "unknown environment {prev:?}{hint}; known: {}",
                            names.join(", ")
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    if env.soak.is_some() {
                        self.error(
                            &format!("{base}.soak"),
                            "soak needs after: (the environment whose healthy time is counted)",
                        );
                    }
                }
            }
            if let Some(Approvals { count, from }) = &env.approvals {
                if *count == 0 {
                    self.error(
                        &format!("{base}.approvals.count"),
                        "must be at least 1 (remove approvals: to need none)",
                    );
                }
                for (j, who) in from.iter().enumerate() {
                    if !is_reviewer(who) {
                        self.error(
                            &format!("{base}.approvals.from[{j}]"),
                            format!("{who:?} is neither a user login nor a team written @org/team"),
                        );
                    }
                }
            }
            for (j, check) in env.required_checks.iter().enumerate() {
                if check.trim().is_empty() {
                    self.error(
                        &format!("{base}.requiredChecks[{j}]"),
                        "a check name cannot be empty",
                    );
                }
            }
            for (j, freeze) in env.freezes.iter().enumerate() {
                if let Err(why) = freeze.interval() {
                    self.error(&format!("{base}.freezes[{j}]"), why);
                }
            }
            if let Some(target) = &env.copy_to
                && !is_valid_repository(target)
            {
                self.error(&format!("{base}.copyTo"), format!("{target:?} is not a registry repository prefix, e.g. prod-registry.example.com/shop"));
            }
            if let Some(prune) = &env.prune
                && !(prune.max_fraction > 0.0 && prune.max_fraction <= 1.0)
            {
                self.error(&format!("{base}.prune.maxFraction"), format!("{} is not a share between 0 and 1 (e.g. 0.3 lets one reconcile delete up to 30 % of the environment's objects; 1 turns the guard off)", prune.max_fraction));
            }
            if let Some(allow) = &env.allow {
                if allow.namespaces.is_empty() {
                    self.error(&format!("{base}.allow.namespaces"), "list the namespaces the environment may apply to (allow.namespaces: [shop]); an empty list allows no namespaced object");
                }
                for (j, k) in allow.kinds.iter().enumerate() {
                    let (group, kind) = k.rsplit_once('/').unwrap_or(("", k));
                    let ok = !kind.is_empty()
                        && (kind == "*" && !group.is_empty()
                            || kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                                && kind.chars().all(|c| c.is_ascii_alphanumeric()));
                    if !ok {
                        self.error(&format!("{base}.allow.kinds[{j}]"), format!("{k:?} is not a kind: use Kind for the core group (Service), group/Kind (apps/Deployment) or group/* (batch/*)"));
                    }
                }
            }
            if let Some(sa) = &env.service_account
                && let Err(why) = super::pipeline::ServiceAccountRef::parse(sa)
            {
                self.error(&format!("{base}.serviceAccount"), why);
            }
            self.environment_dir(i, env);
            self.verify_steps(i, env);
        }
        self.cycles(&envs);
        if !envs.iter().any(|e| e.after.is_none()) {
            self.error("environments", "every environment has after:, so none can receive new releases; the first environment must have no after:");
        }
    }

    /// Each verify step names a `batch/v1` Job manifest inside the repo that parses.
    fn verify_steps(&mut self, i: usize, env: &super::pipeline::Environment) {
        for (j, step) in env.verify.iter().enumerate() {
            let field = format!("environments[{i}].verify[{j}].job");
            let path = match resolve_in_repo(self.repo, &step.job) {
                Ok(path) => path,
                Err(why) => {
                    self.error(&field, why);
                    continue;
                }
            };
            if !path.is_file() {
                self.error(
                    &field,
                    format!(
                        "{} does not exist; write a batch/v1 Job manifest there (outside the environment's kustomization)",
                        step.job
                    ),
                );
                continue;
            }
            match std::fs::read_to_string(&path) {
                Err(e) => self.error(&field, format!("cannot read {}: {e}", step.job)),
                Ok(text) => {
                    let file = step.job.trim_start_matches("./").to_string();
                    if let Err(d) = VerifyJob::parse(&file, &text, step.timeout()) {
                        self.out.push(d);
                    }
                }
            }
            if step.timeout().is_zero() {
                self.error(
                    &format!("environments[{i}].verify[{j}].timeout"),
                    "must be more than 0s",
                );
            }
        }
    }

    fn policies(&mut self) {
        match read_policies(&FsFiles(self.repo)) {
            Err(e) => self.out.push(Diagnostic::new("policies", None, "", e)),
            Ok(sources) => {
                if let Err(e) = compile(&sources) {
                    let file = e
                        .message
                        .split(':')
                        .next()
                        .unwrap_or("policies")
                        .to_string();
                    self.out.push(Diagnostic::new(
                        file,
                        None,
                        "",
                        format!("Rego does not compile: {e}"),
                    ));
                }
            }
        }
    }

    fn cycles(&mut self, envs: &[super::pipeline::Environment]) {
        let parent: BTreeMap<&str, &str> = envs
            .iter()
            .filter_map(|e| e.after.as_deref().map(|a| (e.name.as_str(), a)))
            .collect();
        let mut reported = BTreeSet::new();
        for (i, env) in envs.iter().enumerate() {
            let mut path = vec![env.name.as_str()];
            let mut cur = env.name.as_str();
            while let Some(&next) = parent.get(cur) {
                if next == env.name {
                    let mut cycle = path.clone();
                    cycle.sort();
                    if reported.insert(cycle) && path.len() > 1 {
                        path.push(next);
                        self.error(
                            &format!("environments[{i}].after"),
                            format!("after: forms a cycle: {}", path.join(" → ")),
                        );
                    }
                    break;
                }
                if path.contains(&next) {
                    break; // a cycle further up, reported from its own members
                }
                path.push(next);
                cur = next;
            }
        }
    }

    fn environment_dir(&mut self, i: usize, env: &super::pipeline::Environment) {
        let base = format!("environments[{i}]");
        let field = if env.path.is_some() {
            format!("{base}.path")
        } else {
            format!("{base}.name")
        };
        let rel = env.path();
        let dir = match resolve_in_repo(self.repo, &rel.to_string_lossy()) {
            Ok(dir) => dir,
            Err(why) => return self.error(&field, why),
        };
        if !dir.is_dir() {
            return self.error(
                &field,
                format!(
                    "directory {} does not exist; create the overlay or set path:",
                    rel.display()
                ),
            );
        }
        let Some(kfile) = KUSTOMIZATION_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|f| f.is_file())
        else {
            return self.error(
                &field,
                format!("{} has no kustomization.yaml", rel.display()),
            );
        };
        let krel = rel_display(self.repo, &kfile);
        let text = match std::fs::read_to_string(&kfile) {
            Ok(t) => t,
            Err(e) => {
                return self
                    .out
                    .push(Diagnostic::new(krel, None, "", format!("cannot read: {e}")));
            }
        };
        let tree = match yaml::parse(&text) {
            Ok(t) => t,
            Err(e) => {
                return self.out.push(Diagnostic::new(
                    krel,
                    Some(e.pos),
                    "",
                    format!("invalid YAML: {}", e.message),
                ));
            }
        };
        let apps: Vec<_> = self
            .p()
            .apps
            .iter()
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect();
        for (name, app) in apps {
            if let Some(file) = &app.pin.file {
                let path = rel.join(file);
                match resolve_in_repo(self.repo, &path.to_string_lossy()) {
                    Err(why) => self.error(
                        &format!("apps.{name}.pin.file"),
                        format!("in environment {}: {why}", env.name),
                    ),
                    Ok(p) if !p.is_file() => self.error(
                        &format!("apps.{name}.pin.file"),
                        format!(
                            "{} does not exist (environment {})",
                            path.display(),
                            env.name
                        ),
                    ),
                    Ok(_) => {}
                }
                continue;
            }
            self.check_image_entry(&krel, &tree, &name, &app.image, &env.name);
        }
    }

    fn check_image_entry(&mut self, krel: &str, tree: &Node, app: &str, image: &str, env: &str) {
        let entry = tree
            .get("images")
            .map(|n| n.items())
            .unwrap_or(&[])
            .iter()
            .find(|e| e.get("name").and_then(Node::as_str) == Some(image));
        let Some(entry) = entry else {
            let pos = tree.get("images").map(|n| n.pos).or(Some(tree.pos));
            self.out.push(Diagnostic::new(
                krel,
                pos,
                "images",
                format!("app {app} (image {image}) has no entry; add `- name: {image}` with `digest: sha256:…` (or run `baton bump {env} {app} <digest> --write`)"),
            ));
            return;
        };
        match entry.get("digest") {
            None => self.out.push(Diagnostic::new(krel, Some(entry.pos), "images", format!("the entry for {image} pins no digest; baton pins images by digest (add digest: sha256:…)"))),
            Some(d) => {
                let value = d.as_str().unwrap_or_default();
                if let Err(e) = value.parse::<Digest>() {
                    self.out.push(Diagnostic::new(krel, Some(d.pos), "images.digest", e.to_string()));
                }
            }
        }
    }
}

fn rel_display(repo: &Path, path: &Path) -> String {
    path.strip_prefix(repo)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// A DNS-1123 label: lowercase letters, digits and '-', at most 63, no '-' at either end.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_reviewer(s: &str) -> bool {
    let login = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !l.starts_with('-')
    };
    match s.strip_prefix('@') {
        Some(team) => team
            .split_once('/')
            .is_some_and(|(org, slug)| login(org) && login(slug)),
        None => login(s),
    }
}
