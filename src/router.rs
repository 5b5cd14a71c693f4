//! HTTP routing without sockets: a complete request head and the facts
//! about its connection in, one [`Outcome`] out, with the response (if any)
//! written to the connection's output buffer.
//!
//! Every decision a request gets before it is a WebSocket is made here, in
//! the order of SPEC.md §2: parse (`400`/`431`), the per-client quota and
//! handshake rate and the global cap (`429`/`503`), the request line of an
//! upgrade (`405`/`400`), the `Host` (`400`/`421`), then the route:
//! `/login` (its head checks and rate), static files and `/healthz`, or the
//! upgrade, where the Origin is checked once (`403`) and the security gate
//! decides on the credentials (`401`) and writes the `101`. The event loop
//! only moves bytes and applies the outcome.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::config::{AuthMode, Config};
use crate::http::{self, StaticFiles, login, response, session};
use crate::log;
use crate::metrics::{Registry, Stats};
use crate::proto::Limits;
use crate::proto::error::HandshakeError;
use crate::proto::handshake::{self, Accepted, Request, UpgradeRequest};
use crate::security::apikeys::ApiKeys;
use crate::security::channels::ChannelPolicy;
use crate::security::client_ip::{Networks, TrustedProxies, canonical};
use crate::security::credentials::Credential;
use crate::security::hosts::AllowedHosts;
use crate::security::jwt::TokenId;
use crate::security::origin::{OriginChecked, OriginPolicy};
use crate::security::ratelimit::{ConnectionCounts, DEFAULT_MAX_ENTRIES, PerIp, SharedTable};
use crate::security::{Auth, BasicResult, Gate, Identity, Revoke};

/// The settings and policies every request is routed by (immutable while
/// the server runs, shared by every connection).
#[derive(Debug)]
pub struct Shared {
    /// All settings.
    pub config: Config,
    /// The limits the core enforces (from `config.limits`).
    pub limits: Limits,
    /// Files for the HTTP responder.
    pub files: StaticFiles,
    /// The Origin policy (SPEC.md §4).
    pub origins: OriginPolicy,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub proxies: TrustedProxies,
    /// Networks besides loopback that may read `/metrics`.
    pub metrics_allow: Networks,
    /// Who may subscribe and publish to which channels.
    pub channels: ChannelPolicy,
    /// The keys of `POST /api/publish` (read from `api.keys_file` when the
    /// server is built, and again on `SIGHUP`).
    pub api_keys: std::sync::RwLock<ApiKeys>,
    /// The names requests may carry in `Host` (SPEC.md §2).
    pub hosts: AllowedHosts,
    /// Where the redirect listener sends clients.
    pub redirect_host: RedirectHost,
}

impl Shared {
    /// The policies built from `config`; an entry that does not parse is
    /// an error naming it. `tls_name` is the certificate's DNS name.
    pub fn new(
        config: Config,
        files: StaticFiles,
        tls_name: Option<&str>,
    ) -> Result<Shared, String> {
        let listen = config.listen_addr().map_err(|e| e.0)?.ip();
        check_policies(&config)?;
        Ok(Shared {
            limits: core_limits(&config.limits),
            origins: OriginPolicy::new(&config.allowed_origins, config.require_origin)?,
            proxies: TrustedProxies::new(&config.trusted_proxies)?,
            metrics_allow: Networks::new("metrics.allow", &config.metrics.allow)?,
            channels: ChannelPolicy::new(&config.channels)?,
            api_keys: std::sync::RwLock::default(),
            hosts: AllowedHosts::new(&config.allowed_hosts, listen)?,
            redirect_host: RedirectHost::new(config.tls.redirect_host.as_deref(), tls_name, listen),
            files,
            config,
        })
    }
}

/// Checks the settings the policies parse (origins, hosts, proxies, the
/// redirect host): a bad entry is an error naming it. `Config::validate`
/// checks the rest; config itself imports none of the policies.
pub fn check_policies(config: &Config) -> Result<(), String> {
    OriginPolicy::new(&config.allowed_origins, config.require_origin)?;
    let listen = config.listen_addr().map_err(|e| e.0)?;
    AllowedHosts::new(&config.allowed_hosts, listen.ip())?;
    TrustedProxies::new(&config.trusted_proxies)?;
    Networks::new("metrics.allow", &config.metrics.allow)?;
    ChannelPolicy::new(&config.channels)?;
    if let Some(h) = &config.tls.redirect_host {
        if crate::proto::host::Host::parse(h.as_bytes()).is_none() || h.trim() != h {
            return Err(format!(
                "tls.redirect_host: {h:?} is not a host like app.example.com or app.example.com:8443"
            ));
        }
    }
    Ok(())
}

/// The limits the core enforces, from the `limits` settings.
pub fn core_limits(l: &crate::config::LimitsConfig) -> Limits {
    use std::time::Duration;
    Limits {
        max_request_head_bytes: l.max_request_head_bytes,
        max_headers: l.max_headers,
        max_frame_bytes: l.max_frame_bytes,
        max_message_bytes: l.max_message_bytes,
        max_fragments: l.max_fragments,
        max_outbound_bytes: l.max_outbound_bytes,
        idle_timeout: Duration::from_millis(l.idle_timeout_ms),
        close_timeout: Duration::from_millis(l.close_timeout_ms),
    }
}

/// The https authority the redirect listener names in `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectHost {
    /// Host name, IPv4 address or bracketed IPv6 address.
    pub name: String,
    /// Port, when not the TLS listener's own.
    pub port: Option<u16>,
}

impl RedirectHost {
    /// `tls.redirect_host` when set, else `dns_name` (the certificate's
    /// first DNS name), else the listen address.
    pub fn new(configured: Option<&str>, dns_name: Option<&str>, listen: IpAddr) -> RedirectHost {
        if let Some(h) = configured.and_then(|c| crate::proto::host::Host::parse(c.as_bytes())) {
            return RedirectHost {
                name: h.name().to_owned(),
                port: h.port(),
            };
        }
        let name = match (dns_name, listen) {
            (Some(n), _) => n.to_owned(),
            (None, IpAddr::V4(v4)) => v4.to_string(),
            (None, IpAddr::V6(v6)) => format!("[{v6}]"),
        };
        RedirectHost { name, port: None }
    }
}

