//! The chart against a real kube-apiserver: `helm install` creates everything, `helm upgrade`
//! with changed values changes only what those values touch, and `helm uninstall` leaves the
//! CRDs and the users' Desktops, as the chart's README says.

use std::collections::BTreeMap;
use std::process::Command;

use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, ResourceExt};
use serde_json::json;
use tests::ControlPlane;
use tests::chart::{documents, helm, output};
use tests::env::Env;

const RELEASE_NS: &str = "verdant-system";
const DESKTOP_NS: &str = "team-a";

/// helm against this control plane.
fn helm_at(cp: &ControlPlane) -> Command {
    let mut cmd = helm();
    cmd.arg("--kubeconfig").arg(cp.kubeconfig());
    cmd
}

/// The release's objects as helm records them, by `Kind/namespace/name`.
fn manifest(cp: &ControlPlane) -> BTreeMap<String, serde_json::Value> {
    let text = output(helm_at(cp).args(["get", "manifest", "verdant", "-n", RELEASE_NS]));
    documents(&text)
        .into_iter()
        .map(|d| {
            let key = format!(
                "{}/{}/{}",
                d["kind"].as_str().unwrap_or_default(),
                d["metadata"]["namespace"].as_str().unwrap_or_default(),
                d["metadata"]["name"].as_str().unwrap_or_default()
            );
            (key, d)
        })
        .collect()
}

/// The resourceVersion of each of the release's objects, read from the apiserver.
fn versions(
    cp: &ControlPlane,
    objects: &BTreeMap<String, serde_json::Value>,
) -> BTreeMap<String, String> {
    objects
        .iter()
        .map(|(key, d)| {
            let kind = d["kind"].as_str().unwrap();
            let name = d["metadata"]["name"].as_str().unwrap();
            let mut cmd = cp.kubectl();
            cmd.args([
                "get",
                kind,
                name,
                "-o",
                "jsonpath={.metadata.resourceVersion}",
            ]);
            if let Some(ns) = d["metadata"]["namespace"].as_str() {
                cmd.args(["-n", ns]);
            }
            (key.clone(), output(&mut cmd))
        })
        .collect()
}

