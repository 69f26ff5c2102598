//! Failures in status: crashed launchers and backoff, missing claims, refused or unsupported specs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::{Desktop, DesktopPhase};
use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use testkit::eventually;
use tests::env::{Env, LIMIT, condition};

#[tokio::test(flavor = "multi_thread")]
async fn failed_launcher_is_replaced_with_backoff_and_the_reason_shown() {
    let env = Env::start("team-c").await;
    let _reaper = env.kubelet.reap_in_background();
    env.create_desktop("carol-dev", None).await;
    let pod = env.wait_pod("carol-dev", None).await;
    env.kubelet.schedule(&pod.name_any()).await.unwrap();
    env.kubelet.run(&pod.name_any(), true).await.unwrap();
    env.wait_phase("carol-dev", DesktopPhase::Ready).await;

    env.kubelet.exit(&pod.name_any(), 4).await.unwrap();
    let failed_at = std::time::Instant::now();
    let d = env.wait_phase("carol-dev", DesktopPhase::Failed).await;
    let vm = condition(&d, "VMRunning").unwrap();
    assert_eq!(vm.reason, "GuestCrashed");
    assert!(vm.message.contains("next launcher in"), "{}", vm.message);
    let events = env.events_for("carol-dev").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("GuestCrashed")),
        "{events:?}"
    );

    let new = env.wait_pod("carol-dev", Some(&pod)).await;
    let waited = failed_at.elapsed();
    assert!(
        waited >= Duration::from_secs(4),
        "replaced after {waited:?}, without backoff"
    );
    assert_ne!(new.uid(), pod.uid());
    env.wait_phase("carol-dev", DesktopPhase::Starting).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_claim_fails_the_desktop_until_it_exists() {
    let env = Env::start("team-d").await;
    let desktop: Desktop = serde_json::from_value(json!({
        "apiVersion": "vdi.verdant.dev/v1alpha1",
        "kind": "Desktop",
        "metadata": {"name": "dave-dev"},
        "spec": {
            "resources": {"cpus": 1, "memory": "1Gi"},
            "boot": {"kernel": {"persistentVolumeClaim": {"claimName": "kernels", "path": "vmlinuz"}}},
        },
    }))
    .unwrap();
    env.desktops()
        .create(&PostParams::default(), &desktop)
        .await
        .unwrap();
    let d = env.wait_phase("dave-dev", DesktopPhase::Failed).await;
    let vm = condition(&d, "VMRunning").unwrap();
    assert_eq!(vm.reason, "PersistentVolumeClaimNotFound");
    assert!(
        vm.message
            .contains("spec.boot.kernel.persistentVolumeClaim")
            && vm.message.contains("team-d/kernels"),
        "{}",
        vm.message
    );
    assert!(env.live_pods("dave-dev").await.is_empty());

    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "kernels"},
        "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), "team-d")
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
    // It recovers by itself.
    env.wait_pod("dave-dev", None).await;
    env.wait_phase("dave-dev", DesktopPhase::Starting).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_desktop_made_again_under_the_same_name_does_not_inherit_the_old_backoff() {
    let env = Env::start("team-g").await;
    let _reaper = env.kubelet.reap_in_background();
    let old = env.create_desktop("gina-dev", None).await;
    // Three crashes in a row: the next launcher would wait 20 s.
    let mut pod = env.wait_pod("gina-dev", None).await;
    for crash in 1..=3 {
        env.kubelet.schedule(&pod.name_any()).await.unwrap();
        env.kubelet.run(&pod.name_any(), false).await.unwrap();
        env.kubelet.exit(&pod.name_any(), 4).await.unwrap();
        let d = env.wait_phase("gina-dev", DesktopPhase::Failed).await;
        let message = condition(&d, "VMRunning").unwrap().message;
        assert!(
            message.contains("next launcher in"),
            "crash {crash}: {message}"
        );
        if crash < 3 {
            pod = eventually("the next launcher", Duration::from_secs(60), || async {
                env.live_pods("gina-dev")
                    .await
                    .into_iter()
                    .find(|p| p.uid() != pod.uid())
            })
            .await;
        }
    }
    // Deleted (and its pods with it), then made again under the same name at once, well
    // within the old backoff.
    env.desktops()
        .delete("gina-dev", &DeleteParams::foreground())
        .await
        .unwrap();
    eventually("gina-dev and its pods gone", LIMIT, || async {
        let gone = env.desktops().get_opt("gina-dev").await.ok()?.is_none();
        (gone && env.live_pods("gina-dev").await.is_empty()).then_some(())
    })
    .await;
    let phases = Arc::new(Mutex::new(Vec::new()));
    let watch = tokio::spawn(phases_of(env.desktops(), "gina-dev", Arc::clone(&phases)));
    let new = env.create_desktop("gina-dev", None).await;
    assert_ne!(new.uid(), old.uid());
    let pod = env.wait_pod("gina-dev", None).await;
    assert_eq!(pod.owner_references()[0].uid, new.uid().unwrap());
    env.wait_phase("gina-dev", DesktopPhase::Starting).await;
    watch.abort();
    let seen: Vec<DesktopPhase> = phases
        .lock()
        .unwrap()
        .iter()
        .filter(|(uid, _)| Some(uid) == new.uid().as_ref())
        .map(|(_, phase)| *phase)
        .collect();
    assert!(
        !seen.contains(&DesktopPhase::Failed),
        "the new desktop went through {seen:?}: it inherited the old one's failures"
    );
}

