//! The Desktop controller: its shared context, error policy, and the loop that runs it (under
//! leader election when asked).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::{Desktop, DesktopPhase, DesktopPool};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use crate::Error;
use crate::Options;
use crate::desktop::labels::POOL_LABEL;
use crate::desktop::{self, apply::FailureRecord};
use crate::metrics::{ErrorLabels, Metrics, PhaseLabels, PoolLabels};

/// What every reconcile shares.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The operator's options.
    pub options: Options,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    recorder: Recorder,
    failures: Mutex<HashMap<String, FailureRecord>>,
}

impl Context {
    /// A context for `client`.
    pub fn new(client: Client, options: Options, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: "verdant-operator".into(),
            instance: Some(options.identity.clone()),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            options,
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Publishes an event about `object` (a Desktop or a pool); a failure to publish is
    /// logged, not fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, FailureRecord>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The failure record of a Desktop (`namespace/name`).
    pub fn failures_get(&self, key: &str) -> Option<FailureRecord> {
        self.failures().get(key).cloned()
    }

    /// Records how launcher pod `pod_uid` ended; each pod counts once. Returns the record.
    pub fn failures_record(
        &self,
        key: &str,
        pod_uid: &str,
        failed: bool,
        reason: &str,
        message: &str,
    ) -> Option<FailureRecord> {
        let mut failures = self.failures();
        if !failed {
            failures.remove(key);
            return None;
        }
        let record = failures
            .entry(key.to_owned())
            .or_insert_with(|| FailureRecord {
                count: 0,
                at: Instant::now(),
                reason: String::new(),
                message: String::new(),
                pod_uid: String::new(),
            });
        if record.pod_uid != pod_uid {
            record.count += 1;
            record.at = Instant::now();
            record.reason = reason.into();
            record.message = message.into();
            record.pod_uid = pod_uid.into();
        }
        Some(record.clone())
    }

    /// Forgets a Desktop's failures (it became Ready, or stopped).
    pub fn failures_forget(&self, key: &str) {
        self.failures().remove(key);
    }
}

/// How long a Desktop's events are gathered before it is reconciled.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// Desktop reconciles running at once, at most: a pool of thousands made at once would
/// otherwise open a connection (with its buffers) per desktop to the apiserver.
const RECONCILES_IN_FLIGHT: u16 = 32;

fn error_policy<K>(_object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let kind = error.kind();
    ctx.metrics
        .errors
        .get_or_create(&ErrorLabels { kind })
        .inc();
    tracing::warn!(%error, "reconcile failed; retrying in 5 s");
    Action::requeue(Duration::from_secs(5))
}

/// What the caches keep of an object: all but its `managedFields`, which no reconcile reads
/// and which take most of a cached object's memory (every field's path, as a JSON tree).
fn lean<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// What the pod cache keeps of a launcher pod: [`lean`], and of its spec only the node it
/// was scheduled to, the one field of it a reconcile reads (the name says which spec a pod
/// runs; the rest, the container with its arguments, volumes and defaults, is most of a pod).
fn lean_pod(pod: &mut Pod) {
    lean(pod);
    pod.spec = pod.spec.take().map(|spec| PodSpec {
        node_name: spec.node_name,
        ..PodSpec::default()
    });
}

/// Runs the Desktop controller (one per watched namespace, or one for all) until `shutdown`
/// resolves; their caches also feed the by-phase and per-pool gauges.
pub async fn run_controllers(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let client = &ctx.client;
    let apis: Vec<(Api<Desktop>, Api<Pod>, Api<DesktopPool>)> = if ctx.options.namespaces.is_empty()
    {
        vec![(
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        )]
    } else {
        ctx.options
            .namespaces
            .iter()
            .map(|ns| {
                (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                )
            })
            .collect()
    };
    let mut runs = Vec::new();
    let mut stores = Vec::new();
    let mut pool_stores = Vec::new();
    for (desktops, pods, pools) in apis {
        // The pool controller: a pool is reconciled when it or one of its desktops changes,
        // and reads its desktops from the cache that watch fills, which has seen every change
        // that triggered the reconcile (no list of the pool's desktops per reconcile).
        let (members, writer) = reflector::store();
        let member_events = reflector(
            writer,
            watcher(
                desktops.clone(),
                watcher::Config::default().labels(POOL_LABEL),
            )
            .modify(lean),
        )
        .default_backoff()
        .touched_objects();
        // No debounce: kube-rs's pushes a reconcile back on every new trigger, and a pool's
        // desktops can change all the time (a login storm), which would hold its reconcile
        // (spares, session limits) back for as long. Triggers that come during a reconcile
        // are merged into the next one all the same, and the status is written at most once
        // a second (`pool::STATUS_INTERVAL`).
        let pool_controller = Controller::new(pools, watcher::Config::default())
            .owns_stream(member_events)
            .graceful_shutdown_on(shutdown.clone());
        pool_stores.push(pool_controller.store());
        let pool_ctx = Arc::new(crate::pool::PoolContext::new(Arc::clone(&ctx), members));
        runs.push(Box::pin(
            pool_controller
                .run(
                    crate::pool::reconcile,
                    |pool, error, pool_ctx| error_policy(pool, error, Arc::clone(&pool_ctx.ctx)),
                    pool_ctx,
                )
                .for_each(|result| async move {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "pool reconcile stream");
                    }
                }),
        )
            as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>);
        // The Desktop controller: a desktop is reconciled when it or its launcher pod
        // changes, and reads its pods from the cache that watch fills.
        let (pod_cache, writer) = reflector::store();
        let pod_events = reflector(
            writer,
            watcher(
                pods,
                watcher::Config::default().labels(crate::desktop::labels::DESKTOP_LABEL),
            )
            .modify(lean_pod),
        )
        .default_backoff()
        .touched_objects();
        // Its own cache of desktops, lean like the others (`Controller::new` would keep every
        // desktop whole).
        let (desktop_cache, writer) = reflector::store();
        let desktop_events = reflector(
            writer,
            watcher(desktops, watcher::Config::default()).modify(lean),
        )
        .applied_objects();
        let controller = Controller::for_stream(desktop_events, desktop_cache)
            // Coalesce bursts (a pod bound and started in one go) into one reconcile, and so
            // into one status write.
            .with_config(
                kube::runtime::controller::Config::default()
                    .debounce(DEBOUNCE)
                    .concurrency(RECONCILES_IN_FLIGHT),
            )
            .owns_stream(pod_events)
            .graceful_shutdown_on(shutdown.clone());
        stores.push(controller.store());
        let desktop_ctx = Arc::new(desktop::DesktopContext::new(Arc::clone(&ctx), pod_cache));
        runs.push(Box::pin(
            controller
                .run(
                    desktop::reconcile,
                    |desktop, error, dctx| error_policy(desktop, error, Arc::clone(&dctx.ctx)),
                    desktop_ctx,
                )
                .for_each(|result| async move {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "reconcile stream");
                    }
                }),
        ));
    }
    let gauge = gauges(
        Arc::clone(&ctx.metrics),
        stores,
        pool_stores,
        shutdown.clone(),
    );
    futures::future::join(futures::future::join_all(runs), gauge).await;
}

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
async fn gauges(
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
