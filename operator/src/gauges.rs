//! The desktops-by-phase and per-pool gauges, kept current from the controllers' caches.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crds::{Desktop, DesktopPhase, DesktopPool};
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::metrics::{Metrics, PhaseLabels, PoolLabels};

/// Each pool's desktops (by namespace and pool): all, Ready, available and assigned, as its
/// status counts them (a pool whose status is not written yet counts zeros), so the gauge
/// says what `kubectl get desktoppools` says.
fn pool_counts<'a>(
    pools: impl IntoIterator<Item = &'a DesktopPool>,
) -> BTreeMap<(String, String), [i64; 4]> {
    pools
        .into_iter()
        .map(|p| {
            let s = p.status.clone().unwrap_or_default();
            let counts = [s.replicas, s.ready, s.available, s.assigned].map(i64::from);
            ((p.namespace().unwrap_or_default(), p.name_any()), counts)
        })
        .collect()
}

/// What [`pool_counts`] counts, in its order.
const POOL_STATES: [&str; 4] = ["all", "ready", "available", "assigned"];

/// Keeps the desktops-by-phase and per-pool gauges current from the controllers' caches.
pub async fn gauges(
    metrics: Arc<Metrics>,
    stores: Vec<Store<Desktop>>,
    pool_stores: Vec<Store<DesktopPool>>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let phases = [
        DesktopPhase::Pending,
        DesktopPhase::Starting,
        DesktopPhase::Running,
        DesktopPhase::Ready,
        DesktopPhase::Stopping,
        DesktopPhase::Stopped,
        DesktopPhase::Failed,
    ];
    let tick = async {
        // Pools seen last time: a pool gone since drops out of the gauge.
        let mut pools_seen: HashSet<PoolLabels> = HashSet::new();
        loop {
            let desktops: Vec<Arc<Desktop>> = stores.iter().flat_map(Store::state).collect();
            let mut counts: HashMap<String, i64> =
                phases.iter().map(|p| (format!("{p:?}"), 0)).collect();
            for phase in desktops.iter().filter_map(|d| d.status.as_ref()?.phase) {
                *counts.entry(format!("{phase:?}")).or_default() += 1;
            }
            for (phase, count) in counts {
                metrics
                    .desktops
                    .get_or_create(&PhaseLabels { phase })
                    .set(count);
            }
            let mut seen = HashSet::new();
            let pools: Vec<Arc<DesktopPool>> = pool_stores.iter().flat_map(Store::state).collect();
            let counts = pool_counts(pools.iter().map(AsRef::as_ref));
            for ((namespace, pool), counts) in counts {
                for (state, count) in POOL_STATES.into_iter().zip(counts) {
                    let labels = PoolLabels {
                        namespace: namespace.clone(),
                        pool: pool.clone(),
                        state,
                    };
                    metrics.pool_desktops.get_or_create(&labels).set(count);
                    seen.insert(labels);
                }
            }
            for gone in pools_seen.difference(&seen) {
                metrics.pool_desktops.remove(gone);
            }
            pools_seen = seen;
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    };
    tokio::select! {
        _ = tick => {}
        _ = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(ns: &str, name: &str, status: serde_json::Value) -> DesktopPool {
        serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "DesktopPool",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"template": {"spec": {
                "resources": {"cpus": 1, "memory": "1Gi"},
                "boot": {"kernel": {"hostPath": "/k"}},
            }}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn pools_count_their_desktops_as_their_status_does() {
        let counted =
            json!({"replicas": 3, "ready": 2, "available": 1, "assigned": 1, "desiredReplicas": 3});
        let pools = [
            pool("a", "office", counted),
            pool(
                "b",
                "office",
                json!({"replicas": 1, "assigned": 1, "desiredReplicas": 1}),
            ),
            pool("b", "new", serde_json::Value::Null),
        ];
        assert_eq!(
            pool_counts(&pools),
            BTreeMap::from([
                (("a".into(), "office".into()), [3, 2, 1, 1]),
                (("b".into(), "new".into()), [0, 0, 0, 0]),
                (("b".into(), "office".into()), [1, 0, 0, 1]),
            ])
        );
    }
}
