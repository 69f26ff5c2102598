//! Giving pool desktops to users, as the broker will and as an admin can by hand
//! (`verdant-operator assign`/`release`). A desktop is taken by writing its `spec.user` with
//! the resourceVersion it was read at, so of two callers racing for one desktop exactly one
//! wins; the loser tries another. The same user asking again gets the desktop they have.

use crds::{Desktop, DesktopPhase};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::desktop::labels::POOL_LABEL;

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

/// Whether `desktop` can be given to a user now: Ready, nobody's, not being deleted.
pub fn available(desktop: &Desktop) -> bool {
    desktop.metadata.deletion_timestamp.is_none()
        && desktop.spec.user.is_none()
        && desktop
            .status
            .as_ref()
            .is_some_and(|s| s.phase == Some(DesktopPhase::Ready))
}

/// Where a user starts looking among `n` free desktops: spread by the user's name, so that
/// many users asking at once mostly try different desktops.
fn start(user: &str, n: usize) -> usize {
    let hash = user.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (hash % n as u64) as usize
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

/// Takes desktop `name` (in `api`'s namespace) back from its user. Releasing a desktop nobody
/// has is not an error.
pub async fn release(api: &Api<Desktop>, name: &str) -> Result<(), AssignError> {
    let patch = json!({"spec": {"user": null}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Err(AssignError::NotFound(name.into())),
        Err(e) => Err(e.into()),
    }
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
        assert!(available(&desktop));
        desktop.spec.user = Some("alice".into());
        assert!(!available(&desktop), "assigned");
    }
}
