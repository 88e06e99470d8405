//! The service's side of [`crate::notify`]: the receivers of `baton.yaml` with their secrets
//! read at start, the delivery record kept in each environment's state ConfigMap, and the hook
//! that turns what a pass decided into events (handed to the delivery task, never waited on).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use chrono::Utc;

use crate::config::RuntimeConfig;
use crate::engine::{Outcome, Snapshot};
use crate::notify::log::Log;
use crate::notify::worker::{Journal, Sink};
use crate::notify::{Release, from_outcome};
use crate::server::AppState;

use super::{ServiceError, Shared};

/// The delivery record in the persisted state of each environment ([`crate::state`]).
pub(super) struct StateJournal(pub Arc<Shared>);

impl Journal for StateJournal {
    fn logs(&self) -> Vec<(String, Log)> {
        self.0
            .state
            .snapshot()
            .into_iter()
            .map(|(env, s)| (env, s.notify))
            .collect()
    }

    fn update<T: Send>(
        &self,
        env: &str,
        change: impl Fn(&mut Log) -> T + Send + Sync,
    ) -> impl Future<Output = T> + Send {
        let shared = self.0.clone();
        let env = env.to_string();
        async move { shared.state.update(&env, |s| change(&mut s.notify)).await }
    }
}

pub(super) type Notifier = crate::notify::worker::Notifier<StateJournal>;

/// The delivery task for `cfg.notify`, its secrets read now (a missing one stops the start,
/// like any other secret).
pub(super) fn notifier(
    cfg: &RuntimeConfig,
    shared: Arc<Shared>,
    state: Arc<AppState>,
) -> Result<Notifier, ServiceError> {
    let sinks = cfg
        .notify
        .iter()
        .map(Sink::resolve)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ServiceError::Config)?;
    let count =
        Box::new(move |receiver: &str, result: &str| state.metrics.notification(receiver, result));
    Ok(Notifier::new(sinks, StateJournal(shared), count))
}

impl super::Loops {
    /// Hand the events among `outcomes` to the delivery task.
    pub(super) fn notify(&self, outcomes: &[Outcome]) {
        if self.cfg.notify.is_empty() || outcomes.is_empty() {
            return;
        }
        let snapshot = self.engine.snapshot();
        let history = std::cell::OnceCell::new();
        let now = Utc::now();
        let events: Vec<_> = outcomes
            .iter()
            .filter_map(|o| {
                from_outcome(
                    o,
                    &self.repo_slug,
                    |env, app, pr| self.release_of(&snapshot, &history, env, app, pr),
                    now,
                )
            })
            .collect();
        self.notifier.enqueue(events);
    }

    /// What the event about `(env, app, pr)` says of its release: from the open PRs the pass
    /// saw, else the promotion that PR merged (Git history), else what the environment runs.
    fn release_of(
        &self,
        snapshot: &Snapshot,
        history: &std::cell::OnceCell<super::Promotions>,
        env: &str,
        app: &str,
        pr: Option<u64>,
    ) -> Release {
        let url = pr.and_then(|n| super::web_url(&self.cfg).map(|u| format!("{u}/pull/{n}")));
        if let Some((open, html_url)) = snapshot
            .open
            .iter()
            .find(|(p, _)| Some(p.number) == pr && p.env == env && p.app == app)
        {
            return Release {
                digest: Some(open.digest.to_string()),
                tag: open.tag.clone(),
                url: Some(html_url.clone()).or(url),
                rollback: crate::promote::gates::is_rollback(open),
                commit: None,
            };
        }
        if let Some(n) = pr {
            let entries =
                history.get_or_init(|| tokio::task::block_in_place(|| self.recent_history()));
            if let Some(e) = entries.iter().find(|e| {
                e.promotion.pull_request == Some(n)
                    && e.promotion.environment == env
                    && e.promotion.app == app
            }) {
                return Release {
                    digest: Some(e.promotion.to.to_string()),
                    tag: e.promotion.tag.clone(),
                    url,
                    rollback: e.promotion.is_rollback(),
                    commit: Some(e.commit.clone()),
                };
            }
        }
        let running: BTreeMap<_, _> = self.shared.state.get(env).apps;
        Release {
            digest: running
                .get(app)
                .and_then(|a| a.running.as_ref())
                .map(|r| r.digest.clone()),
            url,
            ..Release::default()
        }
    }
}
