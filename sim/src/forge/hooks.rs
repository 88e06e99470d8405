//! Webhook delivery: each event is POSTed to every configured hook in the order it happened,
//! signed like GitHub signs it (`X-Hub-Signature-256: sha256=<hex HMAC of the body>`).

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;

use super::Inner;
use super::state::Delivery;

#[derive(Debug)]
pub(crate) struct Outgoing {
    pub event: &'static str,
    pub payload: Value,
    pub url: String,
    pub secret: String,
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A GUID-shaped delivery id, unique within the process.
fn delivery_id() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(1);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (t >> 32) as u32,
        (t >> 16) as u16,
        (t & 0xfff) as u16,
        (n >> 48) as u16 & 0xfff,
        n & 0xffff_ffff_ffff
    )
}

/// Runs until the forge is dropped.
pub(crate) async fn deliver(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a plain HTTP client builds");
    while let Some(out) = rx.recv().await {
        let body = serde_json::to_vec(&out.payload).expect("JSON values serialize");
        let id = delivery_id();
        let result = client
            .post(&out.url)
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/sim")
            .header("x-github-event", out.event)
            .header("x-github-delivery", &id)
            .header("x-github-hook-id", "1")
            .header("x-github-hook-installation-target-type", "integration")
            .header("x-hub-signature-256", signature(&out.secret, &body))
            .body(body)
            .send()
            .await;
        let status = match result {
            Ok(r) => Some(r.status().as_u16()),
            Err(error) => {
                tracing::debug!(%error, url = %out.url, "webhook delivery failed");
                None
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        inner.lock().deliveries.push(Delivery {
            id,
            event: out.event.to_owned(),
            action: out
                .payload
                .get("action")
                .and_then(Value::as_str)
                .map(str::to_owned),
            url: out.url,
            status,
        });
        inner.pending.fetch_sub(1, Ordering::SeqCst);
        inner.idle.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_githubs_documented_example() {
        // From GitHub's "Validating webhook deliveries" page.
        assert_eq!(
            signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn delivery_ids_are_distinct_guids() {
        let (a, b) = (delivery_id(), delivery_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
