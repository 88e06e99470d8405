//! The promotion dashboard: one issue in the config repo, "baton: promotions", edited in
//! place, showing for every app × environment what runs (tag, digest, since when), the open
//! PR and the gate it waits on, holds, and the last failure.
//!
//! It is output only. Commands stay in PR comments, where GitHub records who wrote them; the
//! issue body is never read as input (anyone who can edit the issue could write anything in
//! it). baton finds its issue by a label, its own authorship and a hidden marker, so a second
//! one is never opened, also after a crash between opening it and the next pass (the label and
//! marker are part of the create call itself).
//!
//! [`render`] and [`decide`] are pure; [`Dashboard::sync`] does the I/O: it renders the body
//! from the status view, and writes only when the body differs from what it last wrote (an
//! idle pass makes no call at all) and from what the issue says.

use std::collections::BTreeMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::forge::{Forge, ForgeError, IssueFilter, IssueInfo, IssueUpdate};
use crate::promote::state::SoakRestart;
use crate::server::view::{Cell, Health, StatusView};

/// The issue's title.
pub const TITLE: &str = "baton: promotions";
/// The label that finds it with one small read.
pub const LABEL: &str = "baton:dashboard";
/// The hidden marker that says the issue is baton's dashboard.
pub const MARKER: &str = "<!-- baton:dashboard -->";

/// Why an app × environment last went wrong, besides the view: the soak clock's last
/// interruption, by `(env, app)`.
pub type Restarts = BTreeMap<(String, String), SoakRestart>;

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Text for a table cell: one line, no `|`.
fn cell_text(s: &str) -> String {
    s.replace(['\n', '\r'], " ").replace('|', "\\|")
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min("sha256:".len() + 12)]
}

fn running(cell: &Cell) -> String {
    let digest = cell
        .running
        .as_ref()
        .or(cell.pinned.as_ref().map(|p| &p.digest));
    let Some(digest) = digest else {
        return "—".into();
    };
    // The tag is the pinned one's, or the last promotion's, when the digest is theirs.
    let tag = cell
        .pinned
        .as_ref()
        .filter(|p| p.digest == *digest)
        .and_then(|p| p.tag.clone())
        .or_else(|| {
            cell.last_deploy
                .as_ref()
                .filter(|d| d.digest == *digest)
                .and_then(|d| d.tag.clone())
        });
    let digest = format!("`{}`", short(digest.as_str()));
    match tag {
        Some(tag) => format!("`{}` {digest}", cell_text(&tag)),
        None => digest,
    }
}

fn since(cell: &Cell) -> String {
    match (cell.health, cell.since) {
        (Health::Unknown, _) => "not reported yet".into(),
        (h, Some(t)) => format!("{} since {}", h.as_str(), when(t)),
        (h, None) => h.as_str().into(),
    }
}

fn pull_request(cell: &Cell) -> (String, String, String) {
    let Some(p) = &cell.pending else {
        return ("—".into(), "—".into(), "—".into());
    };
    let to = match &p.to.tag {
        Some(tag) => format!("`{}`", cell_text(tag)),
        None => format!("`{}`", short(p.to.digest.as_str())),
    };
    let link = match &p.url {
        Some(url) => format!("[#{}]({url}) → {to}", p.number),
        None => format!("#{} → {to}", p.number),
    };
    // The gates' reasons carry absolute times; the live soak text ("healthy for 7m of 10m")
    // would change the body on every pass.
    let waits = p
        .gates
        .iter()
        .find(|g| g.verdict != "passed")
        .map(|g| format!("{}: {}", g.gate, g.reason))
        .or_else(|| p.blocking.clone().filter(|b| !b.starts_with("soak:")))
        .map(|w| cell_text(&w))
        .unwrap_or_else(|| "nothing (merging)".into());
    let hold = if p.held {
        match &p.hold_reason {
            Some(r) if !r.is_empty() => format!("held: {}", cell_text(r)),
            _ => "held".into(),
        }
    } else {
        "—".into()
    };
    (link, waits, hold)
}

