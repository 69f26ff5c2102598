//! The labels Verdant puts on what it creates: the well-known ones of the API
//! ([`crds::labels`]) and the sets each kind of object gets.

use std::collections::BTreeMap;

use crds::Desktop;
pub use crds::labels::*;
use kube::ResourceExt;

/// Labels that identify a Desktop's objects: desktop, pool (when it has one), user (when
/// assigned), and who manages them.
pub fn desktop_labels(desktop: &Desktop) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_owned(),
            "verdant-operator".to_owned(),
        ),
        (DESKTOP_LABEL.to_owned(), desktop.name_any()),
    ]);
    if let Some(pool) = desktop.labels().get(POOL_LABEL) {
        labels.insert(POOL_LABEL.to_owned(), pool.clone());
    }
    if let Some(user) = &desktop.spec.user {
        labels.insert(USER_LABEL.to_owned(), label_value(user));
    }
    labels
}

/// The labels of a launcher pod.
pub fn pod_labels(desktop: &Desktop, vm_hash: &str) -> BTreeMap<String, String> {
    let mut labels = desktop_labels(desktop);
    labels.insert(
        "app.kubernetes.io/name".to_owned(),
        "verdant-launcher".to_owned(),
    );
    labels.insert(VM_HASH_LABEL.to_owned(), vm_hash.to_owned());
    labels
}
