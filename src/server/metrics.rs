//! Prometheus metrics (prometheus-client, no globals): one [`Metrics`] per process, shared
//! by the server and the loops, rendered at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub source: String,
    pub result: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PromotionLabels {
    pub app: String,
    pub env: String,
    pub result: String,
}

/// Every metric baton exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub promotions: Family<PromotionLabels, Counter>,
    pub plan_passes: Counter,
    pub plan_failures: Counter,
    pub ready: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("baton");
        let webhooks = Family::<WebhookLabels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by source and result",
            webhooks.clone(),
        );
        let promotions = Family::<PromotionLabels, Counter>::default();
        registry.register(
            "promotions",
            "Promotion steps by app, environment and result",
            promotions.clone(),
        );
        let plan_passes = Counter::default();
        registry.register(
            "plan_passes",
            "Promotion engine passes",
            plan_passes.clone(),
        );
        let plan_failures = Counter::default();
        registry.register(
            "plan_failures",
            "Promotion engine passes that failed",
            plan_failures.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 when this replica is ready (leader, caches synced)",
            ready.clone(),
        );
        Self {
            registry,
            webhooks,
            promotions,
            plan_passes,
            plan_failures,
            ready,
        }
    }

    pub fn webhook(&self, source: &str, result: &str) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                source: source.into(),
                result: result.into(),
            })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
