//! Apply: the only step that writes. Makes the cluster hold exactly the launcher pod and Secret
//! the build step wants (deleting orphans), replaces finished launchers with backoff, and
//! never replaces the VM of an assigned user behind their back.

use std::time::Duration;

use crds::Desktop;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, Patch, PostParams, Preconditions};
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};

use super::build;
use super::failures::{backoff, describe_exit, terminal};
use super::state::DesktopContext;
use super::status::Failure;
use crate::error::Error;
use crate::field_manager::{self, FIELD_MANAGER};
use crate::labels::{DESKTOP_LABEL, reset_count};

/// How often a desktop whose display Secret is someone else's looks again.
const FOREIGN_SECRET_RECHECK: Duration = Duration::from_secs(10);

/// What apply did and saw, for the status step.
#[derive(Debug, Default)]
pub struct Applied {
    /// The live launcher pod, if any.
    pub pod: Option<Pod>,
    /// Whether some launcher pod is being deleted.
    pub pod_terminating: bool,
    /// The last launcher failed; its replacement waits.
    pub failure: Option<Failure>,
    /// A user is assigned and the spec needs a new VM.
    pub restart_required: bool,
    /// When to look again (a backoff running out).
    pub requeue_after: Option<Duration>,
}

/// Makes the cluster match the desired pod (`None`: the desktop is stopped). The desktop's
/// pods are read from `cache`, the controller's watch of launcher pods: no list per
/// reconcile, so a reconcile costs the same in a namespace of ten desktops or ten thousand.
pub async fn apply(
    dctx: &DesktopContext,
    desktop: &Desktop,
    desired: Option<&Pod>,
) -> Result<Applied, Error> {
    let ctx = &dctx.ctx;
    let ns = desktop.namespace().unwrap_or_default();
    let name = desktop.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = desktop.uid().unwrap_or_default();
    let mut owned: Vec<Pod> = dctx
        .pods
        .state()
        .iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(ns.as_str())
                && p.labels().get(DESKTOP_LABEL) == Some(&name)
                && p.owner_references().iter().any(|o| o.uid == uid)
        })
        .map(|p| Pod::clone(p))
        .collect();
    // The cache may not have seen the pod this controller made a moment ago: asked by name
    // (one object, not a list), it is not made twice.
    if let Some(desired) = desired
        && !owned.iter().any(|p| p.name_any() == desired.name_any())
        && let Some(pod) = pods.get_opt(&desired.name_any()).await?
        && pod.owner_references().iter().any(|o| o.uid == uid)
    {
        owned.push(pod);
    }
    let terminating: Vec<String> = owned
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .map(ResourceExt::name_any)
        .collect();
    let mut applied = Applied {
        pod_terminating: !terminating.is_empty(),
        ..Applied::default()
    };
    let mut live: Vec<Pod> = owned
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();

    let Some(desired) = desired else {
        // Stopped: every launcher goes.
        for pod in &live {
            delete(&pods, pod).await?;
            applied.pod_terminating = true;
        }
        dctx.failures.forget(&uid);
        return Ok(applied);
    };

    // Finished launchers: count the failure once, then clear them away.
    for pod in live.iter().filter(|p| terminal(p)) {
        let (failed, reason, message) = describe_exit(pod);
        let pod_uid = pod.uid().unwrap_or_default();
        let record = dctx
            .failures
            .record(&uid, &pod_uid, failed, &reason, &message);
        let note = if failed {
            format!(
                "{message}; next launcher in {} s",
                backoff(record.map_or(1, |r| r.count)).as_secs()
            )
        } else {
            message.clone()
        };
        ctx.event(
            desktop,
            EventType::Warning,
            &reason,
            "ReplaceLauncher",
            note,
        )
        .await;
        delete(&pods, pod).await?;
        applied.pod_terminating = true;
    }
    live.retain(|p| !terminal(p));

    let desired_name = desired.name_any();
    let (current, others): (Vec<Pod>, Vec<Pod>) =
        live.into_iter().partition(|p| p.name_any() == desired_name);
    if let Some(pod) = current.into_iter().next() {
        for orphan in &others {
            delete(&pods, orphan).await?;
            applied.pod_terminating = true;
        }
        // Released from a Floating pool: the next user gets a fresh VM, never the last one's.
        let resets = reset_count(desktop.annotations());
        if desktop.spec.user.is_none() && reset_count(pod.annotations()) < resets {
            ctx.event(
                desktop,
                EventType::Normal,
                "Reset",
                "ResetLauncher",
                format!(
                    "released: launcher pod {} replaced by a fresh one",
                    pod.name_any()
                ),
            )
            .await;
            delete(&pods, &pod).await?;
            applied.pod_terminating = true;
            return Ok(applied);
        }
        applied.pod = Some(pod);
        return Ok(applied);
    }
    if let (Some(_), Some((keep, rest))) = (&desktop.spec.user, others.split_first()) {
        // Never kill an assigned user's session for a spec change.
        for orphan in rest {
            delete(&pods, orphan).await?;
        }
        applied.pod = Some(keep.clone());
        applied.restart_required = true;
        return Ok(applied);
    }
    let replacing = !others.is_empty();
    for old in &others {
        delete(&pods, old).await?;
        applied.pod_terminating = true;
    }

    if let Some(record) = dctx.failures.get(&uid) {
        let wait = backoff(record.count);
        let waited = record.at.elapsed();
        if waited < wait {
            let left = wait - waited;
            applied.failure = Some(Failure {
                reason: record.reason.clone(),
                message: format!(
                    "{}; next launcher in {} s",
                    record.message,
                    left.as_secs() + 1
                ),
            });
            applied.requeue_after = Some(left);
            return Ok(applied);
        }
    }

    if terminating.contains(&desired_name) {
        // The old launcher of this very spec is still shutting down its guest; a new pod of
        // the same name must wait for it to be gone.
        applied.requeue_after = Some(Duration::from_secs(1));
        return Ok(applied);
    }
    // The namespace's launcher NetworkPolicy first: no launcher is reachable by other pods
    // for a moment.
    let settings = &ctx.options.launcher_pod.network_policy;
    dctx.policies.ensure(&ctx.client, settings, &ns).await?;
    if let Some(failure) = ensure_secret(dctx, desktop).await? {
        applied.failure = Some(failure);
        applied.requeue_after = Some(FOREIGN_SECRET_RECHECK);
        return Ok(applied);
    }
    let created = pods
        .patch(
            &desired_name,
            &field_manager::apply(FIELD_MANAGER),
            &Patch::Apply(desired),
        )
        .await
        .map_err(|e| Error::write(format!("creating launcher pod {desired_name}"), e))?;
    let (reason, note) = if replacing {
        (
            "LauncherReplaced",
            format!("replaced the launcher with {desired_name} for the new spec"),
        )
    } else {
        (
            "LauncherCreated",
            format!("created launcher pod {desired_name}"),
        )
    };
    ctx.event(desktop, EventType::Normal, reason, "CreateLauncher", note)
        .await;
    applied.pod = Some(created);
    Ok(applied)
}

