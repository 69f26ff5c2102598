//! The [`Assigner`]: giving pool desktops to users, as the broker will and as an admin can by
//! hand (`verdant-operator assign`).
//!
//! An [`Assigner`] keeps a watch cache of a namespace's pool desktops, so a user's request
//! costs one write, not a list of the pool (only "none available" is confirmed with a list).
//! A desktop is taken by writing its `spec.user` with the resourceVersion it was read at: of
//! two callers racing for one desktop, in this process or another, exactly one wins, and the
//! loser tries another. Within one process, callers never pick a desktop another caller is
//! taking, and one user's requests run one at a time, so the same user asking again (even at
//! once) gets the desktop they have.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::{Desktop, DesktopPhase, DesktopPool};
use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use crds::labels::{POOL_LABEL, USED_BY_ANNOTATION, stable_hash, used_since_reset};

use crate::claim::Claim;
use crate::error::{AssignError, is_conflict, is_not_found};
use crate::release::release;

/// How long an assign waits for the cache to catch up with desktops it found changed (a
/// conflict), or that the apiserver shows free, before it says that none is available.
const CATCH_UP: Duration = Duration::from_secs(2);
/// How many times one assign asks the apiserver whether the cache missed a free desktop.
const CONFIRMATIONS: u32 = 3;
/// How often the cache is looked at while catching up.
const CATCH_UP_POLL: Duration = Duration::from_millis(10);
/// How long an assign waits for the first list of desktops before it gives up.
const FIRST_LIST: Duration = Duration::from_secs(15);

/// Whether `desktop` can be given to a user now: Ready, nobody's, not being deleted, its VM
/// not had by anyone since its last reset (a desktop whose `spec.user` was cleared without a
/// reset keeps its last user's session), and its status written since its spec last changed
/// (a desktop just released still shows its last user's VM as Ready until the operator has
/// replaced it).
pub fn available(desktop: &Desktop) -> bool {
    desktop.metadata.deletion_timestamp.is_none()
        && desktop.spec.user.is_none()
        && !used_since_reset(desktop.annotations())
        && desktop.status.as_ref().is_some_and(|s| {
            s.phase == Some(DesktopPhase::Ready)
                && s.observed_generation == desktop.metadata.generation
        })
}

/// Whether `desktop` is `user`'s and not being deleted.
fn is_theirs(desktop: &Desktop, user: &str) -> bool {
    desktop.spec.user.as_deref() == Some(user) && desktop.metadata.deletion_timestamp.is_none()
}

/// Where a user starts looking among `n` free desktops: spread by the user's name, so that
/// many users asking at once (through different processes) mostly try different desktops.
fn start(user: &str, n: usize) -> usize {
    (stable_hash(user.as_bytes()) % n as u64) as usize
}

/// A desktop this process wrote to (or tried to), remembered until the cache has a version
/// other than the one the write was based on.
#[derive(Debug, Clone)]
struct Pending {
    /// The resourceVersion the write was conditional on.
    seen: Option<String>,
    /// The user it went to, once the write succeeded.
    user: Option<String>,
}

