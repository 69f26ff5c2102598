//! Taking a desktop back from its user: [`release`], as the broker does on logout, the
//! operator when a session limit passes, and an admin by hand (`verdant-operator release`).

use crds::labels::{POOL_LABEL, RESET_ANNOTATION, reset_count};
use crds::{AssignmentPolicy, Desktop, DesktopPool};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::error::{AssignError, is_conflict, is_not_found};

/// Rounds of release's read-and-write before giving up on conflicts.
const ROUNDS: usize = 50;

/// Takes desktop `name` (in `api`'s namespace) back from its user. In a Floating pool the
/// desktop is also marked for a reset: the operator gives it a fresh launcher before anyone
/// else can have it. Releasing a desktop nobody has is not an error.
pub async fn release(api: &Api<Desktop>, name: &str) -> Result<(), AssignError> {
    // A write that conflicts (the desktop changed meanwhile) is decided again on what the
    // desktop is now.
    let mut last = None;
    for _ in 0..ROUNDS {
        let desktop = match api.get(name).await {
            Ok(desktop) => desktop,
            Err(e) if is_not_found(&e) => return Err(AssignError::NotFound(name.into())),
            Err(e) => return Err(e.into()),
        };
        let floating = match desktop.labels().get(POOL_LABEL) {
            Some(pool) => {
                let client = api.clone().into_client();
                let pools: Api<DesktopPool> = match desktop.namespace() {
                    Some(ns) => Api::namespaced(client, &ns),
                    None => Api::default_namespaced(client),
                };
                pools
                    .get_opt(pool)
                    .await?
                    .is_some_and(|p| p.spec.assignment == AssignmentPolicy::Floating)
            }
            None => false,
        };
        let mut patch = json!({
            "metadata": {"resourceVersion": desktop.resource_version()},
            "spec": {"user": null},
        });
        if floating && desktop.spec.user.is_some() {
            let resets = reset_count(desktop.annotations()) + 1;
            patch["metadata"]["annotations"] = json!({RESET_ANNOTATION: resets.to_string()});
        }
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => return Err(AssignError::NotFound(name.into())),
            Err(e) if is_conflict(&e) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| AssignError::NotFound(name.into()), AssignError::Kube))
}
