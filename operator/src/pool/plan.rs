//! The DesktopPool controller's pure middle: from the pool's spec and what its desktops are
//! doing, how many desktops the pool wants and which to delete, in the order the pool
//! promises: unassigned desktops that are not Ready first, then unassigned Ready ones, then
//! assigned ones only when nothing else can go, and never one whose session is connected.
//! Out-of-date unassigned desktops are replaced a few at a time; assigned ones wait for their
//! user to let go.

/// What the pool controller knows of one of its desktops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The Desktop's name.
    pub name: String,
    /// Made from the pool's current template.
    pub current: bool,
    /// A user is assigned.
    pub assigned: bool,
    /// Ready: the session can be used.
    pub ready: bool,
    /// A user's session is connected right now.
    pub connected: bool,
    /// Being deleted already.
    pub terminating: bool,
    /// Why the Desktop cannot run until someone changes something (its `Stalled` condition's
    /// reason and message), if so.
    pub stalled: Option<String>,
    /// Creation time, seconds since the epoch: among equals, the newest goes first.
    pub created: i64,
}

/// How big a pool wants to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// The least number of desktops (`spec.replicas`).
    pub replicas: i32,
    /// Ready, unassigned desktops to keep on top of the assigned ones (`spec.spare`).
    pub spare: i32,
    /// The most desktops (`spec.maxReplicas`), if capped.
    pub max_replicas: Option<i32>,
}

impl Sizing {
    /// `max(replicas, min(assigned + spare, maxReplicas))`.
    pub fn desired(&self, assigned: i32) -> i32 {
        let wanted = assigned.saturating_add(self.spare);
        let capped = self.max_replicas.map_or(wanted, |max| wanted.min(max));
        self.replicas.max(capped)
    }

    /// How many desktops may be unavailable at once while out-of-date ones are replaced: a
    /// quarter of the pool, at least one.
    pub fn max_unavailable(&self, desired: i32) -> i32 {
        (desired / 4).max(1)
    }
}

/// What the controller should do now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// How many desktops the pool wants.
    pub desired: i32,
    /// How many new desktops to create.
    pub create: i32,
    /// Desktops to delete, in order: for scaling down, or to be replaced by current ones.
    pub delete: Vec<String>,
    /// How many of the first of [`Plan::delete`] go because the pool shrinks; the rest are
    /// replaced by desktops from the current template.
    pub scale_down: usize,
    /// Assigned desktops made from an old template: they get an `OutOfDate` condition and
    /// are replaced when released.
    pub out_of_date: Vec<String>,
}

/// The order in which desktops go when the pool shrinks: lower first; `None` never goes.
fn removal_rank(m: &Member) -> Option<u8> {
    match (m.assigned, m.ready, m.connected) {
        (_, _, true) => None,
        (false, false, _) => Some(0),
        (false, true, _) => Some(1),
        (true, _, false) => Some(2),
    }
}

