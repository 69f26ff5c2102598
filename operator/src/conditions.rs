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
