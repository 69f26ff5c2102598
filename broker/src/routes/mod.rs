//! The broker's HTTP surface: the router, who the caller is, and how refusals look.
//!
//! Refusals never say whether a desktop exists to someone who may not open it: a desktop that
//! is missing and one that is someone else's get the same 404 and the same words.

mod auth;
mod portal;
mod vnc;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::PrivateCookieJar;
use crds::Desktop;
use tower_http::services::ServeDir;

use crate::context::{App, Broker};
use crate::identity::Identity;
use crate::portal::pages;

/// Every route of the broker.
pub fn router(broker: Arc<Broker>) -> Router {
    let novnc = ServeDir::new(&broker.options.novnc);
    Router::new()
        .route("/", get(portal::index))
        .route("/login", get(auth::login))
        .route("/auth/callback", get(auth::callback))
        .route("/logout", post(auth::logout))
        .route(
            "/pools/{namespace}/{pool}/connect",
            post(portal::connect_form),
        )
        .route("/desktops/{namespace}/{name}", get(portal::desktop_page))
        .route(
            "/desktops/{namespace}/{name}/release",
            post(portal::release_form),
        )
        .route("/desktops/{namespace}/{name}/vnc", get(vnc::websocket))
        .route(
            "/api/pools/{namespace}/{pool}/connect",
            post(portal::connect_api),
        )
        .route("/api/desktops/{namespace}/{name}", get(portal::desktop_api))
        .route("/api/desktops/{namespace}/{name}/token", post(vnc::token))
        .route(
            "/api/desktops/{namespace}/{name}/release",
            post(portal::release_api),
        )
        .route(
            "/static/portal.css",
            get(|| static_file("text/css", crate::portal::PORTAL_CSS)),
        )
        .route(
            "/static/desktop.js",
            get(|| static_file("text/javascript", crate::portal::DESKTOP_JS)),
        )
        .route(
            "/static/starting.js",
            get(|| static_file("text/javascript", crate::portal::STARTING_JS)),
        )
        .nest_service("/novnc", novnc)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(axum::middleware::from_fn_with_state(
            App(Arc::clone(&broker)),
            bearer_gate,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(App(broker))
}

/// Bearer tokens the broker has not reviewed lately cost the apiserver a TokenReview each:
/// a client (and all clients together) may bring only so many; past that, 429 without asking
/// the apiserver anything. Tokens reviewed lately (accepted or refused) are answered from
/// the broker's memory and never limited.
async fn bearer_gate(
    axum::extract::State(App(broker)): axum::extract::State<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    if let Some(token) = token
        && broker.reviewer.cached_bearer(token).is_none()
    {
        let peer = request
            .extensions()
            .get::<crate::server::Peer>()
            .map(|p| p.0.ip());
        let limits = &broker.limits;
        let this_client = peer.is_none_or(|ip| limits.reviews_per_client.allow(&ip));
        if !this_client || !limits.reviews.allow(&()) {
            broker.metrics.refused("rate_limited");
            return Refusal::TooMany.json();
        }
    }
    next.run(request).await
}

async fn static_file(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Headers every answer carries: no framing by other sites, no sniffing, no referrer
/// leaking desktop names, and a content policy that allows only this origin.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; form-action 'self'",
        ),
    ] {
        headers
            .entry(name)
            .or_insert(header::HeaderValue::from_static(value));
    }
    response
}

async fn readyz(axum::extract::State(App(broker)): axum::extract::State<App>) -> Response {
    match broker.ready() {
        Ok(()) => "ready".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

/// What the metrics listener serves: `/metrics`, apart from the users' listener, so that an
/// Ingress in front of that one never exposes it.
pub fn metrics_router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(App(broker))
}

async fn metrics(axum::extract::State(App(broker)): axum::extract::State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        broker.metrics.encode(),
    )
        .into_response()
}

/// Who is asking: a browser session (with its CSRF token) or a bearer token.
#[derive(Debug, Clone)]
pub struct Caller {
    /// As Kubernetes knows them.
    pub identity: Identity,
    /// The session id (for bearer callers, derived from the token).
    pub sid: String,
    /// The session's CSRF token; `None` for bearer callers, who carry no ambient credential.
    pub csrf: Option<String>,
}

impl Caller {
    /// Whether `desktop` is the caller's own (its `spec.user`).
    pub fn owns(&self, desktop: &Desktop) -> bool {
        desktop.spec.user.as_deref() == Some(self.identity.user.as_str())
    }

    /// Whether the caller came with a bearer token, not a browser session (no session Lease).
    pub fn is_bearer(&self) -> bool {
        self.sid.starts_with(crate::relays::BEARER_SID_PREFIX)
    }
}

