//! Delivery: a task of its own. The service hands it events ([`Notifier::enqueue`], which
//! never waits); the task records each wanted delivery as pending in the environment's state
//! ([`Journal`]), POSTs it, and records it as done, or backs off and tries again (bounded; see
//! [`Retry`]). A receiver that is slow, down or refusing holds up nothing but its own
//! deliveries.
//!
//! Secrets stay in [`Secret`]s: the URL (a Slack URL is a credential) and the HMAC key are
//! exposed only to build the request; errors are reduced to a status code or reqwest's error
//! without its URL, and logs name receivers by their `notify:` name.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;

use super::log::{AfterFailure, Log, Pending, Retry};
use super::{Event, payload};
use crate::config::Secret;
use crate::config::notify::NotifyConfig;

/// One `notify:` entry with its secrets read.
pub struct Sink {
    pub config: NotifyConfig,
    url: Secret,
    /// The HMAC key (generic webhooks).
    secret: Option<Secret>,
}

impl Sink {
    /// Read the entry's secrets. The error names the entry and field, never a value.
    pub fn resolve(config: &NotifyConfig) -> Result<Self, String> {
        let at = |field: &str, e: String| format!("notify {:?}: {field}: {e}", config.name);
        let (url, secret) = match (&config.webhook, &config.slack) {
            (Some(w), _) => {
                let url = match (&w.url, &w.url_from) {
                    (Some(u), _) => Secret::new(u.clone()),
                    (None, Some(r)) => r
                        .resolve()
                        .map_err(|e| at("webhook.urlFrom", e.to_string()))?,
                    (None, None) => return Err(at("webhook", "no url".into())),
                };
                let secret = w
                    .secret
                    .resolve()
                    .map_err(|e| at("webhook.secret", e.to_string()))?;
                (url, Some(secret))
            }
            (None, Some(s)) => (
                s.url
                    .resolve()
                    .map_err(|e| at("slack.url", e.to_string()))?,
                None,
            ),
            (None, None) => return Err(at("", "neither webhook: nor slack:".into())),
        };
        Ok(Self {
            config: config.clone(),
            url,
            secret,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    fn is_slack(&self) -> bool {
        self.config.slack.is_some()
    }
}

/// Where the delivery record lives: each environment's persisted state.
pub trait Journal: Send + Sync + 'static {
    /// Every environment's record as last read or written.
    fn logs(&self) -> Vec<(String, Log)>;
    /// Change `env`'s record and write it down before returning. `change` may run more than
    /// once (a write conflict applies it again to what was read back).
    fn update<T: Send>(
        &self,
        env: &str,
        change: impl Fn(&mut Log) -> T + Send + Sync,
    ) -> impl Future<Output = T> + Send;
}

/// A journal in memory (tests, and a baton without a cluster to keep state in).
#[derive(Default)]
pub struct MemoryJournal(Mutex<BTreeMap<String, Log>>);

impl Journal for MemoryJournal {
    fn logs(&self) -> Vec<(String, Log)> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    fn update<T: Send>(
        &self,
        env: &str,
        change: impl Fn(&mut Log) -> T + Send + Sync,
    ) -> impl Future<Output = T> + Send {
        let out = change(
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(env.to_string())
                .or_default(),
        );
        std::future::ready(out)
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Delivered,
    /// Worth trying again (a 5xx, 408, 429, a timeout, no connection).
    Failed(String),
    /// The receiver refused it for good (another 4xx): given up at once.
    Refused(String),
}

/// What the deliveries counter counts: `(receiver, result)` with result `delivered`,
/// `retrying`, `failed` (given up) or `dropped` (its receiver left `notify:`).
pub type Count = Box<dyn Fn(&str, &str) + Send + Sync>;

/// The delivery task and its inbox.
pub struct Notifier<J: Journal> {
    sinks: Vec<Sink>,
    journal: J,
    inbox: Mutex<Vec<Event>>,
    wake: tokio::sync::Notify,
    client: reqwest::Client,
    retry: Retry,
    count: Count,
}

/// A receiver gets this long per attempt.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// With nothing pending, the task still looks at its record this often.
const IDLE: Duration = Duration::from_secs(60);

impl<J: Journal> Notifier<J> {
    pub fn new(sinks: Vec<Sink>, journal: J, count: Count) -> Self {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            // A redirect would carry the signed body somewhere not configured.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with rustls always builds");
        Self {
            sinks,
            journal,
            inbox: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            client,
            retry: Retry::default(),
            count,
        }
    }

    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    pub fn journal(&self) -> &J {
        &self.journal
    }

    /// Hand events over. Never waits: the task records and sends them.
    pub fn enqueue(&self, events: impl IntoIterator<Item = Event>) {
        let wanted: Vec<Event> = events
            .into_iter()
            .filter(|e| self.sinks.iter().any(|s| s.config.wants(&e.env, e.kind)))
            .collect();
        if wanted.is_empty() {
            return;
        }
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(wanted);
        self.wake.notify_one();
    }

    /// Deliver until `stop` turns true. Call once the state is loaded (a restart then resumes
    /// the pending deliveries and knows the done ones).
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let next = self.pass().await;
            let wait = next
                .map(|t| (t - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(IDLE)
                .min(IDLE);
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Record what came in, make the deliveries due, record how they ended. Returns when the
    /// next one is due.
    pub async fn pass(&self) -> Option<chrono::DateTime<Utc>> {
        let events = std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|e| e.into_inner()));
        let mut by_env: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for e in events {
            by_env.entry(e.env.clone()).or_default().push(e);
        }
        let now = Utc::now();
        for (env, events) in by_env {
            let added = self
                .journal
                .update(&env, |log| {
                    let mut added = 0;
                    for e in &events {
                        let sinks: Vec<&str> = self
                            .sinks
                            .iter()
                            .filter(|s| s.config.wants(&e.env, e.kind))
                            .map(Sink::name)
                            .collect();
                        added += log.enqueue(e, &sinks, now).0;
                    }
                    added
                })
                .await;
            if added > 0 {
                tracing::debug!(%env, added, "notifications recorded as pending");
            }
        }

        let configured: Vec<&str> = self.sinks.iter().map(Sink::name).collect();
        let mut due: Vec<(String, Pending)> = Vec::new();
        for (env, log) in self.journal.logs() {
            if log
                .pending
                .iter()
                .any(|p| !configured.contains(&p.sink.as_str()))
            {
                let dropped = self
                    .journal
                    .update(&env, |l| l.forget_sinks(&configured))
                    .await;
                tracing::info!(%env, dropped, "dropped pending notifications to receivers no longer configured");
                (self.count)("-", "dropped");
            }
            due.extend(
                log.due(now)
                    .into_iter()
                    .filter(|p| configured.contains(&p.sink.as_str()))
                    .map(|p| (env.clone(), p)),
            );
        }

        let attempts = due.iter().map(|(_, p)| async {
            let sink = self
                .sinks
                .iter()
                .find(|s| s.name() == p.sink)
                .expect("filtered to configured receivers");
            self.send(sink, &p.event).await
        });
        let results = futures::future::join_all(attempts).await;
        for ((env, p), result) in due.into_iter().zip(results) {
            let key = p.key();
            let now = Utc::now();
            let e = &p.event;
            match result {
                Attempt::Delivered => {
                    self.journal
                        .update(&env, |l| l.settle(&key, now, true))
                        .await;
                    (self.count)(&p.sink, "delivered");
                    tracing::info!(receiver = %p.sink, event = %e.kind.as_str(), id = %e.id, env = %e.env, app = %e.app, "notification delivered");
                }
                Attempt::Refused(why) => {
                    self.journal
                        .update(&env, |l| l.settle(&key, now, false))
                        .await;
                    (self.count)(&p.sink, "failed");
                    tracing::warn!(receiver = %p.sink, event = %e.kind.as_str(), id = %e.id, error = %why, "the receiver refused the notification; not retried");
                }
                Attempt::Failed(why) => {
                    let after = self
                        .journal
                        .update(&env, |l| l.failed(&key, &why, now, &self.retry))
                        .await;
                    match after {
                        AfterFailure::RetryAt(at) => {
                            (self.count)(&p.sink, "retrying");
                            tracing::warn!(receiver = %p.sink, event = %e.kind.as_str(), id = %e.id, attempt = p.attempts + 1, error = %why, retry_at = %at, "notification not delivered; retrying");
                        }
                        AfterFailure::GaveUp => {
                            (self.count)(&p.sink, "failed");
                            tracing::error!(receiver = %p.sink, event = %e.kind.as_str(), id = %e.id, attempts = p.attempts + 1, error = %why, "notification given up");
                        }
                        AfterFailure::Unknown => {}
                    }
                }
            }
        }
        self.journal
            .logs()
            .iter()
            .filter_map(|(_, l)| l.next_try())
            .min()
    }

    /// One attempt.
    async fn send(&self, sink: &Sink, event: &Event) -> Attempt {
        let body = if sink.is_slack() {
            payload::slack_body(event)
        } else {
            payload::json_body(event)
        };
        let mut request = self
            .client
            .post(sink.url.expose())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(payload::EVENT_HEADER, event.kind.as_str())
            .header(payload::DELIVERY_HEADER, &event.id);
        if let Some(secret) = &sink.secret {
            request = request.header(payload::SIGNATURE_HEADER, payload::signature(secret, &body));
        }
        match request.body(body).send().await {
            Ok(r) if r.status().is_success() => Attempt::Delivered,
            Ok(r) => {
                let s = r.status();
                let why = format!("HTTP {}", s.as_u16());
                if s.is_client_error() && s.as_u16() != 408 && s.as_u16() != 429 {
                    Attempt::Refused(why)
                } else {
                    Attempt::Failed(why)
                }
            }
            // Without its URL: a Slack URL is a credential.
            Err(e) => Attempt::Failed(describe(&e.without_url())),
        }
    }
}

/// reqwest's error and its causes on one line.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
