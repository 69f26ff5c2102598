//! The browser session: an encrypted, authenticated cookie (AES-256-GCM, axum-extra's
//! PrivateCookieJar) holding who the user is, until when, and the session's CSRF token. The
//! key comes from a Secret every replica reads, so any replica serves any session, and a
//! broker restart logs nobody out.

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
/// The cookie of a login in progress.
pub const LOGIN_COOKIE: &str = "verdant-login";
/// How long a login may take at the provider.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

/// A logged-in browser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Random id; connect tokens are bound to it.
    pub sid: String,
    /// Who, as the apiserver reviewed them at login.
    pub identity: Identity,
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
            sid: random(16)?,
            identity,
            exp: unix_now() + self.ttl.as_secs(),
            csrf: random(24)?,
        })
    }

    /// The session in `jar`, if there is one and it has not expired.
    pub fn session(self, jar: &PrivateCookieJar) -> Option<Session> {
        let cookie = jar.get(self.session_name())?;
        let session: Session = serde_json::from_str(cookie.value()).ok()?;
        (session.exp > unix_now()).then_some(session)
    }

    /// `jar` with `session` stored.
    pub fn store_session(self, jar: PrivateCookieJar, session: &Session) -> PrivateCookieJar {
        let value = serde_json::to_string(session).unwrap_or_default();
        let left = Duration::from_secs(session.exp.saturating_sub(unix_now()));
        jar.add(self.cookie(self.session_name(), value, left))
    }

    /// `jar` without a session (logout).
    pub fn clear_session(self, jar: PrivateCookieJar) -> PrivateCookieJar {
        jar.remove(self.cookie(self.session_name(), String::new(), Duration::ZERO))
    }

    /// `jar` with a login in progress stored.
    pub fn store_login(self, jar: PrivateCookieJar, pending: &Pending) -> PrivateCookieJar {
        let value = serde_json::to_string(pending).unwrap_or_default();
        jar.add(self.cookie(LOGIN_COOKIE, value, LOGIN_TTL))
    }

    /// The login in progress in `jar`, and `jar` without it.
    pub fn take_login(self, jar: PrivateCookieJar) -> (Option<Pending>, PrivateCookieJar) {
        let pending = jar
            .get(LOGIN_COOKIE)
            .and_then(|c| serde_json::from_str(c.value()).ok());
        let jar = jar.remove(self.cookie(LOGIN_COOKIE, String::new(), Duration::ZERO));
        (pending, jar)
    }
}

fn cookie_duration(d: Duration) -> cookie::time::Duration {
    cookie::time::Duration::seconds(d.as_secs().min(i64::MAX as u64) as i64)
}

/// Whether `next` is a safe place to send a browser after login: a local absolute path,
/// not `//host` or a scheme.
pub fn local_path(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.contains(['\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_login() {
        assert!(local_path("/"));
        assert!(local_path("/desktops/team-a/d1"));
        for bad in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "",
            "x",
            "/a\r\nb",
        ] {
            assert!(!local_path(bad), "{bad}");
        }
    }
}
