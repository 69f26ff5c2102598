//! Several broker replicas: the same user arriving at two replicas at the same instant gets
//! one desktop, never two, and no desktop goes to two users. Replicas share only the
//! apiserver (the per-user claim Lease of `assignment::claim`) and the session key Secret.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use crds::DesktopPhase;
use futures::future::join_all;
use kube::ResourceExt;
use kube::api::ListParams;
use testkit::eventually;
use tests::broker::{BrokerProcess, Session};
use tests::brokerenv::{LIMIT, numbered_users};
use tests::env::NodeKind;

const USERS: usize = 50;
const ROUNDS: usize = 20;
const DESKTOPS: u32 = 60;

/// Connect through `broker`'s JSON API; the desktop's name, or the refusal.
async fn connect(
    broker: &BrokerProcess,
    session: &Session,
    csrf: &str,
    ns: &str,
) -> Result<String, String> {
    let response = session
        .http
        .post(broker.at(&format!("/api/pools/{ns}/eng/connect")))
        .header("origin", broker.url.origin().ascii_serialization())
        .header("x-csrf-token", csrf)
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    match body["name"].as_str() {
        Some(name) if status.is_success() => Ok(name.to_owned()),
        _ => Err(format!("{status}: {body}")),
    }
}

/// The desktop page of `name` at `broker`: Ok, or the status and the page's words.
async fn desktop_page(
    broker: &BrokerProcess,
    session: &Session,
    ns: &str,
    name: &str,
) -> Result<(), String> {
    let response = session
        .http
        .get(broker.at(&format!("/desktops/{ns}/{name}")))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(format!(
        "{status}: {}",
        body.chars().take(200).collect::<String>()
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_user_at_two_replicas_at_once_gets_one_desktop() {
    let users = numbered_users(USERS);
    let names: Vec<String> = users.iter().map(|u| u.name.clone()).collect();
    let env = tests::brokerenv::builder("broker-replicas", DESKTOPS)
        .oidc(users)
        .node(NodeKind::StandInReady)
        .eng_pool(DESKTOPS, "Dedicated")
        .start()
        .await
        .expect("no KVM needed");
    let ns = env.ns.clone();
    let b2 = env.start_broker("broker-2").await;
    let b3 = env.start_broker("broker-3").await;
    let brokers = [env.broker(), &b2, &b3];

    // One login each, at broker-1: the session cookie works at every replica.
    let sessions: Vec<(Session, String)> = join_all(names.iter().map(|user| async {
        let session = env.login(user).await;
        let csrf = env.broker().csrf(&session).await.unwrap();
        (session, csrf)
    }))
    .await;

    let desktops = env.desktops();
    let mut doubles = 0;
    let mut shared = 0;
    let mut refused = 0;
    let mut pages_refused = 0;
    let started = std::time::Instant::now();
    for round in 0..ROUNDS {
        // Every user at two different replicas at the same instant.
        let answers = join_all(names.iter().zip(&sessions).enumerate().map(
            |(i, (user, (session, csrf)))| {
                let a = brokers[(i + round) % 3];
                let b = brokers[(i + round + 1) % 3];
                let c = brokers[(i + round + 2) % 3];
                let ns = &ns;
                async move {
                    // The moment Connect answers, the desktop's page at the third replica,
                    // whose cache may not have the assignment yet: it is the user's all the same.
                    let first = async {
                        let x = connect(a, session, csrf, ns).await;
                        let page = match &x {
                            Ok(name) => Some(desktop_page(c, session, ns, name).await),
                            Err(_) => None,
                        };
                        (x, page)
                    };
                    let ((x, page), y) = tokio::join!(first, connect(b, session, csrf, ns));
                    (user.clone(), x, y, page)
                }
            },
        ))
        .await;
        let mut owners: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (user, x, y, page) in &answers {
            if let Some(Err(why)) = page {
                pages_refused += 1;
                eprintln!("round {round}: {user}'s page right after Connect: {why}");
            }
            match (x, y) {
                (Ok(x), Ok(y)) => {
                    if x != y {
                        doubles += 1;
                        eprintln!("round {round}: {user} got {x} and {y}");
                    }
                    owners.entry(x.clone()).or_default().insert(user.clone());
                    owners.entry(y.clone()).or_default().insert(user.clone());
                }
                (x, y) => {
                    refused += 1;
                    eprintln!("round {round}: {user}: {x:?} / {y:?}");
                }
            }
        }
        shared += owners.values().filter(|users| users.len() > 1).count();
        // What the cluster says: each user on at most one desktop.
        let list = desktops
            .list(&ListParams::default().labels("vdi.verdant.dev/pool=eng"))
            .await
            .unwrap();
        let mut per_user: BTreeMap<String, usize> = BTreeMap::new();
        for d in &list {
            if let Some(user) = &d.spec.user {
                *per_user.entry(user.clone()).or_default() += 1;
            }
        }
        let cluster_doubles = per_user.values().filter(|n| **n > 1).count();
        assert_eq!(
            cluster_doubles, 0,
            "round {round}: users with two desktops: {per_user:?}"
        );
        // Give everything back and wait until every desktop can be had again.
        join_all(list.iter().filter(|d| d.spec.user.is_some()).map(|d| {
            let desktops = desktops.clone();
            async move { assignment::release(&desktops, &d.name_any()).await.unwrap() }
        }))
        .await;
        eventually("every desktop to be free again", LIMIT, || async {
            let list = desktops
                .list(&ListParams::default().labels("vdi.verdant.dev/pool=eng"))
                .await
                .ok()?;
            let free = list
                .iter()
                .filter(|d| {
                    assignment::available(d)
                        && d.status.as_ref().and_then(|s| s.phase) == Some(DesktopPhase::Ready)
                })
                .count();
            (free == DESKTOPS as usize).then_some(())
        })
        .await;
    }
    // Straight to stderr, so the figures are in the log of a passing run too.
    let _ = writeln!(
        std::io::stderr(),
        "{ROUNDS} rounds x {USERS} users at 2 of 3 replicas at once: {doubles} users with two desktops, {shared} desktops with two users, {refused} refused, {pages_refused} desktop pages refused right after Connect; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(doubles, 0, "users given two desktops");
    assert_eq!(shared, 0, "desktops given to two users");
    assert_eq!(refused, 0, "connects refused (60 desktops for 50 users)");
    assert_eq!(
        pages_refused, 0,
        "desktop pages refused at another replica right after Connect"
    );
}
