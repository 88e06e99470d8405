//! The report as aligned text columns (`baton dora`, and the end of the sandbox demo).

use super::{Band, Metrics, Report, human};

fn band(b: Option<Band>) -> &'static str {
    b.map_or("-", Band::as_str)
}

fn row(env: &str, app: &str, m: &Metrics) -> Vec<String> {
    let f = &m.deployment_frequency;
    let l = &m.lead_time;
    let c = &m.change_failure_rate;
    let r = &m.time_to_restore;
    let mut from = Vec::new();
    if l.from_source_commit > 0 {
        from.push(format!("{} source commit", l.from_source_commit));
    }
    if l.from_image_created > 0 {
        from.push(format!("{} image created", l.from_image_created));
    }
    if l.unknown > 0 {
        from.push(format!("{} unknown", l.unknown));
    }
    vec![
        env.to_string(),
        app.to_string(),
        format!(
            "{} ({:.2}/day, {:.1}/week) {}",
            f.deployments,
            f.per_day,
            f.per_week,
            band(f.band)
        ),
        match l.median_seconds {
            Some(s) => format!("{} {}", human(s), band(l.band)),
            None => "-".into(),
        },
        if from.is_empty() {
            "-".into()
        } else {
            from.join(", ")
        },
        match c.rate {
            Some(rate) => format!(
                "{:.0}% ({}/{}) {}",
                rate * 100.0,
                c.failed,
                c.total,
                band(c.band)
            ),
            None => "-".into(),
        },
        match (r.median_seconds, r.unrestored) {
            (Some(s), 0) => format!("{} {}", human(s), band(r.band)),
            (Some(s), n) => format!("{} {} ({n} not restored)", human(s), band(r.band)),
            (None, 0) => "-".into(),
            (None, n) => format!("{n} not restored"),
        },
    ]
}

/// One row per environment (app `*`, all apps together), then one per app there.
pub fn table(report: &Report) -> String {
    let mut rows = vec![
        [
            "ENV",
            "APP",
            "DEPLOYMENTS",
            "LEAD TIME",
            "LEAD TIME FROM",
            "CHANGE FAILURE RATE",
            "TIME TO RESTORE",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for e in &report.environments {
        rows.push(row(&e.env, "*", &e.metrics));
        for a in &e.apps {
            rows.push(row(&e.env, &a.app, &a.metrics));
        }
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "DORA metrics from {} to {} (median lead time and time to restore; bands per docs/dora.md)\n",
        report.since.format("%Y-%m-%d %H:%M"),
        report.until.format("%Y-%m-%d %H:%M UTC")
    );
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
    use super::super::*;
    use crate::gitrepo::trailers::Promotion;

    #[test]
    fn the_table_has_a_row_per_environment_and_per_app_with_bands_and_sources() {
        let at = Utc.with_ymd_and_hms(2026, 11, 10, 12, 0, 0).unwrap();
        let entry = Entry {
            time: at,
            commit: "c1".into(),
            promotion: Promotion {
                app: "web".into(),
                environment: "dev".into(),
                from: None,
                to: Digest::of(b"x"),
                tag: None,
                approved_by: vec![],
                promoted_by: None,
                pull_request: None,
                rollback_of: None,
            },
        };
        let facts = Facts {
            starts: BTreeMap::from([(
                Digest::of(b"x"),
                ChangeStart {
                    at: at - Duration::minutes(30),
                    source: StartSource::ImageCreated,
                },
            )]),
            ..Facts::default()
        };
        let w = Window::last_days(7, at + Duration::hours(1));
        let out = table(&compute(&[entry], &["dev".into()], &facts, &w));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[1].starts_with("ENV"), "{out}");
        assert!(lines[2].starts_with("dev  *"), "{out}");
        assert!(lines[3].starts_with("dev  web"), "{out}");
        assert!(lines[3].contains("1 (0.14/day, 1.0/week) high"), "{out}");
        assert!(lines[3].contains("30m 0s elite"), "{out}");
        assert!(lines[3].contains("1 image created"), "{out}");
        assert!(lines[3].contains("0% (0/1) elite"), "{out}");
    }
}
