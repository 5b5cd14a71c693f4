//! Settings: defaults, then `--config FILE` (JSON), then command-line flags.
//!
//! Every limit is a named setting with a safe default; the reason for each
//! default is on its field. [`Config::validate`] turns a bad value into a
//! one-line error naming the setting.
//!
//! This module is plain data at the bottom of the crate: it imports no
//! other module (the policies built from these settings check their own
//! syntax when the server is built, see `Server::check_config`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which application answers WebSocket messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    /// The hero look-up application (SPEC.md §6).
    Hero,
    /// Echo every message back, for conformance testing.
    Echo,
}

/// How many event loops run (`workers`): a number, or `"auto"` for one
/// per CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// This many.
    Count(usize),
    /// One per CPU the process may use.
    Auto,
}

impl Serialize for Workers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Workers::Count(n) => s.serialize_u64(*n as u64),
            Workers::Auto => s.serialize_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for Workers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Workers, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Workers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of event loops or \"auto\"")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Workers, E> {
                Ok(Workers::Count(usize::try_from(n).unwrap_or(usize::MAX)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Workers, E> {
                match v {
                    "auto" => Ok(Workers::Auto),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Workers {
    /// The number of loops to run.
    pub fn resolve(self) -> usize {
        match self {
            Workers::Count(n) => n,
            Workers::Auto => std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(MAX_WORKERS),
        }
    }
}

impl Default for Workers {
    fn default() -> Self {
        Workers::Count(1)
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `time LEVEL message key=value ...`
    Text,
    /// One JSON object per line.
    Json,
}

/// Least severe level that is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Failures of the server itself.
    Error,
    /// Insecure settings, resource exhaustion.
    Warn,
    /// Start-up, handshakes, closes.
    Info,
    /// Every HTTP request and more.
    Debug,
}

/// WebSocket endpoint settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsConfig {
    /// Path that accepts upgrades (`ws.path`).
    pub path: String,
}

impl Default for WsConfig {
    fn default() -> Self {
        WsConfig { path: "/ws".into() }
    }
}

/// Socket.IO endpoint settings (`socketio.*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocketIoConfig {
    /// Path of the Engine.IO requests (`socketio.path`).
    pub path: String,
    /// Milliseconds between the server's pings.
    pub ping_interval_ms: u64,
    /// Milliseconds to wait for a pong before closing the session.
    pub ping_timeout_ms: u64,
    /// Milliseconds to wait for the first CONNECT.
    pub connect_timeout_ms: u64,
    /// Most binary attachments of one packet.
    pub max_attachments: usize,
    /// The official `socket.io-client` browser bundle
    /// (`node_modules/socket.io-client/dist/socket.io.min.js`), read at
    /// start-up and served at `/socket.io/socket.io.min.js` for the
    /// `/socketio.html` demo page.
    pub client_bundle: Option<PathBuf>,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        SocketIoConfig {
            path: "/socket.io/".into(),
            ping_interval_ms: 25_000,
            ping_timeout_ms: 20_000,
            connect_timeout_ms: 45_000,
            max_attachments: 10,
            client_bundle: None,
        }
    }
}

/// A rule of `channels` (SPEC.md §10): who may subscribe to the channels
/// `pattern` names. The first rule whose pattern matches decides; a channel
/// no rule names is refused (`forbidden`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRule {
    /// A channel name, or a prefix ending in `*` (`prices.*`; `*` alone is
    /// every channel).
    pub pattern: String,
    /// Who may subscribe: `"authenticated"` (every user who logged in;
    /// every client when `auth.mode` is none) and `"user:NAME"` entries.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Which API keys may publish here through `POST /api/publish`:
    /// `"key:NAME"` entries (the server's own application always may).
    #[serde(default)]
    pub publish: Vec<String>,
}

/// The channels of the default settings: `lookups`, the demo's feed of hero
/// look-ups, open to every authenticated user.
pub fn default_channels() -> Vec<ChannelRule> {
    vec![ChannelRule {
        pattern: "lookups".into(),
        subscribe: vec!["authenticated".into()],
        publish: Vec::new(),
    }]
}

/// The publish API's settings (`api.*`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The API keys (`palisade apikeys add NAME --keys-file FILE`); without
    /// it `POST /api/publish` refuses every request.
    pub keys_file: Option<PathBuf>,
}

