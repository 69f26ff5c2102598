//! Killing the broker under live sessions: twenty browser sessions in headless Chromium (noVNC
//! through the broker; five users, four sessions each, each session its own cookie jar and
//! login) lose their connection when the broker process dies (SIGKILL), and every page
//! reconnects by itself to the new broker process on the same address, with no second login
//! (the session cookie is keyed from the shared Secret) and the same desktop for each user.
//! Five desktops, not twenty: an idle demo guest costs about 8% of a core here (emulated KVM),
//! and twenty of them leave two cores no room for Chromium.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use kube::api::ListParams;
use tests::broker::BrokerProcess;
use tests::brokerenv::numbered_users;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const USERS: usize = 5;
const SESSIONS_EACH: usize = 4;
/// How long the script may stay silent.
const STEP: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_browser_reconnects_to_a_new_broker_without_logging_in_again() {
    let Some(browser) = tests::broker::browser_scripts() else {
        return;
    };
    let users = numbered_users(USERS);
    let names: Vec<String> = users.iter().map(|u| u.name.clone()).collect();
    let pages: Vec<String> = (0..SESSIONS_EACH).flat_map(|_| names.clone()).collect();
    let Some(mut env) = tests::brokerenv::builder("broker-restart", USERS as u32)
        .oidc(users)
        .start()
        .await
    else {
        return;
    };
    let mut script = tokio::process::Command::new("node")
        .arg(browser.join("reconnect.mjs"))
        .env("BROKER_URL", env.broker().url.as_str())
        .env("USERS", pages.join(","))
        .env("POOL", "eng")
        .env("NAMESPACE", &env.ns)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut stdin = script.stdin.take().unwrap();
    let mut stdout = BufReader::new(script.stdout.take().unwrap()).lines();
    let mut before = BTreeMap::new();
    let mut after = BTreeMap::new();
    let mut killed_at = None;
    let mut new_broker: Option<BrokerProcess> = None;
    loop {
        let line = match tokio::time::timeout(STEP, stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(_) => break,
            Err(_) => panic!("the browser script said nothing for {STEP:?}"),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["connected", page, user, desktop] => {
                before.insert(page.to_string(), (user.to_string(), desktop.to_string()));
            }
            ["ready"] => {
                // A crash, not a drain: no goodbye to any browser.
                let port = env.broker().addr.port();
                env.broker_mut().kill();
                killed_at = Some(Instant::now());
                stdin.write_all(b"killed\n").await.unwrap();
                new_broker = Some(env.start_broker_on(port, "broker-2").await);
            }
            ["reconnected", page, _user, desktop, ms] => {
                after.insert(
                    page.to_string(),
                    (desktop.to_string(), ms.parse::<u64>().unwrap()),
                );
            }
            ["done"] => {}
            _ => eprintln!("browser: {line}"),
        }
    }
    assert!(
        script.wait().await.unwrap().success(),
        "the browser script failed"
    );
    assert!(
        new_broker.is_some() && killed_at.is_some(),
        "the broker was never killed"
    );
    let sessions = USERS * SESSIONS_EACH;
    assert_eq!(
        before.len(),
        sessions,
        "every session connected first: {before:?}"
    );
    assert_eq!(
        after.len(),
        sessions,
        "every browser reconnected: {after:?}"
    );
    let mut desktop_of: BTreeMap<&str, &str> = BTreeMap::new();
    for (page, (user, desktop)) in &before {
        assert_eq!(
            &after[page].0, desktop,
            "session {page} ({user}) came back to the same desktop"
        );
        let first = desktop_of.entry(user).or_insert(desktop);
        assert_eq!(
            first, desktop,
            "all of {user}'s sessions are on one desktop"
        );
    }
    // No desktop assigned twice: each user's desktop is theirs, and no user holds two.
    let list = env
        .desktops()
        .list(&ListParams::default().labels("vdi.verdant.dev/pool=eng"))
        .await
        .unwrap();
    let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for d in &list {
        if let Some(user) = &d.spec.user {
            holders
                .entry(user.clone())
                .or_default()
                .push(d.metadata.name.clone().unwrap());
        }
    }
    for (user, desktop) in &desktop_of {
        assert_eq!(
            holders.get(*user),
            Some(&vec![desktop.to_string()]),
            "{user}'s desktops: {holders:?}"
        );
    }
    assert_eq!(
        holders.len(),
        USERS,
        "no other user holds a desktop: {holders:?}"
    );
    let mut ms: Vec<u64> = after.values().map(|(_, ms)| *ms).collect();
    ms.sort_unstable();
    let _ = writeln!(
        std::io::stderr(),
        "broker killed under {sessions} browser sessions ({USERS} users): {} reconnected to the new process without a login; reconnect after the kill: median {} ms, max {} ms",
        after.len(),
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );
}
