//! One user, one desktop, across processes: a per-(pool, user) Lease the apiserver arbitrates.
//!
//! An [`crate::Assigner`] serialises a user's requests within one process, and its conditional
//! writes stop two users from getting one desktop. But the same user arriving at two broker
//! replicas at once would have each replica take a different free desktop. So before taking
//! a new desktop, a replica creates the Lease `verdant-claim-<hash of pool and user>` in the
//! pool's namespace; only one create succeeds. The holder then lists the pool's desktops
//! from the apiserver (not its cache, which may lag another replica's write), takes one only
//! if the user has none, and deletes the Lease. A replica that finds the Lease held waits
//! for it to go, then does the same. A Lease its holder left behind (a crash) expires after
//! [`CLAIM_SECONDS`].

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

use crate::error::{AssignError, is_conflict, is_not_found};
use crds::labels::short_hash;

/// How long a claim holds if its holder never lets it go.
pub const CLAIM_SECONDS: i32 = 15;
/// How long a caller waits for another's claim before giving up.
const WAIT: Duration = Duration::from_secs(30);
/// How often a held claim is looked at.
const POLL: Duration = Duration::from_millis(50);

/// The Lease name of `user`'s claim in `pool`.
pub fn claim_name(pool: &str, user: &str) -> String {
    format!(
        "verdant-claim-{}",
        short_hash(format!("{pool}\0{user}").as_bytes())
    )
}

/// A claim this process holds; [`Claim::release`] deletes it.
pub struct Claim {
    leases: Api<Lease>,
    name: String,
    uid: Option<String>,
}

impl Claim {
    /// Takes `user`'s claim in `pool`, waiting while another process holds it.
    pub async fn take(
        leases: Api<Lease>,
        pool: &str,
        user: &str,
        holder: &str,
    ) -> Result<Self, AssignError> {
        let name = claim_name(pool, user);
        let start = tokio::time::Instant::now();
        loop {
            let now = MicroTime(Timestamp::now());
            let lease: Lease = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "verdant"}},
                "spec": {
                    "holderIdentity": holder,
                    "leaseDurationSeconds": CLAIM_SECONDS,
                    "acquireTime": now,
                    "renewTime": now,
                },
            }))
            .map_err(|e| AssignError::Kube(kube::Error::SerdeError(e)))?;
            match leases.create(&PostParams::default(), &lease).await {
                Ok(made) => {
                    return Ok(Self {
                        leases,
                        name,
                        uid: made.metadata.uid,
                    });
                }
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
            // Held: by a live holder (wait), or left behind (delete it, on its uid).
            match leases.get_opt(&name).await? {
                Some(held) if expired(&held) => {
                    let params = DeleteParams {
                        preconditions: Some(kube::api::Preconditions {
                            uid: held.metadata.uid.clone(),
                            resource_version: held.resource_version(),
                        }),
                        ..DeleteParams::default()
                    };
                    match leases.delete(&name, &params).await {
                        Ok(_) => {}
                        Err(e) if is_conflict(&e) || is_not_found(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                    continue;
                }
                Some(_) => {}
                None => continue,
            }
            if start.elapsed() > WAIT {
                return Err(AssignError::Busy(user.to_owned()));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Lets the claim go (a failure only delays the next claim until it expires).
    pub async fn release(self) {
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: self.uid,
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(e) = self.leases.delete(&self.name, &params).await
            && !is_not_found(&e)
        {
            tracing::warn!(claim = %self.name, error = %e, "cannot delete an assignment claim; it expires by itself");
        }
    }
}

/// Whether `lease` is past its renew time plus duration.
fn expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    renewed.0.as_second() + i64::from(seconds) < Timestamp::now().as_second()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_per_pool_and_user_and_valid_names() {
        let a = claim_name("eng", "alice");
        assert_eq!(a, claim_name("eng", "alice"));
        assert_ne!(a, claim_name("eng", "bob"));
        assert_ne!(a, claim_name("ops", "alice"));
        // "eng\0a" + "lice" must not meet "en" + "g\0alice".
        assert_ne!(claim_name("en", "g\0alice"), a);
        assert!(
            a.len() <= 63
                && a.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{a}"
        );
    }

    #[test]
    fn a_lease_without_times_or_past_its_time_is_expired() {
        let mut lease = Lease::default();
        assert!(expired(&lease));
        lease.spec = Some(k8s_openapi::api::coordination::v1::LeaseSpec {
            renew_time: Some(MicroTime(Timestamp::now())),
            lease_duration_seconds: Some(CLAIM_SECONDS),
            ..Default::default()
        });
        assert!(!expired(&lease));
        lease.spec.as_mut().unwrap().renew_time = Some(MicroTime(
            Timestamp::from_second(Timestamp::now().as_second() - 60).unwrap(),
        ));
        assert!(expired(&lease));
    }
}
