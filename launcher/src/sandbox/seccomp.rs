//! The seccomp profile [`super::PROFILE`]: every system call the launcher's threads make once
//! setup is done, and nothing else.
//!
//! The threads it covers: the vCPUs (`KVM_RUN`, the device exits they handle, the kick signal),
//! the VNC server (its acceptor, a writer and a reader thread per viewer, the frame watcher),
//! the HTTP endpoints (one poll loop), the display watcher, the main thread's wait loop and its shutdown, and
//! what std and glibc do under them (allocation, futexes, threads starting and ending, clocks).
//! Nothing opens a file, creates or binds a socket, or executes anything after setup, so
//! `openat`, `socket`, `bind`, `connect` and `execve` are all out. Arguments are checked where
//! a call can do more than the launcher needs: `ioctl` takes the four KVM requests in use
//! after setup (no other ioctl family is used then: std's sockets and stdio need none),
//! `mmap` and `mprotect` never make memory executable, `clone` only makes threads, `tgkill`
//! only signals this process's threads, and `setsockopt`, `fcntl` and `prctl` take only the
//! options std uses.

use std::collections::BTreeMap;

use kvm_bindings::{KVMIO, kvm_dirty_log, kvm_regs, kvm_sregs};
use seccompiler::{
    BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use vmm_sys_util::ioctl::{_IOC_NONE, _IOC_READ, _IOC_WRITE, ioctl_expr};

use super::SeccompMode;
use crate::Error;

/// `KVM_RUN`: a vCPU runs the guest until the next exit.
pub const KVM_RUN: u64 = ioctl_expr(_IOC_NONE, KVMIO, 0x80, 0);
/// `KVM_GET_REGS`: a crashed vCPU's registers, for the report.
pub const KVM_GET_REGS: u64 = ioctl_expr(_IOC_READ, KVMIO, 0x81, size_of::<kvm_regs>() as u32);
/// `KVM_GET_SREGS`: a crashed vCPU's special registers, for the report.
pub const KVM_GET_SREGS: u64 = ioctl_expr(_IOC_READ, KVMIO, 0x83, size_of::<kvm_sregs>() as u32);
/// `KVM_GET_DIRTY_LOG`: what the guest drew, for the display and the VNC server.
pub const KVM_GET_DIRTY_LOG: u64 =
    ioctl_expr(_IOC_WRITE, KVMIO, 0x42, size_of::<kvm_dirty_log>() as u32);

/// System call number -> the argument checks of which one must hold (none: always allowed).
pub type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// The profile's rules for process `pid` (`tgkill` may signal its threads only).
pub fn rules(pid: u32) -> Result<Rules, BackendError> {
    use libc::*;
    let mut p = Profile::default();
    // What is already open: the guest console to stdout, logs to stderr, and the eventfds a
    // device writes to raise its interrupt line through KVM's irqfd.
    p.allow(&[SYS_read, SYS_write]);
    // Connections of VNC viewers and HTTP probes, on listeners bound during setup: accept,
    // receive and send (std's TcpStream read and write), the peer's address for the logs,
    // shutdown, close.
    p.allow(&[
        SYS_accept4,
        SYS_recvfrom,
        SYS_sendto,
        SYS_getpeername,
        SYS_shutdown,
        SYS_close,
    ]);
    // The HTTP endpoints wait for all their connections at once (glibc's poll() is the poll
    // call on x86_64; ppoll where an architecture has no poll).
    p.allow(&[SYS_poll, SYS_ppoll]);
    // Only the options the servers set on a connection: read and write timeouts, no Nagle.
    p.allow_if(
        SYS_setsockopt,
        vec![
            rule(vec![eq(1, SOL_SOCKET)?, eq(2, SO_RCVTIMEO)?])?,
            rule(vec![eq(1, SOL_SOCKET)?, eq(2, SO_SNDTIMEO)?])?,
            rule(vec![eq(1, IPPROTO_TCP)?, eq(2, TCP_NODELAY)?])?,
        ],
    );
    // TcpStream::try_clone: a viewer's reader thread gets its own handle on the connection.
    // F_GETFD: with debug assertions, std checks a descriptor is still open before closing it.
    p.allow_if(
        SYS_fcntl,
        vec![
            rule(vec![eq(1, F_DUPFD_CLOEXEC)?])?,
            rule(vec![eq(1, F_GETFD)?])?,
        ],
    );
    // Memory: the allocator, thread stacks and their guard pages. Never executable: nothing
    // loads code after setup.
    p.allow(&[SYS_brk, SYS_munmap, SYS_mremap, SYS_madvise]);
    for call in [SYS_mmap, SYS_mprotect] {
        p.allow_if(call, vec![rule(vec![bits_clear(2, PROT_EXEC)?])?]);
    }
    // Threads: a viewer that connects later gets two, the vCPUs start after the filter.
    // clone only for threads; clone3 too (glibc tries it first; its flags sit in memory, out
    // of BPF's reach). glibc registers set_robust_list and rseq in each new thread, std a
    // sigaltstack (its stack-overflow guard) and a name (prctl PR_SET_NAME).
    p.allow_if(
        SYS_clone,
        vec![rule(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(CLONE_THREAD as u64),
            CLONE_THREAD as u64,
        )?])?],
    );
    p.allow(&[SYS_clone3, SYS_set_robust_list, SYS_rseq, SYS_sigaltstack]);
    p.allow_if(SYS_prctl, vec![rule(vec![eq(0, PR_SET_NAME)?])?]);
    p.allow(&[SYS_exit, SYS_exit_group]);
    // std asks glibc's pthread_getattr_np where a new thread's stack guard is, and that also
    // reads the thread's CPU affinity.
    p.allow(&[SYS_sched_getaffinity]);
    // Waiting: futexes (locks, channels, joins), yields, clocks (the vDSO normally; a real
    // call where the clock source has none, as under emulation), sleeps, and restart_syscall,
    // through which the kernel resumes a sleep a signal interrupted.
    p.allow(&[
        SYS_futex,
        SYS_sched_yield,
        SYS_clock_gettime,
        SYS_clock_nanosleep,
        SYS_nanosleep,
        SYS_restart_syscall,
    ]);
    // Signals: SIGTERM and the vCPU kick arrive and return (rt_sigreturn); Machine::run
    // installs the kick handler once the filter is on (rt_sigaction); glibc masks signals
    // around thread start (rt_sigprocmask); pthread_kill kicks a vCPU with tgkill, to this
    // process's threads only, asking getpid for the pid; abort() (a panic while panicking)
    // signals itself, asking gettid.
    p.allow(&[
        SYS_rt_sigaction,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_getpid,
        SYS_gettid,
    ]);
    p.allow_if(SYS_tgkill, vec![rule(vec![eq(0, pid as i32)?])?]);
    // The VNC authentication challenge (or `read` of /dev/urandom, opened during setup: see
    // open_randomness), std's hash map keys.
    p.allow(&[SYS_getrandom]);
    // KVM only, and only what runs after setup.
    let requests = [KVM_RUN, KVM_GET_REGS, KVM_GET_SREGS, KVM_GET_DIRTY_LOG];
    let ioctls = requests
        .into_iter()
        .map(|request| rule(vec![eq_u64(1, request)?]))
        .collect::<Result<_, _>>()?;
    p.allow_if(SYS_ioctl, ioctls);
    Ok(p.0)
}

