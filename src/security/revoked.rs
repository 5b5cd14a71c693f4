//! Tokens revoked by `POST /logout` (SPEC.md §5), bounded in size and time.
//!
//! A token is stateless until its holder logs out: then its id (`jti`) is
//! kept until the token would have expired anyway (its `exp` plus the
//! leeway), and no longer. The table holds at most `auth.max_revoked_tokens`
//! ids (default 10,000; about 100 bytes each). When it is full and nothing
//! in it has expired, a log-out still takes effect, more coarsely: every
//! token of that user issued up to that second is refused (the user's other
//! sessions end too), which costs one entry per user, and users are bounded
//! by the users file. Revocation never fails open.
//!
//! Operator revocation (a removed user, a changed password) needs no table:
//! the token's `fp` claim no longer matches (see [`super::jwt`]).

use std::collections::{BTreeSet, HashMap};

use super::jwt::{Claims, TokenId};

/// What a log-out did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The token's id is in the table.
    Token,
    /// The table was full: every token of the user issued up to now is
    /// refused.
    User,
    /// The token was revoked already.
    Already,
}

/// The revoked token ids, and the users whose earlier tokens are all
/// revoked because the table was full.
#[derive(Debug)]
pub struct Revoked {
    max: usize,
    /// Token id -> the Unix second after which it is expired anyway.
    by_id: HashMap<TokenId, u64>,
    /// The same entries in the order they lapse.
    by_until: BTreeSet<(u64, TokenId)>,
    /// User -> (every token issued at or before this second is revoked,
    /// until when that matters).
    users: HashMap<String, (u64, u64)>,
}

impl Revoked {
    /// An empty table of at most `max` token ids.
    pub fn new(max: usize) -> Revoked {
        Revoked {
            max,
            by_id: HashMap::new(),
            by_until: BTreeSet::new(),
            users: HashMap::new(),
        }
    }

    /// Revokes the token of `claims` until `until` (its `exp` plus the
    /// leeway), at `now` (Unix seconds).
    pub fn revoke(&mut self, claims: &Claims, until: u64, now: u64) -> Revocation {
        if self.is_revoked(claims) {
            return Revocation::Already;
        }
        self.purge(now);
        let id = claims.id();
        if self.by_id.len() < self.max {
            self.by_id.insert(id, until);
            self.by_until.insert((until, id));
            return Revocation::Token;
        }
        let entry = self.users.entry(claims.sub.clone()).or_insert((now, until));
        entry.0 = entry.0.max(now);
        entry.1 = entry.1.max(until);
        Revocation::User
    }

    /// Whether the token of `claims` was revoked.
    pub fn is_revoked(&self, claims: &Claims) -> bool {
        if !self.users.is_empty() {
            if let Some(&(cutoff, _)) = self.users.get(&claims.sub) {
                if claims.iat <= cutoff {
                    return true;
                }
            }
        }
        !self.by_id.is_empty() && self.by_id.contains_key(&claims.id())
    }

    /// Drops what has lapsed by `now`: those tokens are refused as expired.
    pub fn purge(&mut self, now: u64) {
        while let Some(&(until, id)) = self.by_until.first() {
            if until >= now {
                break;
            }
            self.by_until.pop_first();
            self.by_id.remove(&id);
        }
        if !self.users.is_empty() {
            self.users.retain(|_, &mut (_, until)| until >= now);
        }
    }

    /// Token ids held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Users all of whose earlier tokens are revoked (the table was full).
    pub fn users_len(&self) -> usize {
        self.users.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str, n: u32, iat: u64) -> Claims {
        use base64::Engine;
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_be_bytes());
        Claims {
            sub: sub.into(),
            iat,
            exp: iat + 3600,
            iss: "palisade".into(),
            jti: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id),
            fp: "AAAAAAAAAAAAAAAA".into(),
        }
    }

    #[test]
    fn a_revoked_token_stays_revoked_until_it_lapses() {
        let mut r = Revoked::new(10);
        let a = claims("alice", 1, 1000);
        let b = claims("alice", 2, 1000);
        assert_eq!(r.revoke(&a, 4630, 1000), Revocation::Token);
        assert_eq!(r.revoke(&a, 4630, 1001), Revocation::Already);
        assert!(r.is_revoked(&a));
        assert!(!r.is_revoked(&b), "another session of the same user");
        r.purge(4630);
        assert_eq!(r.len(), 1);
        r.purge(4631);
        assert_eq!(r.len(), 0);
    }

    #[test]
    fn a_full_table_revokes_the_users_earlier_tokens_instead() {
        let mut r = Revoked::new(100);
        for n in 0..100_000 {
            let c = claims("alice", n, 1000);
            let got = r.revoke(&c, 4630, 2000);
            assert!(r.is_revoked(&c), "{n}");
            // The 101st revokes all of alice's earlier tokens: the rest
            // were revoked already.
            let want = match n {
                0..100 => Revocation::Token,
                100 => Revocation::User,
                _ => Revocation::Already,
            };
            assert_eq!(got, want, "{n}");
        }
        assert_eq!((r.len(), r.users_len()), (100, 1));
        // Older tokens of alice are refused, later ones and bob's are not.
        assert!(r.is_revoked(&claims("alice", 200_000, 1999)));
        assert!(!r.is_revoked(&claims("alice", 200_001, 2001)));
        assert!(!r.is_revoked(&claims("bob", 200_002, 1000)));
        // Once the tokens have lapsed, room again.
        assert_eq!(
            r.revoke(&claims("bob", 300_000, 5000), 8630, 5000),
            Revocation::Token
        );
        assert_eq!((r.len(), r.users_len()), (1, 0));
    }
}
