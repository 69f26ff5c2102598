//! How launchers ended, and the backoff before a failed one is replaced: like the kubelet's
//! crash-loop backoff, kept in memory per Desktop (an operator restart starts counting afresh)
//! and keyed by the Desktop's uid, so that a Desktop deleted and made again under the same name
//! starts with a clean slate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use launcher_api::ExitStatus;

/// First backoff after a launcher fails; it doubles each time, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// Longest backoff between launcher restarts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Failures of one Desktop's launchers, for backoff.
#[derive(Debug, Clone)]
pub struct FailureRecord {
    /// Consecutive failures.
    pub count: u32,
    /// When the last failed launcher was seen.
    pub at: Instant,
    /// Why, for the status.
    pub reason: String,
    /// What happened, for the status.
    pub message: String,
    /// The failed pod, so that one failure is counted once.
    pub pod_uid: String,
}

/// The backoff after `count` consecutive failures.
pub fn backoff(count: u32) -> Duration {
    let shift = count.saturating_sub(1).min(16);
    FIRST_BACKOFF.saturating_mul(1 << shift).min(MAX_BACKOFF)
}

/// How a finished launcher ended: whether that is a failure, and the words for it.
pub fn describe_exit(pod: &Pod) -> (bool, String, String) {
    let status = pod.status.as_ref();
    if status.and_then(|s| s.reason.as_deref()) == Some("Evicted") {
        let why = status.and_then(|s| s.message.clone()).unwrap_or_default();
        return (
            true,
            "LauncherEvicted".into(),
            format!("the launcher pod was evicted: {why}"),
        );
    }
    let terminated = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    let code = terminated.map(|t| t.exit_code);
    match code.map(|c| (c, ExitStatus::from_code(c))) {
        Some((_, Some(ExitStatus::PoweredOff))) => (
            false,
            "GuestPoweredOff".into(),
            "the guest powered off; starting it again".into(),
        ),
        Some((_, Some(ExitStatus::Reset))) => (
            false,
            "GuestRebooted".into(),
            "the guest rebooted; starting it again".into(),
        ),
        Some((code, Some(ExitStatus::Crashed))) => (
            true,
            "GuestCrashed".into(),
            format!("the guest crashed (launcher exit {code}); see the launcher's log"),
        ),
        Some((code, _)) => {
            let reason = terminated
                .and_then(|t| t.reason.clone())
                .unwrap_or_default();
            let exit = format!("{code} {reason}").trim_end().to_owned();
            let message = match launcher_api::exit::killed_by(code) {
                Some((signal, meaning)) => {
                    format!("the launcher was killed by {signal} (exit {exit}): {meaning}")
                }
                None => format!("the launcher exited with {exit}"),
            };
            // What it said last (the kubelet's termination message: the end of its log),
            // so the status says why without kubectl logs.
            let said = terminated
                .and_then(|t| t.message.as_deref())
                .and_then(launcher_said);
            let message = match said {
                Some(said) => format!("{message}: {said}"),
                None => message,
            };
            (true, "LauncherFailed".into(), message)
        }
        None => (
            true,
            "LauncherFailed".into(),
            format!(
                "the launcher pod {}: {}",
                status.and_then(|s| s.phase.clone()).unwrap_or_default(),
                status.and_then(|s| s.message.clone()).unwrap_or_default()
            ),
        ),
    }
}

/// The launcher's own last line in a termination message (the end of its log, where the
/// guest's console is mixed in), without its program-name prefix, at most 300 characters.
fn launcher_said(log: &str) -> Option<String> {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("verdant-launcher: "))?;
    Some(line.chars().take(300).collect())
}

/// Whether a launcher pod has finished (its container exited).
pub fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed" | "Succeeded")
    )
}

/// The launcher failures of every Desktop, by the Desktop's uid.
#[derive(Debug, Default)]
pub struct Failures {
    records: Mutex<HashMap<String, FailureRecord>>,
}

impl Failures {
    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, FailureRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The failure record of the Desktop `uid`.
    pub fn get(&self, uid: &str) -> Option<FailureRecord> {
        self.records().get(uid).cloned()
    }

