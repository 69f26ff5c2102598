//! A Desktop on a real node: the kubelet starts its launcher pod in runc from the launcher
//! image, the real readiness probe makes it Ready, `kubectl logs` shows the guest's console,
//! a viewer we did not write sees the desktop on the pod IP, and `kubectl delete` stops the
//! VM within the grace period with the launcher exiting 0.

use std::time::{Duration, Instant};

use crds::DesktopPhase;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::WatchEvent;
use kube::api::WatchParams;
use testkit::eventually;
use tests::e2e::{LIMIT, close, text, vncsnapshot};
use tests::env::{Env, NodeKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_desktop_runs_in_a_real_pod_and_stops_cleanly() {
    let Some(e) = Env::builder("node-desktop")
        .node(NodeKind::Real)
        .start()
        .await
    else {
        return;
    };
    let node = e.cp.node().expect("the node").name().to_owned();
    let started = Instant::now();
    e.apply(&e.demo_desktop("demo"));

    // Ready through the kubelet's probe of the launcher's /readyz: nothing here writes pods.
    let desktop = eventually("Desktop demo to be Ready", LIMIT, || async {
        let d = e.desktops().get("demo").await.ok()?;
        let phase = d.status.as_ref()?.phase;
        (phase == Some(DesktopPhase::Ready)).then_some(d)
    })
    .await;
    eprintln!(
        "Desktop demo Ready {:?} after kubectl apply",
        started.elapsed()
    );
    let pod = e.pod_of("demo").await;
    let spec = pod.spec.as_ref().unwrap();
    let status = pod.status.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(node.as_str()));
    assert_eq!(
        desktop.status.as_ref().unwrap().node_name.as_deref(),
        Some(node.as_str())
    );
    let container = &status.container_statuses.as_ref().unwrap()[0];
    assert!(container.ready, "{container:?}");
    assert!(
        container.image.contains("verdant-launcher"),
        "the launcher image runs: {}",
        container.image
    );
    // The kubelet, not a test, ran the probe: its prober names the pod in the log when the
    // container turns ready.
    let pod_ip: std::net::IpAddr = status.pod_ip.as_deref().unwrap().parse().unwrap();

    // The guest's serial console is the container's stdout.
    let logs = e.kubectl(&["logs", &pod.name_any()]);
    assert!(logs.status.success(), "kubectl logs: {}", text(&logs));
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("demo desktop drawn"),
        "kubectl logs shows the guest's console: {}",
        text(&logs)
    );

    // vncsnapshot on the pod IP, with the display password from the Desktop's Secret.
    let password = e.display_password("demo").await;
    let scratch = tempfile::tempdir().unwrap();
    let addr = std::net::SocketAddr::new(pod_ip, launcher_api::endpoints::VNC_PORT);
    match vncsnapshot(addr, &password, scratch.path()) {
        Ok(Some((pixels, width, height))) => {
            assert_eq!((width, height), (1280, 800));
            let at = |x: usize, y: usize| &pixels[(y * 1280 + x) * 3..(y * 1280 + x) * 3 + 3];
            for (x, y, colour, what) in [
                (10, 10, 0x20_2020, "top panel"),
                (640, 790, 0x30_3030, "task bar"),
                (1200, 400, 0x30_6090, "background"),
            ] {
                assert!(
                    close(at(x, y), colour),
                    "{what} at ({x},{y}) is {:?}, want {colour:06x}",
                    at(x, y)
                );
            }
        }
        Ok(None) => testkit::skip(
            testkit::VIEWERS,
            "vncsnapshot is not installed: no capture from the pod IP",
        ),
        Err(e) => panic!("vncsnapshot on {addr}: {e}"),
    }

    // kubectl delete: the launcher asks the guest to shut down (the demo powers off on
    // Ctrl+Alt+Del), and exits 0 well within the pod's grace period.
    let grace = Duration::from_secs(
        spec.termination_grace_period_seconds
            .unwrap()
            .try_into()
            .unwrap(),
    );
    let pods = e.pods();
    let mut watch = pods
        .watch(
            &WatchParams::default().fields(&format!("metadata.name={}", pod.name_any())),
            &pod.resource_version().unwrap(),
        )
        .await
        .unwrap()
        .boxed();
    let deleting = Instant::now();
    let out = e.kubectl(&["delete", "desktop", "demo", "--wait=false"]);
    assert!(out.status.success(), "kubectl delete: {}", text(&out));
    // The garbage collector deletes the pod (it owns it through the Desktop), then the kubelet
    // stops the container: the grace period runs from the pod's deletion.
    let (mut pod_deleted, mut exited, mut exit_code) = (None, None, None);
    let gone = tokio::time::timeout(LIMIT, async {
        while let Some(event) = watch.try_next().await.unwrap() {
            let (WatchEvent::Modified(p) | WatchEvent::Deleted(p)) = &event else {
                continue;
            };
            if p.metadata.deletion_timestamp.is_some() && pod_deleted.is_none() {
                pod_deleted = Some(Instant::now());
            }
            if let Some(code) = terminated_exit_code(p)
                && exit_code.is_none()
            {
                exit_code = Some(code);
                exited = Some(Instant::now());
            }
            if matches!(event, WatchEvent::Deleted(_)) {
                return;
            }
        }
    })
    .await;
    assert!(gone.is_ok(), "the pod was still there after {LIMIT:?}");
    let (Some(pod_deleted), Some(exited)) = (pod_deleted, exited) else {
        panic!("the kubelet never reported the launcher terminated (exit {exit_code:?})");
    };
    let stopped = exited.saturating_duration_since(pod_deleted);
    eprintln!(
        "kubectl delete -> pod deleted {:?} (garbage collector), -> launcher exited {stopped:?} \
         later with {exit_code:?} (grace {grace:?}), -> pod gone {:?} after kubectl delete",
        pod_deleted - deleting,
        deleting.elapsed()
    );
    assert_eq!(exit_code, Some(0), "the launcher's exit status");
    assert!(
        stopped < grace,
        "the VM stopped {stopped:?} after its pod's deletion, not within the grace period {grace:?}"
    );
}

/// The launcher container's exit code, once the kubelet reports it terminated.
fn terminated_exit_code(pod: &Pod) -> Option<i32> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    Some(
        statuses
            .first()?
            .state
            .as_ref()?
            .terminated
            .as_ref()?
            .exit_code,
    )
}
