//! Per-object exponential backoff for reconciles that failed with a transient error: 1 s,
//! doubling to 5 min, back to the start once the object reconciles again. A busy apiserver is
//! not hammered by every object at a fixed rate, and one object's trouble does not slow the
//! others.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The first retry's wait.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between retries.
pub const MAX_RETRY: Duration = Duration::from_secs(300);

/// The wait before retry number `failures` (1 for the first).
pub fn wait(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << shift).min(MAX_RETRY)
}

/// Consecutive failures per object (by uid).
#[derive(Debug, Default)]
pub struct Retries {
    failures: Mutex<HashMap<String, u32>>,
}

impl Retries {
    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a failure of `uid`; returns how long to wait before the next try.
    pub fn failed(&self, uid: &str) -> Duration {
        let mut failures = self.failures();
        let count = failures.entry(uid.to_owned()).or_default();
        *count = count.saturating_add(1);
        wait(*count)
    }

    /// `uid` reconciled: its next failure waits the first wait again.
    pub fn succeeded(&self, uid: &str) {
        self.failures().remove(uid);
    }

    /// Forgets every object not in `live` (deleted ones).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.failures().retain(|uid, _| live(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_a_cap_per_object_and_reset_on_success() {
        let retries = Retries::default();
        let waits: Vec<u64> = (0..4).map(|_| retries.failed("a").as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        assert_eq!(retries.failed("b"), FIRST_RETRY, "objects count apart");
        retries.succeeded("a");
        assert_eq!(retries.failed("a"), FIRST_RETRY);
        assert_eq!(wait(20), MAX_RETRY);
        assert_eq!(wait(u32::MAX), MAX_RETRY);
        retries.retain(|uid| uid == "a");
        assert_eq!(retries.failed("b"), FIRST_RETRY, "b was forgotten");
    }
}
