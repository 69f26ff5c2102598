//! What attack traffic costs the broker: a clipboard a byte at a time, floods of bogus tokens.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tests::attacker::{RawViewer, cut_text_message};
use tests::env::Env;

/// The CPU time process `pid` has used.
fn cpu_time(pid: u32) -> Duration {
    testkit::procfs::cpu_time(pid).expect("the broker's /proc/PID/stat")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_clipboard_a_byte_at_a_time_costs_the_broker_linear_time_and_a_bounded_share() {
    let Some(s) = crate::env("cut-text", 2, true, "Floating").start().await else {
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
    let mut url = s.broker().at(grant["path"].as_str().unwrap());
    url.set_scheme("wss").unwrap();
    let cookie = alice.cookie(&s.broker().url);
    let ws = tests::wsrfb::connect(
        &url,
        &s.broker().ca,
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

    let broker_pid = s.broker().process.pid().expect("the broker's pid");
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
    // And however fast it sends, one viewer gets a bounded share of the broker: the broker
    // paces each viewer's messages (broker::proxy::pace), so this flood holds it at about 15%
    // of a core in a debug build (2% in release), where unpaced it held 78% for as long as it
    // lasted.
    let share = cpu.as_secs_f64() / took.as_secs_f64();
    assert!(
        share < 0.25,
        "one viewer's flood held {:.0}% of a core of the broker for {took:?}",
        share * 100.0
    );
}

/// The broker's TokenReviews and SubjectAccessReviews so far, from the apiserver's audit log.
fn reviews(s: &Env) -> (usize, usize) {
    let all = tests::audit::requests(&s.cp.audit_log());
    let by_broker = |resource: &str| {
        all.iter()
            .filter(|r| r.user == tests::broker::BROKER_USER && r.resource == resource)
            .count()
    };
    (by_broker("tokenreviews"), by_broker("subjectaccessreviews"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bogus_tokens_and_names_cost_the_apiserver_a_bounded_number_of_reviews() {
    let Some(s) = crate::env("unauthenticated", 1, false, "Floating")
        .audit()
        .start()
        .await
    else {
        return;
    };
    let (reviews_before, sars_before) = reviews(&s);
    let url = s.broker().at(&format!("/api/desktops/{}/anything", s.ns));
    let http = s.broker().http();
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
            let session = s.broker().session();
            s.broker()
                .login(&s.cp, &session, user, &format!("{user}-pw"))
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
                s.broker()
                    .at(&format!("/api/desktops/{}/random-{i:04}", s.ns)),
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
