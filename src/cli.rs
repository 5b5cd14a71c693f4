//! Command-line parsing: flags on top of `--config FILE` on top of defaults.

use std::ffi::OsString;
use std::path::PathBuf;

use palisade::auth::{DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS, Username};
use palisade::config::{AppKind, AuthMode, Config, ConfigError, LogFormat, LogLevel, Workers};

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the server.
    Run(Box<Config>),
    /// Print the effective settings as JSON.
    PrintConfig(Box<Config>),
    /// Print usage.
    Help,
    /// Print the usage of `palisade users`.
    UsersHelp,
    /// Print the version.
    Version,
    /// Manage the users file.
    Users {
        /// What to do.
        action: UsersAction,
        /// The users file (`add` creates it when missing).
        file: PathBuf,
        /// PBKDF2 iterations for a new password.
        iterations: u32,
    },
    /// Manage the API keys file: `add` prints the new key once.
    ApiKeys {
        /// `add`, `remove` or `list`.
        verb: String,
        /// The key's name (`add`, `remove`).
        name: Option<String>,
        /// The keys file (`add` creates it when missing).
        file: PathBuf,
    },
    /// Publish on a channel through a running server's API.
    Publish {
        /// The channel.
        channel: String,
        /// The data, JSON text.
        data: String,
        /// The server (`http://127.0.0.1:8080` by default).
        url: String,
        /// Where the API key is (else `PALISADE_API_KEY`).
        key_file: Option<PathBuf>,
        /// The certificates to trust for https.
        cacert: Option<PathBuf>,
    },
    /// Read a password on stdin and print its PHC hash.
    HashPassword {
        /// PBKDF2 iterations.
        iterations: u32,
    },
}

/// What `palisade users` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsersAction {
    /// Add a user (who must not exist yet).
    Add(String),
    /// Set an existing user's password.
    Passwd(String),
    /// Remove a user.
    Remove(String),
    /// Print the user names.
    List,
}

/// Usage of `palisade users`.
pub const USERS_USAGE: &str = "\
usage: palisade users add NAME    (--users-file FILE | --config FILE) [--iterations N]
       palisade users passwd NAME (--users-file FILE | --config FILE) [--iterations N]
       palisade users remove NAME (--users-file FILE | --config FILE)
       palisade users list        (--users-file FILE | --config FILE)";

/// Usage of `palisade apikeys`.
pub const APIKEYS_USAGE: &str = "\
usage: palisade apikeys add NAME    --keys-file FILE   (prints the new key once)
       palisade apikeys remove NAME --keys-file FILE
       palisade apikeys list        --keys-file FILE";

/// Usage of `palisade publish`.
pub const PUBLISH_USAGE: &str = "\
usage: palisade publish CHANNEL JSON [--url URL] [--key-file FILE] [--cacert FILE]
       (the API key from --key-file, else the environment variable PALISADE_API_KEY)";

/// Usage text for `--help`.
pub const HELP: &str = "\
palisade — a secure WebSocket server

USAGE:
    palisade [OPTIONS]
    palisade hash-password [--iterations N]   (password on stdin; prints a PHC hash)
    palisade users add|passwd NAME --users-file FILE [--iterations N]
    palisade users remove NAME --users-file FILE
    palisade users list --users-file FILE
                               manage the users file (or name it with --config FILE): add a
                               user, set a password, remove a user, list the names. A password
                               is asked twice without echo on a terminal, else read as one line
                               of stdin. Writes are atomic; a running server rereads the file
                               on SIGHUP.
    palisade apikeys add|remove NAME --keys-file FILE
    palisade apikeys list --keys-file FILE
    palisade publish CHANNEL JSON [--url URL] [--key-file FILE] [--cacert FILE]
                               publish through a running server's POST /api/publish
                               (--url default http://127.0.0.1:8080; the key from --key-file
                               or PALISADE_API_KEY, never the command line; --cacert for https)
                               manage the API keys of POST /api/publish (api.keys_file): add
                               prints the new key once (the file keeps its SHA-256); a running
                               server reads the file again on SIGHUP.

Serves the demo page on http://127.0.0.1:8080/ and WebSocket connections on
/ws. Settings come from defaults, then --config FILE, then these flags.

