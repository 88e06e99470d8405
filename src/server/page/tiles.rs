//! The DORA tiles of an environment: one per metric, its figure, its band and an SVG
//! sparkline of the last 30 days (`crate::dora::Day`).

use std::fmt::Write as _;

use crate::dora::{Band, Day, EnvReport, human};

/// Sparkline size (SVG user units; CSS stretches the width).
const W: f64 = 120.0;
const H: f64 = 28.0;

/// An SVG polyline of `values` (gaps where `None`), scaled to the largest value.
pub fn sparkline(label: &str, values: &[Option<f64>]) -> String {
    let max = values.iter().flatten().fold(0.0_f64, |m, v| m.max(*v));
    let n = values.len().max(2) - 1;
    let mut out = format!(
        r#"<svg class="spark" viewBox="0 0 {W} {H}" preserveAspectRatio="none" role="img" aria-label="{}"><line x1="0" y1="{y}" x2="{W}" y2="{y}"/>"#,
        super::escape(label),
        y = H - 1.0
    );
    let mut run: Vec<String> = Vec::new();
    let flush = |run: &mut Vec<String>, out: &mut String| {
        if let [point] = run.as_slice() {
            // A lone point (a day between gaps) is a dot.
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(out, r#"<circle cx="{x}" cy="{y}" r="2"/>"#);
        } else if !run.is_empty() {
            let _ = write!(out, r#"<polyline points="{}"/>"#, run.join(" "));
        }
        run.clear();
    };
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                // 2 units of margin each side, so that end dots are whole.
                let x = 2.0 + (W - 4.0) * i as f64 / n as f64;
                let y = if max > 0.0 {
                    (H - 2.0) - (H - 4.0) * (v / max)
                } else {
                    H - 2.0
                };
                run.push(format!("{x:.1},{y:.1}"));
            }
            None => flush(&mut run, &mut out),
        }
    }
    flush(&mut run, &mut out);
    out.push_str("</svg>");
    out
}

fn band(b: Option<Band>) -> String {
    match b {
        Some(b) => format!(
            r#"<span class="band band-{0}" title="DORA band">{0}</span>"#,
            b.as_str()
        ),
        None => String::new(),
    }
}

fn tile(out: &mut String, metric: &str, label: &str, value: &str, b: Option<Band>, spark: String) {
    let _ = write!(
        out,
        r#"<div class="tile" data-metric="{metric}"><div class="tile-label">{label}</div><div class="tile-value">{}{}</div>{spark}</div>"#,
        super::escape(value),
        band(b)
    );
}

/// The four tiles of `env`.
pub fn tiles(out: &mut String, env: &EnvReport) {
    let m = &env.metrics;
    let days = &env.daily;
    let series = |f: &dyn Fn(&Day) -> Option<f64>| days.iter().map(f).collect::<Vec<_>>();
    out.push_str(r#"<div class="tiles">"#);
    let f = &m.deployment_frequency;
    tile(
        out,
        "deployment-frequency",
        "Deployment frequency",
        &format!("{:.1}/week", f.per_week),
        f.band,
        sparkline(
            "deployments per day, last 30 days",
            &series(&|d| Some(d.deployments as f64)),
        ),
    );
    let l = &m.lead_time;
    let from = match (l.from_source_commit, l.from_image_created) {
        (0, 0) => String::new(),
        (c, 0) => format!(" ({c} from source commits)"),
        (0, i) => format!(" ({i} from image created)"),
        (c, i) => format!(" ({c} source commit, {i} image created)"),
    };
    tile(
        out,
        "lead-time",
        &format!("Lead time{from}"),
        &l.median_seconds.map_or("unknown".into(), human),
        l.band,
        sparkline(
            "median lead time per day, last 30 days",
            &series(&|d| d.lead_time_seconds.map(|s| s as f64)),
        ),
    );
    let c = &m.change_failure_rate;
    tile(
        out,
        "change-failure-rate",
        "Change failure rate",
        &c.rate.map_or("-".into(), |r| {
            format!("{:.0}% ({}/{})", r * 100.0, c.failed, c.total)
        }),
        c.band,
        sparkline(
            "failed promotions per day, last 30 days",
            &series(&|d| (d.deployments > 0).then_some(d.failed as f64)),
        ),
    );
    let r = &m.time_to_restore;
    let restore = match (r.median_seconds, r.unrestored) {
        (Some(s), 0) => human(s),
        (Some(s), n) => format!("{} ({n} open)", human(s)),
        (None, 0) => "-".into(),
        (None, n) => format!("{n} not restored"),
    };
    tile(
        out,
        "time-to-restore",
        "Time to restore",
        &restore,
        r.band,
        sparkline(
            "median time to restore per day, last 30 days",
            &series(&|d| d.restore_seconds.map(|s| s as f64)),
        ),
    );
    out.push_str("</div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_draws_runs_of_known_values_scaled_to_the_largest() {
        let svg = sparkline("x <y>", &[Some(0.0), Some(2.0), None, Some(1.0), Some(2.0)]);
        assert!(svg.contains(r#"aria-label="x &lt;y&gt;""#), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        // The largest value sits at the top margin, zero at the bottom one.
        assert!(svg.contains(r#"points="2.0,26.0 31.0,2.0""#), "{svg}");
        assert!(svg.contains(r#"points="89.0,14.0 118.0,2.0""#), "{svg}");
    }

    #[test]
    fn a_lone_point_is_still_drawn() {
        let svg = sparkline("x", &[None, Some(3.0), None]);
        assert_eq!(svg.matches("<polyline").count(), 0, "{svg}");
        assert!(
            svg.contains(r#"<circle cx="60.0" cy="2.0" r="2"/>"#),
            "{svg}"
        );
    }
}