/// Fan-out across instances (`cluster.*`, SPEC.md §10).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://[[user]:password@]host[:port]`, or `rediss://` for TLS:
    /// publications go through this Redis to every instance, in the
    /// protocol of the Socket.IO Redis adapter. Unset: one instance.
    pub redis_url: Option<String>,
    /// The CA certificates (PEM) a `rediss://` server's certificate must
    /// chain to (default: the system's bundle).
    pub redis_ca_file: Option<PathBuf>,
    /// The channel prefix, the Socket.IO adapter's `key` option.
    pub prefix: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            redis_ca_file: None,
            prefix: "socket.io".into(),
        }
    }
}

/// Metrics settings (`metrics.*`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Networks (CIDRs) besides loopback whose clients may read
    /// `/metrics`; everyone else gets `403`. Behind a trusted proxy the
    /// client is the one `X-Forwarded-For` names.
    pub allow: Vec<String>,
}

/// Logging settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `log.format`: `text` or `json`.
    pub format: LogFormat,
    /// `log.level`: `error`, `warn`, `info` or `debug`.
    pub level: LogLevel,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: LogLevel::Info,
        }
    }
}

/// TLS settings: with `cert` and `key` the listener speaks TLS only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (`tls.cert`, `--tls-cert`).
    pub cert: Option<PathBuf>,
    /// PEM private key (`tls.key`, `--tls-key`).
    pub key: Option<PathBuf>,
    /// Lowest version accepted: `"1.2"` (default) or `"1.3"`.
    pub min_version: MinVersion,
    /// Send `Strict-Transport-Security` on https responses.
    pub hsts: bool,
    /// Address of a plain listener that answers every request with a `308`
    /// to https (off by default).
    pub redirect_listen: Option<String>,
    /// Where the redirect listener sends clients: `host[:port]` (the port
    /// defaults to the TLS listener's). Unset: the certificate's first DNS
    /// name, else the listen address. Never taken from a request's `Host`.
    pub redirect_host: Option<String>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            min_version: MinVersion::Tls12,
            hsts: true,
            redirect_listen: None,
            redirect_host: None,
        }
    }
}

/// Lowest TLS version to accept (`tls.min_version`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MinVersion {
    /// TLS 1.2 and 1.3.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "1.3")]
    Tls13,
}

/// Clock skew tolerated on a token's `exp` and `iat` by default, in seconds.
pub const DEFAULT_LEEWAY_S: u64 = 30;

/// Whether the handshake demands credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every WebSocket handshake must carry valid credentials (default).
    Required,
    /// No credentials are checked: anyone who passes the origin policy
    /// connects. Logged as a warning at start-up.
    None,
}

/// Authentication settings (SPEC.md §5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `required` (default) or `none`.
    pub mode: AuthMode,
    /// JSON users file; without one the server creates a `demo` user with
    /// a random password and prints it once at start-up.
    pub users_file: Option<PathBuf>,
    /// File holding the JWT secret (at least 32 bytes); random per process
    /// when unset, so tokens do not survive a restart.
    pub jwt_secret_file: Option<PathBuf>,
    /// Token lifetime in seconds.
    pub token_ttl_s: u64,
    /// Clock skew tolerated on a token's `exp` and `iat`, in seconds; a
    /// connection is closed `token expired` at `exp` plus this much.
    pub leeway_s: u64,
    /// Accept `?token=` on the WebSocket URL (for clients that cannot set
    /// headers; the token then shows in proxy logs, so it can be turned off).
    pub allow_query_token: bool,
    /// Threads verifying passwords (PBKDF2 is deliberately slow and never
    /// runs on the event loop).
    pub hash_workers: usize,
    /// Verifications waiting for a worker; one more is answered `503`.
    pub hash_queue: usize,
    /// Token ids revoked by `POST /logout` held at most (each until its
    /// token expires); beyond it a log-out revokes all of the user's
    /// earlier tokens instead.
    pub max_revoked_tokens: usize,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Required,
            users_file: None,
            jwt_secret_file: None,
            token_ttl_s: 3600,
            leeway_s: DEFAULT_LEEWAY_S,
            allow_query_token: true,
            hash_workers: 1,
            hash_queue: 16,
            max_revoked_tokens: DEFAULT_MAX_REVOKED_TOKENS,
        }
    }
}