/// Per-client-IP state: the handshake rate and the open connections. Both
/// tables are bounded (see [`PerIp`] and [`ConnectionCounts`]).
#[derive(Debug, Clone)]
pub struct Quotas {
    /// WebSocket handshakes per client per second.
    pub handshakes: SharedTable<PerIp>,
    /// Open connections per client.
    pub conns: SharedTable<ConnectionCounts>,
}

impl Quotas {
    /// Empty tables for `config`'s rates.
    pub fn new(config: &Config) -> Quotas {
        let per_s = config.rate.handshakes_per_ip_per_s;
        Quotas {
            handshakes: SharedTable::new(PerIp::new(
                f64::from(per_s),
                per_s.saturating_mul(2),
                DEFAULT_MAX_ENTRIES,
            )),
            conns: SharedTable::new(ConnectionCounts::default()),
        }
    }
}

/// Facts about the connection a request came on.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// The socket peer.
    pub addr: SocketAddr,
    /// Whether the connection is TLS here.
    pub secure: bool,
    /// On the redirect listener: the https port to send clients to.
    pub redirect_to: Option<u16>,
    /// Accepted over `limits.max_connections`, only to be answered `503`.
    pub over_capacity: bool,
}

/// Which client address a connection counts against
/// (`limits.max_connections_per_ip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charge {
    /// Not counted yet: a connection from a trusted proxy before its first
    /// request head.
    Unknown,
    /// Counted against this address, within its quota.
    Ip(IpAddr),
    /// Counted against this address, which was over its quota.
    OverQuota(IpAddr),
}

impl Charge {
    /// The address counted against, if any.
    pub fn ip(self) -> Option<IpAddr> {
        match self {
            Charge::Unknown => None,
            Charge::Ip(ip) | Charge::OverQuota(ip) => Some(ip),
        }
    }
}

/// An accepted upgrade: the `101` is in the output buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgraded {
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// When the user's token expires (Unix seconds, leeway included).
    pub expires_at: Option<u64>,
    /// The token's id, when a token opened it.
    pub token: Option<TokenId>,
    /// The confirmed subprotocol.
    pub protocol: Option<&'static str>,
    /// A Socket.IO session over this WebSocket: what its handshake request
    /// said about credentials (they may also come with its CONNECT).
    pub socketio: Option<HandshakeCredential>,
    /// The long-polling session a Socket.IO WebSocket probes to take over.
    pub probe: Option<Box<str>>,
    /// Engine.IO without Socket.IO (the conformance echo at `/engine.io/`).
    pub engine_only: bool,
}

/// A request's one `Content-Length`, if it has one that parses.
fn content_length(req: &Request<'_, '_>) -> Option<u64> {
    match req.single_header("content-length") {
        handshake::Single::One(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok()),
        _ => None,
    }
}

/// The path of the publish API.
pub const PUBLISH_PATH: &str = "/api/publish";

/// The path of the metrics page.
pub const METRICS_PATH: &str = "/metrics";

/// The Prometheus text exposition format.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The path of Engine.IO without Socket.IO, with `--app echo`.
pub const ENGINE_IO_PATH: &str = "/engine.io/";

/// What the router knows of the Engine.IO sessions the loop holds.
pub trait Sessions {
    /// Whether `sid` names a session.
    fn knows(&self, sid: &str) -> bool;

    /// The event loop that owns session `sid`, when it is another loop.
    fn owner(&self, _sid: &str) -> Option<usize> {
        None
    }
}

/// No sessions (a router without a loop, in tests).
#[cfg(test)]
pub struct NoSessions;

#[cfg(test)]
impl Sessions for NoSessions {
    fn knows(&self, _: &str) -> bool {
        false
    }
}

/// An Engine.IO long-polling request, past the router's checks.
#[derive(Debug)]
pub struct Polling {
    /// What it asks.
    pub what: PollWhat,
    /// The `Origin` to name in `Access-Control-Allow-Origin`.
    pub cors: Option<String>,
    /// Whether the connection may carry another request.
    pub keep_alive: bool,
    /// `Strict-Transport-Security` on the answer.
    pub hsts: bool,
}

/// What a long-polling request asks.
#[derive(Debug)]
pub enum PollWhat {
    /// A new session, with the identity and credentials of its request
    /// (as a Socket.IO WebSocket's, without a `101`).
    Open(Upgraded),
    /// The packets waiting for the client (held until there are some).
    Get {
        /// The session.
        sid: String,
    },
    /// Packets from the client: a body of `need` bytes follows.
    Post {
        /// The session.
        sid: String,
        /// The body's length.
        need: usize,
    },
    /// A body over `maxPayload`: `413`, and the session ends.
    TooLarge {
        /// The session.
        sid: String,
        /// The announced length.
        length: u64,
    },
}

