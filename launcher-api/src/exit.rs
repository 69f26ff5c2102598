//! What the launcher's exit status means. The launcher exits with [`ExitStatus::code`]; the
//! operator reads a finished pod's exit code back with [`ExitStatus::from_code`].

/// How a `verdant-launcher run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitStatus {
    /// The guest powered off, or shut down when asked: 0.
    PoweredOff,
    /// The launcher itself failed (bad config, no KVM, a file it cannot read): 1.
    LauncherError,
    /// The command line was wrong: 2.
    Usage,
    /// The guest asked for a reset (a reboot); the operator starts it again: 3.
    Reset,
    /// The guest crashed or KVM failed; the registers are in the log: 4.
    Crashed,
    /// The guest ignored the shutdown request for the grace period, or a second signal came,
    /// and the launcher stopped it hard: 5.
    StoppedHard,
}

impl ExitStatus {
    /// Every status, in code order.
    pub const ALL: [ExitStatus; 6] = [
        ExitStatus::PoweredOff,
        ExitStatus::LauncherError,
        ExitStatus::Usage,
        ExitStatus::Reset,
        ExitStatus::Crashed,
        ExitStatus::StoppedHard,
    ];

    /// The process exit code.
    pub const fn code(self) -> u8 {
        match self {
            ExitStatus::PoweredOff => 0,
            ExitStatus::LauncherError => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Reset => 3,
            ExitStatus::Crashed => 4,
            ExitStatus::StoppedHard => 5,
        }
    }

    /// The status an exit code means, if it is one of the launcher's.
    pub fn from_code(code: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|s| i32::from(s.code()) == code)
    }

    /// Whether the guest ended on its own terms (powered off, shut down or rebooted), so the
    /// desktop is simply started again, with no backoff.
    pub const fn is_clean(self) -> bool {
        matches!(self, ExitStatus::PoweredOff | ExitStatus::Reset)
    }
}

/// The name and version of the launcher's seccomp profile: the launcher bumps the version
/// whenever its allowlist changes, so that logs and the operator's events say which one a
/// process ran under.
pub const SECCOMP_PROFILE: &str = "verdant-launcher/v1";

/// What an exit code above 128 says about a launcher: it was killed by signal `code - 128`
/// (the kubelet's and the shell's convention). The signal's name and what it most likely
/// means; `None` for the launcher's own codes and for signals with nothing to add.
pub fn killed_by(code: i32) -> Option<(&'static str, &'static str)> {
    // Linux's numbers, the same on x86-64 and arm64.
    Some(match code.checked_sub(128)? {
        6 => ("SIGABRT", "it aborted; see the end of its log"),
        9 => (
            "SIGKILL",
            "killed from outside: the kernel's OOM killer, the kubelet after the grace period, or a person",
        ),
        11 => ("SIGSEGV", "it crashed on a bad memory access; see its log"),
        15 => (
            "SIGTERM",
            "it was stopped by SIGTERM before it could shut the guest down",
        ),
        31 => (
            "SIGSYS",
            // SECCOMP_PROFILE, spelled out (a test keeps the two the same).
            "it made a system call outside its seccomp profile verdant-launcher/v1 (run it with --seccomp log to see which)",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_the_documented_numbers() {
        for status in ExitStatus::ALL {
            assert_eq!(ExitStatus::from_code(status.code().into()), Some(status));
        }
        let codes: Vec<u8> = ExitStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5]);
        assert_eq!(ExitStatus::from_code(137), None);
        assert_eq!(ExitStatus::from_code(-1), None);
        assert!(ExitStatus::Reset.is_clean() && !ExitStatus::Crashed.is_clean());
    }

    #[test]
    fn codes_above_128_name_the_signal() {
        assert_eq!(killed_by(137).map(|k| k.0), Some("SIGKILL"));
        assert_eq!(killed_by(159).map(|k| k.0), Some("SIGSYS"));
        assert!(killed_by(159).unwrap().1.contains(SECCOMP_PROFILE));
        for code in [0, 1, 5, 128, 129, 200, -1, i32::MIN] {
            assert_eq!(killed_by(code), None, "{code}");
        }
    }
}
