//! Running command lines: one from `-c`, lines from a pipe, or an interactive session with a
//! line editor. Each line goes split -> parse -> (confirm) -> requests -> rendered answer.

use std::io::{self, BufRead, Read, Write};
use std::path::Path;

use rustyline::config::{CompletionType, Config};
use rustyline::error::ReadlineError;
use rustyline::history::MemHistory;
use rustyline::Editor;

use crate::client::{Client, Settings};
use crate::command::{self, Command, SPECS};
use crate::complete::ShellHelper;
use crate::line::{self, is_forbidden_char, LINE_BYTES_MAX};
use crate::objects::OBJECT_TYPES;
use crate::render;
use crate::request::{self, Plan};
use crate::tune;

/// Exit statuses: the command ran; the admin endpoint refused it or could not be reached (or
/// a confirmation was declined); the line itself was refused before anything was sent.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// Lines kept for the arrow keys, in memory only: nothing typed is written to disk, so a
/// password given in `create MessagingUser ... Password=...` never lands in a file.
const HISTORY_ENTRIES_MAX: usize = 500;

const PROMPT: &str = "ironsight> ";

/// Help text is folded to fit an 80-column terminal.
const HELP_COLUMNS: usize = 78;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed(u8),
    Exit,
}

/// How a confirmation is obtained: asked on the terminal, or refused because nobody is there
/// to answer (`ssh admin@host stop`, a pipe), in which case `force` is the way.
pub enum Confirm<'a> {
    Ask(&'a mut dyn FnMut(&str) -> bool),
    Refuse,
}

pub struct Shell {
    settings: Result<Settings, String>,
    client: Option<Client>,
}

impl Shell {
    /// The settings are read once, at start; a broken settings file fails the commands that
    /// need the admin endpoint, not `help`.
    pub fn new(settings: Result<Settings, String>) -> Shell {
        let client = settings.as_ref().ok().map(Client::new);
        Shell { settings, client }
    }

    /// Runs one line: results go to `out`, errors to `err` (the terminal's stdout and stderr,
    /// or buffers in tests).
    pub fn run_line(
        &self,
        line: &str,
        confirm: Confirm<'_>,
        out: &mut dyn Write,
        err: &mut dyn Write,
    ) -> Outcome {
        let command = match line::split(line)
            .map_err(|e| e.to_string())
            .and_then(|words| command::parse(&words).map_err(|e| e.to_string()))
        {
            Ok(Some(command)) => command,
            Ok(None) => return Outcome::Done,
            Err(message) => {
                error(err, &message);
                return Outcome::Failed(EXIT_USAGE);
            }
        };
        match &command {
            Command::Help(spec) => {
                print(out, &help(*spec));
                return Outcome::Done;
            }
            Command::Exit => return Outcome::Exit,
            Command::TuneShow => {
                let shown = match &self.settings {
                    Ok(settings) => tune::show(&settings.tune, Path::new(tune::PROC_SYS)),
                    Err(message) => Err(message.clone()),
                };
                return match shown {
                    Ok(text) => {
                        print(out, &text);
                        Outcome::Done
                    }
                    Err(message) => {
                        error(err, &message);
                        Outcome::Failed(EXIT_FAILED)
                    }
                };
            }
            _ => {}
        }
        if let Some(question) = command.confirmation() {
            match confirm {
                Confirm::Refuse => {
                    error(
                        err,
                        &format!(
                            "{question}\nNobody is here to confirm: write `{} force` to run it \
                         without asking.",
                            verb(&command)
                        ),
                    );
                    return Outcome::Failed(EXIT_USAGE);
                }
                Confirm::Ask(ask) => {
                    if !ask(question) {
                        print(out, "Not confirmed: nothing was done.");
                        return Outcome::Failed(EXIT_FAILED);
                    }
                }
            }
        }
        let plan = request::plan(&command).unwrap_or_else(|| unreachable!("local commands"));
        match self.execute(&command, &plan) {
            Ok(text) => {
                print(out, &text);
                Outcome::Done
            }
            Err(message) => {
                error(err, &message);
                Outcome::Failed(EXIT_FAILED)
            }
        }
    }

