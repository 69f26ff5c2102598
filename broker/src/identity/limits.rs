//! What an unauthenticated or a curious caller may cost the apiserver: token buckets per key
//! (a client address, a user), so that bogus bearer tokens and random desktop names are
//! answered by the broker, not passed on as TokenReviews, SubjectAccessReviews and GETs.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys remembered at most; past this, the idle ones are forgotten first.
const MAX_KEYS: usize = 100_000;

/// A token bucket per key: `burst` tokens, refilled at `per_second`.
pub struct RateLimiter<K> {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// `per_second` on average, `burst` at once, per key.
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token of `key`'s bucket: `false` when it is empty (the caller is refused).
    pub fn allow(&self, key: &K) -> bool {
        self.allow_at(key, Instant::now())
    }

    fn allow_at(&self, key: &K, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(key) {
            // Full buckets carry nothing worth keeping: forget them.
            let full = Duration::from_secs_f64(self.burst / self.per_second.max(f64::MIN_POSITIVE));
            buckets.retain(|_, (_, at)| now.duration_since(*at) < full);
            if buckets.len() >= MAX_KEYS {
                return false;
            }
        }
        let (tokens, at) = buckets.entry(key.clone()).or_insert((self.burst, now));
        let refilled = now.duration_since(*at).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refilled).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(10, 5);
        let t0 = Instant::now();
        let allowed = (0..20).filter(|_| limiter.allow_at(&"a", t0)).count();
        assert_eq!(allowed, 5, "the burst");
        assert!(limiter.allow_at(&"b", t0), "another key has its own bucket");
        // A tenth of a second later: one more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(limiter.allow_at(&"a", t1));
        assert!(!limiter.allow_at(&"a", t1));
        // Long idle: the burst again, not more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| limiter.allow_at(&"a", t2)).count(), 5);
    }
}