    /// Records how launcher pod `pod_uid` of Desktop `uid` ended; each pod counts once. A
    /// clean end clears the record. Returns the record.
    pub fn record(
        &self,
        uid: &str,
        pod_uid: &str,
        failed: bool,
        reason: &str,
        message: &str,
    ) -> Option<FailureRecord> {
        let mut records = self.records();
        if !failed {
            records.remove(uid);
            return None;
        }
        let record = records
            .entry(uid.to_owned())
            .or_insert_with(|| FailureRecord {
                count: 0,
                at: Instant::now(),
                reason: String::new(),
                message: String::new(),
                pod_uid: String::new(),
            });
        if record.pod_uid != pod_uid {
            record.count += 1;
            record.at = Instant::now();
            record.reason = reason.into();
            record.message = message.into();
            record.pod_uid = pod_uid.into();
        }
        Some(record.clone())
    }

    /// Forgets the failures of Desktop `uid` (it became Ready, stopped, or was deleted).
    pub fn forget(&self, uid: &str) {
        self.records().remove(uid);
    }

    /// Forgets every Desktop not in `live` (deleted ones).
    pub fn retain(&self, live: impl Fn(&str) -> bool) {
        self.records().retain(|uid, _| live(uid));
    }

    /// Whether no Desktop has a record.
    pub fn is_empty(&self) -> bool {
        self.records().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };

    fn exited(code: i32) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(if code == 0 { "Succeeded" } else { "Failed" }.into()),
                container_statuses: Some(vec![ContainerStatus {
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: code,
                            reason: Some("Error".into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(2), Duration::from_secs(10));
        assert_eq!(backoff(4), Duration::from_secs(40));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn failures_count_each_pod_once_and_are_kept_per_desktop_uid() {
        let failures = Failures::default();
        assert_eq!(
            failures
                .record("d1", "p1", true, "GuestCrashed", "m")
                .unwrap()
                .count,
            1
        );
        assert_eq!(
            failures
                .record("d1", "p1", true, "GuestCrashed", "m")
                .unwrap()
                .count,
            1
        );
        assert_eq!(
            failures
                .record("d1", "p2", true, "GuestCrashed", "m")
                .unwrap()
                .count,
            2
        );
        // The same name made again is another uid: nothing inherited.
        assert!(failures.get("d2").is_none());
        assert!(
            failures
                .record("d1", "p3", false, "GuestPoweredOff", "m")
                .is_none()
        );
        assert!(
            failures.get("d1").is_none(),
            "a clean end clears the record"
        );
        failures.record("d1", "p4", true, "GuestCrashed", "m");
        failures.record("d2", "p5", true, "GuestCrashed", "m");
        failures.forget("d1");
        failures.retain(|uid| uid != "d2");
        assert!(failures.is_empty());
    }

    #[test]
    fn exits_are_told_apart() {
        assert_eq!(describe_exit(&exited(0)).1, "GuestPoweredOff");
        assert!(!describe_exit(&exited(3)).0, "a reboot is not a failure");
        let (failed, reason, _) = describe_exit(&exited(4));
        assert!(failed);
        assert_eq!(reason, "GuestCrashed");
        let (failed, _, message) = describe_exit(&exited(1));
        assert!(failed && message.contains("exited with 1"), "{message}");
        let mut said = exited(1);
        let status = said
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap();
        status[0].state.as_mut().unwrap().terminated.as_mut().unwrap().message = Some(
            "guest line\nverdant-launcher: initrd /verdant/boot/initrd/host/x: it leads out of /verdant/boot/initrd/host\nguest: bye\n".into(),
        );
        let (_, _, message) = describe_exit(&said);
        assert_eq!(
            message,
            "the launcher exited with 1 Error: initrd /verdant/boot/initrd/host/x: it leads out of /verdant/boot/initrd/host"
        );
        let (failed, reason, message) = describe_exit(&exited(159));
        assert!(failed && reason == "LauncherFailed");
        assert!(
            message.contains("SIGSYS") && message.contains("verdant-launcher/v1"),
            "a seccomp kill names the profile: {message}"
        );
        let (_, _, message) = describe_exit(&exited(137));
        assert!(
            message.starts_with(
                "the launcher was killed by SIGKILL (exit 137 Error): killed from outside"
            ),
            "{message}"
        );
        let evicted = Pod {
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                reason: Some("Evicted".into()),
                message: Some("The node was low on memory.".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (failed, reason, message) = describe_exit(&evicted);
        assert!(failed && reason == "LauncherEvicted" && message.contains("low on memory"));
    }
}
