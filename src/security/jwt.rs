//! JSON Web Tokens signed with HS256 (RFC 7519, RFC 7515) and nothing else.
//!
//! The header must be exactly `{"alg":"HS256","typ":"JWT"}`: the algorithm
//! comes from the server, never from the token (`none`, `HS512` and every
//! other value are refused as `wrong_alg` before the signature is looked
//! at). Segments are base64url without padding, decoded strictly. The
//! signature is checked in constant time by `ring::hmac::verify`.
//!
//! Every token names itself and the password it was issued for (SPEC.md
//! §5): `jti` is 128 random bits (what `POST /logout` revokes), and `fp` is
//! a keyed fingerprint of the user's stored password hash, so a changed or
//! removed password refuses every older token with no table at all. The
//! fingerprint is an HMAC under a key derived from the signing secret: the
//! token shows nothing about the hash to its holder.

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
/// Bytes of a token id (`jti`), random.
pub const JTI_BYTES: usize = 16;
/// Bytes of a password fingerprint (`fp`): 96 bits of an HMAC-SHA256.
pub const FINGERPRINT_BYTES: usize = 12;
/// What the fingerprint key is derived with (HMAC of the signing secret).
const FINGERPRINT_LABEL: &[u8] = b"palisade password fingerprint v1";

/// A token id: the 16 bytes of a `jti`.
pub type TokenId = [u8; JTI_BYTES];

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
    /// Less than a second of validity left: refused rather than accepted
    /// and closed at once (logged as `expired` too).
    ExpiresNow,
}

