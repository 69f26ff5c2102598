//! What the pool controller keeps between reconciles: the cache of pool desktops, what the last
//! reconciles created and deleted ([`Expectations`]), the statuses it wrote and when, and the
//! retries of failed reconciles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::{Desktop, DesktopPool, DesktopPoolStatus};
use kube::ResourceExt;
use kube::runtime::reflector::Store;

use super::expectations::Expectations;
use crate::context::Context;
use crate::retry::Retries;

/// The least time between two status writes of one pool: a pool whose desktops change all
/// the time (a login storm) is reconciled at once on every change, and its status is written
/// at most once a second.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// How long a status write stands for the pool's status while the cache shows another:
/// longer than any cache lag, shorter than leaving a status someone else changed.
const TRUST_WRITTEN: Duration = Duration::from_secs(30);

/// How long a pool's last status write is remembered (pools deleted meanwhile are forgotten).
const FORGET_STATUS: Duration = Duration::from_secs(600);

/// Whether a pool's changed status is written now.
pub enum StatusDue {
    /// Now.
    Now,
    /// It was written already; the cache has not caught up yet.
    Written,
    /// After this long.
    In(Duration),
}

/// What the pool controller's reconciles share: the operator's context, the cache of pool
/// desktops (filled by the watch that triggers the pools' reconciles), and the controller's own
/// memory.
pub struct PoolContext {
    /// The operator's context (client, options, events, metrics).
    pub ctx: Arc<Context>,
    /// Every desktop that belongs to a pool, in the namespaces this controller watches.
    pub members: Store<Desktop>,
    /// What each pool's last reconcile created and deleted, until the cache shows it.
    pub expectations: Expectations,
    /// Reconciles that failed with a transient error, for their retries.
    pub retries: Retries,
    /// The status last written to each pool (by uid), and when.
    statuses: Mutex<HashMap<String, (DesktopPoolStatus, Instant)>>,
}

impl PoolContext {
    /// A context for the pool controller.
    pub fn new(ctx: Arc<Context>, members: Store<Desktop>) -> Self {
        Self {
            ctx,
            members,
            expectations: Expectations::default(),
            retries: Retries::default(),
            statuses: Mutex::new(HashMap::new()),
        }
    }

    fn statuses(&self) -> std::sync::MutexGuard<'_, HashMap<String, (DesktopPoolStatus, Instant)>> {
        self.statuses.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `status` of `pool` (not what the cache shows) is written now.
    pub fn status_due(&self, pool: &DesktopPool, status: &DesktopPoolStatus) -> StatusDue {
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
    pub fn status_written(&self, pool: &DesktopPool, status: DesktopPoolStatus) {
        let mut statuses = self.statuses();
        statuses.retain(|_, (_, at)| at.elapsed() < FORGET_STATUS);
        let at = match statuses.get(&pool.uid().unwrap_or_default()) {
            // Written already: keep when it was.
            Some((written, at)) if *written == status => *at,
            _ => Instant::now(),
        };
        statuses.insert(pool.uid().unwrap_or_default(), (status, at));
    }
}
