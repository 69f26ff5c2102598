//! The Helm chart, without a cluster: it lints, renders the same twice, documents every value,
//! and `deploy/verdant.yaml` is what it renders. (Installing it is `chart_install.rs`.)

use tests::chart::{EVERY_OPTION, documents, helm, output, render, root, value_paths};

#[test]
fn helm_lint_strict_passes_with_default_and_full_values() {
    output(helm().args(["lint", "--strict", "charts/verdant"]));
    output(
        helm()
            .args(["lint", "--strict", "charts/verdant"])
            .args(tests::chart::set_args(EVERY_OPTION)),
    );
}

#[test]
fn helm_template_renders_the_same_twice() {
    for sets in [&[][..], EVERY_OPTION] {
        let first = render(sets);
        let second = render(sets);
        assert!(
            first == second,
            "helm template differs between two runs with {sets:?}: Argo CD would show drift"
        );
    }
}

#[test]
fn bad_values_are_refused_naming_the_value() {
    let refused = |sets: &[&str], field: &str| {
        let mut cmd = helm();
        cmd.args(["template", "verdant", "charts/verdant"]);
        for set in sets {
            cmd.args(["--set", set]);
        }
        let out = cmd.output().expect("helm runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{sets:?} was accepted");
        assert!(
            err.contains(field),
            "{sets:?}: the error does not name {field}: {err}"
        );
    };
    refused(&["broker.enabled=true"], "/broker/publicUrl");
    refused(
        &[
            "broker.enabled=true",
            "broker.publicUrl=https://desktops.example.com",
            "broker.oidc.issuer=https://i",
        ],
        "/broker/desktopNamespaces",
    );
    refused(
        &["broker.desktopNamespaces={Team_A}"],
        "/broker/desktopNamespaces",
    );
    refused(&["operator.replicass=3"], "replicass");
    refused(&["operator.replicas=0"], "/operator/replicas");
    refused(
        &["launcher.image.pullPolicy=Sometimes"],
        "/launcher/image/pullPolicy",
    );
    refused(
        &[
            "broker.enabled=true",
            "broker.publicUrl=desktops",
            "broker.oidc.issuer=https://i",
        ],
        "/broker/publicUrl",
    );
}

