//! What a launcher pod is given of its node in the hardened mode (`launcher.privileged:
//! false`): the one device, through the device plugin `verdant-kvm-plugin`.

/// The extended resource that `verdant-kvm-plugin` advertises: each unit is `/dev/kvm`, which
/// an unprivileged launcher pod asks for in its limits to have that device and no other.
pub const KVM_RESOURCE: &str = "devices.verdant.dev/kvm";

/// Where the device is on the node and in the container.
pub const KVM_DEVICE: &str = "/dev/kvm";
