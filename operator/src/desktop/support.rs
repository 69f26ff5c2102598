//! What a Desktop asks for that the launcher cannot provide yet (block devices, networking):
//! said in the Desktop's status instead of silently running a VM without it. Pure.
//!
//! A desktop with disks is not started at all (a VM without its disks is not the desktop asked
//! for, and its guest would not find its root); one whose network the launcher cannot give runs
//! without a network device, and its `Supported` condition says so.

use crds::{DesktopSpec, NetworkMode};

use super::build::Invalid;

/// One field the launcher cannot honour yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// CamelCase reason.
    pub reason: &'static str,
    /// The field, what happens instead, and what to do.
    pub message: String,
    /// Whether the desktop is not started because of it.
    pub blocks: bool,
}

/// Every field of `spec` the launcher cannot honour yet, in field order.
pub fn unsupported(spec: &DesktopSpec) -> Vec<Unsupported> {
    let mut found = Vec::new();
    if !spec.disks.is_empty() {
        let names: Vec<&str> = spec.disks.iter().map(|d| d.name.as_str()).collect();
        found.push(Unsupported {
            reason: "DisksNotSupported",
            message: format!(
                "spec.disks ({}): block devices are not supported yet, so the desktop is not started; remove spec.disks to run it without them",
                names.join(", ")
            ),
            blocks: true,
        });
    }
    if spec.network.mode != NetworkMode::None {
        found.push(Unsupported {
            reason: "NetworkNotSupported",
            message: format!(
                "spec.network.mode: {:?} is not supported yet, so the VM runs without a network device; set it to None to say so",
                spec.network.mode
            ),
            blocks: false,
        });
    }
    found
}

/// Why `spec` cannot be started at all, if something it asks for blocks it.
pub fn blocking(spec: &DesktopSpec) -> Option<Invalid> {
    unsupported(spec)
        .into_iter()
        .find(|u| u.blocks)
        .map(|u| Invalid {
            reason: u.reason,
            message: u.message,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: serde_json::Value) -> DesktopSpec {
        let mut value = serde_json::json!({
            "resources": {"cpus": 1, "memory": "1Gi"},
            "boot": {"kernel": {"hostPath": "/k"}},
        });
        if let (Some(base), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn disks_block_the_desktop_and_a_network_is_said_to_be_missing() {
        let none = spec(serde_json::json!({"network": {"mode": "None"}}));
        assert!(unsupported(&none).is_empty() && blocking(&none).is_none());

        let default = spec(serde_json::json!({}));
        let found = unsupported(&default);
        assert_eq!(found.len(), 1, "the default network is Masquerade");
        assert!(
            !found[0].blocks
                && found[0]
                    .message
                    .starts_with("spec.network.mode: Masquerade")
        );
        assert!(blocking(&default).is_none());

        let disks = spec(serde_json::json!({
            "network": {"mode": "None"},
            "disks": [{"name": "root", "source": {"empty": {"size": "1Gi"}}}],
        }));
        let invalid = blocking(&disks).unwrap();
        assert_eq!(invalid.reason, "DisksNotSupported");
        assert!(
            invalid.message.starts_with("spec.disks (root):"),
            "{}",
            invalid.message
        );
    }
}
