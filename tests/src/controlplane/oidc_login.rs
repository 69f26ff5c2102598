//! Logging a user in at the tests' OpenID provider without a browser: the authorization-code
//! flow with PKCE (S256), state and nonce, sent as the plain HTTP requests a browser would send.
//!
//! The provider (zitadel's example) answers the authorization request with a redirect to its
//! login form, `/login/username?authRequestID=<id>`, whose form posts `id` (that auth request
//! id), `username` and `password` back to `/login/username`. A right password redirects to the
//! provider's own `/auth/callback?id=<id>`, which redirects to the client's redirect URI with
//! `code` and `state`; a wrong one renders the form again with the error in red.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use url::Url;

use super::oidc::{OIDC_CLIENT_ID, OidcProvider};

/// The scopes every login asks for; `groups` puts the user's groups into the ID token.
const SCOPES: &str = "openid profile groups";
/// More redirects than this in one step means something loops.
const MAX_REDIRECTS: usize = 10;

/// An authorization code the provider sent to the redirect URI, with what redeeming it needs.
#[derive(Debug, Clone)]
pub struct LoginCode {
    /// The code.
    pub code: String,
    /// The PKCE code verifier whose S256 challenge the authorization request carried.
    pub code_verifier: String,
    /// The state the authorization request carried, and the redirect returned.
    pub state: String,
    /// The nonce the authorization request carried; the ID token must repeat it.
    pub nonce: String,
    /// The redirect URI the code was sent to (the token request repeats it).
    pub redirect_uri: String,
}

/// What the token endpoint returned for a code.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    /// The ID token, a signed JWT naming the user (`sub`) and their `groups`.
    pub id_token: String,
    /// The access token (opaque to the client).
    pub access_token: String,
}

impl Tokens {
    /// The claims of the ID token (its payload, decoded; the signature is not checked here).
    pub fn id_token_claims(&self) -> Result<serde_json::Value, String> {
        jwt_claims(&self.id_token)
    }
}

/// The claims of a JWT: its payload, decoded, without checking the signature.
pub fn jwt_claims(jwt: &str) -> Result<serde_json::Value, String> {
    let payload = jwt.split('.').nth(1).ok_or("not a JWT: no payload part")?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| format!("JWT payload is not base64url: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("JWT payload is not JSON: {e}"))
}

impl OidcProvider {
    /// Logs `user` in with `password` and redeems the code for tokens: [`Self::login_code`],
    /// then [`Self::exchange_code`], then checks the ID token's nonce. `redirect_uri` must match
    /// one of [`super::REDIRECT_GLOBS`]; nothing needs to listen there.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, String> {
        let code = self.login_code(user, password, redirect_uri).await?;
        let tokens = self.exchange_code(&code).await?;
        let claims = tokens.id_token_claims()?;
        if claims["nonce"] != code.nonce.as_str() {
            return Err(format!(
                "the ID token for {user:?} carries nonce {}, not the one asked for",
                claims["nonce"]
            ));
        }
        Ok(tokens)
    }

    /// Logs `user` in with `password` as a browser would and returns the code the provider
    /// redirects to `redirect_uri` with (that last redirect is read, not followed). A wrong
    /// user name or password is an error saying so.
    pub async fn login_code(
        &self,
        user: &str,
        password: &str,
        redirect_uri: &str,
    ) -> Result<LoginCode, String> {
        let http = self.http_client()?;
        let mut callback =
            Url::parse(redirect_uri).map_err(|e| format!("redirect URI {redirect_uri:?}: {e}"))?;
        callback.set_query(None);
        callback.set_fragment(None);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random().secret().clone();
        let nonce = Nonce::new_random().secret().clone();
        let mut authorize = Url::parse(&self.discovery.authorization_endpoint)
            .map_err(|e| format!("authorization endpoint: {e}"))?;
        authorize
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", OIDC_CLIENT_ID)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", SCOPES)
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256");

        let url = self
            .authorize_as(&http, authorize, user, password, &callback)
            .await?;
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let code = param("code").ok_or_else(|| callback_error(&url, "after the login"))?;
        if param("state").as_deref() != Some(state.as_str()) {
            return Err(format!("{url}: the state is not the one sent"));
        }
        Ok(LoginCode {
            code,
            code_verifier: verifier.secret().clone(),
            state,
            nonce,
            redirect_uri: redirect_uri.to_owned(),
        })
    }

    /// Follows `authorize` (an authorization request, e.g. where a broker's `/login` sends a
    /// browser) to the login form, posts `user` and `password` as a browser would, and returns
    /// the URL the provider then redirects to under `callback` (read, not followed).
    pub async fn authorize_as(
        &self,
        http: &reqwest::Client,
        authorize: Url,
        user: &str,
        password: &str,
        callback: &Url,
    ) -> Result<Url, String> {
        // The authorization request leads to the login form.
        let response = send(http.get(authorize)).await?;
        let (form_url, form) = match follow(http, response, callback).await? {
            Reached::Page(url, html) => (url, html),
            Reached::Callback(url) => return Err(callback_error(&url, "before the login form")),
        };
        let id = tag_attr(&form, |tag| tag.contains(r#"name="id""#), "value")
            .ok_or_else(|| format!("{form_url}: no auth request id in the login form"))?;
        let action = tag_attr(&form, |tag| tag.starts_with("form"), "action")
            .ok_or_else(|| format!("{form_url}: no login form"))?;
        let action = form_url
            .join(&action)
            .map_err(|e| format!("{form_url}: form action {action:?}: {e}"))?;

        // Posting the form as the browser would: a right password leads to the callback.
        let fields = [
            ("id", id.as_str()),
            ("username", user),
            ("password", password),
        ];
        let response = send(http.post(action).form(&fields)).await?;
        let url = match follow(http, response, callback).await? {
            Reached::Callback(url) => url,
            Reached::Page(url, html) => {
                let said = form_error(&html).unwrap_or_else(|| "(no message)".to_owned());
                return Err(format!(
                    "login of user {user:?} at {} failed: wrong user name or password (the login form at {url} says {said:?})",
                    self.issuer()
                ));
            }
        };
        Ok(url)
    }

    /// Redeems `code` at the token endpoint, authenticating the client with HTTP basic auth and
    /// proving PKCE with the code verifier.
    pub async fn exchange_code(&self, code: &LoginCode) -> Result<Tokens, String> {
        let http = self.http_client()?;
        let endpoint = &self.discovery.token_endpoint;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.code.as_str()),
            ("redirect_uri", code.redirect_uri.as_str()),
            ("code_verifier", code.code_verifier.as_str()),
        ];
        let request = http
            .post(endpoint)
            .basic_auth(OIDC_CLIENT_ID, Some(self.client_secret()))
            .form(&form);
        let response = send(request).await?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| format!("{endpoint}: {e}"))?;
        if !status.is_success() {
            return Err(format!(
                "token endpoint {endpoint} answered {status}: {body}"
            ));
        }
        serde_json::from_str(&body).map_err(|e| {
            format!("token endpoint {endpoint}: no id_token and access_token ({e}): {body}")
        })
    }
}