/// Plans one reconcile of a pool of `members` sized by `sizing`.
pub fn plan(sizing: Sizing, members: &[Member]) -> Plan {
    let live: Vec<&Member> = members.iter().filter(|m| !m.terminating).collect();
    let assigned = live.iter().filter(|m| m.assigned).count() as i32;
    let desired = sizing.desired(assigned);
    let count = live.len() as i32;
    let mut plan = Plan {
        desired,
        create: (desired - count).max(0),
        out_of_date: live
            .iter()
            .filter(|m| !m.current && m.assigned)
            .map(|m| m.name.clone())
            .collect(),
        ..Plan::default()
    };

    // Candidates in removal order: rank, then out-of-date before current, then newest.
    let mut candidates: Vec<(u8, &Member)> = live
        .iter()
        .filter_map(|m| removal_rank(m).map(|rank| (rank, *m)))
        .collect();
    candidates.sort_by(|(ra, a), (rb, b)| {
        ra.cmp(rb)
            .then(a.current.cmp(&b.current))
            .then(b.created.cmp(&a.created))
            .then(a.name.cmp(&b.name))
    });

    let surplus = (count - desired).max(0) as usize;
    plan.delete = candidates
        .iter()
        .take(surplus)
        .map(|(_, m)| m.name.clone())
        .collect();
    plan.scale_down = plan.delete.len();

    // Replace out-of-date unassigned desktops: each one deleted is created again from the
    // current template. Those not Ready cost nothing (they serve nobody yet); Ready ones only
    // while few desktops are unavailable.
    let unavailable = live.iter().filter(|m| !m.ready).count() as i32
        + members.iter().filter(|m| m.terminating).count() as i32
        + plan.create;
    let mut budget = (sizing.max_unavailable(desired) - unavailable).max(0);
    let replace: Vec<String> = candidates
        .iter()
        .skip(surplus)
        .filter(|(rank, m)| !m.current && *rank < 2)
        .filter(|(_, m)| {
            if !m.ready {
                return true;
            }
            budget -= 1;
            budget >= 0
        })
        .map(|(_, m)| m.name.clone())
        .collect();
    plan.create += replace.len() as i32;
    plan.delete.extend(replace);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, assigned: bool, ready: bool, connected: bool) -> Member {
        Member {
            name: name.into(),
            current: true,
            assigned,
            ready,
            connected,
            terminating: false,
            stalled: None,
            created: 0,
        }
    }

    fn sizing(replicas: i32, spare: i32, max: Option<i32>) -> Sizing {
        Sizing {
            replicas,
            spare,
            max_replicas: max,
        }
    }

    #[test]
    fn the_pool_wants_replicas_or_assigned_plus_spare_up_to_the_cap() {
        assert_eq!(sizing(5, 2, None).desired(0), 5);
        assert_eq!(sizing(5, 2, None).desired(4), 6);
        assert_eq!(sizing(5, 2, Some(6)).desired(10), 6);
        assert_eq!(sizing(0, 3, Some(100)).desired(100), 100);
        assert_eq!(
            sizing(20, 0, Some(10)).desired(0),
            20,
            "replicas wins over the cap"
        );
        assert_eq!(
            sizing(1, i32::MAX, None).desired(5),
            i32::MAX,
            "no overflow"
        );
    }

    #[test]
    fn scale_up_creates_the_difference() {
        let members = [member("p-a", false, true, false)];
        let plan = plan(sizing(3, 0, None), &members);
        assert_eq!((plan.desired, plan.create), (3, 2));
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn scale_down_takes_unready_then_ready_then_disconnected_assigned_never_connected() {
        let mut members = vec![
            member("assigned-connected", true, true, true),
            member("assigned-idle", true, true, false),
            member("free-ready-old", false, true, false),
            member("free-ready-new", false, true, false),
            member("free-booting", false, false, false),
        ];
        members[2].created = 10;
        members[3].created = 20;
        let order = |replicas, max| plan(sizing(replicas, 0, max), &members).delete;
        assert_eq!(order(4, None), ["free-booting"]);
        assert_eq!(
            order(0, None),
            ["free-booting", "free-ready-new", "free-ready-old"],
            "not Ready first, then Ready, newest first; the assigned stay"
        );
        // Only a cap below the assigned count takes assigned desktops.
        assert_eq!(
            order(0, Some(0)),
            [
                "free-booting",
                "free-ready-new",
                "free-ready-old",
                "assigned-idle"
            ],
            "an assigned desktop only when nothing else can go; a connected one never"
        );
    }

    #[test]
    fn terminating_desktops_do_not_count() {
        let mut members = vec![
            member("a", false, true, false),
            member("b", false, true, false),
        ];
        members[1].terminating = true;
        let plan = plan(sizing(2, 0, None), &members);
        assert_eq!((plan.create, plan.delete.len()), (1, 0));
    }

    #[test]
    fn out_of_date_desktops_are_replaced_a_few_at_a_time_and_assigned_ones_wait() {
        let mut members: Vec<Member> = (0..8)
            .map(|i| member(&format!("d{i}"), i < 2, true, false))
            .collect();
        for m in &mut members {
            m.current = false;
        }
        let plan = plan(sizing(8, 0, None), &members);
        assert_eq!(plan.out_of_date, ["d0", "d1"]);
        assert_eq!(plan.delete.len(), 2, "a quarter of 8 at a time");
        assert!(plan.delete.iter().all(|n| n != "d0" && n != "d1"));
        assert_eq!(plan.create, 2, "each replaced by a current one");

        // One not Ready is replaced at no cost; it still counts as unavailable, so only one
        // Ready one goes with it.
        members[7].ready = false;
        let plan = super::plan(sizing(8, 0, None), &members);
        assert_eq!(plan.delete, ["d7", "d2"]);
        // None Ready at all (the pool is still starting): all free ones are replaced.
        for m in &mut members {
            m.ready = false;
        }
        let plan = super::plan(sizing(8, 0, None), &members);
        assert_eq!(plan.delete.len(), 6);
        assert_eq!(plan.create, 6);
    }

    #[test]
    fn spare_grows_the_pool_as_users_arrive() {
        let members: Vec<Member> = (0..4)
            .map(|i| member(&format!("d{i}"), i < 3, true, false))
            .collect();
        let plan = plan(sizing(2, 2, Some(10)), &members);
        assert_eq!((plan.desired, plan.create), (5, 1), "3 assigned + 2 spare");
    }
}
