//! Every viewer relay this broker has open, by desktop: so that a relay ends the moment what
//! it was opened under no longer holds. A desktop that changes hands (released, reset,
//! given to someone else, deleted) ends every relay opened before, whoever opened it, so no
//! viewer stays on a VM that is no longer its user's; a session that ends (logout, or an
//! administrator's revocation) ends its relays; and the watchdog ([`crate::watchdog`]) ends
//! those whose user RBAC no longer allows.
//!
//! The broker's desktop watch reports each change here ([`Relays::desktop_changed`]); a
//! relay registers before it starts relaying and checks the cache once more after, so a
//! change that lands in between is not missed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crds::Desktop;
use crds::labels::reset_count;
use kube::ResourceExt;
use tokio::sync::watch;

use crate::identity::Identity;
use crate::identity::sessions::lease_name;

/// Whose a desktop is, as a relay saw it when it opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `spec.user`.
    user: Option<String>,
    /// The reset count: a reset is a new VM.
    resets: u64,
    /// The object's uid: a desktop deleted and made again is another desktop.
    uid: Option<String>,
}

impl Holder {
    /// Whose `desktop` is now.
    pub fn of(desktop: &Desktop) -> Self {
        Self {
            user: desktop.spec.user.clone(),
            resets: reset_count(desktop.annotations()),
            uid: desktop.metadata.uid.clone(),
        }
    }
}

/// A version to order what the watch reports against what a relay opened with: the
/// resourceVersion, where it is a number (etcd's revision, as every apiserver gives it).
fn version(desktop: &Desktop) -> Option<u64> {
    desktop.metadata.resource_version.as_deref()?.parse().ok()
}

/// Who opened a relay, and how.
#[derive(Debug, Clone)]
pub struct Opener {
    /// The browser session (or bearer token) it was opened in.
    pub sid: String,
    /// The user.
    pub identity: Identity,
    /// Watching only (shadow).
    pub view_only: bool,
}

impl Opener {
    /// Whether it was opened with a bearer token (no session Lease).
    pub fn is_bearer(&self) -> bool {
        self.sid.starts_with(BEARER_SID_PREFIX)
    }
}

/// What a bearer caller's session id starts with.
pub const BEARER_SID_PREFIX: &str = "bearer-";

/// One open relay, as the watchdog looks at it.
#[derive(Debug, Clone)]
pub struct OpenRelay {
    /// Its id (for [`Relays::end`]).
    pub id: u64,
    /// The desktop's namespace and name.
    pub desktop: (String, String),
    /// Who opened it.
    pub opener: Opener,
}

/// Why a relay was ended: the WebSocket close reason the viewer is shown.
pub type EndReason = Option<String>;

struct Entry {
    id: u64,
    /// Who opened it, and how.
    opener: Opener,
    /// The Lease name of the session it was opened in.
    session: String,
    holder: Holder,
    /// The version of the desktop the relay opened with.
    opened_at: Option<u64>,
    stop: watch::Sender<EndReason>,
}

/// The open relays of one broker.
#[derive(Default)]
pub struct Relays {
    next: AtomicU64,
    open: Mutex<HashMap<(String, String), Vec<Entry>>>,
}

/// One relay's place in [`Relays`]; dropping it takes the relay out.
pub struct Registration {
    relays: Arc<Relays>,
    key: (String, String),
    id: u64,
    /// Turns `Some(reason)` when the relay must end.
    pub ended: watch::Receiver<EndReason>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut open = self.relays.lock();
        if let Some(entries) = open.get_mut(&self.key) {
            entries.retain(|e| e.id != self.id);
            if entries.is_empty() {
                open.remove(&self.key);
            }
        }
    }
}

fn key(desktop: &Desktop) -> (String, String) {
    (desktop.namespace().unwrap_or_default(), desktop.name_any())
}

/// Whether `now` (a later version of the desktop, as the watch reports it) ends a relay
/// opened under `entry`: it is newer than what the relay opened with, and the desktop
/// changed hands or is going.
fn ends(entry: &Entry, now: &Desktop) -> Option<&'static str> {
    if let (Some(opened), Some(seen)) = (entry.opened_at, version(now))
        && seen <= opened
    {
        // An event from before the relay opened (the watch lags the read it opened on).
        return None;
    }
    if now.metadata.deletion_timestamp.is_some() {
        return Some("the desktop is being deleted");
    }
    let holder = Holder::of(now);
    if holder.uid != entry.holder.uid {
        Some("the desktop was deleted")
    } else if holder.user != entry.holder.user {
        Some("the desktop changed hands")
    } else if holder.resets != entry.holder.resets {
        Some("the desktop was reset")
    } else {
        None
    }
}

