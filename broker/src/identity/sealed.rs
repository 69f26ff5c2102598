//! What the broker keeps in objects others can read, sealed: a session's refresh token lives
//! in the session's Lease, which whoever reads Leases in the broker's namespace sees. AES-256-GCM
//! (`ring`, which the broker already uses for its keys and digests) under a key derived from
//! the session key every replica shares, with the Lease's name as associated data, so a sealed
//! token copied into another session's Lease does not open.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Seals and opens with one key.
pub struct Sealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl Sealer {
    /// A sealer whose key is derived from the session key `secret` (its own derivation, apart
    /// from the cookies' and the connect tokens').
    pub fn new(secret: &[u8]) -> Self {
        let derive = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let key = ring::hmac::sign(&derive, b"verdant-broker sealed v1");
        let key = UnboundKey::new(&AES_256_GCM, key.as_ref())
            .expect("HMAC-SHA256 gives the 32 bytes AES-256 takes");
        Self {
            key: LessSafeKey::new(key),
            random: SystemRandom::new(),
        }
    }

    /// `plain`, sealed for the object named `bound_to`: base64url of a random nonce, the
    /// ciphertext and the tag.
    pub fn seal(&self, plain: &[u8], bound_to: &str) -> Result<String, ring::error::Unspecified> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce)?;
        let mut sealed = plain.to_vec();
        self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(bound_to.as_bytes()),
            &mut sealed,
        )?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// What [`Sealer::seal`] sealed for `bound_to`; `None` if it was not sealed with this key
    /// for that object, or was changed.
    pub fn open(&self, sealed: &str, bound_to: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(bound_to.as_bytes()), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_with_its_key_for_its_object() {
        let sealer = Sealer::new(&[7u8; 64]);
        let sealed = sealer.seal(b"refresh-token", "verdant-session-a").unwrap();
        assert!(!sealed.contains("refresh"));
        assert_eq!(
            sealer.open(&sealed, "verdant-session-a").as_deref(),
            Some(&b"refresh-token"[..])
        );
        assert_eq!(
            sealer.open(&sealed, "verdant-session-b"),
            None,
            "another object"
        );
        assert_eq!(
            Sealer::new(&[8u8; 64]).open(&sealed, "verdant-session-a"),
            None
        );
        let mut changed = sealed.into_bytes();
        let last = changed.len() - 2;
        changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).unwrap();
        assert_eq!(sealer.open(&changed, "verdant-session-a"), None, "changed");
        assert_eq!(sealer.open("", "verdant-session-a"), None);
        assert_eq!(sealer.open("!!", "verdant-session-a"), None);
    }
}
