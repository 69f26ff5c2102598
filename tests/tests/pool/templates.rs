//! A pool's template: changes that replace or mark desktops, and one whose desktops are refused.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use testkit::eventually;
use tests::env::{Env, LIMIT, live};

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
async fn a_pool_whose_desktops_the_apiserver_refuses_says_so_and_does_not_retry_every_5_s() {
    let mut env = Env::builder("team-v")
        .audit()
        .start()
        .await
        .expect("a stand-in node needs no part of the machine");
    // The operator's recheck of a refused write, 5 minutes in production, shortened to see
    // it come.
    let recheck = Duration::from_secs(8);
    env.kill_operator();
    env.spawn_operator(operator::Options {
        recheck_refused: recheck,
        ..env.options("operator-1")
    });
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
    // Tried once, once more when its own status write changed the pool, and then only at
    // the recheck: a fixed retry every 5 s would come between.
    env.assert_refused_until_recheck("desktops", "create", 422, recheck)
        .await;
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
