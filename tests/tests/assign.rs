//! Giving pool desktops to users (the `assignment` crate) against a real kube-apiserver:
//! many users at once, through several assigners (as several broker replicas would), never
//! share a desktop, and no desktop gets two users; the same user asking again, even many times
//! at once, gets the same desktop; with nothing free the answer says so, and only then: a
//! desktop free at the apiserver but not yet in the assigner's watch cache is given.

use std::collections::{BTreeMap, BTreeSet};

use assignment::{AssignError, Assigner, release};
use crds::{Desktop, DesktopPool};
use futures::future::join_all;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use tests::env::Env;

const POOL: &str = "office";

/// Desktop number `i` of pool [`POOL`], as the pool controller would make it.
fn pool_desktop(i: usize) -> Desktop {
    serde_json::from_value(json!({
        "apiVersion": "vdi.verdant.dev/v1alpha1",
        "kind": "Desktop",
        "metadata": {"name": format!("{POOL}-{i:03}"), "labels": {"vdi.verdant.dev/pool": POOL}},
        "spec": {
            "resources": {"cpus": 1, "memory": "1Gi"},
            "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}},
        },
    }))
    .unwrap()
}

/// `n` Desktops of pool [`POOL`] in `ns`, Ready (the test writes their status, as the
/// operator would once the launchers are up).
async fn ready_pool(api: &Api<Desktop>, n: usize) {
    join_all((0..n).map(|i| async move {
        api.create(&PostParams::default(), &pool_desktop(i))
            .await
            .unwrap();
    }))
    .await;
    settle(api).await;
}

/// The DesktopPool object of [`POOL`] (no operator runs here: its desktops are made by
/// [`ready_pool`]).
async fn create_pool(api: &Api<Desktop>) {
    let pool: DesktopPool = serde_json::from_value(json!({
        "apiVersion": "vdi.verdant.dev/v1alpha1",
        "kind": "DesktopPool",
        "metadata": {"name": POOL},
        "spec": {"replicas": 0, "template": {"spec": {
            "resources": {"cpus": 1, "memory": "1Gi"},
            "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}},
        }}},
    }))
    .unwrap();
    let ns = api.namespace().expect("a namespaced api");
    Api::<DesktopPool>::namespaced(api.clone().into_client(), ns)
        .create(&PostParams::default(), &pool)
        .await
        .unwrap();
}

/// Writes `desktop`'s status as the operator does once its launcher is up: Ready, for the
/// spec as it is now (`observedGeneration`).
async fn mark_ready(api: &Api<Desktop>, desktop: &Desktop) {
    let status =
        json!({"status": {"phase": "Ready", "observedGeneration": desktop.metadata.generation}});
    api.patch_status(
        &desktop.name_any(),
        &PatchParams::default(),
        &Patch::Merge(status),
    )
    .await
    .unwrap();
}

/// Marks every desktop Ready again ([`mark_ready`]).
async fn settle(api: &Api<Desktop>) {
    let desktops = api.list(&ListParams::default()).await.unwrap().items;
    join_all(desktops.iter().map(|d| mark_ready(api, d))).await;
}

