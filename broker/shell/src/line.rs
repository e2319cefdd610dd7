//! Splitting one command line into words: the only reader of what an operator types.
//!
//! The rules are small on purpose, because this shell is the login shell of the appliance's
//! `admin` user and must never behave like a general one:
//!
//! | input                      | words                          |
//! |----------------------------|--------------------------------|
//! | `show Endpoint Demo`       | `show`, `Endpoint`, `Demo`     |
//! | `update X Y Description="a b"` | ..., `Description=a b` (quoted) |
//! | `close connection ClientID='a;b'` | ..., `ClientID=a;b`     |
//! | `stat Connection ClientID=*` | `*` is a plain character: filters use it as a wildcard |
//! | `bash`, `/bin/sh`          | one word each, which no command is named |
//! | `!sh`, `; id`, `$(id)`, `` `id` ``, `\| sh`, `a > f` | refused: [`LineError::Metacharacter`] |
//! | a tab, newline, escape, NUL, a bidi override | refused: [`LineError::ControlCharacter`] |
//! | more than [`LINE_BYTES_MAX`] bytes | refused: [`LineError::TooLong`] |
//!
//! Quotes (`"..."` or `'...'`) group characters, spaces and metacharacters included, into a
//! word; there are no escapes inside them (use the other quote to write one), and nothing is
//! ever expanded: no variables, no globs, no `~`, no history (`!`), no command substitution.

use std::fmt;

/// The longest line accepted, in bytes. Longer than any command needs (a policy's topic list),
/// short enough that a pasted file or a flood is refused at once.
pub const LINE_BYTES_MAX: usize = 4096;

/// Characters that mean something to a general shell (sequencing, pipes, redirection,
/// substitution, history, grouping). Outside quotes they are refused rather than taken as
/// plain text, so that nobody mistakes this shell for one that runs programs.
const METACHARACTERS: &[char] = &[';', '|', '&', '$', '`', '<', '>', '(', ')', '{', '}', '!'];

/// One word of a command line. `quote_start` is the byte offset in `text` where the first
/// quoted part begins, if any: an `=` before it separates an attribute from its value, one
/// after it is part of a quoted value or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub quote_start: Option<usize>,
}

impl Word {
    /// True when any part of the word was written in quotes: a quoted attribute value is
    /// always sent as a string (see `objects::typed_value`).
    pub fn quoted(&self) -> bool {
        self.quote_start.is_some()
    }

    /// `Attr=Value` split at the first `=` written outside quotes; None when there is none
    /// (`"a=b"` is one quoted literal, a name, not an assignment).
    pub fn assignment(&self) -> Option<(&str, &str)> {
        let unquoted = &self.text[..self.quote_start.unwrap_or(self.text.len())];
        let at = unquoted.find('=')?;
        Some((&self.text[..at], &self.text[at + 1..]))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    TooLong { bytes: usize },
    ControlCharacter { position: usize, code: u32 },
    Metacharacter { position: usize, character: char },
    UnclosedQuote { quote: char },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong { bytes } => write!(
                f,
                "the line is {bytes} bytes long; the longest accepted is {LINE_BYTES_MAX}"
            ),
            LineError::ControlCharacter { position, code } => write!(
                f,
                "control character U+{code:04X} at column {position} is not accepted"
            ),
            LineError::Metacharacter {
                position,
                character,
            } => write!(
                f,
                "'{character}' at column {position} has no meaning here: this shell runs its own \
                 commands only; quote a value that contains it"
            ),
            LineError::UnclosedQuote { quote } => write!(f, "a {quote} quote is not closed"),
        }
    }
}

/// True for characters no command line may hold: C0 and C1 controls (tab, newline and escape
/// included) and the invisible formatting characters that make text read differently from
/// what it is (bidirectional overrides, zero-width characters, the byte order mark).
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Splits `line` into words, or says why the line is refused. Columns in errors count
/// characters from 1.
pub fn split(line: &str) -> Result<Vec<Word>, LineError> {
    if line.len() > LINE_BYTES_MAX {
        return Err(LineError::TooLong { bytes: line.len() });
    }
    let mut words = Vec::new();
    let mut current: Option<Word> = None;
    let mut quote: Option<char> = None;
    for (index, c) in line.chars().enumerate() {
        let position = index + 1;
        if is_forbidden_char(c) {
            return Err(LineError::ControlCharacter {
                position,
                code: c as u32,
            });
        }
        if let Some(q) = quote {
            if c == q {
                quote = None;
            } else {
                current.get_or_insert_with(empty_word).text.push(c);
            }
            continue;
        }
        match c {
            ' ' => words.extend(current.take()),
            '"' | '\'' => {
                quote = Some(c);
                let word = current.get_or_insert_with(empty_word);
                word.quote_start.get_or_insert(word.text.len());
            }
            c if METACHARACTERS.contains(&c) => {
                return Err(LineError::Metacharacter {
                    position,
                    character: c,
                })
            }
            c => current.get_or_insert_with(empty_word).text.push(c),
        }
    }
    if let Some(quote) = quote {
        return Err(LineError::UnclosedQuote { quote });
    }
    words.extend(current);
    Ok(words)
}

