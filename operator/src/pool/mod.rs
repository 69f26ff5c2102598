//! The DesktopPool controller, in the Desktop controller's named steps: read the pool's
//! desktops -> plan (pure, in [`plan`] and [`build`]) -> create and delete (the only writes
//! besides the status) -> status (one server-side-apply patch when it changed). Users are given
//! desktops by [`assign`].

pub mod assign;
pub mod build;
pub mod plan;
pub mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crds::{AssignmentPolicy, Desktop, DesktopPool, DesktopPoolStatus};
use futures::StreamExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};

use crate::Error;
use crate::controller::Context;
use crate::desktop::apply::FIELD_MANAGER;

/// The condition on an assigned desktop made from an old template.
pub const OUT_OF_DATE: &str = "OutOfDate";
/// The pool controller's own field manager: the conditions it writes on desktops are its own,
/// beside the Desktop controller's.
const POOL_FIELD_MANAGER: &str = "verdant-operator-pool";

/// How often every pool is looked at again, events or not.
const RESYNC: Duration = Duration::from_secs(300);

/// Desktops created at once by one reconcile.
const CREATES_IN_FLIGHT: usize = 32;
/// Desktop names an event lists before it says "and N more".
const NAMES_IN_EVENT: usize = 10;

/// What the pool controller's reconciles share: the operator's context and the cache of pool
/// desktops, filled by the watch that triggers the pool's reconciles.
pub struct PoolContext {
    /// The operator's context (client, options, events, metrics).
    pub ctx: Arc<Context>,
    /// Every desktop that belongs to a pool, in the namespaces this controller watches.
    pub members: Store<Desktop>,
    /// What each pool's last reconcile created and deleted, by pool uid, until the cache
    /// shows it.
    expected: Mutex<HashMap<String, Expectations>>,
    /// The status last written to each pool (by uid), and when.
    statuses: Mutex<HashMap<String, (DesktopPoolStatus, std::time::Instant)>>,
}

/// How long the desktops a reconcile created or deleted are waited for in the cache before
/// the pool is planned again regardless (a missed event must not stall it).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What a pool's last reconcile created and deleted, until the cache shows it.
#[derive(Debug)]
struct Expectations {
    created: Vec<String>,
    deleted: Vec<String>,
    at: std::time::Instant,
}

impl PoolContext {
    /// A context for the pool controller.
    pub fn new(ctx: Arc<Context>, members: Store<Desktop>) -> Self {
        Self {
            ctx,
            members,
            expected: Mutex::new(HashMap::new()),
            statuses: Mutex::new(HashMap::new()),
        }
    }

