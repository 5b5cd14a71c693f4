//! JSON Web Tokens signed with HS256 (RFC 7519, RFC 7515) and nothing else.
//!
//! The header must be exactly `{"alg":"HS256","typ":"JWT"}`: the algorithm
//! comes from the server, never from the token (`none`, `HS512` and every
//! other value are refused as `wrong_alg` before the signature is looked
//! at). Segments are base64url without padding, decoded strictly. The
//! signature is checked in constant time by `ring::hmac::verify`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};

/// The only header palisade issues or accepts.
pub const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;
/// The `iss` claim of every token.
pub const ISSUER: &str = "palisade";
/// Clock skew tolerated on `exp` and `iat`, in seconds (`auth.leeway_s`).
pub const LEEWAY_S: u64 = crate::config::DEFAULT_LEEWAY_S;
/// Smallest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;
/// Longest token looked at; anything longer is `malformed`.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Why a token was refused; the name is what the log shows.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwtError {
    /// Not three base64url segments of JSON, or a claim of the wrong type.
    Malformed,
    /// A header other than HS256/JWT.
    WrongAlg,
    /// The signature does not match.
    BadSignature,
    /// `exp` is in the past by more than the leeway.
    Expired,
    /// `iat` is in the future by more than the leeway.
    NotYetValid,
    /// A required claim (`sub`, `iat`, `exp`) is missing.
    MissingClaim,
    /// `iss` is not `palisade`.
    WrongIssuer,
}

impl JwtError {
    /// The reason as logged (`malformed`, `wrong_alg`, ...).
    pub const fn reason(self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            JwtError::WrongAlg => "wrong_alg",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::MissingClaim => "missing_claim",
            JwtError::WrongIssuer => "wrong_issuer",
        }
    }
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// The claims palisade puts in a token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user name.
    pub sub: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// Issuer: always `palisade`.
    pub iss: String,
}

#[derive(Deserialize)]
struct Header<'a> {
    alg: Option<&'a str>,
    typ: Option<&'a str>,
}

#[derive(Deserialize)]
struct RawClaims {
    sub: Option<String>,
    iat: Option<u64>,
    exp: Option<u64>,
    iss: Option<String>,
}

/// Signs and verifies tokens with one secret.
pub struct Signer {
    key: hmac::Key,
    leeway_s: u64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { key: [redacted] }")
    }
}

