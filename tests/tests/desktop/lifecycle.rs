//! A Desktop's life: launcher pod and Secret, phases to Ready, spec changes, stop, start, deletion.

use std::time::Duration;

use crds::DesktopPhase;
use k8s_openapi::api::core::v1::Secret;
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use serde_json::json;
use testkit::eventually;
use tests::env::{Env, LIMIT, changes_within, condition, http_get, probe_path};

#[tokio::test(flavor = "multi_thread")]
async fn desktop_becomes_a_launcher_pod_and_follows_it() {
    let mut env = Env::start("team-a").await;
    let _reaper = env.kubelet.reap_in_background();
    let http = env.serve_http();
    let desktop = env.create_desktop("alice-dev", Some("alice")).await;

    // One pod, with the spec the issue asks for.
    let pod = env.wait_pod("alice-dev", None).await;
    assert_eq!(env.live_pods("alice-dev").await.len(), 1);
    let owner = &pod.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Desktop", desktop.uid().unwrap().as_str(), Some(true))
    );
    let labels = pod.labels();
    assert_eq!(labels["vdi.verdant.dev/desktop"], "alice-dev");
    assert_eq!(labels["vdi.verdant.dev/user"], "alice");
    let spec = pod.spec.as_ref().unwrap();
    let c = &spec.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example/verdant/launcher:test")
    );
    assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
    let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "2100m");
    assert_eq!(
        requests["memory"].0,
        ((1u64 << 30) + (64 << 20)).to_string()
    );
    assert_eq!(probe_path(&c.readiness_probe), Some("/readyz"));
    assert_eq!(probe_path(&c.liveness_probe), Some("/healthz"));
    let args = c.args.as_ref().unwrap();
    let config = launcher_api::LauncherConfig::from_json(&args[2]).expect("launcher config");
    assert_eq!((config.cpus, config.memory.as_str()), (2, "1Gi"));
    let volumes = spec.volumes.as_ref().unwrap();
    let kvm = volumes
        .iter()
        .find(|v| v.name == "kvm")
        .unwrap()
        .host_path
        .as_ref()
        .unwrap();
    assert_eq!(
        (kvm.path.as_str(), kvm.type_.as_deref()),
        ("/dev/kvm", Some("CharDevice"))
    );
    let secret_name = volumes
        .iter()
        .find_map(|v| v.secret.as_ref()?.secret_name.clone())
        .unwrap();
    let secret = Api::<Secret>::namespaced(env.client.clone(), "team-a")
        .get(&secret_name)
        .await
        .unwrap();
    assert_eq!(secret.owner_references()[0].uid, desktop.uid().unwrap());
    let data = secret.data.as_ref().unwrap();
    assert_eq!(data["password"].0.len(), 24);
    // The view-only password (shadowing), unlike the full one where VNC authentication looks.
    assert_eq!(data["viewOnlyPassword"].0.len(), 24);
    assert_ne!(data["viewOnlyPassword"].0[..8], data["password"].0[..8]);

    let d = env.wait_phase("alice-dev", DesktopPhase::Starting).await;
    assert_eq!(
        d.status.as_ref().unwrap().pod_name.as_deref(),
        Some(pod.name_any().as_str())
    );

    // The kubelet starts it: Running, then Ready.
    env.kubelet.schedule(&pod.name_any()).await.unwrap();
    env.kubelet.run(&pod.name_any(), false).await.unwrap();
    let d = env.wait_phase("alice-dev", DesktopPhase::Running).await;
    assert_eq!(
        d.status.as_ref().unwrap().node_name.as_deref(),
        Some("node-1")
    );
    assert_eq!(
        condition(&d, "VMRunning").unwrap().status,
        crds::ConditionStatus::True
    );
    env.kubelet.run(&pod.name_any(), true).await.unwrap();
    let d = env.wait_phase("alice-dev", DesktopPhase::Ready).await;
    assert_eq!(
        condition(&d, "DisplayReady").unwrap().status,
        crds::ConditionStatus::True
    );
    let status = d.status.as_ref().unwrap();
    assert!(status.ready_at.is_some() && status.started_at.is_some());
    assert_eq!(status.observed_generation, d.metadata.generation);
    let events = env.events_for("alice-dev").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("LauncherCreated")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("DisplayReady")),
        "{events:?}"
    );

    // The operator's own endpoints.
    let metrics = eventually("the Ready desktop in the phase gauge", LIMIT, || async {
        let text = http_get(http, "/metrics").await?;
        text.contains("verdant_operator_desktops{phase=\"Ready\"} 1")
            .then_some(text)
    })
    .await;
    assert!(
        metrics.contains("verdant_operator_desktop_ready_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("verdant_operator_reconciles_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("verdant_operator_reconcile_duration_seconds_count"),
        "{metrics}"
    );
    assert_eq!(http_get(http, "/healthz").await.as_deref(), Some("ok\n"));
    assert_eq!(http_get(http, "/readyz").await.as_deref(), Some("ready\n"));

    // running: false -> the pod goes, Stopped; the Secret stays.
    env.patch_spec("alice-dev", json!({"running": false})).await;
    env.wait_phase("alice-dev", DesktopPhase::Stopped).await;
    assert!(env.live_pods("alice-dev").await.is_empty());
    assert!(
        env.pods().get_opt(&pod.name_any()).await.unwrap().is_none(),
        "the old pod is gone"
    );

    // running: true -> a new pod.
    env.patch_spec("alice-dev", json!({"running": true})).await;
    let again = env.wait_pod("alice-dev", None).await;
    assert_ne!(again.uid(), pod.uid());
    env.wait_phase("alice-dev", DesktopPhase::Starting).await;

    // Deleting the Desktop lets the garbage collector take the pod and the Secret.
    env.desktops()
        .delete("alice-dev", &DeleteParams::default())
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "team-a");
    eventually(
        "pod and Secret collected",
        Duration::from_secs(60),
        || async {
            let pod_gone = env
                .pods()
                .get_opt(&again.name_any())
                .await
                .unwrap()
                .is_none();
            let secret_gone = secrets.get_opt(&secret_name).await.unwrap().is_none();
            (pod_gone && secret_gone).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spec_change_waits_for_the_user_then_replaces_the_pod() {
    let env = Env::start("team-b").await;
    let _reaper = env.kubelet.reap_in_background();
    env.create_desktop("bob-dev", Some("bob")).await;
    let pod = env.wait_pod("bob-dev", None).await;
    env.kubelet.schedule(&pod.name_any()).await.unwrap();
    env.kubelet.run(&pod.name_any(), true).await.unwrap();
    env.wait_phase("bob-dev", DesktopPhase::Ready).await;

    // More memory while bob is assigned: his VM stays; the Desktop says a restart is needed.
    env.patch_spec(
        "bob-dev",
        json!({"resources": {"cpus": 2, "memory": "2Gi"}}),
    )
    .await;
    let d = eventually("RestartRequired", LIMIT, || async {
        let d = env.desktops().get("bob-dev").await.ok()?;
        (condition(&d, "RestartRequired")?.status == crds::ConditionStatus::True).then_some(d)
    })
    .await;
    assert_eq!(d.status.as_ref().unwrap().phase, Some(DesktopPhase::Ready));
    let changed = changes_within(
        &env.pods(),
        "vdi.verdant.dev/desktop=bob-dev",
        Duration::from_secs(1),
    )
    .await;
    assert!(changed.is_empty(), "bob's pods changed: {changed:?}");
    let pods = env.live_pods("bob-dev").await;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].uid(), pod.uid(), "bob's pod was left alone");

    // Released: the pod is replaced with one for the new spec.
    env.patch_spec("bob-dev", json!({"user": null})).await;
    let new = env.wait_pod("bob-dev", Some(&pod)).await;
    let requests = new.spec.as_ref().unwrap().containers[0]
        .resources
        .as_ref()
        .unwrap()
        .requests
        .clone()
        .unwrap();
    assert_eq!(
        requests["memory"].0,
        ((2u64 << 30) + (64 << 20)).to_string()
    );
    eventually("the old pod gone", LIMIT, || async {
        env.pods()
            .get_opt(&pod.name_any())
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let d = env.wait_phase("bob-dev", DesktopPhase::Starting).await;
    assert_eq!(
        condition(&d, "RestartRequired").unwrap().status,
        crds::ConditionStatus::False
    );

    // Unassigned now: the next change replaces the pod straight away.
    env.patch_spec(
        "bob-dev",
        json!({"resources": {"cpus": 1, "memory": "2Gi"}}),
    )
    .await;
    let third = env.wait_pod("bob-dev", Some(&new)).await;
    let resources = third.spec.as_ref().unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    assert_eq!(resources.requests.unwrap()["cpu"].0, "1100m");
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_wait_for_ready_returns_once_the_desktop_is_ready() {
    let env = Env::start("wait-ready").await;
    env.create_desktop("bob-dev", None).await;
    let pod = env.wait_pod("bob-dev", None).await;
    env.wait_phase("bob-dev", DesktopPhase::Starting).await;
    // The real kubectl, waiting from before the desktop is Ready.
    let mut wait = env
        .cp
        .kubectl()
        .args(["wait", "--for=condition=Ready", "desktop/bob-dev"])
        .args(["--namespace", &env.ns, "--timeout=120s"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        wait.try_wait().unwrap().is_none(),
        "kubectl wait returned before the desktop was Ready"
    );
    env.kubelet.schedule(&pod.name_any()).await.unwrap();
    env.kubelet.run(&pod.name_any(), true).await.unwrap();
    let output = tokio::task::spawn_blocking(move || wait.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kubectl wait failed: {said}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(said.contains("condition met"), "{said}");
    let desktop = env.wait_phase("bob-dev", DesktopPhase::Ready).await;
    let ready = condition(&desktop, "Ready").expect("a Ready condition");
    assert_eq!(ready.status, crds::ConditionStatus::True);
    assert_eq!(ready.observed_generation, desktop.metadata.generation);
}
