//! `baton registry scan` output: an aligned table for people, JSON for scripts.

use std::fmt::Write as _;

use serde_json::json;

use super::metrics::RequestStats;
use super::scan::{AppScan, Candidate, ScanError};
use super::verify::AttestationResult;

/// Shorten `sha256:<64 hex>` to `sha256:<12 hex>` for tables.
pub fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => d.to_string(),
    }
}

fn table(rows: &[Vec<String>], indent: &str) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::from(indent);
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn candidate_row(c: &Candidate, newest: bool) -> Vec<String> {
    let meta = c.meta.as_ref();
    vec![
        if newest { "*".into() } else { " ".into() },
        c.tag.clone(),
        c.digest
            .as_deref()
            .map_or_else(|| "-".to_string(), short_digest),
        meta.and_then(|m| m.created).map_or_else(
            || "-".into(),
            |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        ),
        c.signature.to_string(),
        meta.and_then(|m| m.revision.as_deref())
            .map_or_else(|| "-".into(), |r| r.chars().take(12).collect()),
    ]
}

/// The table: per app its rule, newest, candidates, and (with `explain`) rejected tags.
pub fn render_table(results: &[Result<AppScan, ScanError>], explain: bool) -> String {
    let mut out = String::new();
    for (i, result) in results.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let scan = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{}  error{}: {e}",
                    e.app(),
                    if e.is_transient() {
                        " (transient, retry later)"
                    } else {
                        ""
                    }
                );
                continue;
            }
        };
        let _ = writeln!(
            out,
            "{}  {}  ({}, newest by {})",
            scan.app,
            scan.image,
            scan.rule,
            match scan.newest_by {
                crate::config::pipeline::Newest::Semver => "semver",
                crate::config::pipeline::Newest::Created => "creation time",
            }
        );
        match &scan.newest {
            Some(n) => {
                let _ = writeln!(
                    out,
                    "  newest: {} {}",
                    n.tag,
                    n.digest.as_deref().unwrap_or("-")
                );
            }
            None => out.push_str("  newest: none (no blessed tag passed)\n"),
        }
        if !scan.candidates.is_empty() {
            let mut rows = vec![
                ["", "TAG", "DIGEST", "CREATED", "SIGNATURE", "REVISION"]
                    .map(String::from)
                    .to_vec(),
            ];
            let newest_tag = scan.newest.as_ref().map(|n| n.tag.as_str());
            rows.extend(
                scan.candidates
                    .iter()
                    .map(|c| candidate_row(c, Some(c.tag.as_str()) == newest_tag)),
            );
            out.push_str(&table(&rows, ""));
        }
        if explain {
            let attested: Vec<&Candidate> = scan
                .candidates
                .iter()
                .filter(|c| !c.attestations.is_empty())
                .collect();
            if !attested.is_empty() {
                out.push_str("  attestations:\n");
                let mut rows = vec![
                    ["TAG", "PREDICATE TYPE", "STATUS", "ARTIFACT"]
                        .map(String::from)
                        .to_vec(),
                ];
                for c in attested {
                    for a in &c.attestations {
                        let (status, artifact) = match &a.result {
                            AttestationResult::Verified { artifact, .. } => {
                                ("verified".to_string(), short_digest(artifact))
                            }
                            AttestationResult::Missing => ("missing".into(), "-".into()),
                            AttestationResult::Rejected { reason } => {
                                (format!("rejected: {reason}"), "-".into())
                            }
                        };
                        rows.push(vec![
                            c.tag.clone(),
                            a.predicate_type.clone(),
                            status,
                            artifact,
                        ]);
                    }
                }
                out.push_str(&table(&rows, "  "));
            }
            if !scan.rejected.is_empty() {
                out.push_str("  rejected:\n");
                let mut rows = vec![["TAG", "DIGEST", "REASON"].map(String::from).to_vec()];
                rows.extend(scan.rejected.iter().map(|r| {
                    vec![
                        r.tag.clone(),
                        r.digest.as_deref().map_or_else(|| "-".into(), short_digest),
                        r.reason.clone(),
                    ]
                }));
                out.push_str(&table(&rows, "  "));
            }
        } else if !scan.rejected.is_empty() {
            let _ = writeln!(
                out,
                "  {} tag(s) rejected; --explain shows why",
                scan.rejected.len()
            );
        }
    }
    out
}

/// The JSON document: `{"apps": [...], "requests": {...}}`. Rejections are included only
/// with `explain`.
pub fn render_json(
    results: &[Result<AppScan, ScanError>],
    explain: bool,
    stats: &RequestStats,
) -> serde_json::Value {
    let apps: Vec<serde_json::Value> = results
        .iter()
        .map(|r| match r {
            Ok(scan) => {
                let mut v = serde_json::to_value(scan).unwrap_or_default();
                if !explain && let Some(obj) = v.as_object_mut() {
                    let n = scan.rejected.len();
                    obj.remove("rejected");
                    obj.insert("rejected_count".into(), json!(n));
                }
                v
            }
            Err(e) => json!({
                "app": e.app(),
                "error": e.to_string(),
                "transient": e.is_transient(),
            }),
        })
        .collect();
    json!({ "apps": apps, "requests": stats })
}
