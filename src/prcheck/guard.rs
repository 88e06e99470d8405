//! Whether the config branch is guarded so that `baton/validate` binds people's PRs too: the
//! base branch's rules (rulesets, branch protection) must require the `baton/validate` check,
//! and CODEOWNERS must give every file under `environments/` and `policies/` an owner (with
//! code-owner review required, so those owners must approve). `baton check` prints it and
//! `baton run` logs it once at start, saying exactly what to set where it is missing.
//!
//! [`assess`] is pure (the rules, the CODEOWNERS text and the file list in, a [`Guard`] out);
//! [`inspect`] reads them from the forge and the config branch tip.

use serde::Serialize;

use super::CONTEXT;
use crate::forge::Forge;
use crate::gitrepo::repo::ConfigRepo;
use crate::promote::BaseRules;

/// Where GitHub looks for CODEOWNERS, in its order: the first that exists is used.
pub const CODEOWNERS_PATHS: [&str; 3] = [".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"];

/// The directories whose changes decide what runs where.
pub const GUARDED_DIRS: [&str; 2] = ["environments/", "policies/"];

/// How well the config branch is guarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Guard {
    pub branch: String,
    /// The branch's rules require `baton/validate`.
    pub validate_required: bool,
    /// The rules require a code owner's review.
    pub code_owner_review: bool,
    /// Rules baton could not read (e.g. branch protection without admin rights).
    pub rules_unreadable: Vec<String>,
    /// The CODEOWNERS file GitHub uses, if any.
    pub codeowners: Option<String>,
    /// Files under `environments/` and `policies/` no CODEOWNERS rule gives an owner (at
    /// most a few per directory, as examples).
    pub unowned: Vec<String>,
    /// What to set, one line each; empty when the branch is guarded.
    pub missing: Vec<String>,
}

impl Guard {
    pub fn is_guarded(&self) -> bool {
        self.missing.is_empty()
    }

    /// One line for a log or a terminal.
    pub fn summary(&self) -> String {
        if self.is_guarded() {
            format!(
                "branch {} requires {CONTEXT} and a code owner's review, and {} owns environments/ and policies/: gates bind people's PRs too",
                self.branch,
                self.codeowners.as_deref().unwrap_or("CODEOWNERS")
            )
        } else {
            format!(
                "people's PRs to {} can skip the promotion gates: {}",
                self.branch,
                self.missing.join("; ")
            )
        }
    }
}

/// Judge the guard of `branch` from its `rules`, the CODEOWNERS file GitHub would use
/// (`(path, text)`) and the branch's files.
pub fn assess(
    branch: &str,
    rules: &BaseRules,
    codeowners: Option<(&str, &str)>,
    files: &[String],
) -> Guard {
    let validate_required = rules.required_checks.iter().any(|c| c == CONTEXT);
    let mut missing = Vec::new();
    if !validate_required {
        let mut line = format!(
            "require the status check {CONTEXT} on {branch} (Settings → Rules → Rulesets: a branch ruleset targeting {branch} with \"Require status checks to pass\" and {CONTEXT} added; or branch protection's \"Require status checks to pass before merging\"), and keep requiredChecks: [validate] on the gated environments in policies/pipeline.yaml"
        );
        if !rules.unreadable.is_empty() {
            line.push_str(&format!(
                " (baton could not read every rule: {}; if it is set there, give baton's App \"Administration: read\" so it can see it)",
                rules.unreadable.join("; ")
            ));
        }
        missing.push(line);
    }
    let owners = codeowners.map(|(_, text)| CodeOwners::parse(text));
    let mut unowned = Vec::new();
    for dir in GUARDED_DIRS {
        let without: Vec<&String> = files
            .iter()
            .filter(|f| f.starts_with(dir))
            .filter(|f| owners.as_ref().is_none_or(|o| !o.owns(f)))
            .collect();
        unowned.extend(without.iter().take(3).map(|f| f.to_string()));
        if !without.is_empty() || owners.is_none() {
            let dir_line = match codeowners {
                None => format!(
                    "add a CODEOWNERS file (.github/CODEOWNERS) with a line `/{dir} @<org>/<approvers>`"
                ),
                Some((path, _)) => format!(
                    "{path} leaves {} without an owner: add a line `/{dir} @<org>/<approvers>` (after any broader rule; the last matching line wins)",
                    without.first().map(|f| f.as_str()).unwrap_or(dir)
                ),
            };
            missing.push(dir_line);
        }
    }
    if !rules.code_owner_review {
        missing.push(format!(
            "require a review from Code Owners on {branch} (the ruleset's \"Require review from Code Owners\", or branch protection's), so CODEOWNERS binds"
        ));
    }
    Guard {
        branch: branch.to_string(),
        validate_required,
        code_owner_review: rules.code_owner_review,
        rules_unreadable: rules.unreadable.clone(),
        codeowners: codeowners.map(|(p, _)| p.to_string()),
        unowned,
        missing,
    }
}

