//! The security policy that answers the handshake's decision point.
//!
//! Every upgrade request that passed the RFC 6455 checks and the Origin
//! policy (SPEC.md §4, [`origin::OriginPolicy::check`]) comes here through
//! [`crate::proto::handshake::respond`], which is the only way to produce a
//! `101`. The [`Gate`] checks the credentials (SPEC.md §5) and selects the
//! subprotocol; each refusal has its status from SPEC.md §2 and a reason
//! for the log. [`Auth`] holds what the checks need: the users, the token
//! signer, the login rate limiter.

pub mod apikeys;
pub mod channels;
pub mod client_ip;
pub mod credentials;
pub mod hasher;
pub mod hosts;
pub mod jwt;
pub mod origin;
pub mod password;
pub mod ratelimit;
pub mod revoked;
pub mod users;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use crate::config::{AuthMode, Config};
use crate::proto::handshake::{Accept, Decision, Policy, Reject, UpgradeRequest};
use credentials::Credential;
use password::PasswordHash;
use ratelimit::{Limited, PerIp, SharedTable};
use users::Users;

/// Who an accepted peer is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Identity {
    /// Authentication is off (`auth.mode = none`).
    #[default]
    Anonymous,
    /// A user who proved who they are.
    User {
        /// The user name.
        name: String,
        /// When the token expires (Unix seconds, leeway included); `None`
        /// for a password (Basic) login.
        expires_at: Option<u64>,
        /// The token's id (what `POST /logout` revokes); `None` for a
        /// password (Basic) login.
        token: Option<jwt::TokenId>,
    },
}

/// Whose open connections a log-out closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    /// Those opened with this token.
    Token(jwt::TokenId),
    /// Those of this user opened with a token (the revocation table was
    /// full, so all of the user's earlier tokens were revoked).
    UserTokens(String),
}

/// A users file read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Users in the new file.
    pub users: usize,
    /// Users removed or whose password changed: their tokens no longer
    /// verify and their connections are to be closed.
    pub revoked: Vec<String>,
}

/// A token that checks out, as `GET /session` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user.
    pub username: String,
    /// The token's `exp` (Unix seconds).
    pub expires_at: u64,
}

/// Authentication state of a server: users, signer, rate limiter.
#[derive(Debug, Clone)]
pub struct Auth {
    /// `auth.mode`.
    pub mode: AuthMode,
    /// The users and the dummy hash, replaced whole by a reload.
    users: Arc<RwLock<Arc<Known>>>,
    signer: jwt::Signer,
    /// `auth.token_ttl_s`.
    pub token_ttl_s: u64,
    allow_query_token: bool,
    users_file: Option<PathBuf>,
    logins: SharedTable<PerIp>,
    revoked: SharedTable<revoked::Revoked>,
}

/// The users a server knows, and the hash checked for unknown names.
#[derive(Debug)]
struct Known {
    users: Users,
    /// Verified against for unknown users, as costly as a real hash.
    dummy: PasswordHash,
}

/// What the users file held at start-up when none was configured.
#[derive(Debug)]
pub enum Demo {
    /// A users file was loaded.
    No,
    /// The `demo` user was created with this password (shown once).
    Password(String),
}

impl Auth {
    /// Loads the users file (or creates the demo user) and the secret.
    pub fn from_config(config: &Config) -> Result<(Auth, Demo), String> {
        let a = &config.auth;
        let (users, demo) = match &a.users_file {
            Some(path) => (Users::load(path)?, Demo::No),
            // Nobody needs to log in: no demo user (and no start-up hash).
            None if a.mode == AuthMode::None => (Users::default(), Demo::No),
            None => {
                let password = random_password()?;
                let mut users = Users::default();
                users.insert(
                    users::Username::new("demo")?,
                    PasswordHash::generate(password.as_bytes(), password::DEFAULT_ITERATIONS)?,
                );
                (users, Demo::Password(password))
            }
        };
        let signer = match &a.jwt_secret_file {
            Some(path) => {
                let secret = std::fs::read(path)
                    .map_err(|e| format!("auth.jwt_secret_file {}: {e}", path.display()))?;
                let secret = secret.trim_ascii_end();
                jwt::Signer::new(secret)
                    .map_err(|e| format!("auth.jwt_secret_file {}: {e}", path.display()))?
            }
            None => jwt::Signer::random()?,
        };
        let dummy = PasswordHash::dummy(dummy_iterations(&users))?;
        let auth = Auth {
            mode: a.mode,
            users: Arc::new(RwLock::new(Arc::new(Known { users, dummy }))),
            signer: signer.with_leeway(a.leeway_s),
            token_ttl_s: a.token_ttl_s,
            allow_query_token: a.allow_query_token,
            users_file: a.users_file.clone(),
            logins: SharedTable::new(PerIp::per_minute(
                config.rate.logins_per_ip_per_min,
                ratelimit::DEFAULT_MAX_ENTRIES,
            )),
            revoked: SharedTable::new(revoked::Revoked::new(a.max_revoked_tokens)),
        };
        Ok((auth, demo))
    }

