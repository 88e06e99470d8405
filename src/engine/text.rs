//! What the bot writes on GitHub: PR titles and bodies, the one status comment per PR, and
//! command replies. Pure string building; the status comment also carries the ids of the
//! comments whose commands were handled, and each reply names the command it answers, so that
//! a restarted bot answers every command exactly once.

use std::collections::BTreeSet;

use crate::image::{Digest, Pinned};
use crate::promote::Evaluation;

/// Marks the bot's status comment on a PR.
pub const STATUS_MARKER: &str = "<!-- baton:status -->";
const HANDLED_PREFIX: &str = "<!-- baton:handled ";
const ANSWER_PREFIX: &str = "<!-- baton:answer ";

/// GitHub refuses bodies above 65,536 characters; stay well under.
pub const BODY_LIMIT: usize = 60_000;

/// The rendered manifest diff in a PR body is cut at this size, so that the body as a whole
/// stays under [`BODY_LIMIT`].
pub const RENDERED_LIMIT: usize = 40_000;

/// `promote web to prod: 1.4.0 (sha256:0123456789ab)`.
pub fn title(app: &str, env: &str, to: &Pinned) -> String {
    match &to.tag {
        Some(tag) => format!("promote {app} to {env}: {tag} ({})", to.digest.short()),
        None => format!("promote {app} to {env}: {}", to.digest.short()),
    }
}

fn describe(p: &Pinned) -> String {
    match &p.tag {
        Some(t) => format!("`{t}` (`{}`)", p.digest),
        None => format!("`{}`", p.digest),
    }
}

/// Where a release came from (the image's OCI annotations, or the pipeline's `source:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The source repository, e.g. `https://github.com/shop/web`.
    pub source: Option<String>,
    /// The revision (commit) the pinned digest was built from, when known.
    pub from_revision: Option<String>,
    /// The revision the promoted digest was built from.
    pub to_revision: Option<String>,
}

impl Provenance {
    /// `source: <repo> · revision <sha> · commits <compare link>`, as far as known.
    fn line(&self) -> Option<String> {
        let web = self
            .source
            .as_deref()
            .map(|s| s.trim_end_matches(".git").trim_end_matches('/'))
            .filter(|s| s.starts_with("https://") || s.starts_with("http://"));
        let mut parts = Vec::new();
        if let Some(src) = &self.source {
            parts.push(format!("source: {src}"));
        }
        if let Some(rev) = &self.to_revision {
            let short = &rev[..rev.len().min(12)];
            match web {
                Some(w) => parts.push(format!("revision [`{short}`]({w}/commit/{rev})")),
                None => parts.push(format!("revision `{short}`")),
            }
        }
        if let (Some(w), Some(old), Some(new)) = (web, &self.from_revision, &self.to_revision)
            && old != new
        {
            parts.push(format!(
                "[commits since the pinned release]({w}/compare/{old}...{new})"
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" · "))
    }
}

/// The PR body. `diff` is the change to the config repo; `rendered` the diff of the
/// environment's rendered manifests (already cut), or why it could not be computed.
#[allow(clippy::too_many_arguments)]
pub fn body(
    app: &str,
    env: &str,
    image: &str,
    from: Option<&Pinned>,
    to: &Pinned,
    provenance: &Provenance,
    diff: &str,
    rendered: Result<&str, &str>,
) -> String {
    let mut out = format!("Promotes **{app}** to **{env}**.\n\n| | tag and digest |\n|---|---|\n");
    out.push_str(&format!(
        "| from | {} |\n",
        from.map(describe)
            .unwrap_or_else(|| "(nothing pinned yet)".into())
    ));
    out.push_str(&format!("| to | {} |\n\n", describe(to)));
    out.push_str(&format!("Image: `{image}@{}`", to.digest));
    if let Some(line) = provenance.line() {
        out.push_str(&format!(" · {line}"));
    }
    out.push_str("\n\n");
    out.push_str(&changes(env, diff, rendered));
    truncate(
        out,
        "\n\n…(truncated; run `baton render` for the full output)\n",
    )
}

/// The change to the config repo (`diff`) as a folded block of a PR body; empty without one.
pub fn config_diff(diff: &str) -> String {
    if diff.is_empty() {
        return String::new();
    }
    let mut out =
        String::from("<details><summary>Change to the config repo</summary>\n\n```diff\n");
    out.push_str(diff);
    if !diff.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("```\n</details>\n\n");
    out
}

/// The end of a promotion PR's body: the change to the config repo (`diff`), the diff of the
/// environment's rendered manifests (already cut) or why there is none, and where the gates
/// are. Shared by an app's and a group's PR.
pub fn changes(env: &str, diff: &str, rendered: Result<&str, &str>) -> String {
    let mut out = config_diff(diff);
    match rendered {
        Ok("") => out.push_str(&format!(
            "The rendered manifests of {env} do not change.\n\n"
        )),
        Ok(rendered) => {
            let fence = crate::prcheck::diff::fence(rendered);
            out.push_str(&format!(
                "<details><summary>Rendered manifests of {env} (what is applied to the cluster)</summary>\n\n{fence}diff\n"
            ));
            out.push_str(rendered);
            if !rendered.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("{fence}\n</details>\n\n"));
        }
        Err(why) => out.push_str(&format!(
            "The rendered manifests of {env} could not be compared: {why}\n\n"
        )),
    }
    out.push_str("The gates and their state are in baton's status comment below. Commands: `/promote <env>`, `/hold [reason]`, `/unhold`, `/status`, `/help`.\n");
    out
}