impl Signer {
    /// A signer for `secret`, which must be at least 32 bytes long.
    pub fn new(secret: &[u8]) -> Result<Signer, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the JWT secret must be at least {MIN_SECRET_BYTES} bytes (it has {})",
                secret.len()
            ));
        }
        Ok(Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            leeway_s: LEEWAY_S,
        })
    }

    /// A signer of random 32 bytes (tokens die with the process).
    pub fn random() -> Result<Signer, String> {
        use ring::rand::SecureRandom;
        let mut secret = [0u8; MIN_SECRET_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| "the system random number generator failed".to_owned())?;
        Signer::new(&secret)
    }

    /// Tolerates `leeway_s` seconds of clock skew instead of the default 30.
    pub fn with_leeway(mut self, leeway_s: u64) -> Signer {
        self.leeway_s = leeway_s;
        self
    }

    /// The clock skew tolerated, in seconds.
    pub fn leeway_s(&self) -> u64 {
        self.leeway_s
    }

    /// A token for `user`, valid from `now` for `ttl_s` seconds.
    pub fn issue(&self, user: &str, now: u64, ttl_s: u64) -> String {
        let claims = Claims {
            sub: user.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl_s),
            iss: ISSUER.to_owned(),
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialize");
        let mut token = URL_SAFE_NO_PAD.encode(HEADER);
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let tag = hmac::sign(&self.key, token.as_bytes());
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
        token
    }

    /// Verifies `token` at time `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header = URL_SAFE_NO_PAD.decode(h).map_err(|_| JwtError::Malformed)?;
        let parsed: Header<'_> =
            serde_json::from_slice(&header).map_err(|_| JwtError::Malformed)?;
        // The algorithm is ours to choose (RFC 8725 §3.1): anything else is refused.
        if parsed.alg != Some("HS256") {
            return Err(JwtError::WrongAlg);
        }
        if parsed.typ != Some("JWT") || header != HEADER.as_bytes() {
            return Err(JwtError::Malformed);
        }
        let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        let signed = &token[..h.len() + 1 + p.len()];
        hmac::verify(&self.key, signed.as_bytes(), &signature)
            .map_err(|_| JwtError::BadSignature)?;
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| JwtError::Malformed)?;
        let raw: RawClaims = serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)?;
        let (Some(sub), Some(iat), Some(exp), Some(iss)) = (raw.sub, raw.iat, raw.exp, raw.iss)
        else {
            return Err(JwtError::MissingClaim);
        };
        if iss != ISSUER {
            return Err(JwtError::WrongIssuer);
        }
        let claims = Claims { sub, iat, exp, iss };
        // Only the encoding this signer makes is accepted: no extra
        // claims, no other field order or spacing. A token that verifies
        // is then byte for byte one that `issue` produced.
        if serde_json::to_vec(&claims).ok().as_deref() != Some(payload.as_slice()) {
            return Err(JwtError::Malformed);
        }
        let Claims { sub, iat, exp, iss } = claims;
        if now > exp.saturating_add(self.leeway_s) {
            return Err(JwtError::Expired);
        }
        if iat > now.saturating_add(self.leeway_s) {
            return Err(JwtError::NotYetValid);
        }
        Ok(Claims { sub, iat, exp, iss })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: u64 = 1_800_000_000;

    fn signer() -> Signer {
        Signer::new(SECRET).unwrap()
    }

    /// A token with any header and payload, signed with `secret`.
    fn forge(header: &str, payload: &str, secret: &[u8]) -> String {
        let mut t = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), t.as_bytes());
        t.push('.');
        t.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
        t
    }

    fn claims(exp: Option<u64>) -> String {
        match exp {
            Some(e) => format!(r#"{{"sub":"alice","iat":{NOW},"exp":{e},"iss":"palisade"}}"#),
            None => format!(r#"{{"sub":"alice","iat":{NOW},"iss":"palisade"}}"#),
        }
    }

    #[test]
    fn a_valid_token_round_trips() {
        let t = signer().issue("alice", NOW, 3600);
        let c = signer().verify(&t, NOW + 10).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.iat, c.exp, c.iss.as_str()),
            ("alice", NOW, NOW + 3600, "palisade")
        );
        assert!(!t.contains('='), "no padding");
    }

    #[test]
    fn one_bit_of_signature_altered_is_bad_signature() {
        let t = signer().issue("alice", NOW, 3600);
        let (head, sig) = t.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[0] ^= 0x01;
        let altered = format!("{head}.{}", URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(signer().verify(&altered, NOW), Err(JwtError::BadSignature));
    }

    #[test]
    fn alg_none_with_an_empty_signature_is_wrong_alg() {
        let t = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims(Some(NOW + 60)))
        );
        assert_eq!(signer().verify(&t, NOW), Err(JwtError::WrongAlg));
    }

    #[test]
    fn alg_hs512_is_wrong_alg() {
        let t = forge(
            r#"{"alg":"HS512","typ":"JWT"}"#,
            &claims(Some(NOW + 60)),
            SECRET,
        );
        assert_eq!(signer().verify(&t, NOW), Err(JwtError::WrongAlg));
    }

    #[test]
    fn padding_is_malformed() {
        let t = signer().issue("alice", NOW, 3600);
        let padded: Vec<String> = t
            .split('.')
            .map(|seg| {
                let raw = URL_SAFE_NO_PAD.decode(seg).unwrap();
                base64::engine::general_purpose::URL_SAFE.encode(raw)
            })
            .collect();
        let padded = padded.join(".");
        assert!(
            padded.contains('='),
            "the re-encoding has padding: {padded}"
        );
        assert_eq!(signer().verify(&padded, NOW), Err(JwtError::Malformed));
    }

    #[test]
    fn expiry_beyond_and_within_the_leeway() {
        let t = forge(HEADER, &claims(Some(NOW - 31)), SECRET);
        assert_eq!(signer().verify(&t, NOW), Err(JwtError::Expired));
        let t = forge(HEADER, &claims(Some(NOW - 30)), SECRET);
        assert_eq!(signer().verify(&t, NOW).unwrap().exp, NOW - 30);
    }

    #[test]
    fn a_missing_exp_is_missing_claim() {
        let t = forge(HEADER, &claims(None), SECRET);
        assert_eq!(signer().verify(&t, NOW), Err(JwtError::MissingClaim));
    }

    #[test]
    fn another_secret_is_bad_signature() {
        let t = forge(
            HEADER,
            &claims(Some(NOW + 60)),
            b"another secret of at least 32 bytes!",
        );
        assert_eq!(signer().verify(&t, NOW), Err(JwtError::BadSignature));
    }

    #[test]
    fn only_the_canonical_payload_verifies() {
        // Correctly signed, but not as issue() writes it.
        let exp = NOW + 60;
        for payload in [
            format!(r#"{{"iat":{NOW},"sub":"alice","exp":{exp},"iss":"palisade"}}"#),
            format!(r#"{{"sub":"alice","iat":{NOW},"exp":{exp},"iss":"palisade","jti":"x"}}"#),
            format!(r#"{{"sub": "alice","iat":{NOW},"exp":{exp},"iss":"palisade"}}"#),
        ] {
            let t = forge(HEADER, &payload, SECRET);
            assert_eq!(
                signer().verify(&t, NOW),
                Err(JwtError::Malformed),
                "{payload}"
            );
        }
        let canonical = format!(r#"{{"sub":"alice","iat":{NOW},"exp":{exp},"iss":"palisade"}}"#);
        assert!(
            signer()
                .verify(&forge(HEADER, &canonical, SECRET), NOW)
                .is_ok()
        );
    }

    #[test]
    fn other_refusals() {
        assert_eq!(signer().verify("a.b", NOW), Err(JwtError::Malformed));
        assert_eq!(signer().verify("", NOW), Err(JwtError::Malformed));
        let spaced = forge(
            r#"{"alg":"HS256", "typ":"JWT"}"#,
            &claims(Some(NOW + 60)),
            SECRET,
        );
        assert_eq!(signer().verify(&spaced, NOW), Err(JwtError::Malformed));
        let iss = forge(
            HEADER,
            &format!(r#"{{"sub":"a","iat":{NOW},"exp":{},"iss":"x"}}"#, NOW + 9),
            SECRET,
        );
        assert_eq!(signer().verify(&iss, NOW), Err(JwtError::WrongIssuer));
        let future = forge(
            HEADER,
            &format!(
                r#"{{"sub":"a","iat":{},"exp":{},"iss":"palisade"}}"#,
                NOW + 31,
                NOW + 99
            ),
            SECRET,
        );
        assert_eq!(signer().verify(&future, NOW), Err(JwtError::NotYetValid));
        assert!(Signer::new(b"short").is_err());
        assert_eq!(format!("{:?}", signer()), "Signer { key: [redacted] }");
    }
}
