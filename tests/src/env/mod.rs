//! The one test environment: a real control plane with Verdant's CRDs, a namespace, the
//! operator, a node for the launcher pods and, for the portal's tests, the OpenID provider and
//! brokers. [`Env::builder`] says which parts run; every test, benchmark and `verdant-dev up`
//! starts its environment through it.
//!
//! | builder call | runs |
//! |---|---|
//! | `Env::builder(ns)` | etcd, kube-apiserver, kube-controller-manager, the CRDs, namespace `ns`, the operator in this process as its own user with the chart's RBAC rules, and the stand-in node `node-1` that the test drives ([`Kubelet`]) |
//! | `.node(NodeKind::None)` | no node: pods stay Pending (tests of the API alone) |
//! | `.node(NodeKind::StandInReady)` | a stand-in node that reports every pod Ready at once (tests of assignment, not of desktops) |
//! | `.node(NodeKind::Launchers)` | launcher processes running the demo guest ([`crate::localnode`]; needs `/dev/kvm`) |
//! | `.node(NodeKind::Real)` | a real node: containerd, runc, CNI, kubelet ([`crate::node`]; needs root) |
//! | `.operator(Operator::None)` / `.operator(Operator::Chart)` | no operator / the chart by `helm install` (the operator in a pod; with a real node) |
//! | `.api_only()` | the API alone: no node, no operator, no kube-controller-manager (add it with `.controller_manager()`) |
//! | `.crds(false)` | no CRDs installed beforehand (a test that installs the chart itself) |
//! | `.audit()` | the apiserver's audit log of every write ([`Env::operator_requests`]) |
//! | `.oidc(users)` | the tests' OpenID provider, trusted by the apiserver |
//! | `.eng_pool(replicas, assignment)` | the portal's fixture ([`broker`]): pool `eng` for group `engineering`, pool `secret` for nobody, `shadow` for group `helpdesk` |
//! | `.broker()` | a `verdant-broker` process with the chart's RBAC rules ([`Env::broker`]) |
//! | `.dir(path)` | the control plane's files in `path` (for `verdant-dev up`) |
//! | `Env::start(ns)` | `Env::builder(ns).start()`, which cannot skip |
//! | `Env::bare(ns)` | the control plane of `.api_only().crds(false)`, for tests that install Verdant themselves |
//!
//! [`Env::builder`]'s `start` returns `None`, after a loud skip ([`testkit::skip`]), only where a
//! part the environment needs is missing here: `/dev/kvm` for the demo guest, root for a real
//! node.

mod api;
mod broker;
mod node;
mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;

pub use node::{Node, NodeKind, stand_in_ready};
pub use watch::{changes_within, condition, http_get, live, probe_path, wait_ready_desktops};

use crate::controlplane::{ControlPlane, OidcUser, Options as CpOptions, install_crds};
use crate::kubelet::{Kubelet, Reaper};

/// How long a test waits for the operator to react, at most.
pub const LIMIT: Duration = Duration::from_secs(30);

/// The operator's own user, for telling its writes apart in the audit log.
pub const OPERATOR_USER: &str = "verdant-operator";

/// How the operator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// Not at all: the test plays it, or needs only the API.
    None,
    /// In this process, as its own user with the chart's RBAC rules ([`Env::start_operator`]).
    InProcess,
    /// In a pod, from `helm install` of `charts/verdant` (needs [`NodeKind::Real`]).
    Chart,
}

/// What [`Env::builder`] starts; see the table in the module's docs.
#[derive(Debug, Clone)]
pub struct Builder {
    ns: String,
    control_plane: CpOptions,
    node: NodeKind,
    operator: Operator,
    crds: bool,
    eng_pool: Option<(u32, &'static str)>,
    broker: Option<broker::Placement>,
}

impl Builder {
    /// The apiserver's audit log of every write.
    pub fn audit(mut self) -> Self {
        self.control_plane.audit = true;
        self
    }

    /// The tests' OpenID provider with `users`, trusted by the apiserver.
    pub fn oidc(mut self, users: Vec<OidcUser>) -> Self {
        self.control_plane.oidc = Some(users);
        self
    }

    /// The control plane's files in `dir` instead of a new temporary folder.
    pub fn dir(mut self, dir: &Path) -> Self {
        self.control_plane.dir = Some(dir.to_owned());
        self
    }

    /// What runs the launcher pods.
    pub fn node(mut self, node: NodeKind) -> Self {
        self.node = node;
        self
    }

