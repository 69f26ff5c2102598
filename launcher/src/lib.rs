//! `verdant-launcher`: Verdant's VMM. It runs one desktop's VM through `/dev/kvm`: guest
//! memory, vCPUs on their own threads, direct kernel boot (PVH, 64-bit Linux, bzImage), a COM1
//! console, reset and power-off, and a boot-progress port.
//!
//! [`machine::Machine`] is the one place that assembles a VM; KVM state lives in [`vstate`],
//! x86 specifics in [`arch`], boot structures in [`boot`], and each device in [`devices`].
//! [`Launcher`] wires a machine to its HTTP endpoints ([`http`]) and to the VNC server (the
//! `rfb` crate), as `verdant-launcher run` runs it; [`sandbox`] then drops its capabilities
//! and confines it with seccomp.

pub mod arch;
pub mod boot;
pub mod demo;
pub mod devices;
pub mod display;
pub mod doctor;
pub mod http;
pub mod machine;
pub mod sandbox;
pub mod start;
pub mod vstate;

pub use start::{LaunchOptions, Launcher};

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the launcher. Guest misbehaviour is not an error of this
/// kind: it ends the VM with a [`machine::VmExit`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad configuration: names the field and what is allowed.
    #[error(transparent)]
    Config(#[from] launcher_api::ConfigError),
    /// `/dev/kvm` cannot be opened.
    #[error("Cannot open /dev/kvm: {0} (is KVM enabled, and may this user open /dev/kvm?)")]
    KvmUnavailable(std::io::Error),
    /// The host's KVM lacks something the VMM needs.
    #[error("KVM lacks capability {cap}, needed for {what}")]
    MissingCapability {
        /// The capability.
        cap: String,
        /// What it is needed for.
        what: &'static str,
    },
    /// A KVM ioctl failed.
    #[error("{ioctl} failed: {source}")]
    Kvm {
        /// The ioctl.
        ioctl: &'static str,
        /// The cause.
        source: kvm_ioctls::Error,
    },
    /// Guest memory cannot be mapped.
    #[error("Cannot map guest memory: {0}")]
    Memory(String),
    /// Guest memory is larger than this host can address.
    #[error("Config memory: {0} bytes do not fit this host's address space")]
    MemoryTooLarge(u64),
    /// A boot file cannot be read.
    #[error("Cannot read the {what} {path}: {source}")]
    File {
        /// `kernel` or `initrd`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The kernel image is not one we can boot.
    #[error("Cannot load the kernel {path}: {message}")]
    KernelLoad {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The initrd does not fit below the kernel's limit.
    #[error(
        "The initrd {path} ({size} bytes) does not fit in guest memory below the MMIO hole ({room} bytes free); give the VM more memory"
    )]
    InitrdTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The room there is.
        room: u64,
    },
    /// The command line is too long.
    #[error("Config cmdline: {len} bytes is longer than the {max} bytes x86 kernels accept")]
    CmdlineTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Writing a boot structure failed.
    #[error("Boot setup: {0}")]
    BootSetup(&'static str),
    /// The doctor's tiny guest misbehaved.
    #[error("Doctor: {0}")]
    Doctor(String),
    /// An OS call failed.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    /// The launcher cannot drop its capabilities or install its seccomp filter.
    #[error("Cannot confine the launcher: {0}")]
    Confine(String),
}

impl Error {
    pub(crate) fn kvm(ioctl: &'static str, source: kvm_ioctls::Error) -> Self {
        Self::Kvm { ioctl, source }
    }

    pub(crate) fn file(what: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::File {
            what,
            path: path.to_owned(),
            source,
        }
    }
}