    fn execute(&self, command: &Command, plan: &Plan) -> Result<String, String> {
        let (settings, client) = match (&self.settings, &self.client) {
            (Ok(settings), Some(client)) => (settings, client),
            (Err(e), _) => return Err(e.clone()),
            (Ok(_), None) => unreachable!("a client is made with the settings"),
        };
        let refused = |answer: &crate::client::Answer| {
            let mut text = render::failure(answer.status, &answer.body);
            if answer.status == 401 {
                text.push_str(&format!(
                    "\nThe admin endpoint wants a user and password: set User and PasswordFile \
                     in {}.",
                    settings.source
                ));
            }
            text
        };
        if let Some(check) = &plan.check {
            let answer = client.send(&check.probe)?;
            let exists = match answer.status {
                404 => false,
                s if (200..300).contains(&s) => true,
                _ => return Err(refused(&answer)),
            };
            if exists != check.must_exist {
                let (state, instead) = if exists {
                    ("already exists", "update")
                } else {
                    ("does not exist", "create")
                };
                return Err(format!(
                    "{} {state}: nothing was changed (use {instead})",
                    render::sanitize(&check.object)
                ));
            }
        }
        let answer = client.send(&plan.request)?;
        if answer.ok() {
            Ok(render::success(command, &answer.body))
        } else {
            Err(refused(&answer))
        }
    }
}

fn verb(command: &Command) -> &'static str {
    match command {
        Command::Restart { .. } => "restart",
        _ => "stop",
    }
}

/// Output goes to whoever is connected; if they are gone (a closed pipe, a dropped SSH
/// session) there is nobody left to tell, so write errors are ignored.
fn print(out: &mut dyn Write, text: &str) {
    let _ = writeln!(out, "{text}");
}

fn error(err: &mut dyn Write, text: &str) {
    let _ = writeln!(err, "error: {text}");
}

/// The line on the process's own stdout and stderr.
fn run_on_stdio(shell: &Shell, line: &str, confirm: Confirm<'_>) -> Outcome {
    shell.run_line(line, confirm, &mut io::stdout(), &mut io::stderr())
}

/// `help`, or `help <command>`.
pub fn help(spec: Option<&command::Spec>) -> String {
    match spec {
        Some(spec) => {
            let mut text = format!("{}\n  {}\n", spec.usage, spec.summary);
            if !spec.details.is_empty() {
                text.push('\n');
                text.push_str(&wrap(spec.details));
            }
            if matches!(spec.name, "show" | "list" | "create" | "update" | "delete") {
                text.push_str(&types_help());
            }
            text.trim_end().to_string()
        }
        None => {
            let width = SPECS.iter().map(|s| s.usage.len()).max().unwrap_or(0);
            let mut text = wrap(
                "ironsight appliance shell: MessageSight's imaserver commands over the REST \
                 admin API.",
            );
            text.push_str("\nCommands:\n");
            for spec in SPECS {
                text.push_str(&format!("  {:width$}  {}\n", spec.usage, spec.summary));
            }
            text.push('\n');
            text.push_str(&wrap(
                "help <command> tells more. Values with spaces go in quotes: \
                 Description=\"two words\".",
            ));
            text.trim_end().to_string()
        }
    }
}

/// Help paragraphs folded at [`HELP_COLUMNS`]; lines that start with spaces (examples) are
/// kept as they are.
fn wrap(text: &str) -> String {
    let mut out = String::new();
    for paragraph in text.lines() {
        if paragraph.starts_with(' ') {
            out.push_str(paragraph);
            out.push('\n');
            continue;
        }
        let mut column = 0;
        for word in paragraph.split(' ').filter(|w| !w.is_empty()) {
            if column > 0 && column + 1 + word.len() > HELP_COLUMNS {
                out.push('\n');
                column = 0;
            } else if column > 0 {
                out.push(' ');
                column += 1;
            }
            out.push_str(word);
            column += word.len();
        }
        out.push('\n');
    }
    out
}

fn types_help() -> String {
    let named: Vec<&str> = OBJECT_TYPES
        .iter()
        .filter(|t| !t.singleton)
        .map(|t| t.name)
        .collect();
    let single: Vec<&str> = OBJECT_TYPES
        .iter()
        .filter(|t| t.singleton)
        .map(|t| t.name)
        .collect();
    wrap(&format!(
        "\nTypes: {}.\nSingle objects (no name): {}.",
        named.join(", "),
        single.join(", ")
    ))
}

/// `ironsight-shell -c "<line>"`: one command, as sshd runs it for `ssh admin@host <line>`.
pub fn run_one(shell: &Shell, line: &str) -> u8 {
    match run_on_stdio(shell, line, Confirm::Refuse) {
        Outcome::Done | Outcome::Exit => EXIT_OK,
        Outcome::Failed(code) => code,
    }
}