/// What one process's callers share beyond the cache.
#[derive(Debug, Default)]
struct Local {
    /// Desktops being taken or just taken (or found changed) that the cache has not caught
    /// up with yet, by name.
    pending: HashMap<String, Pending>,
    /// One lock per user with a request in flight.
    users: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// What to do after looking at the cache.
enum Pick {
    /// The user has this desktop already.
    Theirs(String),
    /// Try to take this desktop, conditional on this resourceVersion.
    Take(String, Option<String>),
    /// Nothing free, but some desktops changed after the cache saw them.
    Wait,
    /// Nothing free; the resourceVersions the cache showed of the pool's desktops, by name.
    None(HashMap<String, Option<String>>),
}

/// Lists of pool desktops read from the apiserver, by pool, with when each was asked for.
type PoolLists = HashMap<String, (Instant, Arc<Vec<Desktop>>)>;

/// Gives users desktops of the pools in one namespace, from a watch cache of their desktops.
/// Clone-free: share it (`Arc`) among callers; dropping it stops the watch.
pub struct Assigner {
    api: Api<Desktop>,
    cache: Store<Desktop>,
    local: Mutex<Local>,
    /// The last list of each pool's desktops read from the apiserver to confirm a refusal,
    /// with when it was asked for: callers refused at once share one list.
    lists: tokio::sync::Mutex<PoolLists>,
    /// Whether the cache has been filled by a first list.
    listed: tokio::sync::watch::Receiver<bool>,
    /// The watch's last error, until it lists.
    watch_error: Arc<Mutex<Option<String>>>,
    watch: tokio::task::JoinHandle<()>,
}

impl Drop for Assigner {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl Assigner {
    /// Starts watching the pool desktops of `api`'s namespace. Needs a Tokio runtime; calls
    /// wait until the first list is in.
    pub fn new(api: Api<Desktop>) -> Self {
        let (cache, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(api.clone(), watcher::Config::default().labels(POOL_LABEL)),
        )
        .default_backoff();
        let watch_error = Arc::new(Mutex::new(None));
        let errors = Arc::clone(&watch_error);
        let (listed_tx, listed) = tokio::sync::watch::channel(false);
        let watch = tokio::spawn(async move {
            stream
                .for_each(|event| {
                    match event {
                        Ok(watcher::Event::InitDone) => {
                            listed_tx.send_replace(true);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "watch of pool desktops failed; retrying");
                            *errors.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
                        }
                    }
                    std::future::ready(())
                })
                .await;
        });
        Self {
            api,
            cache,
            local: Mutex::new(Local::default()),
            lists: tokio::sync::Mutex::default(),
            listed,
            watch_error,
            watch,
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives `user` a desktop of `pool`: the one they already have there, else an available
    /// one. Returns its name.
    pub async fn assign(&self, pool: &str, user: &str) -> Result<String, AssignError> {
        if !crds::desktop::is_user_name(user) {
            return Err(AssignError::InvalidUser(user.to_owned()));
        }
        // (The store's own wait_until_ready wakes only one of many waiters.)
        let mut listed = self.listed.clone();
        if !matches!(
            tokio::time::timeout(FIRST_LIST, listed.wait_for(|listed| *listed)).await,
            Ok(Ok(_))
        ) {
            let error = self
                .watch_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            return Err(AssignError::NoList(error.unwrap_or_else(|| {
                format!("no answer in {} s", FIRST_LIST.as_secs())
            })));
        }
        let lock = Arc::clone(self.local().users.entry(user.to_owned()).or_default());
        let result = {
            let _one_at_a_time = lock.lock().await;
            self.assign_locked(pool, user).await
        };
        let mut local = self.local();
        // The map's and ours: nobody else waits for this user.
        if Arc::strong_count(&lock) == 2 {
            local.users.remove(user);
        }
        result
    }

    /// Like [`Self::assign`], but safe against the same user asking through several
    /// processes at once (broker replicas): a new desktop is taken only under the user's
    /// claim ([`crate::claim`]), after a fresh list from the apiserver shows they have none.
    /// `holder` names this process in the claim.
    pub async fn assign_claimed(
        &self,
        pool: &str,
        user: &str,
        holder: &str,
    ) -> Result<String, AssignError> {
        if !crds::desktop::is_user_name(user) {
            return Err(AssignError::InvalidUser(user.to_owned()));
        }
        if let Some(name) = self.cached_theirs(pool, user) {
            return Ok(name);
        }
        let namespace = self
            .api
            .namespace()
            .ok_or(AssignError::NoNamespace)?
            .to_owned();
        let leases = Api::namespaced(self.api.clone().into_client(), &namespace);
        let claim = Claim::take(leases, pool, user, holder).await?;
        let result = async {
            let fresh = self
                .api
                .list(&ListParams::default().labels(&format!("{POOL_LABEL}={pool}")))
                .await?;
            if let Some(theirs) = fresh.items.iter().find(|d| is_theirs(d, user)) {
                return Ok(theirs.name_any());
            }
            self.assign(pool, user).await
        }
        .await;
        claim.release().await;
        result
    }

    /// The user's desktop in `pool`, as the cache shows it.
    fn cached_theirs(&self, pool: &str, user: &str) -> Option<String> {
        self.cache
            .state()
            .iter()
            .find(|d| {
                d.labels().get(POOL_LABEL).map(String::as_str) == Some(pool) && is_theirs(d, user)
            })
            .map(|d| d.name_any())
    }

    async fn assign_locked(&self, pool: &str, user: &str) -> Result<String, AssignError> {
        let mut waited = Duration::ZERO;
        let mut confirmations = 0;
        loop {
            let picked = Instant::now();
            match self.pick(pool, user) {
                Pick::Theirs(name) => return Ok(name),
                Pick::None(saw) if confirmations < CONFIRMATIONS => {
                    confirmations += 1;
                    let missed = self.missed(pool, user, picked, &saw).await;
                    if missed.is_empty() {
                        return Err(self.nothing_free(pool).await);
                    }
                    tracing::debug!(pool, ?missed, "the desktop cache is behind the apiserver");
                    while !self.moved_past(&missed, &saw) {
                        if waited >= CATCH_UP {
                            return Err(self.nothing_free(pool).await);
                        }
                        tokio::time::sleep(CATCH_UP_POLL).await;
                        waited += CATCH_UP_POLL;
                    }
                }
                Pick::None(_) => return Err(self.nothing_free(pool).await),
                Pick::Wait if waited >= CATCH_UP => return Err(self.nothing_free(pool).await),
                Pick::Wait => {
                    tokio::time::sleep(CATCH_UP_POLL).await;
                    waited += CATCH_UP_POLL;
                }
                Pick::Take(name, seen) => {
                    // The resourceVersion makes the write conditional: a desktop someone
                    // else took since the cache saw it answers 409 Conflict. The mark says
                    // the VM has had a user until a release resets it.
                    let patch = json!({
                        "metadata": {
                            "resourceVersion": seen,
                            "annotations": {USED_BY_ANNOTATION: user},
                        },
                        "spec": {"user": user},
                    });
                    let result = self
                        .api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                    let mut local = self.local();
                    match result {
                        Ok(_) => {
                            if let Some(p) = local.pending.get_mut(&name) {
                                p.user = Some(user.to_owned());
                            }
                            return Ok(name);
                        }
                        // Changed or gone since the cache saw it: skipped until the cache
                        // catches up (the entry stays).
                        Err(e) if is_conflict(&e) || is_not_found(&e) => {}
                        Err(e) => {
                            local.pending.remove(&name);
                            return Err(e.into());
                        }
                    }
                }
            }
        }
    }

    /// The desktops of `pool` that the apiserver shows free, or `user`'s, in a version other
    /// than the one the cache showed when nothing was picked (`saw`, by name; absent: not in
    /// the cache), and that no caller here is taking. "No desktop available" is said only
    /// once the apiserver agrees: a desktop that turned Ready a moment ago, or a watch behind
    /// under load, would otherwise refuse a user while desktops are free. A failed list
    /// misses nothing: what the cache showed stands.
    async fn missed(
        &self,
        pool: &str,
        user: &str,
        picked: Instant,
        saw: &HashMap<String, Option<String>>,
    ) -> Vec<String> {
        let Some(fresh) = self.listed_since(pool, picked).await else {
            return Vec::new();
        };
        let local = self.local();
        fresh
            .iter()
            .filter(|d| {
                let name = d.name_any();
                (available(d) || is_theirs(d, user))
                    && saw.get(&name) != Some(&d.metadata.resource_version)
                    && !local.pending.contains_key(&name)
            })
            .map(|d| d.name_any())
            .collect()
    }

    /// `pool`'s desktops as the apiserver has them, from a list asked for at or after
    /// `since`: one that another caller's refusal started, or a new one. `None` where the
    /// list failed.
    async fn listed_since(&self, pool: &str, since: Instant) -> Option<Arc<Vec<Desktop>>> {
        let mut lists = self.lists.lock().await;
        if let Some((asked, desktops)) = lists.get(pool)
            && *asked >= since
        {
            return Some(Arc::clone(desktops));
        }
        let asked = Instant::now();
        let listed = self
            .api
            .list(&ListParams::default().labels(&format!("{POOL_LABEL}={pool}")))
            .await;
        match listed {
            Ok(list) => {
                let desktops = Arc::new(list.items);
                // Only recent lists are worth keeping (pool names come from users).
                lists.retain(|_, (at, _)| at.elapsed() < CATCH_UP);
                lists.insert(pool.to_owned(), (asked, Arc::clone(&desktops)));
                Some(desktops)
            }
            Err(e) => {
                tracing::debug!(error = %e, pool, "could not confirm that no desktop is free");
                None
            }
        }
    }

    /// Whether the cache has moved past what a pick saw (`saw`) of each desktop in `names`:
    /// it has a version of each other than the one the pick saw (or has one at all, where
    /// the pick saw none).
    fn moved_past(&self, names: &[String], saw: &HashMap<String, Option<String>>) -> bool {
        // One snapshot of the cache for all of them.
        let cached = self.cache.state();
        names.iter().all(|name| {
            let now = cached
                .iter()
                .find(|d| d.metadata.name.as_ref() == Some(name))
                .and_then(|d| d.metadata.resource_version.as_ref());
            now != saw.get(name).and_then(Option::as_ref)
        })
    }

    /// Why nothing could be given: no desktop free, or no such pool (looked up only here,
    /// on the way out, so the usual assign reads nothing).
    async fn nothing_free(&self, pool: &str) -> AssignError {
        let none_free = AssignError::NoDesktopAvailable { pool: pool.into() };
        // (An assigner over every namespace cannot tell which one the pool would be in.)
        let Some(namespace) = self.api.namespace().map(str::to_owned) else {
            return none_free;
        };
        let pools: Api<DesktopPool> = Api::namespaced(self.api.clone().into_client(), &namespace);
        match pools.get_opt(pool).await {
            Ok(None) => AssignError::NoPool {
                pool: pool.into(),
                namespace,
            },
            // It exists, or the lookup failed: what the cache showed stands.
            Ok(Some(_)) | Err(_) => none_free,
        }
    }

    /// Looks at the cache (and what this process is writing) for `user`'s desktop in
    /// `pool`, or a free one to take; a desktop to take is marked pending before the lock
    /// is let go, so no other caller here picks it.
    fn pick(&self, pool: &str, user: &str) -> Pick {
        let cached = self.cache.state();
        // Every pool's desktops: pending entries of other pools' callers stay too.
        let versions: HashMap<String, &Option<String>> = cached
            .iter()
            .map(|d| (d.name_any(), &d.metadata.resource_version))
            .collect();
        let desktops: Vec<&Arc<Desktop>> = cached
            .iter()
            .filter(|d| d.labels().get(POOL_LABEL).map(String::as_str) == Some(pool))
            .collect();
        let mut local = self.local();
        // Forget what the cache has caught up with.
        local
            .pending
            .retain(|name, p| versions.get(name).is_some_and(|v| **v == p.seen));
        if let Some(mine) = desktops
            .iter()
            .find(|d| is_theirs(d, user) && !local.pending.contains_key(&d.name_any()))
        {
            return Pick::Theirs(mine.name_any());
        }
        if let Some((name, _)) = local
            .pending
            .iter()
            .find(|(_, p)| p.user.as_deref() == Some(user))
        {
            return Pick::Theirs(name.clone());
        }
        let free: Vec<&Arc<Desktop>> = desktops
            .iter()
            .copied()
            .filter(|d| available(d) && !local.pending.contains_key(&d.name_any()))
            .collect();
        if free.is_empty() {
            let changed = desktops.iter().any(|d| {
                local
                    .pending
                    .get(&d.name_any())
                    .is_some_and(|p| p.user.is_none())
            });
            if changed {
                return Pick::Wait;
            }
            let saw = desktops
                .iter()
                .map(|d| (d.name_any(), d.metadata.resource_version.clone()))
                .collect();
            return Pick::None(saw);
        }
        let desktop = free[start(user, free.len())];
        let seen = desktop.resource_version();
        local.pending.insert(
            desktop.name_any(),
            Pending {
                seen: seen.clone(),
                user: None,
            },
        );
        Pick::Take(desktop.name_any(), seen)
    }

    /// Takes desktop `name` back from its user (see [`release`]).
    pub async fn release(&self, name: &str) -> Result<(), AssignError> {
        release(&self.api, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_start_at_different_desktops() {
        let starts: std::collections::BTreeSet<usize> =
            (0..50).map(|i| start(&format!("user-{i}"), 100)).collect();
        assert!(starts.len() > 30, "{starts:?}");
        assert_eq!(start("alice", 100), start("alice", 100));
        assert_eq!(start("alice", 1), 0);
    }

    #[test]
    fn only_ready_unassigned_desktops_are_available() {
        let mut desktop: Desktop = serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "Desktop",
            "metadata": {"name": "p-1"},
            "spec": {
                "resources": {"cpus": 1, "memory": "1Gi"},
                "boot": {"kernel": {"hostPath": "/k"}},
            },
        }))
        .unwrap();
        assert!(!available(&desktop), "no status yet");
        desktop.status = Some(crds::DesktopStatus {
            phase: Some(DesktopPhase::Ready),
            ..Default::default()
        });
        desktop.metadata.generation = Some(2);
        assert!(!available(&desktop), "status older than the spec");
        desktop.status.as_mut().unwrap().observed_generation = Some(2);
        assert!(available(&desktop));
        desktop.spec.user = Some("alice".into());
        assert!(!available(&desktop), "assigned");
        // Cleared by hand, never reset: still the last user's VM.
        desktop.spec.user = None;
        desktop.metadata.annotations =
            Some([(USED_BY_ANNOTATION.to_owned(), "alice".to_owned())].into());
        assert!(!available(&desktop), "had a user since its last reset");
    }
}
