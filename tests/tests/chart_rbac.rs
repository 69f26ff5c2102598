//! The chart's RBAC is enough, and no more than enough. The operator runs with a token of the
//! chart's own ServiceAccount (from the TokenRequest API, as in a pod), not as an admin, and
//! reconciles a Desktop and a pool to Ready with the stand-in kubelet. Then each verb of each
//! rule of the chart's `rbac/` files is removed in turn, and one of the named scenarios below
//! must fail without it; a verb whose removal breaks nothing fails the test (remove it from the
//! rule, or add the scenario that needs it).

use std::future::Future;
use std::time::{Duration, Instant};

use crds::{Desktop, DesktopPhase, DesktopPool};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role, RoleBinding};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tests::ControlPlane;
use tests::chart::{helm, output, rules};
use tests::controlplane::service_account_client;
use tests::env::{Env, stand_in_ready};
use tests::kubelet::{Kubelet, Reaper};

/// How long a scenario may take before it counts as failed.
const LIMIT: Duration = Duration::from_secs(40);

/// Polls `check` until it returns `Some` ([`testkit::within`]); an error naming `what` after
/// `LIMIT`, which fails the scenario instead of the test.
async fn until<T, F, Fut>(what: &str, check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let found = testkit::within(LIMIT, check).await;
    found.ok_or_else(|| format!("no {what} within {LIMIT:?}"))
}

/// One namespace where an operator runs and the scenarios play, with an admin client.
struct Stage {
    admin: Client,
    ns: String,
}

impl Stage {
    fn desktops(&self) -> Api<Desktop> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    fn pools(&self) -> Api<DesktopPool> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.admin.clone(), &self.ns)
    }

    /// A stand-in kubelet that starts every launcher pod of the namespace as soon as it
    /// appears, and completes deletions.
    fn kubelet(&self) -> Reaper {
        let kubelet = Kubelet::new(self.admin.clone(), &self.ns, "node-1");
        stand_in_ready(kubelet, self.pods())
    }

    async fn create_desktop(&self, name: &str, kernel: serde_json::Value) -> Result<(), String> {
        let desktop: Desktop = serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "Desktop",
            "metadata": {"name": name},
            "spec": {"resources": {"cpus": 1, "memory": "256Mi"}, "boot": {"kernel": kernel}},
        }))
        .unwrap();
        self.desktops()
            .create(&PostParams::default(), &desktop)
            .await
            .map(drop)
            .map_err(|e| format!("creating desktop {name}: {e}"))
    }

    async fn phase(&self, name: &str, phase: DesktopPhase) -> Result<(), String> {
        until(&format!("desktop {name} in phase {phase:?}"), || async {
            let d = self.desktops().get(name).await.ok()?;
            (d.status?.phase == Some(phase)).then_some(())
        })
        .await
    }

    async fn live_pods(&self, desktop: &str) -> usize {
        let selector = format!("vdi.verdant.dev/desktop={desktop}");
        self.pods()
            .list(&ListParams::default().labels(&selector))
            .await
            .map(|l| {
                l.items
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .count()
            })
            .unwrap_or(0)
    }
}

/// The scenarios, in the order they run; each names what it needs.
const SCENARIOS: [&str; 8] = [
    "a_desktop_reaches_ready",
    "a_pool_reaches_ready",
    "a_pool_scaled_down_deletes_a_desktop",
    "a_floating_desktop_disconnected_too_long_is_released",
    "a_stopped_desktop_loses_its_launcher_pod",
    "a_restarted_desktop_counts_its_repeated_events_as_a_series",
    "a_desktop_booting_from_a_claim_gets_a_launcher_pod",
    "the_desktop_has_its_ready_event",
];

