//! Attacks on a desktop's launcher pod from the rest of the cluster, on a real node: the
//! kubelet runs the launcher image in runc, probes it through its real readiness and liveness
//! probes, and another pod (busybox, the tests' client image) plays the attacker.
//!
//! - 50 clients trickling a request a byte every 1.5 s to the probe port: the kubelet's
//!   probes keep their answers, the desktop stays Ready, and its VM is not restarted (one
//!   such client got the launcher killed before: its server answered one client at a time);
//! - `/console` (the guest's boot command line and output) from another pod: refused, while
//!   the probes still answer that pod;
//! - a Desktop whose initrd names one of the node's own files (the kubelet's key), directly,
//!   through `..`, or through a symbolic link in an allowed directory: no guest is given it.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crds::DesktopPhase;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::PostParams;
use serde_json::json;
use testkit::eventually;
use tests::e2e::{LIMIT, text};
use tests::env::{Env, NodeKind};
use tests::node::{CLIENT_IMAGE, client_image};

/// How many slow clients, and how long they trickle.
const SLOW_CLIENTS: usize = 50;
const ATTACK: Duration = Duration::from_secs(30);
/// The gap between two bytes of a slow client.
const TRICKLE: Duration = Duration::from_millis(1500);

/// Asks `GET path` of `addr` with a short timeout: the status code, or 0 without an answer.
fn get(addr: SocketAddr, path: &str) -> u16 {
    use std::io::Read;
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .is_err()
    {
        return 0;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The launcher container's restart count and whether the pod is Ready.
fn pod_state(pod: &Pod) -> (i32, bool) {
    let status = pod.status.as_ref();
    let restarts = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .map_or(0, |c| c.restart_count);
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    (restarts, ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_pod_or_desktop_reaches_a_launchers_probes_console_or_the_nodes_files() {
    let Some(e) = Env::builder("node-attacks")
        .node(NodeKind::Real)
        .start()
        .await
    else {
        return;
    };
    e.apply(&e.demo_desktop("demo"));
    eventually("Desktop demo to be Ready", LIMIT, || async {
        let d = e.desktops().get("demo").await.ok()?;
        (d.status.as_ref()?.phase == Some(DesktopPhase::Ready)).then_some(())
    })
    .await;
    let pod = e.pod_of("demo").await;
    let uid = pod.uid().unwrap();
    let ip: std::net::IpAddr = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .unwrap()
        .parse()
        .unwrap();
    let probes = SocketAddr::new(ip, launcher_api::endpoints::HTTP_PORT);

    // Another pod asks for the probe and for the console: the probe answers it, the console
    // does not.
    let node = e.cp.node().expect("the node");
    let archive = client_image(&node.dir().join("images")).unwrap();
    node.import(&archive).unwrap();
    // (Debian's static busybox has a wget that crashes; nc speaks plain HTTP as well.)
    let ip = probes.ip();
    let port = probes.port();
    let script = format!(
        "for path in healthz console; do echo \"== $path\"; \
         printf 'GET /%s HTTP/1.0\\r\\n\\r\\n' $path | /bin/busybox nc -w 5 {ip} {port}; echo; done"
    );
    let attacker: Pod = serde_json::from_value(json!({
        "metadata": {"name": "attacker"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "client",
                "image": CLIENT_IMAGE,
                "imagePullPolicy": "Never",
                "command": ["/bin/busybox", "sh", "-c", script],
                "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false},
            }],
        },
    }))
    .unwrap();
    let pods = e.pods();
    pods.create(&PostParams::default(), &attacker)
        .await
        .unwrap();
    eventually("the attacker pod to finish", LIMIT, || async {
        let phase = pods.get("attacker").await.ok()?.status?.phase?;
        (phase == "Succeeded" || phase == "Failed").then_some(())
    })
    .await;
    let logs = e.kubectl(&["logs", "attacker"]);
    let said = String::from_utf8_lossy(&logs.stdout).into_owned();
    eprintln!("the attacker pod said:\n{said}{}", text(&logs));
    let answer = |path: &str| {
        said.split(&format!("== {path}\n"))
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    assert_eq!(
        answer("healthz"),
        "HTTP/1.1 200 OK",
        "the probe answers another pod (the path works): {said}"
    );
    assert_eq!(
        answer("console"),
        "HTTP/1.1 403 Forbidden",
        "the console is refused to another pod: {said}"
    );
    assert!(
        !said.contains("demo desktop"),
        "the guest's console reached another pod: {said}"
    );

    // 50 slow clients on the probe port, for longer than the liveness probe's 3 failures
    // of 10 s take to kill a launcher; meanwhile this test asks /healthz every second, and
    // watches the pod and the desktop.
    let (restarts_before, _) = pod_state(&pods.get(&pod.name_any()).await.unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let trickling: Vec<_> = (0..SLOW_CLIENTS)
        .map(|i| {
            let stop = std::sync::Arc::clone(&stop);
            std::thread::spawn(move || {
                let request = b"GET /healthz HTTP/1.1\r\nhost: slow\r\n\r\n";
                let mut sent = 0;
                // Staggered, so some client always has a fresh connection in its first
                // seconds.
                std::thread::sleep(TRICKLE * i as u32 / SLOW_CLIENTS as u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(mut stream) = TcpStream::connect(probes) else {
                        std::thread::sleep(TRICKLE);
                        continue;
                    };
                    for byte in request {
                        if stop.load(std::sync::atomic::Ordering::Relaxed)
                            || stream.write_all(&[*byte]).is_err()
                        {
                            break;
                        }
                        sent += 1;
                        std::thread::sleep(TRICKLE);
                    }
                }
                sent
            })
        })
        .collect();
    let started = Instant::now();
    let (mut asked, mut answered, mut not_ready, mut not_ready_desktop) = (0, 0, 0, 0);
    let mut worst = Duration::ZERO;
    while started.elapsed() < ATTACK {
        let at = Instant::now();
        asked += 1;
        let status = tokio::task::spawn_blocking(move || get(probes, "/healthz"))
            .await
            .unwrap();
        if status == 200 {
            answered += 1;
            worst = worst.max(at.elapsed());
        }
        let now = pods.get(&pod.name_any()).await.unwrap();
        if !pod_state(&now).1 {
            not_ready += 1;
        }
        let phase = e
            .desktops()
            .get("demo")
            .await
            .unwrap()
            .status
            .and_then(|s| s.phase);
        if phase != Some(DesktopPhase::Ready) {
            not_ready_desktop += 1;
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(at.elapsed())).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let bytes: usize = trickling.into_iter().map(|t| t.join().unwrap()).sum();
    let now = pods.get(&pod.name_any()).await.unwrap();
    let (restarts_after, ready_after) = pod_state(&now);
    eprintln!(
        "{SLOW_CLIENTS} clients trickling a byte every {TRICKLE:?} for {ATTACK:?} ({bytes} bytes): \
         /healthz answered {answered} of {asked} (slowest {worst:?}); pod not Ready at {not_ready} \
         looks, desktop not Ready at {not_ready_desktop}; restarts {restarts_before} -> {restarts_after}"
    );
    assert_eq!(answered, asked, "/healthz answers under the attack");
    assert_eq!(not_ready, 0, "the launcher pod stayed Ready");
    assert_eq!(not_ready_desktop, 0, "the desktop stayed Ready");
    assert_eq!(
        restarts_after, restarts_before,
        "the kubelet restarted nothing"
    );
    assert!(ready_after);
    assert_eq!(
        now.uid().as_deref(),
        Some(uid.as_str()),
        "the same launcher pod"
    );

    node_files_reach_no_guest(&e).await;
}

/// A file of the node's own: the kubelet's key (or any key of the node's folder).
fn a_node_key(dir: &std::path::Path) -> std::path::PathBuf {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "key" || x == "pem") {
                return path;
            }
        }
    }
    panic!("no key under {}", dir.display());
}

async fn node_files_reach_no_guest(e: &Env) {
    let node = e.cp.node().expect("the node");
    let key = a_node_key(node.dir());
    let boot = tests::env::boot_dir(&e.cp);
    // The allowed folder's way out: `..` up to the control plane's folder, then down.
    let up = key.strip_prefix(e.cp.dir()).unwrap();
    let dotdot = format!("{}/../{}", boot.display(), up.display());
    let link = boot.join("innocent.img");
    std::os::unix::fs::symlink(&key, &link).unwrap();
    // The demo desktop, with an initrd (under spec.boot, beside the kernel).
    let with_initrd = |name: &str, initrd: &str| {
        let kernel = format!("kernel: {{hostPath: {}}}", e.kernel.display());
        e.demo_desktop(name).replace(
            &kernel,
            &format!("{kernel}\n    initrd: {{hostPath: {initrd}}}"),
        )
    };
    // Through `..`: the CRD refuses it at the door.
    let file = boot.join("dotdot.yaml");
    std::fs::write(&file, with_initrd("dotdot", &dotdot)).unwrap();
    let refused = e.kubectl(&["apply", "-f", &file.display().to_string()]);
    let said = text(&refused);
    eprintln!("dotdot: {said}");
    assert!(!refused.status.success(), "the apiserver took {dotdot}");
    assert!(
        said.contains("spec.boot.initrd.hostPath") && said.contains("plain absolute path"),
        "{said}"
    );
    // Straight to the node's key: the operator refuses it, and makes no pod.
    for (name, path) in [("direct", key.display().to_string())] {
        e.apply(&with_initrd(name, &path));
        let failed = eventually(&format!("{name}: refused"), LIMIT, || async {
            let d = e.desktops().get(name).await.ok()?;
            let status = d.status?;
            let refused = status
                .conditions
                .into_iter()
                .find(|c| c.reason == "HostPathNotAllowed")?;
            Some(refused.message)
        })
        .await;
        eprintln!("{name}: {failed}");
        assert!(failed.contains("spec.boot.initrd.hostPath"), "{failed}");
        assert!(
            e.live_pods(name).await.is_empty(),
            "{name}: a launcher pod was made with the node's key"
        );
    }
    // Lexically inside the allowed folder, really the node's key: the launcher refuses to
    // open it, and the desktop's status says why (the end of the launcher's log).
    e.apply(&with_initrd("symlink", &link.display().to_string()));
    let said = eventually(
        "symlink: the launcher refuses the way out",
        LIMIT,
        || async {
            let d = e.desktops().get("symlink").await.ok()?;
            let status = d.status?;
            assert_ne!(
                status.phase,
                Some(DesktopPhase::Ready),
                "a guest runs with the node's key"
            );
            status
                .conditions
                .into_iter()
                .map(|c| c.message)
                .find(|m| m.contains("leads out of"))
        },
    )
    .await;
    eprintln!("symlink: {said}");
    assert!(said.contains("initrd"), "{said}");
}
