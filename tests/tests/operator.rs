//! The Desktop controller against the real control plane (kube-controller-manager included, for
//! garbage collection). The test plays the kubelet with [`Kubelet`].

use std::time::Duration;

use crds::{Desktop, DesktopPhase};
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Pod, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tests::ControlPlane;
use tests::controlplane::{Options as CpOptions, install_crds};
use tests::kubelet::{Kubelet, eventually};

const LIMIT: Duration = Duration::from_secs(30);

/// A control plane with CRDs, a namespace, and an operator running in this process.
struct Env {
    cp: ControlPlane,
    client: Client,
    operator_client: Client,
    ns: String,
    kubelet: Kubelet,
    operator: Option<tokio::task::JoinHandle<()>>,
}

/// The operator's own user, for telling its writes apart in the audit log.
const OPERATOR_USER: &str = "verdant-operator";

/// Binds the operator's documented ClusterRole (cluster-wide) and leader-election Role (in
/// `lease_ns`) to `user`.
async fn grant(client: &Client, user: &str, lease_ns: &str) {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../operator/rbac");
    let role: ClusterRole = serde_saphyr::from_str(
        &std::fs::read_to_string(format!("{dir}/clusterrole.yaml")).unwrap(),
    )
    .unwrap();
    let lease_role: Role = serde_saphyr::from_str(
        &std::fs::read_to_string(format!("{dir}/leader-election-role.yaml")).unwrap(),
    )
    .unwrap();
    let subject = json!([{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]);
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "verdant-operator"},
        "roleRef": {"kind": "ClusterRole", "name": "verdant-operator", "apiGroup": "rbac.authorization.k8s.io"},
        "subjects": subject,
    }))
    .unwrap();
    let lease_binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "verdant-operator-leader-election"},
        "roleRef": {"kind": "Role", "name": "verdant-operator-leader-election", "apiGroup": "rbac.authorization.k8s.io"},
        "subjects": subject,
    }))
    .unwrap();
    let pp = PostParams::default();
    Api::<ClusterRole>::all(client.clone())
        .create(&pp, &role)
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&pp, &binding)
        .await
        .unwrap();
    Api::<Role>::namespaced(client.clone(), lease_ns)
        .create(&pp, &lease_role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), lease_ns)
        .create(&pp, &lease_binding)
        .await
        .unwrap();
}

impl Env {
    async fn start(ns: &str) -> Self {
        Self::start_with(ns, false).await
    }

    async fn start_with(ns: &str, audit: bool) -> Self {
        let mut cp = ControlPlane::start_with(CpOptions {
            controller_manager: true,
            audit,
            ..CpOptions::default()
        })
        .await
        .expect("control plane");
        // The operator runs with exactly the RBAC rules it documents, not as an admin.
        let (operator_client, _) = cp
            .client_for(OPERATOR_USER, None)
            .await
            .expect("operator credentials");
        let client = cp.client();
        install_crds(&client).await.expect("CRDs");
        cp.create_namespace(ns).await.expect("namespace");
        grant(&client, OPERATOR_USER, ns).await;
        let kubelet = Kubelet::new(client.clone(), ns, "node-1");
        kubelet.register().await.expect("node");
        let mut env = Self {
            cp,
            client,
            operator_client,
            ns: ns.into(),
            kubelet,
            operator: None,
        };
        env.start_operator("operator-1");
        env
    }

    fn options(&self, identity: &str) -> operator::Options {
        operator::Options {
            launcher_image: "registry.example/verdant/launcher:test".into(),
            namespaces: vec![self.ns.clone()],
            http: None,
            leader_election: None,
            identity: identity.into(),
        }
    }

    fn start_operator(&mut self, identity: &str) {
        let options = self.options(identity);
        self.spawn_operator(options);
    }

    fn spawn_operator(&mut self, options: operator::Options) {
        let client = self.operator_client.clone();
        self.operator = Some(tokio::spawn(async move {
            if let Err(e) = operator::run(client, options, std::future::pending()).await {
                panic!("operator failed: {e}");
            }
        }));
    }

    /// Restarts the operator so that it also serves its endpoints (metrics, health) on a free
    /// local port, which it returns.
    fn serve_http(&mut self) -> std::net::SocketAddr {
        self.kill_operator();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let http = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        self.spawn_operator(operator::Options {
            http: Some(http),
            ..self.options("operator-http")
        });
        http
    }

    fn kill_operator(&mut self) {
        if let Some(task) = self.operator.take() {
            task.abort();
        }
    }

    fn desktops(&self) -> Api<Desktop> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn create_desktop(&self, name: &str, user: Option<&str>) -> Desktop {
        let mut spec = json!({
            "resources": {"cpus": 2, "memory": "1Gi"},
            "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}, "cmdline": "console=ttyS0"},
            "display": {"width": 1280, "height": 800},
        });
        if let Some(user) = user {
            spec["user"] = json!(user);
        }
        let desktop: Desktop = serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "Desktop",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        self.desktops()
            .create(&PostParams::default(), &desktop)
            .await
            .expect("desktop")
    }

