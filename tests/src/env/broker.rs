//! The environment's brokers and the portal's fixture: `verdant-broker` processes with the
//! chart's RBAC rules, and what a browserless user does through them (log in, Connect, open a
//! viewer).

use std::path::PathBuf;

use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

use super::Env;
use crate::broker::{BROKER_USER, BrokerProcess, Session, grant, location};
use crate::wsrfb::{Closed, RfbClient, websocket_closing};
use testkit::net::free_port;

/// Where [`super::Builder::broker`] runs the first broker.
#[derive(Debug, Clone)]
pub(super) struct Placement {
    /// The namespace of its session key; `None`: the test's namespace.
    pub namespace: Option<String>,
    /// Its name, for its log.
    pub name: String,
    /// Its port; `None`: a free one.
    pub port: Option<u16>,
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            namespace: None,
            name: "broker-1".into(),
            port: None,
        }
    }
}

/// An [`Env`]'s first broker, and what more brokers share with it.
pub(super) struct Brokers {
    /// The first broker.
    pub first: BrokerProcess,
    /// The broker user's kubeconfig.
    pub kubeconfig: PathBuf,
    /// The namespace of their session key.
    pub namespace: String,
}

impl Env {
    /// Pool `eng` (`replicas` demo desktops, `assignment`) granted to group `engineering`, pool
    /// `secret` granted to nobody, and `shadow` on desktops for group `helpdesk`.
    pub(super) async fn make_eng_pool(&self, replicas: u32, assignment: &str) {
        let spec = crate::brokerenv::demo_spec(&self.kernel);
        self.create_pool(
            "eng",
            json!({"replicas": replicas, "assignment": assignment, "session": {"disconnectTimeout": "5m"}, "template": {"spec": spec}}),
        )
        .await;
        self.create_pool("secret", json!({"replicas": 0, "template": {"spec": spec}}))
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
        let roles: Api<Role> = Api::namespaced(self.client.clone(), &self.ns);
        let bindings: Api<RoleBinding> = Api::namespaced(self.client.clone(), &self.ns);
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
    }

    /// Grants the broker user the chart's rules and starts the first broker.
    pub(super) async fn start_first_broker(&mut self, placement: Placement) {
        let namespace = placement.namespace.unwrap_or_else(|| self.ns.clone());
        let (_, kubeconfig) = self.cp.client_for(BROKER_USER, None).await.unwrap();
        grant(&self.client, BROKER_USER, &namespace, &[&self.ns]).await;
        let port = placement.port.unwrap_or_else(free_port);
        let first = BrokerProcess::start(
            &self.cp,
            &kubeconfig,
            &namespace,
            &[&self.ns],
            port,
            &placement.name,
        )
        .await;
        self.brokers = Some(Brokers {
            first,
            kubeconfig,
            namespace,
        });
    }

    /// The first broker; panics unless the builder asked for one ([`super::Builder::broker`]).
    pub fn broker(&self) -> &BrokerProcess {
        &self.brokers().first
    }

    /// The first broker, to stop or kill it.
    pub fn broker_mut(&mut self) -> &mut BrokerProcess {
        &mut self
            .brokers
            .as_mut()
            .expect("an environment built with .broker()")
            .first
    }

    /// The broker user's kubeconfig.
    pub fn broker_kubeconfig(&self) -> &std::path::Path {
        &self.brokers().kubeconfig
    }

    fn brokers(&self) -> &Brokers {
        self.brokers
            .as_ref()
            .expect("an environment built with .broker()")
    }

    /// Another broker process on `port` (e.g. the first one's, after it died), sharing the
    /// first one's session key.
    pub async fn start_broker_on(&self, port: u16, name: &str) -> BrokerProcess {
        self.start_broker_with_on(name, &[], port).await
    }

    /// Another broker process sharing the first one's session key, with `extra` arguments.
    pub async fn start_broker_with(&self, name: &str, extra: &[&str]) -> BrokerProcess {
        self.start_broker_with_on(name, extra, free_port()).await
    }

    /// Another broker process sharing the first one's session key.
    pub async fn start_broker(&self, name: &str) -> BrokerProcess {
        self.start_broker_with(name, &[]).await
    }

    async fn start_broker_with_on(&self, name: &str, extra: &[&str], port: u16) -> BrokerProcess {
        let brokers = self.brokers();
        BrokerProcess::start_with(
            &self.cp,
            &brokers.kubeconfig,
            &brokers.namespace,
            &[&self.ns],
            port,
            name,
            extra,
        )
        .await
    }

    /// Logs `user` in at the first broker (password `<user>-pw`).
    pub async fn login(&self, user: &str) -> Session {
        let session = self.broker().session();
        self.broker()
            .login(&self.cp, &session, user, &format!("{user}-pw"))
            .await
            .unwrap_or_else(|e| panic!("login of {user}: {e}"));
        session
    }

    /// The text of page `path` at the first broker, as `session` sees it.
    pub async fn page(&self, session: &Session, path: &str) -> String {
        let response = session.http.get(self.broker().at(path)).send().await;
        response
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The first broker's origin.
    pub fn origin(&self) -> String {
        self.broker().url.origin().ascii_serialization()
    }

    /// Connect to pool `pool` from the portal's form; the desktop's name.
    pub async fn connect(&self, session: &Session, pool: &str) -> String {
        let csrf = self.broker().csrf(session).await.unwrap();
        let response = session
            .http
            .post(
                self.broker()
                    .at(&format!("/pools/{}/{pool}/connect", self.ns)),
            )
            .header("origin", self.origin())
            .form(&[("csrf", csrf)])
            .send()
            .await
            .unwrap();
        let to =
            location(&response).unwrap_or_else(|| panic!("Connect answered {}", response.status()));
        let prefix = format!("/desktops/{}/", self.ns);
        to.path()
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("Connect sent the browser to {to}"))
            .to_owned()
    }

    /// A connect token's WebSocket path for `desktop`.
    pub async fn token(&self, session: &Session, desktop: &str) -> reqwest::Response {
        let csrf = self.broker().csrf(session).await.unwrap();
        session
            .http
            .post(
                self.broker()
                    .at(&format!("/api/desktops/{}/{desktop}/token", self.ns)),
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
        let mut url = self.broker().at(path);
        url.set_scheme("wss").unwrap();
        let cookie = session.cookie(&self.broker().url);
        let (stream, closed) = websocket_closing(
            &url,
            &self.broker().ca,
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
