//! The DesktopPool controller, in the Desktop controller's named steps: read the pool's
//! desktops -> plan (pure, in [`plan`] and [`build`]) -> apply (the only writes, in [`apply`]:
//! session limits, creates and deletes, out-of-date marks, the status). What the controller
//! remembers between reconciles is in [`state`] and [`expectations`]. Users are given desktops
//! by the `assignment` crate.

pub mod apply;
pub mod build;
pub mod expectations;
pub mod plan;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use crds::{AssignmentPolicy, Desktop, DesktopPool};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use crate::error::{Category, Error};
use crate::hash::template_hash;
use expectations::EXPECTATION_TIMEOUT;
use state::{PoolContext, StatusDue};

/// How often every pool is looked at again, events or not.
const RESYNC: Duration = Duration::from_secs(300);

/// Reconciles one DesktopPool. A desktop the apiserver refuses to create as it is (an invalid
/// template, a quota) is shown in the pool's `ReplicaFailure` condition and tried again when
/// the pool changes; other errors go to the error policy, which retries them with backoff.
pub async fn reconcile(pool: Arc<DesktopPool>, pctx: Arc<PoolContext>) -> Result<Action, Error> {
    // Never create desktops into a terminating pool; garbage collection removes them.
    if pool.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let result = reconcile_pool(&pool, &pctx).await;
    if result.is_ok() {
        pctx.retries.succeeded(&pool.uid().unwrap_or_default());
    }
    result
}

async fn reconcile_pool(pool: &DesktopPool, pctx: &PoolContext) -> Result<Action, Error> {
    let ctx = &pctx.ctx;
    let ns = pool.namespace().unwrap_or_default();
    let desktops: Api<Desktop> = Api::namespaced(ctx.client.clone(), &ns);
    // Only the desktops this pool owns (a same-labelled stranger is left alone), from the
    // cache: it may lag the apiserver by a moment, which costs at most a create that finds
    // its name taken or a delete refused by its precondition, and another reconcile.
    let owned: Vec<Arc<Desktop>> = pctx
        .members
        .state()
        .into_iter()
        .filter(|d| {
            d.namespace().as_deref() == Some(ns.as_str())
                && d.owner_references()
                    .iter()
                    .any(|o| Some(&o.uid) == pool.metadata.uid.as_ref())
        })
        .collect();

    // Session limits: a Floating desktop whose user passed one is released (and so reset).
    // A Dedicated desktop stays with its user (only an administrator releases it).
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
            match assignment::session::check(&pool.spec.session, assignment, now) {
                Ok(Some(left)) => next_check = next_check.min(left),
                Ok(None) => {}
                Err(expired) => apply::release_expired(ctx, &desktops, desktop, expired).await?,
            }
        }
    }

    // A desktop whose spec.user was cleared by hand, not released, still runs its last
    // user's VM (the assigner will not give it while it is marked): reset it, as a release
    // would have.
    for desktop in &owned {
        if desktop.spec.user.is_none()
            && desktop.metadata.deletion_timestamp.is_none()
            && crds::labels::used_since_reset(desktop.annotations())
        {
            apply::reset_unreleased(ctx, &desktops, desktop).await?;
        }
    }

    let hash = template_hash(pool);
    let members = build::members(owned.iter().map(|d| &**d), &hash);
    let plan = plan::plan(build::sizing(pool), &members);

    // Create and delete only once the cache shows what the last reconcile created and
    // deleted: a cache a moment behind would otherwise make the same desktops again.
    let mut refused = None;
    if pctx.expectations.met(pool, &owned) {
        match apply::scale(ctx, pool, &owned, &plan, &hash, &desktops).await {
            Ok((created, deleted)) => pctx.expectations.expect(pool, created, deleted),
            Err(e) if e.category() == Category::Permanent => {
                tracing::warn!(pool = %pool.name_any(), error = %e, "the apiserver refused a desktop of the pool; waiting for the pool to change");
                ctx.metrics.count_error(e.kind());
                refused = Some(e);
            }
            Err(e) => return Err(e),
        }
    } else {
        // The cache's events bring the pool back; this only guards against a lost one.
        next_check = next_check.min(EXPECTATION_TIMEOUT);
    }

    // Assigned desktops made from an old template say so; they are replaced when released.
    for desktop in &owned {
        let stale = plan.out_of_date.contains(&desktop.name_any());
        let shown = desktop.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == apply::OUT_OF_DATE && c.status == crds::ConditionStatus::True)
        });
        if stale != shown {
            apply::mark_out_of_date(&desktops, pool, desktop, stale).await?;
        }
    }

    let failure = refused.as_ref().map(|e| build::ReplicaFailure {
        reason: format!("FailedCreate{}", e.reason()),
        message: format!(
            "{e}; fix the pool's template (or the cause), then change the pool to try again (it is also tried {})",
            crate::options::every(ctx.options.recheck_refused)
        ),
    });
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = build::status(pool, &members, &plan, failure.as_ref(), &now);
    let mut status_wait = None;
    if pool.status.as_ref() != Some(&status) {
        match pctx.status_due(pool, &status) {
            StatusDue::Written => {}
            StatusDue::In(wait) => status_wait = Some(wait),
            StatusDue::Now => apply::write_status(ctx, pool, &ns, &status).await?,
        }
        if status_wait.is_none() {
            pctx.status_written(pool, status);
        }
    }
    // Back when the next session limit comes (a second late, so it has passed), or when the
    // held-back status may be written.
    let session = (next_check < RESYNC).then(|| next_check + Duration::from_secs(1));
    let refused = refused.map(|_| ctx.options.recheck_refused);
    Ok(Action::requeue(
        [session, status_wait, refused]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(RESYNC),
    ))
}