OPTIONS:
    --config FILE              JSON settings file (see README.md, Settings)
    --listen ADDR              listen address [default: 127.0.0.1:8080]
    --app hero|echo            application on the WebSocket path [default: hero]
    --heroes FILE              JSON object {\"heroId\": \"Real Name\", ...} replacing the built-in heroes
    --static-dir DIR           serve the files of DIR instead of the embedded demo page
    --ws-path PATH             WebSocket path [default: /ws]
    --tls-cert FILE            PEM certificate chain; with --tls-key the listener speaks TLS only
    --tls-key FILE             PEM private key for --tls-cert
    --auth-mode required|none  demand credentials at the handshake (auth.mode) [default: required];
                               none lets anyone connect and is logged as a warning
    --users-file FILE          users file (auth.users_file); without one a demo user is created
                               and its password printed once on stderr
    --max-message-bytes N      largest message (limits.max_message_bytes) [default: 65536]
    --max-frame-bytes N        largest frame payload (limits.max_frame_bytes) [default: 65536]
    --max-fragments N          most frames per message (limits.max_fragments) [default: 1024]
    --max-connections N        open connections at most (limits.max_connections) [default: 10000]
    --workers N|auto           event loops, one thread and SO_REUSEPORT listener each; auto is
                               one per CPU (workers) [default: 1]
    --busy-poll-us N           after busy turns, poll without sleeping for N µs: lower latency,
                               more CPU (busy_poll_us) [default: 0, off]
    --log-format text|json     log line format [default: text]
    --log-level LEVEL          error, warn, info or debug [default: info]
    --print-config             print the effective settings as JSON and exit
    -h, --help                 print this help and exit
    -V, --version              print the version and exit

EXIT STATUS:
    0 on a clean stop, 1 when the server cannot start, 2 for an invalid setting.
";

/// Parses the arguments (without the program name).
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, ConfigError> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut config_file: Option<PathBuf> = None;
    let mut flags: Vec<(String, String)> = Vec::new();
    let mut print = false;
    while let Some(arg) = parser.next().map_err(err)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Value(v) if v == "hash-password" => return parse_hash_password(parser),
            Value(v) if v == "users" => return parse_users(parser),
            Value(v) if v == "apikeys" => return parse_apikeys(parser),
            Value(v) if v == "publish" => return parse_publish(parser),
            Long("print-config") => print = true,
            Long("config") => config_file = Some(parser.value().map_err(err)?.into()),
            Long(
                name @ ("listen" | "app" | "heroes" | "static-dir" | "ws-path"
                | "max-message-bytes" | "max-frame-bytes" | "max-fragments" | "tls-cert"
                | "tls-key" | "max-connections" | "log-format" | "log-level" | "auth-mode"
                | "users-file" | "busy-poll-us" | "workers"),
            ) => {
                let name = name.to_owned();
                let value = parser.value().map_err(err)?.string().map_err(err)?;
                flags.push((name, value));
            }
            other => return Err(err(other.unexpected())),
        }
    }
    let mut config = match &config_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("--config {}: {e}", path.display())))?;
            Config::from_json(&text, &path.display().to_string())?
        }
        None => Config::default(),
    };
    for (name, value) in flags {
        apply_flag(&mut config, &name, &value)?;
    }
    palisade::check_config(&config).map_err(|e| ConfigError(e.to_string()))?;
    Ok(if print {
        Command::PrintConfig(Box::new(config))
    } else {
        Command::Run(Box::new(config))
    })
}

fn parse_publish(mut parser: lexopt::Parser) -> Result<Command, ConfigError> {
    use lexopt::prelude::*;
    let usage = || ConfigError(PUBLISH_USAGE.into());
    let mut values = Vec::new();
    let mut url = "http://127.0.0.1:8080".to_owned();
    let (mut key_file, mut cacert) = (None, None);
    while let Some(arg) = parser.next().map_err(err)? {
        match arg {
            Value(v) if values.len() < 2 => values.push(v.string().map_err(err)?),
            Long("url") => url = parser.value().map_err(err)?.string().map_err(err)?,
            Long("key-file") => key_file = Some(parser.value().map_err(err)?.into()),
            Long("cacert") => cacert = Some(parser.value().map_err(err)?.into()),
            other => return Err(err(other.unexpected())),
        }
    }
    let [channel, data]: [String; 2] = values.try_into().map_err(|_| usage())?;
    Ok(Command::Publish {
        channel,
        data,
        url,
        key_file,
        cacert,
    })
}

