//! What tests do with the environment's API: make Desktops and pools, wait for pods and
//! phases, and read what the operator did (its requests in the audit log, its events).

use std::time::Duration;

use crds::{Desktop, DesktopPhase, DesktopPool};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;
use testkit::eventually;

use super::{Env, LIMIT, OPERATOR_USER, live};

impl Env {
    /// Desktops of the test's namespace.
    pub fn desktops(&self) -> Api<Desktop> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Pools of the test's namespace.
    pub fn pools(&self) -> Api<DesktopPool> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Pods of the test's namespace.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// Creates Desktop `name` (2 vCPUs, 1Gi, a hostPath kernel, 1280x800), for `user`.
    pub async fn create_desktop(&self, name: &str, user: Option<&str>) -> Desktop {
        let mut spec = json!({
            "resources": {"cpus": 2, "memory": "1Gi"},
            "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}, "cmdline": "console=ttyS0"},
            "display": {"width": 1280, "height": 800},
        });
        if let Some(user) = user {
            spec["user"] = json!(user);
        }
        self.create_desktop_with(name, spec).await
    }

    /// Creates Desktop `name` with `spec`.
    pub async fn create_desktop_with(&self, name: &str, spec: serde_json::Value) -> Desktop {
        let desktop: Desktop = serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "Desktop",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        self.desktops()
            .create(&PostParams::default(), &desktop)
            .await
            .expect("desktop")
    }

    /// Creates pool `name` with `spec` (replicas, assignment, session...) and a small
    /// template, unless `spec` brings its own.
    pub async fn create_pool(&self, name: &str, mut spec: serde_json::Value) {
        if spec.get("template").is_none() {
            spec["template"] = json!({"spec": {
                "resources": {"cpus": 1, "memory": "1Gi"},
                "boot": {"kernel": {"hostPath": "/var/lib/verdant/vmlinuz"}},
            }});
        }
        let pool: DesktopPool = serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "DesktopPool",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        self.pools()
            .create(&PostParams::default(), &pool)
            .await
            .expect("pool");
    }

    /// Merges `spec` into Desktop `name`'s spec.
    pub async fn patch_spec(&self, name: &str, spec: serde_json::Value) {
        self.desktops()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": spec})),
            )
            .await
            .expect("patch desktop");
    }

    /// The live (not terminating) launcher pods of a desktop.
    pub async fn live_pods(&self, desktop: &str) -> Vec<Pod> {
        live(&self.pods(), &format!("vdi.verdant.dev/desktop={desktop}"))
            .await
            .expect("pods")
    }

    /// Waits for a live launcher pod of `desktop` other than the pod `not` (by uid).
    pub async fn wait_pod(&self, desktop: &str, not: Option<&Pod>) -> Pod {
        let not_uid = not.and_then(ResourceExt::uid);
        eventually(&format!("a launcher pod for {desktop}"), LIMIT, || async {
            let pods = self.live_pods(desktop).await;
            pods.into_iter()
                .find(|p| not_uid.is_none() || p.uid() != not_uid)
        })
        .await
    }

    /// Waits until Desktop `desktop` is in `phase`; returns it.
    pub async fn wait_phase(&self, desktop: &str, phase: DesktopPhase) -> Desktop {
        eventually(&format!("{desktop} in phase {phase:?}"), LIMIT, || async {
            let d = self.desktops().get(desktop).await.ok()?;
            (d.status.as_ref()?.phase == Some(phase)).then_some(d)
        })
        .await
    }

    /// The requests the operator's user made in the test's namespace, from the audit log (the
    /// environment must have been started with it).
    pub fn operator_requests(&self) -> Vec<crate::audit::Request> {
        crate::audit::requests(&self.cp.audit_log())
            .into_iter()
            .filter(|r| r.user == OPERATOR_USER && r.namespace == self.ns)
            .collect()
    }

    /// Asserts that a `verb` on `resource` the apiserver refused with `code` is tried again
    /// only as a write that waits for a change should be: at most once right away (its own
    /// status write changed the object, within 3 s), then at the operator's `recheck` ([`Self::wait_recheck`]), and
    /// not in between, where a fixed retry every few seconds would come.
    pub async fn assert_refused_until_recheck(
        &self,
        resource: &str,
        verb: &str,
        code: u16,
        recheck: Duration,
    ) {
        let (between, at) = self.wait_recheck(resource, verb, code, recheck).await;
        println!(
            "{verb} of {resource} refused with {code}: again at {between:.1?} s, then at the recheck, {at:.1} s after the first"
        );
        assert!(
            between.len() <= 1 && between.iter().all(|&s| s < 3.0),
            "{verb} of {resource} tried again at {between:.1?} s, before the recheck at {at:.1} s: a fixed retry, not a wait for a change"
        );
    }

    /// Waits for the operator to try again, on its own, a `verb` on `resource` that the
    /// apiserver refused with `code`: the first such attempt `recheck` (its injected
    /// [`operator::Options::recheck_refused`]) or more after the first refusal, less half a
    /// second for the clocks. Returns the seconds after the first refusal of the attempts in
    /// between, then of the recheck (the audit log must be on).
    pub async fn wait_recheck(
        &self,
        resource: &str,
        verb: &str,
        code: u16,
        recheck: Duration,
    ) -> (Vec<f64>, f64) {
        let soonest = recheck.as_secs_f64() - 0.5;
        let what = format!("the operator's recheck of a {verb} of {resource} refused with {code}");
        eventually(&what, recheck + LIMIT, || async {
            let times: Vec<_> = self
                .operator_requests()
                .into_iter()
                .filter(|r| r.resource == resource && r.verb == verb && r.code == code)
                .filter_map(|r| r.received)
                .collect();
            let first = *times.first()?;
            let after: Vec<f64> = times[1..]
                .iter()
                .map(|t| t.duration_since(first).as_secs_f64())
                .collect();
            let recheck = after.iter().position(|&s| s >= soonest)?;
            Some((after[..recheck].to_vec(), after[recheck]))
        })
        .await
    }

    /// The events about `object` (a Desktop or a pool) in the test's namespace.
    pub async fn events_for(&self, object: &str) -> Vec<Event> {
        Api::<Event>::namespaced(self.client.clone(), &self.ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(object))
            .collect()
    }
}
