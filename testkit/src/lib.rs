//! Skipping only when asked to. A test or benchmark whose real part is missing (`/dev/kvm`,
//! the test guests, a viewer we did not write) calls [`skip`]. By default that is a failure
//! naming the part, since `verdant-dev up` installs every part (tests/setup); a developer who
//! cannot install them opts out:
//!
//! - `VERDANT_ALLOW_SKIP=1` lets every missing part skip;
//! - `VERDANT_REQUIRE=kvm,viewers` requires exactly those kinds of part (`all`: every kind,
//!   `none`: no kind), whatever `VERDANT_ALLOW_SKIP` says;
//! - `VERDANT_REQUIRE_KVM=1` requires [`KVM`] even where skipping is allowed.
//!
//! A skip is loud: it is written to the process's stderr directly, which the test harness does
//! not capture, so `cargo test` shows it even for a test that passes, and to the file
//! [`SKIP_LOG`] names, if any, so that `verdant-dev test` ends with a count of them.
//!
//! [`procfs`] reads another process's CPU time and memory, failing when it is gone; [`net`]
//! finds free loopback ports and addresses; [`eventually`] and its kin wait for a condition.

pub mod net;
mod poll;
pub mod procfs;

pub use poll::{POLL_INTERVAL, eventually, eventually_blocking, within, within_blocking};

use std::fmt::Display;
use std::io::Write;

/// `/dev/kvm`, and the test guests built with the host's gcc and ld.
pub const KVM: &str = "kvm";
/// Viewers and tools we did not write: vncsnapshot, vncdotool, noVNC in Chromium, websockify,
/// TigerVNC's Xvnc, QEMU.
pub const VIEWERS: &str = "viewers";
/// The container image tools (buildah, skopeo, umoci; Debian packages), run as root.
pub const IMAGES: &str = "images";
/// A real node: containerd, runc and the CNI plugins (Debian packages), run as root.
pub const NODE: &str = "node";
/// Other tools the checks run: Graphviz's `dot`, which draws the architecture picture.
pub const TOOLS: &str = "tools";

/// The environment variable naming a file each skip is also written to, as one line
/// `kind<TAB>why`: `verdant-dev test` sets it and counts the skips at the end of the run.
pub const SKIP_LOG: &str = "VERDANT_SKIP_LOG";

/// Whether parts of `kind` are required, as the environment says.
pub fn required(kind: &str) -> bool {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    required_by(
        &var("VERDANT_REQUIRE"),
        &var("VERDANT_REQUIRE_KVM"),
        &var("VERDANT_ALLOW_SKIP"),
        kind,
    )
}

fn truthy(value: &str) -> bool {
    !matches!(value.trim(), "" | "0" | "false" | "no")
}

/// [`required`], from the three variables' values.
fn required_by(require: &str, require_kvm: &str, allow_skip: &str, kind: &str) -> bool {
    let kvm = kind == KVM && truthy(require_kvm);
    if !require.trim().is_empty() {
        let listed = require
            .split(',')
            .map(str::trim)
            .any(|k| k == "all" || k == kind);
        return listed || kvm;
    }
    !truthy(allow_skip) || kvm
}

/// Skips what the caller was about to do because a part of `kind` is missing (`why` says
/// which, and how to get it): panics when that kind is required, else says so loudly.
pub fn skip(kind: &str, why: impl Display) {
    if required(kind) {
        let fix = if kind == KVM {
            "the KVM tests need a usable /dev/kvm, which nothing here can install"
        } else {
            "`verdant-dev up` installs what the tests need (as root; the list is tests/setup/requirements.txt)"
        };
        panic!("{why}; {fix}. To skip what is missing instead, run with VERDANT_ALLOW_SKIP=1");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!`, not this.
    let _ = writeln!(std::io::stderr().lock(), "SKIP ({kind}): {why}");
    if let Some(log) = std::env::var_os(SKIP_LOG) {
        // One line per skip, appended whole (O_APPEND), for `verdant-dev test` to count.
        let line = format!("{kind}\t{}\n", why.to_string().replace(['\n', '\t'], " "));
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// Whether `/dev/kvm` is a KVM device this process can use: it opens for reading and writing,
/// as the launcher opens it, and answers `KVM_GET_API_VERSION` with the stable API's 12.
pub fn kvm_usable() -> Result<(), String> {
    use std::os::fd::AsRawFd;
    /// `_IO(KVMIO, 0x00)`.
    const KVM_GET_API_VERSION: libc::c_ulong = 0xae00;
    let kvm = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map_err(|e| format!("/dev/kvm cannot be opened: {e}"))?;
    // SAFETY: KVM_GET_API_VERSION takes no argument and touches no memory of ours; the file
    // descriptor is open for the duration of the call.
    let version = unsafe { libc::ioctl(kvm.as_raw_fd(), KVM_GET_API_VERSION as _, 0) };
    match version {
        12 => Ok(()),
        -1 => Err(format!(
            "/dev/kvm is not a KVM device: KVM_GET_API_VERSION failed: {}",
            std::io::Error::last_os_error()
        )),
        other => Err(format!("/dev/kvm speaks KVM API {other}, not 12")),
    }
}

/// Whether `program` runs with `args` (e.g. `--version`): installed and on PATH.
pub fn runs(program: &str, args: &[&str]) -> bool {
    std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_say_what_is_required() {
        // By default, everything.
        assert!(required_by("", "", "", KVM) && required_by("", "", "", NODE));
        // The opt-out.
        assert!(!required_by("", "", "1", KVM) && !required_by("", "", "1", VIEWERS));
        assert!(required_by("", "", "0", VIEWERS));
        assert!(required_by("", "1", "1", KVM) && !required_by("", "1", "1", VIEWERS));
        // An explicit list says exactly what.
        assert!(required_by("all", "", "1", KVM) && required_by("all", "", "", VIEWERS));
        assert!(required_by("kvm, viewers", "", "", VIEWERS));
        assert!(!required_by("viewers", "", "", KVM));
        assert!(!required_by("none", "", "", KVM) && required_by("none", "1", "", KVM));
    }
}
