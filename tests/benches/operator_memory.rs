//! The operator's memory with many desktops, against one real control plane (etcd and
//! kube-apiserver), in one run:
//!
//! 1. `verdant-operator` (the release binary) runs as its own process, watching one namespace.
//! 2. A DesktopPool grows 0 -> N (default 10000): the operator makes N desktops, Secrets and
//!    launcher pods; the stand-in kubelet then binds and starts every pod, so the operator's
//!    caches hold what a busy cluster would (pods with status, desktops Ready).
//! 3. The operator's resident memory (`VmRSS`, and its peak `VmHWM`) is read from `/proc`: at
//!    N/10 desktops Ready, at N and after 5 s at rest. The ratio of the two RSS figures shows
//!    what a desktop costs apart from the fixed part.
//!
//! Prints the figures and the target (at most 64 MiB RSS at 10000 desktops); asserts only that
//! the run did what it claims (N launcher pods, N desktops Ready).
//!
//! Run with `cargo bench -p tests --bench operator_memory`; `VERDANT_MEMORY_BENCH_SIZE` sets N.
//! CI runs 3000 (a quarter of the time); memory grows with the desktops, so more than 64 MiB
//! there already misses the target.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crds::DesktopPool;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use testkit::eventually;
use tests::env::Env;
use tests::kubelet::Kubelet;

const NS: &str = "memory";
/// How long any one phase may take before the bench gives up.
const LIMIT: Duration = Duration::from_secs(900);
/// Requests the stand-in kubelet has in flight.
const KUBELET_IN_FLIGHT: usize = 32;

