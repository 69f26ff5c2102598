//! The contract between `verdant-operator` and `verdant-launcher`: everything the two sides
//! must agree on, in one place, so that neither copies it by hand.
//!
//! - [`config`]: the launcher's configuration (one serde type), its checks and the checked form;
//! - [`validate`]: the checks, naming the field of any error;
//! - [`limits`]: the bounds the launcher accepts, and the resources it needs beyond the guest;
//! - [`endpoints`]: the ports and HTTP paths the pod exposes and probes;
//! - [`argv`]: the command line that runs a config;
//! - [`exit`]: what the launcher's exit status means.
//!
//! Serde only: no kube, no KVM. The operator links this crate, never the VMM.

pub mod argv;
pub mod config;
pub mod devices;
pub mod endpoints;
pub mod exit;
pub mod limits;
pub mod size;
pub mod validate;

pub use config::{ConfigError, DisplayConfig, LauncherConfig, VncConfig};
pub use exit::ExitStatus;
pub use size::parse_size;
pub use validate::{VmConfig, VncSettings};