/// Creates the display-password Secret once, with the full and the view-only password; an
/// existing one is never touched (the passwords stay what users and the broker know; one
/// made before view-only passwords existed keeps having none, and its desktop cannot be
/// shadowed). A Secret of that name that is not the desktop's own is a failure, shown in the
/// status: no launcher is made with it.
async fn ensure_secret(dctx: &DesktopContext, desktop: &Desktop) -> Result<Option<Failure>, Error> {
    let ns = desktop.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(dctx.ctx.client.clone(), &ns);
    let name = build::secret_name(&desktop.name_any());
    if let Some(existing) = secrets.get_metadata_opt(&name).await? {
        // Someone who can create Secrets here could have stood one up under the name before
        // the desktop existed: its password, known to them, would open the desktop's VNC.
        let ours = existing
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.controller == Some(true) && Some(&r.uid) == desktop.metadata.uid.as_ref());
        return Ok((!ours).then(|| Failure {
            reason: "DisplaySecretNotOwned".into(),
            message: format!(
                "Secret {name} exists and is not this Desktop's own (its controller is not Desktop {}), so its password may be known to whoever made it; delete that Secret and the operator makes the desktop's own",
                desktop.name_any()
            ),
        }));
    }
    let random = |e: getrandom::Error| Error::Random(e.to_string());
    let password = build::generate_password().map_err(random)?;
    let view_only = build::generate_view_only_password(password.as_bytes()).map_err(random)?;
    match secrets
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &build::build_secret(desktop, &password, &view_only),
        )
        .await
    {
        Ok(_) => Ok(None),
        // Another reconcile was first (the next one checks whose it is).
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
        Err(e) => Err(Error::write(format!("creating display Secret {name}"), e)),
    }
}

async fn delete(pods: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            ..Default::default()
        }),
        ..DeleteParams::default()
    };
    match pods.delete(&pod.name_any(), &params).await {
        Ok(_) => Ok(()),
        // Already gone, or replaced by a namesake: nothing of ours to delete.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(Error::write(
            format!("deleting launcher pod {}", pod.name_any()),
            e,
        )),
    }
}
