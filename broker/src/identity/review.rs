//! Who a token belongs to, as Kubernetes sees it: a TokenReview. The apiserver trusts the
//! same OpenID issuer as the broker, so the name and groups here are exactly the ones RBAC
//! decides on. Service-account and OIDC bearer tokens of scripts are checked the same way.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

/// How long a bearer token's review is reused.
const CACHE_FOR: Duration = Duration::from_secs(10);
/// Most reviews cached.
const CACHE_MAX: usize = 10_000;

/// A user as Kubernetes knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The user name.
    pub user: String,
    /// The groups.
    pub groups: Vec<String>,
    /// The uid, if the authenticator gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Extra attributes (scopes, ...), which authorizers may look at.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The apiserver says the token is not valid.
    #[error("the token is not valid: {0}")]
    Invalid(String),
    /// The review could not be made.
    #[error("cannot review the token: {0}")]
    Kube(#[from] kube::Error),
}

/// Reviews tokens, caching answers briefly (keyed by a hash of the token, never the token).
pub struct Reviewer {
    api: Api<TokenReview>,
    cache: Mutex<HashMap<[u8; 32], (Instant, Identity)>>,
}

impl Reviewer {
    /// A reviewer that asks the apiserver `client` talks to.
    pub fn new(client: Client) -> Self {
        Self {
            api: Api::all(client),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Who `token` belongs to, from a fresh TokenReview.
    pub async fn review(&self, token: &str) -> Result<Identity, ReviewError> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_owned()),
                audiences: None,
            },
            ..TokenReview::default()
        };
        let answer = self.api.create(&PostParams::default(), &review).await?;
        let status = answer.status.unwrap_or_default();
        if status.authenticated != Some(true) {
            return Err(ReviewError::Invalid(
                status
                    .error
                    .unwrap_or_else(|| "not authenticated".to_owned()),
            ));
        }
        let user = status.user.unwrap_or_default();
        let name = user.username.filter(|u| !u.is_empty());
        let Some(name) = name else {
            return Err(ReviewError::Invalid("the token names no user".into()));
        };
        Ok(Identity {
            user: name,
            groups: user.groups.unwrap_or_default(),
            uid: user.uid.filter(|u| !u.is_empty()),
            extra: user.extra.unwrap_or_default(),
        })
    }

    /// Who bearer `token` belongs to, reusing a review of the last few seconds.
    pub async fn review_bearer(&self, token: &str) -> Result<Identity, ReviewError> {
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        let now = Instant::now();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, identity)) = cache.get(&key)
                && now.duration_since(*at) < CACHE_FOR
            {
                return Ok(identity.clone());
            }
        }
        let identity = self.review(token).await?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, _)| now.duration_since(*at) < CACHE_FOR);
        }
        if cache.len() < CACHE_MAX {
            cache.insert(key, (now, identity.clone()));
        }
        Ok(identity)
    }
}