/// Who has which desktop, read back from the apiserver.
async fn owners(api: &Api<Desktop>) -> BTreeMap<String, String> {
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|d| Some((d.name_any(), d.spec.user?)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_users_at_once_get_a_hundred_distinct_desktops_twenty_times() {
    let env = Env::builder("rush").api_only().start().await;
    let env = env.expect("the API alone needs no part of the machine");
    let api = env.desktops();
    create_pool(&api).await;
    ready_pool(&api, 100).await;
    // Four assigners, each with its own cache, as four broker replicas would be: users of
    // different ones race for the same desktops through the apiserver's preconditions.
    let assigners: Vec<Assigner> = (0..4).map(|_| Assigner::new(api.clone())).collect();
    let mut rounds = Vec::new();
    for round in 0..20 {
        let users: Vec<String> = (0..200).map(|i| format!("r{round}-user-{i}")).collect();
        let started = std::time::Instant::now();
        let results = join_all(
            users
                .iter()
                .enumerate()
                .map(|(i, u)| assigners[i % assigners.len()].assign(POOL, u)),
        )
        .await;
        rounds.push(started.elapsed());
        let mut given = BTreeMap::new();
        let mut refused = 0;
        for (user, result) in users.iter().zip(results) {
            match result {
                Ok(desktop) => {
                    assert!(
                        given.insert(desktop.clone(), user.clone()).is_none(),
                        "round {round}: {desktop} given twice"
                    );
                }
                Err(AssignError::NoDesktopAvailable { pool }) => {
                    assert_eq!(pool, POOL);
                    refused += 1;
                }
                Err(e) => panic!("round {round}: {user}: {e}"),
            }
        }
        assert_eq!((given.len(), refused), (100, 100), "round {round}");
        // The apiserver agrees: each desktop has the user it was given, no user twice.
        let stored = owners(&api).await;
        assert_eq!(stored, given, "round {round}");
        let users: BTreeSet<&String> = stored.values().collect();
        assert_eq!(users.len(), 100, "round {round}: a user with two desktops");
        for released in join_all(stored.keys().map(|d| release(&api, d))).await {
            released.expect("release");
        }
        assert!(owners(&api).await.is_empty());
        // A released desktop is not given again before the operator has caught up with it.
        assert!(matches!(
            Assigner::new(api.clone()).assign(POOL, "too-early").await,
            Err(AssignError::NoDesktopAvailable { .. })
        ));
        settle(&api).await;
    }
    rounds.sort();
    println!(
        "200 concurrent assigns (4 assigners) on 100 Ready desktops: median {:?} a round (min {:?}, max {:?}, 20 rounds)",
        rounds[rounds.len() / 2],
        rounds[0],
        rounds[rounds.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_user_gets_the_same_desktop_and_an_empty_pool_says_so() {
    let env = Env::builder("steady").api_only().start().await;
    let env = env.expect("the API alone needs no part of the machine");
    let api = env.desktops();
    let assigner = Assigner::new(api.clone());
    let refused = assigner
        .assign(POOL, "alice")
        .await
        .expect_err("no pool yet");
    assert!(
        matches!(&refused, AssignError::NoPool { pool, namespace } if pool == POOL && namespace == "steady"),
        "{refused:?}"
    );
    assert!(
        refused
            .to_string()
            .starts_with("desktop pool office not found in namespace steady"),
        "{refused}"
    );
    create_pool(&api).await;
    // A name spec.user cannot take is refused before anything is looked at.
    let refused = assigner
        .assign(POOL, "alice smith")
        .await
        .expect_err("not a user name");
    assert!(
        refused.to_string().starts_with(
            "user \"alice smith\" cannot have a desktop: a user name (spec.user) is 1-253"
        ),
        "{refused}"
    );
    let refused = assigner
        .assign(POOL, "alice")
        .await
        .expect_err("no desktops yet");
    assert!(
        refused
            .to_string()
            .contains("no desktop available in pool office"),
        "{refused}"
    );
    ready_pool(&api, 3).await;
    // Ten requests of one user at once: one desktop.
    let first: BTreeSet<String> = join_all((0..10).map(|_| assigner.assign(POOL, "alice")))
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(first.len(), 1, "{first:?}");
    let first = first.into_iter().next().unwrap();
    // Again, and through another assigner.
    assert_eq!(assigner.assign(POOL, "alice").await.unwrap(), first);
    let other_broker = Assigner::new(api.clone());
    assert_eq!(other_broker.assign(POOL, "alice").await.unwrap(), first);
    let other = assigner.assign(POOL, "bob").await.unwrap();
    assert_ne!(other, first);
    assert_eq!(
        owners(&api).await,
        BTreeMap::from([(first.clone(), "alice".into()), (other, "bob".into())])
    );
    release(&api, &first).await.unwrap();
    assert!(!owners(&api).await.contains_key(&first));
    // Releasing a desktop nobody has is not an error.
    release(&api, &first).await.unwrap();
    assert!(matches!(
        release(&api, "office-999").await,
        Err(AssignError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_desktop_ready_a_moment_ago_is_given_at_once() {
    let env = Env::builder("fresh").api_only().start().await;
    let env = env.expect("the API alone needs no part of the machine");
    let api = env.desktops();
    create_pool(&api).await;
    let assigner = Assigner::new(api.clone());
    // The cache lists before the first desktop exists.
    assert!(matches!(
        assigner.assign(POOL, "nobody").await,
        Err(AssignError::NoDesktopAvailable { .. })
    ));
    // Each round one desktop turns Ready, the only free one, and a user asks the moment the
    // apiserver has written it: the assigner's watch may not have it yet, but the answer is
    // that desktop, never "no desktop available".
    const ROUNDS: usize = 50;
    for i in 0..ROUNDS {
        let created = api
            .create(&PostParams::default(), &pool_desktop(i))
            .await
            .unwrap();
        mark_ready(&api, &created).await;
        let given = assigner.assign(POOL, &format!("user-{i}")).await;
        assert_eq!(
            given.as_deref().ok(),
            Some(created.name_any().as_str()),
            "round {i}: {given:?}"
        );
    }
    assert_eq!(owners(&api).await.len(), ROUNDS);
}