    /// How the operator runs.
    pub fn operator(mut self, operator: Operator) -> Self {
        self.operator = operator;
        self
    }

    /// The API alone: no node and no operator (nor kube-controller-manager, unless asked for),
    /// for tests of the CRDs, the chart and assignment, which play the rest themselves.
    pub fn api_only(self) -> Self {
        self.node(NodeKind::None).operator(Operator::None)
    }

    /// kube-controller-manager also where neither a node nor the operator runs (garbage
    /// collection, ReplicaSets, service accounts).
    pub fn controller_manager(mut self) -> Self {
        self.control_plane.controller_manager = true;
        self
    }

    /// Whether Verdant's CRDs are installed before the test begins (by default, yes).
    pub fn crds(mut self, crds: bool) -> Self {
        self.crds = crds;
        self
    }

    /// The portal's fixture: pool `eng` of `replicas` demo desktops with `assignment`, granted
    /// to group `engineering`; pool `secret`, granted to nobody; `shadow` on desktops for group
    /// `helpdesk`. `start` waits until the pool's desktops are Ready.
    pub fn eng_pool(mut self, replicas: u32, assignment: &'static str) -> Self {
        self.eng_pool = Some((replicas, assignment));
        self
    }

    /// A broker process (`broker-1` on a free port) for the test's namespace.
    pub fn broker(mut self) -> Self {
        self.broker = Some(broker::Placement::default());
        self
    }

    /// A broker process named `name` with its sessions in `namespace`, serving the desktops
    /// of the test's namespace, on `port`.
    pub fn broker_at(mut self, namespace: &str, name: &str, port: u16) -> Self {
        self.broker = Some(broker::Placement {
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
            port: Some(port),
        });
        self
    }

    /// Starts it; `None` after a loud skip where a part it needs is missing here. Panics with
    /// the reason when it cannot start otherwise, as a test's setup does.
    pub async fn start(self) -> Option<Env> {
        match self.try_start().await {
            Ok(env) => Some(env),
            Err(Failure::Missing(kind, why)) => {
                testkit::skip(kind, why);
                None
            }
            Err(Failure::Failed(why)) => panic!("the test environment: {why}"),
        }
    }

    /// Starts it, or says why not: a part missing here, or a failure (for `verdant-dev up`,
    /// which reports it).
    pub async fn try_start(self) -> Result<Env, Failure> {
        if let Some((kind, why)) = self.node.missing() {
            return Err(Failure::Missing(kind, why));
        }
        if self.operator == Operator::Chart && self.node != NodeKind::Real {
            return Err(Failure::Failed(
                "Operator::Chart runs the operator in a pod: it needs .node(NodeKind::Real)".into(),
            ));
        }
        if self.broker.is_some() && self.control_plane.oidc.is_none() {
            return Err(Failure::Failed(
                "a broker logs users in through the OpenID provider: add .oidc(users)".into(),
            ));
        }
        let failed =
            |what: &str, e: &dyn std::fmt::Display| Failure::Failed(format!("{what}: {e}"));
        let real = self.node == NodeKind::Real;
        let mut cp = ControlPlane::start_with(CpOptions {
            controller_manager: self.control_plane.controller_manager
                || self.node != NodeKind::None
                || self.operator != Operator::None,
            node: real,
            ..self.control_plane
        })
        .await
        .map_err(|e| failed("the control plane", &e))?;
        // The operator runs with exactly the RBAC rules it documents, not as an admin.
        let (operator_client, _) = cp
            .client_for(OPERATOR_USER, None)
            .await
            .map_err(|e| failed("the operator's credentials", &e))?;
        let client = cp.client();
        if self.crds && self.operator != Operator::Chart {
            install_crds(&client)
                .await
                .map_err(|e| failed("the CRDs", &e))?;
        }
        if self.ns != "default" {
            cp.create_namespace(&self.ns)
                .await
                .map_err(|e| failed(&format!("namespace {}", self.ns), &e))?;
        }
        let kernel = boot_dir(&cp).join("demo.elf");
        if matches!(self.node, NodeKind::Launchers | NodeKind::Real) {
            std::fs::write(&kernel, launcher::demo::DEMO_GUEST)
                .map_err(|e| failed(&kernel.display().to_string(), &e))?;
        }
        let kubelet = Kubelet::new(client.clone(), &self.ns, "node-1");
        let node = node::start(self.node, &cp, &kubelet, &self.ns).await;
        let mut env = Env {
            brokers: None,
            operator: None,
            node,
            kubelet,
            kernel,
            ns: self.ns,
            operator_client,
            client,
            cp,
        };
        match self.operator {
            Operator::None => {}
            Operator::InProcess => {
                grant(&env.client, OPERATOR_USER, &env.ns).await;
                env.start_operator("operator-1");
            }
            Operator::Chart => crate::product::install_chart(&env.cp, &boot_dir(&env.cp))
                .map_err(Failure::Failed)?,
        }
        if let Some((replicas, assignment)) = self.eng_pool {
            env.make_eng_pool(replicas, assignment).await;
        }
        if let Some(placement) = self.broker {
            env.start_first_broker(placement).await;
        }
        if let Some((replicas, _)) = self.eng_pool {
            wait_ready_desktops(
                &env.desktops(),
                "vdi.verdant.dev/pool=eng",
                replicas as usize,
                "the pool's desktops",
                crate::brokerenv::LIMIT,
            )
            .await;
        }
        Ok(env)
    }
}

/// Why [`Builder::try_start`] could not start the environment.
#[derive(Debug)]
pub enum Failure {
    /// A part it needs is missing here: its kind ([`testkit::skip`]) and why.
    Missing(&'static str, String),
    /// Something failed to start.
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(_, why) | Self::Failed(why) => f.write_str(why),
        }
    }
}