async fn scenario(stage: &Stage, name: &str) -> Result<(), String> {
    match name {
        // Desktops watched, pods and Secrets made, status written.
        "a_desktop_reaches_ready" => {
            stage
                .create_desktop("d1", json!({"hostPath": "/var/lib/verdant/k"}))
                .await?;
            stage.phase("d1", DesktopPhase::Ready).await
        }
        // Pools watched, desktops made, pool status written.
        "a_pool_reaches_ready" => {
            let pool: DesktopPool = serde_json::from_value(json!({
                "apiVersion": "vdi.verdant.dev/v1alpha1",
                "kind": "DesktopPool",
                "metadata": {"name": "p1"},
                "spec": {"replicas": 3, "template": {"spec": {
                    "resources": {"cpus": 1, "memory": "256Mi"}, "boot": {"kernel": {"hostPath": "/var/lib/verdant/k"}}}}},
            }))
            .unwrap();
            stage
                .pools()
                .create(&PostParams::default(), &pool)
                .await
                .map_err(|e| format!("creating pool p1: {e}"))?;
            until("pool p1 Ready with 3 ready desktops", || async {
                let status = stage.pools().get("p1").await.ok()?.status?;
                let ready = status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == crds::ConditionStatus::True);
                (ready && status.ready == 3).then_some(())
            })
            .await
        }
        "a_pool_scaled_down_deletes_a_desktop" => {
            stage
                .pools()
                .patch(
                    "p1",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"replicas": 2}})),
                )
                .await
                .map_err(|e| format!("scaling p1: {e}"))?;
            until("pool p1 down to 2 desktops", || async {
                let list = stage
                    .desktops()
                    .list(&ListParams::default().labels("vdi.verdant.dev/pool=p1"))
                    .await
                    .ok()?;
                let live = list
                    .items
                    .iter()
                    .filter(|d| d.metadata.deletion_timestamp.is_none())
                    .count();
                (live == 2).then_some(())
            })
            .await
        }
        // The pool's session limit: the operator reads the desktop and its pool, and takes
        // the desktop back (spec.user cleared, a reset marked) with a patch.
        "a_floating_desktop_disconnected_too_long_is_released" => {
            let merge = |value: serde_json::Value| Patch::Merge(value);
            stage
                .pools()
                .patch(
                    "p1",
                    &PatchParams::default(),
                    &merge(json!({"spec": {"session": {"disconnectTimeout": "5m"}}})),
                )
                .await
                .map_err(|e| format!("limiting p1's sessions: {e}"))?;
            let list = stage
                .desktops()
                .list(&ListParams::default().labels("vdi.verdant.dev/pool=p1"))
                .await
                .map_err(|e| e.to_string())?;
            let name = list
                .items
                .iter()
                .find(|d| d.metadata.deletion_timestamp.is_none())
                .map(ResourceExt::name_any)
                .ok_or("p1 has no desktop")?;
            stage
                .desktops()
                .patch(
                    &name,
                    &PatchParams::default(),
                    &merge(json!({"spec": {"user": "alice"}})),
                )
                .await
                .map_err(|e| format!("assigning {name}: {e}"))?;
            let ago = |minutes: i64| {
                (k8s_openapi::jiff::Timestamp::now()
                    - k8s_openapi::jiff::SignedDuration::from_mins(minutes))
                .to_string()
            };
            // As the broker reports it: alice connected an hour ago, gone 10 minutes ago.
            stage
                .desktops()
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &merge(json!({"status": {"assignment": {
                        "user": "alice", "since": ago(60), "session": "Disconnected", "lastActivity": ago(10),
                    }}})),
                )
                .await
                .map_err(|e| format!("reporting alice gone: {e}"))?;
            until(&format!("{name} released"), || async {
                let d = stage.desktops().get(&name).await.ok()?;
                d.spec.user.is_none().then_some(())
            })
            .await
        }
        "a_stopped_desktop_loses_its_launcher_pod" => {
            stage
                .desktops()
                .patch(
                    "d1",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"running": false}})),
                )
                .await
                .map_err(|e| format!("stopping d1: {e}"))?;
            until("d1 with no live launcher pod", || async {
                (stage.live_pods("d1").await == 0).then_some(())
            })
            .await?;
            stage.phase("d1", DesktopPhase::Stopped).await
        }
        // Started again: a second LauncherCreated event for d1, which the recorder folds into
        // a series by patching the first.
        "a_restarted_desktop_counts_its_repeated_events_as_a_series" => {
            stage
                .desktops()
                .patch(
                    "d1",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"running": true}})),
                )
                .await
                .map_err(|e| format!("starting d1: {e}"))?;
            stage.phase("d1", DesktopPhase::Ready).await?;
            let events: Api<Event> = Api::namespaced(stage.admin.clone(), &stage.ns);
            until("a LauncherCreated event of d1 counted twice", || async {
                let list = events.list(&ListParams::default()).await.ok()?;
                list.items
                    .iter()
                    .any(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("d1")
                            && e.reason.as_deref() == Some("LauncherCreated")
                            && e.series.as_ref().is_some_and(|s| s.count >= 2)
                    })
                    .then_some(())
            })
            .await
        }
        // The operator checks that a claim a Desktop boots from exists before making its pod.
        "a_desktop_booting_from_a_claim_gets_a_launcher_pod" => {
            let claim: PersistentVolumeClaim = serde_json::from_value(json!({
                "metadata": {"name": "boot"},
                "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}},
            }))
            .unwrap();
            Api::<PersistentVolumeClaim>::namespaced(stage.admin.clone(), &stage.ns)
                .create(&PostParams::default(), &claim)
                .await
                .map_err(|e| format!("creating claim boot: {e}"))?;
            stage
                .create_desktop(
                    "d2",
                    json!({"persistentVolumeClaim": {"claimName": "boot", "path": "vmlinuz"}}),
                )
                .await?;
            until("a launcher pod for d2", || async {
                (stage.live_pods("d2").await > 0).then_some(())
            })
            .await
        }
        "the_desktop_has_its_ready_event" => {
            let events: Api<Event> = Api::namespaced(stage.admin.clone(), &stage.ns);
            until("a DisplayReady event of d1", || async {
                let list = events.list(&ListParams::default()).await.ok()?;
                list.items
                    .iter()
                    .any(|e| {
                        e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("d1")
                            && e.reason.as_deref() == Some("DisplayReady")
                    })
                    .then_some(())
            })
            .await
        }
        other => Err(format!("no scenario {other}")),
    }
}

