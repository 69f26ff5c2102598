//! What a user may do, as Kubernetes RBAC decides: SubjectAccessReviews on Verdant's kinds.
//!
//! - `use` on `desktoppools/<name>`: take a desktop from that pool;
//! - `use` on `desktops/<name>`: open a desktop that is not assigned to you;
//! - `shadow` on `desktops/<name>`: watch a desktop without input (helpdesk).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};

use super::review::Identity;

/// How long a decision is reused: a revoked grant takes effect within this.
const CACHE_FOR: Duration = Duration::from_secs(5);
/// Most decisions cached.
const CACHE_MAX: usize = 50_000;

/// Verb: take a desktop from a pool, or open a desktop.
pub const USE: &str = "use";
/// Verb: watch a desktop, view-only.
pub const SHADOW: &str = "shadow";
/// The pools resource.
pub const POOLS: &str = "desktoppools";
/// The desktops resource.
pub const DESKTOPS: &str = "desktops";

/// Asks the apiserver whether users may do things, caching answers for a few seconds.
pub struct Access {
    api: Api<SubjectAccessReview>,
    cache: Mutex<HashMap<String, (Instant, bool)>>,
}

impl Access {
    /// Asks the apiserver `client` talks to.
    pub fn new(client: Client) -> Self {
        Self {
            api: Api::all(client),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `who` may `verb` `resource`/`name` in `namespace` (API group vdi.verdant.dev).
    pub async fn allowed(
        &self,
        who: &Identity,
        verb: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Result<bool, kube::Error> {
        let key =
            serde_json::to_string(&(who, verb, resource, namespace, name)).unwrap_or_default();
        let now = Instant::now();
        if let Some((at, allowed)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && now.duration_since(*at) < CACHE_FOR
        {
            return Ok(*allowed);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(who.user.clone()),
                groups: Some(who.groups.clone()),
                uid: who.uid.clone(),
                extra: (!who.extra.is_empty()).then(|| who.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(crds::GROUP.into()),
                    resource: Some(resource.into()),
                    verb: Some(verb.into()),
                    namespace: Some(namespace.into()),
                    name: Some(name.into()),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let answer = self.api.create(&PostParams::default(), &review).await?;
        let allowed = answer
            .status
            .is_some_and(|s| s.allowed && s.denied != Some(true));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, _)| now.duration_since(*at) < CACHE_FOR);
        }
        cache.insert(key, (now, allowed));
        Ok(allowed)
    }
}
