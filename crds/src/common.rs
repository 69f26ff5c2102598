//! Types shared by both resources.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The state of one aspect of a resource, in the shape of `metav1.Condition`.
///
/// Lists of conditions are list-maps keyed by `type`, so server-side apply merges them by type.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect this condition describes, in CamelCase (e.g. `DisplayReady`).
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,
    /// Whether the condition holds.
    pub status: ConditionStatus,
    /// When `status` last changed.
    pub last_transition_time: Time,
    /// A CamelCase word that says why, for machines.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// A sentence that says why, for people; may be empty.
    #[schemars(length(max = 32768))]
    pub message: String,
    /// The `.metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

/// Whether a condition holds.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Nobody can tell yet.
    Unknown,
}
