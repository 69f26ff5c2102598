//! The pool controller's writes: creating and deleting desktops as the plan says, marking
//! assigned desktops made from an old template, releasing desktops whose session passed a
//! limit, and the pool's status. Every write is here; the reconcile decides.

use std::sync::Arc;

use assignment::session::Expired;
use crds::{Desktop, DesktopPool, DesktopPoolStatus};
use futures::StreamExt;
use kube::api::{DeleteParams, Patch, PostParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::{build, plan};
use crate::context::Context;
use crate::error::Error;
use crate::field_manager::{self, FIELD_MANAGER, POOL_FIELD_MANAGER};

/// The condition on an assigned desktop made from an old template.
pub const OUT_OF_DATE: &str = "OutOfDate";
/// Desktops created at once by one reconcile.
const CREATES_IN_FLIGHT: usize = 32;
/// Desktop names an event lists before it says "and N more".
const NAMES_IN_EVENT: usize = 10;

/// `names` for an event: the first few, then how many more.
fn list_names(names: &[String]) -> String {
    let shown = names[..names.len().min(NAMES_IN_EVENT)].join(", ");
    match names.len().saturating_sub(NAMES_IN_EVENT) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Releases `desktop`, whose session passed a limit (`expired`), so that it is reset for the
/// next user, and says so in an event.
pub async fn release_expired(
    ctx: &Context,
    desktops: &Api<Desktop>,
    desktop: &Desktop,
    expired: Expired,
) -> Result<(), Error> {
    assignment::release(desktops, &desktop.name_any()).await?;
    ctx.event(
        desktop,
        EventType::Normal,
        expired.reason,
        "Release",
        format!("{}: released and reset for the next user", expired.message),
    )
    .await;
    Ok(())
}

/// Resets `desktop`, whose `spec.user` was cleared without a release (by hand), so that its
/// last user's VM goes before anyone else can have the desktop, and says so in an event.
pub async fn reset_unreleased(
    ctx: &Context,
    desktops: &Api<Desktop>,
    desktop: &Desktop,
) -> Result<(), Error> {
    assignment::release(desktops, &desktop.name_any()).await?;
    let user = desktop
        .annotations()
        .get(crds::labels::USED_BY_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    ctx.event(
        desktop,
        EventType::Normal,
        "Reset",
        "Release",
        format!(
            "spec.user was cleared without a release; reset so that {user}'s VM goes to nobody else (release desktops with verdant-operator release, which does this at once)"
        ),
    )
    .await;
    Ok(())
}

/// Marks `desktop` as made from an older template of `pool` (`stale`), or as up to date again,
/// with the pool controller's own `OutOfDate` condition.
pub async fn mark_out_of_date(
    desktops: &Api<Desktop>,
    pool: &DesktopPool,
    desktop: &Desktop,
    stale: bool,
) -> Result<(), Error> {
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
            &field_manager::apply(POOL_FIELD_MANAGER),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Writes the pool's status (server-side apply).
pub async fn write_status(
    ctx: &Context,
    pool: &DesktopPool,
    ns: &str,
    status: &DesktopPoolStatus,
) -> Result<(), Error> {
    let pools: Api<DesktopPool> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({
        "apiVersion": "vdi.verdant.dev/v1alpha1",
        "kind": "DesktopPool",
        "status": status,
    });
    pools
        .patch_status(
            &pool.name_any(),
            &field_manager::apply(FIELD_MANAGER),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Deletes and creates desktops as `plan` says; returns the names created and deleted.
pub async fn scale(
    ctx: &Context,
    pool: &DesktopPool,
    owned: &[Arc<Desktop>],
    plan: &plan::Plan,
    hash: &str,
    desktops: &Api<Desktop>,
) -> Result<(Vec<String>, Vec<String>), Error> {
    let mut deleted = Vec::new();
    for name in &plan.delete {
        // Deleted only as planned: a desktop assigned (or otherwise changed) since the cache
        // saw it answers 409 Conflict and is planned again.
        let Some(desktop) = owned.iter().find(|d| &d.name_any() == name) else {
            continue;
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: desktop.resource_version(),
                uid: desktop.uid(),
            }),
            ..DeleteParams::default()
        };
        match desktops.delete(name, &params).await {
            Ok(_) => deleted.push(name.clone()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(Error::write(format!("deleting desktop {name}"), e)),
        }
    }
    let scaled_down = deleted
        .iter()
        .filter(|n| plan.delete[..plan.scale_down].contains(n))
        .cloned()
        .collect::<Vec<_>>();
    let replaced = deleted
        .iter()
        .filter(|n| !scaled_down.contains(n))
        .cloned()
        .collect::<Vec<_>>();
    if !scaled_down.is_empty() {
        let note = format!(
            "Deleted {} desktops to scale down to {}: {}",
            scaled_down.len(),
            plan.desired,
            list_names(&scaled_down)
        );
        ctx.event(pool, EventType::Normal, "ScaledDown", "Delete", note)
            .await;
    }
    if !replaced.is_empty() {
        let note = format!(
            "Deleted {} desktops made from an older template, to be made again: {}",
            replaced.len(),
            list_names(&replaced)
        );
        ctx.event(pool, EventType::Normal, "TemplateChanged", "Delete", note)
            .await;
    }

    // Replaced desktops leave their names free only once gone: new ones take other numbers.
    // Creates go a few dozen at a time; the first failure (not "made already") stops them.
    let names = build::new_names(
        &pool.name_any(),
        owned.iter().map(|d| &**d),
        plan.create as usize,
    );
    let mut creates = futures::stream::iter(names.into_iter().map(|name| {
        let desktop = build::desktop(pool, &name, hash);
        let desktops = desktops.clone();
        async move {
            match desktops.create(&PostParams::default(), &desktop).await {
                Ok(_) => Ok(Some(name)),
                // Made already (by this replica before a restart, or the one before it).
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
                Err(e) => Err(Error::write(format!("creating desktop {name}"), e)),
            }
        }
    }))
    .buffer_unordered(CREATES_IN_FLIGHT);
    let mut created = Vec::new();
    let mut failed = None;
    while let Some(result) = creates.next().await {
        match result {
            Ok(Some(name)) => created.push(name),
            Ok(None) => {}
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if !created.is_empty() {
        created.sort_by_key(|n| (n.len(), n.clone()));
        let note = format!(
            "Created {} desktops: {}",
            created.len(),
            list_names(&created)
        );
        ctx.event(pool, EventType::Normal, "Created", "Create", note)
            .await;
    }
    if let Some(e) = failed {
        ctx.event(
            pool,
            EventType::Warning,
            "CreateFailed",
            "Create",
            format!("Cannot create desktops: {e}"),
        )
        .await;
        return Err(e);
    }

    Ok((created, deleted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_name_the_first_ten_desktops_and_count_the_rest() {
        let names: Vec<String> = (0..12).map(|i| format!("p-{i}")).collect();
        assert_eq!(list_names(&names[..2]), "p-0, p-1");
        assert_eq!(
            list_names(&names),
            "p-0, p-1, p-2, p-3, p-4, p-5, p-6, p-7, p-8, p-9 and 2 more"
        );
        assert_eq!(list_names(&[]), "");
    }
}
