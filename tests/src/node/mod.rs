//! A real Kubernetes node for end-to-end tests and `verdant-dev`: Debian's containerd 1.6 and
//! runc, the CNI bridge plugin, and kubelet and kube-scheduler built from the same pinned
//! `k8s.io/kubernetes` as the control plane (`tests/controlplane/build.sh`). Verdant's images
//! come from `images/build.sh`'s OCI archives; no registry is reached. See
//! `shared/design/REAL-NODE.md` for the facts about these machines it is built around.
//!
//! Each node has its own folder (under its control plane's), name, bridge, pod subnet, ports
//! and cgroup, so two may run at once. Dropping it stops its pods, the kubelet and containerd,
//! and removes what they left outside the folder ([`cleanup`]), also when a test panics.

mod cleanup;
mod config;
mod images;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as KubeNode;
use kube::Api;

pub use images::{CLIENT_IMAGE, Images, client_image};

use crate::controlplane::{Binaries, ControlPlane, Error, Process};
use config::{Layout, SUBNET_B};

/// How long the node may take to register and turn Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A node's network: its own bridge, with the node's address, and a /24 for its pods. It is
/// made before the control plane, whose apiserver listens on the node's address so that pods
/// reach it. Dropping it deletes the bridge.
#[derive(Debug)]
pub struct Network {
    hex: String,
    bridge: String,
    subnet_c: u8,
}

impl Network {
    /// Makes a bridge `vd<random>` with address 10.213.<c>.1/24, for a /24 no interface uses.
    pub fn create() -> Result<Self, Error> {
        preflight()?;
        let mut id = [0u8; 3];
        getrandom::fill(&mut id).map_err(|e| Error::Node(format!("no randomness: {e}")))?;
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let network = Self {
            bridge: format!("vd{hex}"),
            hex,
            subnet_c: free_subnet()?,
        };
        let ip = format!("{}/24", network.ip());
        for args in [
            vec!["link", "add", "name", &network.bridge, "type", "bridge"],
            vec!["addr", "add", &ip, "dev", &network.bridge],
            vec!["link", "set", &network.bridge, "up"],
        ] {
            run("ip", Command::new("ip").args(&args))?;
        }
        Ok(network)
    }

    /// The node's address, on the bridge: the pods' gateway.
    pub fn ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, SUBNET_B, self.subnet_c, 1)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        cleanup::delete_link(&self.bridge);
    }
}

/// A running node: containerd, kubelet and kube-scheduler. Dropping it removes it.
pub struct Node {
    dir: PathBuf,
    name: String,
    network: Network,
    cgroup_root: String,
    containerd: Option<Process>,
    kubelet: Option<Process>,
    scheduler: Option<Process>,
    images: Images,
    /// Folders the kubelet makes at fixed places that did not exist before this node.
    made_host_dirs: Vec<PathBuf>,
}

/// Where the kubelet writes whatever its configuration says: its device-plugin socket and the
/// links to container logs.
const FIXED_KUBELET_DIRS: [&str; 2] = ["/var/lib/kubelet", "/var/log/containers"];

impl Node {
    /// Starts a node on `network` for `cp` (which must run kube-controller-manager and its
    /// apiserver must have been started for nodes: see
    /// [`crate::controlplane::Options::node`]), loads `images` into its containerd, and waits
    /// until the Node object is Ready.
    pub async fn start(
        cp: &ControlPlane,
        images: &Images,
        network: Network,
    ) -> Result<Self, Error> {
        let name = format!("verdant-node-{}", network.hex);
        let dir = cp.dir().join(format!("node-{}", network.hex));
        let mut node = Self {
            dir: dir.clone(),
            network,
            cgroup_root: name.clone(),
            name,
            containerd: None,
            kubelet: None,
            scheduler: None,
            images: images.clone(),
            made_host_dirs: FIXED_KUBELET_DIRS
                .iter()
                .map(PathBuf::from)
                .filter(|d| !d.exists())
                .collect(),
        };
        // From here on, a failure drops `node`, which removes whatever was made.
        for sub in [
            "cni/net.d",
            "cni/ipam",
            "pod-logs",
            "volume-plugins",
            "kubelet",
        ] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        cleanup::create_cgroup(&node.cgroup_root)
            .map_err(|e| Error::io(Path::new("/sys/fs/cgroup"), e))?;
        let [kubelet_port, healthz_port] =
            testkit::net::free_ports().map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        let pause = images.reference("pause")?.to_owned();
        let layout = node.layout(kubelet_port, healthz_port, &pause);
        write(&dir.join("containerd.toml"), &layout.containerd_toml())?;
        write(
            &dir.join("cni/net.d/10-verdant.conflist"),
            &layout.cni_conflist(),
        )?;
        write(
            &dir.join("kubelet.yaml"),
            &layout.kubelet_yaml(&cp.pki().ca_cert),
        )?;
        let node_ip = layout.ip();

        node.start_containerd().await?;
        node.import_images()?;

        // The kubelet's credentials: a client certificate as `system:node:<name>`, which the
        // apiserver's Node authorizer and NodeRestriction admission hold to its own objects.
        let (_, node_kubeconfig) = cp
            .client_for(&format!("system:node:{}", node.name), Some("system:nodes"))
            .await?;
        let binaries = cp.binaries();
        let mut kubelet = Command::new(&binaries.kubelet);
        kubelet.args([
            format!("--config={}", dir.join("kubelet.yaml").display()),
            format!("--kubeconfig={}", node_kubeconfig.display()),
            format!("--root-dir={}", dir.join("kubelet").display()),
            format!("--cert-dir={}", dir.join("kubelet/pki").display()),
            format!("--hostname-override={}", node.name),
            format!("--node-ip={node_ip}"),
            "--v=1".to_owned(),
        ]);
        node.kubelet = Some(Process::spawn(
            "kubelet",
            kubelet,
            &dir.join("kubelet.log"),
        )?);
        node.scheduler = Some(start_scheduler(binaries, cp.kubeconfig(), &dir)?);
        node.wait_ready(&cp.client()).await?;
        Ok(node)
    }

