//! What the Desktop controller keeps between reconciles: the cache of launcher pods, the
//! statuses it wrote that the cache may not show yet, launcher failures (for backoff) and
//! reconcile failures (for retries). Everything of a Desktop is forgotten when it is deleted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::{Desktop, DesktopStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::failures::Failures;
use super::policy::Policies;
use crate::context::Context;
use crate::retry::Retries;

/// How long a status write is remembered at most; the cache catches up within seconds.
const FORGET_WRITTEN: Duration = Duration::from_secs(60);

/// What the Desktop controller's reconciles share: the operator's context, the cache of
/// launcher pods (filled by the watch that triggers the desktops' reconciles) and the
/// controller's own memory.
pub struct DesktopContext {
    /// The operator's context (client, options, events, metrics).
    pub ctx: Arc<Context>,
    /// Every launcher pod in the namespaces this controller watches.
    pub pods: Store<Pod>,
    /// How each Desktop's launchers ended, for the backoff before the next.
    pub failures: Failures,
    /// Reconciles that failed with a transient error, for their retries.
    pub retries: Retries,
    /// The launcher NetworkPolicy of each namespace, as this process applied it.
    pub policies: Policies,
    /// The status last written to each desktop (by uid), with the resourceVersion the desktop
    /// had before: while the cache still shows that version, the write is what the desktop's
    /// status is. Without this, a reconcile that runs before the cache has seen the last
    /// status write would write it again.
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

impl DesktopContext {
    /// A context for the Desktop controller.
    pub fn new(ctx: Arc<Context>, pods: Store<Pod>) -> Self {
        Self {
            ctx,
            pods,
            failures: Failures::default(),
            retries: Retries::default(),
            policies: Policies::default(),
            written: Mutex::new(HashMap::new()),
        }
    }

    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `desktop` with the status this controller last wrote, when the cache has not caught
    /// up with that write yet.
    pub fn as_written(&self, desktop: Arc<Desktop>) -> Arc<Desktop> {
        let uid = desktop.uid().unwrap_or_default();
        let mut written = self.written();
        match written.get(&uid) {
            Some(w) if w.seen == desktop.metadata.resource_version => {
                let mut current = Desktop::clone(&desktop);
                current.status = Some(w.status.clone());
                Arc::new(current)
            }
            Some(_) => {
                written.remove(&uid);
                desktop
            }
            None => desktop,
        }
    }

    /// Remembers that `status` was written to `desktop` (as the cache showed it).
    pub fn wrote(&self, desktop: &Desktop, status: DesktopStatus) {
        let mut written = self.written();
        written.retain(|_, w| w.at.elapsed() < FORGET_WRITTEN);
        written.insert(
            desktop.uid().unwrap_or_default(),
            Written {
                seen: desktop.metadata.resource_version.clone(),
                status,
                at: Instant::now(),
            },
        );
    }

    /// Forgets everything of the Desktop `uid`: it was deleted (a Desktop made again under
    /// the same name has another uid, and starts afresh).
    pub fn forget(&self, uid: &str) {
        self.written().remove(uid);
        self.failures.forget(uid);
        self.retries.succeeded(uid);
    }

    /// Forgets everything of Desktops not in `live` (deleted while no watch was open).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.written().retain(|uid, _| live(uid));
        self.failures.retain(&live);
        self.retries.retain(&live);
    }
}