/// Rate limits (SPEC.md §8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    /// WebSocket handshakes per client IP per second (bursts of twice
    /// that); `429` with `Retry-After` beyond.
    pub handshakes_per_ip_per_s: u32,
    /// Messages per connection per second (bursts of twice that); beyond,
    /// messages are dropped with one `rate_limited` error event, and a
    /// client that keeps sending for another burst is closed `1008`.
    pub messages_per_conn_per_s: u32,
    /// `POST /login` attempts (and Basic handshakes) per client IP per
    /// minute, as a token bucket of that size refilled evenly; `429` beyond.
    pub logins_per_ip_per_min: u32,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            handshakes_per_ip_per_s: 50,
            messages_per_conn_per_s: 200,
            logins_per_ip_per_min: 10,
        }
    }
}

/// Resource limits (SPEC.md §8).
///
/// Worst-case memory per connection is about
/// `max_request_head_bytes + max_message_bytes + max_outbound_bytes +
/// max_message_bytes + 64 KiB` (head, reassembly, queued replies, one reply
/// over the queue cap, one read held back at the high-water mark) plus
/// about 200 bytes of state; the server as a whole is bounded by
/// `max_connections` times that. Idle connections hold no buffers at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Request head cap (431 beyond). 8 KiB matches common proxies and is
    /// ample for a browser's upgrade request with cookies.
    pub max_request_head_bytes: usize,
    /// Header field cap (431 beyond). Browsers send 15–25.
    pub max_headers: usize,
    /// Time to receive a complete request head (408 / close after). Long
    /// enough for a slow mobile link, short enough to defeat slowloris.
    pub handshake_timeout_ms: u64,
    /// Largest frame payload (1009 beyond), decided from the frame header.
    pub max_frame_bytes: u64,
    /// Largest message, all fragments together (1009 beyond).
    pub max_message_bytes: u64,
    /// Most frames in one message (1009 beyond); stops floods of empty
    /// continuation frames.
    pub max_fragments: u32,
    /// Outbound bytes queued before the peer counts as a slow consumer
    /// (closed 1008); reading stops at half of it (backpressure).
    pub max_outbound_bytes: usize,
    /// Silence before the server pings; as long again without a frame and
    /// the connection is dropped.
    pub idle_timeout_ms: u64,
    /// Wait for the peer's close frame after the server's.
    pub close_timeout_ms: u64,
    /// Open connections at most (503 beyond).
    pub max_connections: usize,
    /// Open connections from one client IP (`429` beyond), counted from the
    /// moment a connection is accepted, before it sends anything.
    pub max_connections_per_ip: u32,
    /// Connections that have not finished their handshake (TCP accepted,
    /// TLS or the HTTP request head not complete, a login body not read):
    /// when this many are waiting, the one silent the longest is closed to
    /// admit a new one, so sockets that never send cannot keep clients that
    /// send their request at once from getting in. Unset: a quarter of
    /// `max_connections`.
    pub max_pending_handshakes: Option<usize>,
    /// Connections the kernel may queue before the loop accepts them
    /// (`listen(2)` backlog; the kernel caps it at `net.core.somaxconn`).
    /// 128, the usual default, overflows under bursts and costs each
    /// dropped client a one-second SYN retransmit.
    pub listen_backlog: u32,
    /// Channels one connection may subscribe to at once (SPEC.md §10).
    pub max_subscriptions: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        // The core's defaults are the same numbers (palisade_proto::Limits;
        // a test in net keeps them equal).
        LimitsConfig {
            max_request_head_bytes: 8192,
            max_headers: 64,
            handshake_timeout_ms: 5_000,
            max_frame_bytes: 65_536,
            max_message_bytes: 65_536,
            max_fragments: 1024,
            max_outbound_bytes: 1 << 20,
            idle_timeout_ms: 30_000,
            close_timeout_ms: 3_000,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_pending_handshakes: None,
            listen_backlog: 1024,
            max_subscriptions: 64,
        }
    }
}