/// Runs the operator as `client` in `stage.ns` (leader election in that namespace too, as
/// the chart runs it) and the scenarios in order; the first that fails, with why.
async fn play(
    stage: &Stage,
    client: Client,
    lease_ns: &str,
    watch_all: bool,
) -> Result<(), (String, String)> {
    let options = operator::Options {
        launcher_image: "registry.example/verdant/launcher:test".into(),
        launcher_pod: operator::LauncherPod {
            host_paths: vec!["/var/lib/verdant".into()],
            ..Default::default()
        },
        namespaces: if watch_all {
            Vec::new()
        } else {
            vec![stage.ns.clone()]
        },
        http: None,
        leader_election: Some(operator::LeaderElection {
            namespace: lease_ns.into(),
            lease: format!("verdant-operator-{}", stage.ns),
            duration: Duration::from_secs(10),
        }),
        identity: format!("operator-{}", stage.ns),
        recheck_refused: operator::RECHECK_REFUSED,
    };
    let operator = Reaper::spawn(async move {
        if let Err(e) = operator::run(client, options, std::future::pending()).await {
            eprintln!("operator stopped: {e}");
        }
    });
    let _kubelet = stage.kubelet();
    for name in SCENARIOS {
        if let Err(why) = scenario(stage, name).await {
            drop(operator);
            return Err((name.to_owned(), why));
        }
    }
    drop(operator);
    Ok(())
}

/// Makes namespace `ns` with ServiceAccount `operator` bound, in `ns` only, to `cluster_rules`
/// (by a RoleBinding to a ClusterRole) and `lease_rules` (a Role); a client as that account.
async fn stage_with_rules(
    cp: &ControlPlane,
    ns: &str,
    cluster_rules: Vec<PolicyRule>,
    lease_rules: Vec<PolicyRule>,
) -> (Stage, Client) {
    let admin = cp.client();
    let pp = PostParams::default();
    namespace(&admin, ns).await;
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "operator"}})).unwrap(),
        )
        .await
        .expect("service account");
    let role = ClusterRole {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("operator-{ns}")),
            ..Default::default()
        },
        rules: Some(cluster_rules),
        ..Default::default()
    };
    Api::<ClusterRole>::all(admin.clone())
        .create(&pp, &role)
        .await
        .expect("cluster role");
    let lease_role = Role {
        metadata: kube::api::ObjectMeta {
            name: Some("operator-lease".into()),
            ..Default::default()
        },
        rules: Some(lease_rules),
    };
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&pp, &lease_role)
        .await
        .expect("role");
    let subjects = json!([{"kind": "ServiceAccount", "name": "operator", "namespace": ns}]);
    for (name, kind, role) in [
        ("operator", "ClusterRole", format!("operator-{ns}")),
        ("operator-lease", "Role", "operator-lease".into()),
    ] {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": subjects,
        }))
        .unwrap();
        Api::<RoleBinding>::namespaced(admin.clone(), ns)
            .create(&pp, &binding)
            .await
            .expect("binding");
    }
    let client = service_account_client(cp, ns, "operator")
        .await
        .expect("a token for the account");
    (
        Stage {
            admin,
            ns: ns.into(),
        },
        client,
    )
}