/// The CORS headers for an allowed `origin`.
pub fn cors_headers(origin: Option<&str>, extra: &mut Vec<(&'static str, String)>) {
    if let Some(origin) = origin {
        extra.push(("Access-Control-Allow-Origin", origin.to_owned()));
        extra.push(("Access-Control-Allow-Credentials", "true".into()));
        extra.push(("Vary", "Origin".into()));
    }
}

/// The credentials of a Socket.IO WebSocket's handshake request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeCredential {
    /// `auth.mode` none.
    NotRequired,
    /// A valid token or cookie: the user is in [`Upgraded::user`].
    Verified,
    /// None: the CONNECT must carry them.
    Missing,
    /// Some that did not verify: the reason (the CONNECT may still carry
    /// valid ones).
    Refused(&'static str),
}

/// What the connection does next.
#[derive(Debug)]
pub enum Outcome {
    /// A response is written and the connection may carry another request.
    KeepAlive,
    /// A final response (an answer, a refusal, a redirect) is written: send
    /// it, then close.
    Final,
    /// A log-out is answered: the connections it revokes are to be closed
    /// `1008` `logged out`; then as [`Outcome::KeepAlive`] or
    /// [`Outcome::Final`].
    LoggedOut {
        /// Whose connections.
        revoke: Revoke,
        /// Whether the connection may carry another request.
        keep_alive: bool,
    },
    /// The `101` is written: the connection is a WebSocket now.
    Upgrade(Upgraded),
    /// An Engine.IO long-polling request, for the loop's sessions.
    Polling(Box<Polling>),
    /// A `POST /login` whose body of `need` bytes is to be read (a `100
    /// Continue` may be written).
    LoginBody {
        /// Body length.
        need: usize,
    },
    /// A request for a Socket.IO session another event loop owns: hand the
    /// connection to that loop, which routes the same head again.
    Handoff(usize),
    /// A `POST /api/publish` with a valid key (`key` names it): its body of
    /// `need` bytes is read next.
    PublishBody {
        /// Body length.
        need: usize,
        /// The API key's name.
        key: Box<str>,
    },
    /// A Basic handshake: check the password off the loop, then route the
    /// same head again with the result.
    CheckBasic {
        /// The user name offered.
        username: String,
        /// The password offered.
        password: Vec<u8>,
    },
}

impl Outcome {
    /// A response is written: [`Outcome::KeepAlive`] when the connection
    /// may carry another request, else [`Outcome::Final`].
    pub fn answered(keep_alive: bool) -> Outcome {
        if keep_alive {
            Outcome::KeepAlive
        } else {
            Outcome::Final
        }
    }
}

/// Routes requests for one turn of the loop.
pub struct Router<'a> {
    /// Settings and policies.
    pub shared: &'a Shared,
    /// Users, tokens, the login rate.
    pub auth: &'a mut Auth,
    /// Per-client tables.
    pub quotas: &'a mut Quotas,
    /// The subprotocols the application speaks.
    pub protocols: &'a [&'static str],
    /// The Engine.IO sessions of the loop.
    pub sessions: &'a dyn Sessions,
    /// A graceful shutdown is under way (`/readyz` answers `503`).
    pub stopping: bool,
    /// This loop's figures.
    pub stats: &'a Stats,
    /// Every loop's figures (the `/metrics` page).
    pub metrics: &'a Registry,
    /// The status and reason of the refusal written last (for the
    /// handshake counts).
    pub refused: Option<(u16, &'static str)>,
    /// Now, for the rate limits.
    pub now: Instant,
    /// Now in Unix seconds, for tokens.
    pub unix_now: u64,
}

