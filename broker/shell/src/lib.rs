//! `ironsight-shell`: the appliance's restricted command shell. MessageSight's `imaserver`
//! commands (`status`, `show`, `list`, `create`, `update`, `delete`, `stat`, `close
//! connection`, `restart`, `stop`, `help`, and the appliance's `tune show`) sent to the broker's REST admin API (Amlen's
//! routes under `/ima/v1`). It is the login shell of the `admin` user: `ssh admin@host` opens
//! an interactive session, `ssh admin@host status` runs one command (sshd calls
//! `ironsight-shell -c "status"`). User documentation: `docs/shell.md`.
//!
//! # Layout
//! - [`line`]: a command line to words (quotes; no expansion; control and shell characters
//!   refused; a length limit).
//! - [`command`]: words to a typed [`command::Command`]; the help of every command.
//! - [`objects`]: the object types, monitoring objects, filters; how `Attr=Value` is typed.
//! - [`request`]: a command to the HTTP requests it makes (plain data).
//! - [`client`]: the settings file (URL, user, password file) and the HTTP exchange.
//! - [`render`]: answers as text tables; Amlen's error shape; terminal-safe output.
//! - [`complete`]: tab completion.
//! - [`session`]: `-c`, piped and interactive sessions; confirmation; exit statuses.
//! - [`tune`]: `tune show`, the kernel tuning and CPU layout read from the machine.
//!
//! Invariants a newcomer must not break:
//! - The shell never starts a process, opens a pager or an editor, or reads a file the
//!   operator names. Every byte typed goes through [`line::split`], and the only things it
//!   can cause are the HTTP requests of [`request::plan`] to the URL of the settings file,
//!   and `tune show`'s reading of the two files the settings file names and of /proc/sys.
//! - Where it connects and with which password comes from the settings file alone, never from
//!   the environment or the command line (see [`client`]).
//! - A command refused by the shell sends nothing; `create` and `update` check first that
//!   the object is absent or present, so neither changes what it was not meant to.

pub mod client;
pub mod command;
pub mod complete;
pub mod line;
pub mod objects;
pub mod render;
pub mod request;
pub mod session;
pub mod tune;
