//! verdant-broker end to end, without a browser: a real OpenID provider, a real apiserver that
//! trusts it, the operator, launcher processes running the demo guest (tests::localnode), and
//! the broker as a process with its own RBAC rules. Users log in through the provider's form
//! (plain HTTP), connect through the portal, and speak RFB over the broker's WebSocket.

use crds::SessionState;
use testkit::eventually;
use tests::brokerenv::{LIMIT, builder, wait_pixel};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_connects_types_and_the_session_shows_in_the_desktops_status() {
    let Some(mut s) = builder("broker-e2e", 2).start().await else {
        return;
    };
    let alice = s.login("alice").await;
    let portal = s.page(&alice, "/").await;
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
        .get(s.broker().at(&format!("/desktops/{}/{desktop}", s.ns)))
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

    let desktops = s.desktops();
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

    // The operator's NetworkPolicy, applied in the namespace before its first launcher pod:
    // launchers take nothing from other pods here (no broker pod is named; no CNI here
    // enforces it), and its selector picks the launcher pods.
    let policies: kube::Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        kube::Api::namespaced(s.client.clone(), &s.ns);
    let policy = policies
        .get("verdant-launchers")
        .await
        .expect("the operator made the launcher NetworkPolicy");
    let spec = policy.spec.unwrap();
    assert_eq!(
        spec.ingress.unwrap_or_default().len(),
        0,
        "no pod reaches launchers"
    );
    assert_eq!(
        spec.pod_selector.unwrap().match_expressions.unwrap()[0].key,
        "vdi.verdant.dev/desktop"
    );
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(s.client.clone(), &s.ns);
    let selected = pods
        .list(&kube::api::ListParams::default().labels("vdi.verdant.dev/desktop"))
        .await
        .unwrap();
    assert!(
        selected
            .items
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(pod.as_str())),
        "the policy's selector picks the launcher pod"
    );

    // Graceful shutdown: SIGTERM closes every viewer with WebSocket code 1012 ("restart":
    // reconnect), and the broker exits 0 within its drain time.
    let grant: serde_json::Value = s.token(&alice, &desktop).await.json().await.unwrap();
    let mut url = s.broker().at(grant["path"].as_str().unwrap());
    url.set_scheme("wss").unwrap();
    let cookie = alice.cookie(&s.broker().url);
    let mut ws = tests::wsrfb::connect(
        &url,
        &s.broker().ca,
        &[("cookie", &cookie), ("origin", &s.origin())],
    )
    .await
    .unwrap();
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    // The browser's half of the handshake, by hand: version, security None, ClientInit.
    let mut expect = Vec::new();
    for (wanted, answer) in [
        (&b"RFB 003.008\n"[..], &b"RFB 003.008\n"[..]),
        (&[1u8, 1][..], &[1u8][..]),
        (&[0u8; 4][..], &[1u8][..]),
    ] {
        while expect.len() < wanted.len() {
            match ws.next().await {
                Some(Ok(Message::Binary(bytes))) => expect.extend_from_slice(&bytes),
                other => panic!("handshake: {other:?}"),
            }
        }
        assert_eq!(expect.drain(..wanted.len()).as_slice(), wanted);
        ws.send(Message::Binary(answer.to_vec().into()))
            .await
            .unwrap();
    }
    let pid = s.broker().process.pid().unwrap();
    // SAFETY: kill(2) on the broker's pid, which this test started; no memory is involved.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let close = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                other => panic!("the viewer saw {other:?} before a close frame"),
            }
        }
    })
    .await
    .expect("a close frame within 10 s of SIGTERM");
    let frame = close.expect("a close frame with a code");
    assert_eq!(
        u16::from(frame.code),
        1012,
        "close code 1012 (restart): {frame:?}"
    );
    let exited = eventually("the broker to exit after SIGTERM", LIMIT, || {
        std::future::ready(match s.broker_mut().process.check_running() {
            Err(tests::controlplane::Error::Exited { status, .. }) => Some(status),
            _ => None,
        })
    })
    .await;
    assert!(
        exited.contains("exit status: 0"),
        "the broker exited with {exited}"
    );
}