/// Records in `seen` each phase a Desktop `name` is seen in, with its uid, until aborted.
async fn phases_of(
    api: Api<Desktop>,
    name: &'static str,
    seen: Arc<Mutex<Vec<(String, DesktopPhase)>>>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
    while let Some(event) = events.next().await {
        if let Ok(d) = event
            && let Some(phase) = d.status.as_ref().and_then(|s| s.phase)
        {
            seen.lock()
                .unwrap()
                .push((d.uid().unwrap_or_default(), phase));
        }
    }
}

/// Launcher pod writes (server-side apply) the apiserver refused with `code`, from the audit log.
/// The operator's recheck of a write the apiserver refused, as this test injects it.
const RECHECK: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread")]
async fn a_launcher_pod_the_apiserver_refuses_is_shown_in_status_and_not_retried_every_5_s() {
    let mut env = Env::builder("team-i")
        .audit()
        .start()
        .await
        .expect("a stand-in node needs no part of the machine");
    // The operator's recheck of a refused write, 5 minutes in production, shortened to see
    // it come.
    env.kill_operator();
    env.spawn_operator(operator::Options {
        recheck_refused: RECHECK,
        ..env.options("operator-1")
    });
    // The namespace's LimitRange allows a container 512Mi at most: the apiserver refuses a
    // launcher pod for a desktop of 1Gi (403), which the operator cannot know beforehand.
    let limits: Api<k8s_openapi::api::core::v1::LimitRange> =
        Api::namespaced(env.client.clone(), &env.ns);
    let range: k8s_openapi::api::core::v1::LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "small"},
        "spec": {"limits": [{"type": "Container", "max": {"memory": "512Mi"}}]},
    }))
    .unwrap();
    limits.create(&PostParams::default(), &range).await.unwrap();
    let spec = |memory: &str| {
        json!({
            "resources": {"cpus": 1, "memory": memory},
            "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}},
        })
    };
    env.create_desktop_with("ivy-dev", spec("1Gi")).await;
    let d = env.wait_phase("ivy-dev", DesktopPhase::Failed).await;
    let refused = condition(&d, "VMRunning").unwrap();
    assert_eq!(refused.reason, "WriteRefused");
    assert!(
        refused.message.contains("creating launcher pod ivy-dev-")
            && refused.message.contains("403")
            && refused.message.contains("memory"),
        "{}",
        refused.message
    );
    eventually("a WriteRefused event", LIMIT, || async {
        let events = env.events_for("ivy-dev").await;
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("WriteRefused"))
            .then_some(())
    })
    .await;
    // Tried once, once more when its own status write changed the Desktop, and then only at
    // the recheck: a fixed retry every 5 s would come between.
    env.assert_refused_until_recheck("pods", "patch", 403, RECHECK)
        .await;
    // Once the Desktop changes, it is tried again, and now it works.
    env.patch_spec("ivy-dev", json!({"resources": {"memory": "256Mi"}}))
        .await;
    env.wait_pod("ivy-dev", None).await;
    env.wait_phase("ivy-dev", DesktopPhase::Starting).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_desktop_with_disks_or_a_network_the_launcher_cannot_provide_says_so_in_status() {
    let env = Env::start("team-u").await;
    let base = json!({
        "resources": {"cpus": 1, "memory": "1Gi"},
        "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}},
    });
    let with = |extra: serde_json::Value| {
        let mut spec = base.clone();
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec
    };
    env.create_desktop_with(
        "disky",
        with(json!({
            "network": {"mode": "None"},
            "disks": [{"name": "home", "source": {"empty": {"size": "1Gi"}}}],
        })),
    )
    .await;
    env.create_desktop_with("netty", with(json!({"network": {"mode": "Masquerade"}})))
        .await;
    env.create_desktop_with("plain", with(json!({"network": {"mode": "None"}})))
        .await;

    // Disks: not started, and the status says which field and what to do.
    let d = env.wait_phase("disky", DesktopPhase::Failed).await;
    let vm = condition(&d, "VMRunning").unwrap();
    assert_eq!(vm.reason, "DisksNotSupported");
    assert!(
        vm.message.starts_with("spec.disks (home):"),
        "{}",
        vm.message
    );
    let supported = condition(&d, "Supported").unwrap();
    assert_eq!(
        (supported.status, supported.reason.as_str()),
        (crds::ConditionStatus::False, "NotSupportedYet")
    );
    assert!(env.live_pods("disky").await.is_empty());

    // A network the launcher cannot give: it runs without one, and says so.
    env.wait_pod("netty", None).await;
    let d = env.wait_phase("netty", DesktopPhase::Starting).await;
    let supported = condition(&d, "Supported").unwrap();
    assert_eq!(supported.status, crds::ConditionStatus::False);
    assert!(
        supported
            .message
            .starts_with("spec.network.mode: Masquerade"),
        "{}",
        supported.message
    );

    // Asking for nothing it lacks: supported.
    let d = env.wait_phase("plain", DesktopPhase::Starting).await;
    assert_eq!(
        condition(&d, "Supported").unwrap().status,
        crds::ConditionStatus::True
    );
}
