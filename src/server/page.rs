//! The status page (`GET /`): the [`StatusView`] as one server-rendered HTML table, apps ×
//! environments. No JavaScript; the page refreshes itself with `<meta http-equiv=refresh>`.
//! Every value from Git, the forge or the cluster is escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::view::{Cell, ImageRef, StatusView};

/// How often the browser reloads the page.
pub const REFRESH_SECS: u32 = 15;

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

/// Only web links become `href`s (a `javascript:` URL from a forge must not).
fn safe_url(url: &str) -> Option<&str> {
    (url.starts_with("https://") || url.starts_with("http://")).then_some(url)
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

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1f2328}\
table{border-collapse:collapse}th,td{border:1px solid #d0d7de;padding:.5rem .7rem;vertical-align:top;text-align:left}\
th{background:#f6f8fa}td div{margin:.15rem 0}code{font-size:.85em}.muted{color:#656d76;font-size:.85em}\
.health{font-weight:600}.health::before{content:'\\25CF  ';}\
.health-healthy .health{color:#1a7f37}.health-progressing .health{color:#9a6700}\
.health-failed .health{color:#cf222e}.health-unknown .health{color:#656d76}\
.hold{color:#cf222e}.reconcile{font-weight:normal;font-size:.8em;color:#656d76}";

/// The whole page.
pub fn render(view: &StatusView) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let title = if view.repo.name.is_empty() {
        "baton".to_string()
    } else {
        format!("baton · {}", view.repo.name)
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body>\n<h1>{}</h1>\n",
        escape(&title),
        escape(&title),
    );
    out.push_str("<p id=\"repo\">");
    if view.repo.name.is_empty() {
        out.push_str("config repository not read yet");
    } else {
        let _ = write!(
            out,
            "config repository <strong>{}</strong> branch <code>{}</code>",
            escape(&view.repo.name),
            escape(&view.repo.branch)
        );
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
    out.push_str("</p>\n");

    if view.apps.is_empty() || view.environments.is_empty() {
        out.push_str("<p id=\"empty\">No apps or environments yet.</p>\n</body></html>\n");
        return out;
    }

    out.push_str("<table id=\"status\">\n<thead><tr><th scope=\"col\">app</th>");
    for env in &view.environments {
        let _ = write!(
            out,
            "<th scope=\"col\" data-env=\"{0}\">{0}",
            escape(&env.name)
        );
        if let Some(r) = &env.last_reconcile {
            let _ = write!(
                out,
                "<div class=\"reconcile\" title=\"{}\">reconciled {} · {}{}</div>",
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
                let _ = write!(out, "<div class=\"reconcile hold\">{}</div>", escape(e));
            }
        }
        out.push_str("</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for app in &view.apps {
        let _ = write!(
            out,
            "<tr data-app=\"{0}\"><th scope=\"row\">{0}<div class=\"muted\">{1}</div></th>",
            escape(&app.name),
            escape(&app.image)
        );
        for cell in &app.cells {
            self::cell(&mut out, &app.name, cell);
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    out
}

fn cell(out: &mut String, app: &str, cell: &Cell) {
    let health = cell.health.as_str();
    let _ = write!(
        out,
        "<td class=\"cell health-{health}\" data-app=\"{}\" data-env=\"{}\">",
        escape(app),
        escape(&cell.env)
    );
    out.push_str("<div class=\"pin\">");
    match &cell.pinned {
        Some(p) => image(out, p),
        None => out.push_str("<span class=\"muted\">not pinned</span>"),
    }
    out.push_str("</div>");
    let _ = write!(out, "<div class=\"health\">{health}");
    if let Some(since) = cell.since {
        let _ = write!(out, " <span class=\"muted\">since {}</span>", time(since));
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
    if let Some(p) = &cell.pending {
        out.push_str("<div class=\"pending\">");
        match p.url.as_deref().and_then(safe_url) {
            Some(url) => {
                let _ = write!(
                    out,
                    "<a class=\"pr\" href=\"{}\">#{}</a>",
                    escape(url),
                    p.number
                );
            }
            None => {
                let _ = write!(out, "<span class=\"pr\">#{}</span>", p.number);
            }
        }
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
    out.push_str("</td>");
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
    fn the_page_has_one_cell_per_app_and_environment_with_its_facts() {
        let f = fixture();
        let v = StatusView::build(&f.inputs(at(10, 0)), None);
        let html = render(&v);
        assert_eq!(html.matches("<td class=\"cell").count(), 6);
        assert!(html.contains(
            "<td class=\"cell health-healthy\" data-app=\"web\" data-env=\"dev\"><div class=\"pin\"><span class=\"tag\">1.5.0</span>"
        ));
        assert!(
            html.contains("<a class=\"pr\" href=\"https://github.com/shop/config/pull/7\">#7</a>")
        );
        assert!(html.contains("waiting on soak: dev: healthy for 1h of 2h"));
        assert!(html.contains("<meta http-equiv=\"refresh\""));
    }

    #[test]
    fn a_javascript_url_is_not_a_link() {
        let mut f = fixture();
        f.open[0].url = Some("javascript:alert(1)".into());
        let html = render(&StatusView::build(&f.inputs(at(10, 0)), None));
        assert!(!html.contains("javascript:"));
        assert!(html.contains("<span class=\"pr\">#7</span>"));
    }
}