impl LimitsConfig {
    /// `max_pending_handshakes`, or its default of a quarter of
    /// `max_connections` (at least 1).
    pub fn pending_cap(&self) -> usize {
        self.max_pending_handshakes
            .unwrap_or((self.max_connections / 4).max(1))
    }

    /// Time allowed for a request head.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

/// All settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on. Loopback by default: exposing the server is a
    /// decision the operator makes.
    pub listen: String,
    /// Application behind `ws.path`.
    pub app: AppKind,
    /// JSON file of heroes (`{"id": "Real Name", ...}`) replacing the built-in ones.
    pub heroes: Option<PathBuf>,
    /// Directory served instead of the embedded demo page (read at start-up).
    pub static_dir: Option<PathBuf>,
    /// WebSocket endpoint.
    pub ws: WsConfig,
    /// Socket.IO endpoint.
    pub socketio: SocketIoConfig,
    /// TLS.
    pub tls: TlsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Metrics.
    pub metrics: MetricsConfig,
    /// Who may subscribe and publish to which channels (SPEC.md §10).
    pub channels: Vec<ChannelRule>,
    /// The publish API.
    pub api: ApiConfig,
    /// Fan-out across instances through Redis.
    pub cluster: ClusterConfig,
    /// Origins allowed to open WebSockets (`https://app.example.com`);
    /// empty means the server's own host only; `"*"` allows any (warned).
    pub allowed_origins: Vec<String>,
    /// Refuse handshakes without an `Origin` (non-browser clients) too.
    pub require_origin: bool,
    /// Host names requests may carry in `Host` (any port); another host is
    /// `421`. Empty: on a loopback listener `localhost`, `127.0.0.1`,
    /// `[::1]` and the listen address; on any other listener every host (a
    /// start-up line recommends setting it). `"*"` allows any (warned).
    pub allowed_hosts: Vec<String>,
    /// Proxies (CIDRs) whose `X-Forwarded-For` names the client IP.
    pub trusted_proxies: Vec<String>,
    /// On SIGINT or SIGTERM: time for clients to answer the `1001` close
    /// before the server exits anyway.
    pub shutdown_grace_ms: u64,
    /// Event loops, each on its own thread with its own listener
    /// (`SO_REUSEPORT`): a number, or `"auto"` for one per CPU.
    pub workers: Workers,
    /// After a turn of the event loop that had events, keep polling
    /// without sleeping for this long before blocking again: lower latency
    /// for a price in CPU (the loop spins while traffic is steady). 0, the
    /// default, always sleeps in `epoll_wait`.
    pub busy_poll_us: u64,
    /// Authentication.
    pub auth: AuthConfig,
    /// Rate limits.
    pub rate: RateConfig,
    /// Resource limits.
    pub limits: LimitsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            app: AppKind::Hero,
            heroes: None,
            static_dir: None,
            ws: WsConfig::default(),
            socketio: SocketIoConfig::default(),
            tls: TlsConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
            channels: default_channels(),
            api: ApiConfig::default(),
            cluster: ClusterConfig::default(),
            allowed_origins: Vec::new(),
            require_origin: false,
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            shutdown_grace_ms: 5_000,
            workers: Workers::default(),
            busy_poll_us: 0,
            auth: AuthConfig::default(),
            rate: RateConfig::default(),
            limits: LimitsConfig::default(),
        }
    }
}