    fn expected(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expectations>> {
        self.expected.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the cache (`owned`) shows every desktop `pool`'s last reconcile created, and
    /// none it deleted (as live), or the wait timed out.
    fn expectations_met(&self, pool: &DesktopPool, owned: &[Arc<Desktop>]) -> bool {
        let key = pool.uid().unwrap_or_default();
        let mut expected = self.expected();
        let Some(e) = expected.get_mut(&key) else {
            return true;
        };
        let live: HashMap<String, bool> = owned
            .iter()
            .map(|d| (d.name_any(), d.metadata.deletion_timestamp.is_none()))
            .collect();
        e.created.retain(|n| !live.contains_key(n));
        e.deleted.retain(|n| live.get(n) == Some(&true));
        let met =
            (e.created.is_empty() && e.deleted.is_empty()) || e.at.elapsed() > EXPECTATION_TIMEOUT;
        if met {
            expected.remove(&key);
        }
        met
    }

    /// Remembers what a reconcile of `pool` created and deleted.
    fn expect(&self, pool: &DesktopPool, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        self.expected().insert(
            pool.uid().unwrap_or_default(),
            Expectations {
                created,
                deleted,
                at: std::time::Instant::now(),
            },
        );
    }
}

/// The least time between two status writes of one pool: a pool whose desktops change all
/// the time (a login storm) is reconciled at once on every change, and its status is written
/// at most once a second.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How long a status write stands for the pool's status while the cache shows another:
/// longer than any cache lag, shorter than leaving a status someone else changed.
const TRUST_WRITTEN: Duration = Duration::from_secs(30);

/// Whether a pool's changed status is written now.
enum StatusDue {
    /// Now.
    Now,
    /// It was written already; the cache has not caught up yet.
    Written,
    /// After this long.
    In(Duration),
}

impl PoolContext {
    fn statuses(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (DesktopPoolStatus, std::time::Instant)>> {
        self.statuses.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `status` of `pool` (not what the cache shows) is written now.
    fn status_due(&self, pool: &DesktopPool, status: &DesktopPoolStatus) -> StatusDue {
        match self.statuses().get(&pool.uid().unwrap_or_default()) {
            Some((written, at)) if written == status && at.elapsed() < TRUST_WRITTEN => {
                StatusDue::Written
            }
            Some((_, at)) if at.elapsed() < STATUS_INTERVAL => {
                StatusDue::In(STATUS_INTERVAL - at.elapsed())
            }
            _ => StatusDue::Now,
        }
    }

    /// Remembers the status written for `pool`, and when.
    fn status_written(&self, pool: &DesktopPool, status: DesktopPoolStatus) {
        let mut statuses = self.statuses();
        // Pools deleted meanwhile are forgotten here.
        statuses.retain(|_, (_, at)| at.elapsed() < RESYNC * 2);
        let at = match statuses.get(&pool.uid().unwrap_or_default()) {
            // Written already: keep when it was.
            Some((written, at)) if *written == status => *at,
            _ => std::time::Instant::now(),
        };
        statuses.insert(pool.uid().unwrap_or_default(), (status, at));
    }
}

/// `names` for an event: the first few, then how many more.
fn list_names(names: &[String]) -> String {
    let shown = names[..names.len().min(NAMES_IN_EVENT)].join(", ");
    match names.len().saturating_sub(NAMES_IN_EVENT) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

/// Reconciles one DesktopPool.
pub async fn reconcile(pool: Arc<DesktopPool>, pctx: Arc<PoolContext>) -> Result<Action, Error> {
    let ctx = &pctx.ctx;
    // Never create desktops into a terminating pool; garbage collection removes them.
    if pool.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
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
                        &**desktop,
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
    let members = build::members(owned.iter().map(|d| &**d), &hash);
    let plan = plan::plan(build::sizing(&pool), &members);

    // Create and delete only once the cache shows what the last reconcile created and
    // deleted (as kube-controller-manager's "expectations" do): a cache a moment behind would
    // otherwise make the same desktops again (each a refused write).
    if pctx.expectations_met(&pool, &owned) {
        let (created, deleted) = scale(ctx, &pool, &owned, &plan, &hash, &desktops).await?;
        pctx.expect(&pool, created, deleted);
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
    let mut status_wait = None;
    if pool.status.as_ref() != Some(&status) {
        match pctx.status_due(&pool, &status) {
            StatusDue::Written => {}
            StatusDue::In(wait) => status_wait = Some(wait),
            StatusDue::Now => write_status(ctx, &pool, &ns, &status).await?,
        }
        if status_wait.is_none() {
            pctx.status_written(&pool, status);
        }
    }
    // Back when the next session limit comes (a second late, so it has passed), or when the
    // held-back status may be written.
    let session = (next_check < RESYNC).then(|| next_check + Duration::from_secs(1));
    Ok(Action::requeue(
        [session, status_wait]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(RESYNC),
    ))
}

/// Writes the pool's status (server-side apply).
async fn write_status(
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
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

/// Deletes and creates desktops as `plan` says; returns the names created and deleted.
async fn scale(
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
            Err(e) => return Err(e.into()),
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
                Err(e) => Err(e),
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
        return Err(e.into());
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
