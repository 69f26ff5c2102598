//! Apply: the only step that writes. Makes the cluster hold exactly the launcher pod and Secret
//! the build step wants (deleting orphans), replaces finished launchers with backoff, and
//! never replaces the VM of an assigned user behind their back.

use std::time::{Duration, Instant};

use crds::Desktop;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};
use launcher_api::ExitStatus;

use super::build::{self, BuildContext};
use super::labels::DESKTOP_LABEL;
use super::status::Failure;
use crate::Error;
use crate::controller::Context;

/// The field manager of every write this controller makes.
pub const FIELD_MANAGER: &str = "verdant-operator";
/// First backoff after a launcher fails; it doubles each time, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// Longest backoff between launcher restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

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

/// Failures of one Desktop's launchers, for backoff. Kept in memory, like the kubelet's
/// crash-loop backoff: an operator restart starts counting afresh.
#[derive(Debug, Clone)]
pub struct FailureRecord {
    /// Consecutive failures.
    pub count: u32,
    /// When the last failed launcher was seen.
    pub at: Instant,
    /// Why, for the status.
    pub reason: String,
    /// What happened, for the status.
    pub message: String,
    /// The failed pod, so that one failure is counted once.
    pub pod_uid: String,
}

/// The backoff after `count` consecutive failures.
pub fn backoff(count: u32) -> Duration {
    let shift = count.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

/// How a finished launcher ended: whether that is a failure, and the words for it.
pub fn describe_exit(pod: &Pod) -> (bool, String, String) {
    let status = pod.status.as_ref();
    if status.and_then(|s| s.reason.as_deref()) == Some("Evicted") {
        let why = status.and_then(|s| s.message.clone()).unwrap_or_default();
        return (
            true,
            "LauncherEvicted".into(),
            format!("the launcher pod was evicted: {why}"),
        );
    }
    let terminated = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let code = terminated.map(|t| t.exit_code);
    match code.map(|c| (c, ExitStatus::from_code(c))) {
        Some((_, Some(ExitStatus::PoweredOff))) => (
            false,
            "GuestPoweredOff".into(),
            "the guest powered off; starting it again".into(),
        ),
        Some((_, Some(ExitStatus::Reset))) => (
            false,
            "GuestRebooted".into(),
            "the guest rebooted; starting it again".into(),
        ),
        Some((code, Some(ExitStatus::Crashed))) => (
            true,
            "GuestCrashed".into(),
            format!("the guest crashed (launcher exit {code}); see the launcher's log"),
        ),
        Some((code, _)) => {
            let reason = terminated
                .and_then(|t| t.reason.clone())
                .unwrap_or_default();
            (
                true,
                "LauncherFailed".into(),
                format!("the launcher exited with {code} {reason}")
                    .trim_end()
                    .to_owned(),
            )
        }
        None => (
            true,
            "LauncherFailed".into(),
            format!(
                "the launcher pod {}: {}",
                status.and_then(|s| s.phase.clone()).unwrap_or_default(),
                status.and_then(|s| s.message.clone()).unwrap_or_default()
            ),
        ),
    }
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed" | "Succeeded")
    )
}

/// Makes the cluster match the desired pod (`None`: the desktop is stopped). The desktop's
/// pods are read from `cache`, the controller's watch of launcher pods: no list per
/// reconcile, so a reconcile costs the same in a namespace of ten desktops or ten thousand.
pub async fn apply(
    ctx: &Context,
    cache: &Store<Pod>,
    desktop: &Desktop,
    desired: Option<&Pod>,
) -> Result<Applied, Error> {
    let ns = desktop.namespace().unwrap_or_default();
    let name = desktop.name_any();
    let key = format!("{ns}/{name}");
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = desktop.uid().unwrap_or_default();
    let mut owned: Vec<Pod> = cache
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
        ctx.failures_forget(&key);
        return Ok(applied);
    };

    // Finished launchers: count the failure once, then clear them away.
    for pod in live.iter().filter(|p| terminal(p)) {
        let (failed, reason, message) = describe_exit(pod);
        let pod_uid = pod.uid().unwrap_or_default();
        let record = ctx.failures_record(&key, &pod_uid, failed, &reason, &message);
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
        let resets = crate::desktop::labels::reset_count(desktop.annotations());
        if desktop.spec.user.is_none()
            && crate::desktop::labels::reset_count(pod.annotations()) < resets
        {
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

    if let Some(record) = ctx.failures_get(&key) {
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
    ensure_secret(ctx, desktop).await?;
    let created = pods
        .patch(
            &desired_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await?;
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

/// Creates the display-password Secret once; an existing one is never touched (the password
/// stays what users and the broker know).
async fn ensure_secret(ctx: &Context, desktop: &Desktop) -> Result<(), Error> {
    let ns = desktop.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let name = build::secret_name(&desktop.name_any());
    if secrets.get_metadata_opt(&name).await?.is_some() {
        return Ok(());
    }
    let password = build::generate_password().map_err(|e| Error::Random(e.to_string()))?;
    match secrets
        .create(
            &PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            },
            &build::build_secret(desktop, &password),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()), // another reconcile was first
        Err(e) => Err(e.into()),
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
        Err(e) => Err(e.into()),
    }
}

/// The build context of this operator.
pub fn build_context(ctx: &Context) -> BuildContext<'_> {
    BuildContext {
        launcher_image: &ctx.options.launcher_image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };

    fn exited(code: i32) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(if code == 0 { "Succeeded" } else { "Failed" }.into()),
                container_statuses: Some(vec![ContainerStatus {
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: code,
                            reason: Some("Error".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn exits_are_told_apart() {
        assert_eq!(describe_exit(&exited(0)).1, "GuestPoweredOff");
        assert!(!describe_exit(&exited(3)).0, "a reboot is not a failure");
        let (failed, reason, _) = describe_exit(&exited(4));
        assert!(failed);
        assert_eq!(reason, "GuestCrashed");
        let (failed, _, message) = describe_exit(&exited(1));
        assert!(failed && message.contains("exited with 1"), "{message}");
        let evicted = Pod {
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                reason: Some("Evicted".into()),
                message: Some("The node was low on memory.".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (failed, reason, message) = describe_exit(&evicted);
        assert!(failed && reason == "LauncherEvicted" && message.contains("low on memory"));
    }
}
