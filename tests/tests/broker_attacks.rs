//! Attacks on the broker, run against the real product: a real broker process in front of a
//! real apiserver, the tests' OpenID provider and launcher processes running the demo guest.
//! Each test is an attack that worked on the code before its fix (the stop notes say so).
//!
//! - a Dedicated desktop released through every path never reaches another user as it was,
//!   and the viewer of whoever had it is closed the moment it changes hands;
//! - `/login?next=` never sends a browser to another host after a real login (the classic
//!   bypass list);
//! - a 1 MiB clipboard sent as a million one-byte WebSocket messages costs the broker time in
//!   proportion to its size, not its size squared.

use std::time::{Duration, Instant};

use crds::labels::{RESET_ANNOTATION, USED_BY_ANNOTATION, reset_count};
use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tests::attacker::{RawViewer, cut_text_message};
use tests::broker::Session;
use tests::brokerenv::{BrokerEnv, SetupOptions, setup_with, users};
use tests::kubelet::eventually;
use tests::wsrfb::Closed;

/// The tests' users, `replicas` desktops in pool `eng` of policy `assignment`, run by launcher
/// processes (`launchers`) or the stand-in kubelet.
fn options(replicas: u32, launchers: bool, assignment: &'static str) -> SetupOptions {
    SetupOptions {
        replicas,
        users: users(),
        launchers,
        assignment,
        real_node: false,
        audit: false,
    }
}

/// How long the system may take to react.
const LIMIT: Duration = Duration::from_secs(60);
/// How soon a viewer must be closed once its desktop changes hands.
const CLOSED_WITHIN: Duration = Duration::from_secs(5);

/// The launcher pod's uid of desktop `name` once it is Ready with a pod other than `not`.
async fn ready_pod(s: &BrokerEnv, name: &str, not: Option<&str>) -> String {
    eventually(
        &format!("{name} Ready on a new launcher"),
        LIMIT,
        || async {
            let d = s.env.desktops().get(name).await.ok()?;
            let status = d.status.as_ref()?;
            if status.phase != Some(crds::DesktopPhase::Ready)
                || status.observed_generation != d.metadata.generation
            {
                return None;
            }
            let pod = s.env.pods().get(status.pod_name.as_ref()?).await.ok()?;
            let uid = pod.uid()?;
            (Some(uid.as_str()) != not).then_some(uid)
        },
    )
    .await
}

