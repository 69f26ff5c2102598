//! Server-side sessions: one Lease per login in the broker's own namespace, which every
//! replica watches. The browser's cookie carries only the session's id, expiry and CSRF token;
//! who the user is lives in the Lease. Deleting the Lease ends the session everywhere within
//! a watch event: logout does it, and so can an administrator, for one user's every session:
//!
//! ```sh
//! kubectl delete lease -n verdant-system -l vdi.verdant.dev/session-user=alice
//! ```
//!
//! (the label holds the user name as a label value; the annotation, the name itself). Expired
//! sessions' Leases are deleted by whichever replica sees them first.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::review::Identity;

/// The label every session Lease has.
pub const SESSION_LABEL: &str = "vdi.verdant.dev/session";
/// The label with the session's user, as a label value (for `kubectl delete -l`).
pub const SESSION_USER_LABEL: &str = "vdi.verdant.dev/session-user";
/// The annotation with the session's identity (JSON: user, groups, uid, extra).
const IDENTITY_ANNOTATION: &str = "vdi.verdant.dev/identity";
/// The annotation with the connect tokens the session redeemed and not yet expired (JSON: token
/// id to expiry, Unix ms): one record every replica sees, so a token works once in all.
const REDEEMED_ANNOTATION: &str = "vdi.verdant.dev/redeemed-tokens";
/// Most unexpired tokens a session keeps; past it, the soonest to expire are forgotten (a
/// page asks for one token per viewer, and they last 30 s).
const REDEEMED_MAX: usize = 64;
/// Tries of a redemption that met another replica's write.
const REDEEM_TRIES: usize = 5;
/// The annotation with the session's refresh token, sealed ([`super::sealed`]) for this Lease.
const REFRESH_ANNOTATION: &str = "vdi.verdant.dev/refresh-token";
/// The annotation with when the session's groups were last read from the provider (Unix s),
/// or a replica took it upon itself to read them.
const GROUPS_AT_ANNOTATION: &str = "vdi.verdant.dev/groups-at";
/// How long a session known to be gone is not looked up again.
const GONE_FOR: Duration = Duration::from_secs(60);
/// Most gone sessions remembered.
const GONE_MAX: usize = 10_000;
/// How often expired sessions are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The Lease name of session `sid`: a hash, so the name tells nothing of the id.
pub fn lease_name(sid: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, sid.as_bytes());
    let hex: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("verdant-session-{hex}")
}

/// Every session of this broker's namespace.
pub struct Sessions {
    api: Api<Lease>,
    cache: Store<Lease>,
    listed: Arc<AtomicBool>,
    /// Sessions looked up and not found (ended), by Lease name.
    gone: Mutex<HashMap<String, Instant>>,
}

/// The identity a session Lease holds, if it holds one and has not expired.
fn identity_of(lease: &Lease) -> Option<Identity> {
    if lease.metadata.deletion_timestamp.is_some() || expired(lease) {
        return None;
    }
    let text = lease.annotations().get(IDENTITY_ANNOTATION)?;
    serde_json::from_str(text).ok()
}

/// Whether `lease` is past its renew time plus duration.
fn expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let (Some(renewed), Some(seconds)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    renewed.0.as_second() + i64::from(seconds) < Timestamp::now().as_second()
}

