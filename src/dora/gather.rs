//! The facts Git does not hold, read from the registry and GitHub: when each promoted digest's
//! change was made, and which promotion commits failed verification. Remembered between calls
//! ([`Gatherer`]) so that the service asks once per digest and once per settled commit.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::{ChangeStart, Facts, StartSource, plausible_created};
use crate::config::{Pipeline, RuntimeConfig};
use crate::forge::github::GitHubForge;
use crate::forge::{Forge, StatusState};
use crate::gitrepo::history::Entry;
use crate::image::Digest;
use crate::registry::repo::Repo;
use crate::registry::scan::Scanner;

/// `owner/repo` of a source URL on the GitHub at `web_host` (`https://github.com/o/r`,
/// `.git` allowed); `None` for other hosts, which that GitHub cannot answer for.
pub fn github_repo<'a>(source: &'a str, web_host: &str) -> Option<(&'a str, &'a str)> {
    let rest = source
        .strip_prefix("https://")
        .or_else(|| source.strip_prefix("http://"))?;
    let (host, path) = rest.split_once('/')?;
    if host != web_host {
        return None;
    }
    let mut parts = path.trim_end_matches('/').split('/');
    let owner = parts.next().filter(|s| !s.is_empty())?;
    let repo = parts.next().filter(|s| !s.is_empty())?;
    let repo = repo.strip_suffix(".git").unwrap_or(repo);
    parts.next().is_none().then_some((owner, repo))
}

/// Facts learned so far, and what need not be asked again.
#[derive(Debug, Default)]
pub struct Gatherer {
    facts: Facts,
    /// Digests whose start was looked up, known or not.
    digests_done: BTreeSet<Digest>,
    /// Commits whose verification is settled: a final status, or a later merge superseded them.
    commits_done: BTreeSet<String>,
}

impl Gatherer {
    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// Learn what is missing for `entries` (newest first) at or after `since`. A transient
    /// failure leaves that digest or commit to the next call; nothing here fails the caller.
    pub async fn update(
        &mut self,
        entries: &[Entry],
        pipeline: &Pipeline,
        scanner: &Scanner,
        github: Option<&GitHubForge>,
        web_host: &str,
        since: DateTime<Utc>,
    ) {
        // The first deploy of each digest anywhere bounds a plausible `created`.
        let mut first: BTreeMap<&Digest, (DateTime<Utc>, &str)> = BTreeMap::new();
        for e in entries.iter().filter(|e| !e.promotion.is_rollback()) {
            let slot = first
                .entry(&e.promotion.to)
                .or_insert((e.time, &e.promotion.app));
            if e.time < slot.0 {
                *slot = (e.time, &e.promotion.app);
            }
        }
        for (digest, (first_deployed, app)) in first {
            if self.digests_done.contains(digest)
                || !entries
                    .iter()
                    .any(|e| e.promotion.to == *digest && e.time >= since)
            {
                continue;
            }
            let Some(image) = pipeline.app(app).map(|a| a.image.as_str()) else {
                continue;
            };
            match start_of(scanner, github, web_host, image, digest, first_deployed).await {
                Ok(Some(start)) => {
                    self.facts.starts.insert(digest.clone(), start);
                    self.digests_done.insert(digest.clone());
                }
                Ok(None) => {
                    self.digests_done.insert(digest.clone());
                }
                Err(e) => tracing::debug!(%digest, error = %e, "DORA: change start not read yet"),
            }
        }
        let Some(github) = github else { return };
        for (i, e) in entries.iter().enumerate() {
            let p = &e.promotion;
            let verified = pipeline
                .environment(&p.environment)
                .is_some_and(|env| !env.verify.is_empty());
            if p.is_rollback()
                || !verified
                || e.time < since
                || self.commits_done.contains(&e.commit)
            {
                continue;
            }
            let context = format!("baton/{}/verify", p.environment);
            match github.statuses(&e.commit).await {
                Ok(statuses) => {
                    let state = statuses
                        .iter()
                        .find(|s| s.context == context)
                        .map(|s| s.state);
                    if matches!(state, Some(StatusState::Failure | StatusState::Error)) {
                        self.facts.failed_verifications.insert(e.commit.clone());
                    }
                    // Newest first: an earlier index is a later merge of the same app there.
                    let superseded = entries[..i].iter().any(|later| {
                        later.promotion.app == p.app && later.promotion.environment == p.environment
                    });
                    if superseded || matches!(state, Some(s) if s != StatusState::Pending) {
                        self.commits_done.insert(e.commit.clone());
                    }
                }
                Err(err) => {
                    tracing::debug!(commit = %e.commit, error = %err, "DORA: verification not read yet")
                }
            }
        }
    }
}

