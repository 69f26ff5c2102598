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
/// How long a token the apiserver refused stays refused without asking again.
const REFUSED_FOR: Duration = Duration::from_secs(60);
/// Most reviews cached (of each kind).
const CACHE_MAX: usize = 10_000;
/// TokenReviews in flight at once; more wait for one to finish.
const IN_FLIGHT: usize = 16;
/// How long a review waits for its turn before the caller is told to try again.
const WAIT_FOR_TURN: Duration = Duration::from_secs(5);

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
    /// Too many reviews are in flight; the caller should try again.
    #[error("the broker is reviewing too many tokens; try again")]
    Busy,
}

/// Reviews tokens, caching answers briefly (keyed by a hash of the token, never the token).
pub struct Reviewer {
    api: Api<TokenReview>,
    cache: Mutex<HashMap<[u8; 32], (Instant, Identity)>>,
    /// Tokens the apiserver refused, by hash, with why.
    refused: Mutex<HashMap<[u8; 32], (Instant, String)>>,
    turns: tokio::sync::Semaphore,
}

impl Reviewer {
    /// A reviewer that asks the apiserver `client` talks to.
    pub fn new(client: Client) -> Self {
        Self {
            api: Api::all(client),
            cache: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashMap::new()),
            turns: tokio::sync::Semaphore::new(IN_FLIGHT),
        }
    }

    /// Who `token` belongs to, from a fresh TokenReview (at most [`IN_FLIGHT`] at once).
    pub async fn review(&self, token: &str) -> Result<Identity, ReviewError> {
        let _turn = tokio::time::timeout(WAIT_FOR_TURN, self.turns.acquire())
            .await
            .map_err(|_| ReviewError::Busy)?
            .map_err(|_| ReviewError::Busy)?;
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

    /// What an earlier review of bearer `token` says, if it is recent: who it is, or why the
    /// apiserver refused it. `None`: a review is needed.
    pub fn cached_bearer(&self, token: &str) -> Option<Result<Identity, ReviewError>> {
        let key = token_key(token);
        let now = Instant::now();
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, identity)) = cache.get(&key)
            && now.duration_since(*at) < CACHE_FOR
        {
            return Some(Ok(identity.clone()));
        }
        drop(cache);
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        match refused.get(&key) {
            Some((at, why)) if now.duration_since(*at) < REFUSED_FOR => {
                Some(Err(ReviewError::Invalid(why.clone())))
            }
            _ => None,
        }
    }

    /// Who bearer `token` belongs to, reusing a review of the last few seconds (a refusal,
    /// of the last minute).
    pub async fn review_bearer(&self, token: &str) -> Result<Identity, ReviewError> {
        if let Some(known) = self.cached_bearer(token) {
            return known;
        }
        let key = token_key(token);
        let now = Instant::now();
        let identity = match self.review(token).await {
            Ok(identity) => identity,
            Err(ReviewError::Invalid(why)) => {
                let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
                if refused.len() >= CACHE_MAX {
                    refused.retain(|_, (at, _)| now.duration_since(*at) < REFUSED_FOR);
                }
                if refused.len() < CACHE_MAX {
                    refused.insert(key, (now, why.clone()));
                }
                return Err(ReviewError::Invalid(why));
            }
            Err(e) => return Err(e),
        };
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

/// The cache key of a token: its SHA-256, never the token itself.
fn token_key(token: &str) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .try_into()
        .unwrap_or([0; 32])
}