impl Sessions {
    /// Watches the session Leases of `namespace`; `ended` is told the Lease name of each
    /// session that goes (deleted), after the cache has it.
    pub fn watch(
        client: Client,
        namespace: &str,
        ended: impl Fn(&str) + Send + Sync + 'static,
    ) -> Arc<Self> {
        let api: Api<Lease> = Api::namespaced(client, namespace);
        let (cache, writer) = reflector::store();
        let stream = reflector::reflector(
            writer,
            watcher(
                api.clone(),
                watcher::Config::default().labels(SESSION_LABEL),
            ),
        )
        .default_backoff();
        let listed = Arc::new(AtomicBool::new(false));
        let done = Arc::clone(&listed);
        tokio::spawn(async move {
            stream
                .for_each(|event| {
                    match event {
                        Ok(watcher::Event::InitDone) => done.store(true, Ordering::Release),
                        Ok(watcher::Event::Delete(lease)) => ended(&lease.name_any()),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "watch of sessions failed; retrying"),
                    }
                    std::future::ready(())
                })
                .await;
        });
        let sessions = Arc::new(Self {
            api,
            cache,
            listed,
            gone: Mutex::new(HashMap::new()),
        });
        tokio::spawn(Arc::clone(&sessions).sweep());
        sessions
    }

    /// Records a new session of `identity` for `ttl`, with its refresh token if the login
    /// brought one, `sealed` for the Lease ([`lease_name`]).
    pub async fn create(
        &self,
        sid: &str,
        identity: &Identity,
        ttl: Duration,
        sealed: Option<String>,
    ) -> Result<(), kube::Error> {
        let now = MicroTime(Timestamp::now());
        let mut lease: Lease = serde_json::from_value(json!({
            "metadata": {
                "name": lease_name(sid),
                "labels": {
                    SESSION_LABEL: "true",
                    SESSION_USER_LABEL: crds::labels::label_value(&identity.user),
                    "app.kubernetes.io/managed-by": "verdant-broker",
                },
                "annotations": {
                    "vdi.verdant.dev/user": identity.user,
                    IDENTITY_ANNOTATION: serde_json::to_string(identity).unwrap_or_default(),
                },
            },
            "spec": {
                "holderIdentity": identity.user,
                "leaseDurationSeconds": i32::try_from(ttl.as_secs()).unwrap_or(i32::MAX),
                "acquireTime": now,
                "renewTime": now,
            },
        }))
        .map_err(kube::Error::SerdeError)?;
        if let Some(sealed) = sealed {
            let notes = lease.annotations_mut();
            notes.insert(REFRESH_ANNOTATION.to_owned(), sealed);
            notes.insert(
                GROUPS_AT_ANNOTATION.to_owned(),
                Timestamp::now().as_second().to_string(),
            );
        }
        self.api.create(&PostParams::default(), &lease).await?;
        Ok(())
    }

    /// Sessions whose groups were last read from the provider `every` ago or longer and that
    /// can be refreshed: the Lease and its sealed refresh token.
    pub fn due_for_refresh(&self, every: Duration) -> Vec<(Lease, String)> {
        let now = Timestamp::now().as_second();
        self.cache
            .state()
            .iter()
            .filter(|lease| identity_of(lease).is_some())
            .filter_map(|lease| {
                let notes = lease.annotations();
                let sealed = notes.get(REFRESH_ANNOTATION)?;
                let at: i64 = notes.get(GROUPS_AT_ANNOTATION)?.parse().ok()?;
                (at + every.as_secs() as i64 <= now).then(|| (Lease::clone(lease), sealed.clone()))
            })
            .collect()
    }

    /// Takes the refresh of `lease` upon this replica: marks its groups as read now, written
    /// only if nobody wrote the Lease since it was read. `true`: this replica refreshes it;
    /// `false`: another replica took it, or the session changed or ended.
    pub async fn claim_refresh(&self, lease: &Lease) -> Result<bool, kube::Error> {
        let mut claimed = lease.clone();
        claimed.annotations_mut().insert(
            GROUPS_AT_ANNOTATION.to_owned(),
            Timestamp::now().as_second().to_string(),
        );
        match self
            .api
            .replace(&lease.name_any(), &PostParams::default(), &claimed)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records what a refresh of session Lease `name` brought: who the apiserver now says the
    /// user is (their groups), and the refresh token to use next (sealed for the Lease).
    /// `false`: the session ended meanwhile.
    pub async fn refreshed(
        &self,
        name: &str,
        identity: &Identity,
        sealed: Option<String>,
    ) -> Result<bool, kube::Error> {
        for _ in 0..REDEEM_TRIES {
            let Some(mut lease) = self.api.get_opt(name).await? else {
                return Ok(false);
            };
            if identity_of(&lease).is_none() {
                return Ok(false);
            }
            let notes = lease.annotations_mut();
            notes.insert(
                IDENTITY_ANNOTATION.to_owned(),
                serde_json::to_string(identity).unwrap_or_default(),
            );
            if let Some(sealed) = &sealed {
                notes.insert(REFRESH_ANNOTATION.to_owned(), sealed.clone());
            }
            notes.insert(
                GROUPS_AT_ANNOTATION.to_owned(),
                Timestamp::now().as_second().to_string(),
            );
            match self.api.replace(name, &PostParams::default(), &lease).await {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => continue,
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Who session `sid` belongs to, while it lasts: from the watch cache, else (a session
    /// made at another replica a moment ago) from the apiserver. `None`: ended or expired.
    pub async fn identity(&self, sid: &str) -> Result<Option<Identity>, kube::Error> {
        let name = lease_name(sid);
        let namespace = self.api.namespace().unwrap_or_default().to_owned();
        if let Some(lease) = self.cache.get(&ObjectRef::new(&name).within(&namespace)) {
            return Ok(identity_of(&lease));
        }
        {
            let gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
            if gone.get(&name).is_some_and(|at| at.elapsed() < GONE_FOR)
                && self.listed.load(Ordering::Acquire)
            {
                return Ok(None);
            }
        }
        let found = self.api.get_opt(&name).await?;
        if found.is_none() {
            let mut gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
            if gone.len() >= GONE_MAX {
                gone.retain(|_, at| at.elapsed() < GONE_FOR);
            }
            if gone.len() < GONE_MAX {
                gone.insert(name, Instant::now());
            }
        }
        Ok(found.as_ref().and_then(identity_of))
    }

    /// Uses up connect token `jti` (expiring at `exp`, Unix ms) of session `sid`, for every
    /// replica: `true` the first time, `false` if it was used before (at any replica) or the
    /// session is gone. The record is the session's Lease, written only if nobody wrote it since
    /// it was read (its resourceVersion), so two replicas redeeming one token cannot both win.
    pub async fn redeem_once(&self, sid: &str, jti: &str, exp: u64) -> Result<bool, kube::Error> {
        let name = lease_name(sid);
        let now = Timestamp::now().as_millisecond().max(0) as u64;
        let mut tries = 0;
        loop {
            tries += 1;
            let Some(mut lease) = self.api.get_opt(&name).await? else {
                return Ok(false);
            };
            if identity_of(&lease).is_none() {
                return Ok(false);
            }
            let mut redeemed: HashMap<String, u64> = lease
                .annotations()
                .get(REDEEMED_ANNOTATION)
                .and_then(|text| serde_json::from_str(text).ok())
                .unwrap_or_default();
            if redeemed.contains_key(jti) {
                return Ok(false);
            }
            redeemed.retain(|_, until| *until >= now);
            if redeemed.len() >= REDEEMED_MAX {
                let mut by_expiry: Vec<(String, u64)> = redeemed.into_iter().collect();
                by_expiry.sort_by_key(|(_, until)| std::cmp::Reverse(*until));
                by_expiry.truncate(REDEEMED_MAX - 1);
                redeemed = by_expiry.into_iter().collect();
            }
            redeemed.insert(jti.to_owned(), exp);
            lease.annotations_mut().insert(
                REDEEMED_ANNOTATION.to_owned(),
                serde_json::to_string(&redeemed).unwrap_or_default(),
            );
            // `replace` sends the resourceVersion read: a write in between is a 409.
            match self
                .api
                .replace(&name, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => return Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 && tries < REDEEM_TRIES => continue,
                Err(kube::Error::Api(e)) if e.code == 404 => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Ends session `sid` everywhere (its Lease goes; every replica's watch sees it).
    pub async fn end(&self, sid: &str) -> Result<(), kube::Error> {
        self.end_lease(&lease_name(sid)).await
    }

    /// Ends the session of Lease `name` everywhere.
    pub async fn end_lease(&self, name: &str) -> Result<(), kube::Error> {
        match self.api.delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes expired sessions' Leases, every [`SWEEP_EVERY`], until the broker stops.
    async fn sweep(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            for lease in self.cache.state().iter().filter(|l| expired(l)) {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: lease.uid(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match self.api.delete(&lease.name_any(), &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => tracing::warn!(error = %e, "cannot delete an expired session"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_its_identity_until_it_expires() {
        let identity = Identity {
            user: "alice".into(),
            groups: vec!["engineering".into(); 500],
            uid: None,
            extra: Default::default(),
        };
        let lease = |renewed: i64| -> Lease {
            serde_json::from_value(json!({
                "metadata": {"name": lease_name("s1"), "annotations": {
                    IDENTITY_ANNOTATION: serde_json::to_string(&identity).unwrap(),
                }},
                "spec": {
                    "leaseDurationSeconds": 3600,
                    "renewTime": MicroTime(Timestamp::from_second(renewed).unwrap()),
                },
            }))
            .unwrap()
        };
        let now = Timestamp::now().as_second();
        assert_eq!(identity_of(&lease(now)), Some(identity.clone()));
        assert_eq!(identity_of(&lease(now - 3601)), None, "expired");
        assert_ne!(lease_name("s1"), lease_name("s2"));
        assert!(!lease_name("s1").contains("s1"));
    }
}
