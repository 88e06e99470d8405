//! The HTTP transport: one loop that sends every call, counts it, makes reads conditional,
//! waits out rate limits and retries server errors; and the small helpers around it.

use super::*;

impl GitHubForge {
    /// One call, with rate-limit waits and (when `call.retry`) retries of `5xx` and transport
    /// failures. Answers `2xx` (a `304` is turned into the cached `200`) and the `4xx` that are
    /// not rate limits, for the caller to interpret.
    pub(super) async fn send(&self, call: &Call) -> Result<Answer> {
        let mut failures = 0u32;
        let mut limited = 0u32;
        loop {
            self.wait_for_primary_reset(call).await?;
            self.pace(call).await?;
            // Checked after the wait for a turn and right before sending: a write that waited
            // past the renew deadline is not sent.
            if call.method != Method::GET
                && let Some(fence) = self.fence.get()
                && !fence.holds()
            {
                return Err(ForgeError::Fenced { what: call.what() });
            }
            let outcome = match self.installation_token().await {
                Ok(token) => self.attempt(call, token.as_ref()).await,
                Err(e) => Err(e),
            };
            let retry_in = match outcome {
                Ok(answer) => match self.classify(call, &answer) {
                    Verdict::Done => return Ok(answer),
                    Verdict::RateLimited { wait, until } => {
                        if limited >= self.options.max_rate_limit_retries
                            || wait > self.options.max_rate_limit_wait
                        {
                            return Err(ForgeError::RateLimited {
                                retry_after: Some(until),
                            });
                        }
                        limited += 1;
                        tracing::warn!(call = %call.what(), wait_ms = wait.as_millis() as u64, "GitHub rate limit; waiting");
                        wait
                    }
                    Verdict::ServerError => {
                        let e = ForgeError::Unavailable {
                            what: call.what(),
                            message: format!("{} {}", answer.status, answer.message()),
                        };
                        if !call.retry || failures >= self.options.max_retries {
                            return Err(e);
                        }
                        failures += 1;
                        tracing::warn!(call = %call.what(), status = answer.status.as_u16(), attempt = failures, "GitHub server error; retrying");
                        self.backoff(failures)
                    }
                },
                Err(e @ ForgeError::Unavailable { .. }) => {
                    if !call.retry || failures >= self.options.max_retries {
                        return Err(e);
                    }
                    failures += 1;
                    tracing::warn!(call = %call.what(), error = %e, attempt = failures, "GitHub unreachable; retrying");
                    self.backoff(failures)
                }
                Err(e) => return Err(e),
            };
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(retry_in).await;
        }
    }

