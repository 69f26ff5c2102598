//! Pools at scale, against one real control plane (etcd, kube-apiserver with an audit log,
//! kube-controller-manager), in one run:
//!
//! 1. Baseline: a ReplicaSet 0 -> 1000, until kube-controller-manager has made 1000 pods.
//! 2. A DesktopPool 0 -> 1000, until the operator (running in this process, as its own user)
//!    has made 1000 launcher pods; then its apiserver writes per desktop, from the audit log.
//! 3. The pool warmed up (this bench plays the kubelet: every pod bound, running and ready)
//!    and `assign` latency for 1000 users through one [`Assigner`], as the broker holds it:
//!    all 1000 at once, then 1000 arriving at 50 a second, then at 100 a second.
//!
//! Prints the figures, the ratio pool/ReplicaSet and the targets (pool no slower than the
//! ReplicaSet, at most 4 writes per desktop, assign p99 at most 100 ms); it asserts only that
//! the runs did what they claim (1000 pods, 1000 distinct desktops).
//!
//! Run with `cargo bench -p tests --bench pool_scale`; `VERDANT_POOL_BENCH_SIZE` sets the size
//! (default 1000).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assignment::{AssignError, Assigner};
use crds::{Desktop, DesktopPool};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use testkit::eventually;
use tests::env::Env;
use tests::kubelet::Kubelet;

/// The operator's user: its writes are told apart in the audit log by it.
use tests::env::OPERATOR_USER;
/// How long any one phase may take before the bench gives up.
const LIMIT: Duration = Duration::from_secs(600);
/// Requests the stand-in kubelet has in flight.
const KUBELET_IN_FLIGHT: usize = 32;
/// Users a second in the steady-arrival runs.
const ARRIVALS_PER_SECOND: [u32; 2] = [50, 100];

fn size() -> usize {
    std::env::var("VERDANT_POOL_BENCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Resolves, with the time it happened, when `n` distinct pods matching `labels` exist in
/// `ns` (watched, not polled; pods made before the watch lists are in its list).
fn pods_exist(
    client: &Client,
    ns: &str,
    labels: &str,
    n: usize,
) -> tokio::sync::oneshot::Receiver<Instant> {
    let pods: Api<PartialObjectMeta<Pod>> = Api::namespaced(client.clone(), ns);
    let stream = watcher(pods, watcher::Config::default().labels(labels))
        .default_backoff()
        .applied_objects();
    let (done, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        let mut names = BTreeSet::new();
        while let Ok(Some(pod)) = stream.try_next().await {
            names.insert(pod.name_any());
            if names.len() >= n {
                let _ = done.send(Instant::now());
                return;
            }
        }
    });
    rx
}

/// How long from running `create` until `n` pods matching `labels` exist in `ns`.
async fn time_to_pods(
    client: &Client,
    ns: &str,
    labels: &str,
    n: usize,
    create: impl std::future::Future<Output = ()>,
) -> Duration {
    let done = pods_exist(client, ns, labels, n);
    let started = Instant::now();
    create.await;
    tokio::time::timeout(LIMIT, done)
        .await
        .unwrap_or_else(|_| panic!("{n} pods in {ns} within {} s", LIMIT.as_secs()))
        .expect("pod watch")
        - started
}

/// Writes by the operator's user in `ns`, from the audit log: by `resource[/subresource]
/// verb`.
fn operator_writes(audit_log: &std::path::Path, ns: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for request in tests::audit::requests(audit_log) {
        if request.user == OPERATOR_USER && request.namespace == ns {
            *counts.entry(request.kind()).or_default() += 1;
        }
    }
    counts
}

/// Waits until the operator has stopped writing in `ns` (no write for 2 s, at most a
/// minute): the reaction to a mass release (1000 launchers replaced) is over before the next
/// assign run is measured, as the steady rates were before releases reset desktops.
async fn quiesce(audit_log: &std::path::Path, ns: &str) {
    let total = || operator_writes(audit_log, ns).values().sum::<usize>();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = total();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = total();
        if now == last {
            return;
        }
        last = now;
    }
}

fn per_desktop(counts: &BTreeMap<String, usize>, n: usize) -> (f64, f64) {
    let events: usize = counts
        .iter()
        .filter(|(k, _)| k.starts_with("events"))
        .map(|(_, v)| v)
        .sum();
    let all: usize = counts.values().sum();
    ((all - events) as f64 / n as f64, all as f64 / n as f64)
}

