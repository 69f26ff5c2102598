//! How the operator runs: what `verdant-operator`'s flags set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Toleration;
use serde::Deserialize;

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The launcher container image.
    pub launcher_image: String,
    /// Where launcher pods run and how their image is pulled.
    pub launcher_pod: LauncherPod,
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`; none if unset.
    pub http: Option<SocketAddr>,
    /// Leader election, for running several replicas; none runs unconditionally.
    pub leader_election: Option<LeaderElection>,
    /// This replica's name (events, the Lease holder).
    pub identity: String,
    /// How long an object whose write the apiserver refused (invalid, forbidden) waits before
    /// the write is tried again, unless the object changes first: [`RECHECK_REFUSED`] (no
    /// flag sets it; tests shorten it to see the recheck come, and nothing sooner).
    pub recheck_refused: Duration,
}

/// How long a refused write waits for its object to change before it is tried again anyway:
/// as long as a resync, never every few seconds.
pub const RECHECK_REFUSED: Duration = Duration::from_secs(300);

/// `every 5 minutes`, `every 8 s`: how often a refused write is tried again, for its message.
pub fn every(wait: Duration) -> String {
    let secs = wait.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("every {} minutes", secs / 60)
    } else {
        format!("every {secs} s")
    }
}

/// Leader election over a `coordination.k8s.io/v1` Lease.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    /// The Lease's namespace.
    pub namespace: String,
    /// The Lease's name.
    pub lease: String,
    /// How long a holder's claim lasts without renewal; a new leader takes over within about
    /// this long after the old one dies.
    pub duration: Duration,
}

/// Where launcher pods run and how their image is pulled: the file `--launcher-settings`
/// names (the chart's `launcher` values), in the Pod API's own field names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LauncherPod {
    /// The launcher container's `imagePullPolicy` [default: Kubernetes' own].
    #[serde(default)]
    pub image_pull_policy: Option<String>,
    /// Labels a node must have to run desktops (nodes with `/dev/kvm`).
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Taints of KVM nodes that launcher pods tolerate.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// The RuntimeClass launcher pods run with [default: the cluster's].
    #[serde(default)]
    pub runtime_class_name: Option<String>,
    /// vCPUs per CPU core that launcher pods request: a desktop of N vCPUs requests N / ratio
    /// cores (plus the launcher's own overhead) [default: 1, a whole core per vCPU]. VDI
    /// desktops idle most of the time, so their hosts are overcommitted (KubeVirt's
    /// `cpuAllocationRatio`, the same setting, defaults to 10).
    #[serde(default)]
    pub cpu_allocation_ratio: Option<u32>,
    /// The host directories a Desktop may boot from: a `hostPath` must lie under one of them
    /// (no `..`, and the launcher refuses a symbolic link that leads out). None: no hostPath
    /// at all. Whoever may create a Desktop names the path, and the launcher pod is
    /// privileged, so this list is the administrator's say over what of the node a guest
    /// may be given (the kubelet's keys, say, are not under it).
    #[serde(default)]
    pub host_paths: Vec<PathBuf>,
    /// The NetworkPolicy the operator keeps in every namespace where it makes launcher pods
    /// (on unless `enabled: false`).
    #[serde(default)]
    pub network_policy: LauncherNetworkPolicy,
    /// Whether launcher pods are privileged, with the node's `/dev/kvm` mounted [default:
    /// true]. With `false` (the hardened mode) a launcher pod is not privileged, holds no
    /// capability and asks for one unit of [`launcher_api::devices::KVM_RESOURCE`], which
    /// the chart's device plugin (`verdant-kvm-plugin`) answers with `/dev/kvm` alone.
    #[serde(default = "enabled")]
    pub privileged: bool,
}

/// The launcher NetworkPolicy: in every namespace where it makes launcher pods, before the
/// first one, the operator applies a policy that lets launcher pods be reached on their VNC
/// port by the broker's pods and by nothing else (a pod's own node always reaches it, so the
/// kubelet's probes pass). Without a broker named, no pod reaches a launcher at all.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LauncherNetworkPolicy {
    /// Whether the operator keeps the policy [default: true].
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// The broker's namespace.
    #[serde(default)]
    pub broker_namespace: Option<String>,
    /// The labels of the broker's pods there.
    #[serde(default)]
    pub broker_pod_labels: BTreeMap<String, String>,
}

fn enabled() -> bool {
    true
}

impl Default for LauncherPod {
    fn default() -> Self {
        Self {
            image_pull_policy: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            runtime_class_name: None,
            cpu_allocation_ratio: None,
            host_paths: Vec::new(),
            network_policy: LauncherNetworkPolicy::default(),
            privileged: true,
        }
    }
}

impl Default for LauncherNetworkPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            broker_namespace: None,
            broker_pod_labels: BTreeMap::new(),
        }
    }
}

/// Whether `dir` can be an allowed host directory: absolute, written plainly (no `.`, `..`,
/// `//` or trailing `/`), and not the root, which would allow the whole node.
pub fn check_host_dir(dir: &Path) -> Result<(), String> {
    let text = dir.to_string_lossy();
    if !plain_absolute(&text) {
        return Err(format!(
            "{text:?} is not a plain absolute path (no `.`, `..`, `//` or trailing `/`), such as /var/lib/verdant"
        ));
    }
    if dir.components().all(|c| c == Component::RootDir) {
        return Err("\"/\" would allow every file of the node; give the directories that hold boot files, such as /var/lib/verdant".into());
    }
    Ok(())
}

/// Whether `path` is absolute with only plain names between single slashes.
pub fn plain_absolute(path: &str) -> bool {
    path == "/"
        || path.strip_prefix('/').is_some_and(|rest| {
            rest.split('/')
                .all(|name| !name.is_empty() && name != "." && name != "..")
        })
}