/// Cut `text` to [`BODY_LIMIT`] on a character boundary, appending `note` when cut.
pub fn truncate(mut text: String, note: &str) -> String {
    if text.len() <= BODY_LIMIT {
        return text;
    }
    let mut cut = BODY_LIMIT - note.len();
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(note);
    text
}

/// The status comment: headline, gate table, events, and the handled-comment marker.
pub fn status_comment(
    app: &str,
    env: &str,
    headline: &str,
    evaluation: Option<&Evaluation>,
    events: &[String],
    handled: &BTreeSet<u64>,
) -> String {
    let mut out = format!("{STATUS_MARKER}\n### baton · {app} → {env}\n\n{headline}\n\n");
    if let Some(e) = evaluation {
        out.push_str(&e.table());
        out.push('\n');
    }
    if !events.is_empty() {
        out.push_str("**Timeline**\n\n");
        for e in events {
            out.push_str(&format!("- {e}\n"));
        }
        out.push('\n');
    }
    let ids: Vec<String> = handled.iter().map(u64::to_string).collect();
    out.push_str(&format!("{HANDLED_PREFIX}{} -->\n", ids.join(",")));
    truncate(out, "\n…(truncated)\n")
}

/// The comment ids recorded as handled in a status comment.
pub fn handled_ids(status_body: &str) -> BTreeSet<u64> {
    status_body
        .lines()
        .find_map(|l| l.trim().strip_prefix(HANDLED_PREFIX))
        .map(|rest| {
            rest.trim_end_matches("-->")
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A reply to the `index`-th command (from 0) of comment `comment`, marked as its answer.
pub fn answer(reply: &str, comment: u64, index: usize) -> String {
    format!("{reply}\n\n{ANSWER_PREFIX}{comment}.{index} -->")
}

/// Which command a bot comment answers: `(comment id, command index)`, from [`answer`].
pub fn answered(body: &str) -> Option<(u64, usize)> {
    let rest = body
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix(ANSWER_PREFIX))?;
    let (comment, index) = rest.trim_end_matches("-->").trim().split_once('.')?;
    Some((comment.parse().ok()?, index.parse().ok()?))
}

/// The timeline lines already in a status comment, to keep them across edits.
pub fn timeline(status_body: &str) -> Vec<String> {
    let mut lines = status_body
        .lines()
        .skip_while(|l| l.trim() != "**Timeline**")
        .skip(1);
    let mut out = Vec::new();
    for l in lines.by_ref() {
        if let Some(item) = l.strip_prefix("- ") {
            out.push(item.to_string());
        } else if !out.is_empty() && l.trim().is_empty() {
            break;
        }
    }
    out
}

/// The merge commit subject.
pub fn merge_subject(app: &str, env: &str, to: &Pinned, pr: u64) -> String {
    format!("{} (#{pr})", title(app, env, to))
}

/// One line for a superseded PR.
pub fn superseded(old: &Digest, old_tag: Option<&str>, new: &Pinned) -> String {
    let old = match old_tag {
        Some(t) => format!("{t} ({})", old.short()),
        None => old.short().to_string(),
    };
    let new_s = match &new.tag {
        Some(t) => format!("{t} ({})", new.digest.short()),
        None => new.digest.short().to_string(),
    };
    format!("superseded {old} by the newer {new_s}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pin(tag: &str) -> Pinned {
        Pinned {
            tag: Some(tag.into()),
            digest: Digest::of(tag.as_bytes()),
        }
    }

    #[test]
    fn titles_show_tag_and_short_digest() {
        let p = pin("1.4.0");
        assert_eq!(
            title("web", "prod", &p),
            format!("promote web to prod: 1.4.0 ({})", p.digest.short())
        );
    }

    #[test]
    fn the_status_comment_round_trips_handled_ids_and_timeline() {
        let handled = BTreeSet::from([12, 7]);
        let events = vec!["opened".to_string(), "hold by @dana".to_string()];
        let body = status_comment("web", "prod", "waiting", None, &events, &handled);
        assert!(body.starts_with(STATUS_MARKER));
        assert_eq!(handled_ids(&body), handled);
        assert_eq!(timeline(&body), events);
        assert_eq!(handled_ids("no marker"), BTreeSet::new());
        assert_eq!(answered(&answer("Held by @dev.", 1234, 1)), Some((1234, 1)));
        assert_eq!(answered("Held by @dev."), None);
    }

    #[test]
    fn the_body_folds_the_config_change_and_the_rendered_manifest_diff() {
        let from = pin("1.4.0");
        let to = pin("1.5.0");
        let config = "--- a/environments/staging/kustomization.yaml\n+++ b/environments/staging/kustomization.yaml\n@@ -1 +1 @@\n-    newTag: \"1.4.0\"\n+    newTag: \"1.5.0\"\n";
        let rendered = "--- a/apps/v1/Deployment shop-staging/web\n+++ b/apps/v1/Deployment shop-staging/web\n@@ -1 +1 @@\n-        image: reg/web:1.4.0\n+        image: reg/web:1.5.0\n";
        let b = body(
            "web",
            "staging",
            "reg/web",
            Some(&from),
            &to,
            &Provenance {
                source: Some("https://github.com/shop/web".into()),
                ..Default::default()
            },
            config,
            Ok(rendered),
        );
        insta::assert_snapshot!(b);
        let failed = body(
            "web",
            "staging",
            "reg/web",
            None,
            &to,
            &Provenance::default(),
            "",
            Err("environments/staging/kustomization.yaml:3: invalid YAML"),
        );
        assert!(failed.contains("The rendered manifests of staging could not be compared: environments/staging/kustomization.yaml:3"), "{failed}");
    }

    #[test]
    fn a_rendered_diff_cut_at_its_limit_keeps_the_body_under_githubs_limit() {
        let objects = "+x\n".repeat(30_000);
        let cut = crate::prcheck::diff::cut(objects, RENDERED_LIMIT, "prod");
        let config = "+y\n".repeat(5_000);
        let b = body(
            "web",
            "prod",
            "reg/web",
            None,
            &pin("1"),
            &Provenance::default(),
            &config,
            Ok(&cut),
        );
        assert!(b.len() <= BODY_LIMIT, "{}", b.len());
        assert!(b.contains("run `baton render prod` for the full output"));
        assert!(b.contains("</details>\n\nThe gates"), "the body is not cut");
    }

    #[test]
    fn the_body_links_the_revision_and_the_commits_since_the_pinned_release() {
        let p = Provenance {
            source: Some("https://github.com/shop/web.git".into()),
            from_revision: Some("a".repeat(40)),
            to_revision: Some("b".repeat(40)),
        };
        let b = body("web", "dev", "reg/web", None, &pin("1"), &p, "", Ok(""));
        let (a, bb) = ("a".repeat(40), "b".repeat(40));
        assert!(
            b.contains(&format!(
                "revision [`bbbbbbbbbbbb`](https://github.com/shop/web/commit/{bb})"
            )),
            "{b}"
        );
        assert!(
            b.contains(&format!("(https://github.com/shop/web/compare/{a}...{bb})")),
            "{b}"
        );
        let only_source = Provenance {
            source: Some("git@github.com:shop/web.git".into()),
            to_revision: Some("c".repeat(40)),
            ..Default::default()
        };
        let b = body(
            "web",
            "dev",
            "reg/web",
            None,
            &pin("1"),
            &only_source,
            "",
            Ok(""),
        );
        assert!(b.contains("revision `cccccccccccc`"), "{b}");
        assert!(!b.contains("compare"), "{b}");
    }

    #[test]
    fn long_bodies_are_truncated_under_githubs_limit() {
        let diff = "+x\n".repeat(40_000);
        let b = body(
            "web",
            "dev",
            "reg/web",
            None,
            &pin("1"),
            &Provenance::default(),
            &diff,
            Ok(""),
        );
        assert!(b.len() <= BODY_LIMIT, "{}", b.len());
        assert!(b.ends_with("run `baton render` for the full output)\n"));
    }
}
