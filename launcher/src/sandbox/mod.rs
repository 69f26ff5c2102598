//! Least privilege after setup. Once the VM is built and its listeners are bound, the launcher
//! gives up every capability and confines every thread to the system calls it still makes: the
//! seccomp profile [`PROFILE`] ([`seccomp`]).
//!
//! # Order
//!
//! 1. [`Sandbox::drop_capabilities`], on the only thread there is, once `/dev/kvm`, the kernel,
//!    the initrd and the VNC password are open or read, and before any server thread starts.
//!    Capabilities belong to a thread, and a new thread copies its creator's: dropped later on
//!    the main thread alone, they would stay with the HTTP and VNC threads and with every
//!    viewer thread those start, the very threads that talk to the network. `no_new_privs` is
//!    set here too. Only a listener on a port below 1024 keeps `CAP_NET_BIND_SERVICE` until
//!    the sockets are bound.
//! 2. [`Sandbox::apply_seccomp`] once the servers run and before the vCPUs enter the guest:
//!    with TSYNC on every thread the process has, and inherited by every thread it starts
//!    later (vCPUs, VNC viewers).
//!
//! # A forbidden system call kills the process
//!
//! [`SeccompMode::Enforce`], the default, answers a system call outside the profile with
//! `SECCOMP_RET_KILL_PROCESS`, as Firecracker does:
//! - nothing runs after the violation. Cloud Hypervisor's way (SIGSYS to a handler that logs
//!   the call and exits) runs code in the process that just misbehaved, and `rt_sigaction` is
//!   in the profile (for the vCPU kick), so a hijacked thread could install its own handler
//!   and carry on;
//! - an errno (EPERM) keeps the VM up but hides the bug: std and glibc turn many failed calls
//!   into quiet fallbacks, and a VM that half works is worse than one that stops visibly;
//! - the call is not lost: the kernel logs `kill_process` actions by default
//!   (`/proc/sys/kernel/seccomp/actions_logged`), so `dmesg` or the audit log says
//!   `type=1326 ... syscall=N`, and the pod shows a SIGSYS death (exit code 159).
//!
//! [`SeccompMode::Log`] allows such a call and has the kernel log it (`SECCOMP_RET_LOG`): how to
//! find what a new code path needs without losing a desktop. [`SeccompMode::Off`] installs no
//! filter and says so loudly; capabilities are dropped whatever the mode, since nothing after
//! setup needs one.

mod capabilities;
pub mod seccomp;
pub mod status;

use std::fmt;

use serde::Serialize;

use crate::Error;
pub use capabilities::Capabilities;
pub use status::{ProcessConfinement, Status};

/// The name and version of the seccomp profile (in launcher-api, for the operator's events):
/// bump the version whenever the allowlist changes, so that logs say which one a process ran
/// under.
pub const PROFILE: &str = launcher_api::exit::SECCOMP_PROFILE;

/// What happens to a system call outside the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    /// Kill the process (SECCOMP_RET_KILL_PROCESS); the kernel logs the call.
    #[default]
    Enforce,
    /// Allow it and have the kernel log it (SECCOMP_RET_LOG): for finding what is missing.
    Log,
    /// Install no filter at all: for debugging only.
    Off,
}

impl SeccompMode {
    /// The environment variable `run` falls back to when `--seccomp` is not given.
    pub const ENV: &'static str = "VERDANT_SECCOMP";

    /// The mode `run` would use with no `--seccomp` flag: [`SeccompMode::ENV`], else enforce.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(Self::ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(e) => Err(format!("{}: {e}", Self::ENV)),
            Ok(text) => <Self as clap::ValueEnum>::from_str(&text, false)
                .map_err(|_| format!("{}={text:?}: use enforce, log or off", Self::ENV)),
        }
    }

    /// The mode's name, as the flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::Log => "log",
            Self::Off => "off",
        }
    }

    /// What the kernel does with a system call outside the profile, in words.
    pub fn forbidden(self) -> &'static str {
        match self {
            Self::Enforce => "kill process",
            Self::Log => "allowed and logged by the kernel",
            Self::Off => "allowed (no filter)",
        }
    }
}

