//! The operator's test environment: a real control plane (kube-controller-manager included, for
//! garbage collection) with Verdant's CRDs, a namespace, the operator running in this process
//! as its own user with exactly the RBAC rules it documents, and the stand-in [`Kubelet`].
//! Shared by the controller tests in `tests/tests/`.

use std::collections::BTreeMap;
use std::time::Duration;

use crds::{Condition, Desktop, DesktopPhase, DesktopPool};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::controlplane::{ControlPlane, Options as CpOptions, install_crds};
use crate::kubelet::Kubelet;
use testkit::eventually;

/// How long a test waits for the operator to react, at most.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The operator's own user, for telling its writes apart in the audit log.
pub const OPERATOR_USER: &str = "verdant-operator";

/// A control plane with CRDs, a namespace, and an operator running in this process.
pub struct Env {
    /// The control plane.
    pub cp: ControlPlane,
    /// An admin client.
    pub client: Client,
    /// The operator's client: its own user, with the documented RBAC rules.
    pub operator_client: Client,
    /// The test's namespace.
    pub ns: String,
    /// The stand-in kubelet of node `node-1` (registered only where no real node runs).
    pub kubelet: Kubelet,
    /// The running operator, if any.
    pub operator: Option<tokio::task::JoinHandle<()>>,
}

/// The control plane's folder for boot files (made on first use): the host directory, besides
/// `/var/lib/verdant`, that the tests' operator allows desktops to boot from.
pub fn boot_dir(cp: &ControlPlane) -> std::path::PathBuf {
    let dir = cp.dir().join("boot");
    std::fs::create_dir_all(&dir).expect("the control plane's boot folder");
    dir
}

/// Binds the operator's ClusterRole (cluster-wide) and leader-election Role (in `lease_ns`),
/// with the chart's rules (`charts/verdant/rbac/`), to `user`.
pub async fn grant(client: &Client, user: &str, lease_ns: &str) {
    use crate::chart::grant;
    grant(client, user, "verdant-operator", "operator", None).await;
    let (lease, file) = (
        "verdant-operator-leader-election",
        "operator-leader-election",
    );
    grant(client, user, lease, file, Some(lease_ns)).await;
}

impl Env {
    /// An environment in namespace `ns`, its operator running.
    pub async fn start(ns: &str) -> Self {
        Self::start_with(ns, false).await
    }

    /// An environment in namespace `ns`, with the apiserver's audit log when `audit`.
    pub async fn start_with(ns: &str, audit: bool) -> Self {
        Self::start_with_options(
            ns,
            CpOptions {
                audit,
                ..CpOptions::default()
            },
        )
        .await
    }

