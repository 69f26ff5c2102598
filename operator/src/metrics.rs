//! The operator's Prometheus metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The kind of error (`api_409`, `api_500`, `request`, ...).
    pub kind: String,
}

/// Labels of the desktops-by-phase gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The phase.
    pub phase: String,
}

/// Labels of the per-pool gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PoolLabels {
    /// The pool's namespace.
    pub namespace: String,
    /// The pool.
    pub pool: String,
    /// Which desktops: `all`, `ready`, `available` (Ready and nobody's) or `assigned`.
    pub state: &'static str,
}

/// Every metric, and the registry that encodes them.
pub struct Metrics {
    /// Reconciles run.
    pub reconciles: Counter,
    /// Reconciles that failed, by kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// How long reconciles take.
    pub duration: Histogram,
    /// Desktops by phase, as last seen.
    pub desktops: Family<PhaseLabels, Gauge>,
    /// Seconds from a Desktop's creation to its first Ready.
    pub ready_seconds: Histogram,
    /// Desktops of each pool, by state, as last seen.
    pub pool_desktops: Family<PoolLabels, Gauge>,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Counter::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        let desktops = Family::<PhaseLabels, Gauge>::default();
        let ready_seconds = Histogram::new(exponential_buckets(0.5, 2.0, 12));
        let pool_desktops = Family::<PoolLabels, Gauge>::default();
        let mut registry = Registry::with_prefix("verdant_operator");
        registry.register("reconciles", "Desktop reconciles run", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Desktop reconciles that failed, by kind",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a Desktop reconcile takes",
            duration.clone(),
        );
        registry.register("desktops", "Desktops by phase", desktops.clone());
        registry.register(
            "desktop_ready_seconds",
            "Seconds from a Desktop's creation to its first Ready",
            ready_seconds.clone(),
        );
        registry.register(
            "pool_desktops",
            "Desktops of each pool: all, ready, available (Ready and nobody's) and assigned",
            pool_desktops.clone(),
        );
        Self {
            reconciles,
            errors,
            duration,
            desktops,
            ready_seconds,
            pool_desktops,
            registry,
        }
    }
}

impl Metrics {
    /// Counts a failed reconcile of `kind` (see `Error::kind`).
    pub fn count_error(&self, kind: String) {
        self.errors.get_or_create(&ErrorLabels { kind }).inc();
    }

    /// The metrics in Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_their_names() {
        let m = Metrics::default();
        m.reconciles.inc();
        m.errors
            .get_or_create(&ErrorLabels {
                kind: "api_409".into(),
            })
            .inc();
        m.desktops
            .get_or_create(&PhaseLabels {
                phase: "Ready".into(),
            })
            .set(3);
        m.ready_seconds.observe(4.2);
        m.pool_desktops
            .get_or_create(&PoolLabels {
                namespace: "team".into(),
                pool: "office".into(),
                state: "available",
            })
            .set(7);
        let text = m.encode();
        assert!(
            text.contains("verdant_operator_reconciles_total 1"),
            "{text}"
        );
        assert!(
            text.contains("verdant_operator_reconcile_errors_total{kind=\"api_409\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("verdant_operator_desktops{phase=\"Ready\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("verdant_operator_desktop_ready_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "verdant_operator_pool_desktops{namespace=\"team\",pool=\"office\",state=\"available\"} 7"
            ),
            "{text}"
        );
    }
}
