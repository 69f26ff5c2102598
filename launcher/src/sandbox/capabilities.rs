//! Dropping capabilities, and `no_new_privs`.
//!
//! Through the `caps` crate: libc has no `capget`/`capset` wrappers, and their ABI is a
//! versioned header followed by two 32-bit words per set; `caps` is a small, long-maintained
//! pure-Rust wrapper of exactly that and of the `prctl` calls for the bounding and ambient sets
//! (container runtimes such as youki use it), which leaves this module one `unsafe` of its own.

use std::fmt;

use caps::{CapSet, Capability, CapsHashSet};

use crate::Error;

/// What dropping the capabilities did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// How many effective capabilities the thread held before (0 for an unprivileged user).
    pub held: usize,
    /// Whether the bounding set is empty now. Clearing it needs `CAP_SETPCAP`, which an
    /// unprivileged process lacks; with `no_new_privs` set and `execve` outside the profile,
    /// the bounding set can give nothing back anyway.
    pub bounding_cleared: bool,
    /// Whether `CAP_NET_BIND_SERVICE` was kept for a listener on a port below 1024: the
    /// listener threads keep it (threads copy their creator's capabilities).
    pub kept_for_listeners: bool,
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.held == 0 {
            "none held"
        } else {
            "all dropped"
        };
        write!(f, "capabilities: {what}")?;
        if self.kept_for_listeners {
            f.write_str(" (the listener threads keep CAP_NET_BIND_SERVICE: a port below 1024)")?;
        }
        if !self.bounding_cleared {
            f.write_str(", bounding set kept (no CAP_SETPCAP)")?;
        }
        f.write_str(", no_new_privs set")
    }
}

/// Sets `no_new_privs`, clears the ambient, bounding and inheritable sets, and empties the
/// effective and permitted sets but for `CAP_NET_BIND_SERVICE` when `keep_bind` and held.
pub(super) fn drop_all(keep_bind: bool) -> Result<Capabilities, Error> {
    set_no_new_privs()?;
    let held = caps::read(None, CapSet::Effective).map_err(failed)?.len();
    // Kernels before 4.3 have no ambient set, hence nothing to clear.
    if caps::runtime::ambient_set_supported().is_ok() {
        caps::clear(None, CapSet::Ambient).map_err(failed)?;
    }
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP).map_err(failed)? {
        caps::clear(None, CapSet::Bounding).map_err(failed)?;
    }
    let bounding_cleared = caps::read(None, CapSet::Bounding)
        .map_err(failed)?
        .is_empty();
    caps::clear(None, CapSet::Inheritable).map_err(failed)?;
    let permitted = caps::read(None, CapSet::Permitted).map_err(failed)?;
    let mut keep = CapsHashSet::new();
    if keep_bind && permitted.contains(&Capability::CAP_NET_BIND_SERVICE) {
        keep.insert(Capability::CAP_NET_BIND_SERVICE);
    }
    // Effective first: it must stay a subset of permitted at every step.
    caps::set(None, CapSet::Effective, &keep).map_err(failed)?;
    caps::set(None, CapSet::Permitted, &keep).map_err(failed)?;
    Ok(Capabilities {
        held,
        bounding_cleared,
        kept_for_listeners: !keep.is_empty(),
    })
}

/// Empties the calling thread's effective and permitted sets (what [`drop_all`] kept).
pub(super) fn drop_kept(dropped: &Capabilities) -> Result<(), Error> {
    if dropped.kept_for_listeners {
        caps::clear(None, CapSet::Permitted).map_err(failed)?;
    }
    Ok(())
}

fn set_no_new_privs() -> Result<(), Error> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only and sets a flag of the calling
    // thread (inherited by threads it starts); no memory is passed to the kernel.
    let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(Error::Confine(format!(
            "prctl(PR_SET_NO_NEW_PRIVS): {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}

fn failed(error: caps::errors::CapsError) -> Error {
    Error::Confine(format!("capabilities: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_says_what_was_dropped_and_what_was_not() {
        let root = Capabilities {
            held: 40,
            bounding_cleared: true,
            kept_for_listeners: false,
        };
        assert_eq!(
            root.to_string(),
            "capabilities: all dropped, no_new_privs set"
        );
        let user = Capabilities {
            held: 0,
            bounding_cleared: false,
            kept_for_listeners: false,
        };
        assert_eq!(
            user.to_string(),
            "capabilities: none held, bounding set kept (no CAP_SETPCAP), no_new_privs set"
        );
        let low_port = Capabilities {
            kept_for_listeners: true,
            ..root
        };
        assert!(low_port.to_string().contains("CAP_NET_BIND_SERVICE"));
    }
}
