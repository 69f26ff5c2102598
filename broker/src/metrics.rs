//! The broker's Prometheus metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the auth-failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why: `no_session`, `bad_bearer`, `login_failed`, `csrf`, `origin`, `not_entitled`,
    /// `token_forged`, `token_expired`, `token_replayed`, ...
    pub reason: &'static str,
}

/// Labels of the bytes counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `to_browser` or `to_launcher`.
    pub direction: &'static str,
}

/// Every metric, and the registry that encodes them.
pub struct Metrics {
    /// Viewer sessions open now.
    pub sessions: Gauge,
    /// Seconds from a WebSocket request to the launcher's ServerInit path being open.
    pub connect_seconds: Histogram,
    /// Bytes relayed, by direction.
    pub bytes: Family<DirectionLabels, Counter>,
    /// Requests refused for want of identity or rights, by reason.
    pub auth_failures: Family<ReasonLabels, Counter>,
    /// Logins completed.
    pub logins: Counter,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let sessions = Gauge::default();
        let connect_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let bytes = Family::<DirectionLabels, Counter>::default();
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        let logins = Counter::default();
        let mut registry = Registry::with_prefix("verdant_broker");
        registry.register("sessions", "Viewer sessions open now", sessions.clone());
        registry.register(
            "connect_seconds",
            "Time from a viewer's WebSocket request to its session with the launcher",
            connect_seconds.clone(),
        );
        registry.register(
            "proxied_bytes",
            "Bytes relayed, by direction",
            bytes.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused for want of identity or rights, by reason",
            auth_failures.clone(),
        );
        registry.register("logins", "Logins completed", logins.clone());
        Self {
            sessions,
            connect_seconds,
            bytes,
            auth_failures,
            logins,
            registry,
        }
    }
}

impl Metrics {
    /// Counts a refusal.
    pub fn refused(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts relayed bytes.
    pub fn relayed(&self, to_browser: u64, to_launcher: u64) {
        if to_browser > 0 {
            self.bytes
                .get_or_create(&DirectionLabels {
                    direction: "to_browser",
                })
                .inc_by(to_browser);
        }
        if to_launcher > 0 {
            self.bytes
                .get_or_create(&DirectionLabels {
                    direction: "to_launcher",
                })
                .inc_by(to_launcher);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
