//! Writes to the clusters stop when this replica's lease may have passed on: a layer on each
//! cluster's Kubernetes client refuses every request but reads once the lease's
//! [`Fence`](crate::leader::Fence) is down, before the request is sent. Nothing else has to
//! remember to check: apply, prune, the inventory, verification Jobs all go through it.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{BoxError, Layer, Service};

use crate::leader::Fence;

/// The fence cluster writes wait for; unset (no leader election): every write goes.
#[derive(Clone, Default)]
pub struct WriteGuard(Arc<OnceLock<Fence>>);

impl WriteGuard {
    /// Guard writes by `fence` from now on (set once; later calls are ignored).
    pub fn set(&self, fence: Fence) {
        let _ = self.0.set(fence);
    }

    fn allows(&self, method: &http::Method) -> bool {
        method == http::Method::GET || self.0.get().is_none_or(Fence::holds)
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
