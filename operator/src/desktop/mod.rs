//! The Desktop controller's reconcile, in Stackable's named steps: dereference (read what the
//! Desktop points at) -> validate and build (pure, in [`build`]) -> apply (the only writes, in
//! [`apply`]) -> status (pure, in [`status`], then one server-side-apply patch if it changed).

pub mod apply;
pub mod build;
pub mod labels;
pub mod status;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::{Desktop, DesktopPhase, DesktopStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Api, ResourceExt};

use crate::Error;
use crate::controller::Context;
use build::Invalid;

/// How often a Desktop whose references are missing is looked at again.
const RECHECK_INVALID: Duration = Duration::from_secs(10);
/// How often every Desktop is looked at again, events or not.
const RESYNC: Duration = Duration::from_secs(300);

/// What the Desktop controller's reconciles share: the operator's context and the cache of
/// launcher pods, filled by the watch that triggers the desktops' reconciles.
pub struct DesktopContext {
    /// The operator's context (client, options, events, metrics).
    pub ctx: Arc<Context>,
    /// Every launcher pod in the namespaces this controller watches.
    pub pods: Store<Pod>,
    /// The status last written to each desktop (`namespace/name`), with the resourceVersion
    /// the desktop had before: while the cache still shows that version, the write is what
    /// the desktop's status is. Without this, a reconcile that runs before the cache has seen
    /// the last status write would write it again.
    written: Mutex<HashMap<String, Written>>,
}

/// A status write the cache may not have seen yet.
#[derive(Debug)]
struct Written {
    /// The desktop's resourceVersion before the write.
    seen: Option<String>,
    /// What was written.
    status: DesktopStatus,
    /// When: entries of desktops deleted meanwhile are dropped after [`FORGET_WRITTEN`].
    at: Instant,
}

/// How long a status write is remembered at most; the cache catches up within seconds.
const FORGET_WRITTEN: Duration = Duration::from_secs(60);

impl DesktopContext {
    /// A context for the Desktop controller.
    pub fn new(ctx: Arc<Context>, pods: Store<Pod>) -> Self {
        Self {
            ctx,
            pods,
            written: Mutex::new(HashMap::new()),
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `desktop` with the status this controller last wrote, when the cache has not caught
    /// up with that write yet.
    fn as_written(&self, key: &str, desktop: Arc<Desktop>) -> Arc<Desktop> {
        let mut written = self.written();
        match written.get(key) {
            Some(w) if w.seen == desktop.metadata.resource_version => {
                let mut current = Desktop::clone(&desktop);
                current.status = Some(w.status.clone());
                Arc::new(current)
            }
            Some(_) => {
                written.remove(key);
                desktop
            }
            None => desktop,
        }
    }
}

/// Reconciles one Desktop.
pub async fn reconcile(desktop: Arc<Desktop>, dctx: Arc<DesktopContext>) -> Result<Action, Error> {
    let ctx = &dctx.ctx;
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let key = format!(
        "{}/{}",
        desktop.namespace().unwrap_or_default(),
        desktop.name_any()
    );
    // Never re-create children into a terminating object; garbage collection removes them.
    if desktop.metadata.deletion_timestamp.is_some() {
        dctx.written().remove(&key);
        return Ok(Action::await_change());
    }
    let desktop = dctx.as_written(&key, desktop);

    // Dereference, then validate and build in one pure step.
    let built = match dereference(ctx, &desktop).await? {
        Some(invalid) => Err(invalid),
        None => build::build_pod(&desktop, &apply::build_context(ctx)),
    };
    let applied = match (&built, desktop.spec.running) {
        // An unusable spec touches nothing: a running session is not killed over it.
        (Err(_), _) => apply::Applied::default(),
        (Ok(pod), true) => apply::apply(ctx, &dctx.pods, &desktop, Some(pod)).await?,
        (Ok(_), false) => apply::apply(ctx, &dctx.pods, &desktop, None).await?,
    };
    let invalid = built.err();

    let observed = status::Observed {
        pod: applied.pod.as_ref(),
        pod_terminating: applied.pod_terminating,
        invalid: invalid.as_ref(),
        failure: applied.failure.clone(),
        restart_required: applied.restart_required,
    };
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let desired = status::desired(&desktop, &observed, &now);
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
            &PatchParams::apply(apply::FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
        let mut written = dctx.written();
        written.retain(|_, w| w.at.elapsed() < FORGET_WRITTEN);
        written.insert(
            key.clone(),
            Written {
                seen: desktop.metadata.resource_version.clone(),
                status: desired.clone(),
                at: Instant::now(),
            },
        );
    }
    if desired.phase == Some(DesktopPhase::Ready) && before != Some(DesktopPhase::Ready) {
        ctx.failures_forget(&key);
        if let Some(created) = desktop.metadata.creation_timestamp.as_ref() {
            let seconds = now.0.duration_since(created.0).as_secs_f64();
            ctx.metrics.ready_seconds.observe(seconds.max(0.0));
        }
        let pod = desired.pod_name.clone().unwrap_or_default();
        ctx.event(
            &*desktop,
            EventType::Normal,
            "DisplayReady",
            "Ready",
            format!("launcher pod {pod} is ready: the desktop can be used"),
        )
        .await;
    }
    if let (Some(invalid), false) = (&invalid, before == Some(DesktopPhase::Failed)) {
        ctx.event(
            &*desktop,
            EventType::Warning,
            invalid.reason,
            "Validate",
            invalid.message.clone(),
        )
        .await;
    }
    ctx.metrics
        .duration
        .observe(started.elapsed().as_secs_f64());

    Ok(match (invalid, applied.requeue_after) {
        (Some(_), _) => Action::requeue(RECHECK_INVALID),
        (None, Some(after)) => Action::requeue(after),
        (None, None) => Action::requeue(RESYNC),
    })
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
