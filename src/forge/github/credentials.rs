//! Credentials: a token, or a GitHub App whose installation tokens are minted, renewed before
//! they expire (for REST and for Git over https), and counted; and who they act as.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use octocrab::Octocrab;
use serde::Deserialize;

use super::{lock, map_octocrab_error};
use crate::config::secret::Secret;
use crate::forge::{ForgeError, Result};
use crate::gitrepo::repo::TokenSource;

/// How baton authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum GitHubAuth {
    /// A personal access token or any other bearer token.
    Token(Secret),
    /// A GitHub App installation: the App's JWT (signed with `private_key`, PEM) mints
    /// installation tokens, renewed before they expire.
    App {
        app_id: u64,
        installation_id: u64,
        private_key: Secret,
    },
}

/// The route a minted installation token is counted under.
pub(super) const MINT_ROUTE: &str = "/app/installations/{installation_id}/access_tokens";

/// An installation's tokens: minted with the App's JWT, renewed when they expire within the
/// margin, one renewal at a time, each counted as the call it is; shared by the REST client and
/// Git.
pub(super) struct AppTokens {
    pub app_id: u64,
    pub installation_id: u64,
    /// The App itself (JWT): mints tokens, answers `GET /app`.
    pub app_crab: Octocrab,
    margin: chrono::Duration,
    current: tokio::sync::Mutex<Option<(Secret, DateTime<Utc>)>>,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl std::fmt::Debug for AppTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTokens")
            .field("app_id", &self.app_id)
            .field("installation_id", &self.installation_id)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Minted {
    token: String,
    expires_at: DateTime<Utc>,
}

impl AppTokens {
    pub fn new(
        app_id: u64,
        installation_id: u64,
        app_crab: Octocrab,
        margin: chrono::Duration,
        counts: Arc<Mutex<BTreeMap<String, u64>>>,
    ) -> Self {
        Self {
            app_id,
            installation_id,
            app_crab,
            margin,
            current: tokio::sync::Mutex::new(None),
            counts,
        }
    }

    /// The installation token, renewed first when it expires within the margin.
    pub async fn current(&self) -> Result<Secret> {
        let mut current = self.current.lock().await;
        if let Some((token, expires)) = current.as_ref()
            && *expires - Utc::now() > self.margin
        {
            return Ok(token.clone());
        }
        let (token, expires) = self.mint().await?;
        tracing::debug!(
            installation = self.installation_id,
            %expires,
            "minted a GitHub installation token"
        );
        *current = Some((token.clone(), expires));
        Ok(token)
    }

    async fn mint(&self) -> Result<(Secret, DateTime<Utc>)> {
        let route = format!("POST {MINT_ROUTE}");
        *lock(&self.counts).entry(route.clone()).or_default() += 1;
        let path = format!("/app/installations/{}/access_tokens", self.installation_id);
        let request = self
            .app_crab
            .build_request(
                http::Request::builder()
                    .method(http::Method::POST)
                    .uri(path.as_str()),
                None::<&()>,
            )
            .map_err(|e| ForgeError::Other {
                what: route.clone(),
                message: super::first_line(&e),
            })?;
        let response = self
            .app_crab
            .execute(request)
            .await
            .map_err(|e| map_octocrab_error(&route, e))?;
        let status = response.status();
        let body = self
            .app_crab
            .body_to_string(response)
            .await
            .map_err(|e| map_octocrab_error(&route, e))?;
        if !status.is_success() {
            let message = format!("{status} {}", super::truncate_chars(body.trim(), 200));
            return Err(if status.is_server_error() {
                ForgeError::Unavailable {
                    what: route,
                    message,
                }
            } else {
                ForgeError::Forbidden {
                    what: route,
                    message,
                }
            });
        }
        let minted: Minted = serde_json::from_str(&body).map_err(|e| ForgeError::Other {
            what: route,
            message: format!("unexpected answer: {e}"),
        })?;
        Ok((Secret::new(minted.token), minted.expires_at))
    }
}

/// Git's view of an App installation: the current installation token for `x-access-token`,
/// renewed like the REST client's (they share it). Git runs in blocking code (inside
/// `block_in_place` or `spawn_blocking` on a multi-threaded runtime); a renewal is driven on
/// the runtime from there.
#[derive(Debug)]
pub(super) struct GitTokens(pub Arc<AppTokens>);

impl TokenSource for GitTokens {
    fn token(&self) -> std::result::Result<Secret, String> {
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| "a GitHub App token needs the Tokio runtime".to_owned())?;
        if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
            return Err("a GitHub App token for Git needs a multi-threaded Tokio runtime".into());
        }
        tokio::task::block_in_place(|| handle.block_on(self.0.current())).map_err(|e| e.to_string())
    }
}

/// The login that `configured` (`github.botLogin`) and GitHub's answer (`asked`) agree on.
pub(super) fn agreed_login(asked: Option<String>, configured: Option<&str>) -> Result<String> {
    match (asked, configured) {
        (Some(asked), Some(c)) if !c.eq_ignore_ascii_case(&asked) => {
            Err(ForgeError::Config(format!(
                "github.botLogin is `{c}`, but GitHub says these credentials act as `{asked}`; \
                 remove github.botLogin (baton asks GitHub) or set it to `{asked}`"
            )))
        }
        (Some(asked), _) => Ok(asked),
        (None, Some(c)) => Ok(c.to_owned()),
        (None, None) => Err(ForgeError::Config(
            "GitHub does not say who this token acts as (GET /user answers 403, as it does for \
             an installation token); configure github.app instead of github.token, or set \
             github.botLogin to the App's `<app-slug>[bot]`"
                .into(),
        )),
    }
}

/// `<slug>[bot]`, the login a GitHub App's comments and reviews appear under.
pub(super) fn app_login(slug: &str) -> String {
    format!("{slug}[bot]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_login_must_agree_with_github() {
        assert_eq!(
            agreed_login(Some("shipit[bot]".into()), None).unwrap(),
            "shipit[bot]"
        );
        assert_eq!(
            agreed_login(Some("shipit[bot]".into()), Some("ShipIt[bot]")).unwrap(),
            "shipit[bot]"
        );
        let err = agreed_login(Some("shipit[bot]".into()), Some("baton[bot]")).unwrap_err();
        assert!(err.to_string().contains("`baton[bot]`"), "{err}");
        assert!(err.to_string().contains("`shipit[bot]`"), "{err}");
        assert_eq!(
            agreed_login(None, Some("baton[bot]")).unwrap(),
            "baton[bot]"
        );
        assert!(agreed_login(None, None).is_err());
        assert_eq!(app_login("baton"), "baton[bot]");
    }
}
