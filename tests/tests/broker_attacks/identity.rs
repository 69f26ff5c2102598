//! The broker's own credentials, as an attacker who took over its process holds them.

use kube::ResourceExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_brokers_identity_reads_no_secret_outside_its_desktop_namespaces() {
    use k8s_openapi::api::core::v1::{Pod, Secret};
    let Some(s) = crate::env("rbac", 1, false, "Floating").start().await else {
        return;
    };
    // What an attacker who took over the broker process holds: its own credentials.
    let file = kube::config::Kubeconfig::read_from(s.broker_kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    let broker = kube::Client::try_from(config).unwrap();
    // A Secret of the cluster's, elsewhere.
    let admin_secrets: kube::Api<Secret> = kube::Api::namespaced(s.client.clone(), "kube-system");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cluster-credentials"},
        "stringData": {"token": "not-for-the-broker"},
    }))
    .unwrap();
    admin_secrets
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let status = |r: Result<(), kube::Error>| match r {
        Ok(()) => 200,
        Err(kube::Error::Api(e)) => e.code,
        Err(e) => panic!("{e}"),
    };
    let elsewhere: kube::Api<Secret> = kube::Api::namespaced(broker.clone(), "kube-system");
    assert_eq!(
        status(elsewhere.get("cluster-credentials").await.map(drop)),
        403,
        "the broker read a Secret in kube-system"
    );
    assert_eq!(
        status(elsewhere.list(&Default::default()).await.map(drop)),
        403,
        "the broker listed Secrets in kube-system"
    );
    let pods: kube::Api<Pod> = kube::Api::namespaced(broker.clone(), "kube-system");
    assert_eq!(status(pods.list(&Default::default()).await.map(drop)), 403);
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(broker.clone(), "kube-system");
    assert_eq!(
        status(leases.list(&Default::default()).await.map(drop)),
        403
    );
    // Where desktops live it reads a desktop's display Secret (get, never list), and it
    // still serves: a user connects and opens the desktop's page.
    let desktop = s.desktops().list(&Default::default()).await.unwrap().items[0].name_any();
    let here: kube::Api<Secret> = kube::Api::namespaced(broker.clone(), &s.ns);
    assert_eq!(
        status(here.get(&format!("{desktop}-display")).await.map(drop)),
        200
    );
    assert_eq!(status(here.list(&Default::default()).await.map(drop)), 403);
    let alice = s.login("alice").await;
    let given = s.connect(&alice, "eng").await;
    assert_eq!(given, desktop);
    let page = s.page(&alice, &format!("/desktops/{}/{given}", s.ns)).await;
    assert!(page.contains(&given), "the desktop page: {page}");
}
