//! A whole Verdant for broker tests: a control plane whose apiserver trusts the OpenID
//! provider, the operator, a node of launcher processes running the demo guest
//! ([`crate::localnode`]), RBAC grants as an administrator would write them, and brokers as
//! processes with their own RBAC rules.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;

use crate::broker::{BROKER_USER, BrokerProcess, Session, grant, location};
use crate::controlplane::{OidcUser, Options as CpOptions};
use crate::env::Env;
use crate::localnode::LocalNode;
use crate::wsrfb::{Closed, RfbClient, websocket_closing};
use testkit::net::free_port;

/// How long a broker test waits for the system to react.
pub const LIMIT: Duration = Duration::from_secs(90);

/// What runs the launcher pods.
pub enum Node {
    /// Launcher processes with the demo guest.
    Launchers(LocalNode),
    /// The control plane's real node ([`crate::node`]): the kubelet runs the pods.
    Real {
        /// `kubectl` against the control plane, for the launchers' logs.
        kubectl: PathBuf,
        /// Its kubeconfig.
        kubeconfig: PathBuf,
        /// The pods' namespace.
        namespace: String,
    },
    /// A stand-in kubelet that reports every pod Ready (stops on drop).
    StandIn(crate::kubelet::Reaper),
}

impl Node {
    /// The launcher log of `pod` (empty for the stand-in).
    pub fn log(&self, pod: &str) -> String {
        match self {
            Self::Launchers(node) => node.log(pod),
            Self::Real {
                kubectl,
                kubeconfig,
                namespace,
            } => std::process::Command::new(kubectl)
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .args(["--namespace", namespace, "logs", pod])
                .output()
                .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
                .unwrap_or_default(),
            Self::StandIn(_) => String::new(),
        }
    }

    /// The loopback address `pod`'s launcher listens on (none for the stand-in).
    pub fn pod_ip(&self, pod: &str) -> Option<std::net::Ipv4Addr> {
        match self {
            Self::Launchers(node) => node.pod_ip(pod),
            Self::Real { .. } | Self::StandIn(_) => None,
        }
    }

    /// The process id of `pod`'s launcher (none for the stand-in).
    pub fn pid(&self, pod: &str) -> Option<u32> {
        match self {
            Self::Launchers(node) => node.pid(pod),
            Self::Real { .. } | Self::StandIn(_) => None,
        }
    }
}

/// Starts, as Ready, every pod of `pods` not bound yet, and reaps deleted ones, until dropped.
fn stand_in(
    kubelet: crate::kubelet::Kubelet,
    pods: Api<k8s_openapi::api::core::v1::Pod>,
) -> crate::kubelet::Reaper {
    crate::kubelet::Reaper::spawn(async move {
        let _heartbeat = kubelet.heartbeat_in_background();
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                // Many at once, as a node full of kubelets would (a pool's resets come in
                // bursts).
                let unbound = list.into_iter().filter(|pod| {
                    let bound = pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_ref())
                        .is_some();
                    pod.metadata.deletion_timestamp.is_none() && !bound
                });
                let names = futures::stream::iter(unbound.map(|p| kube::ResourceExt::name_any(&p)));
                let _ = kubelet.start_all(names, 16).await;
            }
            let _ = kubelet.reap().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Everything a broker test runs.
pub struct BrokerEnv {
    /// The control plane, operator and test namespace.
    pub env: Env,
    /// The node running launcher pods.
    pub node: Node,
    /// The first broker.
    pub broker: BrokerProcess,
    /// The broker user's kubeconfig, for more brokers.
    pub broker_kubeconfig: std::path::PathBuf,
}

/// The test users: alice and bob (engineering), carol (helpdesk), eve (no group); the
/// password of each is `<name>-pw`.
pub fn users() -> Vec<OidcUser> {
    vec![
        OidcUser::new("alice", "alice-pw", &["engineering"]),
        OidcUser::new("bob", "bob-pw", &["engineering"]),
        OidcUser::new("carol", "carol-pw", &["helpdesk"]),
        OidcUser::new("eve", "eve-pw", &[]),
    ]
}

/// `n` users `user-00`, `user-01`, ... (password `<name>-pw`), all in group `engineering`.
pub fn numbered_users(n: usize) -> Vec<OidcUser> {
    (0..n)
        .map(|i| {
            let name = format!("user-{i:02}");
            OidcUser::new(&name, &format!("{name}-pw"), &["engineering"])
        })
        .collect()
}

/// The pool template's spec: the demo guest from a hostPath.
pub fn demo_spec(kernel: &std::path::Path) -> serde_json::Value {
    json!({
        "resources": {"cpus": 1, "memory": "128Mi"},
        "boot": {"kernel": {"hostPath": kernel}},
        "display": {"width": 1280, "height": 800},
    })
}

/// What [`setup_with`] makes.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// Desktops in pool `eng`.
    pub replicas: u32,
    /// The provider's users.
    pub users: Vec<OidcUser>,
    /// Run the launcher pods as real launcher processes with the demo guest; else a stand-in
    /// kubelet reports them Ready at once (for tests of assignment, not of desktops).
    pub launchers: bool,
    /// Pool `eng`'s assignment policy.
    pub assignment: &'static str,
    /// Run the launcher pods on a real node ([`crate::node`]) instead of as local processes
    /// (with `launchers`).
    pub real_node: bool,
    /// Have the apiserver write an audit log of every write (TokenReviews and
    /// SubjectAccessReviews among them).
    pub audit: bool,
}