/// A setting that cannot be used; the message names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Default of `auth.max_revoked_tokens` (about 100 bytes each).
pub const DEFAULT_MAX_REVOKED_TOKENS: usize = 10_000;

/// Most event loops (`workers`).
pub const MAX_WORKERS: usize = 64;

/// Largest message or frame cap accepted: 1 GiB.
pub const MAX_MESSAGE_CAP: u64 = 1 << 30;

/// The allowed range of every numeric setting: (name, min, max).
const RANGES: &[(&str, u64, u64)] = &[
    ("limits.max_request_head_bytes", 256, 1 << 20),
    ("limits.max_headers", 8, 1024),
    ("limits.handshake_timeout_ms", 1, 600_000),
    ("limits.max_frame_bytes", 125, MAX_MESSAGE_CAP),
    ("limits.max_message_bytes", 125, MAX_MESSAGE_CAP),
    ("limits.max_fragments", 1, 1 << 24),
    ("limits.max_outbound_bytes", 1024, 1 << 32),
    ("limits.idle_timeout_ms", 10, 86_400_000),
    ("limits.close_timeout_ms", 1, 600_000),
    ("limits.listen_backlog", 1, 65_535),
    ("limits.max_subscriptions", 0, 100_000),
    ("limits.max_connections", 1, 1 << 24),
    ("limits.max_connections_per_ip", 1, 1 << 24),
    ("shutdown_grace_ms", 0, 600_000),
    ("busy_poll_us", 0, 10_000),
    ("auth.token_ttl_s", 1, 31_536_000),
    ("auth.leeway_s", 0, 3_600),
    ("auth.hash_workers", 1, 64),
    ("auth.hash_queue", 1, 4096),
    ("auth.max_revoked_tokens", 1, 10_000_000),
    ("socketio.ping_interval_ms", 10, 3_600_000),
    ("socketio.ping_timeout_ms", 10, 3_600_000),
    ("socketio.connect_timeout_ms", 10, 3_600_000),
    ("socketio.max_attachments", 0, 1_000),
    ("rate.handshakes_per_ip_per_s", 1, 1_000_000),
    ("rate.messages_per_conn_per_s", 1, 10_000_000),
    ("rate.logins_per_ip_per_min", 1, 1_000_000),
];

