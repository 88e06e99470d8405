//! Release history from the config repo alone: the first-parent log of the config branch,
//! keeping the commits whose trailers record a promotion (merge and squash commits alike, and
//! the record commit a rebasing merge queue lands on top of its promotion commit, which then
//! stands for both).

use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use super::trailers::Promotion;

/// One promotion as recorded in Git.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub time: DateTime<Utc>,
    pub commit: String,
    #[serde(flatten)]
    pub promotion: Promotion,
}

/// Which promotions to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub app: Option<String>,
    pub environment: Option<String>,
    /// Only promotions at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Stop after this many matches.
    pub limit: Option<usize>,
}

impl Filter {
    fn keeps(&self, e: &Entry) -> bool {
        self.app.as_ref().is_none_or(|a| *a == e.promotion.app)
            && self
                .environment
                .as_ref()
                .is_none_or(|env| *env == e.promotion.environment)
    }
}

/// Read promotions from `start` (usually the config branch tip) back along first parents,
/// newest first.
pub fn read(
    repo: &git2::Repository,
    start: git2::Oid,
    filter: &Filter,
) -> Result<Vec<Entry>, git2::Error> {
    let mut walk = repo.revwalk()?;
    walk.push(start)?;
    walk.simplify_first_parent()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL)?;
    let mut out = Vec::new();
    // The last promotion commit seen: a record commit (no file changed, the whole record) that a
    // rebasing merge queue landed on top of its promotion commit stands for both.
    let mut newer: Option<(git2::Oid, git2::Oid, Vec<Promotion>)> = None;
    for oid in walk {
        let commit = repo.find_commit(oid?)?;
        let time = Utc
            .timestamp_opt(commit.time().seconds(), 0)
            .single()
            .unwrap_or_default();
        if filter.since.is_some_and(|since| time < since) {
            // First-parent history is in commit order; committer times can be skewed, so
            // keep walking rather than stopping at the first older commit.
            continue;
        }
        let promotions = promotions_of(&commit);
        if promotions.is_empty() {
            newer = None;
            continue;
        }
        let same = |a: &[Promotion], b: &[Promotion]| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(a, b)| {
                    (&a.app, &a.environment, &a.to) == (&b.app, &b.environment, &b.to)
                })
        };
        let recorded_above = newer.as_ref().is_some_and(|(parent, tree, p)| {
            *parent == commit.id() && *tree == commit.tree_id() && same(p, &promotions)
        });
        newer = commit
            .parent_id(0)
            .ok()
            .map(|parent| (parent, commit.tree_id(), promotions.clone()));
        if recorded_above {
            continue;
        }
        // A group's commit records one promotion per member app: one entry each.
        for promotion in promotions {
            let entry = Entry {
                time,
                commit: oid_string(commit.id()),
                promotion,
            };
            if filter.keeps(&entry) {
                out.push(entry);
                if filter.limit.is_some_and(|l| out.len() >= l) {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

/// The promotions a first-parent commit records (several for a group's commit): its own
/// trailers, or, for a merge commit whose message has none (a merge queue writing GitHub's
/// default message), the trailers of the promotion commit it merged, with the PR number from
/// `Merge pull request #N`.
fn promotions_of(commit: &git2::Commit<'_>) -> Vec<Promotion> {
    let Ok(message) = std::str::from_utf8(commit.message_bytes()) else {
        return Vec::new();
    };
    let own = Promotion::parse_all(message);
    if !own.is_empty() || commit.parent_count() != 2 {
        return own;
    }
    let Some(merged) = commit.parent(1).ok() else {
        return Vec::new();
    };
    let number = message
        .strip_prefix("Merge pull request #")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    let mut promotions =
        Promotion::parse_all(std::str::from_utf8(merged.message_bytes()).unwrap_or_default());
    for p in &mut promotions {
        if p.pull_request.is_none() {
            p.pull_request = number;
        }
    }
    promotions
}

fn oid_string(oid: git2::Oid) -> String {
    oid.to_string()
}

/// Aligned text columns for people.
pub fn table(entries: &[Entry]) -> String {
    let mut rows = vec![
        [
            "TIME",
            "ENV",
            "APP",
            "TAG",
            "FROM",
            "TO",
            "APPROVED BY",
            "PROMOTED BY",
            "PR",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for e in entries {
        let p = &e.promotion;
        rows.push(vec![
            e.time.format("%Y-%m-%d %H:%M").to_string(),
            p.environment.clone(),
            p.app.clone(),
            p.tag.clone().unwrap_or_else(|| "-".into()),
            p.from
                .as_ref()
                .map_or("-".into(), |d| d.short().to_string()),
            p.to.short().to_string(),
            if p.approved_by.is_empty() {
                "-".into()
            } else {
                p.approved_by.join(",")
            },
            p.promoted_by.clone().unwrap_or_else(|| "-".into()),
            match (p.pull_request, p.is_rollback()) {
                (Some(n), true) => format!("#{n} (rollback)"),
                (None, true) => "(rollback)".into(),
                (Some(n), false) => format!("#{n}"),
                (None, false) => "-".into(),
            },
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Digest;

    #[test]
    fn the_table_marks_rollbacks_in_the_pr_column() {
        let entry = |pr, rollback_of: Option<Digest>| Entry {
            time: Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap(),
            commit: "c".into(),
            promotion: Promotion {
                app: "web".into(),
                environment: "prod".into(),
                from: None,
                to: Digest::of(b"v1"),
                tag: Some("1.0.0".into()),
                approved_by: vec![],
                promoted_by: None,
                pull_request: Some(pr),
                rollback_of,
            },
        };
        let out = table(&[entry(12, Some(Digest::of(b"v2"))), entry(11, None)]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].ends_with("#12 (rollback)"), "{out}");
        assert!(lines[2].ends_with("#11"), "{out}");
    }
}
