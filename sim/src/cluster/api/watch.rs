//! Watches: the initial list as `ADDED` events (unless a resourceVersion says where to resume),
//! then every change that matches, until the timeout or a disconnect the test asked for.

use super::*;

struct WatchStream {
    shared: Arc<Shared>,
    t: ResourceType,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    last_rv: u64,
    queue: VecDeque<Bytes>,
    changed: tokio::sync::watch::Receiver<u64>,
    disconnect: tokio::sync::watch::Receiver<u64>,
    deadline: Instant,
    done: bool,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON serializes");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

impl WatchStream {
    fn matches(&self, obj: &Value) -> bool {
        let ns_ok = self.namespace.as_deref().is_none_or(|ns| {
            obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
        });
        ns_ok && self.labels.matches(obj) && self.fields.matches(obj)
    }

    fn expired(&mut self, rv: u64, oldest: u64) {
        let status = ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {rv} ({oldest})"),
        )
        .status();
        self.queue.push_back(line("ERROR", &status));
        self.done = true;
    }

    fn collect(&mut self) {
        let shared = self.shared.clone();
        let inner = shared.lock();
        if self.last_rv < inner.oldest_resumable() {
            let (rv, oldest) = (self.last_rv, inner.oldest_resumable());
            drop(inner);
            self.expired(rv, oldest);
            return;
        }
        let start = inner.history.partition_point(|e| e.rv <= self.last_rv);
        let key = self.t.key();
        for event in inner.history.range(start..) {
            if event.key != key {
                continue;
            }
            let now = self.matches(&event.object);
            let kind = match event.kind {
                EventType::Added | EventType::Deleted => now.then_some(event.kind.as_str()),
                EventType::Modified => match (
                    now,
                    event.previous.as_ref().is_some_and(|p| self.matches(p)),
                ) {
                    (true, true) => Some("MODIFIED"),
                    (true, false) => Some("ADDED"),
                    (false, true) => Some("DELETED"),
                    (false, false) => None,
                },
            };
            if let Some(kind) = kind {
                self.queue
                    .push_back(line(kind, &store::as_version(&event.object, &self.t)));
            }
        }
        self.last_rv = inner.rv;
    }

    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        loop {
            if let Some(bytes) = self.queue.pop_front() {
                return Some((Ok(bytes), self));
            }
            if self.done {
                return None;
            }
            self.changed.borrow_and_update();
            self.collect();
            if !self.queue.is_empty() || self.done {
                continue;
            }
            tokio::select! {
                r = self.changed.changed() => if r.is_err() { return None },
                _ = self.disconnect.changed() => return None,
                _ = tokio::time::sleep_until(self.deadline) => return None,
            }
        }
    }
}

pub(super) fn watch(
    s: &Arc<Shared>,
    t: &ResourceType,
    namespace: Option<&str>,
    params: &Params,
) -> Result<Response, ApiError> {
    let (labels, fields) = selectors(params)?;
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1800u64);
    let bookmarks = params
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let initial = params.get("sendInitialEvents").is_some_and(|v| v == "true");
    let rv_param = params.get("resourceVersion").filter(|v| !v.is_empty());
    let mut changed = s.changed.subscribe();
    changed.borrow_and_update();
    let mut disconnect = s.disconnect.subscribe();
    disconnect.borrow_and_update();
    let mut stream = WatchStream {
        shared: s.clone(),
        t: t.clone(),
        namespace: namespace.map(String::from),
        labels,
        fields,
        last_rv: 0,
        queue: VecDeque::new(),
        changed,
        disconnect,
        deadline: Instant::now() + Duration::from_secs(timeout),
        done: false,
    };
    {
        let inner = s.lock();
        match rv_param.map(|v| v.parse::<u64>()) {
            None | Some(Ok(0)) => {
                stream.last_rv = inner.rv;
                // rv unset or 0: the current state arrives first, as synthetic ADDED events.
                for obj in inner.list(t, namespace) {
                    if stream.matches(&obj) {
                        stream.queue.push_back(line("ADDED", &obj));
                    }
                }
                if initial && bookmarks {
                    let bookmark = json!({"kind": t.kind, "apiVersion": t.api_version(),
                        "metadata": {"resourceVersion": inner.rv.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
                    stream.queue.push_back(line("BOOKMARK", &bookmark));
                }
            }
            Some(Ok(rv)) => {
                let oldest = inner.oldest_resumable();
                if rv < oldest {
                    drop(inner);
                    stream.expired(rv, oldest);
                } else {
                    stream.last_rv = rv.min(inner.rv);
                }
            }
            Some(Err(_)) => return Err(ApiError::bad_request("invalid resourceVersion")),
        }
    }
    let body = Body::from_stream(futures::stream::unfold(stream, WatchStream::next));
    Ok(Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .expect("static response parts"))
}