impl Config {
    /// Reads a JSON config file on top of the defaults.
    pub fn from_json(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ConfigError(format!("{origin}: not valid JSON: {e}")))?;
        let defaults = serde_json::to_value(Config::default()).expect("defaults serialize");
        check_keys(&value, &defaults, "", origin)?;
        serde_json::from_value(value.clone()).map_err(|e| {
            // Name the setting: the first one that fails on its own.
            match culprit(&value, &defaults, "") {
                Some((path, why)) => ConfigError(format!("{origin}: {path}: {why}")),
                None => ConfigError(format!("{origin}: {e}")),
            }
        })
    }

    /// The listen address as a socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            ConfigError(format!(
                "listen: {:?} is not an address like 127.0.0.1:8080 or [::1]:8080",
                self.listen
            ))
        })
    }

    /// Checks ranges and relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        let json = serde_json::to_value(self).expect("settings serialize");
        for &(name, min, max) in RANGES {
            let value = name.split('.').fold(&json, |v, key| &v[key]);
            range(name, value.as_u64().expect("a numeric setting"), min, max)?;
        }
        if let Workers::Count(n) = self.workers {
            range("workers", n as u64, 1, MAX_WORKERS as u64)?;
        }
        if let Some(p) = self.limits.max_pending_handshakes {
            let max = self.limits.max_connections as u64;
            range("limits.max_pending_handshakes", p as u64, 1, max)?;
        }
        self.validate_tls()?;
        let prefix = &self.cluster.prefix;
        if prefix.is_empty() || prefix.len() > 64 || prefix.contains(['#', '*', '?', '[']) {
            return Err(ConfigError(format!(
                "cluster.prefix: {prefix:?} must be 1 to 64 bytes without # * ? ["
            )));
        }
        if !self.ws.path.starts_with('/') || self.ws.path.contains(['?', '#', ' ']) {
            return Err(ConfigError(format!(
                "ws.path: {:?} must be an absolute path without query or spaces",
                self.ws.path
            )));
        }
        let sio = &self.socketio.path;
        if !sio.starts_with('/') || sio.contains(['?', '#', ' ']) || *sio == self.ws.path {
            return Err(ConfigError(format!(
                "socketio.path: {sio:?} must be an absolute path without query or spaces, other than ws.path"
            )));
        }
        Ok(())
    }

    /// The certificate and key come together; a redirect listener needs them.
    fn validate_tls(&self) -> Result<(), ConfigError> {
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError(
                "tls.cert and tls.key must be set together".into(),
            ));
        }
        if let Some(r) = &self.tls.redirect_listen {
            if self.tls.cert.is_none() {
                return Err(ConfigError(
                    "tls.redirect_listen needs tls.cert and tls.key".into(),
                ));
            }
            if r.parse::<SocketAddr>().is_err() {
                return Err(ConfigError(format!(
                    "tls.redirect_listen: {r:?} is not an address like 127.0.0.1:8080"
                )));
            }
        }
        Ok(())
    }
}

fn range(name: &str, v: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(ConfigError(format!(
            "{name}: {v} is out of range ({min} to {max})"
        )));
    }
    Ok(())
}

/// The first setting in `value` that does not deserialize when it alone
/// replaces its default: its dotted path and why, in words.
fn culprit(value: &Value, defaults: &Value, prefix: &str) -> Option<(String, String)> {
    let Value::Object(map) = value else {
        return None;
    };
    for (key, v) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let default = path.split('.').fold(defaults, |d, k| &d[k]);
        if v.is_object() && default.is_object() {
            if let Some(found) = culprit(v, defaults, &path) {
                return Some(found);
            }
            continue;
        }
        let mut trial = defaults.clone();
        let mut slot = &mut trial;
        for k in path.split('.') {
            slot = &mut slot[k];
        }
        *slot = v.clone();
        if let Err(e) = serde_json::from_value::<Config>(trial) {
            return Some((path, plain_type_error(&e.to_string())));
        }
    }
    None
}

/// serde's `invalid type: string "big", expected usize` in words a
/// settings file's author reads: `expected a whole number (0 or more), got
/// the string "big"`.
fn plain_type_error(e: &str) -> String {
    let Some(rest) = e.strip_prefix("invalid type: ") else {
        return e.to_owned();
    };
    let (got, expected) = rest.split_once(", expected ").unwrap_or((rest, "?"));
    let expected = match expected {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number (0 or more)",
        "i64" | "i32" => "a whole number",
        "a boolean" | "bool" => "true or false",
        "a string" => "a string",
        "f64" | "f32" => "a number",
        other => other,
    };
    let got = got
        .strip_prefix("string ")
        .map_or_else(|| got.to_owned(), |s| format!("the string {s}"));
    format!("expected {expected}, got {got}")
}

