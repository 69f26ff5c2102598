//! The browser session: an encrypted, authenticated cookie (AES-256-GCM, axum-extra's
//! PrivateCookieJar) holding the session's id, until when, and its CSRF token. Who the user
//! is lives server-side ([`super::sessions`]), so a session can be ended everywhere and the
//! cookie stays small however many groups the user has. The key comes from a Secret every
//! replica reads, so any replica serves any session, and a broker restart logs nobody out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum_extra::extract::cookie::{Cookie, PrivateCookieJar, SameSite};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::oidc::Pending;
use super::review::Identity;

/// The session cookie over HTTPS (the `__Host-` prefix pins it to this host and path `/`).
pub const SESSION_COOKIE_SECURE: &str = "__Host-verdant-session";
/// The session cookie over plain HTTP (local development only).
pub const SESSION_COOKIE_PLAIN: &str = "verdant-session";
/// The cookie of a login in progress over HTTPS (`__Host-`: this host, path `/`, Secure).
pub const LOGIN_COOKIE_SECURE: &str = "__Host-verdant-login";
/// The cookie of a login in progress over plain HTTP (local development only).
pub const LOGIN_COOKIE_PLAIN: &str = "verdant-login";
/// How long a login may take at the provider.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// What its cookie holds.
    pub cookie: SessionCookie,
    /// Who, as the apiserver reviewed them at login (kept server-side).
    pub identity: Identity,
}

/// What a session's cookie holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCookie {
    /// Random id; connect tokens are bound to it, and it names the server-side session.
    pub sid: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
    /// The token forms and scripts send back on every state-changing request.
    pub csrf: String,
}

/// A random URL-safe string of `bytes` random bytes.
pub fn random(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Cookie settings: names and whether they are Secure.
#[derive(Debug, Clone, Copy)]
pub struct Cookies {
    /// Served over HTTPS: Secure cookies with the `__Host-` prefix.
    pub secure: bool,
    /// Session lifetime.
    pub ttl: Duration,
}

impl Cookies {
    fn login_name(self) -> &'static str {
        if self.secure {
            LOGIN_COOKIE_SECURE
        } else {
            LOGIN_COOKIE_PLAIN
        }
    }

    fn session_name(self) -> &'static str {
        if self.secure {
            SESSION_COOKIE_SECURE
        } else {
            SESSION_COOKIE_PLAIN
        }
    }

    fn cookie(self, name: &'static str, value: String, max_age: Duration) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(cookie_duration(max_age))
            .build()
    }

    /// A new session for `identity`.
    pub fn new_session(self, identity: Identity) -> Result<Session, getrandom::Error> {
        Ok(Session {
            cookie: SessionCookie {
                sid: random(16)?,
                exp: unix_now() + self.ttl.as_secs(),
                csrf: random(24)?,
            },
            identity,
        })
    }

    /// The session cookie in `jar`, if there is one and it has not expired.
    pub fn session(self, jar: &PrivateCookieJar) -> Option<SessionCookie> {
        let cookie = jar.get(self.session_name())?;
        let session: SessionCookie = serde_json::from_str(cookie.value()).ok()?;
        (session.exp > unix_now()).then_some(session)
    }

    /// `jar` with `session`'s cookie stored.
    pub fn store_session(self, jar: PrivateCookieJar, session: &Session) -> PrivateCookieJar {
        let value = serde_json::to_string(&session.cookie).unwrap_or_default();
        let left = Duration::from_secs(session.cookie.exp.saturating_sub(unix_now()));
        jar.add(self.cookie(self.session_name(), value, left))
    }

    /// `jar` without a session (logout).
    pub fn clear_session(self, jar: PrivateCookieJar) -> PrivateCookieJar {
        jar.remove(self.cookie(self.session_name(), String::new(), Duration::ZERO))
    }

    /// `jar` with a login in progress stored.
    pub fn store_login(self, jar: PrivateCookieJar, pending: &Pending) -> PrivateCookieJar {
        let value = serde_json::to_string(pending).unwrap_or_default();
        jar.add(self.cookie(self.login_name(), value, LOGIN_TTL))
    }

    /// The login in progress in `jar`, and `jar` without it.
    pub fn take_login(self, jar: PrivateCookieJar) -> (Option<Pending>, PrivateCookieJar) {
        let pending = jar
            .get(self.login_name())
            .and_then(|c| serde_json::from_str(c.value()).ok());
        let jar = jar.remove(self.cookie(self.login_name(), String::new(), Duration::ZERO));
        (pending, jar)
    }
}

fn cookie_duration(d: Duration) -> cookie::time::Duration {
    cookie::time::Duration::seconds(d.as_secs().min(i64::MAX as u64) as i64)
}

/// Where to send a browser after login, when `next` is a safe place: a path on the broker's
/// own origin (`public`), returned as that origin's browsers will read it (normalised and
/// percent-encoded, so no browser can read it as another host). `None` for anything else:
/// a scheme or `//host`, and anything with a backslash or a control character, which
/// browsers drop or turn into `/` (`/\t/evil.example` is `//evil.example` to them).
pub fn local_next(public: &url::Url, next: &str) -> Option<String> {
    if !next.starts_with('/') || next.contains('\\') || next.chars().any(char::is_control) {
        return None;
    }
    let origin = public.origin();
    let resolved = origin.ascii_serialization() + next;
    let url = url::Url::parse(&resolved).ok()?;
    // Still this origin, and a path that is not scheme-relative once normalised.
    if url.origin() != origin || url.path().starts_with("//") {
        return None;
    }
    Some(url[url::Position::BeforePath..].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_origin_are_followed_after_login() {
        let public = url::Url::parse("https://vdi.example.com/").unwrap();
        let next = |n: &str| local_next(&public, n);
        assert_eq!(next("/").as_deref(), Some("/"));
        assert_eq!(
            next("/desktops/team-a/d1?x=1#f").as_deref(),
            Some("/desktops/team-a/d1?x=1#f")
        );
        // Same origin, but spelled so that no browser could read another host into it.
        assert_eq!(next("/@evil.example").as_deref(), Some("/@evil.example"));
        assert_eq!(
            next("/\u{2215}\u{2215}evil.example").as_deref(),
            Some("/%E2%88%95%E2%88%95evil.example")
        );
        assert_eq!(
            next("/%2f%2fevil.example").as_deref(),
            Some("/%2f%2fevil.example")
        );
        for bad in [
            "//evil.example/",
            "///evil.example/",
            "https://evil.example/",
            "http:evil.example",
            "/\\evil.example",
            "\\/evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\u{0}/evil.example",
            "\t//evil.example",
            "",
            "x",
            "evil.example",
            "/a/../..//evil.example",
        ] {
            assert_eq!(next(bad), None, "{bad:?}");
        }
    }
}
