//! The DesktopPool controller against the real control plane: sizing, scaling, template changes,
//! resets, session limits, refused desktops. The test plays the kubelet with
//! [`tests::kubelet::Kubelet`].

use std::time::Duration;

use crds::DesktopPhase;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tests::env::{Env, LIMIT, changes_within, http_get, live};
use tests::kubelet::eventually;

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
async fn a_released_desktop_gets_a_fresh_launcher_first_and_a_dedicated_one_is_its_users() {
    use assignment::{AssignError, Assigner, give_back, release};
    let mut env = Env::start("team-r").await;
    let http = env.serve_http();
    let _reaper = env.kubelet.reap_in_background();
    let api = env.desktops();
    let assigner = Assigner::new(api.clone());
    // Plays the kubelet: the pod runs, then its display is ready.
    let start = |pod: Pod| {
        let env = &env;
        async move {
            env.kubelet.schedule(&pod.name_any()).await.unwrap();
            env.kubelet.run(&pod.name_any(), true).await.unwrap();
        }
    };
    for (pool, policy) in [("float", "Floating"), ("keep", "Dedicated")] {
        env.create_pool(pool, json!({"replicas": 1, "assignment": policy}))
            .await;
        let name = format!("{pool}-0");
        let first = env.wait_pod(&name, None).await;
        start(first.clone()).await;
        env.wait_phase(&name, DesktopPhase::Ready).await;
        let given = eventually("a desktop for alice", LIMIT, || async {
            assigner.assign(pool, "alice").await.ok()
        })
        .await;
        assert_eq!(given, name);
        // Only its user gives a desktop back, and only to a Floating pool; a Dedicated one
        // stays hers until an administrator releases it.
        assert!(matches!(
            give_back(&api, &name, "bob").await,
            Err(AssignError::NotYours(_))
        ));
        if policy == "Floating" {
            give_back(&api, &name, "alice").await.unwrap();
        } else {
            let refused = give_back(&api, &name, "alice").await.unwrap_err();
            assert!(
                matches!(&refused, AssignError::Dedicated { pool: p, .. } if p == pool),
                "{refused:?}"
            );
            assert!(
                refused.to_string().contains("verdant-operator release"),
                "{refused}"
            );
            assert_eq!(
                api.get(&name).await.unwrap().spec.user.as_deref(),
                Some("alice")
            );
            release(&api, &name).await.unwrap();
        }

        // Either way alice's VM goes; until the fresh one is Ready, nobody gets the desktop.
        let fresh = env.wait_pod(&name, Some(&first)).await;
        assert!(matches!(
            assigner.assign(pool, "bob").await,
            Err(AssignError::NoDesktopAvailable { .. })
        ));
        start(fresh.clone()).await;
        let given = eventually("the reset desktop for bob", LIMIT, || async {
            assigner.assign(pool, "bob").await.ok()
        })
        .await;
        assert_eq!(given, name);
        assert_eq!(
            env.live_pods(&name)
                .await
                .iter()
                .map(|p| p.uid())
                .collect::<Vec<_>>(),
            [fresh.uid()],
            "bob runs on the fresh launcher"
        );
    }
    // Each pool has one desktop, Ready and Bob's, and its metrics say so; a pool of none is
    // there with none.
    env.create_pool("none", json!({"replicas": 0})).await;
    let gauge = |pool: &str, state: &str, n: u32| {
        format!(
            "verdant_operator_pool_desktops{{namespace=\"team-r\",pool=\"{pool}\",state=\"{state}\"}} {n}\n"
        )
    };
    let want: Vec<String> = ["float", "keep"]
        .into_iter()
        .flat_map(|pool| {
            [("all", 1), ("ready", 1), ("available", 0), ("assigned", 1)]
                .map(|(state, n)| gauge(pool, state, n))
        })
        .chain(["all", "ready", "available", "assigned"].map(|state| gauge("none", state, 0)))
        .collect();
    eventually("each pool's desktops in its metrics", LIMIT, || async {
        let text = http_get(http, "/metrics").await?;
        want.iter().all(|line| text.contains(line)).then_some(())
    })
    .await;
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
async fn a_floating_desktop_disconnected_too_long_is_released_and_reset_with_an_event() {
    use assignment::Assigner;
    let env = Env::start("team-s").await;
    let _reaper = env.kubelet.reap_in_background();
    env.create_pool(
        "kiosk",
        json!({"replicas": 1, "session": {"disconnectTimeout": "5m", "maxDuration": "8h"}}),
    )
    .await;
    let first = env.wait_pod("kiosk-0", None).await;
    env.kubelet.schedule(&first.name_any()).await.unwrap();
    env.kubelet.run(&first.name_any(), true).await.unwrap();
    env.wait_phase("kiosk-0", DesktopPhase::Ready).await;
    let api = env.desktops();
    let assigner = Assigner::new(api.clone());
    eventually("kiosk-0 for alice", LIMIT, || async {
        assigner.assign("kiosk", "alice").await.ok()
    })
    .await;
    // The broker reports alice connected an hour ago, then gone 10 minutes ago.
    let ago = |minutes: i64| {
        (k8s_openapi::jiff::Timestamp::now()
            - k8s_openapi::jiff::SignedDuration::from_mins(minutes))
        .to_string()
    };
    api.patch_status(
        "kiosk-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"assignment": {
            "user": "alice",
            "since": ago(60),
            "session": "Disconnected",
            "lastActivity": ago(10),
        }}})),
    )
    .await
    .unwrap();
    eventually("kiosk-0 released", LIMIT, || async {
        let d = api.get("kiosk-0").await.ok()?;
        d.spec.user.is_none().then_some(())
    })
    .await;
    let events = env.events_for("kiosk-0").await;
    let released = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("DisconnectTimeout"))
        .expect("an event says why");
    assert_eq!(
        released.message.as_deref(),
        Some("alice was disconnected for 5m: released and reset for the next user")
    );
    // And reset: a fresh launcher replaces alice's.
    env.wait_pod("kiosk-0", Some(&first)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_change_replaces_free_desktops_and_marks_assigned_ones_out_of_date() {
    let env = Env::start("team-t").await;
    let pools: Api<crds::DesktopPool> = Api::namespaced(env.client.clone(), "team-t");
    env.create_pool("lab", json!({"replicas": 2})).await;
    let cpus = |name: &'static str| {
        let api = env.desktops();
        async move { api.get(name).await.ok().map(|d| d.spec.resources.cpus) }
    };
    eventually("lab-0 and lab-1", LIMIT, || async {
        (cpus("lab-0").await.is_some() && cpus("lab-1").await.is_some()).then_some(())
    })
    .await;
    env.patch_spec("lab-0", json!({"user": "alice"})).await;
    pools
        .patch(
            "lab",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"template": {"spec": {"resources": {"cpus": 2}}}}})),
        )
        .await
        .unwrap();
    // The free desktop is replaced by one of the new template; alice's is marked.
    eventually("the free desktop replaced", LIMIT, || async {
        let names: Vec<(String, u32)> = live(&env.desktops(), "vdi.verdant.dev/pool=lab")
            .await?
            .into_iter()
            .map(|d| (d.name_any(), d.spec.resources.cpus))
            .collect();
        (names.len() == 2
            && names.contains(&("lab-0".into(), 1))
            && names.iter().any(|(n, c)| n != "lab-0" && *c == 2))
        .then_some(())
    })
    .await;
    let marked = eventually("lab-0 out of date", LIMIT, || async {
        let d = env.desktops().get("lab-0").await.ok()?;
        d.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "OutOfDate" && c.status == crds::ConditionStatus::True)
    })
    .await;
    assert_eq!(marked.reason, "TemplateChanged");
    // Released, it is replaced too.
    env.patch_spec("lab-0", json!({"user": null})).await;
    eventually("lab-0 replaced", LIMIT, || async {
        let live: Vec<u32> = live(&env.desktops(), "vdi.verdant.dev/pool=lab")
            .await?
            .into_iter()
            .map(|d| d.spec.resources.cpus)
            .collect();
        (live == [2, 2]).then_some(())
    })
    .await;
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
#[tokio::test(flavor = "multi_thread")]
async fn a_pool_whose_desktops_the_apiserver_refuses_says_so_and_does_not_retry_every_5_s() {
    let env = Env::start_with("team-v", true).await;
    let template = |labels: serde_json::Value| {
        json!({
            "metadata": {"labels": labels},
            "spec": {
                "resources": {"cpus": 1, "memory": "1Gi"},
                "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}},
            },
        })
    };
    // The pool's schema takes any label; a Desktop with this one is refused with a 422.
    env.create_pool(
        "bad",
        json!({"replicas": 1, "template": template(json!({"bad label": "x"}))}),
    )
    .await;
    let failure = eventually("the pool's ReplicaFailure", LIMIT, || async {
        let status = env.pools().get("bad").await.ok()?.status?;
        status
            .conditions
            .into_iter()
            .find(|c| c.type_ == "ReplicaFailure")
    })
    .await;
    assert_eq!(failure.status, crds::ConditionStatus::True);
    assert_eq!(failure.reason, "FailedCreateInvalid");
    assert!(
        failure.message.contains("creating desktop bad-0") && failure.message.contains("bad label"),
        "{}",
        failure.message
    );
    let refused = || {
        env.operator_requests()
            .iter()
            .filter(|r| r.resource == "desktops" && r.verb == "create" && r.code == 422)
            .count()
    };
    // A fixed 5 s retry would try three or four times in 16 s; it is tried once, and once
    // more when its own status write changed the pool.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let attempts = refused();
    println!("desktop creates refused with 422 in 16 s: {attempts}");
    assert!(
        (1..=2).contains(&attempts),
        "the refused desktop was asked for {attempts} times in 16 s"
    );
    // Fixed, the pool makes its desktop and the failure goes.
    env.pools()
        .patch(
            "bad",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"template": {"metadata": {"labels": {"bad label": null}}}}}),
            ),
        )
        .await
        .unwrap();
    eventually("bad-0 made, and no ReplicaFailure", LIMIT, || async {
        env.desktops().get_opt("bad-0").await.ok()??;
        let status = env.pools().get("bad").await.ok()?.status?;
        status
            .conditions
            .iter()
            .all(|c| c.type_ != "ReplicaFailure")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_is_ready_for_kubectl_wait_once_all_its_desktops_are() {
    let env = Env::start("pool-ready").await;
    let _reaper = env.kubelet.reap_in_background();
    let pools: Api<crds::DesktopPool> = Api::namespaced(env.client.clone(), "pool-ready");
    env.create_pool("lab", json!({"replicas": 2})).await;
    let pods = [
        env.wait_pod("lab-0", None).await,
        env.wait_pod("lab-1", None).await,
    ];
    let wait = || {
        env.cp
            .kubectl()
            .args(["wait", "--for=condition=Ready", "desktoppool/lab"])
            .args(["--namespace", "pool-ready", "--timeout=1s"])
            .output()
            .expect("kubectl runs")
    };
    // One of two desktops Ready: the pool is not.
    env.kubelet.schedule(&pods[0].name_any()).await.unwrap();
    env.kubelet.run(&pods[0].name_any(), true).await.unwrap();
    eventually("one desktop Ready in the pool's status", LIMIT, || async {
        let status = pools.get("lab").await.ok()?.status?;
        (status.ready == 1).then_some(())
    })
    .await;
    assert!(!wait().status.success(), "Ready with one of two desktops");
    let pool = pools.get("lab").await.unwrap();
    let ready = pool
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready");
    assert_eq!(
        ready.map(|c| (c.status, c.reason.as_str())),
        Some((crds::ConditionStatus::False, "Scaling"))
    );
    env.kubelet.schedule(&pods[1].name_any()).await.unwrap();
    env.kubelet.run(&pods[1].name_any(), true).await.unwrap();
    eventually("kubectl wait says the pool is Ready", LIMIT, || async {
        wait().status.success().then_some(())
    })
    .await;
}
