//! The operator as a whole against the real control plane: several replicas under leader
//! election. The Desktop and pool controllers have their own tests (`desktop.rs`, `pool.rs`).

use std::time::Duration;

use crds::DesktopPhase;
use kube::Api;
use testkit::eventually;
use tests::env::{Env, LIMIT};

#[tokio::test(flavor = "multi_thread")]
async fn with_two_replicas_only_the_leader_writes_and_a_new_one_takes_over() {
    let mut env = Env::start("team-f").await;
    let _reaper = env.kubelet.reap_in_background();
    env.kill_operator();
    let leader_options = |env: &Env, identity: &str| operator::Options {
        leader_election: Some(operator::LeaderElection {
            namespace: "team-f".into(),
            lease: "verdant-operator".into(),
            duration: Duration::from_secs(10),
        }),
        ..env.options(identity)
    };
    env.spawn_operator(leader_options(&env, "replica-a"));
    let first = env.operator.take();
    env.spawn_operator(leader_options(&env, "replica-b"));
    let second = env.operator.take();

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client.clone(), "team-f");
    let leader = eventually("a lease holder", LIMIT, || async {
        leases
            .get_opt("verdant-operator")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
    })
    .await;
    // Each replica claims the lease as its own field manager, so the second claim conflicts
    // instead of silently taking over: the holder's manager alone owns holderIdentity.
    let lease = leases.get("verdant-operator").await.unwrap();
    let owners: Vec<String> = lease
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|f| {
            f.fields_v1
                .as_ref()
                .is_some_and(|v| v.0.to_string().contains("f:holderIdentity"))
        })
        .filter_map(|f| f.manager)
        .collect();
    assert_eq!(owners, [format!("verdant-operator-{leader}")]);
    env.create_desktop("d-1", None).await;
    env.wait_pod("d-1", None).await;
    env.wait_phase("d-1", DesktopPhase::Starting).await;
    let events = env.events_for("d-1").await;
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(
            e.reporting_instance.as_deref(),
            Some(leader.as_str()),
            "an event from the standby: {e:?}"
        );
    }

    // Kill the leader outright; the standby must take over within 15 s.
    let (dead, alive) = if leader == "replica-a" {
        (first, second)
    } else {
        (second, first)
    };
    drop(dead.expect("leader task"));
    let killed = std::time::Instant::now();
    env.create_desktop("d-2", None).await;
    env.wait_pod("d-2", None).await;
    let takeover = killed.elapsed();
    println!(
        "leader takeover: the new leader created d-2's pod {:.1} s after the old one died",
        takeover.as_secs_f64()
    );
    assert!(
        takeover <= Duration::from_secs(15),
        "takeover took {takeover:?}"
    );
    let holder = leases
        .get("verdant-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    assert_ne!(holder, leader);
    env.operator = alive;
}