/// The newest of: failing now, the soak clock's last interruption, the last rollback.
fn last_failure(view: &StatusView, app: &str, cell: &Cell, restarts: &Restarts) -> String {
    let mut seen: Vec<(DateTime<Utc>, String)> = Vec::new();
    if cell.health == Health::Failed {
        let t = cell.since.unwrap_or(DateTime::<Utc>::MIN_UTC);
        seen.push((t, "failing now".into()));
    }
    if let Some(r) = restarts.get(&(cell.env.clone(), app.to_string())) {
        seen.push((r.at, format!("{} ({})", cell_text(&r.reason), when(r.at))));
    }
    let rollback = view
        .environments
        .iter()
        .find(|e| e.name == cell.env)
        .and_then(|e| e.recent.iter().find(|r| r.app == app && r.rollback));
    if let Some(r) = rollback {
        let pr = r
            .pull_request
            .map(|n| format!(" by #{n}"))
            .unwrap_or_default();
        seen.push((r.at, format!("rolled back{pr} ({})", when(r.at))));
    }
    seen.into_iter()
        .max_by_key(|(t, _)| *t)
        .map(|(_, text)| text)
        .unwrap_or_else(|| "—".into())
}

/// The issue body for `view`. Deterministic: the same view gives the same text (absolute
/// times only), so an unchanged pipeline never rewrites the issue.
pub fn render(view: &StatusView, restarts: &Restarts, status_page: Option<&str>) -> String {
    let mut out = String::new();
    out.push_str(MARKER);
    out.push('\n');
    out.push_str(
        "What runs where, and what waits on what, kept up to date by baton.\n\n\
         > [!NOTE]\n\
         > This issue is read-only: baton rewrites it and never reads it, so edits here are lost \
         and commands here are ignored. Commands (`/promote <env>`, `/hold`, `/unhold`, \
         `/rollback <env>`) go in the promotion PRs' comments, where GitHub records who wrote them.\n\n",
    );
    let tip = view
        .repo
        .commit
        .as_deref()
        .map(|c| format!(" at `{}`", &c[..c.len().min(7)]))
        .unwrap_or_default();
    out.push_str(&format!(
        "Config branch `{}`{tip}.",
        cell_text(&view.repo.branch)
    ));
    if let Some(url) = status_page {
        out.push_str(&format!(" Status page: {url}"));
    }
    out.push('\n');
    if view.apps.is_empty() {
        out.push_str("\nNo apps in `policies/pipeline.yaml` yet.\n");
    }
    // One section per app; whether something in it waits, is held or failed.
    let sections: Vec<(bool, String)> = view
        .apps
        .iter()
        .map(|app| {
            let mut section = format!(
                "\n### {} (`{}`)\n\n| environment | running | health | pull request | waits on | hold | last failure |\n|---|---|---|---|---|---|---|\n",
                cell_text(&app.name),
                cell_text(&app.image)
            );
            let mut attention = false;
            for cell in &app.cells {
                let (pr, waits, hold) = pull_request(cell);
                let failure = last_failure(view, &app.name, cell, restarts);
                attention |= cell.pending.is_some() || failure != "—";
                section.push_str(&format!(
                    "| {} | {} | {} | {pr} | {waits} | {hold} | {failure} |\n",
                    cell_text(&cell.env),
                    running(cell),
                    since(cell),
                ));
            }
            (attention, section)
        })
        .collect();
    let whole: usize = out.len() + sections.iter().map(|(_, s)| s.len()).sum::<usize>();
    if whole <= MAX_BODY {
        for (_, section) in &sections {
            out.push_str(section);
        }
        return out;
    }
    // Too long for an issue: the apps with something waiting, held or failed first, then the
    // others, each in pipeline order, as many as fit; then the count of those left out.
    let room = MAX_BODY - FOOTER_ROOM;
    let (mut shown, mut waiting_left, mut settled_left) = (0, 0, 0);
    for first in [true, false] {
        for (attention, section) in sections.iter().filter(|(a, _)| *a == first) {
            if out.len() + section.len() <= room {
                out.push_str(section);
                shown += 1;
            } else if *attention {
                waiting_left += 1;
            } else {
                settled_left += 1;
            }
        }
    }
    out.push_str(&format!(
        "\n_{} of {} apps are not shown: an issue holds at most {MAX_BODY} characters. {settled_left} have nothing waiting, held or failed{}. The status page shows every app{}._\n",
        sections.len() - shown,
        sections.len(),
        if waiting_left > 0 {
            format!("; {waiting_left} more have something waiting, held or failed")
        } else {
            String::new()
        },
        status_page.map(|u| format!(": {u}")).unwrap_or_default()
    ));
    out
}

/// GitHub refuses an issue body over 65,536 characters (counted here in bytes, which are never
/// fewer).
pub const MAX_BODY: usize = 65_536;
/// Kept free for the line that counts the apps not shown.
const FOOTER_ROOM: usize = 1_024;

