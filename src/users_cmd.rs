//! `palisade users`: add a user, set a password, remove a user, list the
//! names. The file is written atomically (a synced temporary file renamed
//! over it); a running server reads it again on `SIGHUP`, and then closes
//! the connections of a removed user or of a changed password and refuses
//! their older tokens.
//!
//! A new password is asked twice on a terminal, without echo; otherwise one
//! line of stdin is the password (for scripts: `printf '%s\n' "$PW" |
//! palisade users add alice ...`). Never on the command line, where other
//! users of the machine could read it.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Mutex;

use palisade::auth::{PasswordHash, Username, Users};

use crate::cli::UsersAction;

/// Longest password read.
const MAX_PASSWORD_BYTES: usize = 4096;

/// How to make a running server see the change.
const RELOAD_HINT: &str = "a running server reads the users file again on SIGHUP \
     (kill -HUP <pid>, or systemctl reload palisade)";

/// Runs one `palisade users` command: 0 when done, 1 when it failed (the
/// file is then unchanged).
pub fn run(action: &UsersAction, file: &Path, iterations: u32) -> ExitCode {
    match apply(action, file, iterations) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palisade: users: {e}");
            ExitCode::from(1)
        }
    }
}

fn apply(action: &UsersAction, file: &Path, iterations: u32) -> Result<(), String> {
    let shown = file.display();
    match action {
        UsersAction::List => {
            let users = Users::load(file)?;
            let mut out = io::stdout().lock();
            for (name, _) in users.iter() {
                writeln!(out, "{name}").map_err(|e| format!("stdout: {e}"))?;
            }
            return Ok(());
        }
        UsersAction::Add(name) => {
            let mut users = if file.exists() {
                Users::load(file)?
            } else {
                Users::default()
            };
            if users.get(name).is_some() {
                return Err(format!(
                    "user {name} is already in {shown}; set a new password with: palisade users passwd {name}"
                ));
            }
            let hash = PasswordHash::generate(&new_password(name)?, iterations)?;
            users.insert(Username::new(name)?, hash);
            users.save(file)?;
            println!("added user {name} to {shown}");
        }
        UsersAction::Passwd(name) => {
            let mut users = Users::load(file)?;
            if users.get(name).is_none() {
                return Err(format!(
                    "no user {name} in {shown}; add one with: palisade users add {name}"
                ));
            }
            let hash = PasswordHash::generate(&new_password(name)?, iterations)?;
            users.insert(Username::new(name)?, hash);
            users.save(file)?;
            println!(
                "changed the password of {name} in {shown}; once the server has reloaded, \
                 tokens issued before are refused and open connections of {name} are closed"
            );
        }
        UsersAction::Remove(name) => {
            let mut users = Users::load(file)?;
            if !users.remove(name) {
                return Err(format!("no user {name} in {shown}"));
            }
            users.save(file)?;
            println!(
                "removed user {name} from {shown}; once the server has reloaded, \
                 their tokens are refused and their open connections are closed"
            );
        }
    }
    println!("{RELOAD_HINT}");
    Ok(())
}

/// The new password of `name`: asked twice without echo on a terminal,
/// else one line of stdin.
fn new_password(name: &str) -> Result<Vec<u8>, String> {
    if !io::stdin().is_terminal() {
        return password_line(&mut io::stdin().lock());
    }
    let first = ask_hidden(&format!("New password for {name}: "))?;
    if first.is_empty() {
        return Err("the password is empty; nothing was changed".into());
    }
    let second = ask_hidden("Repeat the password: ")?;
    if first != second {
        return Err("the two passwords differ; nothing was changed".into());
    }
    Ok(first)
}

/// One line of `input`, without its line ending: the password of a
/// script.
fn password_line(input: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    input
        .take(MAX_PASSWORD_BYTES as u64 + 2)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.len() > MAX_PASSWORD_BYTES {
        return Err(format!(
            "the password on stdin is longer than {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if line.is_empty() {
        return Err("no password on stdin (one line is read); nothing was changed".into());
    }
    Ok(line)
}

/// The terminal's settings while echo is off, to put back on a signal.
static SAVED: Mutex<Option<rustix::termios::Termios>> = Mutex::new(None);

/// Asks on stderr and reads one line from the terminal on stdin with echo
/// off (the newline still shows). Echo comes back afterwards, and also when
/// the command is interrupted (Ctrl-C) while it waits.
fn ask_hidden(prompt: &str) -> Result<Vec<u8>, String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = io::stdin();
    let terminal = |e: rustix::io::Errno| format!("terminal: {e}");
    let saved = tcgetattr(&stdin).map_err(terminal)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    restore_on_signal();
    *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = Some(saved.clone());
    // Echo off (dropping what was typed before) first, the prompt after:
    // the other way round, an answer typed as soon as the prompt shows
    // could be flushed with the type-ahead and the read would wait on.
    tcsetattr(&stdin, OptionalActions::Flush, &quiet).map_err(terminal)?;
    eprint!("{prompt}");
    let _ = io::stderr().flush();
    let line = password_line(&mut stdin.lock());
    let restored = tcsetattr(&stdin, OptionalActions::Now, &saved);
    *SAVED.lock().unwrap_or_else(|p| p.into_inner()) = None;
    restored.map_err(terminal)?;
    line.map_err(|e| e.replace("stdin", "the terminal"))
}

/// Once: a thread that, on SIGINT, SIGTERM, SIGHUP or SIGQUIT, puts the
/// terminal's echo back before the command exits (status 130).
fn restore_on_signal() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
        let Ok(mut signals) =
            signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        else {
            return;
        };
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                if let Some(t) = SAVED.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    let _ = rustix::termios::tcsetattr(
                        io::stdin(),
                        rustix::termios::OptionalActions::Now,
                        &t,
                    );
                }
                eprintln!();
                std::process::exit(130);
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_is_the_password() {
        let got = |input: &[u8]| password_line(&mut &input[..]);
        assert_eq!(got(b"secret\n").unwrap(), b"secret");
        assert_eq!(got(b"secret\r\nmore\n").unwrap(), b"secret");
        assert_eq!(got(b"no newline").unwrap(), b"no newline");
        assert!(got(b"\n").unwrap_err().contains("no password"));
        assert!(got(b"").unwrap_err().contains("no password"));
        let long = vec![b'x'; MAX_PASSWORD_BYTES + 1];
        assert!(got(&long).unwrap_err().contains("longer than"));
        let exact = vec![b'x'; MAX_PASSWORD_BYTES];
        assert_eq!(got(&exact).unwrap().len(), MAX_PASSWORD_BYTES);
    }
}