/// Log what [`inspect`] found, as `baton run` does once at start: a warning per missing
/// setting, or one line when the branch is guarded. True once it was reported (an outage is
/// logged at debug level and reported on a later pass).
pub fn log_once(guard: Result<Guard, super::CheckError>) -> bool {
    match guard {
        Ok(g) if g.is_guarded() => {
            tracing::info!(branch = %g.branch, "{}", g.summary());
            true
        }
        Ok(g) => {
            for what in &g.missing {
                tracing::warn!(branch = %g.branch, "people's PRs can skip the promotion gates; set this: {what}");
            }
            true
        }
        Err(e) if e.is_transient() => {
            tracing::debug!(error = %e, "cannot read the config branch's rules yet");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot tell whether the config branch requires baton/validate");
            true
        }
    }
}

/// Read the guard of the config branch: its rules from the forge, CODEOWNERS and the files from
/// its tip (fetched).
pub async fn inspect<F: Forge>(
    repo: &std::sync::Mutex<ConfigRepo>,
    branch: &str,
    forge: &F,
) -> Result<Guard, super::CheckError> {
    let rules = forge.base_rules(branch).await?;
    // The fetch blocks on the network: off the async worker, whose queued tasks (a Git server
    // in the same process, as in the sandbox) would otherwise wait for it forever.
    let (codeowners, files) = tokio::task::block_in_place(|| {
        let repo = repo.lock().unwrap_or_else(|e| e.into_inner());
        let tip = repo.fetch()?;
        tip_files(&repo, tip)
    })?;
    Ok(assess(
        branch,
        &rules,
        codeowners.as_ref().map(|(p, t)| (p.as_str(), t.as_str())),
        &files,
    ))
}

/// The CODEOWNERS GitHub would use at `tip`, and the files under the guarded directories.
type TipFiles = (Option<(String, String)>, Vec<String>);

fn tip_files(
    repo: &ConfigRepo,
    tip: git2::Oid,
) -> Result<TipFiles, crate::gitrepo::repo::GitError> {
    use crate::gitrepo::files::Files as _;
    let read_err = |message: String| crate::gitrepo::repo::GitError::Git {
        op: "read",
        message,
        transient: false,
    };
    let tree_files = repo.files_at(tip)?;
    let mut codeowners = None;
    for path in CODEOWNERS_PATHS {
        if let Some(text) = tree_files.read(path).map_err(read_err)? {
            codeowners = Some((path.to_string(), text));
            break;
        }
    }
    let mut files = Vec::new();
    let tree = &tree_files.tree;
    tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
        if entry.kind() == Some(git2::ObjectType::Blob)
            && let Ok(name) = entry.name()
        {
            let path = format!("{root}{name}");
            if GUARDED_DIRS.iter().any(|d| path.starts_with(d)) {
                files.push(path);
            }
        }
        git2::TreeWalkResult::Ok
    })
    .map_err(|e| read_err(format!("cannot list the files at {tip}: {}", e.message())))?;
    Ok((codeowners, files))
}

/// A CODEOWNERS file: patterns (gitignore-like, as GitHub reads them) and whether each names
/// an owner. The last matching line decides.
pub struct CodeOwners {
    rules: Vec<(regex::Regex, bool)>,
}

impl CodeOwners {
    pub fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let pattern = words.next()?;
                let owned = words.take_while(|w| !w.starts_with('#')).next().is_some();
                Some((pattern_regex(pattern)?, owned))
            })
            .collect();
        Self { rules }
    }

    /// Whether the last line matching `path` names an owner.
    pub fn owns(&self, path: &str) -> bool {
        self.rules
            .iter()
            .rev()
            .find(|(re, _)| re.is_match(path))
            .is_some_and(|(_, owned)| *owned)
    }
}

