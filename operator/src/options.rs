//! How the operator runs: what `verdant-operator`'s flags set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
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
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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
}

impl LauncherPod {
    /// Parses the settings file's text; the error names the field and what it takes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let settings: Self = serde_saphyr::from_str(text).map_err(|e| {
            format!("{e}; the fields are imagePullPolicy, nodeSelector, tolerations and runtimeClassName")
        })?;
        if let Some(policy) = &settings.image_pull_policy
            && !["Always", "IfNotPresent", "Never"].contains(&policy.as_str())
        {
            return Err(format!(
                "imagePullPolicy: {policy:?} is not one of Always, IfNotPresent or Never"
            ));
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn bad_launcher_settings_name_the_field() {
        let unknown = LauncherPod::parse("nodeSelectors: {a: b}\n").unwrap_err();
        assert!(unknown.contains("nodeSelectors"), "{unknown}");
        let policy = LauncherPod::parse("imagePullPolicy: Sometimes\n").unwrap_err();
        assert!(
            policy.contains("imagePullPolicy") && policy.contains("IfNotPresent"),
            "{policy}"
        );
    }
}
