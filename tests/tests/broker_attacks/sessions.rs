//! Sessions ending at every replica: logout, a revoked grant, an administrator, a lost group.

use std::time::{Duration, Instant};

use tests::broker::Session;
use tests::env::Env;
use tests::wsrfb::Closed;

/// A viewer of `desktop` through `broker` (any replica) for `session`, and how it closes.
async fn viewer_at(
    s: &Env,
    broker: &tests::broker::BrokerProcess,
    session: &Session,
    desktop: &str,
) -> (
    tests::wsrfb::RfbClient<tokio::io::DuplexStream>,
    tokio::sync::oneshot::Receiver<Closed>,
) {
    let csrf = s.broker().csrf(session).await.unwrap();
    let origin = broker.url.origin().ascii_serialization();
    let grant: serde_json::Value = session
        .http
        .post(broker.at(&format!("/api/desktops/{}/{desktop}/token", s.ns)))
        .header("origin", &origin)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut url = broker.at(grant["path"].as_str().expect("a token"));
    url.set_scheme("wss").unwrap();
    let cookie = session.cookie(&broker.url);
    let (stream, closed) = tests::wsrfb::websocket_closing(
        &url,
        &broker.ca,
        &[("cookie", &cookie), ("origin", &origin)],
    )
    .await
    .unwrap();
    let viewer = tests::wsrfb::RfbClient::handshake(stream, None)
        .await
        .unwrap();
    (viewer, closed)
}