/// Why a request is refused, and how to say it.
#[derive(Debug)]
pub enum Refusal {
    /// No identity: pages send the browser to log in, APIs answer 401.
    Unauthenticated,
    /// A bearer token the apiserver does not accept.
    BadBearer,
    /// No right to this, with a metric reason and words for the user.
    Forbidden(&'static str, String),
    /// Missing, or not the caller's (the same answer).
    NotFound,
    /// A name Kubernetes could not have.
    BadName,
    /// Something the broker needs is not there yet or is down.
    Unavailable(String),
    /// Not possible in the object's present state, with a metric reason and words for the
    /// user (a Dedicated desktop given back).
    Conflict(&'static str, String),
    /// More requests than the caller may make; try again in a moment.
    TooMany,
}

impl Refusal {
    fn status(&self) -> StatusCode {
        match self {
            Self::Unauthenticated | Self::BadBearer => StatusCode::UNAUTHORIZED,
            Self::Forbidden(..) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::BadName => StatusCode::BAD_REQUEST,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Conflict(..) => StatusCode::CONFLICT,
            Self::TooMany => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn words(&self) -> (&'static str, String) {
        match self {
            Self::Unauthenticated => ("Log in", "Log in to reach your desktops.".into()),
            Self::BadBearer => ("Log in", "The bearer token is not valid.".into()),
            Self::Forbidden(_, text) => ("Not allowed", text.clone()),
            Self::NotFound => (
                "No such desktop",
                "There is no such desktop, or it is not yours.".into(),
            ),
            Self::BadName => (
                "Not a valid name",
                "Namespaces and names are lowercase letters, digits, '-' and '.'.".into(),
            ),
            Self::Unavailable(text) => ("Not available", text.clone()),
            Self::Conflict(_, text) => ("Not possible", text.clone()),
            Self::TooMany => (
                "Slow down",
                "Too many requests in a short time; try again in a moment.".into(),
            ),
        }
    }

    /// As a page (a login redirect where there is no identity).
    pub fn page(self, next: &str) -> Response {
        if matches!(self, Self::Unauthenticated) {
            return Redirect::to(&format!("/login?next={}", urlencode(next))).into_response();
        }
        let (title, text) = self.words();
        (
            self.status(),
            axum::response::Html(pages::message(
                None,
                title,
                &text,
                Some(("/", "Your desktops")),
            )),
        )
            .into_response()
    }

    /// As JSON, for scripts.
    pub fn json(self) -> Response {
        let (_, text) = self.words();
        let reason = match &self {
            Self::Unauthenticated => "Unauthenticated",
            Self::BadBearer => "InvalidToken",
            Self::Forbidden(..) => "Forbidden",
            Self::NotFound => "NotFound",
            Self::BadName => "InvalidName",
            Self::Unavailable(_) => "Unavailable",
            Self::Conflict(reason, _) => match *reason {
                "dedicated" => "Dedicated",
                _ => "Conflict",
            },
            Self::TooMany => "TooManyRequests",
        };
        let mut response = (
            self.status(),
            axum::Json(serde_json::json!({"reason": reason, "message": text})),
        )
            .into_response();
        if matches!(self, Self::TooMany) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

/// Percent-encodes a query value.
pub fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// The caller's identity: a bearer token if one is sent, else the session cookie.
pub async fn caller(
    broker: &Broker,
    headers: &HeaderMap,
    jar: &PrivateCookieJar,
) -> Result<Caller, Refusal> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            broker.metrics.refused("bad_bearer");
            return Err(Refusal::BadBearer);
        };
        return match broker.reviewer.review_bearer(token).await {
            Ok(identity) => {
                let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
                let sid: String = digest.as_ref()[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                Ok(Caller {
                    identity,
                    sid: format!("{}{sid}", crate::relays::BEARER_SID_PREFIX),
                    csrf: None,
                })
            }
            Err(crate::identity::review::ReviewError::Invalid(_)) => {
                broker.metrics.refused("bad_bearer");
                Err(Refusal::BadBearer)
            }
            Err(crate::identity::review::ReviewError::Busy) => Err(Refusal::TooMany),
            Err(e) => Err(Refusal::Unavailable(format!(
                "The broker cannot check tokens now: {e}"
            ))),
        };
    }
    let Some(cookie) = broker.cookies.session(jar) else {
        broker.metrics.refused("no_session");
        return Err(Refusal::Unauthenticated);
    };
    // The session lives server-side: ended (logout, an administrator) means logged out,
    // whatever the cookie says.
    match broker.sessions.identity(&cookie.sid).await {
        Ok(Some(identity)) => Ok(Caller {
            identity,
            sid: cookie.sid,
            csrf: Some(cookie.csrf),
        }),
        Ok(None) => {
            broker.metrics.refused("session_ended");
            Err(Refusal::Unauthenticated)
        }
        Err(e) => Err(Refusal::Unavailable(format!(
            "The broker cannot check your session now: {e}"
        ))),
    }
}

/// The caller of a state-changing request: [`caller`], then [`check_same_site`].
pub async fn changing_caller(
    broker: &Broker,
    headers: &HeaderMap,
    jar: &PrivateCookieJar,
    form_token: Option<&str>,
) -> Result<Caller, Refusal> {
    let who = caller(broker, headers, jar).await?;
    check_same_site(broker, &who, headers, form_token)?;
    Ok(who)
}

/// Refuses a cross-site state-changing request: the Origin (when sent) must be the broker's,
/// and a session caller must send its CSRF token (form field or `X-CSRF-Token`).
pub fn check_same_site(
    broker: &Broker,
    caller: &Caller,
    headers: &HeaderMap,
    form_token: Option<&str>,
) -> Result<(), Refusal> {
    let refuse = || {
        broker.metrics.refused("csrf");
        Refusal::Forbidden(
            "csrf",
            "This request did not come from the portal; open the portal and try again.".into(),
        )
    };
    if let Some(origin) = headers.get(header::ORIGIN)
        && origin.as_bytes() != broker.options.origin().as_bytes()
    {
        return Err(refuse());
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(refuse());
    }
    let Some(expected) = &caller.csrf else {
        return Ok(());
    };
    let sent = form_token.or_else(|| headers.get("x-csrf-token").and_then(|v| v.to_str().ok()));
    match sent {
        Some(sent) if constant_time_eq(sent.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(refuse()),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(urlencode("/desktops/a b?x"), "%2Fdesktops%2Fa+b%3Fx");
    }
}