/// `diff -u` of two texts, for the test's output.
fn unified_diff(before: &str, after: &str) -> String {
    let dir = std::env::temp_dir().join(format!("verdant-chart-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("before.yaml"), before).unwrap();
    std::fs::write(dir.join("after.yaml"), after).unwrap();
    let out = Command::new("diff")
        .args(["-u", "before.yaml", "after.yaml"])
        .current_dir(&dir)
        .output()
        .expect("diff runs");
    std::fs::remove_dir_all(&dir).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_upgrade_and_uninstall_against_a_real_apiserver() {
    let cp = Env::bare(DESKTOP_NS).await;

    // Install: every object of the render exists, and the CRDs are established.
    let installed = output(helm_at(&cp).args([
        "install",
        "verdant",
        "charts/verdant",
        "--namespace",
        RELEASE_NS,
        "--create-namespace",
    ]));
    println!("{installed}");
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    assert!(
        installed.contains("Verdant 0.1.0 is installed"),
        "NOTES.txt is shown: {installed}"
    );
    let objects = manifest(&cp);
    let before = versions(&cp, &objects);
    for expected in [
        "Deployment/verdant-system/verdant-operator",
        "ServiceAccount/verdant-system/verdant-operator",
        "ClusterRole//verdant-operator",
        "ClusterRoleBinding//verdant-operator",
        "Role/verdant-system/verdant-operator-leader-election",
        "PodDisruptionBudget/verdant-system/verdant-operator",
        "ConfigMap/verdant-system/verdant-launcher",
    ] {
        assert!(
            before.contains_key(expected),
            "{expected} missing: {:?}",
            before.keys()
        );
    }
    let crds = output(cp.kubectl().args(["get", "crd", "-o", "name"]));
    assert!(
        crds.contains("desktops.vdi.verdant.dev") && crds.contains("desktoppools.vdi.verdant.dev"),
        "{crds}"
    );
    tests::chart::wait_for_crds(&cp);

    // A user's Desktop, which must outlive the release.
    let gvk = GroupVersionKind::gvk(crds::GROUP, crds::VERSION, "Desktop");
    let desktops: Api<DynamicObject> =
        Api::namespaced_with(cp.client(), DESKTOP_NS, &ApiResource::from_gvk(&gvk));
    let desktop: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "vdi.verdant.dev/v1alpha1",
        "kind": "Desktop",
        "metadata": {"name": "alice-dev"},
        "spec": {"resources": {"cpus": 1, "memory": "256Mi"}, "boot": {"kernel": {"hostPath": "/k"}}},
    }))
    .unwrap();
    desktops
        .create(&PostParams::default(), &desktop)
        .await
        .expect("a Desktop is created");

    // Upgrade with changed values: three replicas and a KVM node selector. Only the operator's
    // Deployment and the launcher settings may change, on the apiserver too.
    let upgraded = output(helm_at(&cp).args([
        "upgrade",
        "verdant",
        "charts/verdant",
        "--namespace",
        RELEASE_NS,
        "--reuse-values",
        "--set",
        "operator.replicas=3",
        "--set-string",
        "launcher.nodeSelector.verdant\\.dev/kvm=true",
    ]));
    assert!(upgraded.contains("REVISION: 2"), "{upgraded}");
    let after_objects = manifest(&cp);
    let after = versions(&cp, &after_objects);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "the upgrade added or removed objects"
    );
    let changed: Vec<&String> = before.keys().filter(|k| before[*k] != after[*k]).collect();
    for key in &changed {
        println!(
            "--- {key}\n{}",
            unified_diff(
                &serde_saphyr::to_string(&objects[*key]).unwrap(),
                &serde_saphyr::to_string(&after_objects[*key]).unwrap()
            )
        );
    }
    assert_eq!(
        changed,
        [
            "ConfigMap/verdant-system/verdant-launcher",
            "Deployment/verdant-system/verdant-operator"
        ],
        "the upgrade changed other objects than the values touch"
    );
    let operator = &after_objects["Deployment/verdant-system/verdant-operator"];
    assert_eq!(operator["spec"]["replicas"], 3);
    let settings =
        after_objects["ConfigMap/verdant-system/verdant-launcher"]["data"]["settings.yaml"]
            .as_str()
            .unwrap();
    assert!(settings.contains("verdant.dev/kvm"), "{settings}");
    // The settings' checksum rolls the operator's pods.
    assert_ne!(
        objects["Deployment/verdant-system/verdant-operator"]["spec"]["template"]["metadata"]["annotations"],
        operator["spec"]["template"]["metadata"]["annotations"],
    );

    // Uninstall: the release's objects go; the CRDs and the Desktop stay.
    let uninstalled =
        output(helm_at(&cp).args(["uninstall", "verdant", "--namespace", RELEASE_NS, "--wait"]));
    assert!(uninstalled.contains("uninstalled"), "{uninstalled}");
    let left = output(cp.kubectl().args([
        "get",
        "deploy,clusterrole,configmap",
        "-A",
        "-o",
        "name",
        "-l",
        "app.kubernetes.io/instance=verdant",
    ]));
    assert!(left.trim().is_empty(), "left after uninstall: {left}");
    let crds = output(cp.kubectl().args(["get", "crd", "-o", "name"]));
    assert!(
        crds.contains("desktops.vdi.verdant.dev") && crds.contains("desktoppools.vdi.verdant.dev"),
        "CRDs stay: {crds}"
    );
    let kept = desktops.get("alice-dev").await.expect("the Desktop stays");
    assert_eq!(kept.name_any(), "alice-dev");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rendered_chart_and_the_examples_pass_kubeconform_strict() {
    let cp = Env::bare("default").await;
    // The built-in kinds' schemas from this apiserver; ours from the CRDs the chart installs.
    let request = http::Request::get("/openapi/v2")
        .header("Accept", "application/json")
        .body(Vec::new())
        .unwrap();
    let openapi: serde_json::Value = serde_json::from_str(
        &cp.client()
            .request_text(request)
            .await
            .expect("/openapi/v2"),
    )
    .unwrap();
    let root = tests::chart::root();
    let crds: Vec<serde_json::Value> = ["desktop.yaml", "desktoppool.yaml"]
        .iter()
        .map(|f| {
            serde_saphyr::from_str(
                &std::fs::read_to_string(root.join("charts/verdant/crds").join(f)).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let schemas = work.path().join("schemas");
    let written = tests::kubeschema::write(&schemas, &openapi, &crds).unwrap();
    println!("{written} schemas written");

    // Every optional part of the chart on, with the CRDs; the committed plain manifests; the
    // examples users apply.
    let full = tests::chart::render_with(
        &[
            &["--include-crds"][..],
            &tests::chart::set_args(tests::chart::EVERY_OPTION),
        ]
        .concat(),
    );
    let rendered = work.path().join("full.yaml");
    std::fs::write(&rendered, full).unwrap();
    let kubeconform = |files: &[&std::path::Path]| {
        let bins = tests::controlplane::Binaries::locate().expect("the pinned tools build");
        Command::new(bins.kubeconform)
            .args(["-strict", "-summary", "-output", "text", "-schema-location"])
            .arg(tests::kubeschema::location(&schemas))
            .args(files)
            .output()
            .expect("kubeconform runs")
    };
    let examples = root.join("crds/examples");
    let checked = kubeconform(&[
        &rendered,
        &root.join("deploy/verdant.yaml"),
        &examples.join("desktop.yaml"),
        &examples.join("pool-floating.yaml"),
        &examples.join("pool-dedicated.yaml"),
    ]);
    let said = String::from_utf8_lossy(&checked.stdout);
    println!("{said}{}", String::from_utf8_lossy(&checked.stderr));
    assert!(
        checked.status.success(),
        "kubeconform -strict refused: {said}"
    );
    assert!(said.contains("Invalid: 0, Errors: 0, Skipped: 0"), "{said}");

    // The schemas are strict: a misspelt field in a Deployment and in a Desktop is refused.
    let bad = work.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicass: 2\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}\n---\napiVersion: vdi.verdant.dev/v1alpha1\nkind: Desktop\nmetadata: {name: y}\nspec:\n  resources: {cpus: 1, memory: 1Gi, gpus: 1}\n  boot: {kernel: {hostPath: /k}}\n",
    )
    .unwrap();
    let refused = kubeconform(&[&bad]);
    let said = String::from_utf8_lossy(&refused.stdout);
    assert!(!refused.status.success(), "misspelt fields passed: {said}");
    assert!(
        said.contains("replicass") && said.contains("gpus"),
        "{said}"
    );
}
