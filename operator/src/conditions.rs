//! Conditions as the controllers write them: a condition keeps its transition time while its
//! status stays the same, so that an unchanged world computes an unchanged status and costs
//! no write.

use crds::{Condition, ConditionStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The condition `type_` with `status`, keeping the transition time of the one in `current`
/// when its status is the same, else `now`.
pub fn condition(
    current: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    let last_transition_time = current
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.into(),
        status,
        last_transition_time,
        reason: reason.into(),
        message,
        observed_generation: generation,
    }
}

/// kstatus's abnormal-true pair (the health rules Flux applies): `Stalled` says the object
/// cannot converge until someone changes something (kstatus `Failed`), `Reconciling` that it
/// is still converging (`InProgress`); both False once it is as asked (`Current`).
///
/// A reason and message each: `stalled` when it cannot converge, `pending` when it is not as
/// asked yet (ignored while stalled: nothing is in progress then).
pub fn kstatus_pair(
    current: &[Condition],
    stalled: Option<(String, String)>,
    pending: Option<(String, String)>,
    generation: Option<i64>,
    now: &Time,
) -> [Condition; 2] {
    let settled = || ("Settled".to_owned(), "nothing left to do".to_owned());
    let is_stalled = stalled.is_some();
    let reconciling = pending.filter(|_| !is_stalled);
    let is_reconciling = reconciling.is_some();
    let (stalled_reason, stalled_message) = stalled.unwrap_or_else(settled);
    let (reconciling_reason, reconciling_message) = reconciling.unwrap_or_else(settled);
    [
        condition(
            current,
            STALLED,
            is_stalled,
            &stalled_reason,
            stalled_message,
            generation,
            now,
        ),
        condition(
            current,
            RECONCILING,
            is_reconciling,
            &reconciling_reason,
            reconciling_message,
            generation,
            now,
        ),
    ]
}

/// Condition type: the object cannot converge until someone changes something.
pub const STALLED: &str = "Stalled";
/// Condition type: the object is converging on its spec.
pub const RECONCILING: &str = "Reconciling";

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn the_transition_time_moves_only_with_the_status() {
        let t = |s| Time(Timestamp::from_second(s).unwrap());
        let first = condition(&[], "Ready", true, "Up", "up".into(), Some(1), &t(10));
        assert_eq!(first.last_transition_time, t(10));
        let current = [first];
        let same = condition(
            &current,
            "Ready",
            true,
            "Up",
            "still".into(),
            Some(2),
            &t(20),
        );
        assert_eq!(same.last_transition_time, t(10));
        let flipped = condition(
            &current,
            "Ready",
            false,
            "Down",
            "down".into(),
            None,
            &t(30),
        );
        assert_eq!(flipped.last_transition_time, t(30));
    }
}