/// Seconds since the Unix epoch (token times).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Router<'_> {
    /// Routes a complete request head that came from `peer`. `basic` is
    /// the password check's result when the same head is routed again
    /// after [`Outcome::CheckBasic`].
    pub fn route(
        &mut self,
        head: &[u8],
        peer: &Peer,
        charge: &mut Charge,
        basic: Option<BasicResult>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let limits = &self.shared.limits;
        let mut small = [httparse::EMPTY_HEADER; 64];
        let mut large;
        let storage: &mut [httparse::Header<'_>] = if limits.max_headers <= small.len() {
            &mut small[..limits.max_headers]
        } else {
            large = vec![httparse::EMPTY_HEADER; limits.max_headers];
            &mut large
        };
        let req = match handshake::parse_request(head, storage) {
            Ok(r) => r,
            Err(e) => return self.refuse(out, peer, e.status(), e.reason(), &[]),
        };
        let outcome = self.route_request(&req, peer, charge, basic, out);
        // A refused handshake counts here; an accepted one where the loop
        // opens it (it knows since when the connection waited).
        if let Some((status, reason)) = self.refused.take() {
            if peer.redirect_to.is_none() && self.is_handshake(&req) {
                let label = crate::metrics::handshake_refusal(status, reason);
                self.stats.handshakes_refused.inc(label);
                if status == 401 {
                    self.stats.auth_failures.inc(reason);
                }
            }
        }
        outcome
    }

    /// Whether `req` is a handshake: on `ws.path`, or opening an Engine.IO
    /// session (a long-polling session's later requests are not).
    fn is_handshake(&self, req: &Request<'_, '_>) -> bool {
        let path = req.path();
        if path == self.shared.config.ws.path {
            return true;
        }
        (path == self.shared.config.socketio.path || self.is_engine_path(req))
            && matches!(
                crate::proto::engineio::route(
                    req.query().unwrap_or(""),
                    req.method,
                    req.has_token("upgrade", "websocket")
                ),
                Ok(crate::proto::engineio::Route::Handshake(_))
            )
    }

    fn route_request(
        &mut self,
        req: &Request<'_, '_>,
        peer: &Peer,
        charge: &mut Charge,
        basic: Option<BasicResult>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        if let Some(port) = peer.redirect_to {
            return self.redirect(req, peer, port, out);
        }
        let client = self
            .shared
            .proxies
            .client_ip(peer.addr.ip(), req.header_values("x-forwarded-for"));
        // A Basic handshake routed again after its password check passed
        // these checks the first time.
        if basic.is_none() {
            if let Some((status, reason, retry)) = self.admission(peer, charge, client, req) {
                return self.refuse(out, peer, status, reason, &[("Retry-After", &retry)]);
            }
        }
        // SPEC.md §2: on the WebSocket path the request line is checked
        // before the Host; then the Host, on every path.
        let ws_path = req.path() == self.shared.config.ws.path;
        let sio_path = req.path() == self.shared.config.socketio.path || self.is_engine_path(req);
        if ws_path {
            if let Err(e) = UpgradeRequest::check_request_line(req) {
                return self.refuse_handshake(out, peer, e);
            }
        }
        if let Some((status, reason)) = host_refusal(req, &self.shared.hosts) {
            return self.refuse(out, peer, status, reason, &[]);
        }
        if req.path() == login::PATH {
            return self.login_head(req, peer, client, out);
        }
        if req.path() == session::LOGOUT {
            return self.logout(req, peer, out);
        }
        if req.path() == session::SESSION {
            return self.session(req, peer, out);
        }
        if req.path() == PUBLISH_PATH {
            return self.publish_head(req, peer, client, out);
        }
        if sio_path {
            return self.socketio(req, peer, out);
        }
        if !ws_path {
            return self.http(req, peer, client, out);
        }
        self.upgrade(req, peer, client, basic, out)
    }

    /// `POST /api/publish` (SPEC.md §10): an API key (`401`), JSON
    /// (`415`) with a length (`411`) within the message cap (`413`); the
    /// body comes next.
    fn publish_head(
        &mut self,
        req: &Request<'_, '_>,
        peer: &Peer,
        client: IpAddr,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let hsts = self.hsts(peer);
        let mut refuse = |status: u16, error: &'static str, extra: &[(&str, &str)]| {
            self.refused = Some((status, error));
            log_refused("publish refused", peer.addr, status, error);
            let body = format!(r#"{{"error":"{error}"}}"#);
            response::write_json(out, status, &body, extra, hsts);
            Outcome::Final
        };
        if req.method != "POST" {
            return refuse(405, "method_not_allowed", &[("Allow", "POST")]);
        }
        let key = match req.single_header("authorization") {
            handshake::Single::One(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.trim().strip_prefix("Bearer "))
                .map(str::trim),
            _ => None,
        };
        let bearer = [("WWW-Authenticate", "Bearer")];
        let Some(key) = key else {
            return refuse(401, "missing", &bearer);
        };
        // Wrong keys count against the log-in rate; over it none is checked.
        if !self.auth.key_attempt_allowed(client, self.now) {
            self.stats.rate_limited.inc("login");
            return refuse(429, "rate_limited", &[("Retry-After", "60")]);
        }
        let keys = self
            .shared
            .api_keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(name) = keys.verify(key).map(Box::<str>::from) else {
            drop(keys);
            let _ = self.auth.login_allowed(client, self.now);
            self.stats.auth_failures.inc("invalid_api_key");
            return refuse(401, "invalid_api_key", &bearer);
        };
        drop(keys);
        let json = matches!(req.single_header("content-type"), handshake::Single::One(v)
            if v.split(|&b| b == b';').next().is_some_and(|m| m.trim_ascii().eq_ignore_ascii_case(b"application/json")));
        if !json {
            return refuse(415, "unsupported_media_type", &[]);
        }
        let Some(length) = content_length(req) else {
            return refuse(411, "length_required", &[]);
        };
        if length > self.shared.config.limits.max_message_bytes {
            return refuse(413, "too_large", &[]);
        }
        Outcome::PublishBody {
            need: length as usize,
            key: name,
        }
    }

    /// `GET /metrics`: for loopback clients and `metrics.allow`, else `403`.
    fn metrics_page(
        &mut self,
        req: &Request<'_, '_>,
        peer: &Peer,
        client: IpAddr,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let client = canonical(client);
        if !(client.is_loopback() || self.shared.metrics_allow.contains(client)) {
            return self.refuse(
                out,
                peer,
                403,
                "metrics are not served to this address",
                &[],
            );
        }
        if req.method != "GET" && req.method != "HEAD" {
            let allow = [("Allow", "GET, HEAD")];
            return self.refuse(out, peer, 405, "method not allowed", &allow);
        }
        let page = self.metrics.render();
        let keep_alive = req.version == 1
            && !req.has_token("connection", "close")
            && !req.has_body()
            && out.len() < HTTP_OUT_HIGH;
        let head = response::Head {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            content_length: page.len(),
            keep_alive,
            cache: response::Cache::NoStore,
            hsts: self.hsts(peer),
        };
        response::write_head(out, head, &[]);
        if req.method == "GET" {
            out.extend_from_slice(page.as_bytes());
        }
        Outcome::answered(keep_alive)
    }

    /// Static files, `/healthz`, `404` / `405`.
    fn http(
        &mut self,
        req: &Request<'_, '_>,
        peer: &Peer,
        client: IpAddr,
        out: &mut Vec<u8>,
    ) -> Outcome {
        if req.path() == METRICS_PATH {
            return self.metrics_page(req, peer, client, out);
        }
        // Pipelined requests are answered from one read without going back
        // to the socket: once the queued responses reach the high-water
        // mark, this one ends the connection (and the rest of the input is
        // discarded) instead of queueing without bound.
        let keep_alive_ok = out.len() < HTTP_OUT_HIGH;
        let hsts = self.hsts(peer);
        let outcome = http::respond(
            req,
            &self.shared.files,
            out,
            hsts,
            keep_alive_ok,
            self.stopping,
        );
        log::debug(
            "http request",
            &[
                ("peer", &peer.addr),
                ("method", &req.method),
                ("target", &log::Target(req.target)),
                ("status", &outcome.status),
            ],
        );
        Outcome::answered(outcome.keep_alive)
    }

    /// `POST /logout`: same-origin only (like the handshake), then the
    /// presented token (`Authorization: Bearer` or the cookie) is revoked
    /// and the cookie cleared.
    fn logout(&mut self, req: &Request<'_, '_>, peer: &Peer, out: &mut Vec<u8>) -> Outcome {
        let a = self.session_answer(req, peer, out);
        let keep_alive = a.keep_alive;
        let refused = |out: &mut Vec<u8>, status: u16, reason: &str| {
            log_refused("logout refused", peer.addr, status, reason);
            session::write_logout_refused(out, status, reason, a);
            Outcome::answered(keep_alive)
        };
        if req.method != "POST" {
            return refused(out, 405, "method_not_allowed");
        }
        let https = peer.secure || self.forwarded_https(peer, req);
        let host = req.host().expect("checked before the route");
        if let Err(refusal) = self
            .shared
            .origins
            .check(req.header_values("origin"), host, https)
        {
            return refused(out, 403, refusal.reason());
        }
        let token = match crate::security::credentials::session_token(req) {
            Credential::Token { token, .. } => token,
            Credential::Refused(reason) => return refused(out, 401, reason),
            Credential::Basic { .. } => return refused(out, 401, "unsupported_scheme"),
        };
        match self.auth.logout(token, self.unix_now) {
            Ok((user, revoke)) => {
                let (ids, users) = self.auth.revoked_len();
                log::info(
                    "logged out",
                    &[
                        ("peer", &peer.addr),
                        ("user", &user),
                        ("revoked_tokens", &ids),
                        ("revoked_users", &users),
                    ],
                );
                if matches!(revoke, Revoke::UserTokens(_)) {
                    log::limited(
                        log::LogLevel::Warn,
                        "revocation table full: every earlier token of the user is revoked",
                        ("setting", "auth.max_revoked_tokens"),
                        &[("user", &user), ("setting", &"auth.max_revoked_tokens")],
                    );
                }
                session::write_logged_out(out, &user, a);
                Outcome::LoggedOut { revoke, keep_alive }
            }
            Err(reason) => refused(out, 401, reason),
        }
    }

    /// How a `/logout` or `/session` answer goes out: it may keep an
    /// HTTP/1.1 connection without a body (a body is not read) or
    /// `Connection: close`, below the output high-water mark.
    fn session_answer(&self, req: &Request<'_, '_>, peer: &Peer, out: &[u8]) -> session::Answer {
        session::Answer {
            secure: peer.secure,
            hsts: self.hsts(peer),
            keep_alive: req.version == 1
                && !req.has_token("connection", "close")
                && !req.has_body()
                && out.len() < HTTP_OUT_HIGH,
        }
    }

    /// `GET /session`: whether the request carries a valid session, so
    /// that a page can decide between its login form and the WebSocket
    /// without a refused handshake.
    fn session(&mut self, req: &Request<'_, '_>, peer: &Peer, out: &mut Vec<u8>) -> Outcome {
        let a = self.session_answer(req, peer, out);
        let keep_alive = a.keep_alive;
        if req.method != "GET" && req.method != "HEAD" {
            session::write_session_method(out, a);
        } else {
            let required = self.auth.mode == AuthMode::Required;
            let found = match crate::security::credentials::session_token(req) {
                Credential::Token { token, .. } if required => {
                    self.auth.session(token, self.unix_now).ok()
                }
                _ => None,
            };
            let start = out.len();
            session::write_session(out, found.as_ref(), required, a);
            if req.method == "HEAD" {
                // The same head, without the body.
                let body = out[start..]
                    .windows(4)
                    .position(|w| w == b"\r\n\r\n")
                    .map_or(out.len(), |i| start + i + 4);
                out.truncate(body);
            }
        }
        Outcome::answered(keep_alive)
    }

    /// Whether `req` is for `/engine.io/`, Engine.IO without Socket.IO,
    /// served with `--app echo` (the conformance mode).
    fn is_engine_path(&self, req: &Request<'_, '_>) -> bool {
        req.path() == ENGINE_IO_PATH && self.shared.config.app == crate::config::AppKind::Echo
    }

    /// A request to the Engine.IO path (`socketio.path`): a CORS preflight,
    /// or the query in the protocol's order, then a long-polling request
    /// (for the loop, [`Outcome::Polling`]) or a WebSocket handshake like
    /// `ws.path`'s, except that credentials may wait for the CONNECT.
    fn socketio(&mut self, req: &Request<'_, '_>, peer: &Peer, out: &mut Vec<u8>) -> Outcome {
        use crate::proto::engineio::{self, EioError, Route, Transport};
        if req.method == "OPTIONS" {
            return self.preflight(req, peer, out);
        }
        let is_upgrade = req.has_token("upgrade", "websocket");
        let route = engineio::route(req.query().unwrap_or(""), req.method, is_upgrade);
        if let Ok(Route::Session { sid, .. }) = &route {
            if let Some(owner) = self.sessions.owner(sid) {
                return Outcome::Handoff(owner);
            }
        }
        let refused = match route {
            Err(e) => e,
            Ok(Route::Session { sid, .. }) if !self.sessions.knows(sid) => {
                EioError::SessionIdUnknown
            }
            Ok(Route::Handshake(Transport::WebSocket)) => {
                return self.socketio_upgrade(req, peer, None, out);
            }
            Ok(Route::Session {
                sid,
                transport: Transport::WebSocket,
            }) => return self.socketio_upgrade(req, peer, Some(sid), out),
            Ok(Route::Handshake(Transport::Polling)) => {
                return self.polling(req, peer, None, out);
            }
            Ok(Route::Session {
                sid,
                transport: Transport::Polling,
            }) => {
                if req.method != "GET" && req.method != "POST" {
                    EioError::BadRequest
                } else {
                    return self.polling(req, peer, Some(sid), out);
                }
            }
        };
        self.refuse_eio(req, peer, refused, None, out)
    }

    /// Answers an Engine.IO request with the protocol's error body.
    fn refuse_eio(
        &mut self,
        req: &Request<'_, '_>,
        peer: &Peer,
        refused: crate::proto::engineio::EioError,
        cors: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        log::limited(
            log::LogLevel::Info,
            "socket.io request refused",
            ("reason", refused.message()),
            &[
                ("peer", &peer.addr),
                ("status", &refused.status()),
                ("reason", &refused.message()),
                ("method", &req.method),
            ],
        );
        self.refused = Some((refused.status(), refused.message()));
        let mut extra = Vec::new();
        cors_headers(cors, &mut extra);
        let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
        response::write_json(
            out,
            refused.status(),
            &refused.body(),
            &extra,
            self.hsts(peer),
        );
        Outcome::Final
    }

    /// The Origin of a long-polling request (CORS, SPEC.md §4): `Ok` with
    /// the origin to name in `Access-Control-Allow-Origin` (none for a
    /// client that sent none), or the reason of the refusal.
    fn polling_origin(
        &self,
        req: &Request<'_, '_>,
        peer: &Peer,
    ) -> Result<Option<String>, &'static str> {
        let https = peer.secure || self.forwarded_https(peer, req);
        let host = req.host().expect("checked before the route");
        match self
            .shared
            .origins
            .check(req.header_values("origin"), host, https)
        {
            Ok(_) => Ok(req
                .header_values("origin")
                .next()
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(|v| v.trim().to_owned())),
            Err(refusal) => Err(refusal.reason()),
        }
    }

    /// A CORS preflight of the Engine.IO path: `204` naming the allowed
    /// origin, methods and headers, or `403` for an origin the policy
    /// refuses.
    fn preflight(&mut self, req: &Request<'_, '_>, peer: &Peer, out: &mut Vec<u8>) -> Outcome {
        use crate::proto::engineio::EioError;
        let origin = match self.polling_origin(req, peer) {
            Ok(Some(origin)) => origin,
            Ok(None) | Err(_) => {
                return self.refuse_eio(req, peer, EioError::Forbidden, None, out);
            }
        };
        let mut extra = Vec::new();
        cors_headers(Some(&origin), &mut extra);
        extra.push(("Access-Control-Allow-Methods", "GET, POST, OPTIONS".into()));
        let asked = req
            .header_values("access-control-request-headers")
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| {
                v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_, ".contains(&b))
            })
            .unwrap_or("content-type");
        extra.push(("Access-Control-Allow-Headers", asked.to_owned()));
        extra.push(("Access-Control-Max-Age", "600".into()));
        let keep_alive = self.session_answer(req, peer, out).keep_alive;
        let extra: Vec<(&str, &str)> = extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let head = response::Head {
            status: 204,
            content_type: "text/plain; charset=UTF-8",
            content_length: 0,
            keep_alive,
            cache: response::Cache::NoStore,
            hsts: self.hsts(peer),
        };
        response::write_head(out, head, &extra);
        Outcome::answered(keep_alive)
    }

    /// A long-polling request: its Origin (CORS), then for a new session
    /// the credentials of the request (they may also come with the
    /// CONNECT), for a `POST` its length (at most `maxPayload`).
    fn polling(
        &mut self,
        req: &Request<'_, '_>,
        peer: &Peer,
        sid: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        use crate::proto::engineio::EioError;
        let cors = match self.polling_origin(req, peer) {
            Ok(cors) => cors,
            Err(reason) => {
                log::debug(
                    "refused request",
                    &[("peer", &peer.addr), ("reason", &reason)],
                );
                return self.refuse_eio(req, peer, EioError::Forbidden, None, out);
            }
        };
        if req.header_values("transfer-encoding").next().is_some() {
            // Bodies come with a Content-Length (the clients send one):
            // nothing else frames them here.
            return self.refuse_eio(req, peer, EioError::BadRequest, cors.as_deref(), out);
        }
        // A GET with a body: its bytes are not read as the next request.
        let keep_alive = req.version == 1
            && !req.has_token("connection", "close")
            && (req.method == "POST" || !req.has_body())
            && out.len() < HTTP_OUT_HIGH;
        let what = match sid {
            None => {
                let (identity, credential) = self.sio_credential(req);
                let (user, expires_at, token) = match identity {
                    Identity::User {
                        name,
                        expires_at,
                        token,
                    } => (Some(name), expires_at, token),
                    Identity::Anonymous => (None, None, None),
                };
                PollWhat::Open(Upgraded {
                    user,
                    expires_at,
                    token,
                    protocol: None,
                    socketio: Some(credential),
                    probe: None,
                    engine_only: self.is_engine_path(req),
                })
            }
            Some(sid) if req.method == "GET" => PollWhat::Get {
                sid: sid.to_owned(),
            },
            Some(sid) => {
                let max = self.shared.config.limits.max_message_bytes;
                match content_length(req) {
                    None if req.has_body() => {
                        // Chunked: the reference client always sends a length.
                        return self.refuse_eio(
                            req,
                            peer,
                            EioError::BadRequest,
                            cors.as_deref(),
                            out,
                        );
                    }
                    Some(n) if n > max => PollWhat::TooLarge {
                        sid: sid.to_owned(),
                        length: n,
                    },
                    n => PollWhat::Post {
                        sid: sid.to_owned(),
                        need: n.unwrap_or(0) as usize,
                    },
                }
            }
        };
        Outcome::Polling(Box::new(Polling {
            what,
            cors,
            keep_alive,
            hsts: self.hsts(peer),
        }))
    }

    /// The credentials of a request that opens a Socket.IO session.
    fn sio_credential(&self, req: &Request<'_, '_>) -> (Identity, HandshakeCredential) {
        match self.auth.mode {
            AuthMode::None => (Identity::Anonymous, HandshakeCredential::NotRequired),
            AuthMode::Required => match self.auth.request_credential(req) {
                Credential::Token { token, .. } => {
                    match self.auth.verify_token(token, self.unix_now) {
                        Ok(id) => (id, HandshakeCredential::Verified),
                        Err(reason) => (Identity::Anonymous, HandshakeCredential::Refused(reason)),
                    }
                }
                Credential::Refused("missing") => {
                    (Identity::Anonymous, HandshakeCredential::Missing)
                }
                Credential::Refused(reason) => {
                    (Identity::Anonymous, HandshakeCredential::Refused(reason))
                }
                Credential::Basic { .. } => (
                    Identity::Anonymous,
                    HandshakeCredential::Refused("basic_not_allowed"),
                ),
            },
        }
    }

    /// The WebSocket handshake of a Socket.IO session: RFC 6455 checks,
    /// the Origin, and the credentials of the request if it has any. With
    /// `sid`, the WebSocket probes to take over that long-polling session.
    fn socketio_upgrade(
        &mut self,
        req: &Request<'_, '_>,
        peer: &Peer,
        sid: Option<&str>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        if let Err(e) = UpgradeRequest::check_request_line(req) {
            return self.refuse_handshake(out, peer, e);
        }
        let upgrade = match UpgradeRequest::from_request(req) {
            Ok(u) => u,
            Err(e) => return self.refuse_handshake(out, peer, e),
        };
        if let Err(reason) = self.check_origin(&upgrade, peer) {
            return self.refuse(out, peer, 403, reason, &[]);
        }
        let (identity, credential) = match sid {
            // The session's identity is the one it opened with.
            Some(_) => (Identity::Anonymous, HandshakeCredential::NotRequired),
            None => self.sio_credential(req),
        };
        let mut policy = AcceptAs(Some(identity));
        match handshake::respond(&upgrade, &mut policy, out) {
            Ok(accepted) => match accepted_upgrade(accepted, req, peer) {
                Outcome::Upgrade(mut up) => {
                    up.socketio = Some(credential);
                    if let Some(sid) = sid {
                        up.probe = Some(sid.into());
                    }
                    up.engine_only = self.is_engine_path(req);
                    Outcome::Upgrade(up)
                }
                other => other,
            },
            Err(reject) => self.refuse(out, peer, reject.status, reject.reason, &[]),
        }
    }

    /// The upgrade: RFC 6455 checks, the Origin (once), the credentials.
    fn upgrade(
        &mut self,
        req: &Request<'_, '_>,
        peer: &Peer,
        client: IpAddr,
        basic: Option<BasicResult>,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let upgrade = match UpgradeRequest::from_request(req) {
            Ok(u) => u,
            Err(e) => return self.refuse_handshake(out, peer, e),
        };
        let origin = match self.check_origin(&upgrade, peer) {
            Ok(checked) => checked,
            Err(reason) => return self.refuse(out, peer, 403, reason, &[]),
        };
        let basic_ok = basic_allowed(peer, &self.shared.proxies, req);
        if basic.is_none() && self.auth.mode == AuthMode::Required {
            if let Credential::Basic { username, password } =
                self.auth.credential(&upgrade, basic_ok)
            {
                // The password is checked off the loop; the head is routed
                // again with the result.
                if let Err(limited) = self.auth.login_allowed(client, self.now) {
                    log_login_limited(peer.addr, client, limited.retry_after_s);
                    self.stats.rate_limited.inc("login");
                    self.stats.rate_limited.inc("login");
                    let retry = limited.retry_after_s.to_string();
                    let extra = [("Retry-After", retry.as_str())];
                    return self.refuse(out, peer, 429, "too many login attempts", &extra);
                }
                return Outcome::CheckBasic { username, password };
            }
        }
        let mut gate = Gate::new(self.auth, origin, self.unix_now, basic_ok, self.protocols);
        if let Some(result) = basic {
            gate = gate.with_basic(result);
        }
        match handshake::respond(&upgrade, &mut gate, out) {
            Ok(accepted) => accepted_upgrade(accepted, req, peer),
            Err(reject) => {
                let extra: &[(&str, &str)] = match &reject.header {
                    Some(h) => std::slice::from_ref(h),
                    None => &[],
                };
                self.refuse(out, peer, reject.status, reject.reason, extra)
            }
        }
    }

    /// The Origin policy (SPEC.md §4), checked once: the proof it passed,
    /// or the reason of the `403` (the refused Origin goes to the debug log).
    fn check_origin(
        &self,
        upgrade: &UpgradeRequest<'_, '_, '_>,
        peer: &Peer,
    ) -> Result<OriginChecked, &'static str> {
        let req = upgrade.request();
        let https = peer.secure || self.forwarded_https(peer, req);
        let origins = req.header_values("origin");
        self.shared
            .origins
            .check(origins, upgrade.host(), https)
            .map_err(|refusal| {
                let origin = req.header_values("origin").next().unwrap_or_default();
                log::debug(
                    "refused request",
                    &[
                        ("peer", &peer.addr),
                        ("target", &log::Target(req.target)),
                        ("origin", &log::Header("origin", origin)),
                    ],
                );
                refusal.reason()
            })
    }

    /// Whether a trusted proxy says the client reached it over https.
    fn forwarded_https(&self, peer: &Peer, req: &Request<'_, '_>) -> bool {
        self.shared.proxies.contains(canonical(peer.addr.ip()))
            && matches!(
                req.single_header("x-forwarded-proto"),
                handshake::Single::One(p) if p.trim_ascii().eq_ignore_ascii_case(b"https")
            )
    }

    /// The per-client checks of SPEC.md §2 between parsing and the method:
    /// connections per IP (`429`), handshakes per IP on the WebSocket path
    /// (`429`), the global cap (`503`, decided at `accept`). Returns the
    /// refusal: status, reason and `Retry-After`.
    fn admission(
        &mut self,
        peer: &Peer,
        charge: &mut Charge,
        client: IpAddr,
        req: &Request<'_, '_>,
    ) -> Option<(u16, &'static str, String)> {
        let shared = self.shared;
        let max = shared.config.limits.max_connections_per_ip;
        if charge.ip() != Some(client) && shared.proxies.contains(canonical(peer.addr.ip())) {
            // Behind a proxy each request on a connection may come from
            // another client (proxies reuse upstream connections): the
            // connection counts against the client of its latest request.
            if let Some(old) = charge.ip() {
                self.quotas.conns.lock().release(old);
            }
            *charge = if self.quotas.conns.lock().charge(client, max) {
                Charge::Ip(client)
            } else {
                Charge::OverQuota(client)
            };
        }
        let limited = |limit: &'static str| {
            log::limited(
                log::LogLevel::Warn,
                "rate limited",
                ("limit", limit),
                &[("peer", &peer.addr), ("client", &client), ("limit", &limit)],
            );
        };
        if matches!(charge, Charge::OverQuota(_)) {
            limited("limits.max_connections_per_ip");
            self.stats.rate_limited.inc("connections_per_ip");
            return Some((429, "too many connections from this address", "1".into()));
        }
        if self.is_handshake(req) {
            let checked = self.quotas.handshakes.lock().check(client, self.now);
            if let Err(l) = checked {
                limited("rate.handshakes_per_ip_per_s");
                self.stats.rate_limited.inc("handshake");
                return Some((
                    429,
                    "too many handshakes from this address",
                    l.retry_after_s.to_string(),
                ));
            }
        }
        if peer.over_capacity {
            return Some((503, "server at max_connections", "1".into()));
        }
        None
    }

    /// Checks a `POST /login` head in order: method, rate, content type and
    /// length (SPEC.md §5).
    fn login_head(
        &mut self,
        req: &Request<'_, '_>,
        peer: &Peer,
        client: IpAddr,
        out: &mut Vec<u8>,
    ) -> Outcome {
        if let Err(r) = login::check_method(req) {
            return self.refuse_login(out, peer, r, &[]);
        }
        if let Err(limited) = self.auth.login_allowed(client, self.now) {
            log_login_limited(peer.addr, client, limited.retry_after_s);
            self.stats.rate_limited.inc("login");
            let retry = limited.retry_after_s.to_string();
            return self.refuse_login(out, peer, login::RATE_LIMITED, &[("Retry-After", &retry)]);
        }
        match login::check_head(req) {
            Err(r) => self.refuse_login(out, peer, r, &[]),
            Ok(need) => {
                // curl waits for `100 Continue` before larger bodies.
                if need > 0 && req.has_token("expect", "100-continue") {
                    response::write_continue(out, self.hsts(peer));
                }
                Outcome::LoginBody { need }
            }
        }
    }

    /// A whole login body: the credentials to check, or the refusal.
    pub fn login_body(
        &mut self,
        body: &[u8],
        peer: &Peer,
        out: &mut Vec<u8>,
    ) -> Result<login::LoginBody, Outcome> {
        login::parse_body(body).map_err(|r| self.refuse_login(out, peer, r, &[]))
    }

    /// The answer to a checked login: a token and its cookie, or `401`.
    pub fn login_checked(
        &mut self,
        username: &str,
        ok: bool,
        peer: &Peer,
        out: &mut Vec<u8>,
    ) -> Outcome {
        if !ok {
            return self.refuse_login(out, peer, login::INVALID_CREDENTIALS, &[]);
        }
        // The user may have been removed while the password was checked.
        let Some(jwt) = self.auth.issue(username, self.unix_now) else {
            return self.refuse_login(out, peer, login::INVALID_CREDENTIALS, &[]);
        };
        login::write_success(
            &jwt,
            self.auth.token_ttl_s,
            peer.secure,
            self.hsts(peer),
            out,
        );
        log::info(
            "login succeeded",
            &[("peer", &peer.addr), ("user", &username)],
        );
        Outcome::Final
    }

    /// A login refused: its JSON answer and a log line.
    pub fn refuse_login(
        &self,
        out: &mut Vec<u8>,
        peer: &Peer,
        refusal: login::Refusal,
        extra: &[(&str, &str)],
    ) -> Outcome {
        log_refused("login refused", peer.addr, refusal.status, refusal.error);
        if refusal.status == 401 {
            self.stats.auth_failures.inc(refusal.error);
        }
        login::write_refusal(refusal, extra, self.hsts(peer), out);
        Outcome::Final
    }

    fn refuse_handshake(&mut self, out: &mut Vec<u8>, peer: &Peer, e: HandshakeError) -> Outcome {
        let header = e.extra_header();
        self.refuse(out, peer, e.status(), e.reason(), header.as_slice())
    }

    /// A request refused: its error response and a log line.
    pub fn refuse(
        &mut self,
        out: &mut Vec<u8>,
        peer: &Peer,
        status: u16,
        reason: &'static str,
        extra: &[(&str, &str)],
    ) -> Outcome {
        self.refused = Some((status, reason));
        refuse(out, peer.addr, status, reason, extra, self.hsts(peer));
        Outcome::Final
    }

    /// A request on the redirect listener: a `308` to https.
    fn redirect(
        &mut self,
        req: &Request<'_, '_>,
        peer: &Peer,
        port: u16,
        out: &mut Vec<u8>,
    ) -> Outcome {
        if let Some((status, reason)) = host_refusal(req, &self.shared.hosts) {
            return self.refuse(out, peer, status, reason, &[]);
        }
        let location = redirect_location(req, &self.shared.redirect_host, port);
        // The target is not logged: its query may carry a token.
        log::debug("redirect to https", &[("peer", &peer.addr)]);
        let extra = [("Location", location.as_str())];
        response::write_error(out, 308, "use https", &extra, false);
        Outcome::Final
    }

    fn hsts(&self, peer: &Peer) -> bool {
        peer.secure && self.shared.config.tls.hsts
    }
}