/// What to do with the dashboard issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// There is none: open it.
    Create,
    /// It is there and says something else (or lost its title or label, or was closed while
    /// there is news): edit it.
    Edit { number: u64, update: IssueUpdate },
    /// It is there and says this already.
    Keep { number: u64 },
}

/// baton's dashboard among `found`: the oldest issue by `bot` carrying the marker.
pub fn own<'i>(found: &'i [IssueInfo], bot: &str) -> Option<&'i IssueInfo> {
    found
        .iter()
        .filter(|i| i.author == bot && i.body.starts_with(MARKER))
        .min_by_key(|i| i.number)
}

/// What to do so that the dashboard says `body`, given the issues found.
pub fn decide(found: &[IssueInfo], bot: &str, body: &str) -> Step {
    let Some(issue) = own(found, bot) else {
        return Step::Create;
    };
    let changed = issue.body != body;
    let mut update = IssueUpdate::default();
    if changed {
        update.body = Some(body.to_string());
        // Closed by someone: news reopens it (`github.dashboard: false` turns it off).
        if !issue.open {
            update.open = Some(true);
        }
    }
    if issue.title != TITLE {
        update.title = Some(TITLE.to_string());
    }
    if !issue.labels.iter().any(|l| l == LABEL) {
        let mut labels = issue.labels.clone();
        labels.push(LABEL.to_string());
        update.labels = Some(labels);
    }
    if update == IssueUpdate::default() {
        Step::Keep {
            number: issue.number,
        }
    } else {
        Step::Edit {
            number: issue.number,
            update,
        }
    }
}

/// The dashboard of one service: what it last wrote, so that an idle pass costs nothing.
#[derive(Debug, Default)]
pub struct Dashboard {
    written: Mutex<Option<(u64, String)>>,
}

/// What [`Dashboard::sync`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    Unchanged,
    Created(u64),
    Edited(u64),
    /// The issue already said this (after a restart).
    Found(u64),
}

impl Dashboard {
    /// Make the dashboard issue say `body`.
    pub async fn sync<F: Forge>(&self, forge: &F, body: &str) -> Result<Synced, ForgeError> {
        if self
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|(_, b)| b == body)
        {
            return Ok(Synced::Unchanged);
        }
        let bot = forge.bot_login().to_string();
        let mut found = forge
            .issues(&IssueFilter {
                label: Some(LABEL.into()),
                creator: None,
                closed_too: true,
            })
            .await?;
        if own(&found, &bot).is_none() {
            // Someone may have removed the label: look among the bot's own open issues.
            found = forge
                .issues(&IssueFilter {
                    label: None,
                    creator: Some(bot.clone()),
                    closed_too: false,
                })
                .await?;
        }
        let done = match decide(&found, &bot, body) {
            Step::Create => {
                let issue = forge
                    .create_issue(TITLE, body, &[LABEL.to_string()])
                    .await?;
                tracing::info!(issue = issue.number, "opened the promotion dashboard issue");
                Synced::Created(issue.number)
            }
            Step::Edit { number, update } => {
                forge.update_issue(number, &update).await?;
                Synced::Edited(number)
            }
            Step::Keep { number } => Synced::Found(number),
        };
        let number = match done {
            Synced::Created(n) | Synced::Edited(n) | Synced::Found(n) => n,
            Synced::Unchanged => unreachable!("returned above"),
        };
        *self.written.lock().unwrap_or_else(|e| e.into_inner()) = Some((number, body.to_string()));
        Ok(done)
    }

    /// The issue's number, once synced.
    pub fn number(&self) -> Option<u64> {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(n, _)| *n)
    }
}