/// Commands from a pipe (`ssh admin@host < commands`): one a line, stopping at the first that
/// fails, whose status is the shell's; nothing asks for confirmation.
pub fn run_batch(shell: &Shell, input: &mut impl BufRead) -> u8 {
    loop {
        let line = match read_line_bounded(input) {
            Ok(Some(Ok(line))) => line,
            Ok(Some(Err(too_long))) => {
                error(&mut io::stderr(), &too_long);
                return EXIT_USAGE;
            }
            Ok(None) => return EXIT_OK,
            Err(e) => {
                error(&mut io::stderr(), &format!("reading commands: {e}"));
                return EXIT_FAILED;
            }
        };
        match run_on_stdio(shell, &line, Confirm::Refuse) {
            Outcome::Done => {}
            Outcome::Exit => return EXIT_OK,
            Outcome::Failed(code) => return code,
        }
    }
}

/// One line without its newline; Some(Err) for a line over [`LINE_BYTES_MAX`] (its bytes are
/// never held: they are skipped to the next newline), None at the end of input.
fn read_line_bounded(input: &mut impl BufRead) -> io::Result<Option<Result<String, String>>> {
    // The longest line with its "\r\n"; one byte more says the line is too long.
    let read_max = LINE_BYTES_MAX + 3;
    let mut bytes = Vec::new();
    let read = Read::take(&mut *input, read_max as u64).read_until(b'\n', &mut bytes)?;
    if read == 0 {
        return Ok(None);
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    } else if read == read_max {
        let bytes = read + skip_line(input)?;
        return Ok(Some(Err(line::LineError::TooLong { bytes }.to_string())));
    }
    if bytes.len() > LINE_BYTES_MAX {
        let bytes = bytes.len();
        return Ok(Some(Err(line::LineError::TooLong { bytes }.to_string())));
    }
    Ok(Some(
        String::from_utf8(bytes).map_err(|_| "the line is not UTF-8".to_string()),
    ))
}

/// Consumes the rest of a line and its newline; returns how many bytes were skipped before it.
fn skip_line(input: &mut impl BufRead) -> io::Result<usize> {
    let mut skipped = 0;
    loop {
        let buffer = input.fill_buf()?;
        if buffer.is_empty() {
            return Ok(skipped);
        }
        match buffer.iter().position(|&b| b == b'\n') {
            Some(end) => {
                input.consume(end + 1);
                return Ok(skipped + end);
            }
            None => {
                let n = buffer.len();
                skipped += n;
                input.consume(n);
            }
        }
    }
}

/// The interactive session on a terminal: a prompt, history for the session, completion.
pub fn run_interactive(shell: &Shell) -> u8 {
    let config = Config::builder()
        .max_history_size(HISTORY_ENTRIES_MAX)
        .and_then(|b| b.history_ignore_dups(true))
        .map(|b| {
            b.auto_add_history(false)
                .completion_type(CompletionType::List)
                .build()
        });
    let mut editor = match config.and_then(|config| {
        let history = MemHistory::with_config(&config);
        Editor::<ShellHelper, MemHistory>::with_history(config, history)
    }) {
        Ok(editor) => editor,
        Err(e) => {
            error(&mut io::stderr(), &format!("cannot use the terminal: {e}"));
            return EXIT_FAILED;
        }
    };
    editor.set_helper(Some(ShellHelper));
    print(&mut io::stdout(), &banner(&shell.settings));
    loop {
        let line = match editor.readline(PROMPT) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return EXIT_OK,
            Err(e) => {
                error(&mut io::stderr(), &format!("reading the terminal: {e}"));
                return EXIT_FAILED;
            }
        };
        if !line.trim().is_empty()
            && line.len() <= LINE_BYTES_MAX
            && !line.chars().any(is_forbidden_char)
        {
            let _ = editor.add_history_entry(line.as_str());
        }
        let mut ask = |question: &str| {
            print(&mut io::stdout(), question);
            matches!(editor.readline("Type yes to confirm: "), Ok(answer) if answer.trim() == "yes")
        };
        if run_on_stdio(shell, &line, Confirm::Ask(&mut ask)) == Outcome::Exit {
            return EXIT_OK;
        }
    }
}

