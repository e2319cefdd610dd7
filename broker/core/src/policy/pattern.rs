//! Patterns: MessageSight's policy strings with `*` and `${...}` variables, compiled once.
//!
//! A pattern is literal text, `*` (any run of characters, `/` included, as in Amlen's
//! `ism_common_match`), and variables replaced by a fact about the client: `${UserID}`,
//! `${GroupID}` (any one of the user's groups), `${ClientID}`, `${CommonName}`. `${*}` and
//! `${$}` are a literal `*` and `$`. Where a pattern is written decides what it may hold
//! ([`PatternKind`]); what it may not hold is refused when the configuration is read.
//!
//! Substitution is safer than MessageSight's:
//! - a value stands for exactly one topic level: one holding `/`, `+`, `#` or NUL, or an empty
//!   one, matches nothing ([`substitutable`]); in a Topic, a variable must be a whole level of
//!   the pattern and its value a whole level of the topic, so user `a` under `t/${UserID}*`
//!   reaches `t/a` and `t/a/x`, never `t/ab`;
//! - a `*` in a value is a literal character, never a wildcard (Amlen's test: client
//!   `policy*08.3` may use `/policy*08.3/dest10`, not `/policyX08.3/dest10`);
//! - expansion is single-pass: a value is compared as text, never read as a pattern, so a
//!   client id containing the text `${UserID}` is just that text.
//!
//! Matching allocates nothing: the pattern's pieces are compared against the text in place,
//! with the values borrowed from the client. `*` is matched the classic way (leftmost
//! occurrence of each starred run), in time linear in the text per run.

use std::fmt;

use super::subject::{substitutable, Subject};

/// A fact about the client that a pattern may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    UserId,
    GroupId,
    ClientId,
    CommonName,
}

impl Var {
    const ALL: [Var; 4] = [Var::UserId, Var::GroupId, Var::ClientId, Var::CommonName];

    fn bit(self) -> u8 {
        1 << self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Var::UserId => "UserID",
            Var::GroupId => "GroupID",
            Var::ClientId => "ClientID",
            Var::CommonName => "CommonName",
        }
    }
}

/// Where a pattern is written: what it may hold and how it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternKind {
    /// `TopicPolicy.Topic`: `*` anywhere, all four variables, each a whole topic level; no
    /// `+` or `#` (policy topics are patterns, not MQTT filters).
    Topic,
    /// `SubscriptionPolicy.Subscription`, a shared subscription's group name: `*` anywhere;
    /// `${UserID}`, `${GroupID}`, `${CommonName}`, not `${ClientID}` (a group is shared by
    /// clients, Amlen's rule); no `/`, which no group name holds.
    ShareName,
    /// `ConnectionPolicy.ClientID`: exact, or a prefix ending in `*`; may hold `${UserID}` and
    /// `${CommonName}` (a client id that must equal the user's id), not the others (Amlen's
    /// `ism_config_validate_PolicySubstitution`).
    ConnectionClientId,
    /// Any other `ClientID`, `UserID`, `GroupID` or `CommonNames` filter: exact, or a prefix
    /// ending in `*`; no variables.
    Name,
}

impl PatternKind {
    fn allows(self, var: Var) -> bool {
        match self {
            PatternKind::Topic => true,
            PatternKind::ShareName => var != Var::ClientId,
            PatternKind::ConnectionClientId => matches!(var, Var::UserId | Var::CommonName),
            PatternKind::Name => false,
        }
    }

    fn star_anywhere(self) -> bool {
        matches!(self, PatternKind::Topic | PatternKind::ShareName)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(Box<str>),
    Star,
    Var(Var),
}

/// Why a pattern was refused, said for the attribute that holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError(pub String);

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// As written, for logs and errors.
    text: Box<str>,
    pieces: Box<[Piece]>,
    /// A Topic: variables stand for whole topic levels, and `$SYS` topics need a `$SYS` pattern.
    levels: bool,
    /// The variables it names, one bit each (`1 << var as u8`), so that a decision need not
    /// look for them among the pieces.
    named: u8,
    /// How many `*` it holds.
    stars: usize,
}

/// The values of a pattern's variables for one match.
#[derive(Clone, Copy)]
struct Values<'a> {
    user: &'a str,
    group: &'a str,
    client: &'a str,
    common_name: &'a str,
}