/// A CODEOWNERS pattern as a regex over repo-relative paths: anchored at the root when it
/// starts with `/` or has a `/` before its end, else at any depth; `*` within a segment, `**`
/// across; a pattern matching a directory matches everything in it.
fn pattern_regex(pattern: &str) -> Option<regex::Regex> {
    let anchored = pattern.starts_with('/') || pattern.trim_end_matches('/').contains('/');
    let body = pattern.trim_start_matches('/');
    let dir_only = body.ends_with('/');
    let body = body.trim_end_matches('/');
    let mut re = String::from(if anchored { "^" } else { "^(?:.*/)?" });
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                    re.push_str("(?:.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push_str(if dir_only { "/.*$" } else { "(?:/.*)?$" });
    regex::Regex::new(&re).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<String> {
        [
            "environments/dev/kustomization.yaml",
            "environments/prod/kustomization.yaml",
            "policies/pipeline.yaml",
            "policies/hours.rego",
        ]
        .map(String::from)
        .to_vec()
    }

    fn rules(checks: &[&str], code_owners: bool) -> BaseRules {
        BaseRules {
            required_checks: checks.iter().map(|c| c.to_string()).collect(),
            code_owner_review: code_owners,
            ..BaseRules::default()
        }
    }

    #[test]
    fn codeowners_patterns_match_as_github_reads_them() {
        let o = CodeOwners::parse(
            "# owners\n* @shop/everyone\n/environments/ @shop/release-managers\n/environments/dev/\napps/** @shop/devs\n*.rego @shop/policy # rules\n",
        );
        assert!(o.owns("environments/prod/kustomization.yaml"));
        assert!(
            !o.owns("environments/dev/kustomization.yaml"),
            "a later line without owners unowns"
        );
        assert!(o.owns("policies/pipeline.yaml"), "* matches at any depth");
        assert!(o.owns("policies/x/hours.rego"));
        let o = CodeOwners::parse("/environments @a\npolicies/pipeline.yaml @b\ndocs/*.md @c\n");
        assert!(o.owns("environments/dev/kustomization.yaml"));
        assert!(o.owns("policies/pipeline.yaml"));
        assert!(!o.owns("policies/hours.rego"));
        assert!(
            !o.owns("x/policies/pipeline.yaml"),
            "a slash inside anchors"
        );
        assert!(o.owns("docs/a.md") && !o.owns("docs/sub/a.md"));
    }

    #[test]
    fn a_branch_requiring_validate_and_code_owners_over_both_directories_is_guarded() {
        let text = "/environments/ @shop/release-managers\n/policies/ @shop/release-managers\n";
        let g = assess(
            "main",
            &rules(&["baton/validate"], true),
            Some((".github/CODEOWNERS", text)),
            &files(),
        );
        assert!(g.is_guarded(), "{:?}", g.missing);
        assert!(g.summary().contains("gates bind people's PRs too"));
    }

    #[test]
    fn what_is_missing_is_said_with_what_to_set() {
        let g = assess("main", &rules(&["ci"], false), None, &files());
        assert!(!g.validate_required);
        assert_eq!(g.missing.len(), 4, "{:#?}", g.missing);
        assert!(g.missing[0].starts_with("require the status check baton/validate on main"));
        assert!(g.missing[1].contains("`/environments/ @<org>/<approvers>`"));
        assert!(g.missing[2].contains("`/policies/ @<org>/<approvers>`"));
        assert!(g.missing[3].contains("Require review from Code Owners"));

        let g = assess(
            "main",
            &rules(&["baton/validate"], true),
            Some(("CODEOWNERS", "/environments/ @shop/rm\n")),
            &files(),
        );
        assert_eq!(
            g.missing,
            [
                "CODEOWNERS leaves policies/pipeline.yaml without an owner: add a line `/policies/ @<org>/<approvers>` (after any broader rule; the last matching line wins)"
            ]
        );
        assert_eq!(g.unowned, ["policies/pipeline.yaml", "policies/hours.rego"]);
    }

    #[test]
    fn unreadable_rules_are_named_when_validate_is_not_seen() {
        let mut r = rules(&[], true);
        r.unreadable = vec!["branch protection: GitHub answered 403".into()];
        let g = assess("main", &r, None, &files());
        assert!(g.missing[0].contains("branch protection: GitHub answered 403"));
        assert!(g.missing[0].contains("Administration: read"));
    }
}
