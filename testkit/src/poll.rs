//! Waiting for something to become true: polling a check until it says so, or until a time
//! limit passes. The async pollers need a Tokio runtime; the blocking ones sleep the thread.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long the pollers sleep between two looks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Polls `check` every [`POLL_INTERVAL`] until it returns `Some`, or panics after `limit` with
/// "timed out after {limit:?} waiting for {what}".
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(limit, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Polls `check` every [`POLL_INTERVAL`] until it returns `Some`; `None` when it has not after
/// `limit` (the last look is at or after `limit`), for a caller that says more than
/// [`eventually`] can when time runs out.
pub async fn within<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if start.elapsed() >= limit {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// [`eventually`] for a thread outside any runtime: sleeps the thread between looks.
pub fn eventually_blocking<T>(what: &str, limit: Duration, check: impl FnMut() -> Option<T>) -> T {
    within_blocking(limit, check)
        .unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

/// [`within`] for a thread outside any runtime: sleeps the thread between looks.
pub fn within_blocking<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blocking_pollers_look_until_true_or_time_runs_out() {
        let mut looks = 0;
        let value = eventually_blocking("the third look", Duration::from_secs(5), || {
            looks += 1;
            (looks == 3).then_some(looks)
        });
        assert_eq!(value, 3);
        let start = Instant::now();
        assert_eq!(
            within_blocking(Duration::from_millis(250), || None::<()>),
            None
        );
        assert!(start.elapsed() >= Duration::from_millis(250));
        let panic = std::panic::catch_unwind(|| {
            eventually_blocking("nothing", Duration::ZERO, || None::<()>)
        })
        .unwrap_err();
        assert_eq!(
            panic.downcast_ref::<String>().map(String::as_str),
            Some("timed out after 0ns waiting for nothing")
        );
    }

    #[tokio::test]
    async fn the_async_pollers_look_until_true_or_time_runs_out() {
        let mut looks = 0;
        let value = eventually("the second look", Duration::from_secs(5), || {
            looks += 1;
            std::future::ready((looks == 2).then_some(looks))
        })
        .await;
        assert_eq!(value, 2);
        let none = within(Duration::from_millis(150), || async { None::<()> }).await;
        assert_eq!(none, None);
    }
}