/// The running environment, as [`Env::builder`] made it. Dropping it stops the brokers, the
/// operator, the node and the control plane, in that order.
pub struct Env {
    /// The first broker, with [`Builder::broker`] (see [`Env::broker`]), and what more
    /// brokers share with it.
    brokers: Option<broker::Brokers>,
    /// The operator running in this process, if any (stops on drop).
    pub operator: Option<Reaper>,
    /// What runs the launcher pods.
    pub node: Node,
    /// The stand-in kubelet of node `node-1` (registered only with [`NodeKind::StandIn`] and
    /// [`NodeKind::StandInReady`]).
    pub kubelet: Kubelet,
    /// The demo guest on the host, for a Desktop's hostPath kernel (written with
    /// [`NodeKind::Launchers`] and [`NodeKind::Real`]).
    pub kernel: PathBuf,
    /// The test's namespace.
    pub ns: String,
    /// The operator's client: its own user, with the documented RBAC rules.
    pub operator_client: Client,
    /// An admin client.
    pub client: Client,
    /// The control plane.
    pub cp: ControlPlane,
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
    /// What the operator's tests need, in namespace `ns`; the builder's calls change it.
    pub fn builder(ns: &str) -> Builder {
        Builder {
            ns: ns.to_owned(),
            control_plane: CpOptions::default(),
            node: NodeKind::StandIn,
            operator: Operator::InProcess,
            crds: true,
            eng_pool: None,
            broker: None,
        }
    }

    /// The control plane of `Env::builder(ns).api_only().crds(false)`: the API alone, with
    /// namespace `ns` (`default`: none made), for tests that install Verdant themselves (the
    /// chart, the CRDs).
    pub async fn bare(ns: &str) -> ControlPlane {
        Self::builder(ns)
            .api_only()
            .crds(false)
            .start()
            .await
            .expect("the API alone needs no part of the machine")
            .cp
    }

    /// `Env::builder(ns).start()`, which never skips: its stand-in node needs nothing of the
    /// machine.
    pub async fn start(ns: &str) -> Self {
        Self::builder(ns)
            .start()
            .await
            .expect("a stand-in node needs no part of the machine")
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
            recheck_refused: operator::RECHECK_REFUSED,
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
        self.operator = Some(Reaper::spawn(async move {
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
        self.operator = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason `builder` is refused, which must come before anything starts.
    async fn refusal(builder: Builder) -> String {
        match builder.try_start().await {
            Err(Failure::Failed(why)) => why,
            Err(Failure::Missing(_, why)) => panic!("refused for a missing part: {why}"),
            Ok(_) => panic!("started"),
        }
    }

    #[tokio::test]
    async fn a_builder_that_cannot_work_is_refused_naming_the_fix() {
        let chart = Env::builder("x").operator(Operator::Chart);
        assert!(refusal(chart).await.contains(".node(NodeKind::Real)"));
        let broker = Env::builder("x").broker();
        assert!(refusal(broker).await.contains(".oidc(users)"));
    }
}