fn size() -> usize {
    std::env::var("VERDANT_MEMORY_BENCH_SIZE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// A memory field of the operator in KiB (`VmRSS`, `VmHWM`); panics when it is gone, so a
/// dead operator never reads as a small one.
fn memory_kib(pid: u32, field: &str) -> u64 {
    testkit::procfs::memory_kib(pid, field)
        .unwrap_or_else(|e| panic!("{field} of the operator (pid {pid}): {e}"))
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Kills the operator when dropped.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the pool says `ready` desktops are Ready, with the operator still running.
async fn pool_ready(pools: &Api<DesktopPool>, ready: usize, operator: &mut Operator) {
    eventually(&format!("{ready} desktops Ready"), LIMIT, || {
        let exited = operator.0.try_wait().ok().flatten();
        assert!(exited.is_none(), "the operator exited: {exited:?}");
        async move {
            let status = pools.get("office").await.ok()?.status?;
            (status.ready as usize >= ready).then_some(())
        }
    })
    .await;
}

#[tokio::main]
async fn main() {
    let n = size();
    let binary = tests::bins::binary("verdant-operator");
    let cp = Env::builder(NS)
        .api_only()
        .start()
        .await
        .expect("the API alone needs no part of the machine")
        .cp;
    let client = cp.client();
    // Pods need the namespace's default service account; no kube-controller-manager runs here
    // (its garbage collectors would only add noise), so the bench makes it.
    let mut account = ServiceAccount::default();
    account.metadata.name = Some("default".into());
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &account)
        .await
        .expect("service account");
    println!("operator memory benchmark: {n} desktops; etcd and kube-apiserver");

    let log = std::fs::File::create(std::env::temp_dir().join("verdant-operator-memory.log"))
        .expect("operator log");
    let mut operator = Operator(
        Command::new(&binary)
            .args([
                "--launcher-image",
                "registry.example/verdant/launcher:bench",
                "--namespace",
                NS,
                "--http",
                "off",
                "--allow-host-path",
                "/var/lib/verdant",
            ])
            .env("KUBECONFIG", cp.kubeconfig())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display())),
    );
    let pid = operator.0.id();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = memory_kib(pid, "VmRSS");
    println!("operator at rest, no desktops: RSS {:.1} MiB", mib(idle));

    // The pool, and the kubelet starting every launcher as it appears.
    let pool: DesktopPool = serde_json::from_value(json!({
        "apiVersion": "vdi.verdant.dev/v1alpha1",
        "kind": "DesktopPool",
        "metadata": {"name": "office"},
        "spec": {
            "replicas": n,
            "template": {"spec": {
                "resources": {"cpus": 2, "memory": "4Gi"},
                "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}},
            }},
        },
    }))
    .unwrap();
    let pools: Api<DesktopPool> = Api::namespaced(client.clone(), NS);
    let kubelet = Kubelet::new(client.clone(), NS, "node-1");
    kubelet.register().await.expect("node");
    let started = Instant::now();
    pools
        .create(&PostParams::default(), &pool)
        .await
        .expect("pool");
    let runner = tokio::spawn(start_launchers(client.clone(), kubelet.clone(), n));

    pool_ready(&pools, n / 10, &mut operator).await;
    let tenth = memory_kib(pid, "VmRSS");
    println!(
        "{} desktops Ready after {:.1} s: operator RSS {:.1} MiB",
        n / 10,
        started.elapsed().as_secs_f64(),
        mib(tenth)
    );
    pool_ready(&pools, n, &mut operator).await;
    let full = memory_kib(pid, "VmRSS");
    println!(
        "{n} desktops Ready after {:.1} s: operator RSS {:.1} MiB",
        started.elapsed().as_secs_f64(),
        mib(full)
    );
    runner.await.expect("kubelet");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rest = memory_kib(pid, "VmRSS");
    let peak = memory_kib(pid, "VmHWM");
    let pods = Api::<Pod>::namespaced(client.clone(), NS)
        .list_metadata(&ListParams::default().labels("vdi.verdant.dev/pool=office"))
        .await
        .expect("pods")
        .items
        .len();
    assert_eq!(pods, n, "one launcher pod per desktop");
    let per_desktop = (rest.saturating_sub(idle)) as f64 / n as f64;
    println!(
        "operator with {n} desktops Ready, 5 s later: RSS {:.1} MiB, peak {:.1} MiB; {:.1} KiB a desktop over the {:.1} MiB at rest (target <= 64 MiB RSS at 10000 desktops: {})",
        mib(rest),
        mib(peak),
        per_desktop,
        mib(idle),
        verdict(n, rest)
    );
}

/// Whether the target (64 MiB at 10000 desktops) is met. Below 10000 it is not measured,
/// except that more than 64 MiB at fewer desktops already misses it.
fn verdict(n: usize, rest_kib: u64) -> String {
    let rest = mib(rest_kib);
    match (n >= 10_000, rest <= 64.0) {
        (true, true) => "met".to_owned(),
        (true, false) => "NOT met".to_owned(),
        (false, false) => format!("NOT met: {rest:.1} MiB already at {n}"),
        (false, true) => {
            format!("not measured at {n}; VERDANT_MEMORY_BENCH_SIZE=10000 measures it")
        }
    }
}

/// Plays the kubelet for the pool's launcher pods as they appear: each is bound, then
/// running and ready. Returns once `n` have been started.
async fn start_launchers(client: Client, kubelet: Kubelet, n: usize) {
    use kube::runtime::{WatchStreamExt, watcher};
    let pods: Api<Pod> = Api::namespaced(client, NS);
    let stream = watcher(
        pods,
        watcher::Config::default().labels("vdi.verdant.dev/pool=office"),
    )
    .default_backoff()
    .applied_objects();
    let mut seen = std::collections::HashSet::new();
    let names = stream.filter_map(|pod| {
        let fresh = pod
            .ok()
            .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.is_none()))
            .map(|p| p.name_any())
            .filter(|name| seen.insert(name.clone()));
        std::future::ready(fresh)
    });
    kubelet
        .start_all(names.take(n), KUBELET_IN_FLIGHT)
        .await
        .expect("launchers started");
}
