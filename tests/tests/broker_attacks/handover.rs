//! A Dedicated desktop changing hands: released by every path, never handed on as it was.

use std::time::{Duration, Instant};

use crds::labels::{RESET_ANNOTATION, USED_BY_ANNOTATION, reset_count};
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use testkit::eventually;
use tests::broker::Session;
use tests::env::Env;
use tests::wsrfb::Closed;

/// How long the system may take to react.
const LIMIT: Duration = Duration::from_secs(60);
/// How soon a viewer must be closed once its desktop changes hands.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

/// The launcher pod's uid of desktop `name` once it is Ready with a pod other than `not`.
async fn ready_pod(s: &Env, name: &str, not: Option<&str>) -> String {
    eventually(
        &format!("{name} Ready on a new launcher"),
        LIMIT,
        || async {
            let d = s.desktops().get(name).await.ok()?;
            let status = d.status.as_ref()?;
            if status.phase != Some(crds::DesktopPhase::Ready)
                || status.observed_generation != d.metadata.generation
            {
                return None;
            }
            let pod = s.pods().get(status.pod_name.as_ref()?).await.ok()?;
            let uid = pod.uid()?;
            (Some(uid.as_str()) != not).then_some(uid)
        },
    )
    .await
}

/// Posts the portal's Release form for `desktop` as `who`: the status code.
async fn release_form(s: &Env, who: &Session, desktop: &str) -> u16 {
    let csrf = s.broker().csrf(who).await.unwrap();
    let url = s
        .broker()
        .at(&format!("/desktops/{}/{desktop}/release", s.ns));
    let response = who
        .http
        .post(url)
        .header("origin", s.origin())
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// Calls the JSON Release for `desktop` as `who`: the status code and the reason.
async fn release_api(s: &Env, who: &Session, desktop: &str) -> (u16, String) {
    let csrf = s.broker().csrf(who).await.unwrap();
    let url = s
        .broker()
        .at(&format!("/api/desktops/{}/{desktop}/release", s.ns));
    let response = who
        .http
        .post(url)
        .header("origin", s.origin())
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (
        status,
        body["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Waits for the broker to close a viewer's WebSocket: how long it took and how.
async fn closed_within(closed: tokio::sync::oneshot::Receiver<Closed>, what: &str) -> Closed {
    let started = Instant::now();
    match tokio::time::timeout(CLOSED_WITHIN, closed).await {
        Ok(Ok(how)) => {
            eprintln!(
                "{what}: closed within {:?} of the change's write returning, {how:?}",
                started.elapsed()
            );
            how
        }
        Ok(Err(_)) => panic!("{what}: the viewer's bridge went away without a close"),
        Err(_) => panic!("{what}: still open {CLOSED_WITHIN:?} after its desktop changed hands"),
    }
}

/// Whether a viewer still gets updates.
async fn still_served(viewer: &mut tests::wsrfb::RfbClient<tokio::io::DuplexStream>) -> bool {
    let (w, h) = (viewer.width, viewer.height);
    viewer.request(false, 0, 0, w, h).await.is_ok()
        && tokio::time::timeout(Duration::from_secs(10), viewer.read_update())
            .await
            .is_ok_and(|u| u.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dedicated_desktop_never_reaches_another_user_as_it_was() {
    let Some(s) = crate::env("dedicated", 1, true, "Dedicated").start().await else {
        return;
    };
    let desktops = s.desktops();
    let (alice, bob) = tokio::join!(s.login("alice"), s.login("bob"));
    let d = s.connect(&alice, "eng").await;
    let alices_vm = ready_pod(&s, &d, None).await;
    let (mut viewer, closed) = s.viewer_closing(&alice, &d).await;
    assert!(still_served(&mut viewer).await, "alice's viewer works");

    // The portal offers no Release for a Dedicated desktop, and refuses one all the same, by
    // form and by API: it stays alice's, her viewer on.
    let portal = s.page(&alice, "/").await;
    assert!(portal.contains(&d), "the portal lists alice's desktop");
    assert!(
        !portal.contains(&format!("/desktops/{}/{d}/release", s.ns)),
        "the portal offers Release on a Dedicated desktop"
    );
    assert_eq!(release_form(&s, &alice, &d).await, 409, "portal Release");
    assert_eq!(
        release_api(&s, &alice, &d).await,
        (409, "Dedicated".to_owned()),
        "API Release"
    );
    let kept = desktops.get(&d).await.unwrap();
    assert_eq!(kept.spec.user.as_deref(), Some("alice"), "still alice's");
    assert!(
        still_served(&mut viewer).await,
        "alice's viewer still works"
    );
    // Bob cannot have it meanwhile (the pool has no other desktop).
    let csrf = s.broker().csrf(&bob).await.unwrap();
    let refused = bob
        .http
        .post(s.broker().at(&format!("/pools/{}/eng/connect", s.ns)))
        .header("origin", s.origin())
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503, "bob: no desktop free");

    // An administrator releases it (verdant-operator release): alice's viewer is closed at
    // once, and the desktop reset before anyone else has it.
    assignment::release(&desktops, &d).await.unwrap();
    let how = closed_within(closed, "alice's viewer, after the administrator's release").await;
    assert_eq!(
        how.map(|(code, _)| code),
        Some(1008),
        "closed as no longer allowed"
    );
    let released = desktops.get(&d).await.unwrap();
    assert_eq!(released.spec.user, None);
    assert_eq!(reset_count(released.annotations()), 1, "marked for a reset");
    assert!(!released.annotations().contains_key(USED_BY_ANNOTATION));
    let fresh = ready_pod(&s, &d, Some(&alices_vm)).await;
    let given = s.connect(&bob, "eng").await;
    assert_eq!(given, d, "the only desktop, reset");
    assert_ne!(
        ready_pod(&s, &d, None).await,
        alices_vm,
        "bob is on a fresh VM"
    );
    assert_eq!(ready_pod(&s, &d, None).await, fresh);

    // Bob's spec.user cleared by hand (kubectl patch, no release): his viewer is closed at
    // once, the desktop is nobody's to take while it runs his VM, and the operator resets it.
    let (mut viewer, closed) = s.viewer_closing(&bob, &d).await;
    assert!(still_served(&mut viewer).await, "bob's viewer works");
    desktops
        .patch(
            &d,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"user": null}})),
        )
        .await
        .unwrap();
    closed_within(closed, "bob's viewer, after spec.user was cleared by hand").await;
    let reset = eventually("the operator to reset the desktop", LIMIT, || async {
        let d = desktops.get(&d).await.ok()?;
        (reset_count(d.annotations()) == 2).then_some(d)
    })
    .await;
    assert_eq!(
        reset
            .annotations()
            .get(RESET_ANNOTATION)
            .map(String::as_str),
        Some("2")
    );
    let events = s.events_for(&d).await;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Reset")
            && e.message.as_deref().unwrap_or_default().contains("bob")),
        "an event says why it was reset: {:?}",
        events.iter().map(|e| &e.message).collect::<Vec<_>>()
    );
    let third = ready_pod(&s, &d, Some(&fresh)).await;
    let given = s.connect(&alice, "eng").await;
    assert_eq!(given, d);
    assert_ne!(third, fresh, "alice is not given bob's VM");
    assert_ne!(third, alices_vm);
}