fn show(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits until the pool's status counts all `n` desktops available.
async fn all_available(pools: &Api<DesktopPool>, n: usize) {
    eventually("every desktop available", LIMIT, || async {
        let status = pools.get("bench").await.ok()?.status?;
        (status.available as usize == n).then_some(())
    })
    .await;
}

/// Plays the kubelet for released desktops, whose launchers the operator replaces (a reset:
/// nobody gets a VM another user had): the old pods go, the new ones run, until all `n`
/// desktops are available again.
async fn relaunch_released(kubelet: &Kubelet, pods: &Api<Pod>, pools: &Api<DesktopPool>, n: usize) {
    eventually(
        "every released desktop Ready on a fresh launcher",
        LIMIT,
        || async {
            kubelet.reap().await.ok()?;
            let unbound: Vec<String> = pods
                .list(&ListParams::default().labels("vdi.verdant.dev/pool=bench"))
                .await
                .ok()?
                .items
                .iter()
                .filter(|p| {
                    p.metadata.deletion_timestamp.is_none()
                        && p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none()
                })
                .map(|p| p.name_any())
                .collect();
            kubelet
                .start_all(futures::stream::iter(unbound), KUBELET_IN_FLIGHT)
                .await
                .ok()?;
            let status = pools.get("bench").await.ok()?.status?;
            (status.available as usize == n).then_some(())
        },
    )
    .await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Assigns `users` through `assigner`, user `i` starting at `i * gap`; returns the latencies
/// (each from its own start) and checks that every user got a desktop of their own.
async fn assign_all(assigner: &Arc<Assigner>, users: &[String], gap: Duration) -> Vec<Duration> {
    let started = Instant::now();
    let calls = users.iter().enumerate().map(|(i, user)| {
        let assigner = Arc::clone(assigner);
        let at = started + gap * i as u32;
        async move {
            tokio::time::sleep_until(at.into()).await;
            let t = Instant::now();
            let result = assigner.assign("bench", user).await;
            (t.elapsed(), result)
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut given = BTreeSet::new();
    let mut latencies = Vec::with_capacity(users.len());
    for (took, result) in results {
        match result {
            Ok(desktop) => assert!(given.insert(desktop), "a desktop given twice"),
            Err(AssignError::NoDesktopAvailable { .. }) => panic!("a user got no desktop"),
            Err(e) => panic!("assign failed: {e}"),
        }
        latencies.push(took);
    }
    latencies.sort_unstable();
    latencies
}

fn report_assign(label: &str, latencies: &[Duration], wall: Duration) {
    println!(
        "assign, {label}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} users in {:.2} s ({:.0}/s) (target p99 <= 100 ms)",
        ms(percentile(latencies, 0.50)),
        ms(percentile(latencies, 0.99)),
        ms(latencies[latencies.len() - 1]),
        latencies.len(),
        wall.as_secs_f64(),
        latencies.len() as f64 / wall.as_secs_f64(),
    );
}

#[tokio::main]
async fn main() {
    let n = size();
    let mut cp = Env::builder("pool")
        .api_only()
        .controller_manager()
        .audit()
        .start()
        .await
        .expect("the API alone needs no part of the machine")
        .cp;
    let client = cp.client();
    cp.create_namespace("rs").await.expect("namespace rs");
    println!(
        "pool benchmark: {n} desktops; etcd, kube-apiserver (audit log on) and kube-controller-manager (default client limits: 20 requests/s, bursts of 30)"
    );

    // 1. The baseline: kube-controller-manager makes a ReplicaSet's pods.
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": n,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {
                "metadata": {"labels": {"app": "bench"}},
                "spec": {"containers": [{"name": "c", "image": "registry.example/pause:1"}]},
            },
        },
    }))
    .unwrap();
    let rs_api = Api::<ReplicaSet>::namespaced(client.clone(), "rs");
    let rs_time = time_to_pods(&client, "rs", "app=bench", n, async {
        rs_api
            .create(&PostParams::default(), &rs)
            .await
            .expect("ReplicaSet");
    })
    .await;
    println!(
        "ReplicaSet 0 -> {n}: {n} pods in {:.2} s",
        rs_time.as_secs_f64()
    );

    // 2. The pool: the operator, as its own user, makes desktops and their launcher pods.
    let (operator_client, _) = cp
        .client_for(OPERATOR_USER, Some("system:masters"))
        .await
        .expect("operator credentials");
    let options = operator::Options {
        launcher_image: "registry.example/verdant/launcher:bench".into(),
        launcher_pod: operator::LauncherPod {
            host_paths: vec!["/var/lib/verdant".into()],
            ..Default::default()
        },
        namespaces: vec!["pool".into()],
        http: None,
        leader_election: None,
        identity: "bench".into(),
        recheck_refused: operator::RECHECK_REFUSED,
    };
    let operator = tokio::spawn(async move {
        if let Err(e) = operator::run(operator_client, options, std::future::pending()).await {
            panic!("operator failed: {e}");
        }
    });
    let pool: DesktopPool = serde_json::from_value(json!({
        "apiVersion": "vdi.verdant.dev/v1alpha1",
        "kind": "DesktopPool",
        "metadata": {"name": "bench"},
        "spec": {
            "replicas": n,
            "assignment": "Dedicated",
            "template": {"spec": {
                "resources": {"cpus": 1, "memory": "1Gi"},
                "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}},
            }},
        },
    }))
    .unwrap();
    let pools: Api<DesktopPool> = Api::namespaced(client.clone(), "pool");
    let pool_time = time_to_pods(&client, "pool", "vdi.verdant.dev/pool=bench", n, async {
        pools
            .create(&PostParams::default(), &pool)
            .await
            .expect("pool");
    })
    .await;
    println!(
        "DesktopPool 0 -> {n}: {n} launcher pods in {:.2} s",
        pool_time.as_secs_f64()
    );
    println!(
        "ratio pool/ReplicaSet: {:.2} (target <= 1)",
        pool_time.as_secs_f64() / rs_time.as_secs_f64()
    );

    // Writes until the operator is done with the new desktops (each has a status).
    let desktops: Api<Desktop> = Api::namespaced(client.clone(), "pool");
    eventually("every desktop with a status", LIMIT, || async {
        let list = desktops.list(&ListParams::default()).await.ok()?;
        let pending = list.items.iter().filter(|d| d.status.is_none()).count();
        (list.items.len() == n && pending == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let created = operator_writes(&cp.audit_log(), "pool");
    let (objects, with_events) = per_desktop(&created, n);
    println!(
        "operator writes per desktop, created (pod made, not yet running): {objects:.2} ({with_events:.2} with events) (target <= 4); {}",
        show(&created)
    );

    // 3. Warm the pool: every launcher bound, running and ready, as the kubelet would say.
    let kubelet = Kubelet::new(client.clone(), "pool", "node-1");
    kubelet.register().await.expect("node");
    let _heartbeat = kubelet.heartbeat_in_background();
    let started = Instant::now();
    let pod_names: Vec<String> = Api::<Pod>::namespaced(client.clone(), "pool")
        .list(&ListParams::default().labels("vdi.verdant.dev/pool=bench"))
        .await
        .expect("pods")
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    kubelet
        .start_all(futures::stream::iter(pod_names), KUBELET_IN_FLIGHT)
        .await
        .expect("launchers started");
    all_available(&pools, n).await;
    println!(
        "pool warmed up: {n} desktops Ready {:.2} s after the stand-in kubelet began",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ready = operator_writes(&cp.audit_log(), "pool");
    let (objects, with_events) = per_desktop(&ready, n);
    println!(
        "operator writes per desktop, created -> Ready: {objects:.2} ({with_events:.2} with events); {}",
        show(&ready)
    );

    // The broker's assigner, its cache filled before the users come.
    let assigner = Arc::new(Assigner::new(desktops.clone()));
    match assigner.assign("bench", "warm-up-probe").await {
        Ok(desktop) => assigner.release(&desktop).await.expect("release"),
        Err(e) => panic!("the assigner did not start: {e}"),
    }
    // The released probe desktop comes back once its fresh launcher runs.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "pool");
    relaunch_released(&kubelet, &pods, &pools, n).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let users: Vec<String> = (0..n).map(|i| format!("burst-user-{i}")).collect();
    let before = operator_writes(&cp.audit_log(), "pool");
    let started = Instant::now();
    let burst = assign_all(&assigner, &users, Duration::ZERO).await;
    report_assign(&format!("{n} users at once"), &burst, started.elapsed());
    eventually("the pool counts its users", LIMIT, || async {
        let status = pools.get("bench").await.ok()?.status?;
        (status.assigned as usize == n).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = operator_writes(&cp.audit_log(), "pool");
    let reaction: BTreeMap<String, usize> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();
    println!(
        "operator writes per assignment (its reaction to spec.user): {:.2}; {}",
        reaction.values().sum::<usize>() as f64 / n as f64,
        show(&reaction)
    );

    // Then users arriving at steady rates, everyone leaving before each run (released
    // desktops come back on fresh launchers, played by this bench's kubelet).
    for rate in ARRIVALS_PER_SECOND {
        let names: Vec<String> = desktops
            .list(&ListParams::default())
            .await
            .expect("desktops")
            .items
            .iter()
            .map(|d| d.name_any())
            .collect();
        futures::stream::iter(names)
            .for_each_concurrent(KUBELET_IN_FLIGHT, |name| {
                let assigner = Arc::clone(&assigner);
                async move { assigner.release(&name).await.expect("release") }
            })
            .await;
        relaunch_released(&kubelet, &pods, &pools, n).await;
        quiesce(&cp.audit_log(), "pool").await;

        let users: Vec<String> = (0..n).map(|i| format!("user-{rate}-{i}")).collect();
        let started = Instant::now();
        let steady = assign_all(&assigner, &users, Duration::from_secs(1) / rate).await;
        report_assign(
            &format!("{n} users arriving at {rate}/s"),
            &steady,
            started.elapsed(),
        );
    }

    operator.abort();
}
