//! The DesktopPool controller, in the Desktop controller's named steps: read the pool's
//! desktops -> plan (pure, in [`plan`] and [`build`]) -> create and delete (the only writes
//! besides the status) -> status (one server-side-apply patch when it changed). Users are given
//! desktops by [`assign`].

pub mod assign;
pub mod build;
pub mod plan;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use crds::{AssignmentPolicy, Desktop, DesktopPool};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use crate::Error;
use crate::controller::Context;
use crate::desktop::apply::FIELD_MANAGER;
use crate::desktop::labels::POOL_LABEL;

/// The condition on an assigned desktop made from an old template.
pub const OUT_OF_DATE: &str = "OutOfDate";
/// The pool controller's own field manager: the conditions it writes on desktops are its own,
/// beside the Desktop controller's.
const POOL_FIELD_MANAGER: &str = "verdant-operator-pool";

/// How often every pool is looked at again, events or not.
const RESYNC: Duration = Duration::from_secs(300);

/// Reconciles one DesktopPool.
pub async fn reconcile(pool: Arc<DesktopPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Never create desktops into a terminating pool; garbage collection removes them.
    if pool.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = pool.namespace().unwrap_or_default();
    let desktops: Api<Desktop> = Api::namespaced(ctx.client.clone(), &ns);
    let selector = ListParams::default().labels(&format!("{POOL_LABEL}={}", pool.name_any()));
    // Only the desktops this pool owns (a same-labelled stranger is left alone).
    let owned: Vec<Desktop> = desktops
        .list(&selector)
        .await?
        .items
        .into_iter()
        .filter(|d| {
            d.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == pool.metadata.uid.as_ref())
        })
        .collect();

    // Session limits: a Floating desktop whose user passed one is released (and so reset).
    let mut next_check = RESYNC;
    if pool.spec.assignment == AssignmentPolicy::Floating {
        let now = k8s_openapi::jiff::Timestamp::now();
        for desktop in &owned {
            let Some(assignment) = desktop
                .status
                .as_ref()
                .and_then(|s| s.assignment.as_ref())
                .filter(|a| desktop.spec.user.as_ref() == Some(&a.user))
            else {
                continue;
            };
            match session::check(&pool.spec.session, assignment, now) {
                Ok(Some(left)) => next_check = next_check.min(left),
                Ok(None) => {}
                Err(expired) => {
                    assign::release(&desktops, &desktop.name_any())
                        .await
                        .map_err(|e| Error::Pool(e.to_string()))?;
                    ctx.event(
                        desktop,
                        EventType::Normal,
                        expired.reason,
                        "Release",
                        format!("{}: released and reset for the next user", expired.message),
                    )
                    .await;
                }
            }
        }
    }

    let hash = build::template_hash(&pool);
    let members = build::members(&owned, &hash);
    let plan = plan::plan(build::sizing(&pool), &members);

    for name in &plan.delete {
        match desktops.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Replaced desktops leave their names free only once gone: new ones take other numbers.
    for name in build::new_names(&pool.name_any(), &owned, plan.create as usize) {
        let desktop = build::desktop(&pool, &name, &hash);
        match desktops.create(&PostParams::default(), &desktop).await {
            Ok(_) => {}
            // Made already (by this replica before a restart, or the one before it).
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }

    // Assigned desktops made from an old template say so; they are replaced when released.
    for desktop in &owned {
        let stale = plan.out_of_date.contains(&desktop.name_any());
        let shown = desktop.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == OUT_OF_DATE && c.status == crds::ConditionStatus::True)
        });
        if stale == shown {
            continue;
        }
        let (status, reason, message) = if stale {
            (
                "True",
                "TemplateChanged",
                format!(
                    "made from an older template of pool {}; replaced when its user releases it",
                    pool.name_any()
                ),
            )
        } else {
            (
                "False",
                "UpToDate",
                "made from the pool's template".to_owned(),
            )
        };
        let patch = serde_json::json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "Desktop",
            "status": {"conditions": [{
                "type": OUT_OF_DATE,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": k8s_openapi::jiff::Timestamp::now().to_string(),
                "observedGeneration": desktop.metadata.generation,
            }]},
        });
        desktops
            .patch_status(
                &desktop.name_any(),
                &PatchParams::apply(POOL_FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
    }

    let status = build::status(&pool, &members, &plan);
    if pool.status.as_ref() != Some(&status) {
        let pools: Api<DesktopPool> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = serde_json::json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "DesktopPool",
            "status": status,
        });
        pools
            .patch_status(
                &pool.name_any(),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await?;
    }
    // Back when the next session limit comes (a second late, so it has passed).
    Ok(Action::requeue(if next_check < RESYNC {
        next_check + Duration::from_secs(1)
    } else {
        RESYNC
    }))
}