fn parse_apikeys(mut parser: lexopt::Parser) -> Result<Command, ConfigError> {
    use lexopt::prelude::*;
    let usage = || ConfigError(APIKEYS_USAGE.into());
    let verb = match parser.next().map_err(err)? {
        Some(Value(v)) => v.string().map_err(err)?,
        _ => return Err(usage()),
    };
    let (mut name, mut file) = (None, None);
    while let Some(arg) = parser.next().map_err(err)? {
        match arg {
            Value(v) if name.is_none() && verb != "list" => name = Some(v.string().map_err(err)?),
            Long("keys-file") => file = Some(parser.value().map_err(err)?.into()),
            other => return Err(err(other.unexpected())),
        }
    }
    let ok = matches!(
        (verb.as_str(), &name),
        ("add" | "remove", Some(_)) | ("list", None)
    );
    match (ok, file) {
        (true, Some(file)) => Ok(Command::ApiKeys { verb, name, file }),
        _ => Err(usage()),
    }
}

fn parse_users(mut parser: lexopt::Parser) -> Result<Command, ConfigError> {
    use lexopt::prelude::*;
    let usage = || ConfigError(USERS_USAGE.into());
    let verb = match parser.next().map_err(err)? {
        Some(Value(v)) => v.string().map_err(err)?,
        Some(Short('h') | Long("help")) => return Ok(Command::UsersHelp),
        _ => return Err(usage()),
    };
    let mut name = None;
    let mut file: Option<PathBuf> = None;
    let mut config: Option<PathBuf> = None;
    let mut iterations = None;
    while let Some(arg) = parser.next().map_err(err)? {
        match arg {
            Value(v) if name.is_none() && verb != "list" => name = Some(v.string().map_err(err)?),
            Long("users-file") => file = Some(parser.value().map_err(err)?.into()),
            Long("config") => config = Some(parser.value().map_err(err)?.into()),
            Long("iterations") if verb == "add" || verb == "passwd" => {
                let v = parser.value().map_err(err)?.string().map_err(err)?;
                iterations = Some(number("iterations", &v)?);
            }
            Short('h') | Long("help") => return Ok(Command::UsersHelp),
            other => return Err(err(other.unexpected())),
        }
    }
    let action = match (verb.as_str(), name) {
        ("add", Some(n)) => UsersAction::Add(n),
        ("passwd", Some(n)) => UsersAction::Passwd(n),
        ("remove", Some(n)) => UsersAction::Remove(n),
        ("list", None) => UsersAction::List,
        _ => return Err(usage()),
    };
    if let UsersAction::Add(n) | UsersAction::Passwd(n) | UsersAction::Remove(n) = &action {
        Username::new(n).map_err(ConfigError)?;
    }
    let file = match (file, config) {
        (Some(f), _) => f,
        (None, Some(path)) => users_file_of(&path)?,
        (None, None) => return Err(usage()),
    };
    let iterations = iterations.unwrap_or(DEFAULT_ITERATIONS);
    check_iterations(iterations)?;
    Ok(Command::Users {
        action,
        file,
        iterations,
    })
}

/// `auth.users_file` of a settings file.
fn users_file_of(path: &std::path::Path) -> Result<PathBuf, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("--config {}: {e}", path.display())))?;
    let config = Config::from_json(&text, &path.display().to_string())?;
    config.auth.users_file.ok_or_else(|| {
        ConfigError(format!(
            "--config {}: no auth.users_file in it; name the file with --users-file",
            path.display()
        ))
    })
}

fn check_iterations(iterations: u32) -> Result<(), ConfigError> {
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(ConfigError(format!(
            "--iterations: {iterations} is out of range ({MIN_ITERATIONS} to {MAX_ITERATIONS})"
        )));
    }
    Ok(())
}

