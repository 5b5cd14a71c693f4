//! The palisade daemon: load and validate the settings, run the server.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use palisade::app::{App, Heroes};
use palisade::cli::{self, Command};
use palisade::config::{AppKind, AuthMode, Config};
use palisade::http::StaticFiles;
use palisade::net::RedirectHost;
use palisade::security::client_ip::TrustedProxies;
use palisade::security::hosts::AllowedHosts;
use palisade::security::origin::OriginPolicy;
use palisade::security::{Auth, Demo};
use palisade::{Server, Shared, log, tls};

fn main() -> ExitCode {
    let config = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(c)) => *c,
        Ok(Command::PrintConfig(c)) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&*c).expect("config serializes")
            );
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::HashPassword { iterations }) => return hash_password(iterations),
        Ok(Command::UsersAdd {
            name,
            file,
            iterations,
        }) => return users_add(&name, &file, iterations),
        Ok(Command::Version) => {
            println!("palisade {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("palisade: {e}");
            eprintln!("Try 'palisade --help'.");
            return ExitCode::from(2);
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("palisade: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run(config: Config) -> Result<(), (u8, String)> {
    let app = match config.app {
        AppKind::Echo => App::Echo,
        AppKind::Hero => match &config.heroes {
            Some(path) => App::Hero(Heroes::load(path).map_err(|e| (2, e))?),
            None => App::Hero(Heroes::default()),
        },
    };
    let files = match &config.static_dir {
        Some(dir) => StaticFiles::load_dir(dir).map_err(|e| (2, e))?,
        None => StaticFiles::embedded(),
    };
    let acceptor = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => {
            Some(tls::load(cert, key, config.tls.min_version).map_err(|e| (2, e))?)
        }
        _ => None,
    };
    let proxies = TrustedProxies::new(&config.trusted_proxies).map_err(|e| (2, e))?;
    let origins =
        OriginPolicy::new(&config.allowed_origins, config.require_origin).map_err(|e| (2, e))?;
    let listen_ip = config.listen_addr().map_err(|e| (2, e.0))?.ip();
    let hosts = AllowedHosts::new(&config.allowed_hosts, listen_ip).map_err(|e| (2, e))?;
    let redirect_host = RedirectHost::new(
        config.tls.redirect_host.as_deref(),
        acceptor.as_ref().and_then(|a| a.dns_name.as_deref()),
        listen_ip,
    );
    let (auth, demo) = Auth::from_config(&config).map_err(|e| (2, e))?;
    log::init(config.log.level, config.log.format);
    if config.auth.mode == AuthMode::None {
        log::warn(
            "auth.mode is none: anyone who can reach the server may connect",
            &[],
        );
    }
    if hosts.allows_any_explicitly() {
        log::warn(
            "allowed_hosts contains \"*\": requests for any host name are answered (DNS rebinding is not stopped)",
            &[],
        );
    } else if hosts.open_by_default() {
        log::info(
            "allowed_hosts is not set: requests for any host name are answered; set it to the names clients use",
            &[("listen", &config.listen)],
        );
    } else {
        log::info("allowed hosts", &[("hosts", &hosts.names().join(","))]);
    }
    if origins.allows_any() {
        log::warn(
            "allowed_origins contains \"*\": pages on any site may open WebSockets here",
            &[],
        );
    }
    palisade::net::warn_mixed_iterations(&auth);
    if let Demo::Password(password) = &demo {
        // Shown once, on stderr directly: never through the log.
        eprintln!("demo login: demo / {password}");
    }
    raise_fd_limit(config.limits.max_connections);
    let limits = palisade::net::core_limits(&config.limits);
    let shared = Shared {
        config,
        limits,
        app,
        files,
        origins,
        proxies,
        hosts,
        redirect_host,
        clock: palisade::net::Clock::new(),
    };
    let tls_note = match &acceptor {
        Some(a) => format!("on serial={}", a.serial),
        None => "off".to_owned(),
    };
    let mut server =
        Server::bind(shared, acceptor, auth).map_err(|e| (1, format!("cannot listen: {e}")))?;
    server
        .handle_signals()
        .map_err(|e| (1, format!("cannot handle signals: {e}")))?;
    let addr = server.local_addr().map_err(|e| (1, e.to_string()))?;
    log::info(
        &format!("listening on {addr}"),
        &[("app", &app_name(&server)), ("tls", &tls_note)],
    );
    if let Some(r) = server.redirect_addr() {
        log::info(
            &format!("redirecting to https from {r}"),
            &[("status", &308)],
        );
    }
    let result = server
        .run()
        .map_err(|e| (1, format!("event loop failed: {e}")));
    log::flush(std::time::Duration::from_secs(1));
    result
}

/// One password from stdin (never the command line, where other users could
/// read it), without its line ending.
fn read_password() -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut input = Vec::new();
    std::io::stdin()
        .take(4096)
        .read_to_end(&mut input)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    let end = input.strip_suffix(b"\n").map_or(input.len(), <[u8]>::len);
    input.truncate(end);
    let end = input.strip_suffix(b"\r").map_or(input.len(), <[u8]>::len);
    input.truncate(end);
    if input.is_empty() {
        return Err("the password on stdin is empty".into());
    }
    Ok(input)
}

/// `palisade users add NAME --users-file F`: adds or replaces NAME, atomically.
fn users_add(name: &str, file: &std::path::Path, iterations: u32) -> ExitCode {
    use palisade::security::password::PasswordHash;
    use palisade::security::users::{Username, Users};
    let result = (|| -> Result<bool, String> {
        let password = read_password()?;
        let mut users = if file.exists() {
            Users::load(file)?
        } else {
            Users::default()
        };
        let hash = PasswordHash::generate(&password, iterations)?;
        let replaced = users.insert(Username::new(name)?, hash);
        users.save(file)?;
        Ok(replaced)
    })();
    match result {
        Ok(replaced) => {
            let verb = if replaced { "replaced" } else { "added" };
            eprintln!("{verb} user {name} in {}", file.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade: users add: {e}");
            ExitCode::from(2)
        }
    }
}

/// `palisade hash-password`: the PHC hash of the password on stdin.
fn hash_password(iterations: u32) -> ExitCode {
    let password = match read_password() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("palisade: hash-password: {e}");
            return ExitCode::from(2);
        }
    };
    match palisade::security::password::PasswordHash::generate(&password, iterations) {
        Ok(h) => {
            println!("{}", h.to_phc());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("palisade: hash-password: {e}");
            ExitCode::from(2)
        }
    }
}

fn app_name(server: &Server) -> &'static str {
    match server.app() {
        App::Hero(_) => "hero",
        App::Echo => "echo",
    }
}

/// Descriptors the server needs beside its connections: listeners, the
/// poller, signal and waker pipes, the log, the hashing workers, and the
/// connections over `max_connections` that are read only to answer `503`.
const FD_MARGIN: u64 = 128;

/// Raises the soft open-file limit to the hard one (every connection is a
/// descriptor, and the usual soft limit of 1,024 is far below the default
/// `max_connections`), and warns when even the hard limit cannot hold
/// `max_connections` plus a margin.
fn raise_fd_limit(max_connections: usize) {
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
