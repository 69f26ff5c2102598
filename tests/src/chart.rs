//! The Helm chart `charts/verdant`, as the chart tests and the install tests use it: helm of
//! the pinned version, renders, and the chart's own files.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::controlplane::Binaries;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// The chart's folder.
pub fn dir() -> PathBuf {
    root().join("charts/verdant")
}

/// helm of the pinned version (built by tests/controlplane/build.sh on first use), run from
/// the workspace root.
pub fn helm() -> Command {
    let bins = Binaries::locate().expect("the pinned tools build (tests/controlplane/build.sh)");
    let mut cmd = Command::new(bins.helm);
    cmd.current_dir(root());
    // No user's helm settings or repositories leak in.
    let home = std::env::temp_dir().join("verdant-helm-home");
    cmd.env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    cmd
}

/// Runs `cmd`, panicking with its stderr when it fails; its stdout.
pub fn output(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Values that turn on every optional part of the chart.
pub const EVERY_OPTION: &[&str] = &[
    "broker.enabled=true",
    "broker.publicUrl=https://desktops.example.com",
    "broker.oidc.issuer=https://login.example.com",
    "broker.oidc.clientSecretName=oidc",
    "broker.oidc.caConfigMapName=oidc-ca",
    "broker.tlsSecretName=broker-tls",
    "broker.ingress.enabled=true",
    "broker.ingress.tlsSecretName=desktops-tls",
    "broker.desktopNamespaces={team-a,team-b}",
    "launcher.nodeSelector.verdant\\.dev/kvm=enabled",
    "launcher.runtimeClassName=kvm",
    "launcher.image.pullPolicy=Always",
    "launcher.cpuAllocationRatio=8",
    "launcher.privileged=false",
    "launcher.devicePlugin.kubeletDir=/var/lib/k0s/kubelet",
    "apiServer.host=10.213.0.1",
    "apiServer.port=6443",
];

/// `--set` arguments for values `sets`.
pub fn set_args<'a>(sets: &[&'a str]) -> Vec<&'a str> {
    sets.iter().flat_map(|set| ["--set", set]).collect()
}

/// `helm template` of release `verdant` in `verdant-system` with `--set` values `sets`.
pub fn render(sets: &[&str]) -> String {
    render_with(&set_args(sets))
}

/// `helm template` of release `verdant` in `verdant-system` with more arguments `args`.
pub fn render_with(args: &[&str]) -> String {
    let mut cmd = helm();
    cmd.args([
        "template",
        "verdant",
        "charts/verdant",
        "--namespace",
        "verdant-system",
    ]);
    cmd.args(args);
    output(&mut cmd)
}

/// The documents of a multi-document YAML stream, as JSON values (empty ones dropped).
pub fn documents(yaml: &str) -> Vec<serde_json::Value> {
    yaml.split("\n---")
        .filter_map(|doc| {
            let value: serde_json::Value =
                serde_saphyr::from_str(doc).unwrap_or_else(|e| panic!("{e}:\n{doc}"));
            (!value.is_null()).then_some(value)
        })
        .collect()
}

/// The dotted path of every value in a values file: each leaf, and each map or list that is
/// empty by default (users fill those in).
pub fn value_paths(values: &serde_json::Value) -> Vec<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() && !is_resources(prefix) => {
                for (key, v) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    walk(&path, v, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    // A container's resources are documented as one value.
    fn is_resources(path: &str) -> bool {
        path.ends_with(".resources")
    }
    let mut out = Vec::new();
    walk("", values, &mut out);
    out
}

/// Waits until the API serves Verdant's CRDs (kubectl wait for Established).
pub fn wait_for_crds(cp: &crate::ControlPlane) {
    output(cp.kubectl().args([
        "wait",
        "--for=condition=Established",
        "crd/desktops.vdi.verdant.dev",
        "crd/desktoppools.vdi.verdant.dev",
        "--timeout=60s",
    ]));
}

/// A ClusterRole `name` with the rules of the chart's `rbac/<file>.yaml`.
pub fn cluster_role(name: &str, file: &str) -> k8s_openapi::api::rbac::v1::ClusterRole {
    k8s_openapi::api::rbac::v1::ClusterRole {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        rules: Some(rules(file)),
        ..Default::default()
    }
}

/// A Role `name` with the rules of the chart's `rbac/<file>.yaml`.
pub fn role(name: &str, file: &str) -> k8s_openapi::api::rbac::v1::Role {
    k8s_openapi::api::rbac::v1::Role {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        rules: Some(rules(file)),
    }
}

/// Grants user `user` the rules of the chart's `rbac/<file>.yaml`, as an administrator
/// installing the chart would: a ClusterRole `name` bound cluster-wide where `namespace` is
/// `None`, else a Role `name` bound in `namespace`. What exists already is kept, so several
/// callers may grant the same.
pub async fn grant(
    client: &kube::Client,
    user: &str,
    name: &str,
    file: &str,
    namespace: Option<&str>,
) {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    use kube::Api;
    let pp = kube::api::PostParams::default();
    let kind = if namespace.is_some() {
        "Role"
    } else {
        "ClusterRole"
    };
    let binding = serde_json::json!({
        "metadata": {"name": name},
        "roleRef": {"kind": kind, "name": name, "apiGroup": "rbac.authorization.k8s.io"},
        "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
    });
    let ok = |what: &str, r: Result<(), kube::Error>| match r {
        Ok(()) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("granting {user} {kind} {name} ({what}): {e}"),
    };
    match namespace {
        None => {
            let roles = Api::<ClusterRole>::all(client.clone());
            let bindings = Api::<ClusterRoleBinding>::all(client.clone());
            let binding: ClusterRoleBinding = serde_json::from_value(binding).expect("binding");
            let role = cluster_role(name, file);
            ok("role", roles.create(&pp, &role).await.map(drop));
            ok("binding", bindings.create(&pp, &binding).await.map(drop));
        }
        Some(ns) => {
            let roles = Api::<Role>::namespaced(client.clone(), ns);
            let bindings = Api::<RoleBinding>::namespaced(client.clone(), ns);
            let binding: RoleBinding = serde_json::from_value(binding).expect("binding");
            let role = self::role(name, file);
            ok("role", roles.create(&pp, &role).await.map(drop));
            ok("binding", bindings.create(&pp, &binding).await.map(drop));
        }
    }
}

/// The rules of one of the chart's RBAC files (`rbac/<name>.yaml`), which its ClusterRoles and
/// Roles take and the tests grant.
pub fn rules(name: &str) -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
    let path = dir().join("rbac").join(format!("{name}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_paths_are_the_leaves_and_the_empty_containers() {
        let values = serde_json::json!({
            "a": {"b": 1, "c": {}, "d": [], "resources": {"requests": {"cpu": "1"}}},
            "e": "x",
        });
        assert_eq!(
            value_paths(&values),
            ["a.b", "a.c", "a.d", "a.resources", "e"]
        );
    }
}
