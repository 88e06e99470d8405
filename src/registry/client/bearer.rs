//! How the client authenticates: the credentials configured per registry, the scheme a `401`
//! challenge taught (Basic, or a Bearer token endpoint), and tokens cached until shortly
//! before they expire.

use super::*;

impl RegistryClient {
    fn credential(&self, registry: &str) -> Option<Credential> {
        self.inner.credentials.get(registry)
    }

    /// Attach what the registry is known to want: Basic credentials, a static bearer token,
    /// or a (cached or fresh) token from its token endpoint.
    pub(super) async fn authorize(
        &self,
        repo: &Repo,
        access: &Access<'_>,
        what: &str,
        req: RequestBuilder,
    ) -> Result<RequestBuilder, RegistryError> {
        if let Some(Credential::Bearer(token)) = self.credential(&repo.registry) {
            return Ok(req.bearer_auth(token.expose()));
        }
        let scheme = self
            .lock_auth()
            .get(&repo.registry)
            .and_then(|h| h.scheme.clone());
        match scheme {
            None => Ok(req),
            Some(Scheme::Basic) => Ok(match self.credential(&repo.registry) {
                Some(c) => match c.basic_header() {
                    Some(h) => req.header(header::AUTHORIZATION, h),
                    None => req,
                },
                None => req,
            }),
            Some(Scheme::Bearer { realm, service }) => {
                let scopes = scopes(repo, access, None);
                let token = self
                    .token(repo, &realm, service.as_deref(), &scopes, what)
                    .await?;
                Ok(req.bearer_auth(token.expose()))
            }
        }
    }

    /// Handle a 401: remember the scheme and get what it needs. `false` when retrying
    /// cannot help (Basic without credentials, unknown scheme).
    pub(super) async fn learn_challenge(
        &self,
        repo: &Repo,
        access: &Access<'_>,
        what: &str,
        headers: &HeaderMap,
    ) -> Result<bool, RegistryError> {
        let Some(challenge) = header_str(headers, header::WWW_AUTHENTICATE)
            .as_deref()
            .and_then(parse_challenge)
        else {
            return Ok(false);
        };
        match challenge {
            Challenge::Basic => {
                self.lock_auth()
                    .entry(repo.registry.clone())
                    .or_default()
                    .scheme = Some(Scheme::Basic);
                Ok(self
                    .credential(&repo.registry)
                    .is_some_and(|c| c.basic_header().is_some()))
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                {
                    let mut auth = self.lock_auth();
                    let host = auth.entry(repo.registry.clone()).or_default();
                    host.scheme = Some(Scheme::Bearer {
                        realm: realm.clone(),
                        service: service.clone(),
                    });
                    // The token we sent (if any) was not enough: forget it.
                    host.tokens.remove(&scopes(repo, access, None));
                }
                let wanted = scopes(repo, access, scope.as_deref());
                let token = self
                    .fetch_token(repo, &realm, service.as_deref(), &wanted, what)
                    .await?;
                let key = scopes(repo, access, None);
                self.lock_auth()
                    .entry(repo.registry.clone())
                    .or_default()
                    .tokens
                    .insert(key, token);
                Ok(true)
            }
        }
    }

    async fn token(
        &self,
        repo: &Repo,
        realm: &str,
        service: Option<&str>,
        scopes: &str,
        what: &str,
    ) -> Result<Secret, RegistryError> {
        if let Some((token, expires)) = self
            .lock_auth()
            .get(&repo.registry)
            .and_then(|h| h.tokens.get(scopes))
            && *expires > Instant::now()
        {
            return Ok(token.clone());
        }
        let fresh = self.fetch_token(repo, realm, service, scopes, what).await?;
        let token = fresh.0.clone();
        self.lock_auth()
            .entry(repo.registry.clone())
            .or_default()
            .tokens
            .insert(scopes.to_string(), fresh);
        Ok(token)
    }

    async fn fetch_token(
        &self,
        repo: &Repo,
        realm: &str,
        service: Option<&str>,
        scopes: &str,
        what: &str,
    ) -> Result<(Secret, Instant), RegistryError> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(s) = service {
            query.push(("service", s));
        }
        for scope in scopes.split(' ') {
            query.push(("scope", scope));
        }
        let token_error = |reason: String, transient: bool| RegistryError::Token {
            registry: repo.registry.clone(),
            realm: realm.to_string(),
            what: what.to_string(),
            reason,
            transient,
        };
        let policy = &self.inner.options.retry;
        let mut attempt = 0;
        let resp = loop {
            attempt += 1;
            let mut req = self.inner.http.get(realm).query(&query);
            if let Some(h) = self
                .credential(&repo.registry)
                .and_then(|c| c.basic_header())
            {
                req = req.header(header::AUTHORIZATION, h);
            }
            self.inner
                .counter
                .request(&repo.registry, RequestKind::Token);
            match req.send().await {
                Ok(r) if r.status().is_server_error() && attempt < policy.attempts => {
                    self.wait(repo, policy.backoff(attempt)).await
                }
                Ok(r) => break r,
                Err(_) if attempt < policy.attempts => {
                    self.wait(repo, policy.backoff(attempt)).await
                }
                Err(e) => return Err(token_error(e.without_url().to_string(), true)),
            }
        };
        let status = resp.status();
        if matches!(status.as_u16(), 401 | 403) {
            self.inner.credentials.invalidate(&repo.registry);
        }
        if !status.is_success() {
            let reason = match status.as_u16() {
                401 | 403 => format!(
                    "HTTP {status}: the token endpoint refused the credentials configured for {}",
                    repo.registry
                ),
                _ => format!("HTTP {status}"),
            };
            return Err(token_error(reason, status.is_server_error()));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let body: TokenResponse = resp
            .json()
            .await
            .map_err(|_| token_error("the token response is not JSON".into(), false))?;
        let token = body
            .token
            .or(body.access_token)
            .map(Secret::new)
            .ok_or_else(|| token_error("the token response has no token".into(), false))?;
        // Default lifetime per the Docker token spec; refresh a little early.
        let lifetime = Duration::from_secs(body.expires_in.unwrap_or(60).max(10));
        Ok((token, Instant::now() + lifetime - Duration::from_secs(5)))
    }

    pub(super) fn lock_auth(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostAuth>> {
        self.inner.auth.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The token scope(s) an access needs, space separated, plus any the challenge named.
pub(super) fn scopes(repo: &Repo, access: &Access<'_>, challenge: Option<&str>) -> String {
    let mut out = vec![match access {
        Access::Pull => format!("repository:{}:pull", repo.repository),
        Access::Push | Access::PushMountFrom(_) => {
            format!("repository:{}:pull,push", repo.repository)
        }
    }];
    if let Access::PushMountFrom(from) = access {
        out.push(format!("repository:{from}:pull"));
    }
    for s in challenge.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out.join(" ")
}
