//! The Desktop controller's reconcile, in Stackable's named steps: dereference (read what the
//! Desktop points at) -> validate and build (pure, in [`support`], [`build`] and [`boot`]) ->
//! apply (the
//! only writes, in [`apply`]) -> status (pure, in [`status`], then one server-side-apply patch
//! if it changed). What the controller remembers between reconciles is in [`state`]; the
//! launcher NetworkPolicy of each namespace is kept by [`policy`].

pub mod apply;
pub mod boot;
pub mod build;
pub mod failures;
pub mod invalid;
pub mod policy;
pub mod state;
pub mod status;
pub mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crds::{Desktop, DesktopPhase};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Patch;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use crate::context::Context;
use crate::error::{Category, Error};
use crate::field_manager::{self, FIELD_MANAGER};
use build::{BuildContext, Invalid};
use state::DesktopContext;

/// How often a Desktop whose references are missing is looked at again.
const RECHECK_INVALID: Duration = Duration::from_secs(10);
/// How often every Desktop is looked at again, events or not.
const RESYNC: Duration = Duration::from_secs(300);

/// Reconciles one Desktop. A write the apiserver refuses as it is (invalid, forbidden) is
/// shown in the Desktop's status and tried again when the Desktop changes; other errors go to
/// the error policy, which retries them with backoff.
pub async fn reconcile(desktop: Arc<Desktop>, dctx: Arc<DesktopContext>) -> Result<Action, Error> {
    let ctx = &dctx.ctx;
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let uid = desktop.uid().unwrap_or_default();
    // Never re-create children into a terminating object; garbage collection removes them.
    if desktop.metadata.deletion_timestamp.is_some() {
        dctx.forget(&uid);
        return Ok(Action::await_change());
    }
    let desktop = dctx.as_written(desktop);
    let result = match reconcile_desktop(&dctx, &desktop).await {
        Err(e) if e.category() == Category::Permanent => show_refused(&dctx, &desktop, &e).await,
        other => other,
    };
    if result.is_ok() {
        dctx.retries.succeeded(&uid);
    }
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Dereference, build, apply, status.
async fn reconcile_desktop(dctx: &DesktopContext, desktop: &Desktop) -> Result<Action, Error> {
    let ctx = &dctx.ctx;
    let built = match dereference(ctx, desktop).await? {
        Some(invalid) => Err(invalid),
        None => match support::blocking(&desktop.spec) {
            Some(invalid) => Err(invalid),
            None => build::build_pod(desktop, &build_context(ctx)),
        },
    };
    let applied = match (&built, desktop.spec.running) {
        // An unusable spec touches nothing: a running session is not killed over it.
        (Err(_), _) => apply::Applied::default(),
        (Ok(pod), true) => apply::apply(dctx, desktop, Some(pod)).await?,
        (Ok(_), false) => apply::apply(dctx, desktop, None).await?,
    };
    let invalid = built.err();
    let observed = status::Observed {
        pod: applied.pod.as_ref(),
        pod_terminating: applied.pod_terminating,
        invalid: invalid.as_ref(),
        failure: applied.failure.clone(),
        restart_required: applied.restart_required,
    };
    update_status(dctx, desktop, &observed).await?;
    Ok(match (invalid, applied.requeue_after) {
        (Some(_), _) => Action::requeue(RECHECK_INVALID),
        (None, Some(after)) => Action::requeue(after),
        (None, None) => Action::requeue(RESYNC),
    })
}

/// Shows a write the apiserver refused in the Desktop's status (phase `Failed`, the
/// apiserver's reason and message) and waits for the Desktop to change.
async fn show_refused(
    dctx: &DesktopContext,
    desktop: &Desktop,
    error: &Error,
) -> Result<Action, Error> {
    tracing::warn!(
        desktop = %desktop.name_any(),
        %error,
        "the apiserver refused a write; waiting for the Desktop to change"
    );
    dctx.ctx.metrics.count_error(error.kind());
    let invalid = Invalid {
        reason: "WriteRefused",
        message: format!(
            "{error} ({}); fix the cause, then change the Desktop to try again (it is also tried {})",
            error.reason(),
            crate::options::every(dctx.ctx.options.recheck_refused)
        ),
    };
    let observed = status::Observed {
        invalid: Some(&invalid),
        ..status::Observed::default()
    };
    update_status(dctx, desktop, &observed).await?;
    Ok(Action::requeue(dctx.ctx.options.recheck_refused))
}

/// Writes the status `observed` calls for, if it differs from what the Desktop shows, and
/// publishes the events of its transitions.
async fn update_status(
    dctx: &DesktopContext,
    desktop: &Desktop,
    observed: &status::Observed<'_>,
) -> Result<(), Error> {
    let ctx = &dctx.ctx;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let desired = status::desired(desktop, observed, &now);
    let before = desktop.status.as_ref().and_then(|s| s.phase);
    if status::needs_write(desktop.status.as_ref(), &desired) {
        let api: Api<Desktop> =
            Api::namespaced(ctx.client.clone(), &desktop.namespace().unwrap_or_default());
        let patch = serde_json::json!({
            "apiVersion": format!("{}/{}", crds::GROUP, crds::VERSION),
            "kind": "Desktop",
            "status": desired,
        });
        api.patch_status(
            &desktop.name_any(),
            &field_manager::apply(FIELD_MANAGER),
            &Patch::Apply(&patch),
        )
        .await?;
        dctx.wrote(desktop, desired.clone());
    }
    if desired.phase == Some(DesktopPhase::Ready) && before != Some(DesktopPhase::Ready) {
        dctx.failures.forget(&desktop.uid().unwrap_or_default());
        if let Some(created) = desktop.metadata.creation_timestamp.as_ref() {
            let seconds = now.0.duration_since(created.0).as_secs_f64();
            ctx.metrics.ready_seconds.observe(seconds.max(0.0));
        }
        let pod = desired.pod_name.clone().unwrap_or_default();
        ctx.event(
            desktop,
            EventType::Normal,
            "DisplayReady",
            "Ready",
            format!("launcher pod {pod} is ready: the desktop can be used"),
        )
        .await;
    }
    if let (Some(invalid), false) = (observed.invalid, before == Some(DesktopPhase::Failed)) {
        ctx.event(
            desktop,
            EventType::Warning,
            invalid.reason,
            "Validate",
            invalid.message.clone(),
        )
        .await;
    }
    Ok(())
}

/// The build context of this operator.
fn build_context(ctx: &Context) -> BuildContext<'_> {
    BuildContext {
        launcher_image: &ctx.options.launcher_image,
        launcher_pod: &ctx.options.launcher_pod,
    }
}

