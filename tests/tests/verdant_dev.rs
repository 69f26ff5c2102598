//! `verdant-dev up` / `down`: the README's local environment, end to end.

use std::path::Path;
use std::process::{Command, Output};

use tests::controlplane::{Binaries, process_alive};

fn verdant_dev(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_verdant-dev"))
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("verdant-dev runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if process_alive(pid) && cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

#[test]
fn up_serves_kubectl_and_down_leaves_nothing() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("dev");
    let marker = state_dir.to_string_lossy().into_owned();

    // Make sure a failure below still stops the environment.
    struct Down<'a>(&'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = verdant_dev(self.0, &["down"]);
        }
    }
    let _down = Down(&state_dir);

    let out = verdant_dev(&state_dir, &["up"]);
    assert!(out.status.success(), "up failed:\n{}", text(&out));
    let kubeconfig = state_dir.join("controlplane/kubeconfig");
    assert!(
        text(&out).contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "up does not print the KUBECONFIG line:\n{}",
        text(&out)
    );
    // etcd, kube-apiserver and kube-controller-manager run from this state folder.
    let running = processes_mentioning(&marker);
    assert!(
        running.len() >= 4,
        "expected serve + 3 processes, got {running:?}"
    );

    // A second `up` reports the running environment instead of starting another.
    let again = verdant_dev(&state_dir, &["up"]);
    assert!(
        again.status.success() && text(&again).contains("already up"),
        "{}",
        text(&again)
    );

    let kubectl = |args: &[&str]| {
        let out = Command::new(Binaries::expected().kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(out.status.success(), "kubectl {args:?}:\n{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    kubectl(&["get", "desktops,desktoppools", "-A"]);
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/examples");
    kubectl(&["apply", "-f", examples]);
    kubectl(&["scale", "desktoppool/classroom", "--replicas=3"]);
    let replicas = kubectl(&[
        "get",
        "desktoppool",
        "classroom",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "3");

    // The operator runs: the example desktop names a claim nobody made, and says so.
    let mut reason = String::new();
    let reported = testkit::within_blocking(std::time::Duration::from_secs(30), || {
        reason = kubectl(&[
            "get",
            "desktop",
            "alice-dev",
            "-o",
            "jsonpath={.status.phase}/{.status.conditions[?(@.type==\"VMRunning\")].reason}",
        ]);
        (reason == "Failed/PersistentVolumeClaimNotFound").then_some(())
    });
    assert!(
        reported.is_some(),
        "the operator never reported the missing claim: {reason:?}"
    );

    // Where a node can run, the whole product: the portal, and the demo pool's desktops Ready
    // in launcher pods the node runs. Else the demo desktop VM, where KVM works, behind VNC
    // with the password `up` points at.
    let node = testkit::kvm_usable().is_ok() && tests::node::missing().is_none();
    if !node {
        testkit::skip(
            testkit::NODE,
            format!(
                "no node here ({}): verdant-dev falls back to the control plane alone",
                tests::node::missing().unwrap_or_else(|| "no usable /dev/kvm".into())
            ),
        );
    }
    let kvm = testkit::kvm_usable().is_ok();
    if node {
        let shown = text(&again);
        assert!(
            shown.contains("The portal is at https://127.0.0.1:"),
            "{shown}"
        );
        assert!(shown.contains("alice / alice-pw"), "{shown}");
        let ready = std::fs::read_to_string(state_dir.join("ready")).unwrap();
        let portal = ready.lines().nth(3).unwrap().to_owned();
        let ca = std::fs::read(state_dir.join("controlplane/ca.crt")).unwrap();
        let answer = tokio::runtime::Runtime::new().unwrap().block_on(async {
            let http = reqwest::Client::builder()
                .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
                .build()
                .unwrap();
            http.get(format!("{portal}readyz"))
                .send()
                .await
                .map(|r| r.status())
        });
        assert_eq!(
            answer.ok(),
            Some(reqwest::StatusCode::OK),
            "the portal at {portal}"
        );
        let phases = kubectl(&[
            "get",
            "desktops",
            "--namespace",
            "demo",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ]);
        assert_eq!(phases, "Ready Ready", "the demo pool's desktops");
        let operator = kubectl(&[
            "get",
            "deployment",
            "--namespace",
            "verdant-system",
            "-o",
            "jsonpath={.items[*].status.readyReplicas}",
        ]);
        assert_eq!(operator, "1", "the chart's operator runs in a pod");
    } else if kvm {
        let shown = text(&again);
        assert!(
            shown.contains("The demo desktop (a tiny guest VM) is on VNC at"),
            "{shown}"
        );
        let ready = std::fs::read_to_string(state_dir.join("ready")).unwrap();
        let addr = ready.lines().nth(2).unwrap().to_owned();
        let passwd = state_dir.join("demo-vnc.passwd");
        let port = addr.rsplit(':').next().unwrap();
        match Command::new("vncsnapshot")
            .args(["-quiet", "-passwd"])
            .arg(&passwd)
            .arg(format!("127.0.0.1::{port}"))
            .arg(state.path().join("demo.jpg"))
            .output()
        {
            Ok(snap) => assert!(snap.status.success(), "vncsnapshot: {}", text(&snap)),
            Err(_) => testkit::skip(
                testkit::VIEWERS,
                "vncsnapshot is not installed: no capture of the demo desktop",
            ),
        }
    } else {
        testkit::skip(
            testkit::KVM,
            "/dev/kvm is not usable here: no demo desktop to look at",
        );
    }

    let out = verdant_dev(&state_dir, &["down"]);
    assert!(out.status.success(), "down failed:\n{}", text(&out));
    let left = processes_mentioning(&marker);
    assert!(left.is_empty(), "processes left after down: {left:?}");
    assert!(
        !state_dir.join("controlplane").exists(),
        "control-plane data left after down"
    );

    let status = verdant_dev(&state_dir, &["status"]);
    assert!(text(&status).contains("not running"), "{}", text(&status));
}
