//! The `DesktopPool` resource: a set of like desktops that users are assigned from.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::Condition;
use crate::desktop::DesktopSpec;

/// The largest pool the API accepts.
pub const MAX_POOL_SIZE: i32 = 10_000;

/// The desired state of a pool.
// Repeated `printcolumn(type_ = ...)` keys are separate columns, not duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "vdi.verdant.dev",
    version = "v1alpha1",
    kind = "DesktopPool",
    namespaced,
    status = "DesktopPoolStatus",
    derive = "PartialEq",
    shortname = "dtp",
    shortname = "deskpool",
    category = "verdant",
    doc = "A pool of like desktops that users are assigned from, floating or dedicated.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.ready"),
    printcolumn(name = "Available", type_ = "integer", json_path = ".status.available"),
    printcolumn(name = "Assigned", type_ = "integer", json_path = ".status.assigned"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    validation = Rule::new("self.metadata.name.size() <= 46").message(
        "metadata.name must be at most 46 characters: the pool's desktops add a 6-character suffix"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(self.maxReplicas) || self.replicas <= self.maxReplicas")
        .message("spec.replicas must not exceed spec.maxReplicas")
        .field_path(".replicas"),
    validation = Rule::new("!has(self.maxReplicas) || !has(self.spare) || self.spare <= self.maxReplicas")
        .message("spec.spare must not exceed spec.maxReplicas")
        .field_path(".spare")
)]
pub struct DesktopPoolSpec {
    /// The least number of desktops to keep (the `/scale` target).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = MAX_POOL_SIZE))]
    pub replicas: i32,
    /// How many Ready, unassigned desktops to keep on top of the assigned ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_POOL_SIZE))]
    pub spare: Option<i32>,
    /// The most desktops the pool may hold, whatever `spare` asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = MAX_POOL_SIZE))]
    pub max_replicas: Option<i32>,
    /// What happens to a desktop its user releases.
    #[serde(default)]
    pub assignment: AssignmentPolicy,
    /// Limits on a user's session.
    #[serde(default)]
    pub session: SessionPolicy,
    /// What every desktop of the pool looks like.
    pub template: DesktopTemplate,
}

fn default_replicas() -> i32 {
    1
}

/// What happens to a desktop its user releases.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AssignmentPolicy {
    /// Released desktops are reset to the gold image and given to the next user.
    #[default]
    Floating,
    /// A desktop stays with its user.
    Dedicated,
}

/// Limits on a user's session, as Go-style durations (`30m`, `1h30m`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SessionPolicy {
    /// Release a desktop whose user has been idle this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new(DURATION_RULE)
        .message("spec.session.idleTimeout must be a positive duration such as 30m or 1h30m"))]
    pub idle_timeout: Option<String>,
    /// Release a desktop whose user has been disconnected this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new(DURATION_RULE)
        .message("spec.session.disconnectTimeout must be a positive duration such as 5m"))]
    pub disconnect_timeout: Option<String>,
    /// Release a desktop this long after it was assigned, whatever its user is doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new(DURATION_RULE)
        .message("spec.session.maxDuration must be a positive duration such as 8h"))]
    pub max_duration: Option<String>,
}

/// CEL check for a positive Go duration; the regex guards `duration()`, which errors on bad input.
const DURATION_RULE: &str =
    "self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|ms|s|m|h))+$') && duration(self) > duration('0s')";

/// The template every desktop of a pool is made from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DesktopTemplate {
    /// Labels and annotations for each desktop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// The spec of each desktop; `user` is set per desktop on assignment, never here.
    #[x_kube(validation = Rule::new("!has(self.user)")
        .message("spec.template.spec.user must be unset: users are assigned to a pool's desktops one by one")
        .field_path(".user"))]
    pub spec: DesktopSpec,
}

/// Labels and annotations copied onto each desktop of a pool.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Labels for each desktop.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations for each desktop.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The observed state of a pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DesktopPoolStatus {
    /// Desktops that exist.
    #[serde(default)]
    pub replicas: i32,
    /// Desktops whose display is ready.
    #[serde(default)]
    pub ready: i32,
    /// Desktops that are ready and unassigned.
    #[serde(default)]
    pub available: i32,
    /// Desktops with a user.
    #[serde(default)]
    pub assigned: i32,
    /// `max(replicas, min(assigned + spare, maxReplicas))`: the count the pool is steering to.
    #[serde(default)]
    pub desired_replicas: i32,
    /// The selector of the pool's desktops, as a string (for `/scale` and HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// Detailed state of the pool: `Ready` (it has the desktops it wants, all Ready),
    /// `ReplicaFailure`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The `.metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