/// How many system calls the profile allows.
pub fn syscall_count() -> usize {
    rules(std::process::id()).map_or(0, |r| r.len())
}

/// The profile for process `pid` as a BPF program for `arch`: allowed calls pass, others get
/// what `mode` says. [`SeccompMode::Off`] has no program.
pub fn compile(mode: SeccompMode, pid: u32, arch: TargetArch) -> Result<BpfProgram, Error> {
    let forbidden = match mode {
        SeccompMode::Enforce => SeccompAction::KillProcess,
        SeccompMode::Log => SeccompAction::Log,
        SeccompMode::Off => {
            return Err(Error::Confine(
                "seccomp: --seccomp off has no filter to compile".into(),
            ));
        }
    };
    let rules = rules(pid).map_err(compile_failed)?;
    let filter =
        SeccompFilter::new(rules, forbidden, SeccompAction::Allow, arch).map_err(compile_failed)?;
    BpfProgram::try_from(filter).map_err(compile_failed)
}

/// Installs the profile on every thread of this process (TSYNC; threads started later inherit
/// it) as `mode` says; returns how many system calls it allows.
pub fn apply(mode: SeccompMode) -> Result<usize, Error> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(compile_failed)?;
    let pid = std::process::id();
    let program = compile(mode, pid, arch)?;
    let count = rules(pid).map_err(compile_failed)?.len();
    fix_malloc_arena_limit();
    open_randomness()?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| {
        Error::Confine(format!(
            "seccomp: {e} (this needs a kernel with seccomp filters and the kill_process and \
             log actions, Linux 4.14 or newer; `--seccomp off` runs without)"
        ))
    })?;
    Ok(count)
}