/// Makes namespace `ns` and its `default` ServiceAccount, which pods need (no
/// kube-controller-manager runs here to make it).
async fn namespace(admin: &Client, ns: &str) {
    let pp = PostParams::default();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(admin.clone())
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("namespace");
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap(),
        )
        .await
        .expect("the default service account");
}

/// A rule, briefly: `verbs resources.group`.
fn describe(rule: &PolicyRule) -> String {
    let groups = rule.api_groups.clone().unwrap_or_default().join(",");
    let resources = rule.resources.clone().unwrap_or_default().join(",");
    format!("{} {resources}.{groups}", rule.verbs.join(","))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_reconciles_with_the_charts_service_account_and_needs_every_rule() {
    let cp = Env::bare("default").await;

    // The chart, installed with helm: CRDs, the ServiceAccount, its ClusterRole and bindings.
    output(helm().arg("--kubeconfig").arg(cp.kubeconfig()).args([
        "install",
        "verdant",
        "charts/verdant",
        "--namespace",
        "verdant-system",
        "--create-namespace",
    ]));
    tests::chart::wait_for_crds(&cp);

    // 1. The chart's own ServiceAccount, all namespaces, as the chart runs the operator.
    let client = service_account_client(&cp, "verdant-system", "verdant-operator")
        .await
        .expect("a token for the chart's ServiceAccount");
    let admin = cp.client();
    namespace(&admin, "full").await;
    let full = Stage {
        admin: admin.clone(),
        ns: "full".into(),
    };
    let started = Instant::now();
    if let Err((name, why)) = play(&full, client, "verdant-system", true).await {
        let state = output(cp.kubectl().args([
            "get",
            "desktops,desktoppools,pods,leases,events.events.k8s.io",
            "-A",
            "-o",
            "yaml",
        ]));
        panic!("with the chart's ServiceAccount, {name} failed: {why}\n{state}");
    }
    println!(
        "the chart's ServiceAccount: every scenario passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // 2. Each verb of each rule removed in turn (a rule with one verb goes whole), each case
    // in its own namespace with its own ServiceAccount, nine at a time.
    let cluster = rules("operator");
    let lease = rules("operator-leader-election");
    let mut cases = Vec::new();
    for (file, set) in [("cluster", &cluster), ("lease", &lease)] {
        for (i, rule) in set.iter().enumerate() {
            for verb in &rule.verbs {
                let mut without = set.clone();
                without[i].verbs.retain(|v| v != verb);
                if without[i].verbs.is_empty() {
                    without.remove(i);
                }
                let removed = PolicyRule {
                    verbs: vec![verb.clone()],
                    ..rule.clone()
                };
                let (cluster_rules, lease_rules) = match file {
                    "cluster" => (without, lease.clone()),
                    _ => (cluster.clone(), without),
                };
                let ns = format!("without-{}", cases.len());
                cases.push((ns, describe(&removed), cluster_rules, lease_rules));
            }
        }
    }
    let runs = futures::stream::iter(cases.into_iter().map(
        |(ns, rule, cluster_rules, lease_rules)| {
            let cp = &cp;
            async move {
                let (stage, client) = stage_with_rules(cp, &ns, cluster_rules, lease_rules).await;
                let ns = stage.ns.clone();
                (rule, play(&stage, client, &ns, false).await)
            }
        },
    ))
    .buffer_unordered(9)
    .collect::<Vec<_>>()
    .await;
    let mut unneeded = Vec::new();
    for (rule, result) in runs {
        match result {
            Err((name, why)) => println!("without `{rule}`: {name} fails ({why})"),
            Ok(()) => unneeded.push(rule),
        }
    }
    assert!(
        unneeded.is_empty(),
        "no scenario needs these rules of charts/verdant/rbac/: {unneeded:?}; remove them, or add the scenario that needs them"
    );
}
