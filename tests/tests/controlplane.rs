//! The harness itself: a control plane starts, serves, and leaves nothing behind.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use tests::ControlPlane;
use tests::controlplane::process_alive;

#[tokio::test(flavor = "multi_thread")]
async fn starts_serves_and_cleans_up() {
    let start = Instant::now();
    let cp = ControlPlane::start().await.expect("control plane starts");
    eprintln!(
        "control plane ready in {:?} at {}",
        start.elapsed(),
        cp.server()
    );

    let cms: Api<ConfigMap> = Api::namespaced(cp.client(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("hello".into());
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
    assert!(cms.get_opt("hello").await.unwrap().is_some());

    let out = cp
        .kubectl()
        .args(["get", "configmap", "hello", "-o", "name"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/hello"
    );

    let pids = cp.pids();
    let dir = cp.dir().to_owned();
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver");
    drop(cp);
    let gone = || (!pids.iter().any(|&p| process_alive(p))).then_some(());
    let _ = testkit::within_blocking(Duration::from_secs(5), gone);
    for pid in pids {
        assert!(!process_alive(pid), "process {pid} still runs after drop");
    }
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_control_planes_run_side_by_side() {
    let (a, b) = tokio::join!(ControlPlane::start(), ControlPlane::start());
    let (a, b) = (a.expect("first starts"), b.expect("second starts"));
    assert_ne!(a.server(), b.server());
    assert_ne!(a.dir(), b.dir());
    // An object made in one is not in the other.
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("only-in-a".into());
    Api::<ConfigMap>::namespaced(a.client(), "default")
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let in_b = Api::<ConfigMap>::namespaced(b.client(), "default")
        .get_opt("only-in-a")
        .await
        .unwrap();
    assert!(in_b.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_manager_collects_garbage() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::DeleteParams;

    let cp = ControlPlane::start_with_controller_manager()
        .await
        .expect("control plane with kube-controller-manager starts");
    let cms: Api<ConfigMap> = Api::namespaced(cp.client(), "default");
    let mut owner = ConfigMap::default();
    owner.metadata.name = Some("owner".into());
    let owner = cms.create(&PostParams::default(), &owner).await.unwrap();
    let mut dependent = ConfigMap::default();
    dependent.metadata.name = Some("dependent".into());
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().unwrap(),
        ..OwnerReference::default()
    }]);
    cms.create(&PostParams::default(), &dependent)
        .await
        .unwrap();

    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    testkit::eventually(
        "the garbage collector to delete the dependent",
        Duration::from_secs(60),
        || async {
            cms.get_opt("dependent")
                .await
                .unwrap()
                .is_none()
                .then_some(())
        },
    )
    .await;
}

#[test]
fn chart_tools_are_built_at_their_pinned_versions() {
    let bins = tests::controlplane::Binaries::locate().expect("tools build");
    let pins = tests::controlplane::Versions::pinned();
    let run = |program: &std::path::Path, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{} {args:?} failed",
            program.display()
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert!(run(&bins.helm, &["version", "--short"]).contains(&pins.helm));
    assert!(run(&bins.kubeconform, &["-v"]).contains(pins.kubeconform.trim_start_matches('v')));
    assert!(run(&bins.kubectl, &["version", "--client"]).contains(&pins.kubernetes));
    assert!(run(&bins.etcd, &["--version"]).contains(pins.etcd.trim_start_matches('v')));
}