/// Waits up to `limit` for the broker to close a viewer: how long it took.
async fn closed_in(
    closed: tokio::sync::oneshot::Receiver<Closed>,
    limit: Duration,
    what: &str,
) -> Duration {
    let started = Instant::now();
    match tokio::time::timeout(limit, closed).await {
        Ok(Ok(how)) => {
            eprintln!("{what}: closed after {:?}, {how:?}", started.elapsed());
            started.elapsed()
        }
        _ => panic!("{what}: still open after {limit:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_end_everywhere_on_logout_revocation_and_a_lost_grant() {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    let Some(s) = crate::env("sessions", 2, true, "Floating").start().await else {
        return;
    };
    // broker-2 reads sessions' groups again from the provider every 3 s (step 4).
    let b2 = s
        .start_broker_with("broker-2", &["--groups-refresh=3s"])
        .await;
    let bindings: kube::Api<RoleBinding> = kube::Api::namespaced(s.client.clone(), &s.ns);
    let alice = s.login("alice").await;
    let desktop = s.connect(&alice, "eng").await;
    // Bound: the watchdog's round and the access cache's 5 s, with room to spare.
    let bound = Duration::from_secs(20); // the watchdog's 10 s round and the access cache's 5 s

    // 0. A connect token works once across the replicas, not once at each: issued at
    // broker-1 and redeemed at broker-2 (any replica takes it), the same token is then
    // refused at broker-1, with the same session cookie.
    let grant: serde_json::Value = s.token(&alice, &desktop).await.json().await.unwrap();
    let path = grant["path"].as_str().expect("a token");
    let open_at = |broker: &tests::broker::BrokerProcess| {
        let mut url = broker.at(path);
        url.set_scheme("wss").unwrap();
        let cookie = alice.cookie(&broker.url);
        let origin = broker.url.origin().ascii_serialization();
        let ca = broker.ca.clone();
        async move {
            tests::wsrfb::connect(&url, &ca, &[("cookie", &cookie), ("origin", &origin)]).await
        }
    };
    let first = open_at(&b2)
        .await
        .expect("a token from broker-1 opens a viewer at broker-2");
    let replay = open_at(s.broker()).await;
    assert!(
        matches!(replay, Err(tests::wsrfb::WsError::Status(403))),
        "the token replayed at broker-1: {:?}",
        replay.as_ref().err()
    );
    drop(first);

    // 1. The RoleBinding that entitles alice's group to the pool goes: her viewers at both
    // replicas are closed, and her desktop's page is the same 404 as any other's.
    let (_v1, c1) = viewer_at(&s, s.broker(), &alice, &desktop).await;
    let (_v2, c2) = viewer_at(&s, &b2, &alice, &desktop).await;
    let saved = bindings.get("use-eng").await.unwrap();
    bindings
        .delete("use-eng", &Default::default())
        .await
        .unwrap();
    let (t1, t2) = tokio::join!(
        closed_in(c1, bound, "revoked, at broker-1"),
        closed_in(c2, bound, "revoked, at broker-2")
    );
    eprintln!("RoleBinding revoked: viewers closed after {t1:?} and {t2:?} (bound {bound:?})");
    let page = alice
        .http
        .get(s.broker().at(&format!("/api/desktops/{}/{desktop}", s.ns)))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404, "a revoked user opens their old desktop");
    let mut restored = saved.clone();
    restored.metadata = kube::api::ObjectMeta {
        name: saved.metadata.name.clone(),
        ..Default::default()
    };
    bindings
        .create(&Default::default(), &restored)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await; // the access cache

    // 2. Logout at one replica ends the session at every replica, and the cookie a thief
    // copied before it is worth nothing after.
    let (_v3, c3) = viewer_at(&s, s.broker(), &alice, &desktop).await;
    let (_v4, c4) = viewer_at(&s, &b2, &alice, &desktop).await;
    let stolen = alice.cookie(&s.broker().url);
    let csrf = s.broker().csrf(&alice).await.unwrap();
    let out = alice
        .http
        .post(b2.at("/logout"))
        .header("origin", b2.url.origin().ascii_serialization())
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200, "logout");
    let limit = Duration::from_secs(5);
    let (t3, t4) = tokio::join!(
        closed_in(c3, limit, "logout, at broker-1"),
        closed_in(c4, limit, "logout, at broker-2")
    );
    eprintln!("logout: viewers closed after {t3:?} and {t4:?}");
    for broker in [s.broker(), &b2] {
        let thief = broker
            .http()
            .get(broker.at(&format!("/api/desktops/{}/{desktop}", s.ns)))
            .header("cookie", &stolen)
            .send()
            .await
            .unwrap();
        assert_eq!(
            thief.status(),
            401,
            "a copied cookie after logout at {}",
            broker.url
        );
    }

    // 3. An administrator ends every session of bob's, by label, with kubectl: both of his
    // logins are over, their viewers closed.
    let (bob1, bob2) = (s.login("bob").await, s.login("bob").await);
    let theirs = s.connect(&bob1, "eng").await;
    let (_v5, c5) = viewer_at(&s, s.broker(), &bob1, &theirs).await;
    let (_v6, c6) = viewer_at(&s, &b2, &bob2, &theirs).await;
    let out =
        s.cp.kubectl()
            .args([
                "delete",
                "lease",
                "-n",
                &s.ns,
                "-l",
                "vdi.verdant.dev/session-user=bob",
            ])
            .output()
            .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (t5, t6) = tokio::join!(
        closed_in(c5, limit, "revoked by an administrator, at broker-1"),
        closed_in(c6, limit, "revoked by an administrator, at broker-2")
    );
    eprintln!("kubectl delete lease -l user=bob: viewers closed after {t5:?} and {t6:?}");
    for session in [&bob1, &bob2] {
        let page = session.http.get(s.broker().at("/")).send().await.unwrap();
        assert_eq!(
            page.status(),
            303,
            "bob's session after the administrator ended it"
        );
    }

    // 4. alice leaves group engineering at the provider (nothing changes in Kubernetes):
    // within broker-2's 3 s refresh and the watchdog's round, her viewers at both replicas
    // are closed (each replica checks its own against the session's refreshed groups), and
    // her desktop's page is the same 404 as any other's, while her session lasts.
    let alice = s.login("alice").await;
    let hers = s.connect(&alice, "eng").await;
    let (_v7, c7) = viewer_at(&s, s.broker(), &alice, &hers).await;
    let (_v8, c8) = viewer_at(&s, &b2, &alice, &hers).await;
    let oidc = s.cp.oidc().expect("the provider");
    oidc.set_groups("alice", &[]).await.unwrap();
    let bound = Duration::from_secs(30); // 3 s refresh + its 1 s look, the 10 s round, the 5 s cache
    let (t7, t8) = tokio::join!(
        closed_in(c7, bound, "left the group at the provider, at broker-1"),
        closed_in(c8, bound, "left the group at the provider, at broker-2")
    );
    eprintln!(
        "alice left group engineering at the provider: viewers closed after {t7:?} and {t8:?} (bound {bound:?})"
    );
    let page = alice
        .http
        .get(s.broker().at(&format!("/api/desktops/{}/{hers}", s.ns)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        404,
        "alice's old desktop after leaving the group"
    );
    let home = alice.http.get(s.broker().at("/")).send().await.unwrap();
    assert_eq!(
        home.status(),
        200,
        "alice is still logged in: only the group went"
    );
}
