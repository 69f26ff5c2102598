//! The configuration files of one node: containerd's, the CNI network's and the kubelet's. Pure
//! functions of the node's folder, names and ports, so every path the node writes is chosen
//! here and points into its own folder wherever the component lets it.

use std::net::Ipv4Addr;
use std::path::Path;

/// What a node's configuration is made from.
#[derive(Debug, Clone)]
pub(super) struct Layout<'a> {
    /// The node's own folder: every configurable path lies under it.
    pub dir: &'a Path,
    /// The node's name.
    pub name: &'a str,
    /// The bridge pods attach to (at most 15 bytes, the kernel's limit for a link name).
    pub bridge: &'a str,
    /// The third octet of the pod subnet `10.<SUBNET_B>.<c>.0/24`.
    pub subnet_c: u8,
    /// The kubelet's HTTPS port on the node's address.
    pub kubelet_port: u16,
    /// The kubelet's health port on 127.0.0.1.
    pub healthz_port: u16,
    /// The cgroup, in every controller, that the kubelet puts pods under.
    pub cgroup_root: &'a str,
    /// The pod sandbox image (loaded from an archive; never pulled).
    pub pause_image: &'a str,
}

/// The second octet of every test node's pod subnet.
pub(super) const SUBNET_B: u8 = 213;

impl Layout<'_> {
    /// The node's address: the bridge's, the pods' gateway.
    pub fn ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, SUBNET_B, self.subnet_c, 1)
    }

    /// containerd's socket.
    pub fn containerd_socket(&self) -> String {
        format!("{}/containerd.sock", self.dir.display())
    }

    /// The CNI network's name: also the prefix of the entries libcni caches in /var/lib/cni.
    pub fn network(&self) -> String {
        format!("verdant-{}", self.name)
    }

    /// containerd's config (version 2, for containerd 1.6).
    ///
    /// - `restrict_oom_score_adj`: root here lacks CAP_SYS_RESOURCE, and runc fails every
    ///   sandbox when asked for containerd's -998 (REAL-NODE.md).
    /// - `netns_mounts_under_state_dir`: pod network namespaces go under the node's folder, not
    ///   /var/run/netns, so a node removes exactly its own.
    /// - runc's state goes under the node's folder too.
    pub fn containerd_toml(&self) -> String {
        let d = self.dir.display();
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        format!(
            r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
# Snapshotters this machine has no use for; overlayfs does the work.
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"

[{cri}]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
  [{cri}.containerd]
    snapshotter = "overlayfs"
  [{cri}.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [{cri}.containerd.runtimes.runc.options]
      Root = "{d}/runc"
"#,
            socket = self.containerd_socket(),
            pause = self.pause_image,
        )
    }

    /// The pod network: Debian's bridge and host-local plugins on the node's own bridge and
    /// subnet, its IP allocations kept under the node's folder. No masquerade and no port maps:
    /// the host reaches pods on the bridge directly, and there is nothing outside to reach.
    pub fn cni_conflist(&self) -> String {
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": self.network(),
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{
                        "subnet": format!("10.{SUBNET_B}.{}.0/24", self.subnet_c),
                        "gateway": self.ip().to_string(),
                    }]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": format!("{}/cni/ipam", self.dir.display()),
                },
            }],
        })
        .to_string()
    }

    /// The kubelet's configuration file.
    ///
    /// - `failCgroupV1: false` and `cgroupfs`: this machine is cgroup v1 with a v2 hybrid mount
    ///   and no systemd.
    /// - `cgroupRoot`: the node's own cgroup, so its pods' cgroups are found and removed.
    /// - Image garbage collection never runs: the images were loaded from archives and cannot
    ///   be pulled again. Eviction thresholds are low, since a shared CI disk is not this
    ///   node's to guard.
    /// - Clients authenticate with certificates of the control plane's CA; any of them may do
    ///   anything (the kubelet listens only on the node's bridge address).
    pub fn kubelet_yaml(&self, client_ca: &Path) -> String {
        let d = self.dir.display();
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup_root}
failSwapOn: false
address: {ip}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
containerRuntimeEndpoint: unix://{socket}
imageServiceEndpoint: unix://{socket}
podLogsDir: {d}/pod-logs
volumePluginDir: {d}/volume-plugins
staticPodPath: ""
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  imagefs.available: "1%"
  nodefs.inodesFree: "1%"
serializeImagePulls: false
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: false
  x509:
    clientCAFile: {ca}
authorization:
  mode: AlwaysAllow
"#,
            cgroup_root = self.cgroup_root,
            ip = self.ip(),
            port = self.kubelet_port,
            healthz = self.healthz_port,
            socket = self.containerd_socket(),
            ca = client_ca.display(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(dir: &Path) -> Layout<'_> {
        Layout {
            dir,
            name: "node-a",
            bridge: "vd0a1b2c",
            subnet_c: 7,
            kubelet_port: 41000,
            healthz_port: 41001,
            cgroup_root: "verdant-node-a",
            pause_image: "ghcr.io/verdant-vdi/verdant-pause:0.1.0",
        }
    }

    #[test]
    fn every_path_points_into_the_nodes_folder() {
        let l = layout(Path::new("/tmp/node-x"));
        let toml = l.containerd_toml();
        for line in toml.lines().filter(|l| l.contains("= \"/")) {
            assert!(
                line.contains("\"/tmp/node-x/") || line.contains("\"/usr/lib/cni\""),
                "{line}"
            );
        }
        let yaml = l.kubelet_yaml(Path::new("/tmp/node-x/ca.crt"));
        assert!(yaml.contains("podLogsDir: /tmp/node-x/pod-logs"));
        assert!(yaml.contains("cgroupRoot: /verdant-node-a"));
        assert!(yaml.contains("address: 10.213.7.1"));
        let cni: serde_json::Value = serde_json::from_str(&l.cni_conflist()).unwrap();
        assert_eq!(cni["plugins"][0]["bridge"], "vd0a1b2c");
        assert_eq!(cni["plugins"][0]["ipam"]["dataDir"], "/tmp/node-x/cni/ipam");
        assert_eq!(
            cni["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
            "10.213.7.0/24"
        );
    }

    #[test]
    fn containerd_config_keeps_the_measured_fixes() {
        let toml = layout(Path::new("/n")).containerd_toml();
        assert!(toml.contains("restrict_oom_score_adj = true"));
        assert!(toml.contains("netns_mounts_under_state_dir = true"));
        assert!(toml.contains("sandbox_image = \"ghcr.io/verdant-vdi/verdant-pause:0.1.0\""));
    }
}