/// The known setting nearest to `path`: a typo of a few edits (one per
/// five characters).
fn nearest(path: &str, defaults: &Value) -> Option<String> {
    fn paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
        if let Value::Object(m) = v {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                paths(v, &p, out);
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    paths(defaults, "", &mut all);
    all.into_iter()
        .map(|p| (edit_distance(path, &p), p))
        .filter(|(d, _)| *d <= (path.len() / 5).max(1))
        .min()
        .map(|(_, p)| p)
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// Refuses keys the defaults do not have, naming them with their dotted path.
fn check_keys(
    value: &Value,
    defaults: &Value,
    prefix: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    let Value::Object(map) = value else {
        let what = if prefix.is_empty() {
            "the file"
        } else {
            prefix
        };
        return Err(ConfigError(format!(
            "{origin}: {what} must be a JSON object"
        )));
    };
    for (key, v) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match defaults.get(key) {
            None => {
                let root = serde_json::to_value(Config::default()).expect("defaults serialize");
                let hint = nearest(&path, &root)
                    .map(|n| format!(" (did you mean `{n}`?)"))
                    .unwrap_or_default();
                return Err(ConfigError(format!(
                    "{origin}: unknown setting `{path}`{hint}"
                )));
            }
            Some(d @ Value::Object(_)) => check_keys(v, d, &path, origin)?,
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_setting_and_suggest_the_nearest_one() {
        let e = Config::from_json(r#"{"limits":{"max_connections":"big"}}"#, "c.json").unwrap_err();
        assert_eq!(
            e.0,
            r#"c.json: limits.max_connections: expected a whole number (0 or more), got the string "big""#
        );
        let e = Config::from_json(r#"{"tls":{"hsts":"yes"}}"#, "c.json").unwrap_err();
        assert_eq!(
            e.0,
            r#"c.json: tls.hsts: expected true or false, got the string "yes""#
        );
        let e = Config::from_json(r#"{"limits":{"max_conections":5}}"#, "c.json").unwrap_err();
        assert_eq!(
            e.0,
            "c.json: unknown setting `limits.max_conections` (did you mean `limits.max_connections`?)"
        );
        let e = Config::from_json(r#"{"colour":1}"#, "c.json").unwrap_err();
        assert_eq!(e.0, "c.json: unknown setting `colour`");
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080");
        let l = &c.limits;
        assert_eq!(
            (
                l.max_request_head_bytes,
                l.max_headers,
                l.handshake_timeout_ms
            ),
            (8192, 64, 5000)
        );
        assert_eq!(
            (l.max_frame_bytes, l.max_message_bytes, l.max_fragments),
            (65536, 65536, 1024)
        );
        assert_eq!(
            (l.max_outbound_bytes, l.idle_timeout_ms, l.close_timeout_ms),
            (1048576, 30000, 3000)
        );
        assert_eq!(l.max_connections, 10000);
    }

    #[test]
    fn file_overrides_and_unknown_keys() {
        let c = Config::from_json(
            r#"{"limits":{"max_frame_bytes":1000},"app":"echo"}"#,
            "f.json",
        )
        .unwrap();
        assert_eq!(c.limits.max_frame_bytes, 1000);
        assert_eq!(c.limits.max_message_bytes, 65536);
        assert_eq!(c.app, AppKind::Echo);
        let e = Config::from_json(r#"{"limits":{"max_frame_byte":1}}"#, "f.json").unwrap_err();
        assert_eq!(
            e.0,
            "f.json: unknown setting `limits.max_frame_byte` (did you mean `limits.max_frame_bytes`?)"
        );
        let e = Config::from_json(r#"{"nope":1}"#, "f.json").unwrap_err();
        assert_eq!(e.0, "f.json: unknown setting `nope`");
        assert!(Config::from_json(r#"{"limits":{"max_frame_bytes":"x"}}"#, "f").is_err());
        assert!(Config::from_json("[]", "f").is_err());
    }

    #[test]
    fn validation_names_the_setting() {
        let c = Config {
            limits: LimitsConfig {
                max_fragments: 0,
                ..LimitsConfig::default()
            },
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .0
                .starts_with("limits.max_fragments: 0 is out of range")
        );
        let c = Config {
            listen: "localhost".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().0.starts_with("listen:"));
        let c = Config {
            ws: WsConfig { path: "ws".into() },
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().0.starts_with("ws.path:"));
    }
}