#[test]
fn the_full_render_holds_each_optional_part_and_the_settings_reach_the_operator() {
    let docs = documents(&render(EVERY_OPTION));
    let kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "Deployment/verdant-operator",
        "Deployment/verdant-broker",
        "Service/verdant-broker",
        "Ingress/verdant-broker",
        "PodDisruptionBudget/verdant-operator",
        "ClusterRole/verdant-operator",
        "ClusterRole/verdant-broker",
        "Role/verdant-operator-leader-election",
        "Role/verdant-broker-session",
        "Role/verdant-broker",
        "RoleBinding/verdant-broker",
        "ConfigMap/verdant-launcher",
        "DaemonSet/verdant-kvm-plugin",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "{expected} is missing: {kinds:?}"
        );
    }
    // The broker's Role is in each desktop namespace, and its ClusterRole only creates
    // reviews: it can read no Secret, pod or desktop anywhere else.
    let broker_roles: Vec<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "Role" && d["metadata"]["name"] == "verdant-broker")
        .map(|d| d["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(broker_roles, ["team-a", "team-b"]);
    let cluster = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole" && d["metadata"]["name"] == "verdant-broker")
        .unwrap();
    let resources: Vec<&str> = cluster["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["resources"].as_array().unwrap())
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(resources, ["tokenreviews", "subjectaccessreviews"]);
    let broker = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "verdant-broker")
        .unwrap();
    let broker_env = broker["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap();
    assert!(
        broker_env
            .iter()
            .any(|e| e["name"] == "VERDANT_BROKER_NAMESPACES" && e["value"] == "team-a,team-b"),
        "{broker_env:?}"
    );
    // The operator keeps the launcher NetworkPolicy itself, in every namespace it makes
    // launchers in; the chart renders none.
    assert!(!docs.iter().any(|d| d["kind"] == "NetworkPolicy"));
    // No ServiceMonitor without the Prometheus Operator's API.
    assert!(!kinds.iter().any(|k| k.starts_with("ServiceMonitor/")));

    let operator = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "verdant-operator")
        .unwrap();
    let pod = &operator["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(operator["spec"]["replicas"], 2);
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--leader-elect"), "{args:?}");
    assert!(
        args.contains(&"--launcher-image=ghcr.io/verdant-vdi/verdant-launcher:0.1.0"),
        "{args:?}"
    );
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    // apiServer.host: the in-cluster config's address, for clusters without kube-proxy.
    let env = container["env"].as_array().unwrap();
    for (name, value) in [
        ("KUBERNETES_SERVICE_HOST", "10.213.0.1"),
        ("KUBERNETES_SERVICE_PORT", "6443"),
    ] {
        assert!(
            env.iter().any(|e| e["name"] == name && e["value"] == value),
            "{name}={value} in {env:?}"
        );
    }

    // The launcher values become the operator's --launcher-settings file, which it parses.
    let settings = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .map(|d| d["data"]["settings.yaml"].as_str().unwrap().to_owned())
        .unwrap();
    let parsed =
        operator::LauncherPod::parse(&settings).expect("the operator reads the chart's settings");
    assert_eq!(parsed.node_selector["verdant.dev/kvm"], "enabled");
    assert_eq!(parsed.runtime_class_name.as_deref(), Some("kvm"));
    assert_eq!(parsed.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(parsed.cpu_allocation_ratio, Some(8));
    // The hardened mode: unprivileged launchers, and the device plugin on the KVM nodes, from
    // the launcher image, registering in the kubelet's folder, itself unprivileged.
    assert!(!parsed.privileged);
    let plugin = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("the device plugin");
    let plugin_pod = &plugin["spec"]["template"]["spec"];
    assert_eq!(plugin_pod["nodeSelector"]["verdant.dev/kvm"], "enabled");
    let c = &plugin_pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/verdant-vdi/verdant-launcher:0.1.0");
    assert_eq!(c["command"][0], "/usr/bin/verdant-kvm-plugin");
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .contains(&"--kubelet-dir=/var/lib/k0s/kubelet".into())
    );
    assert_eq!(c["securityContext"]["privileged"], serde_json::Value::Null);
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    let host_paths: Vec<&str> = plugin_pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["hostPath"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        host_paths,
        ["/var/lib/k0s/kubelet/device-plugins", "/dev/kvm"]
    );
    let policy = &parsed.network_policy;
    assert!(policy.enabled);
    assert_eq!(policy.broker_namespace.as_deref(), Some("verdant-system"));
    assert_eq!(
        policy.broker_pod_labels["app.kubernetes.io/name"],
        "verdant-broker"
    );
    // With default values too: the policy is on (no broker: no pod reaches a launcher).
    let defaults = documents(&render(&[]));
    let settings = defaults
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .map(|d| d["data"]["settings.yaml"].as_str().unwrap().to_owned())
        .unwrap();
    let parsed = operator::LauncherPod::parse(&settings).unwrap();
    assert!(parsed.network_policy.enabled && parsed.network_policy.broker_namespace.is_none());
    // Privileged launchers by default, as the design has them: no device plugin.
    assert!(parsed.privileged);
    assert!(!defaults.iter().any(|d| d["kind"] == "DaemonSet"));
}

#[test]
fn the_chart_readme_documents_every_value() {
    let values: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("charts/verdant/values.yaml")).unwrap(),
    )
    .unwrap();
    let readme = std::fs::read_to_string(root().join("charts/verdant/README.md")).unwrap();
    let missing: Vec<String> = value_paths(&values)
        .into_iter()
        .filter(|path| !readme.contains(&format!("| `{path}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "charts/verdant/README.md's values table lacks {missing:?}"
    );
}

#[test]
fn the_chart_version_is_the_workspace_version() {
    let chart: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("charts/verdant/Chart.yaml")).unwrap(),
    )
    .unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["version"], version, "Chart.yaml version");
    assert_eq!(chart["appVersion"], version, "Chart.yaml appVersion");
}

#[test]
fn deploy_verdant_yaml_is_the_chart_rendered_with_default_values() {
    let bins = tests::controlplane::Binaries::locate().expect("the pinned tools build");
    let rendered = output(
        std::process::Command::new("bash")
            .arg("deploy/render.sh")
            .env("HELM", &bins.helm)
            .current_dir(root()),
    );
    let committed = std::fs::read_to_string(root().join("deploy/verdant.yaml")).unwrap();
    assert!(
        rendered == committed,
        "deploy/verdant.yaml differs from the chart; run `HELM={} bash deploy/render.sh > deploy/verdant.yaml` and commit it",
        bins.helm.display()
    );
}

#[test]
fn service_monitors_render_only_where_the_prometheus_operator_api_exists() {
    let count = |extra: &[&str]| {
        documents(&tests::chart::render_with(extra))
            .iter()
            .filter(|d| d["kind"] == "ServiceMonitor")
            .count()
    };
    assert_eq!(count(&[]), 0, "no ServiceMonitor without the API");
    let api = ["--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"];
    assert_eq!(count(&api), 1, "the operator's");
    let with_broker = [
        &api[..],
        &[
            "--set",
            "broker.enabled=true",
            "--set",
            "broker.publicUrl=https://d.example.com",
            "--set",
            "broker.oidc.issuer=https://i.example.com",
            "--set",
            "broker.desktopNamespaces={team-a}",
        ],
    ]
    .concat();
    assert_eq!(count(&with_broker), 2, "the operator's and the broker's");
    // The broker's is scraped on its own metrics port, which the Ingress does not route to.
    let docs = documents(&tests::chart::render_with(&with_broker));
    let monitor = docs
        .iter()
        .find(|d| d["kind"] == "ServiceMonitor" && d["metadata"]["name"] == "verdant-broker")
        .unwrap();
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["scheme"], "http");
    assert_eq!(
        count(&[&api[..], &["--set", "serviceMonitor.enabled=false"]].concat()),
        0
    );
}
