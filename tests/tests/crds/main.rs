//! The CRDs against a real kube-apiserver: they install, the examples apply, `/scale` works, and
//! the schema and CEL rules refuse bad input with a message that names the field.
//! The manifests, valid and spoilt, are in `manifests`.

mod manifests;

use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::{Value, json};
use tests::ControlPlane;
use tests::controlplane::install_crds;
use tests::env::Env;

use manifests::{cases, valid_desktop, valid_pool};

const NS: &str = "team-a";

async fn control_plane_with_crds() -> ControlPlane {
    Env::builder(NS)
        .api_only()
        .start()
        .await
        .expect("the API alone needs no part of the machine")
        .cp
}

fn api(client: &Client, kind: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(crds::GROUP, crds::VERSION, kind);
    Api::namespaced_with(client.clone(), NS, &ApiResource::from_gvk(&gvk))
}

/// The column names of kubectl's table output.
fn header_of(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

fn kubectl_ok(cp: &ControlPlane, args: &[&str]) -> String {
    let out = cp.kubectl().args(args).output().expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn crds_install_and_become_established() {
    let cp = Env::bare("default").await;
    let installed = install_crds(&cp.client()).await.expect("CRDs install");
    let names: Vec<_> = installed
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    assert_eq!(
        names,
        ["desktops.vdi.verdant.dev", "desktoppools.vdi.verdant.dev"]
    );
    for crd in &installed {
        let established = crd
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{:?} not Established", crd.metadata.name);
    }
    // Discovery knows the short names and the category.
    let out = kubectl_ok(
        &cp,
        &["api-resources", "--api-group=vdi.verdant.dev", "-o", "wide"],
    );
    for expected in [
        "desktops",
        "dt,desk",
        "desktoppools",
        "dtp,deskpool",
        "verdant",
    ] {
        assert!(
            out.contains(expected),
            "api-resources lacks {expected:?}:\n{out}"
        );
    }
    // Installing again is a no-op, not an error.
    install_crds(&cp.client())
        .await
        .expect("CRDs install twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_example_applies_and_prints_its_columns() {
    let cp = control_plane_with_crds().await;
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/examples");
    let out = kubectl_ok(&cp, &["apply", "--server-side", "-n", NS, "-f", examples]);
    for expected in [
        "desktop.vdi.verdant.dev/alice-dev serverside-applied",
        "desktoppool.vdi.verdant.dev/classroom serverside-applied",
        "desktoppool.vdi.verdant.dev/developers serverside-applied",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }

    let desktops = kubectl_ok(&cp, &["get", "desktops", "-n", NS]);
    let header = header_of(&desktops);
    assert_eq!(header, ["NAME", "PHASE", "USER", "READY", "NODE", "AGE"]);
    assert!(desktops.contains("alice-dev") && desktops.contains("alice"));

    let pools = kubectl_ok(&cp, &["get", "deskpool", "-n", NS]);
    let header = header_of(&pools);
    assert_eq!(
        header,
        ["NAME", "DESIRED", "READY", "AVAILABLE", "ASSIGNED", "AGE"]
    );

    // The category lists both kinds.
    let all = kubectl_ok(&cp, &["get", "verdant", "-n", NS, "-o", "name"]);
    let mut names: Vec<_> = all.lines().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "desktop.vdi.verdant.dev/alice-dev",
            "desktoppool.vdi.verdant.dev/classroom",
            "desktoppool.vdi.verdant.dev/developers",
        ]
    );

    // Defaults from the schema are filled in by the apiserver.
    let pool = api(&cp.client(), "DesktopPool")
        .get("developers")
        .await
        .expect("pool");
    assert_eq!(
        pool.data["spec"]["template"]["spec"]["disks"][1]["mode"],
        "ReadWrite"
    );
    assert_eq!(pool.data["spec"]["template"]["spec"]["running"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn scale_subresource_moves_spec_replicas_within_max_replicas() {
    let cp = control_plane_with_crds().await;
    let examples = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/examples/pool-dedicated.yaml"
    );
    kubectl_ok(&cp, &["apply", "-n", NS, "-f", examples]);

    kubectl_ok(
        &cp,
        &["scale", "-n", NS, "desktoppool/developers", "--replicas=3"],
    );
    let pool = api(&cp.client(), "DesktopPool")
        .get("developers")
        .await
        .unwrap();
    assert_eq!(pool.data["spec"]["replicas"], 3);

    // The scale endpoint reports the spec and the status selector path, as HPA reads them.
    let scale = kubectl_ok(
        &cp,
        &[
            "get",
            "--raw",
            "/apis/vdi.verdant.dev/v1alpha1/namespaces/team-a/desktoppools/developers/scale",
        ],
    );
    let scale: Value = serde_json::from_str(&scale).expect("scale JSON");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 3);

    // maxReplicas is 25: scaling past it is refused, and says why.
    let out = cp
        .kubectl()
        .args(["scale", "-n", NS, "desktoppool/developers", "--replicas=26"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "scaling past maxReplicas succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.replicas") && stderr.contains("maxReplicas"),
        "{stderr}"
    );
    let pool = api(&cp.client(), "DesktopPool")
        .get("developers")
        .await
        .unwrap();
    assert_eq!(
        pool.data["spec"]["replicas"], 3,
        "a refused scale changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn apiserver_refuses_each_invalid_manifest_naming_the_field() {
    let cp = control_plane_with_crds().await;
    let client = cp.client();

    // The unspoilt manifests are valid, so each refusal below is the spoiling's doing.
    for (kind, object) in [
        ("Desktop", valid_desktop("valid")),
        ("DesktopPool", valid_pool("valid")),
    ] {
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        api(&client, kind)
            .create(&PostParams::default(), &object)
            .await
            .unwrap_or_else(|e| panic!("valid {kind} refused: {e}"));
    }

    let cases = cases();
    assert!(cases.len() >= 15);
    let mut failures = Vec::new();
    for case in &cases {
        let mut object = match case.kind {
            "Desktop" => valid_desktop(case.name),
            _ => valid_pool(case.name),
        };
        (case.spoil)(&mut object);
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        match api(&client, case.kind)
            .create(&PostParams::default(), &object)
            .await
        {
            Ok(_) => failures.push(format!("{}: accepted", case.name)),
            Err(kube::Error::Api(status)) => {
                let message = &status.message;
                let names_field = message.contains(&format!("{}:", case.field));
                if status.code != 422 || !names_field || !message.contains(case.says) {
                    failures.push(format!(
                        "{}: want 422 naming {:?} and saying {:?}, got {}: {message}",
                        case.name, case.field, case.says, status.code
                    ));
                } else {
                    eprintln!("{:<32} {message}", case.name);
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error {e}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing of the refused objects was stored.
    for kind in ["Desktop", "DesktopPool"] {
        let list = api(&client, kind).list(&Default::default()).await.unwrap();
        let names: Vec<_> = list
            .items
            .iter()
            .filter_map(|o| o.metadata.name.as_deref())
            .collect();
        assert_eq!(names, ["valid"], "{kind}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_user_name_check_in_rust_agrees_with_the_crd() {
    let cp = control_plane_with_crds().await;
    let client = cp.client();
    let long = |n: usize| "a".repeat(n);
    let names = [
        "alice".to_owned(),
        "a".to_owned(),
        "7".to_owned(),
        "alice@example.com".to_owned(),
        "alice.smith+vdi".to_owned(),
        "oidc:alice".to_owned(),
        "first-last_2".to_owned(),
        "system:serviceaccount:ns:robot".to_owned(),
        long(253),
        long(254),
        String::new(),
        "alice smith".to_owned(),
        "-alice".to_owned(),
        "alice-".to_owned(),
        ".alice".to_owned(),
        "alice@".to_owned(),
        "DOMAIN\\alice".to_owned(),
        "alice/bob".to_owned(),
        "élodie".to_owned(),
        "alice\n".to_owned(),
        "a*b".to_owned(),
    ];
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut disagree = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut object = valid_desktop(&format!("user-{i}"));
        object["spec"]["user"] = json!(name);
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        let accepted = match api(&client, "Desktop").create(&dry_run, &object).await {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if status.code == 422 => false,
            Err(e) => panic!("{name:?}: unexpected error {e}"),
        };
        if accepted != crds::desktop::is_user_name(name) {
            disagree.push(format!("{name:?}: the apiserver says {accepted}"));
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}
