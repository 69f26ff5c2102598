//! Login (OpenID code flow with PKCE), its callback, and logout.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::PrivateCookieJar;
use serde::Deserialize;

use super::{Refusal, changing_caller};
use crate::context::{App, Broker};
use crate::identity::session::local_next;
use crate::portal::pages;

/// `/login` query.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Sends the browser to the provider, remembering where it was going.
pub async fn login(
    State(App(broker)): State<App>,
    jar: PrivateCookieJar,
    Query(query): Query<LoginQuery>,
) -> Response {
    let Some(oidc) = broker.oidc() else {
        return Refusal::Unavailable(
            "The broker cannot reach the login provider yet; try again in a moment.".into(),
        )
        .page("/");
    };
    let next = query
        .next
        .and_then(|n| local_next(&broker.options.public_url, &n))
        .unwrap_or_else(|| "/".into());
    let (url, pending) = oidc.start(&next);
    let jar = broker.cookies.store_login(jar, &pending);
    (jar, Redirect::to(url.as_str())).into_response()
}

/// `/auth/callback` query.
#[derive(Debug, Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

fn login_failed(broker: &Broker, status: StatusCode, text: &str) -> Response {
    broker.metrics.refused("login_failed");
    (
        status,
        Html(pages::message(
            None,
            "Login failed",
            text,
            Some(("/login", "Log in again")),
        )),
    )
        .into_response()
}

/// Finishes a login: checks state, trades the code (with the PKCE verifier), checks the ID
/// token, has the apiserver review it, and starts the session.
pub async fn callback(
    State(App(broker)): State<App>,
    jar: PrivateCookieJar,
    Query(query): Query<CallbackQuery>,
) -> Response {
    let (pending, jar) = broker.cookies.take_login(jar);
    if let Some(error) = query.error {
        // Whatever the query says, shown and logged only as printable text of bounded size:
        // anyone can send a browser here with any ?error=.
        let error = printable(&error, 64);
        let detail = printable(&query.error_description.unwrap_or_default(), 200);
        tracing::info!(%error, %detail, "the provider ended a login with an error");
        let text = format!("The login provider said: {error} {detail}");
        return (
            jar,
            login_failed(&broker, StatusCode::UNAUTHORIZED, text.trim()),
        )
            .into_response();
    }
    let Some(pending) = pending else {
        return (
            jar,
            login_failed(
                &broker,
                StatusCode::BAD_REQUEST,
                "This login has expired or was started in another browser; start again.",
            ),
        )
            .into_response();
    };
    let (Some(code), Some(state)) = (query.code, query.state) else {
        return (
            jar,
            login_failed(
                &broker,
                StatusCode::BAD_REQUEST,
                "The provider sent no code.",
            ),
        )
            .into_response();
    };
    if state != pending.state {
        return (
            jar,
            login_failed(
                &broker,
                StatusCode::BAD_REQUEST,
                "The login's state does not match; start again.",
            ),
        )
            .into_response();
    }
    let Some(oidc) = broker.oidc() else {
        return (
            jar,
            Refusal::Unavailable("The login provider is not reachable.".into()).page("/"),
        )
            .into_response();
    };
    let mut refresh = None;
    let checked = match oidc.exchange(&code, &pending).await {
        Ok(tokens) => {
            refresh = tokens.refresh;
            let token = tokens.id_token;
            broker
                .provider
                .check(&oidc, |oidc| oidc.verify(&token, &pending))
                .await
        }
        Err(e) => Err(e),
    };
    let id_token = match checked {
        Ok(token) => token,
        Err(e) => {
            tracing::info!(error = %e, "login failed at the code exchange or the ID token's check");
            return (
                jar,
                login_failed(&broker, StatusCode::UNAUTHORIZED, &e.to_string()),
            )
                .into_response();
        }
    };
    let identity = match broker.reviewer.review(&id_token).await {
        Ok(identity) => identity,
        Err(e) => {
            tracing::info!(error = %e, "the apiserver did not accept an ID token");
            let text = format!("Kubernetes does not accept this login: {e}");
            return (jar, login_failed(&broker, StatusCode::UNAUTHORIZED, &text)).into_response();
        }
    };
    let session = match broker.cookies.new_session(identity) {
        Ok(session) => session,
        Err(e) => {
            return (
                jar,
                Refusal::Unavailable(format!("No randomness: {e}")).page("/"),
            )
                .into_response();
        }
    };
    // Server-side: what ends it everywhere (logout, an administrator) is its Lease going. The
    // refresh token (sealed: the Lease is readable) lets the broker follow the user's groups.
    let lease = crate::identity::sessions::lease_name(&session.cookie.sid);
    let sealed = refresh.and_then(|token| broker.sealer.seal(token.as_bytes(), &lease).ok());
    if let Err(e) = broker
        .sessions
        .create(
            &session.cookie.sid,
            &session.identity,
            broker.cookies.ttl,
            sealed,
        )
        .await
    {
        tracing::warn!(error = %e, "cannot record a session");
        return (
            jar,
            Refusal::Unavailable(format!("The broker cannot start your session now: {e}"))
                .page("/"),
        )
            .into_response();
    }
    tracing::info!(user = %session.identity.user, groups = ?session.identity.groups, "logged in");
    broker.metrics.logins.inc();
    let jar = broker.cookies.store_session(jar, &session);
    // Checked again: the login cookie is the broker's own, but one check less is one place
    // less to get wrong.
    let next = local_next(&broker.options.public_url, &pending.next).unwrap_or_else(|| "/".into());
    (jar, Redirect::to(&next)).into_response()
}

/// `text` with anything but printable ASCII (RFC 6749's error and error_description
/// characters) dropped, at most `max` characters, `...` marking a cut.
fn printable(text: &str, max: usize) -> String {
    let clean: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect();
    if clean.chars().count() > max {
        clean.chars().take(max).collect::<String>() + "..."
    } else {
        clean
    }
}

/// A form's CSRF field.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF token.
    pub csrf: Option<String>,
}

/// Ends the session.
pub async fn logout(
    State(App(broker)): State<App>,
    headers: HeaderMap,
    jar: PrivateCookieJar,
    Form(form): Form<CsrfForm>,
) -> Response {
    let who = match changing_caller(&broker, &headers, &jar, form.csrf.as_deref()).await {
        Ok(who) => who,
        Err(refusal) => return refusal.page("/"),
    };
    // Ended everywhere: every replica's watch sees the Lease go and closes its viewers.
    if !who.is_bearer()
        && let Err(e) = broker.sessions.end(&who.sid).await
    {
        return Refusal::Unavailable(format!("The broker cannot end your session now: {e}"))
            .page("/");
    }
    tracing::info!(user = %who.identity.user, "logged out");
    let jar = broker.cookies.clear_session(jar);
    (
        jar,
        Html(pages::message(
            None,
            "You are logged out",
            "Your desktops keep running until their session limits end them.",
            Some(("/login", "Log in again")),
        )),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_providers_error_is_shown_as_bounded_printable_text() {
        assert_eq!(printable("access_denied", 64), "access_denied");
        assert_eq!(
            printable("bad\r\nSet-Cookie: x=1\u{202e}\u{0}", 64),
            "badSet-Cookie: x=1"
        );
        assert_eq!(printable(&"x".repeat(300), 10), "xxxxxxxxxx...");
    }
}
