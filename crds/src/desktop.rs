//! The `Desktop` resource: one virtual desktop, run as a VM inside a launcher pod.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;

/// The desired state of a desktop.
// Repeated `printcolumn(type_ = ...)` keys are separate columns, not duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vdi.verdant.dev",
    version = "v1alpha1",
    kind = "Desktop",
    namespaced,
    status = "DesktopStatus",
    derive = "PartialEq",
    shortname = "dt",
    shortname = "desk",
    category = "verdant",
    doc = "A virtual desktop: a VM that a launcher pod runs and users reach through the broker.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "User", type_ = "string", json_path = ".spec.user"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"DisplayReady\")].status"
    ),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.nodeName"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.metadata.name.size() <= 52").message(
        "metadata.name must be at most 52 characters: the launcher pod's name adds an 11-character suffix"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DesktopSpec {
    /// The user this desktop is assigned to; unset while it is free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(USER_NAME_RULE).message(
        "spec.user must be a user name: 1-253 letters, digits and . _ @ + : - that begins and ends with a letter or digit"
    ))]
    pub user: Option<String>,
    /// Whether the VM should run; `false` stops it and keeps its disks.
    #[serde(default = "default_true")]
    pub running: bool,
    /// The virtual hardware.
    pub resources: DesktopResources,
    /// What the VM boots.
    pub boot: BootSpec,
    /// Block devices, in the order the guest sees them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub disks: Vec<Disk>,
    /// The guest display.
    #[serde(default)]
    pub display: DisplaySpec,
    /// The guest network.
    #[serde(default)]
    pub network: NetworkSpec,
}

/// CEL check for a user name (an RE2 regex, as the apiserver runs it).
const USER_NAME_RULE: &str = "self.matches('^[a-zA-Z0-9]([a-zA-Z0-9._@+:-]*[a-zA-Z0-9])?$')";

/// What a user name must be, as `spec.user` takes it (the CRD's rule, in words).
pub const USER_NAME_HELP: &str =
    "1-253 letters, digits and . _ @ + : - that begins and ends with a letter or digit";

/// Whether `user` is a name `spec.user` takes: the same check as the CRD's length limits and
/// CEL rule, for callers that want to refuse a bad name before writing it.
pub fn is_user_name(user: &str) -> bool {
    let alphanumeric = |c: u8| c.is_ascii_alphanumeric();
    let bytes = user.as_bytes();
    (1..=253).contains(&bytes.len())
        && bytes.first().copied().is_some_and(alphanumeric)
        && bytes.last().copied().is_some_and(alphanumeric)
        && bytes
            .iter()
            .all(|&c| alphanumeric(c) || b"._@+:-".contains(&c))
}

fn default_true() -> bool {
    true
}

/// The virtual hardware of a desktop.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DesktopResources {
    /// Number of vCPUs, 1 to 64.
    #[schemars(range(min = 1, max = 64))]
    pub cpus: u32,
    /// Guest memory as a Kubernetes quantity, 128Mi to 1Ti (e.g. `4Gi`).
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(
        validation = Rule::new("isQuantity(self)")
            .message("spec.resources.memory must be a quantity such as 512Mi or 4Gi"),
        validation = Rule::new("!isQuantity(self) || quantity(self).compareTo(quantity('128Mi')) >= 0")
            .message("spec.resources.memory must be at least 128Mi"),
        validation = Rule::new("!isQuantity(self) || quantity(self).compareTo(quantity('1Ti')) <= 0")
            .message("spec.resources.memory must be at most 1Ti")
    )]
    pub memory: String,
}

/// Direct kernel boot: a kernel, an optional initrd and a command line.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BootSpec {
    /// The kernel (`vmlinux` ELF or `bzImage`).
    pub kernel: ArtifactSource,
    /// The initial ramdisk, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<ArtifactSource>,
    /// The kernel command line, at most 2047 bytes (x86's `COMMAND_LINE_SIZE` of 2048 holds
    /// its closing NUL too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2047))]
    pub cmdline: Option<String>,
}

/// A host path written plainly: no `.` or `..` segment, no `//`, no trailing `/` (so that the
/// operator's check of the administrator's host directories reads it as the kubelet will).
const HOST_PATH_PLAIN_RULE: &str = "!self.matches('(^|/)[.][.]?(/|$)') && !self.contains('//') && (self == '/' || !self.endsWith('/'))";
const HOST_PATH_PLAIN_MESSAGE: &str = "hostPath must be a plain absolute path: no `.` or `..` segment, no `//` and no trailing `/`; the operator also allows only the host directories its administrator lists";

/// Where the launcher finds a boot file; exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.hostPath), has(self.image), has(self.persistentVolumeClaim)].filter(x, x).size() == 1"
).message("set exactly one of hostPath, image or persistentVolumeClaim"))]
pub struct ArtifactSource {
    /// An absolute path on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("hostPath must be an absolute path"))]
    #[x_kube(validation = Rule::new(HOST_PATH_PLAIN_RULE).message(HOST_PATH_PLAIN_MESSAGE))]
    pub host_path: Option<String>,
    /// A file inside an OCI image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageFile>,
    /// A file on a PersistentVolumeClaim in the desktop's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<ClaimFile>,
}