/// The (limited) log line of a refused request: `what` (`"login
/// refused"`, ...), with the peer, the status and the reason.
fn log_refused(what: &'static str, peer: SocketAddr, status: u16, reason: &str) {
    log::limited(
        log::LogLevel::Info,
        what,
        ("reason", reason),
        &[("peer", &peer), ("status", &status), ("reason", &reason)],
    );
}

/// Writes an error response and its (limited) log line: the one way a
/// request or a connection is refused over HTTP.
pub fn refuse(
    out: &mut Vec<u8>,
    peer: SocketAddr,
    status: u16,
    reason: &str,
    extra: &[(&str, &str)],
    hsts: bool,
) {
    log_refused("handshake refused", peer, status, reason);
    response::write_error(out, status, reason, extra, hsts);
}

/// Response bytes an HTTP connection may queue before it is not read, and
/// before a pipelined request ends the connection.
pub const HTTP_OUT_HIGH: usize = 256 * 1024;

fn log_login_limited(peer: SocketAddr, client: IpAddr, retry_after_s: u64) {
    log::limited(
        log::LogLevel::Warn,
        "rate limited",
        ("limit", "rate.logins_per_ip_per_min"),
        &[
            ("peer", &peer),
            ("client", &client),
            ("limit", &"rate.logins_per_ip_per_min"),
            ("retry_after_s", &retry_after_s),
        ],
    );
}

