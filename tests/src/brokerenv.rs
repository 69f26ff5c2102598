//! What the broker tests share: their users, the pool template of the demo guest, and the
//! environment they start from ([`builder`]): a control plane whose apiserver trusts the OpenID
//! provider, the operator, a node of launcher processes running the demo guest, the portal's
//! fixture and a broker (see [`crate::env`]).

use std::time::Duration;

use serde_json::json;

use crate::controlplane::OidcUser;
use crate::env::{Builder, Env, NodeKind};
use crate::wsrfb::RfbClient;

/// How long a broker test waits for the system to react.
pub const LIMIT: Duration = Duration::from_secs(90);

/// The broker tests' environment in namespace `ns`: the provider with [`users`], a node of
/// launcher processes, pool `eng` (Floating, `replicas` demo desktops) with the rest of the
/// portal's fixture ([`Builder::eng_pool`]), and a broker. The builder's calls change it.
pub fn builder(ns: &str, replicas: u32) -> Builder {
    Env::builder(ns)
        .oidc(users())
        .node(NodeKind::Launchers)
        .eng_pool(replicas, "Floating")
        .broker()
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
