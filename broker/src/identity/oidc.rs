//! The broker as an OpenID Connect client: authorization code flow with PKCE (S256), state and
//! nonce, through the `openidconnect` crate (it checks the ID token's signature, issuer,
//! audience, expiry and nonce). The ID token is then reviewed by the apiserver, so what
//! Kubernetes says about it is what counts.

use std::path::Path;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse,
};

/// An ID token as the provider sent it.
pub type IdToken = openidconnect::core::CoreIdToken;

/// The client type discovery gives.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What went wrong talking to the provider.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Setting up (bad URL, unreadable CA).
    #[error("OpenID setup: {0}")]
    Setup(String),
    /// Discovery failed.
    #[error("OpenID discovery at {issuer} failed: {message}")]
    Discovery {
        /// The issuer.
        issuer: String,
        /// Why.
        message: String,
    },
    /// The code exchange failed.
    #[error("the OpenID provider refused the login code: {0}")]
    Exchange(String),
    /// The provider would not refresh (the user is gone, disabled or logged out there, or
    /// the refresh token was revoked): the session must end.
    #[error("the OpenID provider refused to refresh the login: {0}")]
    RefreshRefused(String),
    /// Refreshing failed for another reason (the provider unreachable): try again later.
    #[error("cannot refresh the login at the OpenID provider: {0}")]
    Refresh(String),
    /// The ID token is missing or does not check out.
    #[error("the ID token is not valid: {0}")]
    IdToken(String),
    /// The ID token is signed with a key the provider's key set (as last fetched) lacks: the
    /// provider may have rotated its keys.
    #[error("the ID token is signed with a key the provider's key set lacks")]
    UnknownKey,
}

/// A login in progress: what the callback needs to finish it (kept in an encrypted cookie).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    /// The `state` sent; the callback must bring it back.
    pub state: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// Where to go after login (a local path).
    pub next: String,
}

/// A discovered provider and this broker's client registration there.
pub struct Oidc {
    client: Client,
    http: reqwest::Client,
    scopes: Vec<String>,
}

/// What a code exchange or a refresh brings.
pub struct Tokens {
    /// The ID token, unchecked.
    pub id_token: IdToken,
    /// A refresh token, when the provider gave one (scope `offline_access`).
    pub refresh: Option<String>,
}

/// Scope `offline_access`: asks for a refresh token (OpenID Connect Core 11).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// An HTTP client for the provider: no redirects followed (OAuth requires it), the given CA
/// trusted besides the system's.
pub fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, OidcError> {
    let mut builder = reqwest::ClientBuilder::new()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            OidcError::Setup(format!("cannot read --oidc-ca {}: {e}", path.display()))
        })?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| OidcError::Setup(format!("--oidc-ca {}: {e}", path.display())))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| OidcError::Setup(format!("HTTP client: {e}")))
}

impl Oidc {
    /// Discovers `issuer` and sets up client `client_id` with `redirect` as its callback.
    pub async fn discover(
        issuer: &str,
        client_id: &str,
        client_secret: Option<String>,
        redirect: &str,
        scopes: Vec<String>,
        http: reqwest::Client,
    ) -> Result<Self, OidcError> {
        let issuer_url =
            IssuerUrl::new(issuer.to_owned()).map_err(|e| OidcError::Setup(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer_url, &http)
            .await
            .map_err(|e| OidcError::Discovery {
                issuer: issuer.to_owned(),
                message: error_chain(&e),
            })?;
        let redirect =
            RedirectUrl::new(redirect.to_owned()).map_err(|e| OidcError::Setup(e.to_string()))?;
        // A refresh token lets the broker follow the user's groups at the provider; ask for one
        // where the provider says it gives them (some refuse a scope they do not know).
        let mut scopes = scopes;
        let offline = metadata
            .scopes_supported()
            .is_some_and(|s| s.iter().any(|s| s.as_str() == OFFLINE_ACCESS));
        if offline && !scopes.iter().any(|s| s == OFFLINE_ACCESS) {
            scopes.push(OFFLINE_ACCESS.to_owned());
        }
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.to_owned()),
            client_secret.map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        Ok(Self {
            client,
            http,
            scopes,
        })
    }

    /// The provider URL to send the browser to, and what the callback will need.
    pub fn start(&self, next: &str) -> (url::Url, Pending) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in self.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        (
            url,
            Pending {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
                next: next.to_owned(),
            },
        )
    }

    /// Whether logins here bring refresh tokens (the scopes ask for `offline_access`).
    pub fn refreshes(&self) -> bool {
        self.scopes.iter().any(|s| s == OFFLINE_ACCESS)
    }

    /// Trades `code` for tokens; the ID token unchecked ([`Oidc::verify`] checks it).
    pub async fn exchange(&self, code: &str, pending: &Pending) -> Result<Tokens, OidcError> {
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        Ok(Tokens {
            id_token: response
                .id_token()
                .cloned()
                .ok_or_else(|| OidcError::IdToken("the provider sent none".into()))?,
            refresh: response.refresh_token().map(|t| t.secret().clone()),
        })
    }

    /// Trades `refresh` for fresh tokens (the ID token unchecked: [`Oidc::verify_refreshed`]).
    /// A provider that answers with an OAuth error (`invalid_grant`: the user or the grant is
    /// gone) is [`OidcError::RefreshRefused`]; one that cannot be reached, [`OidcError::Refresh`].
    pub async fn refresh(&self, refresh: &str) -> Result<Tokens, OidcError> {
        let response = self
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh.to_owned()))
            .map_err(|e| OidcError::Refresh(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| match &e {
                RequestTokenError::ServerResponse(answer) => {
                    OidcError::RefreshRefused(answer.to_string())
                }
                _ => OidcError::Refresh(error_chain(&e)),
            })?;
        Ok(Tokens {
            id_token: response.id_token().cloned().ok_or_else(|| {
                OidcError::Refresh("the provider sent no ID token with the refresh".into())
            })?,
            // A provider that rotates refresh tokens sends a new one; else the old one stays.
            refresh: response.refresh_token().map(|t| t.secret().clone()),
        })
    }

    /// Checks a refreshed `id_token` as [`Oidc::verify`] does, but for the nonce: a refreshed
    /// ID token carries none, or the login's (OpenID Connect Core 12.2), and the login's is
    /// not kept.
    pub fn verify_refreshed(&self, id_token: &IdToken) -> Result<String, OidcError> {
        id_token
            .claims(&self.client.id_token_verifier(), |_: Option<&Nonce>| Ok(()))
            .map_err(claims_error)?;
        Ok(id_token.to_string())
    }

    /// Checks `id_token` (signature, issuer, audience, expiry, the login's nonce) against the
    /// provider's key set as fetched at discovery; returns it, as sent.
    pub fn verify(&self, id_token: &IdToken, pending: &Pending) -> Result<String, OidcError> {
        id_token
            .claims(
                &self.client.id_token_verifier(),
                &Nonce::new(pending.nonce.clone()),
            )
            .map_err(claims_error)?;
        Ok(id_token.to_string())
    }
}

/// An ID token's failed check: a key the key set lacks (the provider may have rotated) apart
/// from the rest.
fn claims_error(e: openidconnect::ClaimsVerificationError) -> OidcError {
    use openidconnect::{ClaimsVerificationError, SignatureVerificationError};
    match e {
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => OidcError::UnknownKey,
        e => OidcError::IdToken(e.to_string()),
    }
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