/// A control plane with the provider, the operator, a node of launcher processes, pool `eng`
/// (Floating, `replicas` desktops) granted to group `engineering`, `shadow` on desktops for
/// group `helpdesk`, pool `secret` granted to nobody, and a broker.
pub async fn setup(ns: &str, replicas: u32) -> Option<BrokerEnv> {
    setup_with(
        ns,
        SetupOptions {
            replicas,
            users: users(),
            launchers: true,
            assignment: "Floating",
            real_node: false,
            audit: false,
        },
    )
    .await
}

/// [`setup`], as `options` say.
pub async fn setup_with(ns: &str, options: SetupOptions) -> Option<BrokerEnv> {
    let SetupOptions {
        replicas,
        users,
        launchers,
        assignment,
        real_node,
        audit,
    } = options;
    if launchers && !crate::e2e::demo_guest_runs() {
        return None;
    }
    if real_node && let Some(why) = crate::node::missing() {
        testkit::skip(testkit::NODE, why);
        return None;
    }
    let env = Env::start_with_options(
        ns,
        CpOptions {
            oidc: Some(users),
            node: real_node,
            audit,
            ..CpOptions::default()
        },
    )
    .await;
    // In the host directory the operator allows desktops to boot from.
    let kernel = crate::env::boot_dir(&env.cp).join("demo.elf");
    if launchers {
        std::fs::write(&kernel, launcher::demo::DEMO_GUEST).unwrap();
    }
    let node = if real_node {
        Node::Real {
            kubectl: env.cp.binaries().kubectl.clone(),
            kubeconfig: env.cp.kubeconfig().to_owned(),
            namespace: ns.to_owned(),
        }
    } else if launchers {
        Node::Launchers(
            LocalNode::start(env.client.clone(), ns, "node-1")
                .await
                .expect("local node"),
        )
    } else {
        Node::StandIn(stand_in(env.kubelet.clone(), env.pods()))
    };
    env.create_pool(
        "eng",
        json!({"replicas": replicas, "assignment": assignment, "session": {"disconnectTimeout": "5m"}, "template": {"spec": demo_spec(&kernel)}}),
    )
    .await;
    env.create_pool(
        "secret",
        json!({"replicas": 0, "template": {"spec": demo_spec(&kernel)}}),
    )
    .await;
    let role = |name: &str, rules: serde_json::Value| -> Role {
        serde_json::from_value(json!({"metadata": {"name": name}, "rules": rules})).unwrap()
    };
    let binding = |name: &str, group: &str| -> RoleBinding {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "roleRef": {"kind": "Role", "name": name, "apiGroup": "rbac.authorization.k8s.io"},
            "subjects": [{"kind": "Group", "name": group, "apiGroup": "rbac.authorization.k8s.io"}],
        }))
        .unwrap()
    };
    let roles: Api<Role> = Api::namespaced(env.client.clone(), ns);
    let bindings: Api<RoleBinding> = Api::namespaced(env.client.clone(), ns);
    let pp = PostParams::default();
    roles
        .create(&pp, &role("use-eng", json!([{"apiGroups": ["vdi.verdant.dev"], "resources": ["desktoppools"], "resourceNames": ["eng"], "verbs": ["use"]}])))
        .await
        .unwrap();
    bindings
        .create(&pp, &binding("use-eng", "engineering"))
        .await
        .unwrap();
    roles
        .create(&pp, &role("shadow-desktops", json!([{"apiGroups": ["vdi.verdant.dev"], "resources": ["desktops"], "verbs": ["shadow"]}])))
        .await
        .unwrap();
    bindings
        .create(&pp, &binding("shadow-desktops", "helpdesk"))
        .await
        .unwrap();
    let (_, kubeconfig) = env.cp.client_for(BROKER_USER, None).await.unwrap();
    grant(&env.client, BROKER_USER, ns, &[ns]).await;
    let broker =
        BrokerProcess::start(&env.cp, &kubeconfig, ns, &[ns], free_port(), "broker-1").await;
    crate::env::wait_ready_desktops(
        &env.desktops(),
        "vdi.verdant.dev/pool=eng",
        replicas as usize,
        "the pool's desktops",
        LIMIT,
    )
    .await;
    Some(BrokerEnv {
        env,
        node,
        broker,
        broker_kubeconfig: kubeconfig,
    })
}

