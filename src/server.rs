//! Building a server from its settings: the policies, the static files,
//! TLS, the users and the token secret, logging, then the listeners.
//!
//! [`Server::new`] takes the settings and any [`Handler`]; [`Builder`] is
//! for the choices that are not settings (signal handling belongs to the
//! process that owns the signals, not to a library that happens to run a
//! server inside it).

use std::fmt;

use crate::config::{AuthMode, Config};
use crate::handler::Handler;
use crate::http::StaticFiles;
use crate::log;
use crate::router::Shared;
use crate::security::{Auth, Demo};

pub use crate::net::Server;

/// Why a server could not be built or run.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A setting or a file it names is unusable; the message names it.
    Config(String),
    /// The listeners or the event loop failed.
    Io(std::io::Error),
}

impl Error {
    /// The exit code the daemon uses: 2 for a configuration error, 1
    /// otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            Error::Io(_) => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => f.write_str(e),
            Error::Io(e) => write!(f, "cannot listen: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// Checks `config` as [`Builder::build`] would before it loads any file:
/// the ranges of the settings and the syntax of the policies (origins,
/// hosts, proxies, the redirect host). `palisade --print-config` uses it.
pub fn check_config(config: &Config) -> Result<(), Error> {
    config.validate().map_err(|e| Error::Config(e.0))?;
    crate::router::check_policies(config).map_err(Error::Config)
}

/// Choices about a server that are not settings.
#[derive(Debug)]
pub struct Builder {
    config: Config,
    signals: bool,
    raise_fd_limit: bool,
}

impl<H: Handler> Server<H> {
    /// A server for `config` that runs `handler` for its connections, with
    /// the listeners bound: `Server::builder(config).build(handler)`.
    pub fn new(config: Config, handler: H) -> Result<Server<H>, Error> {
        Server::<H>::builder(config).build(handler)
    }

    /// A builder for `config`.
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            signals: false,
            raise_fd_limit: false,
        }
    }
}

impl Builder {
    /// Handles SIGHUP (reload the users file and the certificate) and
    /// SIGINT / SIGTERM (graceful shutdown; a second one exits at once), as
    /// the daemon does. Off by default: a program that embeds a server owns
    /// its signals, and can call `reload` and `begin_shutdown` itself.
    pub fn handle_signals(mut self, on: bool) -> Builder {
        self.signals = on;
        self
    }

    /// Raises the process's soft open-file limit to its hard limit at
    /// start, and warns when that is below `max_connections` plus a margin
    /// (every connection is a descriptor). Off by default: the limit
    /// belongs to the process.
    pub fn raise_fd_limit(mut self, on: bool) -> Builder {
        self.raise_fd_limit = on;
        self
    }

    /// Checks the settings, loads the files they name (static files, TLS
    /// certificate and key, users, token secret), starts logging and binds
    /// the listeners: one event loop. With `workers` above 1 in the
    /// settings use [`Builder::build_workers`].
    pub fn build<H: Handler>(self, handler: H) -> Result<Server<H>, Error> {
        let workers = self.config.workers.resolve();
        if workers > 1 {
            return Err(Error::Config(format!(
                "workers: {workers} event loops need Builder::build_workers (Builder::build runs one)"
            )));
        }
        let mut handler = Some(handler);
        let mut servers = self.build_loops(1, |_| handler.take().expect("one loop"))?;
        Ok(servers.remove(0))
    }

    /// As [`Builder::build`], with the number of event loops the `workers`
    /// setting asks for, each on its own thread with its own listener
    /// (`SO_REUSEPORT`) and its own application, made by `make(i)` for loop
    /// `i`. The loops share every global limit (SPEC.md §7).
    pub fn build_workers<H: Handler>(
        self,
        make: impl FnMut(usize) -> H,
    ) -> Result<Workers<H>, Error> {
        let n = self.config.workers.resolve();
        Ok(Workers {
            servers: self.build_loops(n, make)?,
        })
    }

    fn build_loops<H: Handler>(
        self,
        workers: usize,
        make: impl FnMut(usize) -> H,
    ) -> Result<Vec<Server<H>>, Error> {
        let config = self.config;
        config.validate().map_err(|e| Error::Config(e.0))?;
        let mut files = match &config.static_dir {
            Some(dir) => StaticFiles::load_dir(dir).map_err(Error::Config)?,
            None => StaticFiles::embedded(),
        };
        if let Some(bundle) = &config.socketio.client_bundle {
            files
                .add_file(crate::http::SOCKETIO_BUNDLE, bundle)
                .map_err(Error::Config)?;
        }
        let acceptor = match (&config.tls.cert, &config.tls.key) {
            (Some(cert), Some(key)) => {
                Some(crate::tls::load(cert, key, config.tls.min_version).map_err(Error::Config)?)
            }
            _ => None,
        };
        let tls_name = acceptor.as_ref().and_then(|a| a.dns_name.clone());
        let mut shared = Shared::new(config, files, tls_name.as_deref()).map_err(Error::Config)?;
        if let Some(path) = &shared.config.api.keys_file {
            shared.api_keys = std::sync::RwLock::new(
                crate::security::apikeys::ApiKeys::load(path).map_err(Error::Config)?,
            );
        }
        let (auth, demo) = Auth::from_config(&shared.config).map_err(Error::Config)?;
        log::init(shared.config.log.level, shared.config.log.format);
        warn_about(&shared, &auth);
        if self.raise_fd_limit {
            raise_fd_limit(shared.config.limits.max_connections);
        }
        let tls_note = match &acceptor {
            Some(a) => format!("on serial={}", a.serial),
            None => "off".to_owned(),
        };
        let max_message = shared.config.limits.max_message_bytes;
        let cluster = crate::net::ClusterSetup::new(&shared.config.cluster, max_message)
            .map_err(Error::Config)?;
        if let Some(c) = &cluster {
            log::info(
                "cluster through redis",
                &[
                    ("redis", &c.target.redacted()),
                    ("prefix", &c.prefix),
                    ("uid", &c.uid),
                ],
            );
        }
        let mut servers = Server::bind_group(shared, acceptor, auth, cluster, workers, make)
            .map_err(Error::Io)?;
        let first = &mut servers[0];
        if self.signals {
            first.handle_signals().map_err(Error::Io)?;
        }
        if let Demo::Password(password) = demo {
            first.set_demo_password(password);
        }
        let addr = first.local_addr().map_err(Error::Io)?;
        log::info(
            &format!("listening on {addr}"),
            &[("tls", &tls_note), ("workers", &workers)],
        );
        if let Some(r) = first.redirect_addr() {
            log::info(
                &format!("redirecting to https from {r}"),
                &[("status", &308)],
            );
        }
        Ok(servers)
    }
}