impl Relays {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Vec<Entry>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a relay of `opener` to `desktop` as it was read when the relay was allowed.
    pub fn open(self: &Arc<Self>, desktop: &Desktop, opener: Opener) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (stop, ended) = watch::channel(None);
        let key = key(desktop);
        self.lock().entry(key.clone()).or_default().push(Entry {
            id,
            session: lease_name(&opener.sid),
            opener,
            holder: Holder::of(desktop),
            opened_at: version(desktop),
            stop,
        });
        Registration {
            relays: Arc::clone(self),
            key,
            id,
            ended,
        }
    }

    /// The watch saw `desktop` change (or the cache holds it now): ends the relays it no
    /// longer allows. Returns how many.
    pub fn desktop_changed(&self, desktop: &Desktop) -> usize {
        let open = self.lock();
        let Some(entries) = open.get(&key(desktop)) else {
            return 0;
        };
        let mut ended = 0;
        for entry in entries {
            if entry.stop.borrow().is_some() {
                continue;
            }
            if let Some(why) = ends(entry, desktop) {
                entry.stop.send_replace(Some(why.to_owned()));
                ended += 1;
            }
        }
        ended
    }

    /// The watch saw `desktop` deleted: ends every relay to it.
    pub fn desktop_deleted(&self, desktop: &Desktop) {
        if let Some(entries) = self.lock().get(&key(desktop)) {
            for entry in entries {
                entry
                    .stop
                    .send_replace(Some("the desktop was deleted".to_owned()));
            }
        }
    }

    /// How many relays `user` has open here.
    pub fn of_user(&self, user: &str) -> usize {
        self.lock()
            .values()
            .flatten()
            .filter(|e| e.opener.identity.user == user)
            .count()
    }

    /// The session whose Lease is `lease` ended: ends its relays. Returns how many.
    pub fn session_ended(&self, lease: &str) -> usize {
        let open = self.lock();
        let mut ended = 0;
        for entry in open.values().flatten().filter(|e| e.session == lease) {
            entry
                .stop
                .send_replace(Some("the session ended; log in again".to_owned()));
            ended += 1;
        }
        ended
    }

    /// Every open relay, for the watchdog.
    pub fn snapshot(&self) -> Vec<OpenRelay> {
        self.lock()
            .iter()
            .flat_map(|(desktop, entries)| {
                entries.iter().map(|e| OpenRelay {
                    id: e.id,
                    desktop: desktop.clone(),
                    opener: e.opener.clone(),
                })
            })
            .collect()
    }

    /// Ends relay `id`, telling its viewer `why`.
    pub fn end(&self, id: u64, why: &str) {
        for entry in self.lock().values().flatten().filter(|e| e.id == id) {
            entry.stop.send_replace(Some(why.to_owned()));
        }
    }

    /// How many relays are open.
    pub fn len(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Whether no relay is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opener(user: &str, sid: &str) -> Opener {
        Opener {
            sid: sid.into(),
            identity: Identity {
                user: user.into(),
                groups: vec![],
                uid: None,
                extra: Default::default(),
            },
            view_only: false,
        }
    }

    fn desktop(version: &str, user: Option<&str>, resets: u64) -> Desktop {
        serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "Desktop",
            "metadata": {
                "name": "d", "namespace": "ns", "uid": "u1", "resourceVersion": version,
                "annotations": {"vdi.verdant.dev/reset": resets.to_string()},
            },
            "spec": {
                "user": user,
                "resources": {"cpus": 1, "memory": "1Gi"},
                "boot": {"kernel": {"hostPath": "/k"}},
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_relay_ends_when_its_desktop_changes_hands_and_only_then() {
        let relays = Arc::new(Relays::default());
        let alice = relays.open(&desktop("10", Some("alice"), 0), opener("alice", "s1"));
        // Older news (the watch lags the read the relay opened on), and a status write.
        assert_eq!(relays.desktop_changed(&desktop("9", None, 0)), 0);
        assert_eq!(relays.desktop_changed(&desktop("11", Some("alice"), 0)), 0);
        assert!(alice.ended.borrow().is_none());
        // Released: ended, with a reason the viewer is shown.
        assert_eq!(relays.desktop_changed(&desktop("12", None, 1)), 1);
        assert_eq!(
            alice.ended.borrow().as_deref(),
            Some("the desktop changed hands")
        );
        // A relay opened on the fresh VM is not ended by what ended the last one.
        let bob = relays.open(&desktop("14", Some("bob"), 1), opener("bob", "s2"));
        assert_eq!(relays.desktop_changed(&desktop("14", Some("bob"), 1)), 0);
        // A reset with the same user (an administrator's release and a new assignment
        // between two events) still ends it.
        assert_eq!(relays.desktop_changed(&desktop("20", Some("bob"), 2)), 1);
        assert_eq!(bob.ended.borrow().as_deref(), Some("the desktop was reset"));
        drop((alice, bob));
        assert!(relays.is_empty());
    }

    #[test]
    fn an_ended_session_ends_its_relays_only() {
        let relays = Arc::new(Relays::default());
        let mine = relays.open(&desktop("10", Some("alice"), 0), opener("alice", "s1"));
        let other = relays.open(&desktop("10", Some("alice"), 0), opener("alice", "s2"));
        assert_eq!(relays.session_ended(&lease_name("s1")), 1);
        assert!(mine.ended.borrow().is_some() && other.ended.borrow().is_none());
    }

    #[test]
    fn deletion_ends_every_relay() {
        let relays = Arc::new(Relays::default());
        let one = relays.open(&desktop("10", Some("alice"), 0), opener("alice", "s1"));
        let two = relays.open(&desktop("10", Some("alice"), 0), opener("alice", "s1"));
        assert_eq!(relays.len(), 2);
        assert_eq!((relays.of_user("alice"), relays.of_user("bob")), (2, 0));
        assert_eq!(relays.snapshot().len(), 2);
        relays.desktop_deleted(&desktop("11", Some("alice"), 0));
        assert!(one.ended.borrow().is_some() && two.ended.borrow().is_some());
    }
}