    /// Wait for a write's turn in the write queue ([`GitHubOptions::write_limits`]); reads pass.
    /// The queue is held while waiting, so writes go out in the order they came.
    pub(super) async fn pace(&self, call: &Call) -> Result<()> {
        if call.method == Method::GET || self.options.write_limits.is_empty() {
            return Ok(());
        }
        let mut sent = self.writes.lock().await;
        loop {
            let now = Instant::now();
            let longest = self
                .options
                .write_limits
                .iter()
                .map(|(_, w)| *w + Duration::from_secs(1))
                .max()
                .unwrap_or_default();
            while sent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= longest)
            {
                sent.pop_front();
            }
            let wait = self
                .options
                .write_limits
                .iter()
                .filter_map(|&(max, window)| {
                    // GitHub counts a write when it arrives, a little after it was sent here.
                    let window = window + (window / 4).min(Duration::from_secs(1));
                    let recent = sent
                        .iter()
                        .filter(|t| now.duration_since(**t) < window)
                        .count();
                    (max > 0 && recent >= max as usize).then(|| {
                        let oldest = sent[sent.len() - max as usize];
                        window.saturating_sub(now.duration_since(oldest))
                    })
                })
                .max()
                .unwrap_or_default();
            if wait.is_zero() {
                sent.push_back(now);
                return Ok(());
            }
            if wait > self.options.max_rate_limit_wait {
                return Err(ForgeError::RateLimited {
                    retry_after: Some(
                        Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default(),
                    ),
                });
            }
            tracing::debug!(call = %call.what(), wait_ms = wait.as_millis() as u64, "pacing a write");
            tokio::time::sleep(wait).await;
        }
    }

    /// When the last answer said the primary limit is used up, wait for its reset (bounded)
    /// instead of spending a call on a certain `403`.
    pub(super) async fn wait_for_primary_reset(&self, call: &Call) -> Result<()> {
        let Some(RateLimitStatus {
            remaining: 0,
            reset: Some(reset),
            ..
        }) = self.rate_limit()
        else {
            return Ok(());
        };
        let until = reset + chrono::Duration::seconds(1);
        let Ok(wait) = (until - Utc::now()).to_std() else {
            return Ok(());
        };
        if wait > self.options.max_rate_limit_wait {
            return Err(ForgeError::RateLimited {
                retry_after: Some(until),
            });
        }
        tracing::warn!(call = %call.what(), wait_ms = wait.as_millis() as u64, "GitHub rate limit used up; waiting for its reset");
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// As an App, the installation token, renewed when it expires within the margin (one renewal
    /// at a time, counted as the call it is).
    pub(super) async fn installation_token(&self) -> Result<Option<Secret>> {
        match &self.app {
            Some(app) => app.current().await.map(Some),
            None => Ok(None),
        }
    }

    pub(super) async fn attempt(&self, call: &Call, token: Option<&Secret>) -> Result<Answer> {
        let cached = (call.conditional && self.options.conditional_requests)
            .then(|| lock(&self.etags).get(&call.path).cloned())
            .flatten();
        let mut builder = http::Request::builder()
            .method(call.method.clone())
            .uri(call.path.as_str());
        if let Some(c) = &cached {
            builder = builder.header(IF_NONE_MATCH, c.etag.clone());
        }
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                .map_err(|_| config_error("the installation token is not a header value"))?;
            value.set_sensitive(true);
            builder = builder.header(http::header::AUTHORIZATION, value);
        }
        // GraphQL is not under the REST base on GitHub Enterprise Server (`graphql_url`).
        let crab = if call.route == GRAPHQL_ROUTE {
            &self.graphql
        } else {
            &self.crab
        };
        let request = crab
            .build_request(builder, call.body.as_ref())
            .map_err(|e| ForgeError::Other {
                what: call.what(),
                message: first_line(&e),
            })?;
        self.count(&call.method, call.route);
        let response = crab
            .execute(request)
            .await
            .map_err(|e| map_octocrab_error(&call.what(), e))?;
        let status = response.status();
        let headers = response.headers().clone();
        self.note_rate_limit(&headers);
        let body = crab
            .body_to_string(response)
            .await
            .map_err(|e| ForgeError::Unavailable {
                what: call.what(),
                message: format!("reading the answer: {}", first_line(&e)),
            })?;
        if status == StatusCode::NOT_MODIFIED
            && let Some(c) = cached
        {
            self.not_modified.fetch_add(1, Ordering::Relaxed);
            let mut headers = headers;
            if let Some(link) = c.link {
                headers.insert(LINK, link);
            }
            return Ok(Answer {
                status: StatusCode::OK,
                headers,
                body: c.body,
            });
        }
        if call.conditional && self.options.conditional_requests && status == StatusCode::OK {
            self.remember(&call.path, &headers, &body);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub(super) fn remember(&self, path: &str, headers: &HeaderMap, body: &str) {
        let Some(etag) = headers.get(ETAG) else {
            return;
        };
        let mut etags = lock(&self.etags);
        if etags.len() >= MAX_CACHED && !etags.contains_key(path) {
            etags.clear();
        }
        etags.insert(
            path.to_owned(),
            Cached {
                etag: etag.clone(),
                link: headers.get(LINK).cloned(),
                body: body.to_owned(),
            },
        );
    }

    pub(super) fn note_rate_limit(&self, headers: &HeaderMap) {
        let Some(remaining) = header_u64(headers, "x-ratelimit-remaining") else {
            return;
        };
        *lock(&self.rate) = Some(RateLimitStatus {
            limit: header_u64(headers, "x-ratelimit-limit"),
            remaining,
            reset: header_u64(headers, "x-ratelimit-reset")
                .and_then(|s| DateTime::from_timestamp(s as i64, 0)),
        });
    }

    pub(super) fn classify(&self, call: &Call, answer: &Answer) -> Verdict {
        let status = answer.status;
        if status.is_server_error() {
            return Verdict::ServerError;
        }
        if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
            return Verdict::Done;
        }
        let now = Utc::now();
        if let Some(secs) = header_u64(&answer.headers, "retry-after") {
            let wait = Duration::from_secs(secs);
            return Verdict::RateLimited {
                wait,
                until: now + chrono::Duration::seconds(secs as i64),
            };
        }
        if header_u64(&answer.headers, "x-ratelimit-remaining") == Some(0)
            && let Some(reset) = header_u64(&answer.headers, "x-ratelimit-reset")
                .and_then(|s| DateTime::from_timestamp(s as i64, 0))
        {
            // One second of slack: the reset is whole seconds, the limit's clock is not.
            let until = reset + chrono::Duration::seconds(1);
            return Verdict::RateLimited {
                wait: (until - now).to_std().unwrap_or_default(),
                until,
            };
        }
        let message = answer.message().to_ascii_lowercase();
        if status == StatusCode::TOO_MANY_REQUESTS
            || message.contains("rate limit")
            || message.contains("abuse")
        {
            let wait = self.options.secondary_default_wait;
            tracing::debug!(call = %call.what(), "rate limited without a retry time");
            return Verdict::RateLimited {
                wait,
                until: now + chrono::Duration::from_std(wait).unwrap_or_default(),
            };
        }
        Verdict::Done
    }

    pub(super) fn backoff(&self, failures: u32) -> Duration {
        let exp = self
            .options
            .backoff_base
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(Duration::from_secs(30));
        // Up to a quarter more, so that replicas retrying together spread out.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        exp + exp.mul_f64(f64::from(nanos % 1000) / 4000.0)
    }

    /// `send`, then turn any answer but `2xx` into an error.
    pub(super) async fn ok(&self, call: &Call) -> Result<Answer> {
        let answer = self.send(call).await?;
        if answer.status.is_success() {
            Ok(answer)
        } else {
            Err(answer.error(call))
        }
    }

    pub(super) async fn json<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        self.ok(call).await?.parse(call)
    }

    /// Every page of a list, following `Link: rel="next"`.
    pub(super) async fn pages(&self, route: &'static str, path: String) -> Result<Vec<Answer>> {
        let mut out = Vec::new();
        let mut next = Some(path);
        while let Some(path) = next.take() {
            let answer = self.ok(&Call::get(route, path)).await?;
            next = next_link(&answer.headers).map(|url| self.relative(&url));
            out.push(answer);
            if out.len() >= MAX_PAGES {
                tracing::warn!(route, "stopped after {MAX_PAGES} pages");
                break;
            }
        }
        Ok(out)
    }

    pub(super) async fn list<T: DeserializeOwned>(
        &self,
        route: &'static str,
        path: String,
    ) -> Result<Vec<T>> {
        let mut items = Vec::new();
        for answer in self.pages(route, path).await? {
            let call = Call::get(route, String::new());
            items.extend(answer.parse::<Vec<T>>(&call)?);
        }
        Ok(items)
    }

    /// The path and query of a URL GitHub handed out (pagination links), so that the request
    /// goes to the configured host with its credentials and nowhere else.
    pub(super) fn relative(&self, url: &str) -> String {
        match url.split_once("://") {
            Some((_, rest)) => rest
                .find('/')
                .map(|i| rest[i..].to_owned())
                .unwrap_or_else(|| "/".to_owned()),
            None => url.to_owned(),
        }
    }
}