/// The `101` is written: log it and say who connected.
fn accepted_upgrade(accepted: Accepted<Identity>, req: &Request<'_, '_>, peer: &Peer) -> Outcome {
    let (user, expires_at, token) = match accepted.identity {
        Identity::User {
            name,
            expires_at,
            token,
        } => (Some(name), expires_at, token),
        Identity::Anonymous => (None, None, None),
    };
    log::info(
        "handshake accepted",
        &[
            ("peer", &peer.addr),
            ("target", &log::Target(req.target)),
            ("protocol", &accepted.protocol.unwrap_or("-")),
            ("user", &user.as_deref().unwrap_or("-")),
        ],
    );
    Outcome::Upgrade(Upgraded {
        user,
        expires_at,
        token,
        protocol: accepted.protocol,
        socketio: None,
        probe: None,
        engine_only: false,
    })
}

/// A policy that accepts with the identity decided before (a Socket.IO
/// handshake, whose credentials may also come later), and no subprotocol.
struct AcceptAs(Option<Identity>);

impl handshake::Policy for AcceptAs {
    type Identity = Identity;

    fn decide(&mut self, _: &UpgradeRequest<'_, '_, '_>) -> handshake::Decision<Identity> {
        handshake::Decision::Accept(handshake::Accept {
            protocol: None,
            identity: self.0.take().unwrap_or_default(),
        })
    }
}

