//! The hardened mode (`launcher.privileged: false`) on a real node: the chart's device plugin
//! DaemonSet runs `verdant-kvm-plugin` from the launcher image, it registers with the node's
//! kubelet, which advertises `devices.verdant.dev/kvm`, and an unprivileged launcher pod that asks for
//! one gets `/dev/kvm` and no other device of the node, and its desktop reaches Ready.

use std::process::Stdio;

use crds::DesktopPhase;
use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::{Api, ResourceExt};
use launcher_api::devices::KVM_RESOURCE;
use testkit::eventually;
use tests::e2e::{LIMIT, text};
use tests::env::{Env, NodeKind};

/// The device numbers every container may use without being given a device, runc's
/// defaults: null, zero, full, random, urandom, tty, console, ptmx, the pts, the wildcard
/// mknod rules, and /dev/net/tun (10:200, allowed in every container though no node is made
/// for it). Anything else the device cgroup allows came from the node.
fn default_device(rule: &str) -> bool {
    let numbers = rule.split_whitespace().nth(1).unwrap_or_default();
    [
        "*:*", "1:3", "1:5", "1:7", "1:8", "1:9", "5:0", "5:1", "5:2", "136:*", "10:200",
    ]
    .contains(&numbers)
}

/// A line of `/proc/PID/status`, such as `CapBnd`.
fn status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The rules of the cgroup v1 device controller of process `pid`.
fn device_rules(pid: u32) -> Vec<String> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroups
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "devices")
                .then(|| path.to_owned())
        })
        .expect("the process is in a devices cgroup");
    let list = format!("/sys/fs/cgroup/devices{path}/devices.list");
    std::fs::read_to_string(&list)
        .unwrap_or_else(|e| panic!("{list}: {e}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unprivileged_launcher_gets_kvm_from_the_device_plugin_and_nothing_else() {
    let Some(mut e) = Env::builder("node-hardened")
        .node(NodeKind::Real)
        .start()
        .await
    else {
        return;
    };
    let node = e.cp.node().expect("the node");
    let node_name = node.name().to_owned();
    let launcher_image = node.images().reference("launcher").unwrap().to_owned();

    // The chart's DaemonSet, with its default kubelet folder: the kubelet keeps its device
    // plugin sockets in /var/lib/kubelet/device-plugins whatever its --root-dir (so this test
    // needs the machine's one node at a time there, as the node tests run).
    let rendered = tests::chart::helm()
        .args([
            "template",
            "verdant",
            "charts/verdant",
            "--namespace",
            &e.ns,
        ])
        .args(["--show-only", "templates/launcher/kvm-plugin.yaml"])
        .args(["--set", "launcher.privileged=false"])
        .args(["--set", "launcher.image.pullPolicy=Never"])
        .current_dir(tests::chart::root())
        .stdout(Stdio::piped())
        .output()
        .expect("helm runs");
    assert!(rendered.status.success(), "helm: {}", text(&rendered));
    let yaml = String::from_utf8(rendered.stdout).unwrap();
    assert!(
        yaml.contains(&format!("image: {launcher_image}")),
        "the chart's launcher image is the node's: {yaml}"
    );
    e.apply(&yaml);

    // The kubelet finds the plugin in its plugins_registry and advertises the resource.
    let nodes: Api<KubeNode> = Api::all(e.client.clone());
    let advertised = eventually(
        "the node to advertise devices.verdant.dev/kvm",
        LIMIT,
        || async {
            let n = nodes.get(&node_name).await.ok()?;
            let q = n.status?.allocatable?.get(KVM_RESOURCE)?.0.clone();
            (q != "0").then_some(q)
        },
    )
    .await;
    eprintln!("{node_name} allocatable {KVM_RESOURCE}: {advertised}");
    assert_eq!(advertised, "110", "the chart's default number of units");

    // The operator in the hardened mode, and a desktop.
    e.kill_operator();
    let mut options = e.options("operator-hardened");
    options.launcher_pod.privileged = false;
    e.spawn_operator(options);
    e.apply(&e.demo_desktop("hardened"));
    eventually("Desktop hardened to be Ready", LIMIT, || async {
        let d = e.desktops().get("hardened").await.ok()?;
        (d.status.as_ref()?.phase == Some(DesktopPhase::Ready)).then_some(())
    })
    .await;

    let pod = e.pod_of("hardened").await;
    let container = &pod.spec.as_ref().unwrap().containers[0];
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.privileged, Some(false));
    let volumes = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .clone()
        .unwrap_or_default();
    assert!(
        volumes.iter().all(|v| v
            .host_path
            .as_ref()
            .is_none_or(|h| !h.path.starts_with("/dev"))),
        "no host device is mounted: {volumes:?}"
    );

    // The launcher process on the node: no capability even in its bounding set, no new
    // privileges, and a device cgroup that allows /dev/kvm (10:232) and the defaults only.
    let node = e.cp.node().expect("the node");
    let launcher = node
        .pod_pids(&pod.uid().unwrap())
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("verdant-launch"))
        })
        .expect("the launcher process runs on the node");
    let bounding = status_field(launcher, "CapBnd");
    let no_new_privs = status_field(launcher, "NoNewPrivs");
    let rules = device_rules(launcher);
    let mut dev: Vec<String> = std::fs::read_dir(format!("/proc/{launcher}/root/dev"))
        .unwrap()
        .filter_map(|entry| {
            use std::os::unix::fs::FileTypeExt;
            let entry = entry.ok()?;
            let kind = entry.file_type().ok()?;
            (kind.is_char_device() || kind.is_block_device())
                .then(|| entry.file_name().to_string_lossy().into_owned())
        })
        .collect();
    dev.sort();
    eprintln!(
        "launcher pid {launcher}: CapBnd {bounding}, NoNewPrivs {no_new_privs}\ndevice cgroup: {rules:?}\n/dev device nodes: {dev:?}"
    );
    assert_eq!(
        bounding, "0000000000000000",
        "the container holds no capability"
    );
    assert_eq!(no_new_privs, "1");
    assert!(
        !rules.iter().any(|r| r.starts_with("a ")),
        "a privileged container's device cgroup allows everything: {rules:?}"
    );
    assert!(
        rules.iter().any(|r| r.starts_with("c 10:232 rw")),
        "/dev/kvm is allowed: {rules:?}"
    );
    let from_node: Vec<&String> = rules
        .iter()
        .filter(|r| !default_device(r) && !r.starts_with("c 10:232 "))
        .collect();
    assert!(
        from_node.is_empty(),
        "devices beyond /dev/kvm and the defaults: {from_node:?}"
    );
    assert!(dev.contains(&"kvm".to_owned()), "{dev:?}");
    for name in &dev {
        assert!(
            [
                "kvm", "null", "zero", "full", "random", "urandom", "tty", "console", "ptmx"
            ]
            .contains(&name.as_str()),
            "a device node from the node: /dev/{name} in {dev:?}"
        );
    }
}
