//! Request accounting: every HTTP request the registry client sends is counted by registry
//! host and kind, and every retry by registry host. `/metrics`, benchmarks and tests read a
//! [`RequestStats`] snapshot; nothing here is global.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use serde::Serialize;

/// What a request was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Token endpoint of a Bearer challenge.
    Token,
    /// `GET /v2/<name>/tags/list` (one per page).
    Tags,
    ManifestHead,
    ManifestGet,
    ManifestPut,
    BlobHead,
    BlobGet,
    /// `POST /v2/<name>/blobs/uploads/?mount=…&from=…`
    BlobMount,
    /// Upload session start and the final `PUT`, each counted.
    BlobUpload,
    /// `GET /v2/<name>/referrers/<digest>`
    Referrers,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Tags => "tags",
            Self::ManifestHead => "manifest_head",
            Self::ManifestGet => "manifest_get",
            Self::ManifestPut => "manifest_put",
            Self::BlobHead => "blob_head",
            Self::BlobGet => "blob_get",
            Self::BlobMount => "blob_mount",
            Self::BlobUpload => "blob_upload",
            Self::Referrers => "referrers",
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Default)]
pub(crate) struct RequestCounter {
    requests: Mutex<BTreeMap<(String, RequestKind), u64>>,
    retries: Mutex<BTreeMap<String, u64>>,
}

impl RequestCounter {
    pub(crate) fn request(&self, registry: &str, kind: RequestKind) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((registry.to_string(), kind)).or_default() += 1;
    }

    pub(crate) fn retry(&self, registry: &str) {
        let mut map = self.retries.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(registry.to_string()).or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> RequestStats {
        let requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let retries = self.retries.lock().unwrap_or_else(|e| e.into_inner());
        RequestStats {
            requests: requests
                .iter()
                .map(|((registry, kind), count)| RequestCount {
                    registry: registry.clone(),
                    kind: *kind,
                    count: *count,
                })
                .collect(),
            retries: retries.clone(),
        }
    }
}

/// One counter value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestCount {
    pub registry: String,
    pub kind: RequestKind,
    pub count: u64,
}

/// A point-in-time copy of the counters, monotonic since the client was created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RequestStats {
    pub requests: Vec<RequestCount>,
    /// Requests repeated after a transient failure (connection error, 5xx, 429).
    pub retries: BTreeMap<String, u64>,
}

impl RequestStats {
    pub fn total(&self) -> u64 {
        self.requests.iter().map(|c| c.count).sum()
    }

    pub fn get(&self, registry: &str, kind: RequestKind) -> u64 {
        self.requests
            .iter()
            .filter(|c| c.registry == registry && c.kind == kind)
            .map(|c| c.count)
            .sum()
    }

    pub fn of_kind(&self, kind: RequestKind) -> u64 {
        self.requests
            .iter()
            .filter(|c| c.kind == kind)
            .map(|c| c.count)
            .sum()
    }

    pub fn retries(&self) -> u64 {
        self.retries.values().sum()
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestStats) -> RequestStats {
        let requests = self
            .requests
            .iter()
            .map(|c| RequestCount {
                count: c.count - earlier.get(&c.registry, c.kind),
                ..c.clone()
            })
            .filter(|c| c.count > 0)
            .collect();
        let retries = self
            .retries
            .iter()
            .map(|(r, n)| (r.clone(), n - earlier.retries.get(r).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        RequestStats { requests, retries }
    }
}

impl fmt::Display for RequestStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requests
            .iter()
            .map(|c| format!("{} {}={}", c.registry, c.kind, c.count))
            .collect();
        write!(f, "{} requests", self.total())?;
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_kept_by_registry_and_kind_and_can_be_diffed() {
        let c = RequestCounter::default();
        c.request("a:5000", RequestKind::Tags);
        let before = c.snapshot();
        c.request("a:5000", RequestKind::Tags);
        c.request("a:5000", RequestKind::ManifestHead);
        c.request("b", RequestKind::Tags);
        c.retry("b");
        let now = c.snapshot();
        assert_eq!(now.total(), 4);
        assert_eq!(now.get("a:5000", RequestKind::Tags), 2);
        let d = now.since(&before);
        assert_eq!(d.total(), 3);
        assert_eq!(d.of_kind(RequestKind::Tags), 2);
        assert_eq!(d.retries(), 1);
        assert_eq!(
            d.to_string(),
            "3 requests (a:5000 tags=1, a:5000 manifest_head=1, b tags=1)"
        );
    }
}
