//! The harness itself: a control plane starts, serves, and leaves nothing behind.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use tests::ControlPlane;

fn process_alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; its state letter is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread")]
async fn starts_serves_and_cleans_up() {
    let start = Instant::now();
    let cp = ControlPlane::start().await.expect("control plane starts");
    eprintln!(
        "control plane ready in {:?} at {}",
        start.elapsed(),
        cp.server()
    );

    let cms: Api<ConfigMap> = Api::namespaced(cp.client(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("hello".into());
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
    assert!(cms.get_opt("hello").await.unwrap().is_some());

    let out = cp
        .kubectl()
        .args(["get", "configmap", "hello", "-o", "name"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "configmap/hello"
    );

    let pids = cp.pids();
    let dir = cp.dir().to_owned();
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver");
    drop(cp);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| process_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for pid in pids {
        assert!(!process_alive(pid), "process {pid} still runs after drop");
    }
    assert!(!dir.exists(), "{} still exists after drop", dir.display());
}
