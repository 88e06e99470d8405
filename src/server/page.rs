//! The status page (`GET /`), server-rendered HTML and SVG from the [`StatusView`] and the
//! DORA report: per app, the environments as a pipeline, left to right with arrows, each with
//! its tag, health and how long that health has held, the pending PR and its gate verdicts on
//! the arrow into it; per environment, the DORA tiles with 30-day sparklines and the last 20
//! history entries. A small script (`page/page.js`, no framework) polls `/api/v1/state` and
//! swaps `<main>` when the view changed. Light and dark follow `prefers-color-scheme`; the
//! layout folds to one column on a phone. Every value from Git, the forge or the cluster is
//! escaped, and only `http(s)` URLs become links.

mod tiles;

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::view::{Cell, EnvironmentView, ImageRef, PendingPromotion, StatusView};
use crate::dora::Report;

pub use tiles::sparkline;

/// Without the script, the page reloads itself this often.
pub const REFRESH_SECS: u32 = 15;

const STYLE: &str = include_str!("page/page.css");
const SCRIPT: &str = include_str!("page/page.js");

/// `s` with the HTML metacharacters escaped, for text and attribute values alike.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Only web links become `href`s (a `javascript:` URL from a forge must not).
fn safe_url(url: &str) -> Option<&str> {
    (url.starts_with("https://") || url.starts_with("http://")).then_some(url)
}

