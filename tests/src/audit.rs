//! Reading the test apiserver's audit log (`Options::audit`): which requests each user made,
//! for tests and benchmarks that count the operator's writes.

use std::path::Path;

/// One completed request, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Who made it.
    pub user: String,
    /// `create`, `patch`, `delete`, `get`, `list`, `watch`...
    pub verb: String,
    /// The resource, e.g. `pods`.
    pub resource: String,
    /// The subresource, e.g. `status`.
    pub subresource: Option<String>,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name (empty for lists).
    pub name: String,
    /// The response's status code.
    pub code: u16,
    /// When the apiserver received it (`requestReceivedTimestamp`).
    pub received: Option<k8s_openapi::jiff::Timestamp>,
}

impl Request {
    /// Whether the request changes something.
    pub fn is_write(&self) -> bool {
        matches!(self.verb.as_str(), "create" | "update" | "patch" | "delete")
    }

    /// `resource[/subresource] verb`, e.g. `desktops/status patch`.
    pub fn kind(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub} {}", self.resource, self.verb),
            None => format!("{} {}", self.resource, self.verb),
        }
    }
}

/// Every completed request in the audit log at `path` (none if it cannot be read yet).
pub fn requests(path: &Path) -> Vec<Request> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["stage"] == "ResponseComplete")
        .map(|entry| {
            let object = &entry["objectRef"];
            let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            Request {
                user: text(&entry["user"]["username"]),
                verb: text(&entry["verb"]),
                resource: text(&object["resource"]),
                subresource: object["subresource"].as_str().map(str::to_owned),
                namespace: text(&object["namespace"]),
                name: text(&object["name"]),
                code: entry["responseStatus"]["code"]
                    .as_u64()
                    .and_then(|c| u16::try_from(c).ok())
                    .unwrap_or(0),
                received: entry["requestReceivedTimestamp"]
                    .as_str()
                    .and_then(|t| t.parse().ok()),
            }
        })
        .collect()
}
