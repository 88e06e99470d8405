//! The status page's view, rebuilt from what the loops know after every pass and reconcile.

use std::sync::Arc;

use chrono::Utc;

use super::{Loops, Promotions};
use crate::config::RuntimeConfig;

impl Loops {
    /// The newest promotions (for each cell's last deploy), read again only when the tip of the
    /// reconcilers' clone moved: the view is rebuilt after every pass and every reconcile.
    pub(super) fn recent_history(&self) -> Promotions {
        let tip = self.source.commit();
        let mut cache = self.history.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, entries)) = cache.as_ref()
            && *at == tip
        {
            return entries.clone();
        }
        let source = crate::server::history::GitHistory::new(
            self.cfg.workdir.join("reconcile.git"),
            self.cfg.repo.branch.clone(),
        );
        let entries = Arc::new(
            crate::server::history::HistorySource::read(
                &source,
                &crate::gitrepo::history::Filter {
                    limit: Some(1000),
                    ..Default::default()
                },
            )
            .unwrap_or_default(),
        );
        *cache = Some((tip, entries.clone()));
        entries
    }

    /// Rebuild the status page's view from what the loops know now.
    pub(super) fn refresh_view(&self) {
        use crate::server::view;
        let Some(pipeline) = self.source.pipeline() else {
            return;
        };
        // A follower's engine does not fetch: its pins and tip are those its reconcilers read.
        let (snapshot, open, tip) = if self.leading.load(std::sync::atomic::Ordering::SeqCst) {
            let snapshot = self.engine.snapshot();
            let open = self.open_promotions(&snapshot);
            (snapshot, open, self.engine.config_tip())
        } else {
            (
                self.follower_snapshot(&pipeline),
                self.persisted_open(&pipeline),
                self.source.commit(),
            )
        };
        let entries = self.recent_history();
        let repo = view::RepoInfo {
            name: self.repo_slug.clone(),
            branch: self.cfg.repo.branch.clone(),
            commit: tip,
            url: web_url(&self.cfg),
        };
        let deployments = self.shared.deployments(&pipeline);
        let reconciles = self.latest_reconciles(&pipeline);
        let v = view::StatusView::build(
            &view::Inputs {
                repo: &repo,
                pipeline: &pipeline,
                pinned: &snapshot.pinned,
                deployments: &deployments,
                open: &open,
                history: &entries,
                reconciles: &reconciles,
                now: Utc::now(),
            },
            Some(&self.state.view()),
        );
        self.state.set_view(v);
        self.refresh_dora(&pipeline, &entries);
    }
}

/// The repository's web page, for links: `https://github.com/<owner>/<name>` on GitHub, the
/// API URL's host otherwise.
pub(super) fn web_url(cfg: &RuntimeConfig) -> Option<String> {
    let slug = cfg.github_repository()?;
    if cfg.github.api_url.trim_end_matches('/') == "https://api.github.com" {
        Some(format!("https://github.com/{slug}"))
    } else {
        Some(format!(
            "{}/{slug}",
            cfg.github.api_url.trim_end_matches('/')
        ))
    }
}