/// `text` as a link to `url` when it is a web URL, else as plain text.
fn link(out: &mut String, class: &str, url: Option<&str>, text: &str) {
    match url.and_then(safe_url) {
        Some(url) => {
            let _ = write!(
                out,
                r#"<a class="{class}" href="{}">{}</a>"#,
                escape(url),
                escape(text)
            );
        }
        None => {
            let _ = write!(out, r#"<span class="{class}">{}</span>"#, escape(text));
        }
    }
}

fn image(out: &mut String, image: &ImageRef) {
    let tag = image.tag.as_deref().unwrap_or("untagged");
    let _ = write!(
        out,
        r#"<span class="tag">{}</span> <code class="digest" title="{}">{}</code>"#,
        escape(tag),
        escape(image.digest.as_str()),
        escape(image.digest.short()),
    );
}

/// The whole page. `dora` is the report of the last 30 days, when computed.
pub fn render(view: &StatusView, dora: Option<&Report>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let title = if view.repo.name.is_empty() {
        "baton".to_string()
    } else {
        format!("baton · {}", view.repo.name)
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"></noscript>\
         <title>{0}</title><style>{STYLE}</style></head><body>\n<header><h1>{0}</h1>\n",
        escape(&title),
    );
    out.push_str("<p id=\"repo\">");
    if view.repo.name.is_empty() {
        out.push_str("config repository not read yet");
    } else {
        out.push_str("config repository ");
        link(&mut out, "repo", view.repo.url.as_deref(), &view.repo.name);
        let _ = write!(out, " branch <code>{}</code>", escape(&view.repo.branch));
        if let Some(c) = &view.repo.commit {
            let _ = write!(
                out,
                " at <code title=\"{}\">{}</code>",
                escape(c),
                escape(&c.chars().take(12).collect::<String>())
            );
        }
    }
    match view.updated_at {
        Some(t) => {
            let _ = write!(out, " <span class=\"muted\">updated {}</span>", time(t));
        }
        None => out.push_str(" <span class=\"muted\">(waiting for the first pass)</span>"),
    }
    out.push_str("</p></header>\n");
    let _ = writeln!(
        out,
        "<main id=\"main\" data-updated=\"{}\">",
        view.updated_at.map(rfc3339).unwrap_or_default()
    );
    if view.apps.is_empty() || view.environments.is_empty() {
        out.push_str("<p id=\"empty\">No apps or environments yet.</p>\n");
    } else {
        pipelines(&mut out, view);
        environments(&mut out, view, dora);
    }
    let _ = write!(out, "</main>\n<script>{SCRIPT}</script>\n</body></html>\n");
    out
}

fn pipelines(out: &mut String, view: &StatusView) {
    out.push_str("<section id=\"pipelines\" aria-labelledby=\"h-pipelines\"><h2 id=\"h-pipelines\">Pipelines</h2>\n");
    for app in &view.apps {
        let _ = write!(
            out,
            "<article class=\"app\" data-app=\"{0}\"><h3>{0} <span class=\"muted\">{1}</span></h3>\
             <ol class=\"pipeline\" aria-label=\"{0}: environments in promotion order\">",
            escape(&app.name),
            escape(&app.image)
        );
        for (i, cell) in app.cells.iter().enumerate() {
            if i > 0 {
                arrow(out, cell);
            }
            env_node(out, cell, view.updated_at);
        }
        out.push_str("</ol></article>\n");
    }
    out.push_str("</section>\n");
}

const ARROW_SVG: &str = "<svg viewBox=\"0 0 100 18\" preserveAspectRatio=\"none\" aria-hidden=\"true\"><path d=\"M2 9H92\"/><path d=\"M84 3L96 9L84 15\"/></svg>";
const ARROW_DOWN_SVG: &str = "<svg viewBox=\"0 0 18 26\" aria-hidden=\"true\"><path d=\"M9 2V22\"/><path d=\"M3 16L9 24L15 16\"/></svg>";

/// The arrow into `cell`'s environment: its pending PR and the gate verdicts.
fn arrow(out: &mut String, cell: &Cell) {
    let _ = write!(
        out,
        "<li class=\"arrow\" data-env=\"{}\"><span class=\"arrow-wide\">{ARROW_SVG}</span>",
        escape(&cell.env)
    );
    match &cell.pending {
        Some(p) => pending(out, p),
        None => out.push_str("<div class=\"muted\">nothing pending</div>"),
    }
    let _ = write!(
        out,
        "<span class=\"arrow-down\">{ARROW_DOWN_SVG}</span></li>"
    );
}

fn pending(out: &mut String, p: &PendingPromotion) {
    out.push_str("<div class=\"pending\">");
    link(out, "pr", p.url.as_deref(), &format!("#{}", p.number));
    out.push_str(" → ");
    image(out, &p.to);
    out.push_str("</div>");
    if p.held {
        let _ = write!(
            out,
            "<div class=\"hold\">on hold{}</div>",
            p.hold_reason
                .as_deref()
                .map(|r| format!(": {}", escape(r)))
                .unwrap_or_default()
        );
    }
    if !p.gates.is_empty() {
        out.push_str("<ul class=\"gates\">");
        for g in &p.gates {
            let _ = write!(
                out,
                "<li class=\"gate gate-{}\" title=\"{}\">{}: {}</li>",
                escape(&g.verdict),
                escape(&g.verdict),
                escape(&g.gate),
                escape(&g.reason)
            );
        }
        out.push_str("</ul>");
    }
    match &p.blocking {
        Some(b) => {
            let _ = write!(
                out,
                "<div class=\"blocking\">waiting on {}</div>",
                escape(b)
            );
        }
        None => out.push_str("<div class=\"blocking muted\">no gate blocking</div>"),
    }
}

fn env_node(out: &mut String, cell: &Cell, updated: Option<DateTime<Utc>>) {
    let health = cell.health.as_str();
    let _ = write!(
        out,
        "<li class=\"env health-{health}\" data-env=\"{0}\"><div class=\"env-name\">{0}</div><div class=\"pin\">",
        escape(&cell.env)
    );
    match &cell.pinned {
        Some(p) => image(out, p),
        None => out.push_str("<span class=\"muted\">not pinned</span>"),
    }
    let _ = write!(out, "</div><div class=\"health\">{health}");
    if let Some(since) = cell.since {
        let held = updated.map_or(0, |u| (u - since).num_seconds());
        let _ = write!(
            out,
            " <span class=\"muted since\" data-since=\"{}\" title=\"since {}\">for {}</span>",
            rfc3339(since),
            time(since),
            crate::dora::human(held)
        );
    }
    out.push_str("</div>");
    if let (Some(running), Some(pinned)) = (&cell.running, &cell.pinned)
        && *running != pinned.digest
    {
        let _ = write!(
            out,
            "<div class=\"muted\">running <code>{}</code></div>",
            escape(running.short())
        );
    }
    if let Some(d) = &cell.last_deploy {
        let _ = write!(out, "<div class=\"deployed muted\">deployed {}", time(d.at));
        if let Some(pr) = d.pull_request {
            let _ = write!(out, " (#{pr})");
        }
        if let Some(by) = &d.promoted_by {
            let _ = write!(out, " by {}", escape(by));
        }
        out.push_str("</div>");
    }
    out.push_str("</li>");
}

fn environments(out: &mut String, view: &StatusView, dora: Option<&Report>) {
    out.push_str("<section id=\"environments\" aria-labelledby=\"h-environments\"><h2 id=\"h-environments\">Environments</h2>\n");
    for env in &view.environments {
        environment(
            out,
            env,
            dora.and_then(|r| r.environments.iter().find(|e| e.env == env.name)),
        );
    }
    out.push_str("</section>\n");
}

fn environment(out: &mut String, env: &EnvironmentView, dora: Option<&crate::dora::EnvReport>) {
    let _ = write!(
        out,
        "<article class=\"envpanel\" data-env=\"{0}\"><h3>{0}</h3>",
        escape(&env.name)
    );
    if let Some(r) = &env.last_reconcile {
        let _ = write!(
            out,
            "<p class=\"reconcile\" title=\"{}\">reconciled {} · {}{}</p>",
            escape(&r.summary),
            time(r.finished_at),
            r.health.as_str(),
            if r.drift > 0 {
                format!(" · {} drift corrected", r.drift)
            } else {
                String::new()
            }
        );
        if let Some(e) = &r.error {
            let _ = write!(out, "<p class=\"reconcile hold\">{}</p>", escape(e));
        }
    }
    match dora {
        Some(d) => tiles::tiles(out, d),
        None => out.push_str("<p class=\"muted\">DORA metrics not computed yet</p>"),
    }
    if env.recent.is_empty() {
        out.push_str("<p class=\"muted\">no promotions recorded</p>");
    } else {
        let _ = write!(
            out,
            "<ol class=\"history\" aria-label=\"{}: last promotions, newest first\">",
            escape(&env.name)
        );
        for e in &env.recent {
            let _ = write!(
                out,
                "<li><time datetime=\"{}\">{}</time><span>{}",
                rfc3339(e.at),
                time(e.at),
                escape(&e.app)
            );
            let _ = write!(
                out,
                " <span class=\"tag\">{}</span></span>",
                escape(e.tag.as_deref().unwrap_or("untagged"))
            );
            if e.rollback {
                out.push_str("<span class=\"rollback\">rollback</span>");
            }
            if let Some(n) = e.pull_request {
                link(out, "pr", e.pull_request_url.as_deref(), &format!("#{n}"));
            }
            link(
                out,
                "commit",
                e.commit_url.as_deref(),
                &e.commit.chars().take(7).collect::<String>(),
            );
            if let Some(by) = &e.promoted_by {
                let _ = write!(out, "<span class=\"muted\">by {}</span>", escape(by));
            }
            out.push_str("</li>");
        }
        out.push_str("</ol>");
    }
    out.push_str("</article>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::view::tests::{at, fixture};

    #[test]
    fn escape_covers_the_html_metacharacters() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn each_app_is_a_pipeline_of_its_environments_with_the_pending_pr_on_the_arrow() {
        let f = fixture();
        let v = StatusView::build(&f.inputs(at(10, 0)), None);
        let html = render(&v, None);
        // Two apps, three environments each, an arrow into staging and one into prod.
        assert_eq!(html.matches("<li class=\"env ").count(), 6, "{html}");
        assert_eq!(html.matches("<li class=\"arrow\"").count(), 4, "{html}");
        let dev = html
            .find("<li class=\"env health-healthy\" data-env=\"dev\">")
            .unwrap();
        let into_staging = html
            .find("<li class=\"arrow\" data-env=\"staging\">")
            .unwrap();
        let staging = html
            .find("data-env=\"staging\"><div class=\"env-name\">")
            .unwrap();
        assert!(dev < into_staging && into_staging < staging, "{html}");
        let arrow = &html[into_staging..staging];
        assert!(
            arrow.contains("<a class=\"pr\" href=\"https://github.com/shop/config/pull/7\">#7</a>"),
            "{arrow}"
        );
        assert!(arrow.contains("<li class=\"gate gate-passed\""), "{arrow}");
        assert!(
            arrow.contains("soak: dev has been healthy for 5m of 10m"),
            "{arrow}"
        );
        // The soak in progress, worded as of the view's time.
        assert!(
            arrow.contains("waiting on soak: dev: healthy for 1h of 2h"),
            "{arrow}"
        );
        // dev has been healthy since 09:00, an hour before the view.
        assert!(
            html.contains("data-since=\"2026-11-21T09:00:00Z\""),
            "{html}"
        );
        assert!(html.contains(">for 1h 0m</span>"), "{html}");
    }

    #[test]
    fn environments_list_their_history_with_links_and_say_when_dora_is_not_ready() {
        let f = fixture();
        let html = render(&StatusView::build(&f.inputs(at(10, 0)), None), None);
        let dev = html
            .find("<article class=\"envpanel\" data-env=\"dev\">")
            .unwrap();
        let panel = &html[dev..dev + html[dev..].find("</article>").unwrap()];
        assert_eq!(panel.matches("<li><time").count(), 2, "{panel}");
        assert!(
            panel.contains("<a class=\"pr\" href=\"https://github.com/shop/config/pull/6\">#6</a>"),
            "{panel}"
        );
        assert!(panel.contains("/commit/c2c2c2c2"), "{panel}");
        assert!(panel.contains("DORA metrics not computed yet"), "{panel}");
    }

    #[test]
    fn with_a_report_each_environment_has_four_tiles_with_sparklines() {
        let f = fixture();
        let v = StatusView::build(&f.inputs(at(10, 0)), None);
        let report = crate::dora::compute(
            &f.history,
            &["dev".into(), "staging".into(), "prod".into()],
            &Default::default(),
            &crate::dora::Window::last_days(30, at(10, 0)),
        );
        let html = render(&v, Some(&report));
        assert_eq!(html.matches("<div class=\"tile\"").count(), 12, "{html}");
        assert_eq!(html.matches("<svg class=\"spark\"").count(), 12);
        assert!(html.contains("data-metric=\"deployment-frequency\""));
        assert!(html.contains("<span class=\"band band-"), "{html}");
    }

    #[test]
    fn a_javascript_url_is_not_a_link() {
        let mut f = fixture();
        f.open[0].url = Some("javascript:alert(1)".into());
        f.repo.url = None;
        let html = render(&StatusView::build(&f.inputs(at(10, 0)), None), None);
        assert!(!html.contains("javascript:"));
        assert!(html.contains("<span class=\"pr\">#7</span>"));
    }

    #[test]
    fn the_page_follows_the_color_scheme_and_polls_the_state() {
        let f = fixture();
        let html = render(&StatusView::build(&f.inputs(at(10, 0)), None), None);
        assert!(html.contains("@media (prefers-color-scheme:dark)"));
        assert!(html.contains("fetch(\"api/v1/state\""));
        assert!(html.contains("<noscript><meta http-equiv=\"refresh\""));
        assert!(html.contains("<main id=\"main\" data-updated=\"2026-11-21T10:00:00Z\">"));
    }
}
