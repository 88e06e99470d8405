//! Writes to the clusters stop when this replica's lease may have passed on: a layer on each
//! cluster's Kubernetes client refuses every request but reads once the lease's
//! [`Fence`](crate::leader::Fence) is down, before the request is sent (a reconciler's client
//! waits for its cluster's lease, the verification Jobs' for the engine's). Nothing else has to
//! remember to check: apply, prune, the inventory, verification Jobs all go through it.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{BoxError, Layer, Service};

use crate::leader::Fence;

/// The fences cluster writes wait for. Unset (no leader election): every write goes. Closed:
/// no write goes until a fence is added; then a write goes while any fence added holds (the
/// engine's lease, or the lease of the cluster the client talks to).
#[derive(Clone, Default)]
pub struct WriteGuard(Arc<Mutex<Option<Vec<Fence>>>>);

impl WriteGuard {
    /// A guard that lets no write through until [`WriteGuard::add`] gives it a fence.
    pub fn closed() -> Self {
        Self(Arc::new(Mutex::new(Some(Vec::new()))))
    }

    /// Let writes through while `fence` holds (a lease taken again brings a new fence).
    pub fn add(&self, fence: Fence) {
        let mut fences = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let fences = fences.get_or_insert_with(Vec::new);
        fences.retain(Fence::holds);
        fences.push(fence);
    }

    fn allows(&self, method: &http::Method) -> bool {
        method == http::Method::GET
            || self
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .is_none_or(|fences| fences.iter().any(Fence::holds))
    }
}

impl<S> Layer<S> for WriteGuard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            inner,
            guard: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    guard: WriteGuard,
}

impl<S, B> Service<http::Request<B>> for Guarded<S>
where
    S: Service<http::Request<B>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<S::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if !self.guard.allows(req.method()) {
            let what = format!("{} {}", req.method(), req.uri().path());
            return Box::pin(async move {
                Err(format!("{what} was not sent: this replica no longer holds its lease").into())
            });
        }
        let call = self.inner.call(req);
        Box::pin(async move { call.await.map_err(Into::into) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_guard_lets_reads_through_and_writes_only_once_a_holding_fence_is_added() {
        let guard = WriteGuard::closed();
        assert!(guard.allows(&http::Method::GET));
        assert!(!guard.allows(&http::Method::PATCH));
        guard.add(Fence::always());
        assert!(guard.allows(&http::Method::PATCH));
        assert!(
            WriteGuard::default().allows(&http::Method::POST),
            "unset: no election"
        );
    }
}
