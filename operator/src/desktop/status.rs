//! Status: what the operator observed, turned into the Desktop's phase and conditions. Pure;
//! condition transition times are kept while a condition's status stays the same, so that an
//! unchanged world computes an unchanged status and costs no write.

use crds::{Condition, Desktop, DesktopPhase, DesktopStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::build::Invalid;
use super::support::unsupported;
use crate::conditions::{condition, kstatus_pair};

/// Condition types this controller owns.
pub const POD_SCHEDULED: &str = "PodScheduled";
/// The VM runs: the launcher container is running.
pub const VM_RUNNING: &str = "VMRunning";
/// The display is live: the launcher pod is Ready (its `/readyz`).
pub const DISPLAY_READY: &str = "DisplayReady";
/// The spec changed in a way that needs a new VM, and a user is assigned.
pub const RESTART_REQUIRED: &str = "RestartRequired";
/// A user is assigned (`spec.user`); its transition time is when they got the desktop.
pub const ASSIGNED: &str = "Assigned";
/// The launcher provides everything the spec asks for; false names what it cannot yet.
pub const SUPPORTED: &str = "Supported";
/// The desktop is as its spec asks (kstatus `Ready`, for `kubectl wait` and GitOps health):
/// running with its display live, or stopped when `running` is false.
pub const READY: &str = "Ready";
/// The operator is still bringing the desktop to what its spec asks (starting, stopping, or
/// waiting out a failed launcher's backoff): kstatus `InProgress`.
pub use crate::conditions::RECONCILING;
/// The spec cannot be run until someone changes it or what it names (a missing claim, a
/// disk the launcher cannot attach): kstatus `Failed`, so a GitOps apply reports it at once
/// instead of waiting out its timeout.
pub use crate::conditions::STALLED;
/// Every condition type this controller writes.
pub const OWNED_CONDITIONS: [&str; 9] = [
    READY,
    RECONCILING,
    STALLED,
    POD_SCHEDULED,
    VM_RUNNING,
    DISPLAY_READY,
    RESTART_REQUIRED,
    ASSIGNED,
    SUPPORTED,
];

/// A launcher that ended and is waiting to be replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// CamelCase reason.
    pub reason: String,
    /// What happened and when the next launcher starts.
    pub message: String,
}

/// What the reconcile saw.
#[derive(Debug, Default)]
pub struct Observed<'a> {
    /// The launcher pod that is not being deleted, if any.
    pub pod: Option<&'a Pod>,
    /// Whether some launcher pod is being deleted.
    pub pod_terminating: bool,
    /// Why the spec cannot be run, if so.
    pub invalid: Option<&'a Invalid>,
    /// The last launcher failed and its replacement waits out a backoff.
    pub failure: Option<Failure>,
    /// The spec needs a new VM but a user is assigned.
    pub restart_required: bool,
}

