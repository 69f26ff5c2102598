//! The pool controller's pure steps around [`super::plan`]: the template's hash, the Desktop
//! a pool makes, what the controller reads from its desktops, and the pool's status.

use std::collections::BTreeSet;

use crds::{ConditionStatus, Desktop, DesktopPhase, DesktopPool, DesktopPoolStatus, SessionState};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};

use super::plan::{Member, Plan, Sizing};
use crate::conditions::{condition, kstatus_pair};
use crate::labels::{POOL_LABEL, TEMPLATE_HASH_LABEL};

/// The pool condition that says its desktops cannot be made (as a ReplicaSet's does).
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// The pool is as its spec asks (kstatus `Ready`, for `kubectl wait` and GitOps health): it
/// has the desktops it wants, all Ready, and none failed to be made.
pub const READY: &str = "Ready";

/// The pool is still converging on its spec (making, starting or replacing desktops): kstatus
/// `InProgress`.
pub use crate::conditions::RECONCILING;

/// The pool cannot converge until someone changes something: its desktops cannot be made, or
/// one of them cannot run (its own `Stalled`). kstatus `Failed`, so a GitOps apply reports it
/// at once.
pub use crate::conditions::STALLED;

/// Why the pool's desktops cannot be made: for its `ReplicaFailure` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFailure {
    /// CamelCase reason.
    pub reason: String,
    /// What the apiserver said, and what to do.
    pub message: String,
}

/// How the pool is sized.
pub fn sizing(pool: &DesktopPool) -> Sizing {
    Sizing {
        replicas: pool.spec.replicas,
        spare: pool.spec.spare.unwrap_or(0),
        max_replicas: pool.spec.max_replicas,
    }
}

/// What the controller knows of each of the pool's `desktops`.
pub fn members<'a>(desktops: impl IntoIterator<Item = &'a Desktop>, hash: &str) -> Vec<Member> {
    desktops
        .into_iter()
        .map(|d| {
            let status = d.status.as_ref();
            Member {
                name: d.name_any(),
                current: d.labels().get(TEMPLATE_HASH_LABEL).map(String::as_str) == Some(hash),
                assigned: d.spec.user.is_some(),
                ready: status.and_then(|s| s.phase) == Some(DesktopPhase::Ready),
                connected: status
                    .and_then(|s| s.assignment.as_ref())
                    .and_then(|a| a.session)
                    == Some(SessionState::Connected),
                terminating: d.metadata.deletion_timestamp.is_some(),
                stalled: status
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == STALLED))
                    .filter(|c| c.status == ConditionStatus::True)
                    .map(|c| format!("{}: {}", c.reason, c.message)),
                created: d
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map_or(0, |t| t.0.as_second()),
            }
        })
        .collect()
}

/// Names for `count` new desktops of `pool`: `<pool>-<n>` with the lowest numbers no desktop
/// has. Names are fixed by number, so a create repeated after a restart fails as already
/// there instead of making a desktop too many.
pub fn new_names<'a>(
    pool: &str,
    existing: impl IntoIterator<Item = &'a Desktop>,
    count: usize,
) -> Vec<String> {
    let taken: BTreeSet<String> = existing.into_iter().map(|d| d.name_any()).collect();
    (0..)
        .map(|n| format!("{pool}-{n}"))
        .filter(|name| !taken.contains(name))
        .take(count)
        .collect()
}

/// The Desktop `name` of `pool`: its template, labelled with the pool and the template hash,
/// owned by the pool.
pub fn desktop(pool: &DesktopPool, name: &str, hash: &str) -> Desktop {
    let template = &pool.spec.template;
    let mut desktop = Desktop::new(name, template.spec.clone());
    desktop.metadata.namespace = pool.namespace();
    let (mut labels, annotations) = template
        .metadata
        .as_ref()
        .map(|m| (m.labels.clone(), m.annotations.clone()))
        .unwrap_or_default();
    labels.insert(POOL_LABEL.into(), pool.name_any());
    labels.insert(TEMPLATE_HASH_LABEL.into(), hash.into());
    desktop.metadata.labels = Some(labels);
    if !annotations.is_empty() {
        desktop.metadata.annotations = Some(annotations);
    }
    desktop.metadata.owner_references = pool.controller_owner_ref(&()).map(|r| vec![r]);
    // A new desktop is nobody's, whatever the template says.
    desktop.spec.user = None;
    desktop
}