/// Posts the portal's Release form for `desktop` as `who`: the status code.
async fn release_form(s: &BrokerEnv, who: &Session, desktop: &str) -> u16 {
    let csrf = s.broker.csrf(who).await.unwrap();
    let url = s
        .broker
        .at(&format!("/desktops/{}/{desktop}/release", s.env.ns));
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
async fn release_api(s: &BrokerEnv, who: &Session, desktop: &str) -> (u16, String) {
    let csrf = s.broker.csrf(who).await.unwrap();
    let url = s
        .broker
        .at(&format!("/api/desktops/{}/{desktop}/release", s.env.ns));
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
    let Some(s) = setup_with("dedicated", options(1, true, "Dedicated")).await else {
        return;
    };
    let desktops = s.env.desktops();
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
        !portal.contains(&format!("/desktops/{}/{d}/release", s.env.ns)),
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
    let csrf = s.broker.csrf(&bob).await.unwrap();
    let refused = bob
        .http
        .post(s.broker.at(&format!("/pools/{}/eng/connect", s.env.ns)))
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
    let events = s.env.events_for(&d).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_never_sends_the_browser_to_another_host() {
    let Some(s) = setup_with("redirect", options(0, false, "Floating")).await else {
        return;
    };
    let origin = s.broker.url.origin();
    // The classic bypasses of a "starts with one slash" check, as a browser would send them
    // (decoded from the query): where the broker then sends the browser, as the browser
    // reads the Location (tabs and newlines dropped, backslashes as slashes).
    let bypasses = [
        "/\t/evil.example",
        "/%09/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "/\\/evil.example",
        "%2f%2fevil.example",
        "/%2f%2fevil.example",
        "/%5c%5cevil.example",
        "https://evil.example",
        "https:evil.example",
        "//evil.example@vdi.example",
        "/@evil.example",
        "@evil.example",
        "/\u{2215}\u{2215}evil.example",
        "/\u{ff0f}\u{ff0f}evil.example",
        "/\u{2044}\u{2044}evil.example",
        "/a/../..//evil.example",
        "/.//evil.example",
        " //evil.example",
        "javascript:alert(1)",
    ];
    let mut wrong = Vec::new();
    for next in bypasses {
        let session = s.broker.session();
        let to = match s
            .broker
            .login_to(&s.env.cp, &session, "alice", "alice-pw", Some(next))
            .await
        {
            Ok(to) => to,
            Err(e) => {
                wrong.push(format!("{next:?}: the login failed: {e}"));
                continue;
            }
        };
        let stays = to.origin() == origin;
        eprintln!(
            "next={next:?}: the browser goes to {to} ({})",
            if stays { "the portal" } else { "ANOTHER HOST" }
        );
        if !stays {
            wrong.push(format!("{next:?} -> {to}"));
        }
    }
    assert!(wrong.is_empty(), "logins that left the portal: {wrong:?}");
    // And a local path still works.
    let to = s
        .broker
        .login_to(
            &s.env.cp,
            &s.broker.session(),
            "alice",
            "alice-pw",
            Some("/desktops/redirect/x?y=1"),
        )
        .await
        .unwrap();
    assert_eq!(
        (to.origin() == origin, to.path(), to.query()),
        (true, "/desktops/redirect/x", Some("y=1"))
    );
}

/// The CPU time process `pid` has used.
fn cpu_time(pid: u32) -> Duration {
    testkit::procfs::cpu_time(pid).expect("the broker's /proc/PID/stat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clipboard_a_byte_at_a_time_costs_the_broker_linear_time() {
    let Some(s) = setup_with("cut-text", options(2, true, "Floating")).await else {
        return;
    };
    let (alice, bob) = tokio::join!(s.login("alice"), s.login("bob"));
    let (a, b) = (s.connect(&alice, "eng").await, s.connect(&bob, "eng").await);
    // Bob works on his desktop meanwhile: his updates keep coming.
    let mut bobs = s.viewer(&bob, &b).await;

    // Alice's viewer, by hand over the raw WebSocket: the handshake, then one ClientCutText
    // of 1 MiB, one byte per WebSocket message, then an update request, whose answer says
    // the broker has framed everything before it.
    let grant: serde_json::Value = s.token(&alice, &a).await.json().await.unwrap();
    let mut url = s.broker.at(grant["path"].as_str().unwrap());
    url.set_scheme("wss").unwrap();
    let cookie = alice.cookie(&s.broker.url);
    let ws = tests::wsrfb::connect(
        &url,
        &s.broker.ca,
        &[("cookie", &cookie), ("origin", &s.origin())],
    )
    .await
    .unwrap();
    let mut attacker = RawViewer::handshake(ws).await.unwrap();

    // Bob's round trips before the attack, the same way as during it: what it adds is the
    // difference.
    let (w, h) = (bobs.width, bobs.height);
    let mut quiet = Vec::new();
    for _ in 0..40 {
        let asked = Instant::now();
        bobs.request(false, 0, 0, w.min(64), h.min(64))
            .await
            .unwrap();
        bobs.read_update().await.unwrap();
        quiet.push(asked.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    quiet.sort();

    let broker_pid = s.broker.process.pid().expect("the broker's pid");
    let cpu_before = cpu_time(broker_pid);
    let size: u32 = 1 << 20;
    let clipboard = cut_text_message(size);
    let started = Instant::now();
    attacker.send_bytewise(&clipboard[..8], None).await.unwrap();
    // Meanwhile, bob's round trips, until the attack is over.
    let over = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = std::sync::Arc::clone(&over);
    let watch_bob = tokio::spawn(async move {
        let mut rtts = Vec::new();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let asked = Instant::now();
            if bobs
                .request(false, 0, 0, w.min(64), h.min(64))
                .await
                .is_err()
                || bobs.read_update().await.is_err()
            {
                break;
            }
            rtts.push(asked.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rtts
    });
    attacker.send_bytewise(&clipboard[8..], None).await.unwrap();
    let sent = started.elapsed();
    // The update answers the request sent after the clipboard: all of it was framed.
    let answered = tokio::time::timeout(Duration::from_secs(180), attacker.round_trip()).await;
    let took = started.elapsed();
    let cpu = cpu_time(broker_pid).saturating_sub(cpu_before);
    over.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut rtts = watch_bob.await.unwrap();
    rtts.sort();
    let at = |v: &[Duration], q: f64| v.get(((v.len() as f64 - 1.0) * q) as usize).copied();
    eprintln!(
        "1 MiB clipboard as 1,048,576 one-byte WebSocket messages: sent in {sent:?}, relayed in {took:?}; the broker used {cpu:?} of CPU; bob's 64x64 update round trips meanwhile: {} (p50 {:?}, p99 {:?}), before it: {} (p50 {:?}, p99 {:?}); added p99 {:?}",
        rtts.len(),
        at(&rtts, 0.5),
        at(&rtts, 0.99),
        quiet.len(),
        at(&quiet, 0.5),
        at(&quiet, 0.99),
        at(&rtts, 0.99)
            .zip(at(&quiet, 0.99))
            .map(|(during, before)| during.saturating_sub(before)),
    );
    assert!(
        matches!(answered, Ok(Ok(()))),
        "the broker had not framed the clipboard {took:?} after it began (CPU {cpu:?})"
    );
    // A couple of microseconds of work a message (2.4 s here). Parsing the pending message
    // again with every byte, as the broker did, allocated its whole 1 MiB buffer again for
    // each byte: 25 s of CPU here, ten times as much, for one user's clipboard.
    assert!(
        cpu < Duration::from_secs(10),
        "the broker used {cpu:?} of CPU on one clipboard"
    );
    assert!(
        !rtts.is_empty(),
        "bob got no update while alice's clipboard went through"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_brokers_identity_reads_no_secret_outside_its_desktop_namespaces() {
    use k8s_openapi::api::core::v1::{Pod, Secret};
    let Some(s) = setup_with("rbac", options(1, false, "Floating")).await else {
        return;
    };
    // What an attacker who took over the broker process holds: its own credentials.
    let file = kube::config::Kubeconfig::read_from(&s.broker_kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    let broker = kube::Client::try_from(config).unwrap();
    // A Secret of the cluster's, elsewhere.
    let admin_secrets: kube::Api<Secret> =
        kube::Api::namespaced(s.env.client.clone(), "kube-system");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cluster-credentials"},
        "stringData": {"token": "not-for-the-broker"},
    }))
    .unwrap();
    admin_secrets
        .create(&Default::default(), &secret)
        .await
        .unwrap();
    let status = |r: Result<(), kube::Error>| match r {
        Ok(()) => 200,
        Err(kube::Error::Api(e)) => e.code,
        Err(e) => panic!("{e}"),
    };
    let elsewhere: kube::Api<Secret> = kube::Api::namespaced(broker.clone(), "kube-system");
    assert_eq!(
        status(elsewhere.get("cluster-credentials").await.map(drop)),
        403,
        "the broker read a Secret in kube-system"
    );
    assert_eq!(
        status(elsewhere.list(&Default::default()).await.map(drop)),
        403,
        "the broker listed Secrets in kube-system"
    );
    let pods: kube::Api<Pod> = kube::Api::namespaced(broker.clone(), "kube-system");
    assert_eq!(status(pods.list(&Default::default()).await.map(drop)), 403);
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(broker.clone(), "kube-system");
    assert_eq!(
        status(leases.list(&Default::default()).await.map(drop)),
        403
    );
    // Where desktops live it reads a desktop's display Secret (get, never list), and it
    // still serves: a user connects and opens the desktop's page.
    let desktop = s
        .env
        .desktops()
        .list(&Default::default())
        .await
        .unwrap()
        .items[0]
        .name_any();
    let here: kube::Api<Secret> = kube::Api::namespaced(broker.clone(), &s.env.ns);
    assert_eq!(
        status(here.get(&format!("{desktop}-display")).await.map(drop)),
        200
    );
    assert_eq!(status(here.list(&Default::default()).await.map(drop)), 403);
    let alice = s.login("alice").await;
    let given = s.connect(&alice, "eng").await;
    assert_eq!(given, desktop);
    let page = s
        .page(&alice, &format!("/desktops/{}/{given}", s.env.ns))
        .await;
    assert!(page.contains(&given), "the desktop page: {page}");
}

/// The broker's TokenReviews and SubjectAccessReviews so far, from the apiserver's audit log.
fn reviews(s: &BrokerEnv) -> (usize, usize) {
    let all = tests::audit::requests(&s.env.cp.audit_log());
    let by_broker = |resource: &str| {
        all.iter()
            .filter(|r| r.user == tests::broker::BROKER_USER && r.resource == resource)
            .count()
    };
    (by_broker("tokenreviews"), by_broker("subjectaccessreviews"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bogus_tokens_and_names_cost_the_apiserver_a_bounded_number_of_reviews() {
    let Some(s) = setup_with(
        "unauthenticated",
        SetupOptions {
            audit: true,
            ..options(1, false, "Floating")
        },
    )
    .await
    else {
        return;
    };
    let (reviews_before, sars_before) = reviews(&s);
    let url = s.broker.at(&format!("/api/desktops/{}/anything", s.env.ns));
    let http = s.broker.http();
    let started = Instant::now();
    // 10,000 different bogus bearer tokens, 32 at a time; meanwhile real users log in.
    let flood = futures::stream::iter(0..10_000)
        .map(|i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let response = http
                    .get(url)
                    .bearer_auth(format!("bogus-token-{i:05}"))
                    .send()
                    .await;
                response.map(|r| r.status().as_u16()).unwrap_or(0)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<u16>>();
    let logins = async {
        let mut done = 0;
        for user in ["alice", "bob", "carol", "alice", "bob", "carol"] {
            let session = s.broker.session();
            s.broker
                .login(&s.env.cp, &session, user, &format!("{user}-pw"))
                .await
                .unwrap_or_else(|e| panic!("{user} could not log in during the flood: {e}"));
            done += 1;
        }
        done
    };
    let (statuses, logged_in) = tokio::join!(flood, logins);
    let took = started.elapsed();
    let (reviews_after, _) = reviews(&s);
    let bogus_reviews = reviews_after - reviews_before - logged_in;
    let count = |code| statuses.iter().filter(|c| **c == code).count();
    eprintln!(
        "10,000 bogus bearer tokens in {took:?}: {} answered 401, {} answered 429; {bogus_reviews} TokenReviews for them; {logged_in} logins meanwhile",
        count(401),
        count(429)
    );
    assert_eq!(count(401) + count(429), 10_000, "every bogus token refused");
    // One client: its burst of 20, then 5 a second.
    let bound = 20 + 5 * took.as_secs_f64().ceil() as usize;
    assert!(
        bogus_reviews <= bound,
        "{bogus_reviews} TokenReviews for bogus tokens (bound {bound})"
    );
    // A bogus token reviewed once (after the client's bucket refilled) costs nothing again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = http
        .get(url.clone())
        .bearer_auth("bogus-known")
        .send()
        .await;
    assert_eq!(first.map(|r| r.status().as_u16()).ok(), Some(401));
    let (before, _) = reviews(&s);
    for _ in 0..50 {
        let again = http
            .get(url.clone())
            .bearer_auth("bogus-known")
            .send()
            .await;
        assert!(matches!(again.map(|r| r.status().as_u16()), Ok(401 | 429)));
    }
    assert_eq!(reviews(&s).0, before, "a refused token was reviewed again");

    // A logged-in user asking for 1,000 random desktop names: each a 404 or a 429, and a
    // bounded number of SubjectAccessReviews (none of them reads a desktop).
    let alice = s.login("alice").await;
    let started = Instant::now();
    let names: Vec<u16> = futures::stream::iter(0..1000)
        .map(|i| {
            let (http, url) = (
                alice.http.clone(),
                s.broker
                    .at(&format!("/api/desktops/{}/random-{i:04}", s.env.ns)),
            );
            async move {
                http.get(url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let took = started.elapsed();
    let (_, sars_after) = reviews(&s);
    let sars = sars_after - sars_before;
    let count = |code| names.iter().filter(|c| **c == code).count();
    eprintln!(
        "1,000 random desktop names in {took:?}: {} answered 404, {} answered 429; {sars} SubjectAccessReviews",
        count(404),
        count(429)
    );
    assert_eq!(count(404) + count(429), 1000);
    // Two reviews (use, shadow) a name, for the 30 of the burst and 10 a second after it.
    let bound = 2 * (30 + 10 * took.as_secs_f64().ceil() as usize) + 10;
    assert!(sars <= bound, "{sars} SubjectAccessReviews (bound {bound})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logins_go_on_after_the_provider_rotates_its_signing_key() {
    let Some(s) = setup_with("rotation", options(0, false, "Floating")).await else {
        return;
    };
    s.login("alice").await;
    let provider = s.env.cp.oidc().expect("the OpenID provider");
    for round in 1..=2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        provider.rotate_key().await.unwrap();
        // The next login's ID token names a key the broker has never seen: it fetches the
        // provider's keys again, not after a restart.
        let session = s.broker.session();
        let started = Instant::now();
        s.broker
            .login(&s.env.cp, &session, "bob", "bob-pw")
            .await
            .unwrap_or_else(|e| panic!("a login after rotation {round}: {e}"));
        eprintln!("rotation {round}: bob logged in, {:?}", started.elapsed());
        let portal = s.page(&session, "/").await;
        assert!(
            portal.contains("Signed in as <strong>bob</strong>"),
            "{portal}"
        );
    }
    // One fetch of the keys per rotation (the broker's log says each).
    let log = std::fs::read_to_string(&s.broker.log).unwrap_or_default();
    let fetches = log.matches("fetched the provider's keys again").count();
    assert_eq!(fetches, 2, "one fetch per rotation:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_cookie_provider_errors_metrics_and_viewers_per_user_are_bounded() {
    let Some(s) = setup_with("small-holes", options(1, true, "Floating")).await else {
        return;
    };
    // The login cookie is pinned to this host (`__Host-`, Secure, path /).
    let start = s
        .broker
        .http()
        .get(s.broker.at("/login"))
        .send()
        .await
        .unwrap();
    let cookies: Vec<String> = start
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        cookies
            .iter()
            .any(|c| c.starts_with("__Host-verdant-login=")
                && c.contains("Secure")
                && c.contains("Path=/")),
        "{cookies:?}"
    );
    // Whatever a link puts in ?error= reaches the page and the log only as bounded,
    // printable text.
    let mut callback = s.broker.at("/auth/callback");
    callback
        .query_pairs_mut()
        .append_pair("error", "access_denied\r\nX-Injected: 1")
        .append_pair(
            "error_description",
            &format!("<script>alert(1)</script>{}", "y".repeat(5000)),
        );
    let page = s.broker.http().get(callback).send().await.unwrap();
    assert_eq!(page.status(), 401);
    assert!(page.headers().get("x-injected").is_none());
    let body = page.text().await.unwrap();
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(body.len() < 4000, "the page echoes {} bytes", body.len());
    let log = std::fs::read_to_string(&s.broker.log).unwrap_or_default();
    assert!(!log.contains("X-Injected: 1\n") && !log.contains(&"y".repeat(300)));

    // /metrics is not on the users' port, which an Ingress exposes; it is on its own.
    let public = s.broker.http().get(s.broker.at("/metrics")).send().await;
    assert_eq!(public.unwrap().status(), 404, "/metrics on the users' port");
    let metrics = reqwest::get(s.broker.metrics_url()).await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics.text().await.unwrap().contains("verdant_broker_"));

    // One user, eight viewers at most through one broker; the ninth is refused with 429.
    let alice = s.login("alice").await;
    let desktop = s.connect(&alice, "eng").await;
    let mut viewers = Vec::new();
    for _ in 0..8 {
        viewers.push(s.viewer(&alice, &desktop).await);
    }
    let grant: serde_json::Value = s.token(&alice, &desktop).await.json().await.unwrap();
    let mut url = s.broker.at(grant["path"].as_str().unwrap());
    url.set_scheme("wss").unwrap();
    let cookie = alice.cookie(&s.broker.url);
    let ninth = tests::wsrfb::connect(
        &url,
        &s.broker.ca,
        &[("cookie", &cookie), ("origin", &s.origin())],
    )
    .await;
    assert!(
        matches!(ninth, Err(tests::wsrfb::WsError::Status(429))),
        "a ninth viewer: {:?}",
        ninth.err()
    );
    drop(viewers);
}

/// A viewer of `desktop` through `broker` (any replica) for `session`, and how it closes.
async fn viewer_at(
    s: &BrokerEnv,
    broker: &tests::broker::BrokerProcess,
    session: &Session,
    desktop: &str,
) -> (
    tests::wsrfb::RfbClient<tokio::io::DuplexStream>,
    tokio::sync::oneshot::Receiver<Closed>,
) {
    let csrf = s.broker.csrf(session).await.unwrap();
    let origin = broker.url.origin().ascii_serialization();
    let grant: serde_json::Value = session
        .http
        .post(broker.at(&format!("/api/desktops/{}/{desktop}/token", s.env.ns)))
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
    let Some(s) = setup_with("sessions", options(2, true, "Floating")).await else {
        return;
    };
    // broker-2 reads sessions' groups again from the provider every 3 s (step 4).
    let b2 = s
        .start_broker_with("broker-2", &["--groups-refresh=3s"])
        .await;
    let bindings: kube::Api<RoleBinding> = kube::Api::namespaced(s.env.client.clone(), &s.env.ns);
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
    let replay = open_at(&s.broker).await;
    assert!(
        matches!(replay, Err(tests::wsrfb::WsError::Status(403))),
        "the token replayed at broker-1: {:?}",
        replay.as_ref().err()
    );
    drop(first);

    // 1. The RoleBinding that entitles alice's group to the pool goes: her viewers at both
    // replicas are closed, and her desktop's page is the same 404 as any other's.
    let (_v1, c1) = viewer_at(&s, &s.broker, &alice, &desktop).await;
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
        .get(
            s.broker
                .at(&format!("/api/desktops/{}/{desktop}", s.env.ns)),
        )
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
    let (_v3, c3) = viewer_at(&s, &s.broker, &alice, &desktop).await;
    let (_v4, c4) = viewer_at(&s, &b2, &alice, &desktop).await;
    let stolen = alice.cookie(&s.broker.url);
    let csrf = s.broker.csrf(&alice).await.unwrap();
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
    for broker in [&s.broker, &b2] {
        let thief = broker
            .http()
            .get(broker.at(&format!("/api/desktops/{}/{desktop}", s.env.ns)))
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
    let (_v5, c5) = viewer_at(&s, &s.broker, &bob1, &theirs).await;
    let (_v6, c6) = viewer_at(&s, &b2, &bob2, &theirs).await;
    let out = s
        .env
        .cp
        .kubectl()
        .args([
            "delete",
            "lease",
            "-n",
            &s.env.ns,
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
        let page = session.http.get(s.broker.at("/")).send().await.unwrap();
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
    let (_v7, c7) = viewer_at(&s, &s.broker, &alice, &hers).await;
    let (_v8, c8) = viewer_at(&s, &b2, &alice, &hers).await;
    let oidc = s.env.cp.oidc().expect("the provider");
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
        .get(s.broker.at(&format!("/api/desktops/{}/{hers}", s.env.ns)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        404,
        "alice's old desktop after leaving the group"
    );
    let home = alice.http.get(s.broker.at("/")).send().await.unwrap();
    assert_eq!(
        home.status(),
        200,
        "alice is still logged in: only the group went"
    );
}
