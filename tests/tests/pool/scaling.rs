//! Sizing a pool: the scale subresource, which desktops go first, spares, a killed operator.

use std::time::Duration;

use crds::DesktopPhase;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use testkit::eventually;
use tests::env::{Env, LIMIT, changes_within, live};

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_scales_through_its_scale_subresource_and_keeps_assigned_desktops() {
    let env = Env::start("team-p").await;
    let pools: Api<crds::DesktopPool> = Api::namespaced(env.client.clone(), "team-p");
    env.create_pool("office", json!({"replicas": 0})).await;
    let live = || async {
        let mut names: Vec<String> = live(&env.desktops(), "vdi.verdant.dev/pool=office")
            .await
            .expect("desktops")
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        names.sort();
        names
    };
    let scale = |replicas: i32| {
        let pools = pools.clone();
        async move {
            pools
                .patch_scale(
                    "office",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await
                .expect("scale")
        }
    };

    scale(20).await;
    eventually("20 desktops", LIMIT, || async {
        (live().await.len() == 20).then_some(())
    })
    .await;
    let status = eventually("the pool's status", LIMIT, || async {
        let status = pools.get("office").await.ok()?.status?;
        (status.replicas == 20).then_some(status)
    })
    .await;
    assert_eq!(status.desired_replicas, 20);
    assert_eq!(
        status.label_selector.as_deref(),
        Some("vdi.verdant.dev/pool=office")
    );
    // `kubectl scale` reads the same numbers through /scale.
    let read = pools.get_scale("office").await.unwrap();
    assert_eq!(read.spec.and_then(|s| s.replicas), Some(20));

    let created = env.events_for("office").await;
    assert!(
        created
            .iter()
            .any(|e| e.reason.as_deref() == Some("Created")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Created 20 desktops: office-0, office-1,"))),
        "an event on the pool names what it created: {created:?}"
    );

    // Ten desktops start (the test plays their kubelet), and three users sit at desktops, two
    // of them Ready.
    let _reaper = env.kubelet.reap_in_background();
    let ready: Vec<String> = (0..10).map(|i| format!("office-{i}")).collect();
    for name in &ready {
        let pod = env.wait_pod(name, None).await;
        env.kubelet.schedule(&pod.name_any()).await.unwrap();
        env.kubelet.run(&pod.name_any(), true).await.unwrap();
    }
    for name in &ready {
        env.wait_phase(name, DesktopPhase::Ready).await;
    }
    let assigned = ["office-3", "office-7", "office-11"];
    for (i, name) in assigned.iter().enumerate() {
        env.patch_spec(name, json!({"user": format!("user-{i}")}))
            .await;
    }
    eventually("the pool counts its users", LIMIT, || async {
        let status = pools.get("office").await.ok()?.status?;
        (status.assigned == 3 && status.ready == 10).then_some(())
    })
    .await;

    // Every deletion, in the order the apiserver saw them.
    let deleted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let watch = {
        use futures::StreamExt;
        use kube::runtime::watcher;
        let deleted = std::sync::Arc::clone(&deleted);
        let stream = watcher(env.desktops(), watcher::Config::default());
        let (listed, listed_rx) = tokio::sync::oneshot::channel();
        let mut listed = Some(listed);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut seen = std::collections::BTreeSet::new();
            while let Some(Ok(event)) = stream.next().await {
                // With no finalizer a deletion shows as the object going; with one, as its
                // deletion timestamp.
                if matches!(event, watcher::Event::InitDone)
                    && let Some(listed) = listed.take()
                {
                    let _ = listed.send(());
                }
                let gone = match event {
                    watcher::Event::Delete(d) => Some(d),
                    watcher::Event::Apply(d) if d.metadata.deletion_timestamp.is_some() => Some(d),
                    _ => None,
                };
                if let Some(name) = gone.map(|d| d.name_any())
                    && seen.insert(name.clone())
                {
                    deleted.lock().unwrap().push(name);
                }
            }
        });
        listed_rx.await.expect("the watch lists the desktops");
        task
    };

    // Shrink to 5: the 9 unassigned desktops that are not Ready go first, then 6 of the 8
    // unassigned Ready ones; the assigned stay.
    scale(5).await;
    let left = eventually("5 desktops", LIMIT, || async {
        let names = live().await;
        (names.len() == 5).then_some(names)
    })
    .await;
    for name in assigned {
        assert!(
            left.contains(&name.to_owned()),
            "{name} was removed: {left:?}"
        );
    }
    let order = eventually("15 deletions seen", LIMIT, || async {
        let order = deleted.lock().unwrap().clone();
        (order.len() == 15).then_some(order)
    })
    .await;
    let is_ready = |name: &String| ready.contains(name);
    let not_ready_first = order.iter().take(9).all(|n| !is_ready(n));
    assert!(
        not_ready_first && order.iter().skip(9).all(is_ready),
        "not-Ready unassigned desktops go before Ready ones: {order:?}"
    );
    assert!(order.iter().all(|n| !assigned.contains(&n.as_str())));
    let scaled = env.events_for("office").await;
    assert!(
        scaled
            .iter()
            .any(|e| e.reason.as_deref() == Some("ScaledDown")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Deleted 15 desktops to scale down to 5: "))),
        "{scaled:?}"
    );

    // Capped at one desktop with three users: assigned desktops go too, but never the one
    // whose session is connected.
    env.desktops()
        .patch_status(
            "office-3",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"assignment": {
                "user": "user-0",
                "since": k8s_openapi::jiff::Timestamp::now().to_string(),
                "session": "Connected",
            }}})),
        )
        .await
        .unwrap();
    pools
        .patch(
            "office",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0, "maxReplicas": 1}})),
        )
        .await
        .unwrap();
    let left = eventually("only the connected desktop", LIMIT, || async {
        let names = live().await;
        (names == ["office-3"]).then_some(names)
    })
    .await;
    assert_eq!(left, ["office-3"]);
    watch.abort();

    // Everything left is the pool's own, labelled with the template it was made from.
    for desktop in env
        .desktops()
        .list(&ListParams::default().labels("vdi.verdant.dev/pool=office"))
        .await
        .unwrap()
    {
        assert!(
            desktop
                .labels()
                .contains_key("vdi.verdant.dev/template-hash")
        );
        assert_eq!(desktop.owner_references()[0].name, "office");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_operator_ten_times_during_a_pool_scale_up_leaves_exactly_the_desktops_asked_for()
 {
    let mut env = Env::start("team-k").await;
    let _reaper = env.kubelet.reap_in_background();
    env.kill_operator();
    let pools: Api<crds::DesktopPool> = Api::namespaced(env.client.clone(), "team-k");
    env.create_pool("big", json!({"replicas": 200})).await;
    for round in 0..10u64 {
        env.start_operator(&format!("operator-round-{round}"));
        // Die somewhere in the middle of the work, at a different point each round.
        tokio::time::sleep(Duration::from_millis(200 + (round * 173) % 600)).await;
        env.kill_operator();
    }
    env.start_operator("operator-final");
    let uid = pools.get("big").await.unwrap().uid();
    eventually(
        "200 desktops, each with one launcher pod, and nothing else",
        Duration::from_secs(120),
        || async {
            let desktops = live(&env.desktops(), "").await?;
            if desktops.len() != 200 {
                return None;
            }
            // Every desktop is the pool's.
            assert!(
                desktops.iter().all(|d| d
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == uid.as_ref())),
                "a desktop the pool does not own"
            );
            let names: std::collections::BTreeSet<String> =
                desktops.iter().map(|d| d.name_any()).collect();
            let pods = live(&env.pods(), "").await?;
            // No pod without a desktop, and one pod a desktop.
            let owners: Vec<&String> = pods
                .iter()
                .filter_map(|p| p.labels().get("vdi.verdant.dev/desktop"))
                .collect();
            assert!(
                owners.iter().all(|o| names.contains(*o)),
                "a launcher pod without a desktop"
            );
            (owners.len() == 200
                && owners
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
                    == 200)
                .then_some(())
        },
    )
    .await;
    // And it stays that way: no desktop made or deleted for a while.
    let changed = changes_within(&env.desktops(), "", Duration::from_secs(2)).await;
    assert!(
        changed.iter().all(|c| c.starts_with("modified")),
        "desktops came or went: {changed:?}"
    );
    assert_eq!(
        live(&env.desktops(), "").await.expect("desktops").len(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_whose_desktops_change_all_the_time_still_keeps_its_spare() {
    use assignment::Assigner;
    let env = Env::start("team-h").await;
    let _reaper = env.kubelet.reap_in_background();
    env.create_pool("busy", json!({"replicas": 0, "spare": 1}))
        .await;
    let first = env.wait_pod("busy-0", None).await;
    env.kubelet.schedule(&first.name_any()).await.unwrap();
    env.kubelet.run(&first.name_any(), true).await.unwrap();
    env.wait_phase("busy-0", DesktopPhase::Ready).await;
    let api = env.desktops();
    let assigner = Assigner::new(api.clone());
    let given = eventually("a desktop for alice", LIMIT, || async {
        assigner.assign("busy", "alice").await.ok()
    })
    .await;
    assert_eq!(given, "busy-0");

    // The broker reports alice's activity ten times a second: the pool's desktops change
    // more often than any debounce would wait for.
    let heartbeat = {
        let api = api.clone();
        tokio::spawn(async move {
            loop {
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let _ = api
                    .patch_status(
                        "busy-0",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"assignment": {
                            "user": "alice", "since": now, "session": "Connected", "lastActivity": now,
                        }}})),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Alice took the spare: the pool makes another, and counts her, while she is busy.
    let pools: Api<crds::DesktopPool> = Api::namespaced(env.client.clone(), "team-h");
    let status = eventually("a new spare, counted", LIMIT, || async {
        env.desktops().get_opt("busy-1").await.ok()??;
        let status = pools.get("busy").await.ok()?.status?;
        (status.assigned == 1 && status.replicas == 2).then_some(status)
    })
    .await;
    heartbeat.abort();
    assert_eq!(status.desired_replicas, 2);
}