pub(super) fn map_octocrab_error(what: &str, e: octocrab::Error) -> ForgeError {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code;
            let message = format!("{status} {}", source.message);
            if status.is_server_error() {
                ForgeError::Unavailable {
                    what: what.to_owned(),
                    message,
                }
            } else if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                ForgeError::Forbidden {
                    what: what.to_owned(),
                    message,
                }
            } else {
                ForgeError::Other {
                    what: what.to_owned(),
                    message,
                }
            }
        }
        octocrab::Error::JWT { .. } => {
            config_error("cannot sign a GitHub App JWT with github.app.privateKey")
        }
        other => ForgeError::Unavailable {
            what: what.to_owned(),
            message: first_line(&other),
        },
    }
}

/// snafu's `Display` may append a backtrace; the first line says what happened.
pub(super) fn first_line(e: &dyn std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The `rel="next"` URL of a `Link` header.
pub(super) fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == r#"rel="next""#)
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

/// Percent-encode a path segment.
pub(super) fn seg(s: &str) -> String {
    encode(s, |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Percent-encode a query value.
pub(super) fn query(s: &str) -> String {
    encode(s, |b| b.is_ascii_alphanumeric() || b"-._~:".contains(&b))
}

pub(super) fn encode(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub(super) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// One REST call: what to send, and the route template it is counted under.
pub(super) struct Call {
    pub(super) method: Method,
    pub(super) route: &'static str,
    /// Path and query, relative to the API URL.
    pub(super) path: String,
    pub(super) body: Option<Value>,
    /// Retry `5xx` and transport failures (safe for reads and idempotent writes).
    pub(super) retry: bool,
    /// Send `If-None-Match` and keep the answer for a `304`.
    pub(super) conditional: bool,
}

impl Call {
    pub(super) fn new(
        method: Method,
        route: &'static str,
        path: String,
        body: Option<Value>,
    ) -> Self {
        Self {
            conditional: method == Method::GET,
            method,
            route,
            path,
            body,
            retry: true,
        }
    }

    pub(super) fn get(route: &'static str, path: String) -> Self {
        Self::new(Method::GET, route, path, None)
    }

    pub(super) fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }

    /// `METHOD /path` without the query, for errors and logs.
    pub(super) fn what(&self) -> String {
        let path = self.path.split('?').next().unwrap_or_default();
        let path = if path.is_empty() { self.route } else { path };
        format!("{} {path}", self.method)
    }
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: String,
}

impl Answer {
    /// GitHub's `message` with the messages of its validation `errors` (a `422` says
    /// "Validation Failed" and why in `errors`), or the start of the body.
    pub(super) fn message(&self) -> String {
        #[derive(Deserialize)]
        struct Message {
            message: String,
            /// Objects with a `message`, or (in some answers) plain strings.
            #[serde(default)]
            errors: Vec<Value>,
        }
        match serde_json::from_str::<Message>(&self.body) {
            Ok(m) => {
                let details: Vec<&str> = m
                    .errors
                    .iter()
                    .filter_map(|e| e.get("message").unwrap_or(e).as_str())
                    .collect();
                if details.is_empty() {
                    m.message
                } else {
                    format!("{}: {}", m.message, details.join("; "))
                }
            }
            Err(_) => truncate_chars(self.body.trim(), 200),
        }
    }

    pub(super) fn parse<T: DeserializeOwned>(&self, call: &Call) -> Result<T> {
        serde_json::from_str(&self.body).map_err(|e| ForgeError::Other {
            what: call.what(),
            message: format!("unexpected answer: {e}"),
        })
    }

    pub(super) fn error(&self, call: &Call) -> ForgeError {
        let message = format!("{} {}", self.status, self.message());
        match self.status {
            StatusCode::NOT_FOUND => ForgeError::NotFound(call.what()),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ForgeError::Forbidden {
                what: call.what(),
                message,
            },
            s if s.is_server_error() => ForgeError::Unavailable {
                what: call.what(),
                message,
            },
            _ => ForgeError::Other {
                what: call.what(),
                message,
            },
        }
    }
}

pub(super) enum Verdict {
    Done,
    ServerError,
    RateLimited {
        wait: Duration,
        until: DateTime<Utc>,
    },
}

#[derive(Clone)]
pub(super) struct Cached {
    pub(super) etag: HeaderValue,
    pub(super) link: Option<HeaderValue>,
    pub(super) body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let mut h = HeaderMap::new();
        h.insert(
            LINK,
            HeaderValue::from_static(
                r#"<https://api.github.com/repositories/1/pulls?page=2>; rel="next", <https://api.github.com/repositories/1/pulls?page=5>; rel="last""#,
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://api.github.com/repositories/1/pulls?page=2")
        );
        h.insert(
            LINK,
            HeaderValue::from_static(r#"<https://x/?page=1>; rel="prev""#),
        );
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn names_are_encoded_for_paths_and_queries() {
        assert_eq!(seg("env:prod"), "env%3Aprod");
        assert_eq!(seg("needs review"), "needs%20review");
        assert_eq!(seg("renovate[bot]"), "renovate%5Bbot%5D");
        assert_eq!(query("shop:baton/dev/web"), "shop:baton%2Fdev%2Fweb");
    }

    #[test]
    fn status_descriptions_are_cut_on_characters() {
        assert_eq!(truncate_chars("ééé", 2), "éé");
        assert_eq!(truncate_chars("ok", 140), "ok");
    }
}
