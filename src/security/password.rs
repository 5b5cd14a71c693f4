//! Password hashes in PHC string format with PBKDF2-HMAC-SHA256 (`ring`).
//!
//! `$pbkdf2-sha256$i=600000$<salt>$<hash>`: salt and hash in standard
//! base64 without padding, a 16-byte random salt, a 32-byte hash. 600,000
//! iterations is OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
//! Hashing is deliberately slow: the server runs it off the event loop.

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

/// Default iteration count.
pub const DEFAULT_ITERATIONS: u32 = 600_000;
/// Fewest iterations a stored hash may use.
pub const MIN_ITERATIONS: u32 = 10_000;
/// Most iterations a stored hash may use (bounds the cost of one login).
pub const MAX_ITERATIONS: u32 = 10_000_000;
const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;
const PREFIX: &str = "$pbkdf2-sha256$i=";

/// A parsed PHC hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: [u8; HASH_BYTES],
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(
        password: &[u8],
        iterations: u32,
        rng: &dyn SecureRandom,
    ) -> Result<PasswordHash, String> {
        let iterations = check_iterations(iterations)?;
        let mut salt = vec![0u8; SALT_BYTES];
        rng.fill(&mut salt)
            .map_err(|_| "the system random number generator failed".to_owned())?;
        let mut hash = [0u8; HASH_BYTES];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            password,
            &mut hash,
        );
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Hashes with the system's random number generator.
    pub fn generate(password: &[u8], iterations: u32) -> Result<PasswordHash, String> {
        PasswordHash::new(password, iterations, &SystemRandom::new())
    }

    /// Parses `$pbkdf2-sha256$i=N$salt$hash`; the error says which field is wrong.
    pub fn parse(phc: &str) -> Result<PasswordHash, String> {
        let rest = phc
            .strip_prefix(PREFIX)
            .ok_or("must start with $pbkdf2-sha256$i=")?;
        let mut parts = rest.split('$');
        let (Some(i), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("must be $pbkdf2-sha256$i=N$SALT$HASH".into());
        };
        let iterations: u32 = i
            .parse()
            .map_err(|_| format!("iterations {i:?} is not a number"))?;
        let iterations = check_iterations(iterations)?;
        let salt = STANDARD_NO_PAD
            .decode(salt)
            .map_err(|_| "salt is not base64 without padding".to_owned())?;
        if salt.len() < SALT_BYTES {
            return Err(format!("salt must be at least {SALT_BYTES} bytes"));
        }
        let raw = STANDARD_NO_PAD
            .decode(hash)
            .map_err(|_| "hash is not base64 without padding".to_owned())?;
        let hash: [u8; HASH_BYTES] = raw
            .try_into()
            .map_err(|_| format!("hash must be {HASH_BYTES} bytes"))?;
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` matches, compared in constant time by `ring`.
    pub fn verify(&self, password: &[u8]) -> bool {
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            password,
            &self.hash,
        )
        .is_ok()
    }

    /// A hash no password matches, costing as much to check as a real one
    /// of `iterations`: logins for unknown users verify against it so that
    /// they take as long as a wrong password.
    pub fn dummy(iterations: u32) -> Result<PasswordHash, String> {
        let iterations = check_iterations(iterations)?;
        let rng = SystemRandom::new();
        let mut salt = vec![0u8; SALT_BYTES];
        let mut hash = [0u8; HASH_BYTES];
        rng.fill(&mut salt)
            .and_then(|()| rng.fill(&mut hash))
            .map_err(|_| "the system random number generator failed".to_owned())?;
        Ok(PasswordHash {
            iterations,
            salt,
            hash,
        })
    }

    /// The iteration count.
    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }

    /// The PHC string.
    pub fn to_phc(&self) -> String {
        format!(
            "{PREFIX}{}${}${}",
            self.iterations,
            STANDARD_NO_PAD.encode(&self.salt),
            STANDARD_NO_PAD.encode(self.hash)
        )
    }
}

fn check_iterations(i: u32) -> Result<NonZeroU32, String> {
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&i) {
        return Err(format!(
            "iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS} (got {i})"
        ));
    }
    NonZeroU32::new(i).ok_or_else(|| "iterations must not be 0".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_and_round_trip() {
        let h = PasswordHash::generate(b"correct horse", MIN_ITERATIONS).unwrap();
        assert!(h.verify(b"correct horse"));
        assert!(!h.verify(b"correct hors"));
        let phc = h.to_phc();
        assert!(phc.starts_with("$pbkdf2-sha256$i=10000$"), "{phc}");
        let (_, encoded) = phc.rsplit_once("$i=10000$").unwrap();
        assert!(!encoded.contains('='), "base64 without padding: {encoded}");
        assert_eq!(PasswordHash::parse(&phc).unwrap(), h);
        let other = PasswordHash::generate(b"correct horse", MIN_ITERATIONS).unwrap();
        assert_ne!(other.to_phc(), phc, "a fresh salt every time");
    }

    #[test]
    fn rfc_7914_style_vector() {
        // PBKDF2-HMAC-SHA256("passwd", "salt", 1 iteration) from RFC 7914 §11,
        // checked through ring directly (1 iteration is below our minimum).
        let mut out = [0u8; 64];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(1).unwrap(),
            b"salt",
            b"passwd",
            &mut out,
        );
        assert_eq!(&out[..8], &[0x55, 0xac, 0x04, 0x6e, 0x56, 0xe3, 0x08, 0x9f]);
    }

    #[test]
    fn parse_names_the_wrong_field() {
        let good = PasswordHash::generate(b"x", MIN_ITERATIONS)
            .unwrap()
            .to_phc();
        let cases = [
            ("$argon2id$v=19$...", "must start with"),
            (
                "$pbkdf2-sha256$i=abc$c2FsdHNhbHRzYWx0c2FsdA$x",
                "iterations",
            ),
            ("$pbkdf2-sha256$i=5$c2FsdHNhbHRzYWx0c2FsdA$x", "between"),
            (
                "$pbkdf2-sha256$i=10000$c2FsdA$x",
                "salt must be at least 16",
            ),
            ("$pbkdf2-sha256$i=10000$!!!$x", "salt is not base64"),
        ];
        for (phc, needle) in cases {
            let e = PasswordHash::parse(phc).unwrap_err();
            assert!(e.contains(needle), "{phc}: {e}");
        }
        let truncated = &good[..good.len() - 4];
        assert!(PasswordHash::parse(truncated).unwrap_err().contains("hash"));
    }
}