    /// Re-reads the users file; on error the current users stay. Returns
    /// the new users and who lost their credentials, or `None` when there
    /// is no file to read.
    pub fn reload_users(&mut self) -> Option<Result<Reloaded, String>> {
        let path = self.users_file.as_ref()?;
        Some(Users::load(path).and_then(|users| {
            let dummy = PasswordHash::dummy(dummy_iterations(&users))?;
            let old = self.known();
            let revoked = old
                .users
                .iter()
                .filter(|(name, hash)| users.get(name) != Some(*hash))
                .map(|(name, _)| name.to_owned())
                .collect();
            let count = users.len();
            *self.users.write().unwrap_or_else(PoisonError::into_inner) =
                Arc::new(Known { users, dummy });
            Ok(Reloaded {
                users: count,
                revoked,
            })
        }))
    }

    /// The users now (a reload replaces them whole).
    fn known(&self) -> Arc<Known> {
        let known = self.users.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&known)
    }

    /// The lowest and highest iteration counts of the stored hashes when
    /// they differ: a user with fewer iterations than the dummy hash answers
    /// faster than an unknown name, which tells that the name exists.
    pub fn mixed_iterations(&self) -> Option<(u32, u32)> {
        let known = self.known();
        let counts = known.users.hashes().map(PasswordHash::iterations);
        let (min, max) = counts.fold((u32::MAX, 0), |(lo, hi), i| (lo.min(i), hi.max(i)));
        (min < max).then_some((min, max))
    }

    /// Whether `ip` may try an API key now: wrong keys count against the
    /// log-in rate (see [`Auth::login_allowed`]), and over it no key is
    /// checked.
    pub fn key_attempt_allowed(&self, ip: IpAddr, now: Instant) -> bool {
        self.logins.lock().has_token(ip, now)
    }

    /// Counts one login attempt (a `POST /login` or a Basic handshake).
    pub fn login_allowed(&mut self, ip: IpAddr, now: Instant) -> Result<(), Limited> {
        self.logins.lock().check(ip, now)
    }

    /// A password check for `username`: the user's hash, or the dummy one
    /// (same cost) for an unknown user, and whether the user exists.
    pub fn password_check(&self, username: &str) -> (PasswordHash, bool) {
        let known = self.known();
        match known.users.get(username) {
            Some(h) => (h.clone(), true),
            None => (known.dummy.clone(), false),
        }
    }

    /// A token for `user` issued at `now` (Unix seconds), bound to the
    /// user's current password; `None` when the user is gone.
    pub fn issue(&self, user: &str, now: u64) -> Option<String> {
        let known = self.known();
        let hash = known.users.get(user)?;
        let fp = self.signer.fingerprint(&hash.to_phc());
        Some(self.signer.issue(user, &fp, now, self.token_ttl_s))
    }

    /// The credential a handshake carries, in SPEC.md §5 order.
    pub fn credential<'b>(
        &self,
        request: &UpgradeRequest<'_, '_, 'b>,
        basic_allowed: bool,
    ) -> Credential<'b> {
        credentials::find(request.request(), self.allow_query_token, basic_allowed)
    }

    /// The credentials of a plain request (a Socket.IO long-polling
    /// session's first request): like a handshake's, without Basic.
    pub fn request_credential<'b>(
        &self,
        request: &crate::proto::handshake::Request<'_, 'b>,
    ) -> Credential<'b> {
        credentials::find(request, self.allow_query_token, false)
    }

    /// Verifies a token: its signature and times, then that it was not
    /// revoked: its user still exists with the password it was issued for,
    /// and it was not logged out. Returns the claims or the reason.
    fn check_token(&self, token: &str, now: u64) -> Result<jwt::Claims, &'static str> {
        let claims = self.signer.verify(token, now).map_err(|e| e.reason())?;
        let known = self.known();
        let current = known.users.get(&claims.sub);
        let bound = current.is_some_and(|h| self.signer.fingerprint(&h.to_phc()) == claims.fp);
        if !bound || self.revoked.lock().is_revoked(&claims) {
            return Err("revoked");
        }
        Ok(claims)
    }

    /// Verifies a token for a handshake.
    pub(crate) fn verify_token(&self, token: &str, now: u64) -> Result<Identity, &'static str> {
        let claims = self.check_token(token, now)?;
        Ok(Identity::User {
            expires_at: Some(claims.exp.saturating_add(self.signer.leeway_s())),
            token: Some(claims.id()),
            name: claims.sub,
        })
    }

    /// The session a token stands for, if it verifies (`GET /session`).
    pub fn session(&self, token: &str, now: u64) -> Result<Session, &'static str> {
        let claims = self.check_token(token, now)?;
        Ok(Session {
            username: claims.sub,
            expires_at: claims.exp,
        })
    }

    /// Logs a token out (`POST /logout`): it is refused from now on. A
    /// token revoked already is logged out again without complaint; one
    /// that does not verify is refused with the reason.
    pub fn logout(&mut self, token: &str, now: u64) -> Result<(String, Revoke), &'static str> {
        let claims = self.signer.verify(token, now).map_err(|e| e.reason())?;
        let until = claims.exp.saturating_add(self.signer.leeway_s());
        let revoked = self.revoked.lock().revoke(&claims, until, now);
        let revoke = match revoked {
            revoked::Revocation::User => Revoke::UserTokens(claims.sub.clone()),
            revoked::Revocation::Token | revoked::Revocation::Already => Revoke::Token(claims.id()),
        };
        Ok((claims.sub, revoke))
    }

    /// Token ids in the revocation table, and users whose earlier tokens
    /// are all revoked.
    pub fn revoked_len(&self) -> (usize, usize) {
        let revoked = self.revoked.lock();
        (revoked.len(), revoked.users_len())
    }
}

