//! `ironsight-shell` [-c "<command line>"]: see the library's documentation and docs/shell.md.

use std::ffi::OsString;
use std::io::{self, IsTerminal};
use std::process::ExitCode;

use ironsight_shell::client::Settings;
use ironsight_shell::session::{self, Shell, EXIT_USAGE};

const USAGE: &str = "\
usage: ironsight-shell                   an interactive session (commands from stdin if it is not a terminal)
       ironsight-shell -c \"<command>\"    one command, as sshd runs it for `ssh admin@host <command>`
       ironsight-shell --help | --version

Type `help` in the shell for its commands. Settings: /etc/ironsight/shell.json (docs/shell.md).";

fn main() -> ExitCode {
    ignore_terminal_signals();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let code = match args.as_slice() {
        [] => {
            let shell = Shell::new(Settings::load());
            if io::stdin().is_terminal() {
                session::run_interactive(&shell)
            } else {
                session::run_batch(&shell, &mut io::stdin().lock())
            }
        }
        [flag, line] if flag == "-c" => match line.to_str() {
            Some(line) => session::run_one(&Shell::new(Settings::load()), line),
            None => {
                eprintln!("error: the command line is not UTF-8");
                EXIT_USAGE
            }
        },
        [flag] if flag == "--help" || flag == "-h" => {
            println!("{USAGE}");
            0
        }
        [flag] if flag == "--version" || flag == "-V" => {
            println!("ironsight-shell {}", env!("CARGO_PKG_VERSION"));
            0
        }
        _ => {
            eprintln!("{USAGE}");
            EXIT_USAGE
        }
    };
    ExitCode::from(code)
}

/// As a login shell there is no parent shell to resume a stopped job or to catch a quit: Ctrl-Z
/// would leave the SSH session hanging and Ctrl-\ would dump core into the home directory.
/// Ctrl-C is ignored too outside the line editor (which reads it as "clear the line"), so it
/// cannot end the session halfway through a request; every request has a timeout instead.
fn ignore_terminal_signals() {
    for signal in [
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
        libc::SIGQUIT,
        libc::SIGINT,
    ] {
        // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code; it is
        // done before any other thread exists.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}
