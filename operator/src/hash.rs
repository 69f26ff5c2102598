//! The hashes that name what the operator makes: a launcher pod after its VM's spec, a pool's
//! desktops after their template. Stable across releases ([`crds::labels::stable_hash`]).

use crds::{DesktopPool, DesktopSpec};

/// The hash of everything in a spec that needs a new VM when it changes (not `user`, not
/// `running`): 10 hex digits, part of the launcher pod's name.
pub fn vm_hash(spec: &DesktopSpec) -> String {
    let vm = serde_json::json!({
        "resources": spec.resources,
        "boot": spec.boot,
        "disks": spec.disks,
        "display": spec.display,
        "network": spec.network,
    });
    crds::labels::short_hash(vm.to_string().as_bytes())
}

/// A short, stable hash of the pool's template: desktops made from another are out of date.
pub fn template_hash(pool: &DesktopPool) -> String {
    let text = serde_json::to_string(&pool.spec.template).unwrap_or_default();
    crds::labels::short_hash(text.as_bytes())
}
