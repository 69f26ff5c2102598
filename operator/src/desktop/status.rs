//! Status: what the operator observed, turned into the Desktop's phase and conditions. Pure;
//! condition transition times are kept while a condition's status stays the same, so that an
//! unchanged world computes an unchanged status and costs no write.

use crds::{Condition, Desktop, DesktopPhase, DesktopStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::build::Invalid;
use super::support::unsupported;
use crate::conditions::condition;

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
/// Every condition type this controller writes.
pub const OWNED_CONDITIONS: [&str; 7] = [
    READY,
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
        message,
        generation,
        now,
    );
    conditions.push(ready_now);

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
mod tests {
    use super::*;
    use crds::ConditionStatus;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::jiff::Timestamp;

    fn desktop(running: bool) -> Desktop {
        let mut d: Desktop = serde_saphyr::from_str(
            "apiVersion: vdi.verdant.dev/v1alpha1\nkind: Desktop\nmetadata: {name: d, namespace: ns, generation: 3}\nspec:\n  resources: {cpus: 1, memory: 1Gi}\n  boot: {kernel: {hostPath: /k}}\n",
        )
        .unwrap();
        d.spec.running = running;
        d
    }

    fn t(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn pod(phase: &str, node: Option<&str>, ready: bool) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("d-0123456789".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(t(50)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn cond<'a>(s: &'a DesktopStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn phases_follow_the_launcher_pod() {
        let d = desktop(true);
        let now = t(100);
        assert_eq!(
            desired(&d, &Observed::default(), &now).phase,
            Some(DesktopPhase::Pending)
        );
        let pending = pod("Pending", None, false);
        let scheduled = pod("Pending", Some("node-1"), false);
        let running = pod("Running", Some("node-1"), false);
        let ready = pod("Running", Some("node-1"), true);
        let s = desired(
            &d,
            &Observed {
                pod: Some(&pending),
                ..Default::default()
            },
            &now,
        );
        assert_eq!(
            (s.phase, cond(&s, POD_SCHEDULED).status),
            (Some(DesktopPhase::Starting), ConditionStatus::False)
        );
        let s = desired(
            &d,
            &Observed {
                pod: Some(&scheduled),
                ..Default::default()
            },
            &now,
        );
        assert_eq!(
            (s.phase, cond(&s, POD_SCHEDULED).status),
            (Some(DesktopPhase::Starting), ConditionStatus::True)
        );
        let s = desired(
            &d,
            &Observed {
                pod: Some(&running),
                ..Default::default()
            },
            &now,
        );
        assert_eq!(
            (s.phase, cond(&s, VM_RUNNING).status),
            (Some(DesktopPhase::Running), ConditionStatus::True)
        );
        let s = desired(
            &d,
            &Observed {
                pod: Some(&ready),
                ..Default::default()
            },
            &now,
        );
        assert_eq!(
            (s.phase, cond(&s, DISPLAY_READY).status),
            (Some(DesktopPhase::Ready), ConditionStatus::True)
        );
        assert_eq!(s.ready_at, Some(t(50)));
        let r = cond(&s, READY);
        assert_eq!(
            (r.status, r.reason.as_str(), r.observed_generation),
            (ConditionStatus::True, "DisplayLive", Some(3))
        );
        assert_eq!(
            (s.pod_name.as_deref(), s.node_name.as_deref()),
            (Some("d-0123456789"), Some("node-1"))
        );
        assert_eq!(s.observed_generation, Some(3));
    }

    #[test]
    fn stopping_then_stopped() {
        let d = desktop(false);
        let p = pod("Running", Some("n"), true);
        let s = desired(
            &d,
            &Observed {
                pod: Some(&p),
                ..Default::default()
            },
            &t(1),
        );
        assert_eq!(s.phase, Some(DesktopPhase::Stopping));
        assert_eq!(
            s.pod_name, None,
            "a pod on its way out is not the desktop's pod"
        );
        let s = desired(
            &d,
            &Observed {
                pod_terminating: true,
                ..Default::default()
            },
            &t(1),
        );
        assert_eq!(s.phase, Some(DesktopPhase::Stopping));
        assert_eq!(cond(&s, READY).status, ConditionStatus::False);
        let s = desired(&d, &Observed::default(), &t(1));
        assert_eq!(s.phase, Some(DesktopPhase::Stopped));
        let r = cond(&s, READY);
        assert_eq!(
            (r.status, r.reason.as_str()),
            (ConditionStatus::True, "Stopped"),
            "stopped is what the spec asks for"
        );
    }

    #[test]
    fn ready_is_false_with_the_displays_reason_until_the_display_is_live() {
        let d = desktop(true);
        let running = pod("Running", Some("node-1"), false);
        let s = desired(
            &d,
            &Observed {
                pod: Some(&running),
                ..Default::default()
            },
            &t(7),
        );
        let (r, display) = (cond(&s, READY), cond(&s, DISPLAY_READY));
        assert_eq!(r.status, ConditionStatus::False);
        assert_eq!((&r.reason, &r.message), (&display.reason, &display.message));
        assert_eq!(
            s.conditions.iter().filter(|c| c.type_ == READY).count(),
            1,
            "one Ready condition"
        );
        // Its transition time stays while it stays false.
        let mut again = d.clone();
        again.status = Some(s.clone());
        let later = desired(
            &again,
            &Observed {
                pod: Some(&running),
                ..Default::default()
            },
            &t(60),
        );
        assert_eq!(cond(&later, READY).last_transition_time, t(7));
        assert!(!needs_write(Some(&s), &later));
    }

    #[test]
    fn invalid_specs_and_failures_say_why() {
        let d = desktop(true);
        let invalid = Invalid {
            reason: "PersistentVolumeClaimNotFound",
            message: "spec.disks[0]: claim home not found".into(),
        };
        let s = desired(
            &d,
            &Observed {
                invalid: Some(&invalid),
                ..Default::default()
            },
            &t(1),
        );
        assert_eq!(s.phase, Some(DesktopPhase::Failed));
        assert_eq!(cond(&s, VM_RUNNING).reason, "PersistentVolumeClaimNotFound");
        let failure = Failure {
            reason: "LauncherFailed".into(),
            message: "exit 4".into(),
        };
        let s = desired(
            &d,
            &Observed {
                failure: Some(failure),
                ..Default::default()
            },
            &t(1),
        );
        assert_eq!(s.phase, Some(DesktopPhase::Failed));
        assert_eq!(cond(&s, VM_RUNNING).message, "exit 4");
    }

    #[test]
    fn unchanged_world_means_unchanged_status_and_no_write() {
        let mut d = desktop(true);
        let p = pod("Running", Some("n"), true);
        let observed = Observed {
            pod: Some(&p),
            ..Default::default()
        };
        let first = desired(&d, &observed, &t(100));
        assert!(needs_write(d.status.as_ref(), &first));
        d.status = Some(first.clone());
        // Later, nothing changed: transition times are kept, so nothing to write.
        let second = desired(&d, &observed, &t(200));
        assert_eq!(second, first);
        assert!(!needs_write(d.status.as_ref(), &second));
        // A condition that flips gets a new transition time.
        let restart = Observed {
            pod: Some(&p),
            restart_required: true,
            ..Default::default()
        };
        let third = desired(&d, &restart, &t(300));
        assert_eq!(cond(&third, RESTART_REQUIRED).last_transition_time, t(300));
        assert_eq!(cond(&third, DISPLAY_READY).last_transition_time, t(100));
        assert!(needs_write(d.status.as_ref(), &third));
    }

    #[test]
    fn the_assigned_condition_follows_the_user() {
        let mut d = desktop(true);
        let free = desired(&d, &Observed::default(), &t(1));
        assert_eq!(cond(&free, ASSIGNED).status, ConditionStatus::False);
        d.status = Some(free);
        d.spec.user = Some("alice".into());
        let taken = desired(&d, &Observed::default(), &t(9));
        let assigned = cond(&taken, ASSIGNED);
        assert_eq!(
            (assigned.status, assigned.message.as_str()),
            (ConditionStatus::True, "assigned to alice")
        );
        assert_eq!(assigned.last_transition_time, t(9), "since when");
        assert!(needs_write(d.status.as_ref(), &taken));
    }

    #[test]
    fn the_supported_condition_names_what_the_launcher_cannot_do_yet() {
        let d = desktop(true);
        let s = desired(&d, &Observed::default(), &t(1));
        let c = cond(&s, SUPPORTED);
        assert_eq!(
            (c.status, c.reason.as_str()),
            (ConditionStatus::False, "NotSupportedYet")
        );
        assert!(c.message.contains("spec.network.mode"), "{}", c.message);
        let mut d = desktop(true);
        d.spec.network.mode = crds::NetworkMode::None;
        let s = desired(&d, &Observed::default(), &t(1));
        assert_eq!(cond(&s, SUPPORTED).status, ConditionStatus::True);
    }

    #[test]
    fn conditions_of_other_writers_do_not_force_writes() {
        let mut d = desktop(true);
        let first = desired(&d, &Observed::default(), &t(1));
        let mut with_other = first.clone();
        with_other.conditions.push(Condition {
            type_: "OutOfDate".into(),
            status: ConditionStatus::True,
            last_transition_time: t(5),
            reason: "TemplateChanged".into(),
            message: String::new(),
            observed_generation: None,
        });
        d.status = Some(with_other);
        assert!(!needs_write(d.status.as_ref(), &first));
    }
}
