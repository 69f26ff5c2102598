//! verdant-broker end to end, without a browser: a real OpenID provider, a real apiserver that
//! trusts it, the operator, launcher processes running the demo guest (tests::localnode), and
//! the broker as a process with its own RBAC rules. Users log in through the provider's form
//! (plain HTTP), connect through the portal, and speak RFB over the broker's WebSocket.

use std::time::Duration;

use crds::{DesktopPhase, SessionState};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use tests::broker::{BROKER_USER, BrokerProcess, Session, free_port, grant, location};
use tests::controlplane::{OidcUser, Options as CpOptions};
use tests::env::Env;
use tests::kubelet::eventually;
use tests::localnode::LocalNode;
use tests::wsrfb::{RfbClient, websocket};

const LIMIT: Duration = Duration::from_secs(90);

/// Everything a broker test runs.
struct Setup {
    env: Env,
    node: LocalNode,
    broker: BrokerProcess,
    _guest: tempfile::TempDir,
}

fn users() -> Vec<OidcUser> {
    vec![
        OidcUser::new("alice", "alice-pw", &["engineering"]),
        OidcUser::new("bob", "bob-pw", &["engineering"]),
        OidcUser::new("carol", "carol-pw", &["helpdesk"]),
        OidcUser::new("eve", "eve-pw", &[]),
    ]
}

/// The pool template's spec: the demo guest from a hostPath.
fn demo_spec(kernel: &std::path::Path) -> serde_json::Value {
    json!({
        "resources": {"cpus": 1, "memory": "128Mi"},
        "boot": {"kernel": {"hostPath": kernel}},
        "display": {"width": 1280, "height": 800},
    })
}