impl super::Loops {
    /// Bring the dashboard issue up to date with the status view (when `github.dashboard`).
    /// A failure is logged and tried again next pass; it never holds up a promotion.
    pub(super) async fn sync_dashboard(&self) {
        let Some(dashboard) = &self.dashboard else {
            return;
        };
        let Some(pipeline) = self.source.pipeline() else {
            return;
        };
        let restarts: Restarts = self
            .shared
            .deployments(&pipeline)
            .into_iter()
            .filter_map(|(key, d)| d.restarted.map(|r| (key, r)))
            .collect();
        let body = render(
            &self.state.view(),
            &restarts,
            self.cfg.server.public_url.as_deref(),
        );
        match dashboard.sync(self.engine.forge(), &body).await {
            Ok(Synced::Unchanged | Synced::Found(_)) => {}
            Ok(done) => tracing::debug!(?done, "promotion dashboard"),
            Err(e) => tracing::warn!(error = %e, "cannot update the promotion dashboard issue"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Digest;
    use crate::server::view::{
        AppView, EnvironmentView, GateVerdict, ImageRef, PendingPromotion, RecentEntry, RepoInfo,
    };
    use chrono::TimeZone;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, h, m, 0).unwrap()
    }

    fn cell(env: &str) -> Cell {
        Cell {
            env: env.into(),
            pinned: Some(ImageRef {
                tag: Some("1.0.0".into()),
                digest: digest('a'),
            }),
            health: Health::Healthy,
            since: Some(t(8, 0)),
            running: Some(digest('a')),
            last_deploy: None,
            pending: None,
        }
    }

    fn view() -> StatusView {
        let mut prod = cell("prod");
        prod.pending = Some(PendingPromotion {
            number: 12,
            url: Some("https://github.com/shop/config/pull/12".into()),
            to: ImageRef {
                tag: Some("1.1.0".into()),
                digest: digest('b'),
            },
            blocking: Some("soak: staging: healthy for 3m of 10m".into()),
            held: true,
            hold_reason: Some("release freeze | talk to ops".into()),
            gates: vec![
                GateVerdict {
                    gate: "checks".into(),
                    verdict: "passed".into(),
                    reason: "all passed".into(),
                },
                GateVerdict {
                    gate: "soak".into(),
                    verdict: "waiting".into(),
                    reason: "soaking in staging until 09:10 UTC".into(),
                },
            ],
        });
        let mut dev = cell("dev");
        dev.health = Health::Failed;
        dev.since = Some(t(8, 30));
        StatusView {
            repo: RepoInfo {
                name: "shop/config".into(),
                branch: "main".into(),
                commit: Some("0123456789abcdef".into()),
                url: Some("https://github.com/shop/config".into()),
            },
            environments: vec![EnvironmentView {
                name: "dev".into(),
                after: None,
                last_reconcile: None,
                recent: vec![RecentEntry {
                    at: t(7, 0),
                    app: "web".into(),
                    tag: Some("1.0.0".into()),
                    digest: digest('a'),
                    commit: "c1".into(),
                    commit_url: None,
                    pull_request: Some(9),
                    pull_request_url: None,
                    promoted_by: None,
                    rollback: true,
                }],
            }],
            apps: vec![AppView {
                name: "web".into(),
                image: "registry.example.com/shop/web".into(),
                cells: vec![dev, prod],
            }],
            updated_at: Some(t(8, 45)),
        }
    }

    #[test]
    fn every_cell_shows_what_runs_since_when_its_pr_its_gate_its_hold_and_its_last_failure() {
        let body = render(
            &view(),
            &Restarts::new(),
            Some("https://baton.example.com/"),
        );
        assert!(body.starts_with(MARKER), "{body}");
        assert!(
            body.contains("read-only") && body.contains("PRs' comments"),
            "{body}"
        );
        assert!(body.contains(
            "Config branch `main` at `0123456`. Status page: https://baton.example.com/"
        ));
        assert!(
            body.contains("### web (`registry.example.com/shop/web`)"),
            "{body}"
        );
        let dev = body.lines().find(|l| l.starts_with("| dev |")).unwrap();
        assert_eq!(
            dev,
            format!(
                "| dev | `1.0.0` `sha256:{}` | failed since 2026-12-03 08:30 UTC | — | — | — | failing now |",
                "a".repeat(12)
            )
        );
        let prod = body.lines().find(|l| l.starts_with("| prod |")).unwrap();
        assert!(
            prod.contains("healthy since 2026-12-03 08:00 UTC"),
            "{prod}"
        );
        assert!(
            prod.contains("[#12](https://github.com/shop/config/pull/12) → `1.1.0`"),
            "{prod}"
        );
        assert!(
            prod.contains("soak: soaking in staging until 09:10 UTC"),
            "{prod}"
        );
        assert!(
            prod.contains("held: release freeze \\| talk to ops"),
            "{prod}"
        );
        assert!(
            !body.contains("healthy for 3m"),
            "the live soak text would change every pass"
        );
    }

    #[test]
    fn the_last_failure_is_the_newest_of_interruption_and_rollback() {
        let mut v = view();
        v.apps[0].cells[0].health = Health::Healthy;
        let none = render(&v, &Restarts::new(), None);
        let dev = none.lines().find(|l| l.starts_with("| dev |")).unwrap();
        assert!(
            dev.ends_with("| rolled back by #9 (2026-12-03 07:00 UTC) |"),
            "{dev}"
        );
        let mut restarts = Restarts::new();
        restarts.insert(
            ("dev".into(), "web".into()),
            SoakRestart {
                at: t(7, 30),
                reason: "Deployment/web: ProgressDeadlineExceeded".into(),
            },
        );
        let body = render(&v, &restarts, None);
        let dev = body.lines().find(|l| l.starts_with("| dev |")).unwrap();
        assert!(
            dev.ends_with("| Deployment/web: ProgressDeadlineExceeded (2026-12-03 07:30 UTC) |"),
            "{dev}"
        );
    }

    #[test]
    fn a_view_too_long_for_an_issue_shows_the_apps_that_wait_and_counts_the_others() {
        let mut v = view();
        let template = v.apps[0].clone();
        let settled = AppView {
            cells: vec![cell("dev"), cell("prod")],
            ..template.clone()
        };
        v.apps.clear();
        for i in 0..3000 {
            let mut a = if i % 1000 == 7 {
                template.clone()
            } else {
                settled.clone()
            };
            a.name = format!("app-{i:04}");
            v.apps.push(a);
        }
        let whole: usize = v.apps.len();
        let body = render(&v, &Restarts::new(), Some("https://baton.example.com/"));
        assert!(body.len() <= MAX_BODY, "{} bytes", body.len());
        assert!(
            body.contains("### app-0007 "),
            "an app with an open PR is shown"
        );
        assert!(body.contains("### app-2007 "));
        assert!(
            body.contains("### app-0000 "),
            "settled ones fill the room left"
        );
        assert!(
            !body.contains("### app-2999 "),
            "the last settled one is counted, not shown"
        );
        let shown = body.matches("\n### app-").count();
        assert!(shown > 3, "{shown}");
        assert!(
            body.contains(&format!("{} of {whole} apps are not shown", whole - shown)),
            "{}",
            &body[body.len() - 400..]
        );
        assert!(body.contains("The status page shows every app: https://baton.example.com/"));
    }

    #[test]
    fn the_same_view_renders_the_same_body() {
        let mut later = view();
        later.updated_at = Some(t(9, 59));
        assert_eq!(
            render(&view(), &Restarts::new(), None),
            render(&later, &Restarts::new(), None)
        );
    }

    fn issue(number: u64, author: &str, body: &str) -> IssueInfo {
        IssueInfo {
            number,
            title: TITLE.into(),
            body: body.into(),
            author: author.into(),
            open: true,
            labels: vec![LABEL.into()],
            html_url: format!("https://github.com/shop/config/issues/{number}"),
        }
    }

    #[test]
    fn no_dashboard_yet_is_created() {
        assert_eq!(decide(&[], "baton[bot]", "b"), Step::Create);
        // Someone else's issue with the marker, or the bot's without it, is not the dashboard.
        let body = format!("{MARKER}\nfake");
        assert_eq!(
            decide(
                &[issue(3, "mallory", &body), issue(4, "baton[bot]", "x")],
                "baton[bot]",
                "b"
            ),
            Step::Create
        );
    }

    #[test]
    fn the_dashboard_is_edited_only_when_it_says_something_else() {
        let body = format!("{MARKER}\nnew");
        let old = issue(5, "baton[bot]", &format!("{MARKER}\nold"));
        assert_eq!(
            decide(&[old], "baton[bot]", &body),
            Step::Edit {
                number: 5,
                update: IssueUpdate {
                    body: Some(body.clone()),
                    ..IssueUpdate::default()
                }
            }
        );
        let same = issue(5, "baton[bot]", &body);
        assert_eq!(
            decide(&[same], "baton[bot]", &body),
            Step::Keep { number: 5 }
        );
    }

    #[test]
    fn the_oldest_dashboard_wins_and_a_closed_one_reopens_with_news_and_its_label() {
        let body = format!("{MARKER}\nnew");
        let mut closed = issue(5, "baton[bot]", &format!("{MARKER}\nold"));
        closed.open = false;
        closed.labels = vec!["keep".into()];
        closed.title = "renamed".into();
        let newer = issue(9, "baton[bot]", &body);
        match decide(&[newer, closed], "baton[bot]", &body) {
            Step::Edit { number, update } => {
                assert_eq!(number, 5);
                assert_eq!(update.open, Some(true));
                assert_eq!(update.title.as_deref(), Some(TITLE));
                assert_eq!(update.labels, Some(vec!["keep".into(), LABEL.into()]));
            }
            other => panic!("{other:?}"),
        }
    }
}
