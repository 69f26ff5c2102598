//! A pool's Ready condition, as `kubectl wait` reads it.

use kube::{Api, ResourceExt};
use serde_json::json;
use testkit::eventually;
use tests::env::{Env, LIMIT};

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
