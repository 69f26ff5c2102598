//! Unit tests of the Desktop status: phase, conditions and when a write is needed.

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

#[test]
fn kstatus_conditions_say_converging_failed_for_good_or_settled() {
    let d = desktop(true);
    let pair = |s: &DesktopStatus| {
        let is = |t| cond(s, t).status == ConditionStatus::True;
        (is(RECONCILING), is(STALLED))
    };
    let with = |observed: Observed<'_>| desired(&d, &observed, &t(1));
    // Converging: no pod yet, then a pod not yet Ready; a failed launcher waits to be
    // replaced, which the operator does by itself.
    assert_eq!(pair(&with(Observed::default())), (true, false));
    let starting = pod("Running", Some("n"), false);
    let s = with(Observed {
        pod: Some(&starting),
        ..Default::default()
    });
    assert_eq!(pair(&s), (true, false));
    assert_eq!(cond(&s, RECONCILING).reason, cond(&s, READY).reason);
    let failure = Failure {
        reason: "LauncherFailed".into(),
        message: "exit 4; the next launcher starts in 10 s".into(),
    };
    let s = with(Observed {
        failure: Some(failure),
        ..Default::default()
    });
    assert_eq!(pair(&s), (true, false));
    // As asked: Ready, or stopped.
    let ready = pod("Running", Some("n"), true);
    let s = with(Observed {
        pod: Some(&ready),
        ..Default::default()
    });
    assert_eq!(pair(&s), (false, false));
    assert_eq!(
        pair(&desired(&desktop(false), &Observed::default(), &t(1))),
        (false, false)
    );
    // Failed for good: a spec that cannot run until someone changes something.
    let invalid = Invalid {
        reason: "PersistentVolumeClaimNotFound",
        message: "spec.boot.kernel: claim kernels does not exist".into(),
    };
    let s = with(Observed {
        invalid: Some(&invalid),
        ..Default::default()
    });
    assert_eq!(pair(&s), (false, true));
    assert_eq!(cond(&s, STALLED).reason, "PersistentVolumeClaimNotFound");
    assert_eq!(cond(&s, STALLED).message, invalid.message);
}
