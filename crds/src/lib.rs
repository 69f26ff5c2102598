//! Verdant's Kubernetes API: the `Desktop` and `DesktopPool` custom resources.
//!
//! The Rust types here are the single source of truth: the CRD manifests in `crds/*.yaml` are
//! generated from them (`cargo run -p crds --bin crdgen`), and a test fails when the committed
//! YAML drifts from what the types generate. Everything the OpenAPI schema and CEL can check is
//! checked by the apiserver at `kubectl apply` time, so bad input never reaches the operator.

pub mod common;
pub mod desktop;
pub mod generate;
pub mod labels;
pub mod pool;

pub use common::{Condition, ConditionStatus};
pub use desktop::{
    ArtifactSource, Assignment, BootSpec, Desktop, DesktopPhase, DesktopResources, DesktopSpec,
    DesktopStatus, Disk, DiskMode, DiskSource, DisplaySpec, NetworkMode, NetworkSpec, SessionState,
};
pub use pool::{
    AssignmentPolicy, DesktopPool, DesktopPoolSpec, DesktopPoolStatus, DesktopTemplate,
    SessionPolicy, TemplateMetadata,
};

/// The API group of every Verdant resource.
pub const GROUP: &str = "vdi.verdant.dev";
/// The API version of this crate's types.
pub const VERSION: &str = "v1alpha1";
/// The `kubectl get` category that lists every Verdant resource (`kubectl get verdant`).
pub const CATEGORY: &str = "verdant";
