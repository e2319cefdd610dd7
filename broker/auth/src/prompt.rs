//! Reading a password from standard input, for the commands that hash one
//! (`ironsight-passwd`, `ironsight --set-admin-password`): from a terminal, asked twice with
//! echo off; from a pipe, one line. Never from the command line, where `ps` and the shell's
//! history would show it.

use std::io::{BufRead, IsTerminal, Read};

use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroizing;

/// The longest password taken, in bytes: the most an MQTT CONNECT's password field holds.
pub const PASSWORD_LEN_MAX: usize = 65_535;

/// The password from standard input: asked on a terminal unless `from_stdin`, else one line.
pub fn password(from_stdin: bool) -> Result<Zeroizing<Vec<u8>>, String> {
    if !from_stdin && std::io::stdin().is_terminal() {
        ask()
    } else {
        read_line(&mut std::io::stdin().lock())
    }
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
pub fn read_line(input: &mut impl BufRead) -> Result<Zeroizing<Vec<u8>>, String> {
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
