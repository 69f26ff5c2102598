//! Sessions on a pool's desktops: giving back, releasing and resetting, and the disconnect timeout.

use crds::DesktopPhase;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use testkit::eventually;
use tests::env::{Env, LIMIT, http_get};

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