/// Several event loops of one server ([`Builder::build_workers`]).
pub struct Workers<H: Handler> {
    servers: Vec<Server<H>>,
}

impl<H: Handler + Send + 'static> Workers<H> {
    /// How many loops there are.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Whether there are none (never: at least one is built).
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The bound address (every loop listens on it).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.servers[0].local_addr()
    }

    /// The demo user's password, when the server made one (see
    /// [`Server::demo_password`]).
    pub fn demo_password(&self) -> Option<&str> {
        self.servers[0].demo_password()
    }

    /// A handle to each loop's connections, by loop.
    pub fn handles(&self) -> Vec<crate::handler::Handle> {
        self.servers.iter().map(Server::handle).collect()
    }

    /// Runs every loop, the first on this thread, until they stop (a
    /// graceful shutdown of one stops all); a second stop signal returns at
    /// once.
    pub fn run(self) -> std::io::Result<()> {
        let mut servers = self.servers.into_iter();
        let mut first = servers.next().expect("at least one loop");
        let mut threads = Vec::new();
        for (i, mut server) in servers.enumerate() {
            let thread = std::thread::Builder::new()
                .name(format!("palisade-loop-{}", i + 1))
                .spawn(move || server.run())?;
            threads.push(thread);
        }
        let result = first.run();
        if first.exited_at_once() {
            return result;
        }
        for thread in threads {
            match thread.join() {
                Ok(r) => r?,
                Err(_) => return Err(std::io::Error::other("an event loop panicked")),
            }
        }
        result
    }
}

/// The start-up lines about insecure or open settings.
fn warn_about(shared: &Shared, auth: &Auth) {
    if shared.config.auth.mode == AuthMode::None {
        log::warn(
            "auth.mode is none: anyone who can reach the server may connect",
            &[],
        );
    }
    if shared.origins.allows_any() {
        log::warn(
            "allowed_origins contains \"*\": pages on any site may open WebSockets here",
            &[],
        );
    }
    let hosts = &shared.hosts;
    if hosts.allows_any_explicitly() {
        log::warn(
            "allowed_hosts contains \"*\": requests for any host name are answered (DNS rebinding is not stopped)",
            &[],
        );
    } else if hosts.open_by_default() {
        log::info(
            "allowed_hosts is not set: requests for any host name are answered; set it to the names clients use",
            &[("listen", &shared.config.listen)],
        );
    } else {
        log::info("allowed hosts", &[("hosts", &hosts.names().join(","))]);
    }
    crate::security::warn_mixed_iterations(auth);
}

/// Descriptors the server needs beside its connections: listeners, the
/// poller, signal and waker pipes, the log, the hashing workers, and the
/// connections over `max_connections` that are read only to answer `503`.
const FD_MARGIN: u64 = 128;

/// Raises the soft open-file limit to the hard one (every connection is a
/// descriptor, and the usual soft limit of 1,024 is far below the default
/// `max_connections`), and warns when even the hard limit cannot hold
/// `max_connections` plus a margin.
pub(crate) fn raise_fd_limit(max_connections: usize) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let mut now = before;
    if before.current != before.maximum {
        let raised = rustix::process::Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                now = raised;
                log::info(
                    "open-file limit raised",
                    &[
                        ("from", &limit_text(before.current)),
                        ("to", &limit_text(now.current)),
                    ],
                );
            }
            Err(e) => log::warn(
                "cannot raise the open-file limit",
                &[("error", &e), ("nofile", &limit_text(before.current))],
            ),
        }
    }
    let need = max_connections as u64 + FD_MARGIN;
    if now.current.is_some_and(|n| n < need) {
        log::warn(
            "open-file limit is below limits.max_connections plus a margin: new connections will wait once it is reached; raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower limits.max_connections",
            &[
                ("nofile", &limit_text(now.current)),
                ("max_connections", &max_connections),
                ("needed", &need),
            ],
        );
    }
}

fn limit_text(l: Option<u64>) -> String {
    l.map_or_else(|| "unlimited".into(), |n| n.to_string())
}
