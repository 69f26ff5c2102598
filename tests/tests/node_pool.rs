//! A pool on a real node: ten desktops reach Ready; a launcher killed from outside (SIGKILL)
//! shows on its Desktop and is replaced by a new pod with nobody's help; containerd restarted
//! under running VMs leaves them running, and leaves nothing orphaned.

use std::collections::BTreeMap;
use std::time::Instant;

use crds::{Desktop, DesktopPhase};
use kube::ResourceExt;
use kube::api::ListParams;
use testkit::eventually;
use tests::e2e::LIMIT;
use tests::env::{Env, NodeKind};

const REPLICAS: usize = 10;

/// Ready desktops of the pool, by name, with their launcher pods' uids.
async fn ready_pods(e: &Env) -> Option<BTreeMap<String, String>> {
    let desktops = e.desktops().list(&ListParams::default()).await.ok()?;
    let pods = e.pods().list(&ListParams::default()).await.ok()?;
    let mut ready = BTreeMap::new();
    for d in desktops
        .items
        .iter()
        .filter(|d| phase(d) == Some(DesktopPhase::Ready))
    {
        let pod_name = d.status.as_ref()?.pod_name.clone()?;
        let pod = pods.items.iter().find(|p| p.name_any() == pod_name)?;
        ready.insert(d.name_any(), pod.uid()?);
    }
    Some(ready)
}

fn phase(d: &Desktop) -> Option<DesktopPhase> {
    d.status.as_ref()?.phase
}

/// The launcher processes of the node, by pod uid.
fn launchers(e: &Env, uids: &BTreeMap<String, String>) -> BTreeMap<String, Vec<u32>> {
    let node = e.cp.node().expect("the node");
    uids.values()
        .map(|uid| {
            let pids = node
                .pod_pids(uid)
                .into_iter()
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == "verdant-launche")
                })
                .collect();
            (uid.clone(), pids)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_runs_on_a_real_node_and_survives_kills_and_containerd_restarts() {
    let Some(mut e) = Env::builder("node-pool").node(NodeKind::Real).start().await else {
        return;
    };
    let started = Instant::now();
    e.apply(&format!(
        "apiVersion: vdi.verdant.dev/v1alpha1
kind: DesktopPool
metadata:
  name: eng
  namespace: {ns}
spec:
  replicas: {REPLICAS}
  assignment: Floating
  template:
    spec:
{spec}",
        ns = e.ns,
        spec = e.demo_spec(6)
    ));
    let before = eventually("10 desktops Ready", LIMIT * 2, || async {
        let ready = ready_pods(&e).await?;
        (ready.len() == REPLICAS).then_some(ready)
    })
    .await;
    eprintln!(
        "{REPLICAS} desktops Ready {:?} after kubectl apply",
        started.elapsed()
    );
    let pids = launchers(&e, &before);
    for (uid, p) in &pids {
        assert_eq!(p.len(), 1, "one launcher process in pod {uid}: {p:?}");
    }

    // SIGKILL one launcher from outside: its Desktop says so, and a new pod replaces it.
    let (victim, victim_uid) = before
        .iter()
        .next()
        .map(|(d, u)| (d.clone(), u.clone()))
        .unwrap();
    let pid = pids[&victim_uid][0];
    // SAFETY: kill() with a pid read from the pod's cgroup a moment ago and a valid signal.
    assert_eq!(unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) }, 0);
    let killed = Instant::now();
    let said = eventually(
        &format!("an event on {victim} saying its launcher failed"),
        LIMIT,
        || async {
            e.events_for(&victim)
                .await
                .into_iter()
                .find(|ev| ev.reason.as_deref() == Some("LauncherFailed"))
                .map(|ev| ev.message.unwrap_or_default())
        },
    )
    .await;
    assert!(
        said.contains("killed by SIGKILL (exit 137"),
        "the event names the signal: {said}"
    );
    let replaced = eventually(
        &format!("{victim} Ready again in a new pod"),
        LIMIT,
        || async {
            let ready = ready_pods(&e).await?;
            let renewed = ready.get(&victim).is_some_and(|uid| *uid != victim_uid);
            renewed.then_some(ready)
        },
    )
    .await;
    eprintln!("{victim} Ready again {:?} after SIGKILL", killed.elapsed());
    assert_eq!(replaced.len(), REPLICAS, "{replaced:?}");
    let node = e.cp.node().unwrap();
    assert!(
        node.pod_pids(&victim_uid).is_empty(),
        "nothing of the killed pod runs on"
    );

    // Restart containerd under the running VMs: they run on in their shims, and containerd
    // finds every one of them again.
    let shims_before = node.shims().len();
    let processes_before = node.pod_processes();
    let launchers_before = launchers(&e, &replaced);
    e.cp.node_mut()
        .unwrap()
        .restart_containerd()
        .await
        .expect("containerd restarts");
    let node = e.cp.node().unwrap();
    assert_eq!(
        launchers(&e, &replaced),
        launchers_before,
        "every launcher process survived the restart"
    );
    // The kubelet reconnects and still sees every container ready; then nothing changed.
    let after = eventually("10 desktops Ready after the restart", LIMIT, || async {
        let ready = ready_pods(&e).await?;
        (ready.len() == REPLICAS).then_some(ready)
    })
    .await;
    assert_eq!(after, replaced, "the same pods, none replaced");
    let listed = node
        .ctr()
        .args(["tasks", "list", "--quiet"])
        .output()
        .unwrap();
    let tasks = String::from_utf8_lossy(&listed.stdout).lines().count();
    // One sandbox (pause) and one launcher container per pod, all known to containerd again.
    assert_eq!(tasks, 2 * REPLICAS, "containerd's tasks after the restart");
    assert_eq!(node.shims().len(), shims_before, "no shim lost or added");
    assert_eq!(
        node.pod_processes(),
        processes_before,
        "no process of a pod came or went: nothing orphaned"
    );
}
