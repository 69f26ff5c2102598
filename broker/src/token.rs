//! One-time connect tokens: what a desktop page trades for its WebSocket.
//!
//! A token names the browser session and the desktop it was issued for, whether the viewer
//! may only watch, and when it expires (seconds after issue). It is MAC'd with a key derived
//! from the session key every replica shares, so any replica can check it. A token works once
//! across every replica: each remembers the tokens it redeemed (a cheap first check), and the
//! session's Lease records each redemption for all of them
//! ([`crate::identity::sessions::Sessions::redeem_once`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// How long a connect token is good for.
pub const TOKEN_TTL: Duration = Duration::from_secs(30);

/// What a connect token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The browser session it was issued to.
    pub sid: String,
    /// The desktop's namespace.
    pub namespace: String,
    /// The desktop's name.
    pub name: String,
    /// Watch only: input from this viewer is dropped (helpdesk shadowing).
    pub view_only: bool,
    /// Expiry, Unix milliseconds.
    pub exp: u64,
    /// Random id, for one-time use.
    pub jti: String,
}

/// Why a token was refused. Callers answer every one the same way, so a token tells a prober
/// nothing; the variant is for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token at all.
    #[error("malformed")]
    Malformed,
    /// The MAC does not match: forged or altered.
    #[error("forged")]
    Forged,
    /// Past its expiry.
    #[error("expired")]
    Expired,
    /// Used before.
    #[error("replayed")]
    Replayed,
    /// Issued to another browser session.
    #[error("other session")]
    OtherSession,
    /// Issued for another desktop.
    #[error("other desktop")]
    OtherDesktop,
}

impl TokenError {
    /// A label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "token_malformed",
            Self::Forged => "token_forged",
            Self::Expired => "token_expired",
            Self::Replayed => "token_replayed",
            Self::OtherSession => "token_other_session",
            Self::OtherDesktop => "token_other_desktop",
        }
    }
}

/// Issues and redeems connect tokens.
pub struct ConnectTokens {
    key: hmac::Key,
    /// Redeemed token ids and their expiry (ms), kept until then.
    used: Mutex<HashMap<String, u64>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ConnectTokens {
    /// Tokens MAC'd with a key derived from `secret` (the shared session key).
    pub fn new(secret: &[u8]) -> Self {
        let derive = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let key = hmac::sign(&derive, b"verdant-broker connect-token v1");
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key.as_ref()),
            used: Mutex::new(HashMap::new()),
        }
    }

    /// A token for session `sid` to open desktop `namespace`/`name`.
    pub fn issue(
        &self,
        sid: &str,
        namespace: &str,
        name: &str,
        view_only: bool,
    ) -> Result<String, getrandom::Error> {
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti)?;
        let grant = Grant {
            sid: sid.into(),
            namespace: namespace.into(),
            name: name.into(),
            view_only,
            exp: now_ms() + TOKEN_TTL.as_millis() as u64,
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        Ok(self.seal(&grant))
    }

    fn seal(&self, grant: &Grant) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(grant).unwrap_or_default());
        let tag = hmac::sign(&self.key, body.as_bytes());
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    /// Checks `token` for session `sid` and desktop `namespace`/`name` and uses it up.
    pub fn redeem(
        &self,
        token: &str,
        sid: &str,
        namespace: &str,
        name: &str,
    ) -> Result<Grant, TokenError> {
        let (body, tag) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.key, body.as_bytes(), &tag).map_err(|_| TokenError::Forged)?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TokenError::Malformed)?;
        let grant: Grant = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        let now = now_ms();
        if grant.exp <= now {
            return Err(TokenError::Expired);
        }
        if grant.sid != sid {
            return Err(TokenError::OtherSession);
        }
        if grant.namespace != namespace || grant.name != name {
            return Err(TokenError::OtherDesktop);
        }
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.retain(|_, exp| *exp > now);
        if used.insert(grant.jti.clone(), grant.exp).is_some() {
            return Err(TokenError::Replayed);
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_its_desktop_once_for_its_session() {
        let tokens = ConnectTokens::new(b"k".repeat(64).as_slice());
        let t = tokens.issue("s1", "team-a", "d1", false).unwrap();
        assert_eq!(
            tokens.redeem(&t, "s2", "team-a", "d1"),
            Err(TokenError::OtherSession)
        );
        assert_eq!(
            tokens.redeem(&t, "s1", "team-a", "d2"),
            Err(TokenError::OtherDesktop)
        );
        let grant = tokens.redeem(&t, "s1", "team-a", "d1").unwrap();
        assert!(!grant.view_only);
        assert_eq!(
            tokens.redeem(&t, "s1", "team-a", "d1"),
            Err(TokenError::Replayed)
        );
    }

    #[test]
    fn forged_expired_and_garbage_tokens_are_refused() {
        let tokens = ConnectTokens::new(b"k".repeat(64).as_slice());
        let other = ConnectTokens::new(b"x".repeat(64).as_slice());
        let t = other.issue("s1", "ns", "d", false).unwrap();
        assert_eq!(tokens.redeem(&t, "s1", "ns", "d"), Err(TokenError::Forged));
        // A token whose body was changed to view_only=false keeps the old MAC.
        let t = tokens.issue("s1", "ns", "d", true).unwrap();
        let (body, tag) = t.split_once('.').unwrap();
        let mut grant: Grant =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        grant.view_only = false;
        let altered = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&grant).unwrap())
        );
        assert_eq!(
            tokens.redeem(&altered, "s1", "ns", "d"),
            Err(TokenError::Forged)
        );
        let mut old = grant.clone();
        old.exp = now_ms() - 1;
        let expired = tokens.seal(&old);
        assert_eq!(
            tokens.redeem(&expired, "s1", "ns", "d"),
            Err(TokenError::Expired)
        );
        for garbage in ["", ".", "abc", "a.b", "%%%.%%%"] {
            assert!(
                tokens.redeem(garbage, "s1", "ns", "d").is_err(),
                "{garbage}"
            );
        }
    }
}