/// The most vCPUs per core [`LauncherPod::cpu_allocation_ratio`] may give.
pub const MAX_CPU_ALLOCATION_RATIO: u32 = 100;

impl LauncherPod {
    /// Parses the settings file's text; the error names the field and what it takes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let settings: Self = serde_saphyr::from_str(text).map_err(|e| {
            format!("{e}; the fields are imagePullPolicy, nodeSelector, tolerations, runtimeClassName, cpuAllocationRatio, hostPaths, networkPolicy and privileged")
        })?;
        for dir in &settings.host_paths {
            check_host_dir(dir).map_err(|e| format!("hostPaths: {e}"))?;
        }
        if let Some(policy) = &settings.image_pull_policy
            && !["Always", "IfNotPresent", "Never"].contains(&policy.as_str())
        {
            return Err(format!(
                "imagePullPolicy: {policy:?} is not one of Always, IfNotPresent or Never"
            ));
        }
        if let Some(ratio) = settings.cpu_allocation_ratio
            && !(1..=MAX_CPU_ALLOCATION_RATIO).contains(&ratio)
        {
            return Err(format!(
                "cpuAllocationRatio: {ratio} is not between 1 and {MAX_CPU_ALLOCATION_RATIO} (vCPUs per core)"
            ));
        }
        let policy = &settings.network_policy;
        if policy.broker_namespace.is_some() == policy.broker_pod_labels.is_empty() {
            return Err(
                "networkPolicy: give brokerNamespace and brokerPodLabels together (the broker's pods), or neither (no pod reaches a launcher)"
                    .into(),
            );
        }
        Ok(settings)
    }

    /// The CPU, in millicores, that a launcher pod of `cpus` vCPUs requests: the vCPUs over the
    /// allocation ratio, rounded up, plus the launcher's own `overhead_millis`.
    pub fn cpu_request_millis(&self, cpus: u32, overhead_millis: u64) -> u64 {
        let ratio = u64::from(self.cpu_allocation_ratio.unwrap_or(1).max(1));
        (u64::from(cpus) * 1000).div_ceil(ratio) + overhead_millis
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recheck_is_said_in_minutes_when_whole_else_in_seconds() {
        assert_eq!(every(RECHECK_REFUSED), "every 5 minutes");
        assert_eq!(every(Duration::from_secs(8)), "every 8 s");
        assert_eq!(every(Duration::from_secs(90)), "every 90 s");
    }

    #[test]
    fn launcher_settings_parse_in_the_pod_api_field_names() {
        let settings = LauncherPod::parse(
            "imagePullPolicy: IfNotPresent\nnodeSelector: {verdant.dev/kvm: \"true\"}\ntolerations:\n  - {key: kvm, operator: Exists, effect: NoSchedule}\nruntimeClassName: kvm\n",
        )
        .unwrap();
        assert_eq!(settings.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(settings.node_selector["verdant.dev/kvm"], "true");
        assert_eq!(settings.tolerations[0].key.as_deref(), Some("kvm"));
        assert_eq!(settings.runtime_class_name.as_deref(), Some("kvm"));
        assert_eq!(LauncherPod::parse("{}").unwrap(), LauncherPod::default());
        assert!(
            LauncherPod::default().privileged,
            "privileged unless hardened"
        );
        assert!(
            !LauncherPod::parse("privileged: false\n")
                .unwrap()
                .privileged
        );
    }

    #[test]
    fn the_allocation_ratio_divides_the_vcpus_a_pod_requests() {
        let whole = LauncherPod::default();
        assert_eq!(whole.cpu_request_millis(2, 100), 2100);
        let ten = LauncherPod::parse("cpuAllocationRatio: 10\n").unwrap();
        assert_eq!(ten.cpu_request_millis(2, 100), 300);
        let three = LauncherPod::parse("cpuAllocationRatio: 3\n").unwrap();
        assert_eq!(three.cpu_request_millis(1, 100), 434, "rounded up");
        for bad in ["0", "101"] {
            let e = LauncherPod::parse(&format!("cpuAllocationRatio: {bad}\n")).unwrap_err();
            assert!(
                e.contains("cpuAllocationRatio") && e.contains("between 1 and 100"),
                "{e}"
            );
        }
    }

    #[test]
    fn bad_launcher_settings_name_the_field() {
        let half =
            LauncherPod::parse("networkPolicy: {brokerNamespace: verdant-system}\n").unwrap_err();
        assert!(half.contains("brokerPodLabels"), "{half}");
        assert!(
            LauncherPod::default().network_policy.enabled,
            "on unless turned off"
        );
        assert!(
            LauncherPod::default().host_paths.is_empty(),
            "no host path unless allowed"
        );
        let ok = LauncherPod::parse("hostPaths: [/var/lib/verdant]\n").unwrap();
        assert_eq!(ok.host_paths, [PathBuf::from("/var/lib/verdant")]);
        for bad in [
            "/",
            "var/lib",
            "/var/../etc",
            "/var//lib",
            "/var/lib/",
            "/./x",
        ] {
            let e = LauncherPod::parse(&format!("hostPaths: [{bad:?}]\n")).unwrap_err();
            assert!(e.starts_with("hostPaths: "), "{bad}: {e}");
        }
        let unknown = LauncherPod::parse("nodeSelectors: {a: b}\n").unwrap_err();
        assert!(unknown.contains("nodeSelectors"), "{unknown}");
        let policy = LauncherPod::parse("imagePullPolicy: Sometimes\n").unwrap_err();
        assert!(
            policy.contains("imagePullPolicy") && policy.contains("IfNotPresent"),
            "{policy}"
        );
    }
}
