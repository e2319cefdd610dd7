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

use std::process::ExitCode;

use clap::Parser;
use ironsight_auth::{prompt, scram};
use ironsight_config::users::ScramVerifier;

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
    let password = prompt::password(args.stdin)?;
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