    /// Creates pool `name` with `spec` (replicas, assignment, session...) and a small
    /// template.
    async fn create_pool(&self, name: &str, mut spec: serde_json::Value) {
        spec["template"] = json!({"spec": {
            "resources": {"cpus": 1, "memory": "1Gi"},
            "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}},
        }});
        let pool: crds::DesktopPool = serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "DesktopPool",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        Api::<crds::DesktopPool>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &pool)
            .await
            .expect("pool");
    }

    async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.desktops()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .expect("patch desktop");
    }

    /// The live (not terminating) launcher pods of a desktop.
    async fn live_pods(&self, desktop: &str) -> Vec<Pod> {
        live(&self.pods(), &format!("vdi.verdant.dev/desktop={desktop}"))
            .await
            .expect("pods")
    }

    /// Waits for a live launcher pod of `desktop` other than the pod `not` (by uid).
    async fn wait_pod(&self, desktop: &str, not: Option<&Pod>) -> Pod {
        let not_uid = not.and_then(ResourceExt::uid);
        eventually(&format!("a launcher pod for {desktop}"), LIMIT, || async {
            let pods = self.live_pods(desktop).await;
            pods.into_iter()
                .find(|p| not_uid.is_none() || p.uid() != not_uid)
        })
        .await
    }

    async fn wait_phase(&self, desktop: &str, phase: DesktopPhase) -> Desktop {
        eventually(&format!("{desktop} in phase {phase:?}"), LIMIT, || async {
            let d = self.desktops().get(desktop).await.ok()?;
            (d.status.as_ref()?.phase == Some(phase)).then_some(d)
        })
        .await
    }

    async fn events_for(&self, desktop: &str) -> Vec<Event> {
        Api::<Event>::namespaced(self.client.clone(), &self.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(desktop))
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_operator();
    }
}

/// GETs `path` from `addr`; the body, if the answer is 200.
/// The objects of `api` matching `labels` (`""`: all) that are not being deleted; `None` when
/// the list fails.
async fn live<K>(api: &Api<K>, labels: &str) -> Option<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let list = api.list(&ListParams::default().labels(labels)).await.ok()?;
    Some(
        list.items
            .into_iter()
            .filter(|o| o.meta().deletion_timestamp.is_none())
            .collect(),
    )
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The HTTP path a probe checks.
fn probe_path(probe: &Option<k8s_openapi::api::core::v1::Probe>) -> Option<&str> {
    probe.as_ref()?.http_get.as_ref()?.path.as_deref()
}