/// Where a chain of redirects ended.
enum Reached {
    /// A page of the provider, with its URL and body.
    Page(Url, String),
    /// A redirect to the client's redirect URI (not followed).
    Callback(Url),
}

async fn send(request: reqwest::RequestBuilder) -> Result<Response, String> {
    request.send().await.map_err(|e| match e.url() {
        Some(url) => format!("{url}: {e}"),
        None => e.to_string(),
    })
}

/// Follows the redirects that start with `response` until a page of the provider, or a
/// redirect to `callback` (compared without its query).
async fn follow(
    http: &reqwest::Client,
    mut response: Response,
    callback: &Url,
) -> Result<Reached, String> {
    for _ in 0..MAX_REDIRECTS {
        let url = response.url().clone();
        let status = response.status();
        if !status.is_redirection() {
            let body = response.text().await.map_err(|e| format!("{url}: {e}"))?;
            return match status {
                StatusCode::OK => Ok(Reached::Page(url, body)),
                _ => Err(format!("{url} answered {status}: {}", excerpt(&body))),
            };
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| format!("{url} answered {status} without a Location"))?;
        let next = url
            .join(location)
            .map_err(|e| format!("{url} redirected to {location:?}: {e}"))?;
        let mut bare = next.clone();
        bare.set_query(None);
        bare.set_fragment(None);
        if bare == *callback {
            return Ok(Reached::Callback(next));
        }
        response = send(http.get(next)).await?;
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// The error of a redirect to the callback that carries no code.
fn callback_error(url: &Url, when: &str) -> String {
    let pairs: Vec<String> = url
        .query_pairs()
        .filter(|(k, _)| k.starts_with("error"))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "the provider redirected to the callback {when} without a code: {}",
        pairs.join(", ")
    )
}

/// Attribute `attr` of the first tag for which `wanted` holds (given the tag's text after `<`).
fn tag_attr(html: &str, wanted: impl Fn(&str) -> bool, attr: &str) -> Option<String> {
    let tag = html
        .split('<')
        .filter_map(|piece| piece.split_once('>').map(|(tag, _)| tag))
        .find(|tag| wanted(tag))?;
    let (_, rest) = tag.split_once(&format!("{attr}=\""))?;
    let (value, _) = rest.split_once('"')?;
    Some(unescape(value))
}

/// The error text the login form shows in red, if any.
fn form_error(html: &str) -> Option<String> {
    html.split('<')
        .filter_map(|piece| piece.split_once('>'))
        .find(|(tag, _)| tag.contains("color:red"))
        .map(|(_, text)| unescape(text.trim()))
        .filter(|text| !text.is_empty())
}

/// Undoes the escaping Go's html/template applies to text and attributes.
fn unescape(text: &str) -> String {
    [
        ("&#34;", "\""),
        ("&quot;", "\""),
        ("&#39;", "'"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&amp;", "&"),
    ]
    .iter()
    .fold(text.to_owned(), |s, (from, to)| s.replace(from, to))
}

/// The start of a body, for error messages.
fn excerpt(body: &str) -> String {
    body.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &str = r#"<form method="POST" action="/login/username" style="x">
        <input type="hidden" name="id" value="a&amp;b">
        <p style="color:red; min-height: 1rem;">username or password wrong</p></form>"#;

    #[test]
    fn reads_the_login_form() {
        assert_eq!(
            tag_attr(FORM, |t| t.contains(r#"name="id""#), "value").as_deref(),
            Some("a&b")
        );
        assert_eq!(
            tag_attr(FORM, |t| t.starts_with("form"), "action").as_deref(),
            Some("/login/username")
        );
        assert_eq!(
            form_error(FORM).as_deref(),
            Some("username or password wrong")
        );
        assert_eq!(form_error(r#"<p style="color:red;"></p>"#), None);
    }

    #[test]
    fn decodes_jwt_claims() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"alice"}"#);
        assert_eq!(
            jwt_claims(&format!("h.{payload}.s")).unwrap()["sub"],
            "alice"
        );
        assert!(jwt_claims("garbage").is_err());
    }
}