/// The status the controller wants, given what it observed, at time `now`.
pub fn desired(desktop: &Desktop, observed: &Observed<'_>, now: &Time) -> DesktopStatus {
    let current = desktop.status.clone().unwrap_or_default();
    let generation = desktop.metadata.generation;
    let mut conditions = Vec::new();
    let mut set = |type_: &str, status: bool, reason: &str, message: String| {
        conditions.push(condition(
            &current.conditions,
            type_,
            status,
            reason,
            message,
            generation,
            now,
        ));
    };

    let pod = observed.pod;
    let pod_condition = |t: &str| {
        pod.and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == t))
    };
    let scheduled = pod
        .is_some_and(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        || pod_condition("PodScheduled").is_some_and(|c| c.status == "True");
    let running = pod
        .and_then(|p| p.status.as_ref())
        .is_some_and(|s| s.phase.as_deref() == Some("Running"));
    let ready_condition = pod_condition("Ready").filter(|c| c.status == "True");
    let ready = running && ready_condition.is_some();

    let phase = if let Some(invalid) = observed.invalid {
        set(
            POD_SCHEDULED,
            false,
            invalid.reason,
            invalid.message.clone(),
        );
        set(VM_RUNNING, false, invalid.reason, invalid.message.clone());
        set(
            DISPLAY_READY,
            false,
            invalid.reason,
            invalid.message.clone(),
        );
        DesktopPhase::Failed
    } else if !desktop.spec.running {
        let (phase, reason, message) = if pod.is_some() || observed.pod_terminating {
            (
                DesktopPhase::Stopping,
                "Stopping",
                "running is false: the VM is shutting down",
            )
        } else {
            (DesktopPhase::Stopped, "Stopped", "running is false")
        };
        set(POD_SCHEDULED, false, reason, message.into());
        set(VM_RUNNING, false, reason, message.into());
        set(DISPLAY_READY, false, reason, message.into());
        phase
    } else if let (Some(failure), None) = (&observed.failure, pod) {
        set(
            POD_SCHEDULED,
            false,
            &failure.reason,
            failure.message.clone(),
        );
        set(VM_RUNNING, false, &failure.reason, failure.message.clone());
        set(
            DISPLAY_READY,
            false,
            &failure.reason,
            failure.message.clone(),
        );
        DesktopPhase::Failed
    } else if let Some(pod) = pod {
        let name = pod.name_any();
        if scheduled {
            set(
                POD_SCHEDULED,
                true,
                "Scheduled",
                format!("launcher pod {name} is on a node"),
            );
        } else {
            set(
                POD_SCHEDULED,
                false,
                "Unscheduled",
                format!("launcher pod {name} waits for a node"),
            );
        }
        if running {
            set(
                VM_RUNNING,
                true,
                "LauncherRunning",
                format!("launcher pod {name} runs the VM"),
            );
        } else {
            set(
                VM_RUNNING,
                false,
                "LauncherStarting",
                format!("launcher pod {name} is starting"),
            );
        }
        if ready {
            set(
                DISPLAY_READY,
                true,
                "DisplayLive",
                "the guest display is live".into(),
            );
        } else {
            set(
                DISPLAY_READY,
                false,
                "DisplayNotLive",
                "the guest display is not live yet".into(),
            );
        }
        match (ready, running) {
            (true, _) => DesktopPhase::Ready,
            (false, true) => DesktopPhase::Running,
            (false, false) => DesktopPhase::Starting,
        }
    } else {
        let message = "creating the launcher pod".to_owned();
        set(POD_SCHEDULED, false, "Creating", message.clone());
        set(VM_RUNNING, false, "Creating", message.clone());
        set(DISPLAY_READY, false, "Creating", message);
        DesktopPhase::Pending
    };

    if observed.restart_required {
        set(
            RESTART_REQUIRED,
            true,
            "SpecChangedWhileAssigned",
            "the spec needs a new VM; it restarts when the desktop is released or running is toggled".into(),
        );
    } else {
        set(
            RESTART_REQUIRED,
            false,
            "UpToDate",
            "the VM runs the current spec".into(),
        );
    }

    match &desktop.spec.user {
        Some(user) => set(
            ASSIGNED,
            true,
            "UserAssigned",
            format!("assigned to {user}"),
        ),
        None => set(ASSIGNED, false, "Unassigned", "no user is assigned".into()),
    }

    let missing = unsupported(&desktop.spec);
    if missing.is_empty() {
        set(
            SUPPORTED,
            true,
            "Supported",
            "the launcher provides everything the spec asks for".into(),
        );
    } else {
        let messages: Vec<&str> = missing.iter().map(|u| u.message.as_str()).collect();
        set(SUPPORTED, false, "NotSupportedYet", messages.join("; "));
    }
    let (is_ready, reason, message) = readiness(&conditions, phase);
    let ready_now = condition(
        &current.conditions,
        READY,
        is_ready,
        &reason,
        message.clone(),
        generation,
        now,
    );
    conditions.push(ready_now);
    // kstatus: Stalled for a spec that cannot run, Reconciling while not ready.
    conditions.extend(kstatus_pair(
        &current.conditions,
        observed
            .invalid
            .map(|invalid| (invalid.reason.to_owned(), invalid.message.clone())),
        (!is_ready).then_some((reason, message)),
        generation,
        now,
    ));

    let live_pod = pod.filter(|_| desktop.spec.running);
    let started_at = live_pod
        .and_then(|p| p.status.as_ref())
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.clone());
    DesktopStatus {
        phase: Some(phase),
        conditions,
        pod_name: live_pod.map(ResourceExt::name_any),
        node_name: live_pod
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| s.node_name.clone()),
        started_at,
        ready_at: if ready && live_pod.is_some() {
            ready_condition.and_then(|c| c.last_transition_time.clone())
        } else {
            None
        },
        observed_generation: generation,
        // Assignment and connection belong to other writers (pools, the broker).
        assignment: None,
        connection: None,
    }
}

/// The desktop's `Ready` condition (status, reason, message) from its `phase`; while it is not
/// ready, the display's condition among `conditions` says why.
fn readiness(conditions: &[Condition], phase: DesktopPhase) -> (bool, String, String) {
    match phase {
        DesktopPhase::Ready => (
            true,
            "DisplayLive".into(),
            "the VM runs and its display is live".into(),
        ),
        DesktopPhase::Stopped => (
            true,
            "Stopped".into(),
            "the VM is stopped, as spec.running asks".into(),
        ),
        _ => conditions
            .iter()
            .find(|c| c.type_ == DISPLAY_READY)
            .map(|c| (false, c.reason.clone(), c.message.clone()))
            .unwrap_or_else(|| (false, "NotReady".into(), "the desktop is not ready".into())),
    }
}

/// Whether `desired` differs from the current status in any field this controller owns.
pub fn needs_write(current: Option<&DesktopStatus>, desired: &DesktopStatus) -> bool {
    let Some(current) = current else { return true };
    let owned = |s: &DesktopStatus| {
        let mut conditions: Vec<Condition> = s
            .conditions
            .iter()
            .filter(|c| OWNED_CONDITIONS.contains(&c.type_.as_str()))
            .cloned()
            .collect();
        conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
        (
            s.phase,
            conditions,
            s.pod_name.clone(),
            s.node_name.clone(),
            s.started_at.clone(),
            s.ready_at.clone(),
            s.observed_generation,
        )
    };
    owned(current) != owned(desired)
}

#[cfg(test)]
mod tests;
