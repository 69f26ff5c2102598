//! Creation to Ready on a real node: a Desktop running the demo guest (the operator makes its
//! launcher pod, the kubelet starts it in runc, the VMM boots the guest and the probe sees the
//! display live) against a plain pod of the pause image on the same node, in the same run,
//! one of each in turn, 20 of each. Prints p50 and p95 of both and their ratio: the cost of
//! Verdant over the bare pod. KubeVirt publishes 17-19 s p50 from VMI creation to Running.
//!
//! Run with `cargo bench -p tests --bench node_ready` (root; containerd, runc, CNI plugins).

use std::time::{Duration, Instant};

use crds::DesktopPhase;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, PostParams};
use testkit::eventually;
use tests::e2e::LIMIT;
use tests::env::{Env, NodeKind};

const SAMPLES: usize = 20;
/// How often readiness is looked at, the same for both kinds.
const POLL: Duration = Duration::from_millis(50);

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

async fn wait_until<F, Fut>(mut ready: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !ready().await {
        assert!(start.elapsed() < LIMIT, "not Ready within {LIMIT:?}");
        tokio::time::sleep(POLL).await;
    }
    start.elapsed()
}

/// Creates a pause pod and measures until its Ready condition is True.
async fn pause_pod(e: &Env, image: &str, i: usize) -> Duration {
    let pods = e.pods();
    let name = format!("pause-{i}");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "pause", "image": image, "imagePullPolicy": "Never"}],
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 1,
        },
    }))
    .unwrap();
    let start = Instant::now();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_until(|| async {
        pods.get(&name).await.ok().is_some_and(|p| {
            p.status
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
    })
    .await;
    let took = start.elapsed();
    pods.delete(&name, &DeleteParams::default()).await.unwrap();
    took
}

/// Creates a Desktop of the demo guest and measures until its phase is Ready.
async fn desktop(e: &Env, i: usize) -> Duration {
    let name = format!("desktop-{i}");
    let start = Instant::now();
    e.create_desktop_with(
        &name,
        serde_json::json!({
            "resources": {"cpus": 1, "memory": "128Mi"},
            "boot": {"kernel": {"hostPath": e.kernel}},
            "display": {"width": 1280, "height": 800},
        }),
    )
    .await;
    let desktops = e.desktops();
    wait_until(|| async {
        desktops.get(&name).await.ok().is_some_and(|d| {
            d.status
                .is_some_and(|s| s.phase == Some(DesktopPhase::Ready))
        })
    })
    .await;
    let took = start.elapsed();
    desktops
        .delete(&name, &DeleteParams::default())
        .await
        .unwrap();
    took
}

#[tokio::main]
async fn main() {
    let Some(e) = Env::builder("bench-node")
        .node(NodeKind::Real)
        .start()
        .await
    else {
        return;
    };
    let pause =
        e.cp.node()
            .unwrap()
            .images()
            .reference("pause")
            .unwrap()
            .to_owned();
    // One of each first, unmeasured: the first container of an image unpacks its layers.
    pause_pod(&e, &pause, 0).await;
    desktop(&e, 0).await;
    let (mut pods, mut desktops) = (Vec::new(), Vec::new());
    for i in 1..=SAMPLES {
        let p = pause_pod(&e, &pause, i).await;
        let d = desktop(&e, i).await;
        println!(
            "sample {i:2}: pause pod {:6.0} ms, desktop {:6.0} ms",
            p.as_secs_f64() * 1000.0,
            d.as_secs_f64() * 1000.0
        );
        pods.push(p);
        desktops.push(d);
    }
    // Nothing is left running between samples: each is deleted once Ready.
    eventually("the samples' pods to be gone", LIMIT, || async {
        let left = e.pods().list(&Default::default()).await.ok()?;
        left.items.is_empty().then_some(())
    })
    .await;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (label, samples) in [("pause pod", &pods), ("desktop", &desktops)] {
        println!(
            "creation -> Ready, {label}: p50 {:.0} ms, p95 {:.0} ms over {SAMPLES}",
            ms(percentile(samples, 50)),
            ms(percentile(samples, 95))
        );
    }
    println!(
        "desktop / pause pod: p50 ratio {:.2}, p95 ratio {:.2} (the VMM's cost; KubeVirt: \
         17-19 s p50 from VMI creation to Running)",
        ms(percentile(&desktops, 50)) / ms(percentile(&pods, 50)),
        ms(percentile(&desktops, 95)) / ms(percentile(&pods, 95))
    );
}