    /// An environment in namespace `ns` on a control plane started with `options` (always
    /// with kube-controller-manager).
    pub async fn start_with_options(ns: &str, options: CpOptions) -> Self {
        let mut cp = ControlPlane::start_with(CpOptions {
            controller_manager: true,
            ..options
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
        // With a real node, its kubelet runs the pods; a stand-in Node would attract them.
        if cp.node().is_none() {
            kubelet.register().await.expect("node");
        }
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

    /// The operator's options as this environment runs it, as replica `identity`.
    pub fn options(&self, identity: &str) -> operator::Options {
        // A real node runs the launcher image it was loaded with.
        let launcher_image = self
            .cp
            .node()
            .and_then(|node| node.images().reference("launcher").ok())
            .unwrap_or("registry.example/verdant/launcher:test");
        operator::Options {
            launcher_image: launcher_image.into(),
            launcher_pod: operator::LauncherPod {
                // Ten vCPUs per core, KubeVirt's default: a pool of demo desktops (which idle)
                // fits on a real node of two cores, as an administrator overcommitting a VDI
                // host would set it.
                cpu_allocation_ratio: self.cp.node().map(|_| 10),
                // Where the tests keep boot files: the conventional directory, and the control
                // plane's folder for them (not the rest of it: the node's keys are there).
                host_paths: vec!["/var/lib/verdant".into(), boot_dir(&self.cp)],
                ..operator::LauncherPod::default()
            },
            namespaces: vec![self.ns.clone()],
            http: None,
            leader_election: None,
            identity: identity.into(),
        }
    }

    /// Starts the operator as replica `identity`.
    pub fn start_operator(&mut self, identity: &str) {
        let options = self.options(identity);
        self.spawn_operator(options);
    }

    /// Starts the operator with `options`.
    pub fn spawn_operator(&mut self, options: operator::Options) {
        let client = self.operator_client.clone();
        self.operator = Some(tokio::spawn(async move {
            if let Err(e) = operator::run(client, options, std::future::pending()).await {
                panic!("operator failed: {e}");
            }
        }));
    }

    /// Restarts the operator so that it also serves its endpoints (metrics, health) on a free
    /// local port, which it returns.
    pub fn serve_http(&mut self) -> std::net::SocketAddr {
        self.kill_operator();
        let http = std::net::SocketAddr::from(([127, 0, 0, 1], testkit::net::free_port()));
        self.spawn_operator(operator::Options {
            http: Some(http),
            ..self.options("operator-http")
        });
        http
    }

    /// Stops the operator at once, as a crash would.
    pub fn kill_operator(&mut self) {
        if let Some(task) = self.operator.take() {
            task.abort();
        }
    }

    /// Desktops of the test's namespace.
    pub fn desktops(&self) -> Api<Desktop> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Pools of the test's namespace.
    pub fn pools(&self) -> Api<DesktopPool> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Pods of the test's namespace.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates Desktop `name` (2 vCPUs, 1Gi, a hostPath kernel, 1280x800), for `user`.
    pub async fn create_desktop(&self, name: &str, user: Option<&str>) -> Desktop {
        let mut spec = json!({
            "resources": {"cpus": 2, "memory": "1Gi"},
            "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}, "cmdline": "console=ttyS0"},
            "display": {"width": 1280, "height": 800},
        });
        if let Some(user) = user {
            spec["user"] = json!(user);
        }
        self.create_desktop_with(name, spec).await
    }

    /// Creates Desktop `name` with `spec`.
    pub async fn create_desktop_with(&self, name: &str, spec: serde_json::Value) -> Desktop {
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
    /// template, unless `spec` brings its own.
    pub async fn create_pool(&self, name: &str, mut spec: serde_json::Value) {
        if spec.get("template").is_none() {
            spec["template"] = json!({"spec": {
                "resources": {"cpus": 1, "memory": "1Gi"},
                "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}},
            }});
        }
        let pool: DesktopPool = serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "DesktopPool",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        self.pools()
            .create(&PostParams::default(), &pool)
            .await
            .expect("pool");
    }

    /// Merges `spec` into Desktop `name`'s spec.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
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
    pub async fn live_pods(&self, desktop: &str) -> Vec<Pod> {
        live(&self.pods(), &format!("vdi.verdant.dev/desktop={desktop}"))
            .await
            .expect("pods")
    }

    /// Waits for a live launcher pod of `desktop` other than the pod `not` (by uid).
    pub async fn wait_pod(&self, desktop: &str, not: Option<&Pod>) -> Pod {
        let not_uid = not.and_then(ResourceExt::uid);
        eventually(&format!("a launcher pod for {desktop}"), LIMIT, || async {
            let pods = self.live_pods(desktop).await;
            pods.into_iter()
                .find(|p| not_uid.is_none() || p.uid() != not_uid)
        })
        .await
    }

    /// Waits until Desktop `desktop` is in `phase`; returns it.
    pub async fn wait_phase(&self, desktop: &str, phase: DesktopPhase) -> Desktop {
        eventually(&format!("{desktop} in phase {phase:?}"), LIMIT, || async {
            let d = self.desktops().get(desktop).await.ok()?;
            (d.status.as_ref()?.phase == Some(phase)).then_some(d)
        })
        .await
    }

    /// The requests the operator's user made in the test's namespace, from the audit log (the
    /// environment must have been started with it).
    pub fn operator_requests(&self) -> Vec<crate::audit::Request> {
        crate::audit::requests(&self.cp.audit_log())
            .into_iter()
            .filter(|r| r.user == OPERATOR_USER && r.namespace == self.ns)
            .collect()
    }

    /// The events about `object` (a Desktop or a pool) in the test's namespace.
    pub async fn events_for(&self, object: &str) -> Vec<Event> {
        Api::<Event>::namespaced(self.client.clone(), &self.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(object))
            .collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_operator();
    }
}

/// Waits, up to `limit`, until `count` Desktops of `api` matching `labels` (`""`: all) are
/// Ready; `what` names them in the failure.
pub async fn wait_ready_desktops(
    api: &Api<Desktop>,
    labels: &str,
    count: usize,
    what: &str,
    limit: Duration,
) {
    eventually(&format!("{what} to be Ready"), limit, || async {
        let list = api.list(&ListParams::default().labels(labels)).await.ok()?;
        let ready = list
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(DesktopPhase::Ready))
            .count();
        (ready == count).then_some(())
    })
    .await;
}

/// The objects of `api` matching `labels` (`""`: all) that are not being deleted; `None` when
/// the list fails.
pub async fn live<K>(api: &Api<K>, labels: &str) -> Option<Vec<K>>
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

/// Watches the objects of `api` matching `labels` for `window` and returns what changed
/// (`added NAME`, `modified NAME`, `deleted NAME`), after the initial list. A watch sees every
/// change, also one undone within the window, which looking twice would miss.
pub async fn changes_within<K>(api: &Api<K>, labels: &str, window: Duration) -> Vec<String>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let config = watcher::Config::default().labels(labels);
    let mut initial: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut listed = false;
    let mut changes = Vec::new();
    let mut events = std::pin::pin!(watcher(api.clone(), config).default_backoff());
    let deadline = tokio::time::Instant::now() + window;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = tokio::time::sleep_until(deadline), if listed => break,
        };
        let Some(Ok(event)) = event else { continue };
        match event {
            watcher::Event::InitApply(o) => {
                initial.insert(o.name_any(), o.resource_version());
            }
            watcher::Event::InitDone => listed = true,
            watcher::Event::Apply(o)
                if initial.get(&o.name_any()) == Some(&o.resource_version()) => {}
            watcher::Event::Apply(o) if initial.contains_key(&o.name_any()) => {
                changes.push(format!("modified {}", o.name_any()));
            }
            watcher::Event::Apply(o) => changes.push(format!("added {}", o.name_any())),
            watcher::Event::Delete(o) => changes.push(format!("deleted {}", o.name_any())),
            watcher::Event::Init => {}
        }
    }
    changes
}

/// GETs `path` from `addr`; the body, if the answer is 200.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
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
pub fn probe_path(probe: &Option<k8s_openapi::api::core::v1::Probe>) -> Option<&str> {
    probe.as_ref()?.http_get.as_ref()?.path.as_deref()
}

/// The condition `type_` of `desktop`'s status.
pub fn condition(desktop: &Desktop, type_: &str) -> Option<Condition> {
    desktop
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}