fn parse_hash_password(mut parser: lexopt::Parser) -> Result<Command, ConfigError> {
    use lexopt::prelude::*;
    let mut iterations = DEFAULT_ITERATIONS;
    while let Some(arg) = parser.next().map_err(err)? {
        match arg {
            Long("iterations") => {
                let v = parser.value().map_err(err)?.string().map_err(err)?;
                iterations = number("iterations", &v)?;
            }
            Short('h') | Long("help") => return Ok(Command::Help),
            other => return Err(err(other.unexpected())),
        }
    }
    check_iterations(iterations)?;
    Ok(Command::HashPassword { iterations })
}

fn err(e: lexopt::Error) -> ConfigError {
    ConfigError(e.to_string())
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError(format!("--{flag}: {value:?} is not a non-negative integer")))
}

fn apply_flag(c: &mut Config, name: &str, value: &str) -> Result<(), ConfigError> {
    match name {
        "listen" => c.listen = value.to_owned(),
        "app" => {
            c.app = match value {
                "hero" => AppKind::Hero,
                "echo" => AppKind::Echo,
                _ => return Err(ConfigError(format!("--app: {value:?} is not hero or echo"))),
            }
        }
        "heroes" => c.heroes = Some(value.into()),
        "static-dir" => c.static_dir = Some(value.into()),
        "ws-path" => c.ws.path = value.to_owned(),
        "tls-cert" => c.tls.cert = Some(value.into()),
        "tls-key" => c.tls.key = Some(value.into()),
        "users-file" => c.auth.users_file = Some(value.into()),
        "auth-mode" => {
            c.auth.mode = match value {
                "required" => AuthMode::Required,
                "none" => AuthMode::None,
                _ => {
                    return Err(ConfigError(format!(
                        "--auth-mode: {value:?} is not required or none"
                    )));
                }
            }
        }
        "max-message-bytes" => c.limits.max_message_bytes = number(name, value)?,
        "max-frame-bytes" => c.limits.max_frame_bytes = number(name, value)?,
        "max-fragments" => c.limits.max_fragments = number(name, value)?,
        "max-connections" => c.limits.max_connections = number(name, value)?,
        "busy-poll-us" => c.busy_poll_us = number(name, value)?,
        "workers" => {
            c.workers = match value {
                "auto" => Workers::Auto,
                n => Workers::Count(n.parse().map_err(|_| {
                    ConfigError(format!("--workers: {n:?} is not a number or auto"))
                })?),
            }
        }
        "log-format" => {
            c.log.format = match value {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError(format!(
                        "--log-format: {value:?} is not text or json"
                    )));
                }
            }
        }
        "log-level" => {
            c.log.level = match value {
                "error" => LogLevel::Error,
                "warn" => LogLevel::Warn,
                "info" => LogLevel::Info,
                "debug" => LogLevel::Debug,
                _ => {
                    return Err(ConfigError(format!(
                        "--log-level: {value:?} is not error, warn, info or debug"
                    )));
                }
            }
        }
        _ => unreachable!("flag list above"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command, ConfigError> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn flags_override_defaults() {
        let Command::Run(c) = run(&[
            "--listen",
            "127.0.0.1:0",
            "--app=echo",
            "--max-fragments",
            "7",
        ])
        .unwrap() else {
            panic!()
        };
        assert_eq!(
            (c.listen.as_str(), c.app, c.limits.max_fragments),
            ("127.0.0.1:0", AppKind::Echo, 7)
        );
    }

    #[test]
    fn bad_values_are_one_line_errors() {
        let e = run(&["--max-frame-bytes", "lots"]).unwrap_err();
        assert_eq!(
            e.0,
            "--max-frame-bytes: \"lots\" is not a non-negative integer"
        );
        let e = run(&["--bogus"]).unwrap_err();
        assert!(e.0.contains("--bogus"), "{e}");
        let e = run(&["--max-frame-bytes", "0"]).unwrap_err();
        assert!(e.0.starts_with("limits.max_frame_bytes: 0 is out of range"));
        assert!(matches!(run(&["--help"]).unwrap(), Command::Help));
        assert!(matches!(
            run(&["--print-config"]).unwrap(),
            Command::PrintConfig(_)
        ));
    }
}