/// A control plane with the provider, the operator, a node of launcher processes, pool `eng`
/// (Floating, `replicas` desktops) granted to group `engineering`, `shadow` on desktops for
/// group `helpdesk`, pool `secret` granted to nobody, and a broker.
async fn setup(ns: &str, replicas: u32) -> Option<Setup> {
    if let Err(why) = testkit::kvm_usable() {
        testkit::skip(testkit::KVM, &why);
        return None;
    }
    if launcher::demo::DEMO_GUEST.is_empty() {
        testkit::skip(
            testkit::KVM,
            "the launcher was built without its demo guest (no gcc/ld)",
        );
        return None;
    }
    let guest = tempfile::tempdir().unwrap();
    let kernel = guest.path().join("demo.elf");
    std::fs::write(&kernel, launcher::demo::DEMO_GUEST).unwrap();
    let env = Env::start_with_options(
        ns,
        CpOptions {
            oidc: Some(users()),
            ..CpOptions::default()
        },
    )
    .await;
    let node = LocalNode::start(env.client.clone(), ns, "node-1")
        .await
        .expect("local node");
    env.create_pool(
        "eng",
        json!({"replicas": replicas, "assignment": "Floating", "session": {"disconnectTimeout": "5m"}, "template": {"spec": demo_spec(&kernel)}}),
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
    grant(&env.client, BROKER_USER, ns).await;
    let broker = BrokerProcess::start(&env.cp, &kubeconfig, ns, free_port(), "broker-1").await;
    let desktops = env.desktops();
    eventually("the pool's desktops to be Ready", LIMIT, || async {
        let list = desktops
            .list(&ListParams::default().labels("vdi.verdant.dev/pool=eng"))
            .await
            .ok()?;
        let ready = list
            .iter()
            .filter(|d| d.status.as_ref().and_then(|s| s.phase) == Some(DesktopPhase::Ready))
            .count();
        (ready == replicas as usize).then_some(())
    })
    .await;
    Some(Setup {
        env,
        node,
        broker,
        _guest: guest,
    })
}

impl Setup {
    async fn login(&self, user: &str) -> Session {
        let session = self.broker.session();
        self.broker
            .login(&self.env.cp, &session, user, &format!("{user}-pw"))
            .await
            .unwrap_or_else(|e| panic!("login of {user}: {e}"));
        session
    }

    fn origin(&self) -> String {
        self.broker.url.origin().ascii_serialization()
    }

    /// Connect to pool `pool` from the portal's form; the desktop's name.
    async fn connect(&self, session: &Session, pool: &str) -> String {
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
    async fn token(&self, session: &Session, desktop: &str) -> reqwest::Response {
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

    async fn viewer(&self, session: &Session, desktop: &str) -> RfbClient<tokio::io::DuplexStream> {
        let grant: serde_json::Value = self.token(session, desktop).await.json().await.unwrap();
        let path = grant["path"].as_str().expect("a path in the grant");
        let mut url = self.broker.at(path);
        url.set_scheme("wss").unwrap();
        let cookie = session.cookie(&self.broker.url);
        let stream = websocket(
            &url,
            &self.broker.ca,
            &[("cookie", &cookie), ("origin", &self.origin())],
        )
        .await
        .unwrap_or_else(|e| panic!("WebSocket: {e}"));
        RfbClient::handshake(stream, None)
            .await
            .expect("RFB through the broker")
    }
}

/// Reads updates until the pixel at (x, y) is `colour`.
async fn wait_pixel(viewer: &mut RfbClient<tokio::io::DuplexStream>, x: u16, y: u16, colour: u32) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_connects_types_and_the_session_shows_in_the_desktops_status() {
    let Some(s) = setup("broker-e2e", 2).await else {
        return;
    };
    let alice = s.login("alice").await;
    let portal = alice
        .http
        .get(s.broker.at("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        portal.contains("Signed in as <strong>alice</strong>"),
        "{portal}"
    );
    assert!(
        portal.contains("<h3>eng</h3>"),
        "the granted pool is listed: {portal}"
    );
    assert!(
        !portal.contains("<h3>secret</h3>"),
        "the other pool is not: {portal}"
    );

    let desktop = s.connect(&alice, "eng").await;
    assert_eq!(
        s.connect(&alice, "eng").await,
        desktop,
        "connecting again gives the same desktop"
    );
    let page = alice
        .http
        .get(s.broker.at(&format!("/desktops/{}/{desktop}", s.env.ns)))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("id=\"screen\""));

    let mut viewer = s.viewer(&alice, &desktop).await;
    assert_eq!((viewer.width, viewer.height), (1280, 800));
    // The demo's top panel, then a typed 'a' (make code 0x1c) as a block in its window.
    wait_pixel(&mut viewer, 10, 10, 0x202020).await;
    viewer.key(u32::from(b'a')).await.unwrap();
    wait_pixel(&mut viewer, 108, 128, 0x1c_3854).await;

    let desktops = s.env.desktops();
    let connected = eventually("status.assignment to say Connected", LIMIT, || async {
        let d = desktops.get(&desktop).await.ok()?;
        let a = d.status?.assignment?;
        (a.session == Some(SessionState::Connected)).then_some(a)
    })
    .await;
    assert_eq!(connected.user, "alice");
    assert!(
        connected.connected_at.is_some() && connected.since.is_some(),
        "{connected:?}"
    );
    assert!(connected.disconnected_at.is_none());

    drop(viewer);
    let disconnected = eventually("status.assignment to say Disconnected", LIMIT, || async {
        let d = desktops.get(&desktop).await.ok()?;
        let a = d.status?.assignment?;
        (a.session == Some(SessionState::Disconnected)).then_some(a)
    })
    .await;
    assert!(disconnected.disconnected_at.is_some(), "{disconnected:?}");
    assert_eq!(disconnected.connected_at, connected.connected_at);
    let pod = desktops
        .get(&desktop)
        .await
        .unwrap()
        .status
        .unwrap()
        .pod_name
        .unwrap();
    assert!(
        s.node.log(&pod).contains("demo desktop drawn"),
        "the launcher ran the demo guest"
    );
}
