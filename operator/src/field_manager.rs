//! The field managers of the operator's server-side-apply writes: who owns which fields.

use kube::api::PatchParams;

/// The field manager of every write the Desktop controller makes (pods, Secrets, status) and
/// of the pool status.
pub const FIELD_MANAGER: &str = "verdant-operator";
/// The pool controller's own field manager for what it writes on desktops (the `OutOfDate`
/// condition), beside the Desktop controller's.
pub const POOL_FIELD_MANAGER: &str = "verdant-operator-pool";

/// Server-side apply as `manager`, taking the fields over from anyone else.
pub fn apply(manager: &str) -> PatchParams {
    PatchParams::apply(manager).force()
}