/// A file inside an OCI image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageFile {
    /// The image reference, e.g. `registry.example/kernels/debian:6.12`.
    #[schemars(length(min = 1, max = 1024))]
    pub reference: String,
    /// The absolute path of the file inside the image.
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("path must be an absolute path inside the image"))]
    pub path: String,
}

/// A file on a PersistentVolumeClaim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimFile {
    /// The claim's name.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// The path of the file inside the volume.
    #[schemars(length(min = 1, max = 4096))]
    pub path: String,
}

/// A block device of the guest.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.source.image) || self.mode != 'ReadWrite'")
        .message("an image disk is read-only: use mode Overlay (copy-on-write) or ReadOnly")
        .field_path(".mode"),
    validation = Rule::new("!has(self.source.empty) || self.mode == 'ReadWrite'")
        .message("an empty disk has nothing to read: use mode ReadWrite")
        .field_path(".mode")
)]
pub struct Disk {
    /// The disk's name, a DNS label unique within the desktop.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("disk name must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"))]
    pub name: String,
    /// Where the disk's data lives.
    pub source: DiskSource,
    /// How the guest may use it.
    #[serde(default)]
    pub mode: DiskMode,
}

/// Where a disk's data lives; exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.persistentVolumeClaim), has(self.hostPath), has(self.image), has(self.empty)].filter(x, x).size() == 1"
).message("set exactly one of persistentVolumeClaim, hostPath, image or empty"))]
pub struct DiskSource {
    /// A PersistentVolumeClaim in the desktop's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<ClaimRef>,
    /// An absolute path of an image file on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("hostPath must be an absolute path"))]
    #[x_kube(validation = Rule::new(HOST_PATH_PLAIN_RULE).message(HOST_PATH_PLAIN_MESSAGE))]
    pub host_path: Option<String>,
    /// An OCI image that carries a disk image (containerDisk style); read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageRef>,
    /// A new, empty disk that lives as long as the launcher pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty: Option<EmptyDisk>,
}

/// A reference to a PersistentVolumeClaim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRef {
    /// The claim's name.
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
}

/// A reference to an OCI image.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ImageRef {
    /// The image reference.
    #[schemars(length(min = 1, max = 1024))]
    pub reference: String,
}

/// A new, empty disk.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EmptyDisk {
    /// Its size as a quantity, at least 1Mi.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).compareTo(quantity('1Mi')) >= 0")
        .message("empty.size must be a quantity of at least 1Mi, such as 10Gi"))]
    pub size: String,
}

/// How the guest may use a disk.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DiskMode {
    /// The guest reads and writes the source itself.
    #[default]
    ReadWrite,
    /// The guest only reads.
    ReadOnly,
    /// The guest writes to a copy-on-write layer over the read-only source (a gold image).
    Overlay,
}

/// The guest display (a linear framebuffer served over VNC).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DisplaySpec {
    /// Width in pixels, 640 to 7680.
    #[serde(default = "default_width")]
    #[schemars(range(min = 640, max = 7680))]
    pub width: u32,
    /// Height in pixels, 480 to 4320.
    #[serde(default = "default_height")]
    #[schemars(range(min = 480, max = 4320))]
    pub height: u32,
}

fn default_width() -> u32 {
    1280
}

fn default_height() -> u32 {
    800
}

impl Default for DisplaySpec {
    fn default() -> Self {
        Self {
            width: default_width(),
            height: default_height(),
        }
    }
}

/// The guest network.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// How the guest reaches the network.
    #[serde(default)]
    pub mode: NetworkMode,
}

/// How the guest reaches the network.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// The guest sits behind NAT on the pod's address.
    #[default]
    Masquerade,
    /// The guest has no network.
    None,
}

/// The observed state of a desktop, written by the operator (and by the broker for sessions).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DesktopStatus {
    /// Where the desktop is in its life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DesktopPhase>,
    /// Detailed state: `Ready` (as the spec asks: running with the display live, or stopped),
    /// `PodScheduled`, `VMRunning`, `DisplayReady`, `Assigned`, ...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The launcher pod running the VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The node that pod runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// When the current VM started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the current VM's display first became ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Time>,
    /// Who is using the desktop, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Assignment>,
    /// How users reach the desktop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
    /// The `.metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Where a desktop is in its life.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DesktopPhase {
    /// Accepted; no launcher pod yet.
    Pending,
    /// The launcher pod exists and the VM is starting.
    Starting,
    /// The VM runs; its display is not live yet.
    Running,
    /// The display is live: a user can connect.
    Ready,
    /// The VM is being stopped.
    Stopping,
    /// Stopped on request (`running: false`); disks kept.
    Stopped,
    /// The operator cannot run this desktop; the conditions say why.
    Failed,
}

/// Who is using a desktop, and how.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    /// The assigned user.
    #[schemars(length(min = 1, max = 253))]
    pub user: String,
    /// When the user was assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// Whether the user is connected now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionState>,
    /// The last input or connection seen from the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<Time>,
    /// When the user's current (or last) session through the broker began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected_at: Option<Time>,
    /// When the user's last session ended (set while `session` is `Disconnected`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnected_at: Option<Time>,
}

/// Whether a user is connected to their desktop.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// At least one viewer is connected.
    Connected,
    /// No viewer is connected.
    Disconnected,
}

/// How users reach a desktop.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// The broker URL of this desktop.
    pub url: String,
}
