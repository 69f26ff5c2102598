//! The launcher NetworkPolicy ([`crate::options::LauncherNetworkPolicy`]): kept by the operator
//! in every namespace where it makes launcher pods, applied before the first one there, so
//! no desktop is ever reachable by other pods for want of a list someone forgot to fill in.
//! Launcher pods take VNC (5900) from the broker's pods only; nothing else reaches them from
//! other pods (their node always does: the kubelet's probes).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Patch;
use kube::{Api, Client};
use serde_json::json;

use crate::error::Error;
use crate::field_manager::{self, FIELD_MANAGER};
use crate::labels::DESKTOP_LABEL;
use crate::options::LauncherNetworkPolicy;

/// The policy's name in each namespace.
pub const POLICY_NAME: &str = "verdant-launchers";
/// How often a namespace's policy is applied again (someone may have changed or deleted it).
const REAPPLY: Duration = Duration::from_secs(300);

/// The policy for `settings` (pure).
pub fn build(settings: &LauncherNetworkPolicy) -> serde_json::Value {
    let from_broker = match &settings.broker_namespace {
        Some(namespace) => json!([{
            "from": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "podSelector": {"matchLabels": settings.broker_pod_labels},
            }],
            "ports": [{"port": launcher_api::endpoints::VNC_PORT, "protocol": "TCP"}],
        }]),
        None => json!([]),
    };
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": POLICY_NAME,
            "labels": {"app.kubernetes.io/managed-by": "verdant-operator"},
        },
        "spec": {
            "podSelector": {"matchExpressions": [{"key": DESKTOP_LABEL, "operator": "Exists"}]},
            "policyTypes": ["Ingress"],
            "ingress": from_broker,
        },
    })
}

/// The namespaces whose policy this process applied, and when.
#[derive(Default)]
pub struct Policies {
    applied: Mutex<HashMap<String, Instant>>,
    /// Held while a policy is applied: the reconciles of a pool's new desktops, which arrive
    /// at once, wait for the first one's apply instead of each applying it too.
    applying: tokio::sync::Mutex<()>,
}

impl Policies {
    /// Applies the policy in `namespace` unless this process did so in the last
    /// [`REAPPLY`]; an error means no launcher pod should be made there yet.
    pub async fn ensure(
        &self,
        client: &Client,
        settings: &LauncherNetworkPolicy,
        namespace: &str,
    ) -> Result<(), Error> {
        if !settings.enabled {
            return Ok(());
        }
        let fresh = |at: &Instant| at.elapsed() < REAPPLY;
        if self.lock().get(namespace).is_some_and(fresh) {
            return Ok(());
        }
        let _one_at_a_time = self.applying.lock().await;
        if self.lock().get(namespace).is_some_and(fresh) {
            return Ok(());
        }
        let api: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
        api.patch(
            POLICY_NAME,
            &field_manager::apply(FIELD_MANAGER),
            &Patch::Apply(build(settings)),
        )
        .await
        .map_err(|e| {
            Error::write(
                format!("applying NetworkPolicy {POLICY_NAME} in {namespace} (no launcher pod is made there without it)"),
                e,
            )
        })?;
        self.lock().insert(namespace.to_owned(), Instant::now());
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.applied.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launchers_take_vnc_from_the_broker_and_nothing_else() {
        let settings = LauncherNetworkPolicy {
            enabled: true,
            broker_namespace: Some("verdant-system".into()),
            broker_pod_labels: [(
                "app.kubernetes.io/component".to_owned(),
                "broker".to_owned(),
            )]
            .into(),
        };
        let policy: NetworkPolicy = serde_json::from_value(build(&settings)).unwrap();
        let spec = policy.spec.unwrap();
        assert_eq!(spec.policy_types.unwrap(), ["Ingress"]);
        let ingress = spec.ingress.unwrap();
        assert_eq!(ingress.len(), 1, "one rule: VNC from the broker");
        let ports = ingress[0].ports.as_ref().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            ports[0].port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(5900))
        );
        let from = &ingress[0].from.as_ref().unwrap()[0];
        assert_eq!(
            from.namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["kubernetes.io/metadata.name"],
            "verdant-system"
        );
        assert!(from.pod_selector.is_some());
        // No broker: launcher pods take nothing from any pod.
        let closed: NetworkPolicy =
            serde_json::from_value(build(&LauncherNetworkPolicy::default())).unwrap();
        assert_eq!(closed.spec.unwrap().ingress.unwrap().len(), 0);
    }
}