/// glibc's malloc works out how many arenas it may create the first time threads contend
/// for one, by reading `/sys/devices/system/cpu/online`: an `openat`, which the profile
/// forbids, at a moment nobody chooses (a viewer connecting). Setting the limit now, to what
/// glibc would pick (8 arenas per online CPU on 64-bit), means it never needs to.
fn fix_malloc_arena_limit() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: sysconf only reads system information; it takes and returns integers.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.clamp(1, 1 << 16);
        let limit = libc::c_int::try_from(cpus * 8).unwrap_or(libc::c_int::MAX);
        // SAFETY: M_ARENA_MAX with a positive count only sets a malloc tunable; it takes
        // integers and touches no memory of ours. On failure glibc keeps its own limit.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, limit) };
    }
}

/// The `getrandom` crate (the VNC challenge) finds glibc's `getrandom()` through `dlsym`,
/// which a static glibc build (the container image's) cannot do; it then reads `/dev/urandom`,
/// opening it (after polling `/dev/random`) the first time it is asked: when the first viewer
/// connects, under the filter. Asking once now opens it for the rest of the run (the crate
/// keeps the descriptor), so only `read` is left for later.
fn open_randomness() -> Result<(), Error> {
    let mut byte = [0u8; 1];
    getrandom::fill(&mut byte).map_err(|e| Error::Confine(format!("getrandom: {e}")))
}

fn compile_failed(e: BackendError) -> Error {
    Error::Confine(format!(
        "seccomp: cannot build the {} profile: {e}",
        super::PROFILE
    ))
}

#[derive(Default)]
struct Profile(Rules);

impl Profile {
    fn allow(&mut self, calls: &[i64]) {
        for &call in calls {
            self.0.insert(call, Vec::new());
        }
    }

    fn allow_if(&mut self, call: i64, rules: Vec<SeccompRule>) {
        self.0.insert(call, rules);
    }
}

fn rule(conditions: Vec<SeccompCondition>) -> Result<SeccompRule, BackendError> {
    SeccompRule::new(conditions)
}

/// Argument `arg`, a C int, equals `value`.
fn eq(arg: u8, value: i32) -> Result<SeccompCondition, BackendError> {
    // The kernel sees the int's 32 bits; the comparison looks at those only.
    SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        u64::from(value as u32),
    )
}

/// Argument `arg`, an ioctl request, equals `request`. The kernel takes the request as an
/// unsigned int, so only the low 32 bits count (as Firecracker compares them).
fn eq_u64(arg: u8, request: u64) -> Result<SeccompCondition, BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request)
}

/// Argument `arg`, a C int, has none of the bits of `mask`.
fn bits_clear(arg: u8, mask: i32) -> Result<SeccompCondition, BackendError> {
    SeccompCondition::new(
        arg,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(u64::from(mask as u32)),
        0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_request_numbers_match_the_kernel_headers() {
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
        assert_eq!(KVM_GET_DIRTY_LOG, 0x4010_ae42);
    }

    #[test]
    fn the_profile_compiles_to_bpf_for_x86_64_in_both_modes() {
        for mode in [SeccompMode::Enforce, SeccompMode::Log] {
            let program = compile(mode, 4242, TargetArch::x86_64).unwrap();
            // The kernel takes at most 4096 instructions.
            assert!(
                program.len() > 40 && program.len() < 4096,
                "{}",
                program.len()
            );
        }
        assert!(compile(SeccompMode::Off, 1, TargetArch::x86_64).is_err());
    }

    #[test]
    fn what_setup_does_is_not_in_the_profile() {
        use libc::*;
        let rules = rules(1).unwrap();
        for call in [
            SYS_openat,
            SYS_socket,
            SYS_bind,
            SYS_listen,
            SYS_connect,
            SYS_execve,
            SYS_ptrace,
            SYS_kill,
            SYS_capset,
            SYS_seccomp,
            SYS_mount,
        ] {
            assert!(!rules.contains_key(&call), "syscall {call} is allowed");
        }
        assert!(rules[&SYS_read].is_empty());
        assert_eq!(rules[&SYS_ioctl].len(), 4);
        assert_eq!(syscall_count(), rules.len());
    }
}
