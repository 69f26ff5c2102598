//! The labels and annotations Verdant puts on Desktops and on what it makes for them: part of
//! the API, since the operator, the broker and people with kubectl select by them.

use std::collections::BTreeMap;

/// The Desktop a launcher pod or Secret belongs to.
pub const DESKTOP_LABEL: &str = "vdi.verdant.dev/desktop";
/// The pool a Desktop (and its pod) belongs to.
pub const POOL_LABEL: &str = "vdi.verdant.dev/pool";
/// The assigned user, as a label value (see [`label_value`]).
pub const USER_LABEL: &str = "vdi.verdant.dev/user";
/// The assigned user, verbatim.
pub const USER_ANNOTATION: &str = "vdi.verdant.dev/user";
/// How many times a pool desktop was reset for its next user (on the Desktop); on a launcher
/// pod, the count it was made at: an older pod is replaced.
pub const RESET_ANNOTATION: &str = "vdi.verdant.dev/reset";
/// Who a pool desktop's VM was given to, until it is reset (on the Desktop: written with
/// `spec.user` by the assigner, removed by the release that resets it). While it is there,
/// the VM has had a user since its last reset, and nobody else may have it, even with
/// `spec.user` cleared by hand.
pub const USED_BY_ANNOTATION: &str = "vdi.verdant.dev/used-by";
/// The VM hash of the spec a launcher pod runs.
pub const VM_HASH_LABEL: &str = "vdi.verdant.dev/vm-hash";
/// The hash of the pool template a Desktop was made from.
pub const TEMPLATE_HASH_LABEL: &str = "vdi.verdant.dev/template-hash";

/// The key of the display password in a Desktop's display Secret.
pub const DISPLAY_PASSWORD_KEY: &str = "password";
/// The key of the view-only display password (shadowing: the picture, no input, no
/// clipboard) in a Desktop's display Secret.
pub const DISPLAY_VIEW_ONLY_PASSWORD_KEY: &str = "viewOnlyPassword";

/// The name of a Desktop's display-password Secret: the operator makes it, the launcher reads
/// it from a mount, and the broker answers the launcher's VNC authentication with it.
pub fn display_secret_name(desktop: &str) -> String {
    format!("{desktop}-display")
}

/// The reset count of a Desktop or pod: 0 when never reset.
pub fn reset_count(annotations: &BTreeMap<String, String>) -> u64 {
    annotations
        .get(RESET_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether a pool desktop's VM has had a user since its last reset ([`USED_BY_ANNOTATION`]).
pub fn used_since_reset(annotations: &BTreeMap<String, String>) -> bool {
    annotations.contains_key(USED_BY_ANNOTATION)
}

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

/// A stable 64-bit FNV-1a hash, for names and label values that must not change across
/// releases (the standard library's hasher may).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// [`stable_hash`] of `bytes` as 10 hex digits, the form the hash labels and pod names take.
pub fn short_hash(bytes: &[u8]) -> String {
    format!("{:010x}", stable_hash(bytes) & 0xff_ffff_ffff)
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

    #[test]
    fn the_hash_is_fnv1a_and_stable() {
        // FNV-1a's published test vectors.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(short_hash(b"a"), "4c8601ec8c");
    }

    #[test]
    fn reset_counts_default_to_zero() {
        let mut annotations = BTreeMap::new();
        assert_eq!(reset_count(&annotations), 0);
        annotations.insert(RESET_ANNOTATION.to_owned(), "3".to_owned());
        assert_eq!(reset_count(&annotations), 3);
        annotations.insert(RESET_ANNOTATION.to_owned(), "x".to_owned());
        assert_eq!(reset_count(&annotations), 0);
    }

    #[test]
    fn a_desktop_given_to_a_user_is_used_until_reset() {
        let mut annotations = BTreeMap::new();
        assert!(!used_since_reset(&annotations), "never given");
        annotations.insert(USED_BY_ANNOTATION.to_owned(), "alice".to_owned());
        assert!(used_since_reset(&annotations));
        // Whatever the value: only the reset's release removes it.
        annotations.insert(USED_BY_ANNOTATION.to_owned(), String::new());
        assert!(used_since_reset(&annotations));
    }
}
