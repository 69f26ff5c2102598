//! The loop that runs the controllers (one Desktop and one DesktopPool controller per watched
//! namespace, or one each for all), their watches and caches, and the error policy.

use std::sync::Arc;
use std::time::Duration;

use crds::{Desktop, DesktopPool};
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};

use crate::context::Context;
use crate::desktop::{self, state::DesktopContext};
use crate::error::{Category, Error};
use crate::labels::{DESKTOP_LABEL, POOL_LABEL};
use crate::pool::{self, state::PoolContext};
use crate::retry::{MAX_RETRY, Retries};

/// How long a Desktop's events are gathered before it is reconciled.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// Desktop reconciles running at once, at most: a pool of thousands made at once would
/// otherwise open a connection (with its buffers) per desktop to the apiserver.
const RECONCILES_IN_FLIGHT: u16 = 32;

/// What to do after a reconcile failed: a transient error is retried after its object's own
/// backoff (1 s doubling to 5 min, see [`Retries`]); a permanent one that reached here (the
/// controllers show those in status themselves, so only a refused status write does) waits
/// the longest backoff, never a fixed few seconds.
fn error_policy<K: Resource>(
    object: &K,
    error: &Error,
    ctx: &Context,
    retries: &Retries,
) -> Action {
    ctx.metrics.count_error(error.kind());
    let uid = object.meta().uid.clone().unwrap_or_default();
    let name = object.meta().name.clone().unwrap_or_default();
    let wait = match error.category() {
        Category::Transient => retries.failed(&uid),
        Category::Permanent => MAX_RETRY,
    };
    tracing::warn!(%error, object = %name, retry_in_s = wait.as_secs(), "reconcile failed");
    Action::requeue(wait)
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

/// The desktops of a watch, applied to `writer`'s cache; each deleted Desktop (and, after a
/// relist, each one gone meanwhile) is forgotten by the Desktop controller, so that one made
/// again under the same name starts afresh.
fn desktop_watch(
    desktops: Api<Desktop>,
    writer: reflector::store::Writer<Desktop>,
    cache: Store<Desktop>,
    dctx: Arc<DesktopContext>,
) -> impl Stream<Item = Result<Desktop, watcher::Error>> + Send {
    let events = watcher(desktops, watcher::Config::default()).modify(lean);
    reflector(writer, events)
        .inspect_ok(move |event| match event {
            watcher::Event::Delete(desktop) => dctx.forget(&desktop.uid().unwrap_or_default()),
            watcher::Event::InitDone => {
                let live: std::collections::HashSet<String> =
                    cache.state().iter().filter_map(|d| d.uid()).collect();
                dctx.retain(|uid| live.contains(uid));
            }
            _ => {}
        })
        .applied_objects()
}

/// Runs the controllers until `shutdown` resolves; their caches also feed the by-phase and
/// per-pool gauges.
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
    let mut runs: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> = Vec::new();
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
        // a second.
        let pool_controller = Controller::new(pools, watcher::Config::default())
            .owns_stream(member_events)
            .graceful_shutdown_on(shutdown.clone());
        pool_stores.push(pool_controller.store());
        let pool_ctx = Arc::new(PoolContext::new(Arc::clone(&ctx), members));
        runs.push(Box::pin(
            pool_controller
                .run(
                    pool::reconcile,
                    |pool, error, pctx| error_policy(&*pool, error, &pctx.ctx, &pctx.retries),
                    pool_ctx,
                )
                .for_each(|result| async move {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "pool reconcile stream");
                    }
                }),
        ));
        // The Desktop controller: a desktop is reconciled when it or its launcher pod
        // changes, and reads its pods from the cache that watch fills.
        let (pod_cache, writer) = reflector::store();
        let pod_events = reflector(
            writer,
            watcher(pods, watcher::Config::default().labels(DESKTOP_LABEL)).modify(lean_pod),
        )
        .default_backoff()
        .touched_objects();
        let desktop_ctx = Arc::new(DesktopContext::new(Arc::clone(&ctx), pod_cache));
        // Its own cache of desktops, lean like the others (`Controller::new` would keep every
        // desktop whole).
        let (desktop_cache, writer) = reflector::store();
        let desktop_events = desktop_watch(
            desktops,
            writer,
            desktop_cache.clone(),
            Arc::clone(&desktop_ctx),
        );
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
        runs.push(Box::pin(
            controller
                .run(
                    desktop::reconcile,
                    |desktop, error, dctx| error_policy(&*desktop, error, &dctx.ctx, &dctx.retries),
                    desktop_ctx,
                )
                .for_each(|result| async move {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "reconcile stream");
                    }
                }),
        ));
    }
    let gauge = crate::gauges::gauges(
        Arc::clone(&ctx.metrics),
        stores,
        pool_stores,
        shutdown.clone(),
    );
    futures::future::join(futures::future::join_all(runs), gauge).await;
}