impl BrokerEnv {
    /// Another broker process on `port` (e.g. the first one's, after it died), sharing the
    /// first one's session key.
    pub async fn start_broker_on(&self, port: u16, name: &str) -> BrokerProcess {
        BrokerProcess::start(
            &self.env.cp,
            &self.broker_kubeconfig,
            &self.env.ns,
            &[&self.env.ns],
            port,
            name,
        )
        .await
    }

    /// Another broker process sharing the first one's session key, with `extra` arguments.
    pub async fn start_broker_with(&self, name: &str, extra: &[&str]) -> BrokerProcess {
        BrokerProcess::start_with(
            &self.env.cp,
            &self.broker_kubeconfig,
            &self.env.ns,
            &[&self.env.ns],
            free_port(),
            name,
            extra,
        )
        .await
    }

    /// Another broker process sharing the first one's session key.
    pub async fn start_broker(&self, name: &str) -> BrokerProcess {
        self.start_broker_with(name, &[]).await
    }

    /// Logs `user` in at the first broker (password `<user>-pw`).
    pub async fn login(&self, user: &str) -> Session {
        let session = self.broker.session();
        self.broker
            .login(&self.env.cp, &session, user, &format!("{user}-pw"))
            .await
            .unwrap_or_else(|e| panic!("login of {user}: {e}"));
        session
    }

    /// The text of page `path` at the first broker, as `session` sees it.
    pub async fn page(&self, session: &Session, path: &str) -> String {
        let response = session.http.get(self.broker.at(path)).send().await;
        response
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The first broker's origin.
    pub fn origin(&self) -> String {
        self.broker.url.origin().ascii_serialization()
    }

    /// Connect to pool `pool` from the portal's form; the desktop's name.
    pub async fn connect(&self, session: &Session, pool: &str) -> String {
        let csrf = self.broker.csrf(session).await.unwrap();
        let response = session
            .http
            .post(
                self.broker
                    .at(&format!("/pools/{}/{pool}/connect", self.env.ns)),
            )
            .header("origin", self.origin())
            .form(&[("csrf", csrf)])
            .send()
            .await
            .unwrap();
        let to =
            location(&response).unwrap_or_else(|| panic!("Connect answered {}", response.status()));
        let prefix = format!("/desktops/{}/", self.env.ns);
        to.path()
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("Connect sent the browser to {to}"))
            .to_owned()
    }

    /// A connect token's WebSocket path for `desktop`.
    pub async fn token(&self, session: &Session, desktop: &str) -> reqwest::Response {
        let csrf = self.broker.csrf(session).await.unwrap();
        session
            .http
            .post(
                self.broker
                    .at(&format!("/api/desktops/{}/{desktop}/token", self.env.ns)),
            )
            .header("origin", self.origin())
            .header("x-csrf-token", csrf)
            .send()
            .await
            .unwrap()
    }

    /// An RFB client on `desktop` through the first broker's WebSocket.
    pub async fn viewer(
        &self,
        session: &Session,
        desktop: &str,
    ) -> RfbClient<tokio::io::DuplexStream> {
        self.viewer_closing(session, desktop).await.0
    }

    /// [`Self::viewer`], and how the broker closes its WebSocket, once it does.
    pub async fn viewer_closing(
        &self,
        session: &Session,
        desktop: &str,
    ) -> (
        RfbClient<tokio::io::DuplexStream>,
        tokio::sync::oneshot::Receiver<Closed>,
    ) {
        let grant: serde_json::Value = self.token(session, desktop).await.json().await.unwrap();
        let path = grant["path"].as_str().expect("a path in the grant");
        let mut url = self.broker.at(path);
        url.set_scheme("wss").unwrap();
        let cookie = session.cookie(&self.broker.url);
        let (stream, closed) = websocket_closing(
            &url,
            &self.broker.ca,
            &[("cookie", &cookie), ("origin", &self.origin())],
        )
        .await
        .unwrap_or_else(|e| panic!("WebSocket: {e}"));
        let viewer = RfbClient::handshake(stream, None)
            .await
            .expect("RFB through the broker");
        (viewer, closed)
    }
}

/// Reads updates until the pixel at (x, y) is `colour`.
pub async fn wait_pixel(
    viewer: &mut RfbClient<tokio::io::DuplexStream>,
    x: u16,
    y: u16,
    colour: u32,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (w, h) = (viewer.width, viewer.height);
    viewer.request(false, 0, 0, w, h).await.unwrap();
    loop {
        viewer.read_update().await.unwrap();
        if viewer.pixel(x, y) == colour {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pixel ({x}, {y}) is {:06x}, not {colour:06x}",
            viewer.pixel(x, y)
        );
        viewer.request(true, 0, 0, w, h).await.unwrap();
    }
}
