//! What keeps a launcher to itself: the launchers' NetworkPolicy and a display Secret of its own.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use testkit::eventually;
use tests::env::{Env, LIMIT, condition};

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
