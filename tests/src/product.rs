//! The whole product on this machine, as `verdant-dev up` runs it where a node can run: a control
//! plane with a real node and the tests' OpenID provider, Verdant installed by `helm install`
//! of `charts/verdant` (the operator in a pod, from the images `images/build.sh` built), a demo
//! pool whose desktops run the demo guest in launcher pods, granted to the demo users, and the
//! broker's portal on `https://127.0.0.1:<port>`.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use crate::controlplane::{ControlPlane, OidcUser};
use crate::env::{Env, NodeKind, Operator};

/// The namespace the chart is installed in.
pub const SYSTEM_NAMESPACE: &str = "verdant-system";
/// The namespace of the demo pool.
pub const DEMO_NAMESPACE: &str = "demo";
/// The demo pool.
pub const DEMO_POOL: &str = "demo";
/// Desktops in the demo pool.
pub const DEMO_DESKTOPS: u32 = 2;
/// The group the demo pool is granted to.
pub const DEMO_GROUP: &str = "demo-users";
/// The demo users, `(name, password)`: both in [`DEMO_GROUP`].
pub const DEMO_USERS: [(&str, &str); 2] = [("alice", "alice-pw"), ("bob", "bob-pw")];
/// How long the install and the demo pool may take.
const LIMIT: Duration = Duration::from_secs(300);

/// Starts the product with its files in `dir`, telling its progress through `say`. Dropping
/// the environment stops the broker, the node and the control plane.
pub async fn start(dir: &Path, say: impl Fn(&str)) -> Result<Env, String> {
    let users = DEMO_USERS
        .iter()
        .map(|(name, password)| OidcUser::new(name, password, &[DEMO_GROUP]))
        .collect();
    say(
        "starting the control plane, the OpenID provider and a node (containerd, kubelet), then helm install verdant charts/verdant (the operator runs in a pod) and the portal",
    );
    let env = Env::builder(DEMO_NAMESPACE)
        .dir(dir)
        .oidc(users)
        .node(NodeKind::Real)
        .operator(Operator::Chart)
        .broker_at(SYSTEM_NAMESPACE, "verdant-broker", portal_port())
        .try_start()
        .await
        .map_err(|e| e.to_string())?;
    let node = env.cp.node().ok_or("the control plane has no node")?;
    say(&format!("node {} Ready at {}", node.name(), node.ip()));
    say(&format!(
        "Verdant installed; portal on {}",
        env.broker().url
    ));
    say("making the demo pool");
    demo_pool(&env).await?;
    crate::env::wait_ready_desktops(
        &env.desktops(),
        "",
        DEMO_DESKTOPS as usize,
        "the demo pool's desktops",
        LIMIT,
    )
    .await;
    say(&format!("{DEMO_DESKTOPS} demo desktops Ready"));
    Ok(env)
}

/// 8443 when free, else any free port.
fn portal_port() -> u16 {
    match std::net::TcpListener::bind(("127.0.0.1", 8443)) {
        Ok(_) => 8443,
        Err(_) => testkit::net::free_port(),
    }
}

/// `helm install` of the checkout's chart with the images the node holds: one operator replica
/// (a node of two cores), launcher pods requesting a tenth of a core per vCPU, and the
/// apiserver's node address for pods, since no kube-proxy runs here; `boot_dir`, where the demo
/// guest is written, is the host directory desktops may boot from.
pub(crate) fn install_chart(cp: &ControlPlane, boot_dir: &Path) -> Result<(), String> {
    let node = cp.node().ok_or("no node")?;
    let port = cp
        .server()
        .rsplit(':')
        .next()
        .ok_or("no port in the apiserver's URL")?;
    let sets = [
        "operator.replicas=1".to_owned(),
        "launcher.cpuAllocationRatio=10".to_owned(),
        format!("apiServer.host={}", node.ip()),
        format!("apiServer.port={port}"),
        format!("launcher.hostPaths={{{}}}", boot_dir.display()),
    ];
    let out = crate::chart::helm()
        .arg(format!("--kubeconfig={}", cp.kubeconfig().display()))
        .args(["install", "verdant"])
        .arg(crate::chart::dir())
        .args(["--namespace", SYSTEM_NAMESPACE, "--create-namespace"])
        .args(["--wait", "--timeout", "5m"])
        .args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .output()
        .map_err(|e| format!("helm: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "helm install failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Pool `demo` of the demo guest in namespace `demo`, usable by group `demo-users`.
async fn demo_pool(env: &Env) -> Result<(), String> {
    let client = env.client.clone();
    let pp = PostParams::default();
    let pool: crds::DesktopPool = serde_json::from_value(json!({
        "apiVersion": "vdi.verdant.dev/v1alpha1",
        "kind": "DesktopPool",
        "metadata": {"name": DEMO_POOL},
        "spec": {
            "replicas": DEMO_DESKTOPS,
            "assignment": "Floating",
            "session": {"disconnectTimeout": "5m"},
            "template": {"spec": crate::brokerenv::demo_spec(&env.kernel)},
        },
    }))
    .map_err(|e| e.to_string())?;
    env.pools()
        .create(&pp, &pool)
        .await
        .map_err(|e| format!("pool {DEMO_POOL}: {e}"))?;
    // docs/operating.md's Role: `use` on the pool, bound to the demo users' group.
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "use-demo"},
        "rules": [{"apiGroups": ["vdi.verdant.dev"], "resources": ["desktoppools"], "resourceNames": [DEMO_POOL], "verbs": ["use"]}],
    }))
    .map_err(|e| e.to_string())?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "use-demo"},
        "roleRef": {"kind": "Role", "name": "use-demo", "apiGroup": "rbac.authorization.k8s.io"},
        "subjects": [{"kind": "Group", "name": DEMO_GROUP, "apiGroup": "rbac.authorization.k8s.io"}],
    }))
    .map_err(|e| e.to_string())?;
    Api::<Role>::namespaced(client.clone(), DEMO_NAMESPACE)
        .create(&pp, &role)
        .await
        .map_err(|e| format!("role use-demo: {e}"))?;
    Api::<RoleBinding>::namespaced(client, DEMO_NAMESPACE)
        .create(&pp, &binding)
        .await
        .map_err(|e| format!("role binding use-demo: {e}"))?;
    Ok(())
}
