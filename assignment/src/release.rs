//! Taking a desktop back from its user.
//!
//! - [`release`]: what an administrator (`verdant-operator release`) and the operator's session
//!   limits do: the desktop has no user any more, and a VM that had one is reset (a fresh
//!   launcher) before anyone else can have it, whatever the pool's policy;
//! - [`give_back`]: what a user does from the portal: only their own desktop, and only in a
//!   Floating pool. A Dedicated desktop stays its user's until an administrator releases it.
//!
//! Either way, the VM one user had is never given to another: the assigner marks a desktop
//! it gives ([`USED_BY_ANNOTATION`]), and only the reset removes the mark.

use crds::labels::{
    POOL_LABEL, RESET_ANNOTATION, USED_BY_ANNOTATION, reset_count, used_since_reset,
};
use crds::{AssignmentPolicy, Desktop, DesktopPool};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::error::{AssignError, is_conflict, is_not_found};

/// Rounds of release's read-and-write before giving up on conflicts.
const ROUNDS: usize = 50;

/// Who asks for a desktop back.
#[derive(Debug, Clone, Copy)]
enum By<'a> {
    /// An administrator or the operator: any desktop, any pool.
    Admin,
    /// The desktop's own user, from the portal.
    User(&'a str),
}

/// Takes desktop `name` (in `api`'s namespace) back from its user, as an administrator or a
/// session limit does: its `spec.user` is cleared, and a desktop that had a user is marked
/// for a reset, so the operator gives it a fresh launcher before anyone else can have it.
/// Releasing a desktop nobody has is not an error.
pub async fn release(api: &Api<Desktop>, name: &str) -> Result<(), AssignError> {
    release_by(api, name, By::Admin).await
}

/// Gives desktop `name` back on behalf of `user`, its user: refused with
/// [`AssignError::NotYours`] where it is not theirs (or not a pool's), and with
/// [`AssignError::Dedicated`] where its pool is Dedicated. Otherwise as [`release`].
pub async fn give_back(api: &Api<Desktop>, name: &str, user: &str) -> Result<(), AssignError> {
    release_by(api, name, By::User(user)).await
}

/// The merge patch that releases `desktop` (conditional on the version read), resetting it
/// when its VM has had a user.
fn release_patch(desktop: &Desktop) -> serde_json::Value {
    let mut patch = json!({
        "metadata": {"resourceVersion": desktop.resource_version()},
        "spec": {"user": null},
    });
    if desktop.spec.user.is_some() || used_since_reset(desktop.annotations()) {
        let resets = reset_count(desktop.annotations()) + 1;
        patch["metadata"]["annotations"] = json!({
            RESET_ANNOTATION: resets.to_string(),
            USED_BY_ANNOTATION: null,
        });
    }
    patch
}

async fn release_by(api: &Api<Desktop>, name: &str, by: By<'_>) -> Result<(), AssignError> {
    // A write that conflicts (the desktop changed meanwhile) is decided again on what the
    // desktop is now.
    let mut last = None;
    for _ in 0..ROUNDS {
        let desktop = match api.get(name).await {
            Ok(desktop) => desktop,
            Err(e) if is_not_found(&e) => return Err(AssignError::NotFound(name.into())),
            Err(e) => return Err(e.into()),
        };
        if let By::User(user) = by {
            check_give_back(api, &desktop, user).await?;
        }
        let patch = release_patch(&desktop);
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

/// Whether `user` may give `desktop` back: theirs, of a pool, and the pool Floating.
async fn check_give_back(
    api: &Api<Desktop>,
    desktop: &Desktop,
    user: &str,
) -> Result<(), AssignError> {
    let name = desktop.name_any();
    let not_yours = || AssignError::NotYours(name.clone());
    if desktop.spec.user.as_deref() != Some(user) {
        return Err(not_yours());
    }
    let Some(pool) = desktop.labels().get(POOL_LABEL) else {
        return Err(not_yours());
    };
    let pools: Api<DesktopPool> = match desktop.namespace() {
        Some(ns) => Api::namespaced(api.clone().into_client(), &ns),
        None => Api::default_namespaced(api.clone().into_client()),
    };
    // A pool that is gone gives nobody its desktops again: the user may let theirs go.
    let policy = pools.get_opt(pool).await?.map(|p| p.spec.assignment);
    if policy == Some(AssignmentPolicy::Dedicated) {
        return Err(AssignError::Dedicated {
            desktop: name,
            pool: pool.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desktop(user: Option<&str>, annotations: serde_json::Value) -> Desktop {
        serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "Desktop",
            "metadata": {"name": "p-1", "resourceVersion": "7", "annotations": annotations},
            "spec": {
                "user": user,
                "resources": {"cpus": 1, "memory": "1Gi"},
                "boot": {"kernel": {"hostPath": "/k"}},
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_release_resets_every_vm_that_had_a_user() {
        // Assigned: reset, whatever the pool's policy, and the mark goes.
        let patch = release_patch(&desktop(
            Some("alice"),
            json!({RESET_ANNOTATION: "2", USED_BY_ANNOTATION: "alice"}),
        ));
        assert_eq!(
            patch,
            json!({
                "metadata": {"resourceVersion": "7", "annotations": {RESET_ANNOTATION: "3", USED_BY_ANNOTATION: null}},
                "spec": {"user": null},
            })
        );
        // spec.user cleared by hand, the VM still marked: reset all the same.
        let patch = release_patch(&desktop(None, json!({USED_BY_ANNOTATION: "alice"})));
        assert_eq!(patch["metadata"]["annotations"][RESET_ANNOTATION], "1");
        // Nobody's and never given: nothing to reset.
        let patch = release_patch(&desktop(None, json!({})));
        assert!(patch["metadata"].get("annotations").is_none(), "{patch}");
    }
}
