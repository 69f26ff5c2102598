//! Session limits (`spec.session` of a pool): when a Floating desktop's user has been idle,
//! disconnected, or simply assigned for too long, the desktop is released (and so reset).
//! Pure: the policy, what the broker wrote in `status.assignment`, and the time now in; the
//! limit that was passed, or when the next one will be, out.

use std::time::Duration;

use crds::{Assignment, SessionPolicy, SessionState};
use k8s_openapi::jiff::Timestamp;

/// Parses a Go duration (`30m`, `1h30m`, `1.5h`, `250ms`): what `spec.session` holds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 30m or 1h30m");
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// A limit a session passed: a CamelCase reason and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    /// `IdleTimeout`, `DisconnectTimeout` or `MaxDuration`.
    pub reason: &'static str,
    /// For people.
    pub message: String,
}

/// What the session limits say about `assignment` at `now`: a limit passed, or how long until
/// the next one (`None`: no limit applies).
pub fn check(
    policy: &SessionPolicy,
    assignment: &Assignment,
    now: Timestamp,
) -> Result<Option<Duration>, Expired> {
    let limit = |text: &Option<String>| text.as_deref().and_then(|t| parse_duration(t).ok());
    let age = |at: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        at.map(|t| {
            let seconds = now.as_second() - t.0.as_second();
            Duration::from_secs(seconds.max(0) as u64)
        })
    };
    let user = &assignment.user;
    // (limit, time spent, reason, message)
    let mut limits = Vec::new();
    if let (Some(max), Some(spent)) = (limit(&policy.max_duration), age(assignment.since.as_ref()))
    {
        limits.push((
            max,
            spent,
            "MaxDuration",
            format!("{user} had the desktop for the maximum of {}", fmt(max)),
        ));
    }
    let activity = age(assignment
        .last_activity
        .as_ref()
        .or(assignment.since.as_ref()));
    if let (Some(idle), Some(spent)) = (limit(&policy.idle_timeout), activity) {
        limits.push((
            idle,
            spent,
            "IdleTimeout",
            format!("{user} was idle for {}", fmt(idle)),
        ));
    }
    // Disconnected since the broker said so; older writers only left the last activity.
    let gone_for = age(assignment
        .disconnected_at
        .as_ref()
        .or(assignment.last_activity.as_ref())
        .or(assignment.since.as_ref()));
    if assignment.session == Some(SessionState::Disconnected)
        && let (Some(gone), Some(spent)) = (limit(&policy.disconnect_timeout), gone_for)
    {
        limits.push((
            gone,
            spent,
            "DisconnectTimeout",
            format!("{user} was disconnected for {}", fmt(gone)),
        ));
    }
    let mut next: Option<Duration> = None;
    for (limit, spent, reason, message) in limits {
        if spent >= limit {
            return Err(Expired { reason, message });
        }
        let left = limit - spent;
        next = Some(next.map_or(left, |n| n.min(left)));
    }
    Ok(next)
}

fn fmt(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "30", "m", "5d", "1h-2m", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn at(seconds_ago: i64, now: Timestamp) -> Option<Time> {
        Some(Time(now - jiff_seconds(seconds_ago)))
    }

    fn jiff_seconds(s: i64) -> k8s_openapi::jiff::SignedDuration {
        k8s_openapi::jiff::SignedDuration::from_secs(s)
    }

    #[test]
    fn the_first_limit_passed_says_why_else_when_the_next_one_comes() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let policy = SessionPolicy {
            idle_timeout: Some("30m".into()),
            disconnect_timeout: Some("5m".into()),
            max_duration: Some("8h".into()),
        };
        let mut assignment = Assignment {
            user: "alice".into(),
            since: at(3600, now),
            session: Some(SessionState::Connected),
            last_activity: at(60, now),
            connected_at: at(3600, now),
            disconnected_at: None,
        };
        assert_eq!(
            check(&policy, &assignment, now),
            Ok(Some(Duration::from_secs(29 * 60))),
            "idle in 29 minutes comes first"
        );
        assignment.session = Some(SessionState::Disconnected);
        assert_eq!(
            check(&policy, &assignment, now),
            Ok(Some(Duration::from_secs(240)))
        );
        assignment.last_activity = at(600, now);
        assert_eq!(
            check(&policy, &assignment, now).unwrap_err().reason,
            "DisconnectTimeout",
            "without disconnectedAt, the last activity stands for it"
        );
        assignment.disconnected_at = at(120, now);
        assert_eq!(
            check(&policy, &assignment, now),
            Ok(Some(Duration::from_secs(180))),
            "the disconnect timeout counts from the disconnection, not the last input"
        );
        assignment.disconnected_at = at(600, now);
        assert_eq!(
            check(&policy, &assignment, now).unwrap_err(),
            Expired {
                reason: "DisconnectTimeout",
                message: "alice was disconnected for 5m".into()
            }
        );
        assignment.since = at(9 * 3600, now);
        assert_eq!(
            check(&policy, &assignment, now).unwrap_err().reason,
            "MaxDuration"
        );
        assert_eq!(
            check(&SessionPolicy::default(), &assignment, now),
            Ok(None),
            "no limits, nothing to do"
        );
    }
}
