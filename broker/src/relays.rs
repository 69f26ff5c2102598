//! Every viewer relay this broker has open, by desktop: so that a relay ends the moment what
//! it was opened under no longer holds. A desktop that changes hands (released, reset,
//! given to someone else, deleted) ends every relay opened before, whoever opened it, so no
//! viewer stays on a VM that is no longer its user's.
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

/// Why a relay was ended: the WebSocket close reason the viewer is shown.
pub type EndReason = Option<String>;

struct Entry {
    id: u64,
    /// Who opened it.
    user: String,
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

    /// Registers a relay of `user` to `desktop` as it was read when the relay was allowed.
    pub fn open(self: &Arc<Self>, desktop: &Desktop, user: &str) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (stop, ended) = watch::channel(None);
        let key = key(desktop);
        self.lock().entry(key.clone()).or_default().push(Entry {
            id,
            user: user.to_owned(),
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
            .filter(|e| e.user == user)
            .count()
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
        let alice = relays.open(&desktop("10", Some("alice"), 0), "alice");
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
        let bob = relays.open(&desktop("14", Some("bob"), 1), "bob");
        assert_eq!(relays.desktop_changed(&desktop("14", Some("bob"), 1)), 0);
        // A reset with the same user (an administrator's release and a new assignment
        // between two events) still ends it.
        assert_eq!(relays.desktop_changed(&desktop("20", Some("bob"), 2)), 1);
        assert_eq!(bob.ended.borrow().as_deref(), Some("the desktop was reset"));
        drop((alice, bob));
        assert!(relays.is_empty());
    }

    #[test]
    fn deletion_ends_every_relay() {
        let relays = Arc::new(Relays::default());
        let one = relays.open(&desktop("10", Some("alice"), 0), "alice");
        let two = relays.open(&desktop("10", Some("alice"), 0), "alice");
        assert_eq!(relays.len(), 2);
        assert_eq!((relays.of_user("alice"), relays.of_user("bob")), (2, 0));
        relays.desktop_deleted(&desktop("11", Some("alice"), 0));
        assert!(one.ended.borrow().is_some() && two.ended.borrow().is_some());
    }
}