/// When `digest`'s change was made: its source commit's time on GitHub, else its plausible
/// `created` time, else `None`.
async fn start_of(
    scanner: &Scanner,
    github: Option<&GitHubForge>,
    web_host: &str,
    image: &str,
    digest: &Digest,
    first_deployed: DateTime<Utc>,
) -> Result<Option<ChangeStart>, String> {
    let repo = Repo::parse(image).map_err(|e| e.to_string())?;
    let meta = match scanner.image_meta(&repo, digest.as_str()).await {
        Ok(Ok(meta)) => meta,
        Ok(Err(_)) => return Ok(None),
        Err(e) if e.is_transient() => return Err(e.to_string()),
        Err(_) => return Ok(None),
    };
    if let (Some(github), Some(revision), Some((owner, name))) = (
        github,
        meta.revision.as_deref(),
        meta.source
            .as_deref()
            .and_then(|s| github_repo(s, web_host)),
    ) {
        match github.source_commit_time(owner, name, revision).await {
            Ok(Some(at)) => {
                return Ok(Some(ChangeStart {
                    at,
                    source: StartSource::SourceCommit,
                }));
            }
            Ok(None) => {}
            Err(e) if e.is_transient() => return Err(e.to_string()),
            Err(_) => {}
        }
    }
    Ok(meta
        .created
        .filter(|c| plausible_created(*c, first_deployed))
        .map(|at| ChangeStart {
            at,
            source: StartSource::ImageCreated,
        }))
}

/// Why the clients of a runtime config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `registries:` or `dockerConfig:` of `baton.yaml` could not be read.
    #[error("{0}")]
    Registry(String),
    /// GitHub could not be reached with the configured credentials.
    #[error("GitHub: {0}")]
    Forge(#[source] crate::forge::ForgeError),
}

/// The registry scanner and GitHub client a runtime config describes, as `baton run` builds
/// them; GitHub only when the config names the repository.
pub async fn clients(cfg: &RuntimeConfig) -> Result<(Scanner, Option<GitHubForge>), SetupError> {
    let mut store = crate::registry::auth::CredentialStore::from_config(&cfg.registries)
        .map_err(|e| SetupError::Registry(format!("registries: {e}")))?;
    if let Some(path) = &cfg.docker_config {
        store
            .merge_docker_config(path)
            .map_err(|e| SetupError::Registry(format!("dockerConfig: {e}")))?;
    }
    let client = crate::registry::client::RegistryClient::new(store, Default::default());
    let scanner = Scanner::new(client, Default::default());
    let github = match cfg.github_repository() {
        Some(slug) => Some(
            GitHubForge::connect(&cfg.github, &slug)
                .await
                .map_err(SetupError::Forge)?,
        ),
        None => None,
    };
    Ok((scanner, github))
}

/// The host of the web pages of the GitHub a runtime config talks to (`github.com`, or a
/// GitHub Enterprise host): only source URLs there are looked up.
pub fn web_host(cfg: &RuntimeConfig) -> String {
    let api = cfg.github.api_url.trim_end_matches('/');
    if api == "https://api.github.com" {
        return "github.com".into();
    }
    let rest = api.split_once("://").map_or(api, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// The facts for `entries` in one go (the CLI's and the demo's way).
pub async fn gather(
    entries: &[Entry],
    pipeline: &Pipeline,
    scanner: &Scanner,
    github: Option<&GitHubForge>,
    web_host: &str,
    since: DateTime<Utc>,
) -> Facts {
    let mut g = Gatherer::default();
    g.update(entries, pipeline, scanner, github, web_host, since)
        .await;
    g.facts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_urls_on_this_github_name_a_repository() {
        let gh = "github.com";
        assert_eq!(
            github_repo("https://github.com/shop/web", gh),
            Some(("shop", "web"))
        );
        assert_eq!(
            github_repo("https://github.com/shop/web.git/", gh),
            Some(("shop", "web"))
        );
        assert_eq!(
            github_repo("https://ghe.example.com/shop/web", "ghe.example.com"),
            Some(("shop", "web"))
        );
        // Another host's repositories are not asked of this GitHub.
        assert_eq!(
            github_repo("https://github.com/shop/web", "ghe.example.com"),
            None
        );
        assert_eq!(github_repo("https://gitlab.com/shop/web", gh), None);
        assert_eq!(github_repo("https://github.com/shop", gh), None);
        assert_eq!(
            github_repo("https://github.com/shop/web/tree/main", gh),
            None
        );
    }
}
