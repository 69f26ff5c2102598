//! What `verdant-launcher doctor` says about confinement: the profile `run` would apply, whether
//! the kernel can apply it, and what this process has now.

use serde::Serialize;

use super::{PROFILE, SeccompMode, seccomp};

/// Where the kernel lists the seccomp actions it supports (Linux 4.14, with seccomp filters).
const ACTIONS_AVAIL: &str = "/proc/sys/kernel/seccomp/actions_avail";

/// Confinement, as the doctor reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The profile `run` applies.
    pub profile: &'static str,
    /// The mode `run` would use without `--seccomp`: from `VERDANT_SECCOMP`, else enforce;
    /// `None` when that variable holds something else.
    pub mode: Option<SeccompMode>,
    /// What is wrong with `VERDANT_SECCOMP`, if anything.
    pub mode_error: Option<String>,
    /// How many system calls the profile allows.
    pub syscalls_allowed: usize,
    /// Why the profile does not compile to BPF here; `None` when it does.
    pub compile_error: Option<String>,
    /// Whether the kernel has seccomp at all (`Seccomp:` in `/proc/self/status`).
    pub kernel_seccomp: bool,
    /// The seccomp actions the kernel offers (empty: no seccomp filters, or before 4.14).
    pub kernel_actions: Vec<String>,
    /// What this process has now.
    pub process: ProcessConfinement,
}

/// One process's confinement, from its `/proc/<pid>/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProcessConfinement {
    /// `Seccomp:` 0 none, 1 strict, 2 filter; `None` when the kernel has no seccomp.
    pub seccomp: Option<u8>,
    /// `NoNewPrivs:`.
    pub no_new_privs: Option<bool>,
    /// `CapEff:`, in hex as the kernel writes it.
    pub cap_eff: Option<String>,
}

impl ProcessConfinement {
    /// Reads this process's main thread.
    pub fn current() -> Self {
        std::fs::read_to_string("/proc/self/status")
            .map(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    /// Parses the text of a `/proc/<pid>/status` file.
    pub fn parse(status: &str) -> Self {
        let field = |name: &str| {
            status.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key == name).then(|| value.trim().to_owned())
            })
        };
        Self {
            seccomp: field("Seccomp").and_then(|v| v.parse().ok()),
            no_new_privs: field("NoNewPrivs").map(|v| v == "1"),
            cap_eff: field("CapEff"),
        }
    }

    /// One line for people.
    pub fn describe(&self) -> String {
        let seccomp = match self.seccomp {
            None => "unknown",
            Some(0) => "0 (none)",
            Some(1) => "1 (strict)",
            Some(2) => "2 (filter)",
            Some(_) => "other",
        };
        format!(
            "Seccomp: {seccomp}, NoNewPrivs: {}, CapEff: {}",
            self.no_new_privs
                .map_or("unknown", |n| if n { "1" } else { "0" }),
            self.cap_eff.as_deref().unwrap_or("unknown")
        )
    }
}

impl Status {
    /// Looks at the environment, the kernel and this process.
    pub fn current() -> Self {
        let process = ProcessConfinement::current();
        let kernel_actions = std::fs::read_to_string(ACTIONS_AVAIL)
            .map(|text| text.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let compiled = seccompiler::TargetArch::try_from(std::env::consts::ARCH)
            .map_err(|e| e.to_string())
            .and_then(|arch| {
                seccomp::compile(SeccompMode::Enforce, std::process::id(), arch)
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
        let mode = SeccompMode::from_env();
        Self {
            profile: PROFILE,
            mode: mode.as_ref().ok().copied(),
            mode_error: mode.err(),
            syscalls_allowed: seccomp::syscall_count(),
            compile_error: compiled.err(),
            kernel_seccomp: process.seccomp.is_some(),
            kernel_actions,
            process,
        }
    }

    /// Whether the kernel can apply the profile in `mode`.
    pub fn kernel_supports(&self, mode: SeccompMode) -> bool {
        let has = |action: &str| self.kernel_actions.iter().any(|a| a == action);
        match mode {
            SeccompMode::Enforce => self.kernel_seccomp && has("kill_process"),
            SeccompMode::Log => self.kernel_seccomp && has("log"),
            SeccompMode::Off => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_fields_are_read() {
        let text = "Name:\tverdant-launcher\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n\
                    Seccomp:\t2\nSeccomp_filters:\t1\n";
        let parsed = ProcessConfinement::parse(text);
        assert_eq!(
            parsed,
            ProcessConfinement {
                seccomp: Some(2),
                no_new_privs: Some(true),
                cap_eff: Some("0000000000000000".into()),
            }
        );
        assert_eq!(
            parsed.describe(),
            "Seccomp: 2 (filter), NoNewPrivs: 1, CapEff: 0000000000000000"
        );
        assert_eq!(ProcessConfinement::parse("Name:\tx\n").seccomp, None);
    }

    #[test]
    fn the_kernel_must_offer_the_action_the_mode_uses() {
        let mut status = Status::current();
        status.kernel_seccomp = true;
        status.kernel_actions = vec!["kill_process".into(), "allow".into()];
        assert!(status.kernel_supports(SeccompMode::Enforce));
        assert!(!status.kernel_supports(SeccompMode::Log));
        status.kernel_seccomp = false;
        assert!(!status.kernel_supports(SeccompMode::Enforce));
        assert!(status.kernel_supports(SeccompMode::Off));
    }
}
