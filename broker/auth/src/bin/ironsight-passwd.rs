//! `ironsight-passwd`: makes the SCRAM-SHA-256 verifier a `MessagingUser`'s `Password` holds,
//! as `mosquitto_passwd` makes the lines of Mosquitto's password file.
//!
//! ```text
//! $ ironsight-passwd                       # asks twice, without echo
//! SCRAM-SHA-256$4096:...$...:...
//! $ printf '%s\n' "$PASSWORD" | ironsight-passwd --user alice --groups ops
//! {"MessagingUser":{"alice":{"GroupMembership":"ops","Password":"SCRAM-SHA-256$4096:..."}}}
//! ```
//!
//! The password is read from standard input, never from the command line (where `ps` and the
//! shell's history would show it): from a terminal without echo, typed twice; from a pipe or
//! with `--stdin`, as one line.

use std::io::{BufRead, IsTerminal, Read};
use std::process::ExitCode;

use clap::Parser;
use ironsight_auth::scram;
use ironsight_config::users::ScramVerifier;
use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroizing;

/// The longest password taken, in bytes: the most an MQTT CONNECT's password field holds.
const PASSWORD_LEN_MAX: usize = 65_535;

/// Makes the SCRAM-SHA-256 verifier for a MessagingUser's Password, reading the password from
/// standard input.
#[derive(Parser)]
#[command(name = "ironsight-passwd", version)]
struct Args {
    /// PBKDF2 iterations: each doubling doubles the CPU time of a login and of a guess.
    #[arg(long, default_value_t = scram::ITERATIONS_DEFAULT)]
    iterations: u32,
    /// Read the password as one line of standard input without asking, even from a terminal.
    #[arg(long)]
    stdin: bool,
    /// Print a MessagingUser object for this user id, ready for the configuration file.
    #[arg(long, value_name = "USER_ID")]
    user: Option<String>,
    /// With --user: the groups the user is a member of, separated by commas.
    #[arg(long, requires = "user")]
    groups: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ironsight-passwd: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<String, String> {
    ScramVerifier::check_iterations(args.iterations)
        .map_err(|problem| format!("--iterations: a verifier {problem}"))?;
    let password = if !args.stdin && std::io::stdin().is_terminal() {
        ask()?
    } else {
        read_line(&mut std::io::stdin().lock())?
    };
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let verifier = scram::hash_password(&password, args.iterations)?;
    let Some(user) = &args.user else {
        return Ok(verifier.to_string());
    };
    let mut object = serde_json::json!({ "Password": verifier.to_string() });
    if let Some(groups) = &args.groups {
        object["GroupMembership"] = groups.as_str().into();
    }
    Ok(serde_json::json!({ "MessagingUser": { user: object } }).to_string())
}

/// Asks for the password twice on the terminal, with echo off.
fn ask() -> Result<Zeroizing<Vec<u8>>, String> {
    let first = ask_once("Password: ")?;
    let again = ask_once("Password again: ")?;
    if first != again {
        return Err("the passwords differ".into());
    }
    Ok(first)
}

fn ask_once(prompt: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(&stdin)
        .map_err(|e| format!("cannot read the terminal's settings: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    eprint!("{prompt}");
    termios::tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet)
        .map_err(|e| format!("cannot turn the terminal's echo off: {e}"))?;
    let line = read_line(&mut stdin.lock());
    let restored = termios::tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    // The newline typed was not echoed either.
    eprintln!();
    restored.map_err(|e| format!("cannot turn the terminal's echo back on: {e}"))?;
    line
}

/// One line, without its line end; at most [`PASSWORD_LEN_MAX`] bytes. The buffer is made
/// whole at once and wiped when dropped, so no copy of the password is left behind.
fn read_line(input: &mut impl BufRead) -> Result<Zeroizing<Vec<u8>>, String> {
    let mut line = Zeroizing::new(Vec::with_capacity(PASSWORD_LEN_MAX + 2));
    input
        .take(PASSWORD_LEN_MAX as u64 + 2)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    for end in [b'\n', b'\r'] {
        if line.last() == Some(&end) {
            line.pop();
        }
    }
    if line.len() > PASSWORD_LEN_MAX {
        return Err(format!(
            "the password is longer than {PASSWORD_LEN_MAX} bytes, the most MQTT carries"
        ));
    }
    Ok(line)
}
