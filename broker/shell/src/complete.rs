//! Tab completion for the interactive shell: command names, then object types, monitoring
//! objects and filter names, from the same tables the parser uses.

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

use crate::command::SPECS;
use crate::objects::{
    monitor_object, CLOSE_CONNECTION_FILTERS, MONITOR_OBJECTS, MQTT_CLIENT, OBJECT_TYPES,
};

/// A word that may come next: a name alone (`word `), or a filter that takes a value
/// (`word=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub word: &'static str,
    pub takes_value: bool,
}

fn words(list: impl IntoIterator<Item = &'static str>) -> Vec<Candidate> {
    list.into_iter()
        .map(|word| Candidate {
            word,
            takes_value: false,
        })
        .collect()
}

fn filters(list: &[&'static str]) -> Vec<Candidate> {
    list.iter()
        .map(|&word| Candidate {
            word,
            takes_value: true,
        })
        .collect()
}

/// The words that may come at the cursor, given the words before it.
pub fn candidates(before: &[&str]) -> Vec<Candidate> {
    let verb = before.first().map(|v| v.to_ascii_lowercase());
    match (verb.as_deref(), before.len()) {
        (_, 0) => words(SPECS.iter().map(|s| s.name).chain(["quit"])),
        (Some("show" | "list" | "create" | "update"), 1) => {
            words(OBJECT_TYPES.iter().map(|t| t.name))
        }
        (Some("delete"), 1) => words(
            OBJECT_TYPES
                .iter()
                .filter(|t| !t.singleton)
                .map(|t| t.name)
                .chain([MQTT_CLIENT]),
        ),
        (Some("stat"), 1) => words(MONITOR_OBJECTS.iter().map(|o| o.name)),
        (Some("stat"), _) => monitor_object(before[1])
            .map(|o| filters(o.filters))
            .unwrap_or_default(),
        (Some("close"), 1) => words(["connection"]),
        (Some("close"), _) => filters(CLOSE_CONNECTION_FILTERS),
        (Some("help"), 1) => words(SPECS.iter().map(|s| s.name)),
        (Some("restart" | "stop"), 1) => words(["force"]),
        (Some("tune"), 1) => words(["show"]),
        _ => Vec::new(),
    }
}

/// The rustyline helper: completion only (no hints, colours or multi-line validation).
pub struct ShellHelper;

impl Completer for ShellHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        let start = head.rfind(' ').map_or(0, |i| i + 1);
        let before: Vec<&str> = head[..start].split_whitespace().collect();
        let partial = &head[start..];
        let pairs = candidates(&before)
            .into_iter()
            .filter(|c| {
                c.word
                    .get(..partial.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(partial))
            })
            .map(|c| Pair {
                display: c.word.to_string(),
                replacement: format!("{}{}", c.word, if c.takes_value { '=' } else { ' ' }),
            })
            .collect();
        Ok((start, pairs))
    }
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;
    use rustyline::history::MemHistory;

    fn complete(line: &str) -> (usize, Vec<String>) {
        let history = MemHistory::new();
        let ctx = Context::new(&history);
        let (start, pairs) = ShellHelper.complete(line, line.len(), &ctx).unwrap();
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn commands_then_types_then_filters() {
        assert_eq!(
            complete("st"),
            (0, vec!["status ".into(), "stat ".into(), "stop ".into()])
        );
        assert_eq!(complete("show endp"), (5, vec!["Endpoint ".into()]));
        assert_eq!(complete("stat Conn"), (5, vec!["Connection ".into()]));
        assert_eq!(
            complete("stat Connection Res"),
            (16, vec!["ResultCount=".into()])
        );
        assert_eq!(complete("close c"), (6, vec!["connection ".into()]));
        assert_eq!(complete("close connection U"), (17, vec!["UserID=".into()]));
        assert_eq!(complete("delete MQTT"), (7, vec!["MQTTClient ".into()]));
        assert_eq!(complete("stop f"), (5, vec!["force ".into()]));
        assert!(complete("bash ").1.is_empty());
        assert!(
            complete("delete Bro").1.is_empty(),
            "a singleton cannot be deleted"
        );
    }
}
