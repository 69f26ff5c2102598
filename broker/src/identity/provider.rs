//! The OpenID provider as the broker knows it: discovered at start (retried until it answers),
//! discovered again every [`REFRESH_EVERY`] and whenever an ID token names a signing key the
//! last discovery did not bring (a rotation), at most once per [`REFRESH_AT_MOST`], so that a
//! provider rotating its keys never locks users out until a restart, and no token can make the
//! broker hammer the provider.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::oidc::{Oidc, OidcError};

/// How often the provider's metadata and keys are fetched again, rotation or not.
pub const REFRESH_EVERY: Duration = Duration::from_secs(3600);
/// Least time between two fetches asked for by unknown keys (ID tokens come only from the
/// broker's own code exchanges with the provider, so this only keeps a burst of logins after
/// a rotation to one fetch).
pub const REFRESH_AT_MOST: Duration = Duration::from_secs(1);
/// How often a failed discovery is tried again.
const RETRY: Duration = Duration::from_secs(2);

/// How to reach and register with the provider.
#[derive(Clone)]
pub struct Registration {
    /// The issuer URL.
    pub issuer: String,
    /// The broker's client id.
    pub client_id: String,
    /// Its client secret, if it is a confidential client.
    pub client_secret: Option<String>,
    /// The OpenID callback.
    pub redirect: String,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
    /// The HTTP client for the provider.
    pub http: reqwest::Client,
}

/// The provider, as last discovered.
pub struct Provider {
    registration: Registration,
    current: RwLock<Option<Arc<Oidc>>>,
    /// When a fetch was last asked for because of an unknown key.
    asked: Mutex<Option<Instant>>,
}

impl Provider {
    /// Not discovered yet; [`Provider::run`] does it.
    pub fn new(registration: Registration) -> Self {
        Self {
            registration,
            current: RwLock::new(None),
            asked: Mutex::new(None),
        }
    }

    /// The provider as last discovered.
    pub fn current(&self) -> Option<Arc<Oidc>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    async fn discover(&self) -> Result<Arc<Oidc>, OidcError> {
        let r = &self.registration;
        let oidc = Arc::new(
            Oidc::discover(
                &r.issuer,
                &r.client_id,
                r.client_secret.clone(),
                &r.redirect,
                r.scopes.clone(),
                r.http.clone(),
            )
            .await?,
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&oidc));
        Ok(oidc)
    }

    /// Discovers the provider until it answers, then again every [`REFRESH_EVERY`]. Runs
    /// until the broker stops.
    pub async fn run(self: Arc<Self>) {
        let mut last_error = String::new();
        loop {
            match self.discover().await {
                Ok(_) => {
                    tracing::info!(issuer = %self.registration.issuer, "OpenID provider discovered");
                    last_error.clear();
                    tokio::time::sleep(REFRESH_EVERY).await;
                }
                Err(e) => {
                    let text = e.to_string();
                    if text != last_error {
                        tracing::warn!(error = %text, "OpenID discovery failed; retrying every 2 s");
                        last_error = text;
                    }
                    // Before the first discovery, retry soon; after it, the last one stands.
                    let wait = if self.current().is_some() {
                        REFRESH_AT_MOST
                    } else {
                        RETRY
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// `check` with `oidc`, and once more with the provider discovered again if it names a
    /// signing key `oidc` lacks (the provider may have rotated its keys; rate-limited as
    /// [`Provider::refresh_for_unknown_key`]).
    pub async fn check<T>(
        &self,
        oidc: &Oidc,
        check: impl Fn(&Oidc) -> Result<T, OidcError>,
    ) -> Result<T, OidcError> {
        match check(oidc) {
            Err(OidcError::UnknownKey) => match self.refresh_for_unknown_key().await {
                Some(fresh) => check(&fresh),
                None => Err(OidcError::UnknownKey),
            },
            checked => checked,
        }
    }

    /// An ID token named a key the last discovery lacks: discovers again, unless that was
    /// done in the last [`REFRESH_AT_MOST`]; the provider as it is now, if it could be had.
    pub async fn refresh_for_unknown_key(&self) -> Option<Arc<Oidc>> {
        {
            let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
            if asked.is_some_and(|at| at.elapsed() < REFRESH_AT_MOST) {
                return None;
            }
            *asked = Some(Instant::now());
        }
        match self.discover().await {
            Ok(oidc) => {
                tracing::info!(issuer = %self.registration.issuer, "an ID token named an unknown signing key: fetched the provider's keys again");
                Some(oidc)
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching the provider's keys again failed");
                None
            }
        }
    }
}