/// Warns when stored hashes use different iteration counts.
pub fn warn_mixed_iterations(auth: &Auth) {
    if let Some((lo, hi)) = auth.mixed_iterations() {
        crate::log::warn(
            "users file mixes PBKDF2 iteration counts: logins of users with fewer iterations answer faster than unknown names; rehash them with palisade users add",
            &[("min", &lo), ("max", &hi)],
        );
    }
}

/// The iteration count of the dummy hash: the largest in the file, so an
/// unknown user never costs less than a real one.
fn dummy_iterations(users: &Users) -> u32 {
    users
        .hashes()
        .map(PasswordHash::iterations)
        .max()
        .unwrap_or(password::DEFAULT_ITERATIONS)
}

/// 18 random bytes as base64url: 24 characters, 144 bits.
fn random_password() -> Result<String, String> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 18];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random number generator failed".to_owned())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The outcome of a password check done off the loop for a Basic handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BasicResult {
    /// The password matched this user.
    Verified(String),
    /// Unknown user or wrong password.
    Refused,
}

/// The handshake policy for one request: the credentials (SPEC.md §5) and
/// the subprotocol. It exists only for a request whose Origin passed
/// ([`origin::OriginChecked`]), so the Origin is checked once, before it.
#[derive(Debug)]
pub struct Gate<'a> {
    auth: &'a Auth,
    /// Unix seconds, for token expiry.
    now: u64,
    basic_allowed: bool,
    basic: Option<BasicResult>,
    protocols: &'a [&'static str],
}

impl<'a> Gate<'a> {
    /// The gate for a request arriving at `now` (Unix seconds) whose Origin
    /// passed; Basic credentials count only when `basic_allowed` (TLS or
    /// loopback); `protocols` are the application's subprotocols.
    pub fn new(
        auth: &'a Auth,
        origin: origin::OriginChecked,
        now: u64,
        basic_allowed: bool,
        protocols: &'a [&'static str],
    ) -> Self {
        let _ = origin;
        Gate {
            auth,
            now,
            basic_allowed,
            basic: None,
            protocols,
        }
    }

    /// The result of the password check of this request's Basic credentials.
    pub fn with_basic(mut self, result: BasicResult) -> Self {
        self.basic = Some(result);
        self
    }
}

fn unauthorized(reason: &'static str) -> Decision<Identity> {
    Decision::Reject(Reject {
        status: 401,
        reason,
        header: Some(("WWW-Authenticate", "Bearer")),
    })
}

impl Policy for Gate<'_> {
    type Identity = Identity;

    fn decide(&mut self, request: &UpgradeRequest<'_, '_, '_>) -> Decision<Identity> {
        let identity = match self.auth.mode {
            AuthMode::None => Identity::Anonymous,
            AuthMode::Required => {
                let found = self.auth.credential(request, self.basic_allowed);
                let verified = match found {
                    Credential::Token { token, .. } => self.auth.verify_token(token, self.now),
                    Credential::Basic { .. } => match &self.basic {
                        Some(BasicResult::Verified(name)) => Ok(Identity::User {
                            name: name.clone(),
                            expires_at: None,
                            token: None,
                        }),
                        Some(BasicResult::Refused) => Err("invalid_credentials"),
                        // The loop checks the password before asking.
                        None => Err("unverified"),
                    },
                    Credential::Refused(reason) => Err(reason),
                };
                match verified {
                    Ok(id) => id,
                    Err(reason) => return unauthorized(reason),
                }
            }
        };
        Decision::Accept(Accept {
            protocol: request.select_protocol(self.protocols),
            identity,
        })
    }
}