fn empty_word() -> Word {
    Word {
        text: String::new(),
        quote_start: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<String> {
        split(line).unwrap().into_iter().map(|w| w.text).collect()
    }

    #[test]
    fn words_are_split_on_spaces_and_runs_of_them() {
        assert_eq!(
            texts("  show   Endpoint  Demo "),
            ["show", "Endpoint", "Demo"]
        );
        assert!(split("").unwrap().is_empty());
        assert!(split("    ").unwrap().is_empty());
    }

    #[test]
    fn quotes_group_spaces_and_metacharacters_into_one_word() {
        let words = split(r#"update TopicPolicy P Description="a; b | c" Topic='x"y'"#).unwrap();
        assert_eq!(words[3].text, "Description=a; b | c");
        assert_eq!(words[3].quote_start, Some("Description=".len()));
        assert_eq!(words[3].assignment(), Some(("Description", "a; b | c")));
        assert_eq!(words[4].text, "Topic=x\"y");
        assert!(words[4].quoted());
        assert!(!words[0].quoted());
        assert_eq!(words[0].assignment(), None);
        // An = inside quotes is text: a quoted name may hold one.
        let words = split(r#"show MessageHub "a=b" 'c'=d"#).unwrap();
        assert_eq!(words[2].assignment(), None);
        assert_eq!(words[3].assignment(), None);
        // An empty quoted value is a word of its own (an attribute set to "").
        let words = split(r#"update X Y Description="""#).unwrap();
        assert_eq!(words[3].text, "Description=");
        assert_eq!(split(r#""""#).unwrap().len(), 1);
    }

    #[test]
    fn nothing_is_expanded() {
        assert_eq!(
            texts("stat Connection ClientID=* ~ a\\b #"),
            ["stat", "Connection", "ClientID=*", "~", "a\\b", "#"]
        );
        assert_eq!(texts("'$(id)' \"`id`\""), ["$(id)", "`id`"]);
    }

    #[test]
    fn shell_metacharacters_outside_quotes_are_refused() {
        for (line, character, position) in [
            ("!sh", '!', 1),
            ("status; id", ';', 7),
            ("status && id", '&', 8),
            ("$(id)", '$', 1),
            ("`id`", '`', 1),
            ("status | sh", '|', 8),
            ("status > /tmp/x", '>', 8),
            ("status < /etc/passwd", '<', 8),
            ("{ id; }", '{', 1),
        ] {
            assert_eq!(
                split(line),
                Err(LineError::Metacharacter {
                    position,
                    character
                }),
                "{line}"
            );
        }
    }

    #[test]
    fn control_and_invisible_characters_are_refused_even_in_quotes() {
        for (line, code) in [
            ("status\nid", 0x0a),
            ("status\tid", 0x09),
            ("sta\u{1b}[2Jtus", 0x1b),
            ("\"a\u{0}b\"", 0x00),
            ("show \u{202E}tniopdnE", 0x202e),
            ("show\u{7f}", 0x7f),
            ("show \u{85}", 0x85),
        ] {
            match split(line) {
                Err(LineError::ControlCharacter { code: c, .. }) => assert_eq!(c, code, "{line:?}"),
                other => panic!("{line:?} gave {other:?}"),
            }
        }
        // Plain non-ASCII text is fine: client ids and descriptions are Unicode.
        assert_eq!(
            texts("show Endpoint Zürich"),
            ["show", "Endpoint", "Zürich"]
        );
    }

    #[test]
    fn the_length_limit_is_bytes_and_inclusive() {
        let at_limit = "a".repeat(LINE_BYTES_MAX);
        assert_eq!(split(&at_limit).unwrap().len(), 1);
        let over = "a".repeat(LINE_BYTES_MAX + 1);
        assert_eq!(
            split(&over),
            Err(LineError::TooLong {
                bytes: LINE_BYTES_MAX + 1
            })
        );
        // Multi-byte characters count as their bytes.
        let over = "ü".repeat(LINE_BYTES_MAX / 2 + 1);
        assert!(matches!(split(&over), Err(LineError::TooLong { .. })));
    }

    #[test]
    fn an_unclosed_quote_is_refused() {
        assert_eq!(
            split("update X Y Description=\"abc"),
            Err(LineError::UnclosedQuote { quote: '"' })
        );
        assert_eq!(split("'"), Err(LineError::UnclosedQuote { quote: '\'' }));
    }
}