impl JwtError {
    /// The reason as logged (`malformed`, `wrong_alg`, ...).
    pub const fn reason(self) -> &'static str {
        match self {
            JwtError::Malformed => "malformed",
            JwtError::WrongAlg => "wrong_alg",
            JwtError::BadSignature => "bad_signature",
            JwtError::Expired | JwtError::ExpiresNow => "expired",
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
    /// The token's id: 16 random bytes, base64url.
    pub jti: String,
    /// The fingerprint of the password hash it was issued for
    /// ([`Signer::fingerprint`]).
    pub fp: String,
}

impl Claims {
    /// The token id as bytes (checked by [`Signer::verify`]).
    pub fn id(&self) -> TokenId {
        let mut id = [0u8; JTI_BYTES];
        if let Ok(raw) = URL_SAFE_NO_PAD.decode(&self.jti) {
            if raw.len() == JTI_BYTES {
                id.copy_from_slice(&raw);
            }
        }
        id
    }
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
    jti: Option<String>,
    fp: Option<String>,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct Signer {
    key: hmac::Key,
    /// Derived from the secret: keys the password fingerprints.
    fp_key: hmac::Key,
    leeway_s: u64,
    rng: ring::rand::SystemRandom,
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
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derived = hmac::sign(&key, FINGERPRINT_LABEL);
        Ok(Signer {
            fp_key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            key,
            leeway_s: LEEWAY_S,
            rng: ring::rand::SystemRandom::new(),
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

    /// The fingerprint of a stored password hash (its PHC string), as the
    /// `fp` claim carries it: 96 bits of an HMAC keyed by this signer.
    pub fn fingerprint(&self, password_hash: &str) -> String {
        let tag = hmac::sign(&self.fp_key, password_hash.as_bytes());
        URL_SAFE_NO_PAD.encode(&tag.as_ref()[..FINGERPRINT_BYTES])
    }

    /// A token for `user` whose password hash has `fingerprint`, valid from
    /// `now` for `ttl_s` seconds, with a fresh random id.
    pub fn issue(&self, user: &str, fingerprint: &str, now: u64, ttl_s: u64) -> String {
        use ring::rand::SecureRandom;
        let mut id = [0u8; JTI_BYTES];
        // The system generator does not fail on the systems this runs on;
        // if it did, an all-zero id would still be a valid, revocable token.
        let _ = self.rng.fill(&mut id);
        self.sign(&Claims {
            sub: user.to_owned(),
            iat: now,
            exp: now.saturating_add(ttl_s),
            iss: ISSUER.to_owned(),
            jti: URL_SAFE_NO_PAD.encode(id),
            fp: fingerprint.to_owned(),
        })
    }

    /// The signed token for `claims`, exactly as `verify` wants it.
    pub fn sign(&self, claims: &Claims) -> String {
        let payload = serde_json::to_vec(claims).expect("claims serialize");
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
        let (Some(sub), Some(iat), Some(exp), Some(iss), Some(jti), Some(fp)) =
            (raw.sub, raw.iat, raw.exp, raw.iss, raw.jti, raw.fp)
        else {
            return Err(JwtError::MissingClaim);
        };
        if iss != ISSUER {
            return Err(JwtError::WrongIssuer);
        }
        if !is_b64_of(&jti, JTI_BYTES) || !is_b64_of(&fp, FINGERPRINT_BYTES) {
            return Err(JwtError::Malformed);
        }
        let claims = Claims {
            sub,
            iat,
            exp,
            iss,
            jti,
            fp,
        };
        // Only the encoding this signer makes is accepted: no extra
        // claims, no other field order or spacing. A token that verifies
        // is then byte for byte one that `issue` produced.
        if serde_json::to_vec(&claims).ok().as_deref() != Some(payload.as_slice()) {
            return Err(JwtError::Malformed);
        }
        let end = claims.exp.saturating_add(self.leeway_s);
        if now > end {
            return Err(JwtError::Expired);
        }
        // `now` is whole seconds: with the end at most one second later,
        // less than a second is left.
        if end <= now.saturating_add(1) {
            return Err(JwtError::ExpiresNow);
        }
        if claims.iat > now.saturating_add(self.leeway_s) {
            return Err(JwtError::NotYetValid);
        }
        Ok(claims)
    }
}

/// Whether `s` is the unpadded base64url of exactly `n` bytes.
fn is_b64_of(s: &str, n: usize) -> bool {
    s.len() == (n * 4).div_ceil(3) && URL_SAFE_NO_PAD.decode(s).is_ok_and(|raw| raw.len() == n)
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

    /// A token id and a fingerprint of the right shapes.
    const JTI: &str = "AAAAAAAAAAAAAAAAAAAAAA";
    const FP: &str = "AAAAAAAAAAAAAAAA";

    fn claims(exp: Option<u64>) -> String {
        match exp {
            Some(e) => format!(
                r#"{{"sub":"alice","iat":{NOW},"exp":{e},"iss":"palisade","jti":"{JTI}","fp":"{FP}"}}"#
            ),
            None => {
                format!(
                    r#"{{"sub":"alice","iat":{NOW},"iss":"palisade","jti":"{JTI}","fp":"{FP}"}}"#
                )
            }
        }
    }

    #[test]
    fn a_valid_token_round_trips() {
        let fp = signer().fingerprint("$pbkdf2-sha256$i=1$AAAA$BBBB");
        let t = signer().issue("alice", &fp, NOW, 3600);
        let c = signer().verify(&t, NOW + 10).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.iat, c.exp, c.iss.as_str(), c.fp.as_str()),
            ("alice", NOW, NOW + 3600, "palisade", fp.as_str())
        );
        assert_eq!(c.jti.len(), 22);
        assert!(!t.contains('='), "no padding");
        // Every token has its own id.
        let again = signer()
            .verify(&signer().issue("alice", &fp, NOW, 3600), NOW)
            .unwrap();
        assert_ne!(again.id(), c.id());
    }

    #[test]
    fn fingerprints_depend_on_the_hash_and_the_secret() {
        let a = signer().fingerprint("$pbkdf2-sha256$i=1$AAAA$BBBB");
        assert_eq!(a.len(), 16);
        assert_eq!(a, signer().fingerprint("$pbkdf2-sha256$i=1$AAAA$BBBB"));
        assert_ne!(a, signer().fingerprint("$pbkdf2-sha256$i=1$AAAA$BBBC"));
        let other = Signer::new(b"another secret of at least 32 bytes!").unwrap();
        assert_ne!(a, other.fingerprint("$pbkdf2-sha256$i=1$AAAA$BBBB"));
    }

    #[test]
    fn less_than_a_second_left_is_expired() {
        let s = signer().with_leeway(0);
        let t = s.issue("alice", FP, NOW, 1);
        assert_eq!(s.verify(&t, NOW), Err(JwtError::ExpiresNow));
        assert_eq!(JwtError::ExpiresNow.reason(), "expired");
        let t = s.issue("alice", FP, NOW, 2);
        assert!(s.verify(&t, NOW).is_ok());
        assert_eq!(s.verify(&t, NOW + 1), Err(JwtError::ExpiresNow));
    }

    #[test]
    fn one_bit_of_signature_altered_is_bad_signature() {
        let t = signer().issue("alice", FP, NOW, 3600);
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
        let t = signer().issue("alice", FP, NOW, 3600);
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
        let t = forge(HEADER, &claims(Some(NOW - 28)), SECRET);
        assert_eq!(signer().verify(&t, NOW).unwrap().exp, NOW - 28);
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
        let ids = format!(r#""jti":"{JTI}","fp":"{FP}""#);
        for payload in [
            format!(r#"{{"iat":{NOW},"sub":"alice","exp":{exp},"iss":"palisade",{ids}}}"#),
            format!(r#"{{"sub":"alice","iat":{NOW},"exp":{exp},"iss":"palisade",{ids},"x":1}}"#),
            format!(r#"{{"sub": "alice","iat":{NOW},"exp":{exp},"iss":"palisade",{ids}}}"#),
            format!(
                r#"{{"sub":"alice","iat":{NOW},"exp":{exp},"iss":"palisade","fp":"{FP}","jti":"{JTI}"}}"#
            ),
            format!(
                r#"{{"sub":"alice","iat":{NOW},"exp":{exp},"iss":"palisade","jti":"AAAA","fp":"{FP}"}}"#
            ),
            format!(
                r#"{{"sub":"alice","iat":{NOW},"exp":{exp},"iss":"palisade","jti":"{JTI}","fp":"A"}}"#
            ),
        ] {
            let t = forge(HEADER, &payload, SECRET);
            assert_eq!(
                signer().verify(&t, NOW),
                Err(JwtError::Malformed),
                "{payload}"
            );
        }
        let canonical =
            format!(r#"{{"sub":"alice","iat":{NOW},"exp":{exp},"iss":"palisade",{ids}}}"#);
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
            &format!(
                r#"{{"sub":"a","iat":{NOW},"exp":{},"iss":"x","jti":"{JTI}","fp":"{FP}"}}"#,
                NOW + 9
            ),
            SECRET,
        );
        assert_eq!(signer().verify(&iss, NOW), Err(JwtError::WrongIssuer));
        let future = forge(
            HEADER,
            &format!(
                r#"{{"sub":"a","iat":{},"exp":{},"iss":"palisade","jti":"{JTI}","fp":"{FP}"}}"#,
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