/// The pool's status from its members and the plan, at time `now`; with a `ReplicaFailure`
/// condition while its desktops cannot be made.
pub fn status(
    pool: &DesktopPool,
    members: &[Member],
    plan: &Plan,
    failure: Option<&ReplicaFailure>,
    now: &Time,
) -> DesktopPoolStatus {
    let live: Vec<&Member> = members.iter().filter(|m| !m.terminating).collect();
    let count = |f: fn(&Member) -> bool| live.iter().filter(|m| f(m)).count() as i32;
    let current = pool.status.as_ref().map_or(&[][..], |s| &s.conditions);
    let generation = pool.metadata.generation;
    let (replicas, ready) = (live.len() as i32, count(|m| m.ready));
    let (is_ready, reason, message) = match failure {
        Some(f) => (false, f.reason.clone(), f.message.clone()),
        None if replicas == plan.desired && ready == plan.desired => (
            true,
            "AllReady".to_owned(),
            format!("{ready} of {} desktops Ready", plan.desired),
        ),
        None => (
            false,
            "Scaling".to_owned(),
            format!(
                "{ready} of {} desktops Ready, {replicas} exist",
                plan.desired
            ),
        ),
    };
    let ready_message = message.clone();
    let mut conditions = vec![condition(
        current, READY, is_ready, &reason, message, generation, now,
    )];
    if let Some(f) = failure {
        let message = f.message.clone();
        conditions.push(condition(
            current,
            REPLICA_FAILURE,
            true,
            &f.reason,
            message,
            generation,
            now,
        ));
    }
    // kstatus, after the others: Stalled while desktops cannot be made or one cannot run,
    // Reconciling while not ready.
    let mut stuck = live
        .iter()
        .filter_map(|m| Some((&m.name, m.stalled.as_ref()?)));
    let stalled = match (failure, stuck.next()) {
        (Some(f), _) => Some((f.reason.clone(), f.message.clone())),
        (None, Some((name, why))) => Some((
            "DesktopStalled".to_owned(),
            format!(
                "desktop {name} cannot run ({why}); {} of the pool's desktops cannot",
                1 + stuck.count()
            ),
        )),
        (None, None) => None,
    };
    conditions.extend(kstatus_pair(
        current,
        stalled,
        (!is_ready).then_some((reason, ready_message)),
        generation,
        now,
    ));
    DesktopPoolStatus {
        replicas,
        ready,
        available: count(|m| m.ready && !m.assigned),
        assigned: count(|m| m.assigned),
        desired_replicas: plan.desired,
        label_selector: Some(format!("{POOL_LABEL}={}", pool.name_any())),
        conditions,
        observed_generation: pool.metadata.generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::template_hash;
    use serde_json::json;

    fn pool() -> DesktopPool {
        serde_json::from_value(json!({
            "apiVersion": "vdi.verdant.dev/v1alpha1",
            "kind": "DesktopPool",
            "metadata": {"name": "office", "namespace": "team", "uid": "u-1", "generation": 3},
            "spec": {
                "replicas": 2,
                "spare": 1,
                "template": {
                    "metadata": {"labels": {"team": "sales"}},
                    "spec": {
                        "user": "template-user",
                        "resources": {"cpus": 2, "memory": "2Gi"},
                        "boot": {"kernel": {"hostPath": "/k"}},
                    },
                },
            },
        }))
        .unwrap()
    }

    /// A current, unassigned, unconnected member that is `ready` or not.
    fn member(name: &str, ready: bool) -> Member {
        Member {
            name: name.into(),
            current: true,
            assigned: false,
            ready,
            connected: false,
            terminating: false,
            stalled: None,
            created: 0,
        }
    }

    #[test]
    fn a_pool_desktop_is_its_template_labelled_owned_and_nobodys() {
        let pool = pool();
        let hash = template_hash(&pool);
        let d = desktop(&pool, "office-0", &hash);
        assert_eq!(d.name_any(), "office-0");
        assert_eq!(d.namespace().as_deref(), Some("team"));
        assert_eq!(d.labels()[POOL_LABEL], "office");
        assert_eq!(d.labels()[TEMPLATE_HASH_LABEL], hash);
        assert_eq!(d.labels()["team"], "sales");
        assert_eq!(d.spec.user, None);
        assert_eq!(d.spec.resources.cpus, 2);
        let owner = &d.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("DesktopPool", Some(true))
        );
    }

    #[test]
    fn the_hash_follows_the_template_only() {
        let mut pool = pool();
        let before = template_hash(&pool);
        pool.spec.replicas = 9;
        assert_eq!(template_hash(&pool), before, "scaling changes no desktop");
        pool.spec.template.spec.resources.cpus = 4;
        assert_ne!(template_hash(&pool), before);
        assert_eq!(before.len(), 10);
    }

    #[test]
    fn new_names_fill_the_gaps() {
        let pool = pool();
        let existing = [
            desktop(&pool, "office-0", "h"),
            desktop(&pool, "office-2", "h"),
        ];
        assert_eq!(
            new_names("office", &existing, 3),
            ["office-1", "office-3", "office-4"]
        );
    }

    #[test]
    fn status_counts_what_the_desktops_do() {
        let pool = pool();
        let member = |name: &str, assigned, ready, terminating| Member {
            assigned,
            terminating,
            ..member(name, ready)
        };
        let members = [
            member("a", true, true, false),
            member("b", false, true, false),
            member("c", false, false, false),
            member("d", false, true, true),
        ];
        let plan = super::super::plan::plan(sizing(&pool), &members);
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
        let counted = status(&pool, &members, &plan, None, &now);
        assert_eq!(
            (
                counted.replicas,
                counted.ready,
                counted.available,
                counted.assigned
            ),
            (3, 2, 1, 1)
        );
        assert_eq!(counted.desired_replicas, 2, "max(2, min(1 + 1, none))");
        assert_eq!(
            counted.label_selector.as_deref(),
            Some("vdi.verdant.dev/pool=office")
        );
        assert_eq!(counted.observed_generation, Some(3));
        let types: Vec<&str> = counted
            .conditions
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, [READY, STALLED, RECONCILING], "no ReplicaFailure");
        let ready = &counted.conditions[0];
        assert_eq!(
            (
                ready.status,
                ready.reason.as_str(),
                ready.observed_generation
            ),
            (crds::ConditionStatus::False, "Scaling", Some(3)),
            "3 desktops for 2 wanted: {}",
            ready.message
        );

        // Desktops that cannot be made: a ReplicaFailure condition, whose transition time
        // stays while it holds (so an unchanged failure costs no write).
        let failure = ReplicaFailure {
            reason: "FailedCreateInvalid".into(),
            message: "creating desktop office-1: refused".into(),
        };
        let failed = status(&pool, &members, &plan, Some(&failure), &now);
        assert_eq!(
            (
                failed.conditions[0].status,
                failed.conditions[0].reason.as_str()
            ),
            (crds::ConditionStatus::False, "FailedCreateInvalid"),
            "not Ready while desktops cannot be made"
        );
        let c = &failed.conditions[1];
        assert_eq!(
            (c.type_.as_str(), c.reason.as_str(), c.status),
            (
                REPLICA_FAILURE,
                "FailedCreateInvalid",
                crds::ConditionStatus::True
            )
        );
        let mut pool = pool;
        pool.status = Some(failed.clone());
        let later = Time(k8s_openapi::jiff::Timestamp::from_second(200).unwrap());
        assert_eq!(
            status(&pool, &members, &plan, Some(&failure), &later),
            failed
        );
    }

    #[test]
    fn a_pool_is_ready_when_it_has_the_desktops_it_wants_all_ready() {
        let pool = pool();
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
        let ready_of = |members: &[Member]| {
            let plan = super::super::plan::plan(sizing(&pool), members);
            let s = status(&pool, members, &plan, None, &now);
            let c = s.conditions.iter().find(|c| c.type_ == READY).unwrap();
            (c.status, c.reason.clone())
        };
        let no = crds::ConditionStatus::False;
        assert_eq!(
            ready_of(&[member("a", true), member("b", false)]),
            (no, "Scaling".into())
        );
        assert_eq!(ready_of(&[member("a", true)]), (no, "Scaling".into()));
        assert_eq!(
            ready_of(&[member("a", true), member("b", true)]),
            (crds::ConditionStatus::True, "AllReady".into())
        );
    }

    #[test]
    fn kstatus_conditions_say_converging_failed_for_good_or_settled() {
        let pool = pool();
        let member = |name: &str, ready, stalled: Option<&str>| Member {
            stalled: stalled.map(Into::into),
            ..member(name, ready)
        };
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(100).unwrap());
        let pair = |members: &[Member], failure: Option<&ReplicaFailure>| {
            let plan = super::super::plan::plan(sizing(&pool), members);
            let s = status(&pool, members, &plan, failure, &now);
            let get = |t: &str| s.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
            (get(RECONCILING), get(STALLED))
        };
        let yes = crds::ConditionStatus::True;
        let no = crds::ConditionStatus::False;
        // Scaling: converging.
        let (reconciling, stalled) = pair(&[member("a", true, None)], None);
        assert_eq!((reconciling.status, stalled.status), (yes, no));
        assert_eq!(reconciling.reason, "Scaling");
        // All the desktops it wants, all Ready: settled.
        let settled = [member("a", true, None), member("b", true, None)];
        let (reconciling, stalled) = pair(&settled, None);
        assert_eq!((reconciling.status, stalled.status), (no, no));
        // A desktop that cannot run: the pool cannot converge, and says which.
        let stuck = [
            member("a", true, None),
            member(
                "b",
                false,
                Some("PersistentVolumeClaimNotFound: claim kernels"),
            ),
        ];
        let (reconciling, stalled) = pair(&stuck, None);
        assert_eq!((reconciling.status, stalled.status), (no, yes));
        assert_eq!(stalled.reason, "DesktopStalled");
        assert!(
            stalled.message.contains("desktop b") && stalled.message.contains("claim kernels"),
            "{}",
            stalled.message
        );
        // Desktops that cannot be made: stalled with the apiserver's reason.
        let failure = ReplicaFailure {
            reason: "FailedCreateInvalid".into(),
            message: "creating desktop office-1: refused".into(),
        };
        let (reconciling, stalled) = pair(&[member("a", true, None)], Some(&failure));
        assert_eq!((reconciling.status, stalled.status), (no, yes));
        assert_eq!(stalled.reason, "FailedCreateInvalid");
    }
}