    fn layout<'a>(&'a self, kubelet_port: u16, healthz_port: u16, pause: &'a str) -> Layout<'a> {
        Layout {
            dir: &self.dir,
            name: &self.name,
            bridge: &self.network.bridge,
            subnet_c: self.network.subnet_c,
            kubelet_port,
            healthz_port,
            cgroup_root: &self.cgroup_root,
            pause_image: pause,
        }
    }

    /// The node's name (also its Node object's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's address on its pod bridge; pod IPs are in the same /24.
    pub fn ip(&self) -> Ipv4Addr {
        self.network.ip()
    }

    /// The node's folder: configs, logs (`containerd.log`, `kubelet.log`,
    /// `kube-scheduler.log`), containerd's and the kubelet's state.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The images loaded into this node.
    pub fn images(&self) -> &Images {
        &self.images
    }

    /// A `ctr` command against this node's containerd, in the Kubernetes namespace.
    pub fn ctr(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.args([
            "--address",
            &self.containerd_socket(),
            "--namespace",
            "k8s.io",
        ]);
        cmd
    }

    fn containerd_socket(&self) -> String {
        format!("{}/containerd.sock", self.dir.display())
    }

    /// Process ids of the pod with `uid` (its sandbox and containers), from its cgroup.
    pub fn pod_pids(&self, uid: &str) -> Vec<u32> {
        let needle = format!("/pod{uid}/");
        cleanup::cgroup_pids(&self.cgroup_root)
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .is_ok_and(|c| c.contains(&needle))
            })
            .collect()
    }

    /// Every process in the node's pods.
    pub fn pod_processes(&self) -> Vec<u32> {
        cleanup::cgroup_pids(&self.cgroup_root)
    }

    /// containerd's shim processes (one per pod).
    pub fn shims(&self) -> Vec<u32> {
        cleanup::pids_mentioning(&self.containerd_socket())
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.starts_with("containerd-shim"))
            })
            .collect()
    }

    /// Stops containerd (SIGTERM, as a service manager does) and starts it again; running
    /// containers live on in their shims meanwhile.
    pub async fn restart_containerd(&mut self) -> Result<(), Error> {
        if let Some(mut old) = self.containerd.take() {
            old.stop();
        }
        self.start_containerd().await
    }

    /// Fails with the end of its log if containerd, the kubelet or kube-scheduler exited.
    pub fn check_running(&mut self) -> Result<(), Error> {
        for process in [&mut self.containerd, &mut self.kubelet, &mut self.scheduler]
            .into_iter()
            .flatten()
        {
            process.check_running()?;
        }
        Ok(())
    }

    async fn start_containerd(&mut self) -> Result<(), Error> {
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(self.dir.join("containerd.toml"));
        // Appends, so a restart keeps the first run's log.
        let log = self.dir.join("containerd.log");
        let mut process = Process::spawn_appending("containerd", cmd, &log)?;
        let start = Instant::now();
        loop {
            process.check_running()?;
            let mut version = self.ctr();
            version.arg("version");
            if version.output().is_ok_and(|o| o.status.success()) {
                break;
            }
            if start.elapsed() > Duration::from_secs(30) {
                return Err(Error::Node(format!(
                    "containerd did not serve within 30 s; the end of its log:\n{}",
                    process.log_tail(20)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.containerd = Some(process);
        Ok(())
    }

    fn import_images(&self) -> Result<(), Error> {
        for (archive, _) in &self.images.archives {
            self.import(archive)?;
        }
        Ok(())
    }

    /// Loads the OCI archive `archive` into the node's containerd (pods then run it with
    /// `imagePullPolicy: Never`).
    pub fn import(&self, archive: &Path) -> Result<(), Error> {
        let mut cmd = self.ctr();
        cmd.args(["images", "import"]).arg(archive);
        run("ctr images import", &mut cmd)
    }

    async fn wait_ready(&mut self, client: &kube::Client) -> Result<(), Error> {
        let nodes: Api<KubeNode> = Api::all(client.clone());
        let start = Instant::now();
        loop {
            self.check_running()?;
            let node = nodes.get_opt(&self.name).await?;
            let ready = node
                .as_ref()
                .and_then(|n| n.status.as_ref()?.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                let kubelet = self.kubelet.as_ref().map(|k| k.log_tail(30));
                return Err(Error::Node(format!(
                    "node {} was not Ready within {} s (registered: {}); the end of the kubelet's \
                     log:\n{}",
                    self.name,
                    READY_TIMEOUT.as_secs(),
                    node.is_some(),
                    kubelet.unwrap_or_default()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("ip", &self.ip())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(kubelet) = &self.kubelet
        {
            eprintln!(
                "node {} (test panicked); the end of the kubelet's log:\n{}",
                self.name,
                kubelet.log_tail(20)
            );
        }
        // The kubelet and the scheduler first, so that nothing starts pods again; then the
        // pods' processes and containerd's shims, then containerd; then what they left.
        for process in [&mut self.kubelet, &mut self.scheduler] {
            if let Some(mut p) = process.take() {
                p.stop();
            }
        }
        cleanup::remove_cgroup(&self.cgroup_root);
        cleanup::kill_mentioning(&self.containerd_socket());
        if let Some(mut containerd) = self.containerd.take() {
            containerd.stop();
        }
        cleanup::unmount_under(&self.dir);
        cleanup::remove_cgroup(&self.cgroup_root);
        cleanup::remove_host_files(&self.dir, &format!("verdant-{}", self.name));
        // The kubelet's fixed folders go too, if this node made them and no other kubelet
        // (another test's node) uses them now.
        if cleanup::pids_mentioning("--hostname-override=verdant-node-").is_empty() {
            for dir in &self.made_host_dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What this machine lacks to run a node, if anything (for a test to skip on, loudly).
pub fn missing() -> Option<String> {
    preflight().err().map(|e| e.to_string())
}

/// Checks that this machine has what a node needs, naming the Debian package of what is not.
fn preflight() -> Result<(), Error> {
    let needs = [
        ("containerd", "containerd"),
        ("runc", "runc"),
        ("ctr", "containerd"),
        ("ip", "iproute2"),
    ];
    for (command, package) in needs {
        if which(command).is_none() {
            return Err(Error::Node(format!(
                "a node needs {command} on PATH (Debian package {package})"
            )));
        }
    }
    for plugin in ["bridge", "host-local", "loopback"] {
        if !Path::new("/usr/lib/cni").join(plugin).is_file() {
            return Err(Error::Node(format!(
                "a node needs the CNI plugin /usr/lib/cni/{plugin} (Debian package \
                 containernetworking-plugins)"
            )));
        }
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::Node(
            "a node needs root (containerd, runc, cgroups and network links)".into(),
        ));
    }
    if !Path::new("/sys/fs/cgroup/memory/cgroup.procs").is_file() {
        return Err(Error::Node(
            "a node needs the cgroup v1 hierarchies under /sys/fs/cgroup (this harness \
             configures the kubelet for v1 with the v2 hybrid mount)"
                .into(),
        ));
    }
    Ok(())
}

/// The first `command` on PATH.
fn which(command: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(command))
        .find(|p| p.is_file())
}

/// A /24 of 10.213.0.0/16 that no interface here uses.
fn free_subnet() -> Result<u8, Error> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map_err(|e| Error::io(Path::new("ip"), e))?;
    let used = String::from_utf8_lossy(&out.stdout).into_owned();
    for _ in 0..64 {
        let mut b = [0u8; 1];
        getrandom::fill(&mut b).map_err(|e| Error::Node(format!("no randomness: {e}")))?;
        let c = b[0].clamp(1, 254);
        if !used.contains(&format!(" 10.{SUBNET_B}.{c}.")) {
            return Ok(c);
        }
    }
    Err(Error::Node(format!(
        "no free /24 left in 10.{SUBNET_B}.0.0/16"
    )))
}

fn start_scheduler(binaries: &Binaries, kubeconfig: &Path, dir: &Path) -> Result<Process, Error> {
    let mut cmd = Command::new(&binaries.kube_scheduler);
    cmd.args([
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--authentication-kubeconfig={}", kubeconfig.display()),
        format!("--authorization-kubeconfig={}", kubeconfig.display()),
        "--leader-elect=false".to_owned(),
        "--bind-address=127.0.0.1".to_owned(),
        "--secure-port=0".to_owned(),
        "--v=1".to_owned(),
    ]);
    Process::spawn("kube-scheduler", cmd, &dir.join("kube-scheduler.log"))
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Runs `cmd` to completion; fails with its output when it fails.
fn run(what: &str, cmd: &mut Command) -> Result<(), Error> {
    let out = cmd
        .output()
        .map_err(|e| Error::io(Path::new(cmd.get_program()), e))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Node(format!(
        "{what} {:?} failed ({}): {}{}",
        cmd.get_args().collect::<Vec<_>>(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )))
}
