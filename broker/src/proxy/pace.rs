//! How fast one viewer may send: a token bucket over WebSocket messages. Past its allowance the
//! relay stops reading that viewer's socket for a while, so TCP pushes back on a flood and the
//! broker spends a bounded share of a core on any one viewer, however small its messages.
//!
//! noVNC sends a message per pointer move, key or update request: a few hundred a second at
//! most. A flood of one-byte messages (a 1 MiB clipboard a byte at a time) reached 4.7 million
//! a second here and held a whole core of the broker; at [`MESSAGES_PER_SECOND`] the same
//! flood costs it about 2% of a core and still gets through, slowly.

use std::time::{Duration, Instant};

/// WebSocket messages a viewer may send a second, on average.
pub const MESSAGES_PER_SECOND: f64 = 100_000.0;
/// Messages a viewer may send at once, above the average.
pub const BURST: f64 = 10_000.0;
/// Once over its allowance, a viewer waits until this many messages are allowed again, so the
/// waits are milliseconds long (the timer's grain), not one per message.
const REFILL: f64 = 1_000.0;

/// One viewer's allowance.
#[derive(Debug)]
pub struct Pace {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Pace {
    /// A full allowance of `burst` messages, refilled at `per_second`.
    pub fn new(per_second: f64, burst: f64, now: Instant) -> Self {
        Self {
            per_second,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Counts one message arrived at `now`: how long to stop reading before the next, if the
    /// viewer is over its allowance.
    pub fn take(&mut self, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst) - 1.0;
        (self.tokens < 0.0).then(|| {
            let owed = -self.tokens + REFILL.min(self.burst);
            Duration::from_secs_f64(owed / self.per_second)
        })
    }
}

impl Default for Pace {
    fn default() -> Self {
        Self::new(MESSAGES_PER_SECOND, BURST, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_through_at_once_and_then_the_viewer_waits() {
        let start = Instant::now();
        let mut pace = Pace::new(1000.0, 10.0, start);
        for i in 0..10 {
            assert_eq!(pace.take(start), None, "message {i} of the burst");
        }
        // The 11th is over: wait until 1 + 10 messages' worth (REFILL capped at the burst)
        // has come back, 11 ms at 1000 a second.
        let wait = pace.take(start).expect("over the allowance");
        assert_eq!(wait.as_millis(), 11);
        // After that wait, ten go through again.
        let later = start + wait;
        for i in 0..10 {
            assert_eq!(pace.take(later), None, "message {i} after the wait");
        }
        assert!(pace.take(later).is_some());
    }

    #[test]
    fn a_viewer_under_its_rate_never_waits() {
        let start = Instant::now();
        let mut pace = Pace::new(1000.0, 10.0, start);
        for i in 0..10_000u32 {
            let now = start + Duration::from_micros(1100 * u64::from(i));
            assert_eq!(pace.take(now), None, "message {i}");
        }
    }

    #[test]
    fn a_flood_averages_the_rate_whatever_it_sends() {
        // A viewer that sends as soon as it may: the messages it gets through in 10 s of
        // waits come to the rate, plus the one burst.
        let start = Instant::now();
        let mut pace = Pace::new(1000.0, 100.0, start);
        let mut now = start;
        let mut sent = 0u32;
        while now < start + Duration::from_secs(10) {
            sent += 1;
            if let Some(wait) = pace.take(now) {
                now += wait;
            }
        }
        assert!(
            (10_000..=10_200).contains(&sent),
            "{sent} messages in 10 s at 1000 a second"
        );
    }
}
