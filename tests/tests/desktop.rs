//! The Desktop controller against the real control plane (kube-controller-manager included, for
//! garbage collection). The test plays the kubelet with [`tests::kubelet::Kubelet`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::{Desktop, DesktopPhase};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Secret};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use tests::env::{Env, LIMIT, changes_within, condition, http_get, live, probe_path};
use tests::kubelet::eventually;

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
async fn killing_the_operator_mid_reconcile_leaves_exactly_one_pod_per_desktop() {
    let mut env = Env::start("team-e").await;
    let _reaper = env.kubelet.reap_in_background();
    env.kill_operator();
    let count = 50;
    for i in 0..count {
        env.create_desktop(&format!("desk-{i:02}"), None).await;
    }
    // Every fifth desktop is switched off while the operator comes and goes.
    for round in 0..10u64 {
        env.start_operator(&format!("operator-round-{round}"));
        if round == 3 {
            for i in (0..count).step_by(5) {
                env.patch_spec(&format!("desk-{i:02}"), json!({"running": false}))
                    .await;
            }
        }
        // Die somewhere in the middle of the work, at a different point each round.
        tokio::time::sleep(Duration::from_millis(250 + (round * 173) % 700)).await;
        env.kill_operator();
    }
    env.start_operator("operator-final");

    let desktops: Vec<String> = (0..count).map(|i| format!("desk-{i:02}")).collect();
    eventually(
        "one launcher pod per running desktop and none for stopped ones",
        Duration::from_secs(90),
        || async {
            let live = live(&env.pods(), "").await?;
            for (i, name) in desktops.iter().enumerate() {
                let n = live
                    .iter()
                    .filter(|p| p.labels().get("vdi.verdant.dev/desktop") == Some(name))
                    .count();
                let want = if i % 5 == 0 { 0 } else { 1 };
                if n != want {
                    return None;
                }
            }
            // No orphans: every pod belongs to one of the desktops.
            live.iter()
                .all(|p| {
                    p.labels()
                        .get("vdi.verdant.dev/desktop")
                        .is_some_and(|d| desktops.contains(d))
                })
                .then_some(())
        },
    )
    .await;
    // And it stays that way: no pod made or deleted for a while.
    let changed = changes_within(&env.pods(), "", Duration::from_secs(2)).await;
    assert!(
        changed.iter().all(|c| c.starts_with("modified")),
        "pods came or went: {changed:?}"
    );
    assert_eq!(live(&env.pods(), "").await.expect("pods").len(), 40);
    let secrets = Api::<Secret>::namespaced(env.client.clone(), "team-e")
        .list(&ListParams::default().labels("vdi.verdant.dev/desktop"))
        .await
        .unwrap()
        .items;
    let mut names: Vec<_> = secrets.iter().map(|s| s.name_any()).collect();
    names.dedup();
    assert!(
        names.len() <= count && names.len() >= 40,
        "{} display Secrets",
        names.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_writes_per_desktop_from_creation_to_ready() {
    let env = Env::start_with("team-w", true).await;
    let _reaper = env.kubelet.reap_in_background();
    let names: Vec<String> = (0..10).map(|i| format!("w-{i}")).collect();
    for name in &names {
        env.create_desktop(name, Some("user")).await;
    }
    // Play the kubelet as a real one would: container running first, ready a little later.
    for name in &names {
        let pod = env.wait_pod(name, None).await;
        env.kubelet.schedule(&pod.name_any()).await.unwrap();
        env.kubelet.run(&pod.name_any(), false).await.unwrap();
    }
    for name in &names {
        env.wait_phase(name, DesktopPhase::Running).await;
        let pod = env.wait_pod(name, None).await;
        env.kubelet.run(&pod.name_any(), true).await.unwrap();
    }
    for name in &names {
        env.wait_phase(name, DesktopPhase::Ready).await;
    }
    // The last of them, the DisplayReady event, is published after the Ready status write.
    let at_ready = eventually("every desktop's DisplayReady event", LIMIT, || async {
        let writes = writes_by_kind(&env);
        names
            .iter()
            .all(|n| {
                writes
                    .get(n)
                    .is_some_and(|w| w.get("events create") >= Some(&2))
            })
            .then_some(writes)
    })
    .await;
    let count = |name: &str, kind: &str| {
        at_ready
            .get(name)
            .and_then(|w| w.get(kind))
            .copied()
            .unwrap_or(0)
    };
    let objects: Vec<usize> = names
        .iter()
        .map(|n| {
            at_ready[n]
                .iter()
                .filter(|(k, _)| !k.starts_with("events"))
                .map(|(_, v)| v)
                .sum()
        })
        .collect();
    let mut sorted = objects.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    println!(
        "operator writes per desktop, creation -> Ready ({} desktops): objects median {median} (min {}, max {}); target <= 4 object writes: {}",
        names.len(),
        sorted[0],
        sorted[sorted.len() - 1],
        if median <= 4 { "met" } else { "NOT met" },
    );
    // Each object is written once, and the status once for each state the kubelet reported
    // that the operator saw (created, scheduled, running, ready: at most 4, at least the 3
    // phases this test waited for): nothing is written twice, nothing for nothing.
    for name in &names {
        let writes = &at_ready[name];
        assert_eq!(count(name, "secrets create"), 1, "{name}: {writes:?}");
        assert_eq!(count(name, "pods patch"), 1, "{name}: {writes:?}");
        let statuses = count(name, "desktops/status patch");
        assert!((3..=4).contains(&statuses), "{name}: {writes:?}");
        assert_eq!(count(name, "events create"), 2, "{name}: {writes:?}");
        assert_eq!(
            writes.values().sum::<usize>(),
            2 + statuses + 2,
            "{name}: nothing else is written: {writes:?}"
        );
    }

    // Nothing changes from here on, so nothing is written: not even on resyncs or restarts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        writes_by_kind(&env),
        at_ready,
        "the operator wrote although nothing changed"
    );
}

/// The operator's writes in the environment's namespace, from the audit log, per desktop and
/// by `resource[/subresource] verb` (a launcher pod, Secret or event counts for its desktop).
fn writes_by_kind(env: &Env) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut per_desktop: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for request in env.operator_requests() {
        if !request.is_write() {
            continue;
        }
        let name = request.name.as_str();
        let desktop = match request.resource.as_str() {
            "pods" => name.rsplit_once('-').map_or(name, |(d, _)| d),
            "secrets" => name.trim_end_matches("-display"),
            "events" => name.split('.').next().unwrap_or(name),
            _ => name,
        };
        *per_desktop
            .entry(desktop.to_owned())
            .or_default()
            .entry(request.kind())
            .or_default() += 1;
    }
    per_desktop
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
fn refused_pod_writes(env: &Env, code: u16) -> usize {
    env.operator_requests()
        .iter()
        .filter(|r| r.resource == "pods" && r.verb == "patch" && r.code == code)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launcher_pod_the_apiserver_refuses_is_shown_in_status_and_not_retried_every_5_s() {
    let env = Env::start_with("team-i", true).await;
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
    // A fixed 5 s retry would try three or four times in 16 s; it is tried once, and once
    // more when its own status write changed the Desktop.
    let first = eventually("the refused write in the audit log", LIMIT, || async {
        (refused_pod_writes(&env, 403) > 0).then_some(std::time::Instant::now())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(16).saturating_sub(first.elapsed())).await;
    let attempts = refused_pod_writes(&env, 403);
    println!("launcher pod writes refused with 403 in 16 s: {attempts}");
    assert!(
        (1..=2).contains(&attempts),
        "the refused pod was asked for {attempts} times in 16 s"
    );
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

#[tokio::test(flavor = "multi_thread")]
async fn with_the_charts_default_values_no_launcher_runs_outside_a_network_policy() {
    let mut env = Env::start("team-np").await;
    let _reaper = env.kubelet.reap_in_background();
    // The operator as the chart runs it with its default values: its launcher settings
    // file, parsed as the operator parses it.
    let rendered = tests::chart::documents(&tests::chart::render(&[]));
    let settings = rendered
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .and_then(|d| d["data"]["settings.yaml"].as_str())
        .expect("the chart's launcher settings");
    let mut options = env.options("operator-chart-defaults");
    options.launcher_pod = operator::LauncherPod::parse(settings).unwrap();
    env.kill_operator();
    env.spawn_operator(options);

    env.create_desktop("guarded", None).await;
    let pod = env.wait_pod("guarded", None).await;
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(env.client.clone(), &env.ns);
    let policy = policies
        .get_opt("verdant-launchers")
        .await
        .unwrap()
        .expect("a NetworkPolicy guards the namespace's launchers");
    // Made before the launcher pod, not after it.
    let made = |meta: &kube::api::ObjectMeta| meta.creation_timestamp.clone().unwrap().0;
    assert!(made(&policy.metadata) <= made(&pod.metadata));
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_owned()][..])
    );
    assert_eq!(
        spec.ingress.unwrap_or_default().len(),
        0,
        "no broker named: no other pod reaches a launcher"
    );
    let selector = spec.pod_selector.unwrap().match_expressions.unwrap();
    assert_eq!(
        (selector[0].key.as_str(), selector[0].operator.as_str()),
        ("vdi.verdant.dev/desktop", "Exists")
    );
    assert!(pod.labels().contains_key("vdi.verdant.dev/desktop"));
    // Deleted by someone: applied again before the next launcher there (a new process, as
    // after the operator restarts, or within 5 minutes).
    policies
        .delete("verdant-launchers", &DeleteParams::default())
        .await
        .unwrap();
    env.kill_operator();
    env.start_operator("operator-2");
    env.create_desktop("guarded-again", None).await;
    env.wait_pod("guarded-again", None).await;
    assert!(
        policies
            .get_opt("verdant-launchers")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_display_secret_someone_else_made_never_reaches_a_launcher() {
    let env = Env::start("team-squat").await;
    // Someone who may create Secrets here stands one up under the name the desktop's
    // display Secret will have, with a password they know.
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), &env.ns);
    let squatted: Secret = serde_json::from_value(json!({
        "metadata": {"name": "victim-display"},
        "stringData": {"password": "known-to-them"},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &squatted)
        .await
        .unwrap();
    env.create_desktop("victim", Some("alice")).await;
    let failed = eventually(
        "the desktop to say its Secret is not its own",
        LIMIT,
        || async {
            let d = env.desktops().get("victim").await.ok()?;
            let status = d.status.as_ref()?;
            let said = status
                .conditions
                .iter()
                .any(|c| c.reason == "DisplaySecretNotOwned");
            said.then_some(d)
        },
    )
    .await;
    let message = condition(&failed, "Ready")
        .map(|c| c.message)
        .unwrap_or_default();
    assert!(message.contains("victim-display"), "{message}");
    assert!(
        env.live_pods("victim").await.is_empty(),
        "no launcher was made with a password someone else chose"
    );
    // Once it is gone, the desktop gets its own Secret and its launcher.
    secrets
        .delete("victim-display", &DeleteParams::default())
        .await
        .unwrap();
    env.wait_pod("victim", None).await;
    let own = secrets.get("victim-display").await.unwrap();
    assert_eq!(
        own.owner_references()[0].name,
        "victim",
        "the desktop's own Secret"
    );
}