/// Checks the request's `Host` (SPEC.md §2): `400` when it is missing,
/// repeated or not RFC 3986 `host [":" port]`, `421` when it is not one of
/// `allowed_hosts`. Returns the refusal's status and reason.
fn host_refusal(req: &Request<'_, '_>, hosts: &AllowedHosts) -> Option<(u16, &'static str)> {
    match req.host() {
        Ok(host) if hosts.allows(host) => None,
        Ok(_) => Some((421, "host not allowed")),
        Err(e) => Some((e.status(), e.reason())),
    }
}

/// Whether `Authorization: Basic` may be used: over TLS, or from a loopback
/// peer that is not a proxy forwarding someone else's request.
fn basic_allowed(peer: &Peer, proxies: &TrustedProxies, req: &Request<'_, '_>) -> bool {
    let ip = canonical(peer.addr.ip());
    let proxied = proxies.contains(ip)
        || req.header_values("x-forwarded-for").next().is_some()
        || req.header_values("forwarded").next().is_some();
    peer.secure || (ip.is_loopback() && !proxied)
}

/// Where the redirect listener sends a request: https at the configured
/// name (`tls.redirect_host`, else the certificate's name), on `port`
/// unless the name carries one, with the request's target. The request's
/// own `Host` is never used, so the redirect cannot be pointed elsewhere.
fn redirect_location(req: &Request<'_, '_>, to: &RedirectHost, port: u16) -> String {
    let port = to.port.unwrap_or(port);
    if port == 443 {
        format!("https://{}{}", to.name, req.target)
    } else {
        format!("https://{}:{port}{}", to.name, req.target)
    }
}

#[cfg(test)]
mod tests;
