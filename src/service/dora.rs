//! The DORA metrics of the running service: what they need beyond Git (image metadata, source
//! commits, verify statuses; `crate::dora::gather`) read after promotion passes, and the report
//! recomputed with the status view (`crate::dora`, docs/dora.md).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Loops, Promotions};

/// The DORA window of the status page, `/api/v1/dora` and the gauges.
pub(super) const DORA_DAYS: i64 = 30;

/// Facts for the DORA metrics are read again when the history moved, else at most this often
/// (a verification may still report on the newest promotions).
const DORA_REFRESH: Duration = Duration::from_secs(300);

#[derive(Default)]
pub(super) struct DoraState {
    gatherer: crate::dora::gather::Gatherer,
    /// The history tip and time of the last read.
    last: Option<(Option<String>, tokio::time::Instant)>,
}

impl Loops {
    /// Read what the DORA metrics need from the registry and GitHub for promotions not yet
    /// looked at: when the history moved, else every [`DORA_REFRESH`].
    pub(super) async fn update_dora(&self) {
        let Some(pipeline) = self.source.pipeline() else {
            return;
        };
        let tip = self.source.commit();
        let mut dora = self.dora.lock().await;
        if dora
            .last
            .as_ref()
            .is_some_and(|(at, when)| *at == tip && when.elapsed() < DORA_REFRESH)
        {
            return;
        }
        let entries = tokio::task::block_in_place(|| self.recent_history());
        let since = Utc::now() - chrono::Duration::days(DORA_DAYS);
        let host = crate::dora::gather::web_host(&self.cfg);
        dora.gatherer
            .update(
                &entries,
                &pipeline,
                &self.scanner,
                Some(self.engine.forge()),
                &host,
                since,
            )
            .await;
        dora.last = Some((tip, tokio::time::Instant::now()));
        *self.dora_facts.lock().unwrap_or_else(|e| e.into_inner()) =
            Arc::new(dora.gatherer.facts().clone());
    }

    /// The 30-day report from `entries` and the facts read so far: the page's tiles,
    /// `/api/v1/dora` and the gauges.
    pub(super) fn refresh_dora(&self, pipeline: &crate::config::Pipeline, entries: &Promotions) {
        let facts = self
            .dora_facts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let envs: Vec<String> = pipeline
            .environments
            .iter()
            .map(|e| e.name.clone())
            .collect();
        self.state.set_dora(crate::dora::compute(
            entries,
            &envs,
            &facts,
            &crate::dora::Window::last_days(DORA_DAYS, Utc::now()),
        ));
    }
}
