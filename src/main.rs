//! The palisade daemon: load and validate the settings, run the server.
#![forbid(unsafe_code)]

use std::process::ExitCode;

mod cli;
mod users_cmd;

use cli::Command;
use palisade::config::{AppKind, Config};
use palisade::{Builder, Echo, Handler, Hero, Heroes, Server};

fn main() -> ExitCode {
    let config = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(c)) => *c,
        Ok(Command::PrintConfig(mut c)) => {
            // The Redis password stays out of terminals and scripts' logs.
            if let Some(url) = &c.cluster.redis_url {
                c.cluster.redis_url = Some(palisade::redis_url_redacted(url));
            }
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
        Ok(Command::Users {
            action,
            file,
            iterations,
        }) => return users_cmd::run(&action, &file, iterations),
        Ok(Command::ApiKeys { verb, name, file }) => return apikeys(&verb, name.as_deref(), &file),
        Ok(Command::Publish {
            channel,
            data,
            url,
            key_file,
            cacert,
        }) => {
            return publish(
                &channel,
                &data,
                &url,
                key_file.as_deref(),
                cacert.as_deref(),
            );
        }
        Ok(Command::UsersHelp) => {
            println!("{}", cli::USERS_USAGE);
            return ExitCode::SUCCESS;
        }
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
    let builder = Server::<Hero>::builder(config.clone())
        .handle_signals(true)
        .raise_fd_limit(true);
    match config.app {
        AppKind::Hero => {
            let heroes = match &config.heroes {
                Some(path) => Heroes::load(path).map_err(|e| (2, e))?,
                None => Heroes::default(),
            };
            serve(builder, Hero::new(heroes))
        }
        AppKind::Echo => serve(builder, Echo),
    }
}

/// Builds the server's event loops (`workers`, each with a copy of
/// `handler`), shows the demo password, runs them.
fn serve<H: Handler + Clone + Send + 'static>(
    builder: Builder,
    handler: H,
) -> Result<(), (u8, String)> {
    let workers = builder
        .build_workers(|_| handler.clone())
        .map_err(|e| (e.exit_code(), e.to_string()))?;
    if let Some(password) = workers.demo_password() {
        // Shown once, on stderr directly: never through the log (in the
        // log's format, so a JSON reader can parse it).
        eprintln!("{}", palisade::demo_login_line(password));
    }
    workers
        .run()
        .map_err(|e| (1, format!("event loop failed: {e}")))
}

/// `palisade publish`: one publication through a running server's API;
/// prints its answer (`{"delivered":n}`), exits 1 unless it was `200`.
fn publish(
    channel: &str,
    data: &str,
    url: &str,
    key_file: Option<&std::path::Path>,
    cacert: Option<&std::path::Path>,
) -> ExitCode {
    let key = match key_file {
        Some(path) => std::fs::read_to_string(path)
            .map(|k| k.trim().to_owned())
            .map_err(|e| format!("{}: {e}", path.display())),
        None => std::env::var("PALISADE_API_KEY")
            .map_err(|_| "no API key: --key-file FILE, or PALISADE_API_KEY".to_owned()),
    };
    let answer = key.and_then(|key| palisade::publish(url, &key, channel, data, cacert));
    match answer {
        Ok((200, body)) => {
            println!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("palisade: publish: {status} {body}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("palisade: publish: {e}");
            ExitCode::from(1)
        }
    }
}

/// `palisade apikeys`: add (printing the key once), remove, list.
fn apikeys(verb: &str, name: Option<&str>, file: &std::path::Path) -> ExitCode {
    use palisade::auth::ApiKeys;
    let run = || -> Result<(), String> {
        let mut keys = if file.exists() || verb != "add" {
            ApiKeys::load(file)?
        } else {
            ApiKeys::default()
        };
        match (verb, name) {
            ("add", Some(name)) => {
                let key = keys.add(name)?;
                keys.save(file)?;
                println!("{key}");
                eprintln!(
                    "palisade: apikeys: key {name} added to {}; it is shown only now",
                    file.display()
                );
            }
            ("remove", Some(name)) => {
                if !keys.remove(name) {
                    return Err(format!("no key named {name} in {}", file.display()));
                }
                keys.save(file)?;
            }
            _ => {
                for name in keys.names() {
                    println!("{name}");
                }
            }
        }
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade: apikeys: {e}");
            ExitCode::from(1)
        }
    }
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

/// `palisade hash-password`: the PHC hash of the password on stdin.
fn hash_password(iterations: u32) -> ExitCode {
    let password = match read_password() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("palisade: hash-password: {e}");
            return ExitCode::from(2);
        }
    };
    match palisade::auth::PasswordHash::generate(&password, iterations) {
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
