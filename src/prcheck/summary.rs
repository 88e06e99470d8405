//! The text of the check: the commit status description (at most 140 characters) and the one
//! summary comment per PR. Pure string building over a [`Report`].

use super::diff::{EnvDiff, ImageChange};
use crate::render::ObjectId;

/// Marks baton's check comment on a PR (the first line of its body).
pub const MARKER: &str = "<!-- baton:validate -->";

/// GitHub refuses comments above 65,536 characters; stay well under.
pub const COMMENT_LIMIT: usize = 60_000;

/// GitHub's limit on a commit status description.
pub const DESCRIPTION_LIMIT: usize = 140;

/// One problem that fails the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The environment whose render failed; none for pipeline problems.
    pub env: Option<String>,
    /// `file:line: what is wrong` (the location first, so that it survives any cut).
    pub text: String,
}

/// What one environment would see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvReport {
    pub env: String,
    pub diff: EnvDiff,
    /// Set when the base did not render, so everything counts as added.
    pub note: Option<String>,
}

/// A gated environment the PR touches (see `prcheck::gates`), for the comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gated {
    pub env: String,
    /// What the PR changes for it.
    pub reasons: Vec<String>,
    /// Who must approve (the base branch's `approvals:`).
    pub who: crate::config::pipeline::Approvals,
    /// `approved by alice, bob` or `waiting for approval (1 of 2)`.
    pub state: String,
}

/// The outcome of checking one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub head_sha: String,
    /// The commit the head is compared with (the merge base with the config branch).
    pub base_sha: String,
    pub problems: Vec<Problem>,
    /// Every environment, in pipeline order (empty when the pipeline does not load).
    pub envs: Vec<EnvReport>,
    /// Gated environments the PR touches (empty for baton's own promotion PRs).
    pub gated: Vec<Gated>,
    /// The reviews the gated verdicts were made with (`gates::reviews_fingerprint`).
    pub reviews: Option<String>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// `Deployment shop/web` (or `Namespace shop` for cluster-scoped objects).
pub fn object_name(id: &ObjectId) -> String {
    if id.namespace.is_empty() {
        format!("{} {}", id.kind, id.name)
    } else {
        format!("{} {}/{}", id.kind, id.namespace, id.name)
    }
}

