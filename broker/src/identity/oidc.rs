//! The broker as an OpenID Connect client: authorization code flow with PKCE (S256), state and
//! nonce, through the `openidconnect` crate (it checks the ID token's signature, issuer,
//! audience, expiry and nonce). The ID token is then reviewed by the apiserver, so what
//! Kubernetes says about it is what counts.

use std::path::Path;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse,
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

    /// Trades `code` for tokens; returns the ID token, unchecked ([`Oidc::verify`] checks it).
    pub async fn exchange(&self, code: &str, pending: &Pending) -> Result<IdToken, OidcError> {
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        response
            .id_token()
            .cloned()
            .ok_or_else(|| OidcError::IdToken("the provider sent none".into()))
    }

    /// Checks `id_token` (signature, issuer, audience, expiry, the login's nonce) against the
    /// provider's key set as fetched at discovery; returns it, as sent.
    pub fn verify(&self, id_token: &IdToken, pending: &Pending) -> Result<String, OidcError> {
        use openidconnect::{ClaimsVerificationError, SignatureVerificationError};
        id_token
            .claims(
                &self.client.id_token_verifier(),
                &Nonce::new(pending.nonce.clone()),
            )
            .map_err(|e| match e {
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                ) => OidcError::UnknownKey,
                e => OidcError::IdToken(e.to_string()),
            })?;
        Ok(id_token.to_string())
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
