//! VNC authentication (RFB 3.8, section 7.2.2): the server sends 16 random bytes, the client
//! returns them DES-encrypted with the password (its first 8 bytes, NUL-padded, each byte's
//! bits reversed: a historical quirk every VNC client shares).

use des::Des;
use des::cipher::{BlockCipherEncrypt, KeyInit};

/// The length of a VNC authentication challenge.
pub const CHALLENGE_LEN: usize = 16;

fn vnc_key(password: &[u8]) -> [u8; 8] {
    let mut key = [0u8; 8];
    for (k, &p) in key.iter_mut().zip(password) {
        *k = p.reverse_bits();
    }
    key
}

fn encrypt(key: [u8; 8], data: &[u8]) -> Vec<u8> {
    // 8 bytes is always a valid DES key length.
    let Ok(cipher) = Des::new_from_slice(&key) else {
        return Vec::new();
    };
    data.chunks(8)
        .flat_map(|chunk| {
            let mut block = [0u8; 8];
            block[..chunk.len()].copy_from_slice(chunk);
            let mut array = block.into();
            cipher.encrypt_block(&mut array);
            let out: [u8; 8] = array.into();
            out
        })
        .collect()
}

/// The response a client with `password` gives to `challenge`.
pub fn response(password: &[u8], challenge: &[u8; CHALLENGE_LEN]) -> [u8; CHALLENGE_LEN] {
    let mut out = [0u8; CHALLENGE_LEN];
    out.copy_from_slice(&encrypt(vnc_key(password), challenge));
    out
}

/// Whether `answer` is the right response; compares in constant time.
pub fn verify(
    password: &[u8],
    challenge: &[u8; CHALLENGE_LEN],
    answer: &[u8; CHALLENGE_LEN],
) -> bool {
    let expected = response(password, challenge);
    expected
        .iter()
        .zip(answer)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// A fresh random challenge.
pub fn challenge() -> Result<[u8; CHALLENGE_LEN], getrandom::Error> {
    let mut c = [0u8; CHALLENGE_LEN];
    getrandom::fill(&mut c)?;
    Ok(c)
}

/// The 8-byte obfuscated password file that `vncpasswd` writes and VNC clients read
/// (`-passwd FILE`): the password DES-encrypted with a fixed, public key.
pub fn obfuscated_password_file(password: &[u8]) -> [u8; 8] {
    const FIXED_KEY: [u8; 8] = [23, 82, 107, 6, 35, 78, 88, 7];
    let mut block = [0u8; 8];
    for (b, &p) in block.iter_mut().zip(password) {
        *b = p;
    }
    let mut out = [0u8; 8];
    out.copy_from_slice(&encrypt(vnc_key(&FIXED_KEY), &block));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_right_password_verifies_and_others_do_not() {
        let challenge = [7u8; 16];
        let answer = response(b"s3cret", &challenge);
        assert!(verify(b"s3cret", &challenge, &answer));
        assert!(!verify(b"s3cre", &challenge, &answer));
        // Only the first 8 bytes count, as in every VNC implementation.
        assert!(verify(
            b"s3cret",
            &challenge,
            &response(b"s3cret\0\0", &challenge)
        ));
        assert_eq!(
            response(b"abcdefgh", &challenge),
            response(b"abcdefghXYZ", &challenge)
        );
    }

    #[test]
    fn des_matches_the_standard_test_vector() {
        // FIPS 81 / Stallings: key 133457799BBCDFF1, plaintext 0123456789ABCDEF.
        let key = [0x13, 0x34, 0x57, 0x79, 0x9b, 0xbc, 0xdf, 0xf1];
        let out = encrypt(key, &[0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(out, [0x85, 0xe8, 0x13, 0x54, 0x0f, 0x0a, 0xb4, 0x05]);
    }

    #[test]
    fn challenges_are_random() {
        assert_ne!(challenge().unwrap(), challenge().unwrap());
    }
}
