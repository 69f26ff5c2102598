//! What each pool's last reconcile created and deleted, until the cache shows it (as
//! kube-controller-manager's "expectations" do): a cache a moment behind would otherwise make
//! the same desktops again, each a refused write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crds::{Desktop, DesktopPool};
use kube::ResourceExt;

/// How long the desktops a reconcile created or deleted are waited for in the cache before
/// the pool is planned again regardless (a missed event must not stall it).
pub const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);

/// What one pool's last reconcile created and deleted.
#[derive(Debug)]
struct Expected {
    created: Vec<String>,
    deleted: Vec<String>,
    at: Instant,
}

/// The expectations of every pool, by pool uid.
#[derive(Debug, Default)]
pub struct Expectations {
    pools: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expected>> {
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the cache (`owned`) shows every desktop `pool`'s last reconcile created, and
    /// none it deleted (as live), or the wait timed out.
    pub fn met(&self, pool: &DesktopPool, owned: &[Arc<Desktop>]) -> bool {
        let key = pool.uid().unwrap_or_default();
        let mut pools = self.pools();
        let Some(e) = pools.get_mut(&key) else {
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
            pools.remove(&key);
        }
        met
    }

    /// Remembers what a reconcile of `pool` created and deleted.
    pub fn expect(&self, pool: &DesktopPool, created: Vec<String>, deleted: Vec<String>) {
        if created.is_empty() && deleted.is_empty() {
            return;
        }
        self.pools().insert(
            pool.uid().unwrap_or_default(),
            Expected {
                created,
                deleted,
                at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desktop(name: &str, terminating: bool) -> Arc<Desktop> {
        let mut d: Desktop = serde_json::from_value(serde_json::json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "Desktop",
            "metadata": {"name": name},
            "spec": {"resources": {"cpus": 1, "memory": "1Gi"}, "boot": {"kernel": {"hostPath": "/k"}}},
        }))
        .unwrap();
        if terminating {
            d.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        Arc::new(d)
    }

    #[test]
    fn met_once_the_cache_shows_what_was_created_and_deleted() {
        let pool: DesktopPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "DesktopPool",
            "metadata": {"name": "p", "uid": "u-1"},
            "spec": {"template": {"spec": {"resources": {"cpus": 1, "memory": "1Gi"}, "boot": {"kernel": {"hostPath": "/k"}}}}},
        }))
        .unwrap();
        let expectations = Expectations::default();
        assert!(expectations.met(&pool, &[]), "nothing expected");
        expectations.expect(&pool, vec!["p-1".into()], vec!["p-0".into()]);
        assert!(!expectations.met(&pool, &[desktop("p-0", false)]));
        assert!(!expectations.met(&pool, &[desktop("p-0", false), desktop("p-1", false)]));
        assert!(expectations.met(&pool, &[desktop("p-0", true), desktop("p-1", false)]));
    }
}