/// Dereference: reads the claims a Desktop names; a missing one makes the spec unusable until
/// it appears.
async fn dereference(ctx: &Context, desktop: &Desktop) -> Result<Option<Invalid>, Error> {
    let ns = desktop.namespace().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let spec = &desktop.spec;
    let mut wanted: Vec<(String, &str)> = Vec::new();
    let boot = [
        ("spec.boot.kernel", Some(&spec.boot.kernel)),
        ("spec.boot.initrd", spec.boot.initrd.as_ref()),
    ];
    for (field, source) in boot {
        if let Some(claim) = source.and_then(|s| s.persistent_volume_claim.as_ref()) {
            wanted.push((
                format!("{field}.persistentVolumeClaim"),
                claim.claim_name.as_str(),
            ));
        }
    }
    for (i, disk) in spec.disks.iter().enumerate() {
        if let Some(claim) = &disk.source.persistent_volume_claim {
            wanted.push((
                format!("spec.disks[{i}].source.persistentVolumeClaim"),
                claim.claim_name.as_str(),
            ));
        }
    }
    for (field, name) in wanted {
        if claims.get_metadata_opt(name).await?.is_none() {
            return Ok(Some(Invalid {
                reason: "PersistentVolumeClaimNotFound",
                message: format!(
                    "{field}: PersistentVolumeClaim {ns}/{name} does not exist; create it or fix the name"
                ),
            }));
        }
    }
    Ok(None)
}
