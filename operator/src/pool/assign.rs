//! Giving pool desktops to users, as the broker will and as an admin can by hand
//! (`verdant-operator assign`/`release`). A desktop is taken by writing its `spec.user` with
//! the resourceVersion it was read at, so of two callers racing for one desktop exactly one
//! wins; the loser tries another. The same user asking again gets the desktop they have.

use crds::{AssignmentPolicy, Desktop, DesktopPhase, DesktopPool};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::desktop::build::fnv1a;
use crate::desktop::labels::{POOL_LABEL, RESET_ANNOTATION, reset_count};

/// Rounds of reading the pool and trying some of its free desktops before giving up.
const ROUNDS: usize = 50;
/// Free desktops tried per reading of the pool: after a few conflicts the list is stale
/// (others are taking desktops too), and reading again is cheaper than trying every one.
const TRIES_PER_READ: usize = 3;

/// Why a user got no desktop.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// Every desktop of the pool is taken or not Ready yet.
    #[error(
        "no desktop available in pool {pool}: every desktop is assigned or still starting; the pool grows by spec.spare up to spec.maxReplicas, so try again shortly or raise them"
    )]
    NoDesktopAvailable {
        /// The pool.
        pool: String,
    },
    /// The desktop to release does not exist.
    #[error("desktop {0} not found")]
    NotFound(String),
    /// The API server failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether `desktop` can be given to a user now: Ready, nobody's, not being deleted, and
/// its status written since its spec last changed (a desktop just released from a Floating
/// pool still shows its last user's VM as Ready until the operator has replaced it).
pub fn available(desktop: &Desktop) -> bool {
    desktop.metadata.deletion_timestamp.is_none()
        && desktop.spec.user.is_none()
        && desktop.status.as_ref().is_some_and(|s| {
            s.phase == Some(DesktopPhase::Ready)
                && s.observed_generation == desktop.metadata.generation
        })
}

/// Where a user starts looking among `n` free desktops: spread by the user's name, so that
/// many users asking at once mostly try different desktops.
fn start(user: &str, n: usize) -> usize {
    (fnv1a(user.as_bytes()) % n as u64) as usize
}

/// Gives `user` a desktop of `pool` (in `api`'s namespace): the one they already have there,
/// else an available one. Returns its name.
pub async fn assign(api: &Api<Desktop>, pool: &str, user: &str) -> Result<String, AssignError> {
    let selector = ListParams::default().labels(&format!("{POOL_LABEL}={pool}"));
    for _ in 0..ROUNDS {
        let desktops = api.list(&selector).await?.items;
        if let Some(mine) = desktops.iter().find(|d| {
            d.spec.user.as_deref() == Some(user) && d.metadata.deletion_timestamp.is_none()
        }) {
            return Ok(mine.name_any());
        }
        let free: Vec<&Desktop> = desktops.iter().filter(|d| available(d)).collect();
        if free.is_empty() {
            break;
        }
        let first = start(user, free.len());
        for desktop in free[first..]
            .iter()
            .chain(&free[..first])
            .take(TRIES_PER_READ)
        {
            // The resourceVersion makes the write conditional: a desktop someone else took
            // since the list answers 409 Conflict.
            let patch = json!({
                "metadata": {"resourceVersion": desktop.resource_version()},
                "spec": {"user": user},
            });
            match api
                .patch(
                    &desktop.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => return Ok(desktop.name_any()),
                Err(e) if is_conflict(&e) || is_not_found(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(AssignError::NoDesktopAvailable { pool: pool.into() })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_start_at_different_desktops() {
        let starts: std::collections::BTreeSet<usize> =
            (0..50).map(|i| start(&format!("user-{i}"), 100)).collect();
        assert!(starts.len() > 30, "{starts:?}");
        assert_eq!(start("alice", 100), start("alice", 100));
        assert_eq!(start("alice", 1), 0);
    }

    #[test]
    fn only_ready_unassigned_desktops_are_available() {
        let mut desktop: Desktop = serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "Desktop",
            "metadata": {"name": "p-1"},
            "spec": {
                "resources": {"cpus": 1, "memory": "1Gi"},
                "boot": {"kernel": {"hostPath": "/k"}},
            },
        }))
        .unwrap();
        assert!(!available(&desktop), "no status yet");
        desktop.status = Some(crds::DesktopStatus {
            phase: Some(DesktopPhase::Ready),
            ..Default::default()
        });
        desktop.metadata.generation = Some(2);
        assert!(!available(&desktop), "status older than the spec");
        desktop.status.as_mut().unwrap().observed_generation = Some(2);
        assert!(available(&desktop));
        desktop.spec.user = Some("alice".into());
        assert!(!available(&desktop), "assigned");
    }
}
