//! The labels and annotations Verdant puts on what it creates.

use std::collections::BTreeMap;

use crds::Desktop;
use kube::ResourceExt;

/// The Desktop a pod or Secret belongs to.
pub const DESKTOP_LABEL: &str = "vdi.verdant.dev/desktop";
/// The pool a Desktop (and its pod) belongs to.
pub const POOL_LABEL: &str = "vdi.verdant.dev/pool";
/// The assigned user, as a label value (see [`label_value`]).
pub const USER_LABEL: &str = "vdi.verdant.dev/user";
/// The assigned user, verbatim.
pub const USER_ANNOTATION: &str = "vdi.verdant.dev/user";
/// How many times a Floating pool's desktop was reset for its next user (on the Desktop);
/// on a launcher pod, the count it was made at: an older pod is replaced.
pub const RESET_ANNOTATION: &str = "vdi.verdant.dev/reset";
/// The reset count of a Desktop or pod: 0 when never reset.
pub fn reset_count(annotations: &BTreeMap<String, String>) -> u64 {
    annotations
        .get(RESET_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
/// The VM hash of the spec a launcher pod runs.
pub const VM_HASH_LABEL: &str = "vdi.verdant.dev/vm-hash";

/// Turns any text into a valid label value: characters outside `[A-Za-z0-9._-]` become `-`,
/// at most 63 characters, beginning and ending with a letter or digit.
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_always_valid() {
        assert_eq!(label_value("alice"), "alice");
        assert_eq!(label_value("alice@example.com"), "alice-example.com");
        assert_eq!(
            label_value("system:serviceaccount:ns:bob"),
            "system-serviceaccount-ns-bob"
        );
        assert_eq!(label_value("@@x@@"), "x");
        let long = label_value(&"a".repeat(300));
        assert_eq!(long.len(), 63);
    }
}