fn condition(desktop: &Desktop, type_: &str) -> Option<crds::Condition> {
    desktop
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn desktop_becomes_a_launcher_pod_and_follows_it() {
    let mut env = Env::start("team-a").await;
    let _reaper = env.kubelet.reap_in_background();
    let http = env.serve_http();
    let desktop = env.create_desktop("alice-dev", Some("alice")).await;

    // One pod, with the spec the issue asks for.
    let pod = env.wait_pod("alice-dev", None).await;
    assert_eq!(env.live_pods("alice-dev").await.len(), 1);
    let owner = &pod.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Desktop", desktop.uid().unwrap().as_str(), Some(true))
    );
    let labels = pod.labels();
    assert_eq!(labels["vdi.verdant.dev/desktop"], "alice-dev");
    assert_eq!(labels["vdi.verdant.dev/user"], "alice");
    let spec = pod.spec.as_ref().unwrap();
    let c = &spec.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example/verdant/launcher:test")
    );
    assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
    let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "2100m");
    assert_eq!(
        requests["memory"].0,
        ((1u64 << 30) + (64 << 20)).to_string()
    );
    assert_eq!(probe_path(&c.readiness_probe), Some("/readyz"));
    assert_eq!(probe_path(&c.liveness_probe), Some("/healthz"));
    let args = c.args.as_ref().unwrap();
    let config = launcher_api::LauncherConfig::from_json(&args[2]).expect("launcher config");
    assert_eq!((config.cpus, config.memory.as_str()), (2, "1Gi"));
    let volumes = spec.volumes.as_ref().unwrap();
    let kvm = volumes
        .iter()
        .find(|v| v.name == "kvm")
        .unwrap()
        .host_path
        .as_ref()
        .unwrap();
    assert_eq!(
        (kvm.path.as_str(), kvm.type_.as_deref()),
        ("/dev/kvm", Some("CharDevice"))
    );
    let secret_name = volumes
        .iter()
        .find_map(|v| v.secret.as_ref()?.secret_name.clone())
        .unwrap();
    let secret = Api::<Secret>::namespaced(env.client.clone(), "team-a")
        .get(&secret_name)
        .await
        .unwrap();
    assert_eq!(secret.owner_references()[0].uid, desktop.uid().unwrap());
    assert_eq!(secret.data.as_ref().unwrap()["password"].0.len(), 24);

    let d = env.wait_phase("alice-dev", DesktopPhase::Starting).await;
    assert_eq!(
        d.status.as_ref().unwrap().pod_name.as_deref(),
        Some(pod.name_any().as_str())
    );

    // The kubelet starts it: Running, then Ready.
    env.kubelet.schedule(&pod.name_any()).await.unwrap();
    env.kubelet.run(&pod.name_any(), false).await.unwrap();
    let d = env.wait_phase("alice-dev", DesktopPhase::Running).await;
    assert_eq!(
        d.status.as_ref().unwrap().node_name.as_deref(),
        Some("node-1")
    );
    assert_eq!(
        condition(&d, "VMRunning").unwrap().status,
        crds::ConditionStatus::True
    );
    env.kubelet.run(&pod.name_any(), true).await.unwrap();
    let d = env.wait_phase("alice-dev", DesktopPhase::Ready).await;
    assert_eq!(
        condition(&d, "DisplayReady").unwrap().status,
        crds::ConditionStatus::True
    );
    let status = d.status.as_ref().unwrap();
    assert!(status.ready_at.is_some() && status.started_at.is_some());
    assert_eq!(status.observed_generation, d.metadata.generation);
    let events = env.events_for("alice-dev").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("LauncherCreated")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("DisplayReady")),
        "{events:?}"
    );

    // The operator's own endpoints.
    let metrics = eventually("the Ready desktop in the phase gauge", LIMIT, || async {
        let text = http_get(http, "/metrics").await?;
        text.contains("verdant_operator_desktops{phase=\"Ready\"} 1")
            .then_some(text)
    })
    .await;
    assert!(
        metrics.contains("verdant_operator_desktop_ready_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("verdant_operator_reconciles_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("verdant_operator_reconcile_duration_seconds_count"),
        "{metrics}"
    );
    assert_eq!(http_get(http, "/healthz").await.as_deref(), Some("ok\n"));
    assert_eq!(http_get(http, "/readyz").await.as_deref(), Some("ready\n"));

    // running: false -> the pod goes, Stopped; the Secret stays.
    env.patch_spec("alice-dev", json!({"running": false})).await;
    env.wait_phase("alice-dev", DesktopPhase::Stopped).await;
    assert!(env.live_pods("alice-dev").await.is_empty());
    assert!(
        env.pods().get_opt(&pod.name_any()).await.unwrap().is_none(),
        "the old pod is gone"
    );

    // running: true -> a new pod.
    env.patch_spec("alice-dev", json!({"running": true})).await;
    let again = env.wait_pod("alice-dev", None).await;
    assert_ne!(again.uid(), pod.uid());
    env.wait_phase("alice-dev", DesktopPhase::Starting).await;

    // Deleting the Desktop lets the garbage collector take the pod and the Secret.
    env.desktops()
        .delete("alice-dev", &DeleteParams::default())
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(env.client.clone(), "team-a");
    eventually(
        "pod and Secret collected",
        Duration::from_secs(60),
        || async {
            let pod_gone = env
                .pods()
                .get_opt(&again.name_any())
                .await
                .unwrap()
                .is_none();
            let secret_gone = secrets.get_opt(&secret_name).await.unwrap().is_none();
            (pod_gone && secret_gone).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn spec_change_waits_for_the_user_then_replaces_the_pod() {
    let env = Env::start("team-b").await;
    let _reaper = env.kubelet.reap_in_background();
    env.create_desktop("bob-dev", Some("bob")).await;
    let pod = env.wait_pod("bob-dev", None).await;
    env.kubelet.schedule(&pod.name_any()).await.unwrap();
    env.kubelet.run(&pod.name_any(), true).await.unwrap();
    env.wait_phase("bob-dev", DesktopPhase::Ready).await;

    // More memory while bob is assigned: his VM stays; the Desktop says a restart is needed.
    env.patch_spec(
        "bob-dev",
        json!({"resources": {"cpus": 2, "memory": "2Gi"}}),
    )
    .await;
    let d = eventually("RestartRequired", LIMIT, || async {
        let d = env.desktops().get("bob-dev").await.ok()?;
        (condition(&d, "RestartRequired")?.status == crds::ConditionStatus::True).then_some(d)
    })
    .await;
    assert_eq!(d.status.as_ref().unwrap().phase, Some(DesktopPhase::Ready));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pods = env.live_pods("bob-dev").await;
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].uid(), pod.uid(), "bob's pod was left alone");

    // Released: the pod is replaced with one for the new spec.
    env.patch_spec("bob-dev", json!({"user": null})).await;
    let new = env.wait_pod("bob-dev", Some(&pod)).await;
    let requests = new.spec.as_ref().unwrap().containers[0]
        .resources
        .as_ref()
        .unwrap()
        .requests
        .clone()
        .unwrap();
    assert_eq!(
        requests["memory"].0,
        ((2u64 << 30) + (64 << 20)).to_string()
    );
    eventually("the old pod gone", LIMIT, || async {
        env.pods()
            .get_opt(&pod.name_any())
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let d = env.wait_phase("bob-dev", DesktopPhase::Starting).await;
    assert_eq!(
        condition(&d, "RestartRequired").unwrap().status,
        crds::ConditionStatus::False
    );

    // Unassigned now: the next change replaces the pod straight away.
    env.patch_spec(
        "bob-dev",
        json!({"resources": {"cpus": 1, "memory": "2Gi"}}),
    )
    .await;
    let third = env.wait_pod("bob-dev", Some(&new)).await;
    let resources = third.spec.as_ref().unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    assert_eq!(resources.requests.unwrap()["cpu"].0, "1100m");
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_launcher_is_replaced_with_backoff_and_the_reason_shown() {
    let env = Env::start("team-c").await;
    let _reaper = env.kubelet.reap_in_background();
    env.create_desktop("carol-dev", None).await;
    let pod = env.wait_pod("carol-dev", None).await;
    env.kubelet.schedule(&pod.name_any()).await.unwrap();
    env.kubelet.run(&pod.name_any(), true).await.unwrap();
    env.wait_phase("carol-dev", DesktopPhase::Ready).await;

    env.kubelet.exit(&pod.name_any(), 4).await.unwrap();
    let failed_at = std::time::Instant::now();
    let d = env.wait_phase("carol-dev", DesktopPhase::Failed).await;
    let vm = condition(&d, "VMRunning").unwrap();
    assert_eq!(vm.reason, "GuestCrashed");
    assert!(vm.message.contains("next launcher in"), "{}", vm.message);
    let events = env.events_for("carol-dev").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("GuestCrashed")),
        "{events:?}"
    );

    let new = env.wait_pod("carol-dev", Some(&pod)).await;
    let waited = failed_at.elapsed();
    assert!(
        waited >= Duration::from_secs(4),
        "replaced after {waited:?}, without backoff"
    );
    assert_ne!(new.uid(), pod.uid());
    env.wait_phase("carol-dev", DesktopPhase::Starting).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_claim_fails_the_desktop_until_it_exists() {
    let env = Env::start("team-d").await;
    let desktop: Desktop = serde_json::from_value(json!({
        "apiVersion": "vdi.verdant.dev/v1alpha1",
        "kind": "Desktop",
        "metadata": {"name": "dave-dev"},
        "spec": {
            "resources": {"cpus": 1, "memory": "1Gi"},
            "boot": {"kernel": {"persistentVolumeClaim": {"claimName": "kernels", "path": "vmlinuz"}}},
        },
    }))
    .unwrap();
    env.desktops()
        .create(&PostParams::default(), &desktop)
        .await
        .unwrap();
    let d = env.wait_phase("dave-dev", DesktopPhase::Failed).await;
    let vm = condition(&d, "VMRunning").unwrap();
    assert_eq!(vm.reason, "PersistentVolumeClaimNotFound");
    assert!(
        vm.message
            .contains("spec.boot.kernel.persistentVolumeClaim")
            && vm.message.contains("team-d/kernels"),
        "{}",
        vm.message
    );
    assert!(env.live_pods("dave-dev").await.is_empty());

    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "kernels"},
        "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}},
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(env.client.clone(), "team-d")
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
    // It recovers by itself.
    env.wait_pod("dave-dev", None).await;
    env.wait_phase("dave-dev", DesktopPhase::Starting).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_operator_mid_reconcile_leaves_exactly_one_pod_per_desktop() {
    let mut env = Env::start("team-e").await;
    let _reaper = env.kubelet.reap_in_background();
    env.kill_operator();
    let count = 50;
    for i in 0..count {
        env.create_desktop(&format!("desk-{i:02}"), None).await;
    }
    // Every fifth desktop is switched off while the operator comes and goes.
    for round in 0..10u64 {
        env.start_operator(&format!("operator-round-{round}"));
        if round == 3 {
            for i in (0..count).step_by(5) {
                env.patch_spec(&format!("desk-{i:02}"), json!({"running": false}))
                    .await;
            }
        }
        // Die somewhere in the middle of the work, at a different point each round.
        tokio::time::sleep(Duration::from_millis(250 + (round * 173) % 700)).await;
        env.kill_operator();
    }
    env.start_operator("operator-final");

    let desktops: Vec<String> = (0..count).map(|i| format!("desk-{i:02}")).collect();
    eventually(
        "one launcher pod per running desktop and none for stopped ones",
        Duration::from_secs(90),
        || async {
            let live = live(&env.pods(), "").await?;
            for (i, name) in desktops.iter().enumerate() {
                let n = live
                    .iter()
                    .filter(|p| p.labels().get("vdi.verdant.dev/desktop") == Some(name))
                    .count();
                let want = if i % 5 == 0 { 0 } else { 1 };
                if n != want {
                    return None;
                }
            }
            // No orphans: every pod belongs to one of the desktops.
            live.iter()
                .all(|p| {
                    p.labels()
                        .get("vdi.verdant.dev/desktop")
                        .is_some_and(|d| desktops.contains(d))
                })
                .then_some(())
        },
    )
    .await;
    // And it stays that way.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(live(&env.pods(), "").await.expect("pods").len(), 40);
    let secrets = Api::<Secret>::namespaced(env.client.clone(), "team-e")
        .list(&ListParams::default().labels("vdi.verdant.dev/desktop"))
        .await
        .unwrap()
        .items;
    let mut names: Vec<_> = secrets.iter().map(|s| s.name_any()).collect();
    names.dedup();
    assert!(
        names.len() <= count && names.len() >= 40,
        "{} display Secrets",
        names.len()
    );
}

/// Writes by the operator's user in `ns`, from the audit log, per desktop: (objects, events).
fn operator_writes(
    audit_log: &std::path::Path,
    ns: &str,
) -> std::collections::BTreeMap<String, (usize, usize)> {
    let text = std::fs::read_to_string(audit_log).unwrap_or_default();
    let mut per_desktop = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for line in text.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if entry["stage"] != "ResponseComplete" || entry["user"]["username"] != OPERATOR_USER {
            continue;
        }
        if !matches!(
            entry["verb"].as_str(),
            Some("create" | "update" | "patch" | "delete")
        ) {
            continue;
        }
        let object = &entry["objectRef"];
        if object["namespace"] != ns {
            continue;
        }
        let name = object["name"].as_str().unwrap_or_default();
        let (desktop, is_event) = match object["resource"].as_str() {
            Some("desktops") => (name.to_owned(), false),
            Some("pods") => (
                name.rsplit_once('-').map_or(name, |(d, _)| d).to_owned(),
                false,
            ),
            Some("secrets") => (name.trim_end_matches("-display").to_owned(), false),
            Some("events") => (name.split('.').next().unwrap_or(name).to_owned(), true),
            _ => continue,
        };
        let counts = per_desktop.entry(desktop).or_default();
        if is_event {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
    }
    per_desktop
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_writes_per_desktop_from_creation_to_ready() {
    let env = Env::start_with("team-w", true).await;
    let _reaper = env.kubelet.reap_in_background();
    let names: Vec<String> = (0..10).map(|i| format!("w-{i}")).collect();
    for name in &names {
        env.create_desktop(name, Some("user")).await;
    }
    // Play the kubelet as a real one would: container running first, ready a little later.
    for name in &names {
        let pod = env.wait_pod(name, None).await;
        env.kubelet.schedule(&pod.name_any()).await.unwrap();
        env.kubelet.run(&pod.name_any(), false).await.unwrap();
    }
    for name in &names {
        env.wait_phase(name, DesktopPhase::Running).await;
        let pod = env.wait_pod(name, None).await;
        env.kubelet.run(&pod.name_any(), true).await.unwrap();
    }
    for name in &names {
        env.wait_phase(name, DesktopPhase::Ready).await;
    }
    // Let the last status patches land, then count.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_ready = operator_writes(&env.cp.audit_log(), "team-w");
    let mut objects: Vec<usize> = names
        .iter()
        .map(|n| at_ready.get(n).map_or(0, |c| c.0))
        .collect();
    let mut events: Vec<usize> = names
        .iter()
        .map(|n| at_ready.get(n).map_or(0, |c| c.1))
        .collect();
    objects.sort_unstable();
    events.sort_unstable();
    println!(
        "operator writes per desktop, creation -> Ready ({} desktops): objects median {} (min {}, max {}), events median {}; target <= 4 object writes",
        names.len(),
        objects[objects.len() / 2],
        objects[0],
        objects[objects.len() - 1],
        events[events.len() / 2],
    );
    assert!(
        objects[0] >= 3,
        "at least the Secret, the pod and one status write: {at_ready:?}"
    );

    // Nothing changes from here on, so nothing is written: not even on resyncs or restarts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = operator_writes(&env.cp.audit_log(), "team-w");
    assert_eq!(
        later, at_ready,
        "the operator wrote although nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_two_replicas_only_the_leader_writes_and_a_new_one_takes_over() {
    let mut env = Env::start("team-f").await;
    let _reaper = env.kubelet.reap_in_background();
    env.kill_operator();
    let leader_options = |env: &Env, identity: &str| operator::Options {
        leader_election: Some(operator::LeaderElection {
            namespace: "team-f".into(),
            lease: "verdant-operator".into(),
            duration: Duration::from_secs(10),
        }),
        ..env.options(identity)
    };
    env.spawn_operator(leader_options(&env, "replica-a"));
    let first = env.operator.take();
    env.spawn_operator(leader_options(&env, "replica-b"));
    let second = env.operator.take();

    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(env.client.clone(), "team-f");
    let leader = eventually("a lease holder", LIMIT, || async {
        leases
            .get_opt("verdant-operator")
            .await
            .ok()
            .flatten()?
            .spec?
            .holder_identity
    })
    .await;
    // Each replica claims the lease as its own field manager, so the second claim conflicts
    // instead of silently taking over: the holder's manager alone owns holderIdentity.
    let lease = leases.get("verdant-operator").await.unwrap();
    let owners: Vec<String> = lease
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|f| {
            f.fields_v1
                .as_ref()
                .is_some_and(|v| v.0.to_string().contains("f:holderIdentity"))
        })
        .filter_map(|f| f.manager)
        .collect();
    assert_eq!(owners, [format!("verdant-operator-{leader}")]);
    env.create_desktop("d-1", None).await;
    env.wait_pod("d-1", None).await;
    env.wait_phase("d-1", DesktopPhase::Starting).await;
    let events = env.events_for("d-1").await;
    assert!(!events.is_empty());
    for e in &events {
        assert_eq!(
            e.reporting_instance.as_deref(),
            Some(leader.as_str()),
            "an event from the standby: {e:?}"
        );
    }

    // Kill the leader outright; the standby must take over within 15 s.
    let (dead, alive) = if leader == "replica-a" {
        (first, second)
    } else {
        (second, first)
    };
    dead.expect("leader task").abort();
    let killed = std::time::Instant::now();
    env.create_desktop("d-2", None).await;
    env.wait_pod("d-2", None).await;
    let takeover = killed.elapsed();
    println!(
        "leader takeover: the new leader created d-2's pod {:.1} s after the old one died",
        takeover.as_secs_f64()
    );
    assert!(
        takeover <= Duration::from_secs(15),
        "takeover took {takeover:?}"
    );
    let holder = leases
        .get("verdant-operator")
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    assert_ne!(holder, leader);
    env.operator = alive;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_scales_through_its_scale_subresource_and_keeps_assigned_desktops() {
    let env = Env::start("team-p").await;
    let pools: Api<crds::DesktopPool> = Api::namespaced(env.client.clone(), "team-p");
    env.create_pool("office", json!({"replicas": 0})).await;
    let live = || async {
        let mut names: Vec<String> = live(&env.desktops(), "vdi.verdant.dev/pool=office")
            .await
            .expect("desktops")
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        names.sort();
        names
    };
    let scale = |replicas: i32| {
        let pools = pools.clone();
        async move {
            pools
                .patch_scale(
                    "office",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                )
                .await
                .expect("scale")
        }
    };

    scale(20).await;
    eventually("20 desktops", LIMIT, || async {
        (live().await.len() == 20).then_some(())
    })
    .await;
    let status = eventually("the pool's status", LIMIT, || async {
        let status = pools.get("office").await.ok()?.status?;
        (status.replicas == 20).then_some(status)
    })
    .await;
    assert_eq!(status.desired_replicas, 20);
    assert_eq!(
        status.label_selector.as_deref(),
        Some("vdi.verdant.dev/pool=office")
    );
    // `kubectl scale` reads the same numbers through /scale.
    let read = pools.get_scale("office").await.unwrap();
    assert_eq!(read.spec.and_then(|s| s.replicas), Some(20));

    let created = env.events_for("office").await;
    assert!(
        created
            .iter()
            .any(|e| e.reason.as_deref() == Some("Created")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Created 20 desktops: office-0, office-1,"))),
        "an event on the pool names what it created: {created:?}"
    );

    // Ten desktops start (the test plays their kubelet), and three users sit at desktops, two
    // of them Ready.
    let _reaper = env.kubelet.reap_in_background();
    let ready: Vec<String> = (0..10).map(|i| format!("office-{i}")).collect();
    for name in &ready {
        let pod = env.wait_pod(name, None).await;
        env.kubelet.schedule(&pod.name_any()).await.unwrap();
        env.kubelet.run(&pod.name_any(), true).await.unwrap();
    }
    for name in &ready {
        env.wait_phase(name, DesktopPhase::Ready).await;
    }
    let assigned = ["office-3", "office-7", "office-11"];
    for (i, name) in assigned.iter().enumerate() {
        env.patch_spec(name, json!({"user": format!("user-{i}")}))
            .await;
    }
    eventually("the pool counts its users", LIMIT, || async {
        let status = pools.get("office").await.ok()?.status?;
        (status.assigned == 3 && status.ready == 10).then_some(())
    })
    .await;

    // Every deletion, in the order the apiserver saw them.
    let deleted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let watch = {
        use futures::StreamExt;
        use kube::runtime::watcher;
        let deleted = std::sync::Arc::clone(&deleted);
        let stream = watcher(env.desktops(), watcher::Config::default());
        let (listed, listed_rx) = tokio::sync::oneshot::channel();
        let mut listed = Some(listed);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut seen = std::collections::BTreeSet::new();
            while let Some(Ok(event)) = stream.next().await {
                // With no finalizer a deletion shows as the object going; with one, as its
                // deletion timestamp.
                if matches!(event, watcher::Event::InitDone)
                    && let Some(listed) = listed.take()
                {
                    let _ = listed.send(());
                }
                let gone = match event {
                    watcher::Event::Delete(d) => Some(d),
                    watcher::Event::Apply(d) if d.metadata.deletion_timestamp.is_some() => Some(d),
                    _ => None,
                };
                if let Some(name) = gone.map(|d| d.name_any())
                    && seen.insert(name.clone())
                {
                    deleted.lock().unwrap().push(name);
                }
            }
        });
        listed_rx.await.expect("the watch lists the desktops");
        task
    };

    // Shrink to 5: the 9 unassigned desktops that are not Ready go first, then 6 of the 8
    // unassigned Ready ones; the assigned stay.
    scale(5).await;
    let left = eventually("5 desktops", LIMIT, || async {
        let names = live().await;
        (names.len() == 5).then_some(names)
    })
    .await;
    for name in assigned {
        assert!(
            left.contains(&name.to_owned()),
            "{name} was removed: {left:?}"
        );
    }
    let order = eventually("15 deletions seen", LIMIT, || async {
        let order = deleted.lock().unwrap().clone();
        (order.len() == 15).then_some(order)
    })
    .await;
    let is_ready = |name: &String| ready.contains(name);
    let not_ready_first = order.iter().take(9).all(|n| !is_ready(n));
    assert!(
        not_ready_first && order.iter().skip(9).all(is_ready),
        "not-Ready unassigned desktops go before Ready ones: {order:?}"
    );
    assert!(order.iter().all(|n| !assigned.contains(&n.as_str())));
    let scaled = env.events_for("office").await;
    assert!(
        scaled
            .iter()
            .any(|e| e.reason.as_deref() == Some("ScaledDown")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Deleted 15 desktops to scale down to 5: "))),
        "{scaled:?}"
    );

    // Capped at one desktop with three users: assigned desktops go too, but never the one
    // whose session is connected.
    env.desktops()
        .patch_status(
            "office-3",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"assignment": {
                "user": "user-0",
                "since": k8s_openapi::jiff::Timestamp::now().to_string(),
                "session": "Connected",
            }}})),
        )
        .await
        .unwrap();
    pools
        .patch(
            "office",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0, "maxReplicas": 1}})),
        )
        .await
        .unwrap();
    let left = eventually("only the connected desktop", LIMIT, || async {
        let names = live().await;
        (names == ["office-3"]).then_some(names)
    })
    .await;
    assert_eq!(left, ["office-3"]);
    watch.abort();

    // Everything left is the pool's own, labelled with the template it was made from.
    for desktop in env
        .desktops()
        .list(&ListParams::default().labels("vdi.verdant.dev/pool=office"))
        .await
        .unwrap()
    {
        assert!(
            desktop
                .labels()
                .contains_key("vdi.verdant.dev/template-hash")
        );
        assert_eq!(desktop.owner_references()[0].name, "office");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_released_floating_desktop_gets_a_fresh_launcher_first_a_dedicated_one_is_kept() {
    use assignment::{AssignError, Assigner, release};
    let mut env = Env::start("team-r").await;
    let http = env.serve_http();
    let _reaper = env.kubelet.reap_in_background();
    let api = env.desktops();
    let assigner = Assigner::new(api.clone());
    // Plays the kubelet: the pod runs, then its display is ready.
    let start = |pod: Pod| {
        let env = &env;
        async move {
            env.kubelet.schedule(&pod.name_any()).await.unwrap();
            env.kubelet.run(&pod.name_any(), true).await.unwrap();
        }
    };
    for (pool, policy) in [("float", "Floating"), ("keep", "Dedicated")] {
        env.create_pool(pool, json!({"replicas": 1, "assignment": policy}))
            .await;
        let name = format!("{pool}-0");
        let first = env.wait_pod(&name, None).await;
        start(first.clone()).await;
        env.wait_phase(&name, DesktopPhase::Ready).await;
        let given = eventually("a desktop for alice", LIMIT, || async {
            assigner.assign(pool, "alice").await.ok()
        })
        .await;
        assert_eq!(given, name);
        release(&api, &name).await.unwrap();

        if policy == "Floating" {
            // Alice's VM goes; until the fresh one is Ready, nobody gets the desktop.
            let fresh = env.wait_pod(&name, Some(&first)).await;
            assert!(matches!(
                assigner.assign(pool, "bob").await,
                Err(AssignError::NoDesktopAvailable { .. })
            ));
            start(fresh.clone()).await;
            let given = eventually("the reset desktop for bob", LIMIT, || async {
                assigner.assign(pool, "bob").await.ok()
            })
            .await;
            assert_eq!(given, name);
            assert_eq!(
                env.live_pods(&name)
                    .await
                    .iter()
                    .map(|p| p.uid())
                    .collect::<Vec<_>>(),
                [fresh.uid()],
                "bob runs on the fresh launcher"
            );
        } else {
            // Dedicated: the same launcher, available again once the operator has seen the
            // release.
            let given = eventually("the kept desktop for bob", LIMIT, || async {
                assigner.assign(pool, "bob").await.ok()
            })
            .await;
            assert_eq!(given, name);
            assert_eq!(
                env.live_pods(&name)
                    .await
                    .iter()
                    .map(|p| p.uid())
                    .collect::<Vec<_>>(),
                [first.uid()],
                "the launcher was kept"
            );
        }
    }
    // Each pool has one desktop, Ready and Bob's, and its metrics say so; a pool of none is
    // there with none.
    env.create_pool("none", json!({"replicas": 0})).await;
    let gauge = |pool: &str, state: &str, n: u32| {
        format!(
            "verdant_operator_pool_desktops{{namespace=\"team-r\",pool=\"{pool}\",state=\"{state}\"}} {n}\n"
        )
    };
    let want: Vec<String> = ["float", "keep"]
        .into_iter()
        .flat_map(|pool| {
            [("all", 1), ("ready", 1), ("available", 0), ("assigned", 1)]
                .map(|(state, n)| gauge(pool, state, n))
        })
        .chain(["all", "ready", "available", "assigned"].map(|state| gauge("none", state, 0)))
        .collect();
    eventually("each pool's desktops in its metrics", LIMIT, || async {
        let text = http_get(http, "/metrics").await?;
        want.iter().all(|line| text.contains(line)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_operator_ten_times_during_a_pool_scale_up_leaves_exactly_the_desktops_asked_for()
 {
    let mut env = Env::start("team-k").await;
    let _reaper = env.kubelet.reap_in_background();
    env.kill_operator();
    let pools: Api<crds::DesktopPool> = Api::namespaced(env.client.clone(), "team-k");
    env.create_pool("big", json!({"replicas": 200})).await;
    for round in 0..10u64 {
        env.start_operator(&format!("operator-round-{round}"));
        // Die somewhere in the middle of the work, at a different point each round.
        tokio::time::sleep(Duration::from_millis(200 + (round * 173) % 600)).await;
        env.kill_operator();
    }
    env.start_operator("operator-final");
    let uid = pools.get("big").await.unwrap().uid();
    eventually(
        "200 desktops, each with one launcher pod, and nothing else",
        Duration::from_secs(120),
        || async {
            let desktops = live(&env.desktops(), "").await?;
            if desktops.len() != 200 {
                return None;
            }
            // Every desktop is the pool's.
            assert!(
                desktops.iter().all(|d| d
                    .owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == uid.as_ref())),
                "a desktop the pool does not own"
            );
            let names: std::collections::BTreeSet<String> =
                desktops.iter().map(|d| d.name_any()).collect();
            let pods = live(&env.pods(), "").await?;
            // No pod without a desktop, and one pod a desktop.
            let owners: Vec<&String> = pods
                .iter()
                .filter_map(|p| p.labels().get("vdi.verdant.dev/desktop"))
                .collect();
            assert!(
                owners.iter().all(|o| names.contains(*o)),
                "a launcher pod without a desktop"
            );
            (owners.len() == 200
                && owners
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len()
                    == 200)
                .then_some(())
        },
    )
    .await;
    // And it stays that way.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        live(&env.desktops(), "").await.expect("desktops").len(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_floating_desktop_disconnected_too_long_is_released_and_reset_with_an_event() {
    use assignment::Assigner;
    let env = Env::start("team-s").await;
    let _reaper = env.kubelet.reap_in_background();
    env.create_pool(
        "kiosk",
        json!({"replicas": 1, "session": {"disconnectTimeout": "5m", "maxDuration": "8h"}}),
    )
    .await;
    let first = env.wait_pod("kiosk-0", None).await;
    env.kubelet.schedule(&first.name_any()).await.unwrap();
    env.kubelet.run(&first.name_any(), true).await.unwrap();
    env.wait_phase("kiosk-0", DesktopPhase::Ready).await;
    let api = env.desktops();
    let assigner = Assigner::new(api.clone());
    eventually("kiosk-0 for alice", LIMIT, || async {
        assigner.assign("kiosk", "alice").await.ok()
    })
    .await;
    // The broker reports alice connected an hour ago, then gone 10 minutes ago.
    let ago = |minutes: i64| {
        (k8s_openapi::jiff::Timestamp::now()
            - k8s_openapi::jiff::SignedDuration::from_mins(minutes))
        .to_string()
    };
    api.patch_status(
        "kiosk-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"assignment": {
            "user": "alice",
            "since": ago(60),
            "session": "Disconnected",
            "lastActivity": ago(10),
        }}})),
    )
    .await
    .unwrap();
    eventually("kiosk-0 released", LIMIT, || async {
        let d = api.get("kiosk-0").await.ok()?;
        d.spec.user.is_none().then_some(())
    })
    .await;
    let events = env.events_for("kiosk-0").await;
    let released = events
        .iter()
        .find(|e| e.reason.as_deref() == Some("DisconnectTimeout"))
        .expect("an event says why");
    assert_eq!(
        released.message.as_deref(),
        Some("alice was disconnected for 5m: released and reset for the next user")
    );
    // And reset: a fresh launcher replaces alice's.
    env.wait_pod("kiosk-0", Some(&first)).await;
}

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
async fn a_pool_whose_desktops_change_all_the_time_still_keeps_its_spare() {
    use assignment::Assigner;
    let env = Env::start("team-h").await;
    let _reaper = env.kubelet.reap_in_background();
    env.create_pool("busy", json!({"replicas": 0, "spare": 1}))
        .await;
    let first = env.wait_pod("busy-0", None).await;
    env.kubelet.schedule(&first.name_any()).await.unwrap();
    env.kubelet.run(&first.name_any(), true).await.unwrap();
    env.wait_phase("busy-0", DesktopPhase::Ready).await;
    let api = env.desktops();
    let assigner = Assigner::new(api.clone());
    let given = eventually("a desktop for alice", LIMIT, || async {
        assigner.assign("busy", "alice").await.ok()
    })
    .await;
    assert_eq!(given, "busy-0");

    // The broker reports alice's activity ten times a second: the pool's desktops change
    // more often than any debounce would wait for.
    let heartbeat = {
        let api = api.clone();
        tokio::spawn(async move {
            loop {
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let _ = api
                    .patch_status(
                        "busy-0",
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"assignment": {
                            "user": "alice", "since": now, "session": "Connected", "lastActivity": now,
                        }}})),
                    )
                    .await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // Alice took the spare: the pool makes another, and counts her, while she is busy.
    let pools: Api<crds::DesktopPool> = Api::namespaced(env.client.clone(), "team-h");
    let status = eventually("a new spare, counted", LIMIT, || async {
        env.desktops().get_opt("busy-1").await.ok()??;
        let status = pools.get("busy").await.ok()?.status?;
        (status.assigned == 1 && status.replicas == 2).then_some(status)
    })
    .await;
    heartbeat.abort();
    assert_eq!(status.desired_replicas, 2);
}