impl fmt::Display for SeccompMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A process whose capabilities are dropped, waiting for its seccomp filter: the two steps of
/// confinement, split so that server threads can start in between (see the module docs).
#[derive(Debug)]
#[must_use = "the process is not confined until apply_seccomp"]
pub struct Sandbox {
    capabilities: Capabilities,
}

impl Sandbox {
    /// Sets `no_new_privs` and drops every capability of the calling thread: the bounding,
    /// inheritable and ambient sets, and the effective and permitted ones, all but
    /// `CAP_NET_BIND_SERVICE` when `keep_bind` (a listener on a port below 1024 is still to be
    /// bound). Call it while this is the only thread, or the others keep theirs.
    pub fn drop_capabilities(keep_bind: bool) -> Result<Self, Error> {
        Ok(Self {
            capabilities: capabilities::drop_all(keep_bind)?,
        })
    }

    /// Drops what [`Sandbox::drop_capabilities`] kept, then installs the profile on every
    /// thread of the process as `mode` says ([`SeccompMode::Off`]: none).
    pub fn apply_seccomp(self, mode: SeccompMode) -> Result<Confinement, Error> {
        capabilities::drop_kept(&self.capabilities)?;
        let syscalls = match mode {
            SeccompMode::Off => 0,
            _ => seccomp::apply(mode)?,
        };
        Ok(Confinement {
            mode,
            syscalls,
            capabilities: self.capabilities,
        })
    }
}

/// Both steps at once, for a process that has one thread: what a test or a small tool wants.
pub fn confine(mode: SeccompMode) -> Result<Confinement, Error> {
    Sandbox::drop_capabilities(false)?.apply_seccomp(mode)
}

/// What confinement applied; its [`fmt::Display`] is the line `run` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    /// The seccomp mode.
    pub mode: SeccompMode,
    /// How many system calls the installed profile allows (0: none installed).
    pub syscalls: usize,
    /// What happened to the capabilities.
    pub capabilities: Capabilities,
}

impl fmt::Display for Confinement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mode {
            SeccompMode::Enforce => write!(f, "seccomp: profile {PROFILE} enforced")?,
            SeccompMode::Log => write!(f, "seccomp: profile {PROFILE} in log mode")?,
            SeccompMode::Off => {
                return write!(
                    f,
                    "WARNING: seccomp is OFF (--seccomp off or {}=off): no system call filter, a \
                     thread that goes wrong may make any call the kernel allows; {}",
                    SeccompMode::ENV,
                    self.capabilities
                );
            }
        }
        write!(
            f,
            " ({} syscalls allowed, forbidden -> {}); {}",
            self.syscalls,
            self.mode.forbidden(),
            self.capabilities
        )
    }
}

/// Whether any of `addrs` is a port only a privileged process may bind (below 1024, not 0).
pub fn needs_bind_capability(addrs: impl IntoIterator<Item = std::net::SocketAddr>) -> bool {
    addrs.into_iter().any(|a| a.port() != 0 && a.port() < 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_the_profile_the_count_and_the_action() {
        let dropped = Capabilities {
            held: 40,
            bounding_cleared: true,
            kept_for_listeners: false,
        };
        let line = Confinement {
            mode: SeccompMode::Enforce,
            syscalls: 42,
            capabilities: dropped.clone(),
        }
        .to_string();
        assert_eq!(
            line,
            "seccomp: profile verdant-launcher/v1 enforced (42 syscalls allowed, forbidden -> \
             kill process); capabilities: all dropped, no_new_privs set"
        );
        let off = Confinement {
            mode: SeccompMode::Off,
            syscalls: 0,
            capabilities: dropped,
        }
        .to_string();
        assert!(off.starts_with("WARNING: seccomp is OFF"), "{off}");
    }

    #[test]
    fn low_ports_need_the_bind_capability() {
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert!(!needs_bind_capability([
            addr("0.0.0.0:5900"),
            addr("0.0.0.0:8080")
        ]));
        assert!(!needs_bind_capability([addr("127.0.0.1:0")]));
        assert!(needs_bind_capability([
            addr("0.0.0.0:5900"),
            addr("[::]:80")
        ]));
    }
}