impl<'a> Values<'a> {
    fn get(&self, var: Var) -> &'a str {
        match var {
            Var::UserId => self.user,
            Var::GroupId => self.group,
            Var::ClientId => self.client,
            Var::CommonName => self.common_name,
        }
    }
}

impl Pattern {
    pub fn parse(text: &str, kind: PatternKind) -> Result<Pattern, PatternError> {
        let err = |m: String| Err(PatternError(m));
        if text.is_empty() {
            return err("is empty".into());
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut seen = [false; 4];
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c == '*' {
                if !kind.star_anywhere() && rest.len() > 1 {
                    return err(format!(
                        "\"{text}\" may hold '*' only as its last character (write ${{*}} for a literal asterisk)"
                    ));
                }
                push_literal(&mut pieces, &mut literal);
                if pieces.last() != Some(&Piece::Star) {
                    pieces.push(Piece::Star);
                }
                rest = &rest[1..];
            } else if let Some(after) = rest.strip_prefix("${") {
                let Some((name, tail)) = after.split_once('}') else {
                    return err(format!("\"{text}\" has a '${{' without its '}}'"));
                };
                match name {
                    "$" | "*" => literal.push_str(name),
                    _ => {
                        let Some(var) = Var::ALL.into_iter().find(|v| v.name() == name) else {
                            return err(format!(
                                "\"{text}\" names ${{{name}}}; the variables are ${{UserID}}, ${{GroupID}}, ${{ClientID}}, ${{CommonName}}, ${{*}} and ${{$}}"
                            ));
                        };
                        if !kind.allows(var) {
                            return err(format!("\"{text}\": ${{{name}}} cannot be used here"));
                        }
                        if std::mem::replace(&mut seen[var as usize], true) {
                            return err(format!("\"{text}\" names ${{{name}}} twice"));
                        }
                        push_literal(&mut pieces, &mut literal);
                        pieces.push(Piece::Var(var));
                    }
                }
                rest = tail;
            } else {
                if kind == PatternKind::Topic && (c == '+' || c == '#') {
                    return err(format!(
                        "\"{text}\" holds '{c}': a policy Topic is not an MQTT filter; '*' matches any characters"
                    ));
                }
                if kind == PatternKind::ShareName && c == '/' {
                    return err(format!(
                        "\"{text}\" holds '/', which no shared subscription's name holds"
                    ));
                }
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        push_literal(&mut pieces, &mut literal);
        let levels = kind == PatternKind::Topic;
        if levels {
            check_whole_levels(text, &pieces)?;
        }
        let named = pieces.iter().fold(0, |bits, p| match p {
            Piece::Var(var) => bits | var.bit(),
            _ => bits,
        });
        Ok(Pattern {
            text: text.into(),
            stars: pieces.iter().filter(|p| matches!(p, Piece::Star)).count(),
            pieces: pieces.into_boxed_slice(),
            levels,
            named,
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// `*` alone: everything (but `$` topics, for a Topic).
    pub fn is_any(&self) -> bool {
        *self.pieces == [Piece::Star]
    }

    /// `$SYS` topics are matched only by patterns that begin with a literal `$SYS`, as MQTT's
    /// `#` and `+` never match them: `*` grants no `$SYS`. (Other `$` topics are ordinary here,
    /// as they are to MQTT filters that name them.)
    fn grants_sys(&self) -> bool {
        matches!(self.pieces.first(), Some(Piece::Literal(l)) if l.starts_with("$SYS"))
    }

    /// Whether the topic name (or one part of a topic filter, see [`super::rules`]) matches.
    /// For a filter, `+` and `#` can only be consumed by a `*` of the pattern (no literal of a
    /// Topic holds them, no value either), so a match means the pattern matches every topic
    /// the filter does.
    pub fn matches_topic(&self, topic: &str, s: &Subject) -> bool {
        if super::is_sys(topic) && !self.grants_sys() {
            return false;
        }
        self.matches(topic, s)
    }

    /// Whether `text` (a name, or a topic for [`Pattern::matches_topic`]) matches.
    pub fn matches(&self, text: &str, s: &Subject) -> bool {
        if self.is_any() {
            return true;
        }
        // Most patterns a client does not match differ in their literal start: say so before
        // looking at any value.
        if let Some(Piece::Literal(start)) = self.pieces.first() {
            if !text.starts_with(&**start) {
                return false;
            }
        }
        // Every value the pattern names must be one whole level; a missing one matches nothing.
        let fits = |var: Var, value: Option<&str>| {
            self.named & var.bit() == 0 || value.is_some_and(substitutable)
        };
        if !(fits(Var::UserId, s.user_id())
            && fits(Var::ClientId, Some(s.client_id))
            && fits(Var::CommonName, s.common_name))
        {
            return false;
        }
        let mut values = Values {
            user: s.user_id().unwrap_or(""),
            group: "",
            client: s.client_id,
            common_name: s.common_name.unwrap_or(""),
        };
        if self.named & Var::GroupId.bit() == 0 {
            return self.glob(text.as_bytes(), &values);
        }
        s.groups().iter().filter(|g| substitutable(g)).any(|g| {
            values.group = &**g;
            self.glob(text.as_bytes(), &values)
        })
    }

    /// `*`-glob over the pieces with the values in place: the run before the first `*` is
    /// anchored at the start, the run after the last at the end, and each run between is found
    /// at its leftmost place after the previous one (which leaves the most room for the rest,
    /// so nothing needs to be tried again).
    fn glob(&self, text: &[u8], v: &Values) -> bool {
        let is_star = |p: &Piece| matches!(p, Piece::Star);
        let mut runs = self.pieces.split(is_star);
        let first = runs.next().unwrap_or(&[]);
        let Some(mut at) = self.run_at(first, text, 0, v) else {
            return false;
        };
        let stars = self.stars;
        if stars == 0 {
            return at == text.len();
        }
        let last = self.pieces.rsplit(is_star).next().unwrap_or(&[]);
        let last_len = run_len(last, v);
        if text.len() < at + last_len {
            return false;
        }
        let end = text.len() - last_len;
        if self.run_at(last, text, end, v).is_none() {
            return false;
        }
        for run in runs.take(stars - 1) {
            let len = run_len(run, v);
            let mut p = at;
            loop {
                if p + len > end {
                    return false;
                }
                if self.run_at(run, text, p, v).is_some() {
                    break;
                }
                p += 1;
            }
            at = p + len;
        }
        true
    }

    /// Where the run of literals and values ends if it matches `text` at `at`.
    fn run_at(&self, run: &[Piece], text: &[u8], mut at: usize, v: &Values) -> Option<usize> {
        for piece in run {
            let (bytes, var) = match piece {
                Piece::Literal(l) => (l.as_bytes(), false),
                Piece::Var(var) => (v.get(*var).as_bytes(), true),
                Piece::Star => unreachable!("runs are split at stars"),
            };
            let end = at + bytes.len();
            if text.get(at..end) != Some(bytes) {
                return None;
            }
            if var && self.levels {
                let starts_level = at == 0 || text[at - 1] == b'/';
                let ends_level = end == text.len() || text[end] == b'/';
                if !(starts_level && ends_level) {
                    return None;
                }
            }
            at = end;
        }
        Some(at)
    }
}

fn run_len(run: &[Piece], v: &Values) -> usize {
    run.iter()
        .map(|p| match p {
            Piece::Literal(l) => l.len(),
            Piece::Var(var) => v.get(*var).len(),
            Piece::Star => 0,
        })
        .sum()
}

fn push_literal(pieces: &mut Vec<Piece>, literal: &mut String) {
    if !literal.is_empty() {
        pieces.push(Piece::Literal(std::mem::take(literal).into()));
    }
}

/// In a Topic each variable must be a whole level of the pattern: after the start, a `/` or a
/// `*`, and before the end, a `/` or a `*`. Then its value can be required to be a whole level
/// of the topic, and `x${UserID}` cannot make user `1` own `x1` next to user `11`'s `x11`.
fn check_whole_levels(text: &str, pieces: &[Piece]) -> Result<(), PatternError> {
    for (i, piece) in pieces.iter().enumerate() {
        let Piece::Var(var) = piece else { continue };
        let before = match i.checked_sub(1).map(|j| &pieces[j]) {
            None | Some(Piece::Star) => true,
            Some(Piece::Literal(l)) => l.ends_with('/'),
            Some(Piece::Var(_)) => false,
        };
        let after = match pieces.get(i + 1) {
            None | Some(Piece::Star) => true,
            Some(Piece::Literal(l)) => l.starts_with('/'),
            Some(Piece::Var(_)) => false,
        };
        if !(before && after) {
            return Err(PatternError(format!(
                "\"{text}\": ${{{}}} must be a whole topic level (as in a/${{{}}}/b), so that its value stands for exactly one level",
                var.name(),
                var.name()
            )));
        }
    }
    Ok(())
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