fn banner(settings: &Result<Settings, String>) -> String {
    let target = match settings {
        Ok(s) => format!("Admin endpoint: {} (from {}).", s.admin_url, s.source),
        Err(e) => format!("Warning: {e}"),
    };
    format!("ironsight appliance shell. Type help for the commands, exit to leave.\n{target}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<Result<String, String>> {
        let mut reader = io::BufReader::with_capacity(64, input);
        std::iter::from_fn(|| read_line_bounded(&mut reader).unwrap()).collect()
    }

    #[test]
    fn piped_lines_are_bounded_and_an_overlong_one_is_skipped_whole() {
        assert_eq!(
            lines(b"status\r\nhelp\nlast"),
            [
                Ok("status".to_string()),
                Ok("help".to_string()),
                Ok("last".to_string())
            ]
        );
        let mut input = vec![b'a'; LINE_BYTES_MAX * 3];
        input.extend_from_slice(b"\nstatus\n");
        let got = lines(&input);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            got[0],
            Err(format!(
                "the line is {} bytes long; the longest accepted is {LINE_BYTES_MAX}",
                LINE_BYTES_MAX * 3
            ))
        );
        assert_eq!(got[1], Ok("status".to_string()));
        let exact = vec![b'b'; LINE_BYTES_MAX];
        assert_eq!(lines(&exact), [Ok("b".repeat(LINE_BYTES_MAX))]);
        assert_eq!(lines(b"\xff\n"), [Err("the line is not UTF-8".to_string())]);
    }

    #[test]
    fn help_lists_every_command_and_details_one() {
        let text = help(None);
        for spec in SPECS {
            assert!(text.contains(spec.usage), "{}", spec.name);
        }
        let show = help(command::spec("show"));
        assert!(show.starts_with("show <Type> [<Name>]"));
        assert!(show.contains("Single objects (no name): LDAP, Broker, Store,"));
        for spec in SPECS {
            let text = help(Some(spec));
            assert!(text.lines().all(|l| l.len() <= 80), "{text}");
        }
        assert!(help(None).lines().all(|l| l.len() <= 80), "{}", help(None));
    }

    /// Runs a line with its output captured: (outcome, stdout, stderr).
    fn run(shell: &Shell, line: &str, confirm: Confirm<'_>) -> (Outcome, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let outcome = shell.run_line(line, confirm, &mut out, &mut err);
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (outcome, text(out), text(err))
    }

    #[test]
    fn refusals_before_the_network_have_the_usage_status() {
        // No settings at all: these lines never get as far as needing them.
        let shell = Shell::new(Err("no settings".into()));
        for (line, expected) in [
            ("bash", "error: unknown command \"bash\""),
            ("!sh", "error: '!' at column 1 has no meaning here"),
            ("status; id", "error: ';' at column 7"),
            (
                "show Nothing",
                "error: \"Nothing\" is not a configuration object type",
            ),
            ("stop", "Nobody is here to confirm: write `stop force`"),
            ("restart", "write `restart force`"),
            ("a\u{1b}b", "error: control character U+001B at column 2"),
        ] {
            let (outcome, out, err) = run(&shell, line, Confirm::Refuse);
            assert_eq!(outcome, Outcome::Failed(EXIT_USAGE), "{line}");
            assert!(err.contains(expected), "{line}: {err}");
            assert!(out.is_empty(), "{line}: {out}");
        }
        let (outcome, out, _) = run(&shell, "help", Confirm::Refuse);
        assert_eq!(outcome, Outcome::Done);
        assert!(out.contains("Commands:"));
        assert_eq!(run(&shell, "exit", Confirm::Refuse).0, Outcome::Exit);
        assert_eq!(
            run(&shell, "   ", Confirm::Refuse),
            (Outcome::Done, String::new(), String::new())
        );
        // A broken settings file fails the command that needs the endpoint, as a failure.
        let (outcome, _, err) = run(&shell, "status", Confirm::Refuse);
        assert_eq!(
            (outcome, err.as_str()),
            (Outcome::Failed(EXIT_FAILED), "error: no settings\n")
        );
        let mut asked = Vec::new();
        let mut decline = |q: &str| {
            asked.push(q.to_string());
            false
        };
        let (outcome, out, _) = run(&shell, "stop", Confirm::Ask(&mut decline));
        assert_eq!(outcome, Outcome::Failed(EXIT_FAILED));
        assert_eq!(out, "Not confirmed: nothing was done.\n");
        assert_eq!(asked.len(), 1);
        assert!(asked[0].starts_with("Stop the broker?"));
        // force asks nothing (and then needs the endpoint).
        let mut never = |_: &str| -> bool { panic!("force must not ask") };
        assert_eq!(
            run(&shell, "stop force", Confirm::Ask(&mut never)).0,
            Outcome::Failed(EXIT_FAILED)
        );
    }
}