/// Cut to `limit` characters, ending in `…` when cut.
fn cut_chars(s: &str, limit: usize) -> String {
    if s.chars().count() <= limit {
        return s.to_string();
    }
    let mut out: String = s.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The commit status description: the first problem (`file:line: why`) on failure, the
/// counts per environment on success. At most [`DESCRIPTION_LIMIT`] characters.
pub fn description(report: &Report) -> String {
    if let Some(first) = report.problems.first() {
        let more = match report.problems.len() {
            1 => String::new(),
            n => format!(" (+{} more)", n - 1),
        };
        let room = DESCRIPTION_LIMIT - more.chars().count();
        return format!("{}{more}", cut_chars(first.text.trim(), room));
    }
    let changed: Vec<String> = report
        .envs
        .iter()
        .filter(|e| !e.diff.is_empty())
        .map(|e| format!("{} {}", e.env, counts(&e.diff)))
        .collect();
    let text = if changed.is_empty() {
        "valid; no environment changes".to_string()
    } else {
        format!("valid; {}", changed.join("; "))
    };
    cut_chars(&text, DESCRIPTION_LIMIT)
}

/// What changes in one environment, in a line: `+1 ~2 -0; images web`.
pub fn change_line(d: &EnvDiff) -> String {
    let mut line = counts(d);
    if !d.images.is_empty() {
        let names: Vec<&str> = d
            .images
            .iter()
            .map(|i| i.name.rsplit('/').next().unwrap_or(&i.name))
            .collect();
        line.push_str(&format!("; image(s) {} move", names.join(", ")));
    }
    line
}

/// `+1 ~2 -0`.
fn counts(d: &EnvDiff) -> String {
    format!(
        "+{} ~{} -{}",
        d.added.len(),
        d.changed.len(),
        d.removed.len()
    )
}

fn image_line(i: &ImageChange) -> String {
    let side = |refs: &[String]| {
        if refs.is_empty() {
            "(none)".to_string()
        } else {
            refs.iter()
                .map(|r| format!("`{}`", shorten_digest(r)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    format!("- `{}`: {} → {}\n", i.name, side(&i.from), side(&i.to))
}

/// `:1.4@sha256:0123456789abcdef…` → `1.4@sha256:0123456789ab`.
fn shorten_digest(reference: &str) -> String {
    let reference = reference.trim_start_matches(':');
    match reference.split_once("@sha256:") {
        Some((tag, hex)) => format!("{tag}@sha256:{}", &hex[..hex.len().min(12)]),
        None => reference.to_string(),
    }
}

/// The summary comment. `pipeline_file` and the problems come first on failure; then, per
/// environment, the objects added, changed and removed and the images that move. Cut well
/// under GitHub's limit, naming the environment whose list was cut and how to see it all.
pub fn comment(report: &Report) -> String {
    let mut out = format!("{MARKER}\n");
    if report.passed() {
        out.push_str(&format!(
            "### ✅ baton/validate passed at `{}`\n\n",
            short(&report.head_sha)
        ));
    } else {
        out.push_str(&format!(
            "### ❌ baton/validate failed at `{}`\n\n",
            short(&report.head_sha)
        ));
        for p in &report.problems {
            match &p.env {
                Some(env) => out.push_str(&format!("- **{env}**: {}\n", p.text.trim())),
                None => out.push_str(&format!("- {}\n", p.text.trim())),
            }
        }
        out.push_str("\nFix these and push again; `baton validate` and `baton render <env>` show the same problems locally.\n\n");
    }
    if !report.gated.is_empty() {
        out.push_str("**Gated environments this PR touches** (their approvers must approve this head; the gates are the base branch's):\n\n| environment | what changes | who must approve | state |\n|---|---|---|---|\n");
        for g in &report.gated {
            let who = if g.who.from.is_empty() {
                format!("{} with write access", g.who.count)
            } else {
                format!("{} of {}", g.who.count, g.who.from.join(", "))
            };
            out.push_str(&format!(
                "| {} | {} | {who} | {} |\n",
                g.env,
                g.reasons.join("; ").replace('|', "\\|"),
                g.state
            ));
        }
        out.push('\n');
    }
    if !report.envs.is_empty() {
        out.push_str(&format!(
            "**What would change** (rendered manifests, compared with `{}`):\n\n",
            short(&report.base_sha)
        ));
    }
    let footer = "<sub>Edited in place on every push.</sub>\n";
    for env in &report.envs {
        let mut section = String::new();
        if env.diff.is_empty() {
            section.push_str(&format!("#### {} — no change\n\n", env.env));
        } else {
            section.push_str(&format!(
                "#### {} — {} added, {} changed, {} removed\n\n",
                env.env,
                env.diff.added.len(),
                env.diff.changed.len(),
                env.diff.removed.len()
            ));
        }
        if let Some(note) = &env.note {
            section.push_str(&format!("_{note}_\n\n"));
        }
        let listed = section.len();
        for (label, ids) in [
            ("added", &env.diff.added),
            ("changed", &env.diff.changed),
            ("removed", &env.diff.removed),
        ] {
            for id in ids {
                section.push_str(&format!("- {label} `{}`\n", object_name(id)));
            }
        }
        if !env.diff.images.is_empty() {
            section.push_str("\nImages:\n");
            for i in &env.diff.images {
                section.push_str(&image_line(i));
            }
        }
        if section.len() > listed {
            section.push('\n');
        }
        if out.len() + section.len() + footer.len() + 200 > COMMENT_LIMIT {
            let mut room = COMMENT_LIMIT.saturating_sub(out.len() + footer.len() + 200);
            while !section.is_char_boundary(room.min(section.len())) {
                room -= 1;
            }
            let kept = &section[..room.min(section.len())];
            let kept = &kept[..kept.rfind('\n').map(|i| i + 1).unwrap_or(0)];
            out.push_str(kept);
            out.push_str(&format!(
                "\n… (truncated; run `baton render {}` at this commit for the full output)\n",
                env.env
            ));
            break;
        }
        out.push_str(&section);
    }
    out.push_str(footer);
    if let Some(fp) = &report.reviews {
        out.push_str(&super::gates::reviews_marker(fp));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(kind: &str, ns: &str, name: &str) -> ObjectId {
        ObjectId {
            group: "apps".into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    fn report(problems: Vec<Problem>, envs: Vec<EnvReport>) -> Report {
        Report {
            head_sha: "0123456789abcdef".into(),
            base_sha: "fedcba9876543210".into(),
            problems,
            envs,
            gated: vec![],
            reviews: None,
        }
    }

    fn staging_change() -> EnvReport {
        EnvReport {
            env: "staging".into(),
            diff: EnvDiff {
                changed: vec![id("Deployment", "shop-staging", "web")],
                images: vec![ImageChange {
                    name: "reg/web".into(),
                    from: vec![format!(":1.4@sha256:{}", "a".repeat(64))],
                    to: vec![format!(":1.5@sha256:{}", "b".repeat(64))],
                }],
                ..EnvDiff::default()
            },
            note: None,
        }
    }

    #[test]
    fn a_passing_comment_lists_changed_objects_and_moved_images_per_environment() {
        let r = report(
            vec![],
            vec![
                EnvReport {
                    env: "dev".into(),
                    diff: EnvDiff::default(),
                    note: None,
                },
                staging_change(),
            ],
        );
        let c = comment(&r);
        insta::assert_snapshot!(c);
        assert_eq!(description(&r), "valid; staging +0 ~1 -0");
    }

    #[test]
    fn a_failing_description_starts_with_the_location_and_fits_140_characters() {
        let long = format!(
            "environments/staging/kustomization.yaml:7: invalid YAML: {}",
            "x".repeat(300)
        );
        let r = report(
            vec![
                Problem {
                    env: Some("staging".into()),
                    text: long,
                },
                Problem {
                    env: None,
                    text: "policies/pipeline.yaml:3: bad".into(),
                },
            ],
            vec![],
        );
        let d = description(&r);
        assert!(d.chars().count() <= DESCRIPTION_LIMIT, "{d}");
        assert!(
            d.starts_with("environments/staging/kustomization.yaml:7: invalid YAML"),
            "{d}"
        );
        assert!(d.ends_with("… (+1 more)"), "{d}");
        let c = comment(&r);
        assert!(c.starts_with(MARKER));
        assert!(c.contains("failed at `0123456`"), "{c}");
        assert!(c.contains("- **staging**: environments/staging/kustomization.yaml:7:"));
        assert!(c.contains("- policies/pipeline.yaml:3: bad"));
    }

    #[test]
    fn huge_summaries_are_cut_under_the_limit_with_a_pointer_to_baton_render() {
        let many = EnvReport {
            env: "prod".into(),
            diff: EnvDiff {
                added: (0..5000)
                    .map(|i| id("ConfigMap", "shop", &format!("config-{i:05}")))
                    .collect(),
                ..EnvDiff::default()
            },
            note: None,
        };
        let c = comment(&report(vec![], vec![staging_change(), many]));
        assert!(c.len() <= COMMENT_LIMIT, "{}", c.len());
        assert!(c.contains("#### staging — 0 added, 1 changed, 0 removed"));
        assert!(
            c.contains("(truncated; run `baton render prod` at this commit for the full output)"),
            "{}",
            &c[c.len() - 300..]
        );
    }
}
