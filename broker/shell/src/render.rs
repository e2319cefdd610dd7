//! The admin endpoint's answers as text for a person: objects as aligned `Key  Value` lines,
//! lists of objects as tables, Amlen's `{"Code":..., "Message":...}` as one line.
//!
//! Everything shown passes through [`sanitize`]: client ids, user names and topics are chosen
//! by whoever connects, and an escape sequence in one must not reach the operator's terminal.

use std::borrow::Cow;
use std::fmt::Write;

use serde_json::{Map, Value};

use crate::command::Command;
use crate::line::is_forbidden_char;

/// How much of an answer that is not JSON is quoted in an error.
const RAW_ANSWER_CHARS_MAX: usize = 200;

/// Columns put first in a table, in this order, when the rows have them: what identifies a row.
const LEADING_COLUMNS: &[&str] = &["Name", "ClientID", "SubName", "UserID", "ClientAddress"];

/// `text` with every control or invisible formatting character written as `\u{..}`.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_forbidden_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_forbidden_char(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The text of a successful answer to `command`.
pub fn success(command: &Command, body: &str) -> String {
    let Ok(Value::Object(mut answer)) = serde_json::from_str::<Value>(body) else {
        return if body.trim().is_empty() {
            "done".to_string()
        } else {
            sanitize(body.trim_end()).into_owned()
        };
    };
    answer.remove("Version");
    if answer.len() == 2 {
        if let Some(line) = code_and_message(&answer) {
            return line;
        }
    }
    if let Command::List { object } = command {
        return names(object.name, answer.get(object.name));
    }
    let mut out = String::new();
    object(&mut out, &answer, 0);
    out.trim_end().to_string()
}

/// The text of an answer with a failure status: Amlen's code and message when the body has
/// them, else the status and the start of the body.
pub fn failure(status: u16, body: &str) -> String {
    if let Ok(Value::Object(answer)) = serde_json::from_str::<Value>(body) {
        if let Some(line) = code_and_message(&answer) {
            return format!("{line} (HTTP {status})");
        }
    }
    let body = body.trim();
    let quoted: String = body.chars().take(RAW_ANSWER_CHARS_MAX).collect();
    let more = if body.chars().count() > RAW_ANSWER_CHARS_MAX {
        "..."
    } else {
        ""
    };
    if quoted.is_empty() {
        format!("the admin endpoint answered HTTP {status}")
    } else {
        format!(
            "the admin endpoint answered HTTP {status}: {}{more}",
            sanitize(&quoted)
        )
    }
}

/// `CWLNA0136 The item or object cannot be found.`, when the answer has Amlen's Code and
/// Message.
fn code_and_message(answer: &Map<String, Value>) -> Option<String> {
    let code = answer.get("Code")?.as_str()?;
    let message = answer.get("Message")?.as_str()?;
    Some(format!("{} {}", sanitize(code), sanitize(message)))
}

/// `list`: the names of the objects, one a line.
fn names(object_type: &str, objects: Option<&Value>) -> String {
    let names: Vec<String> = match objects {
        Some(Value::Object(objects)) => objects.keys().map(|k| sanitize(k).into_owned()).collect(),
        Some(Value::Array(items)) => items.iter().map(scalar).collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        format!("no {object_type} objects")
    } else {
        names.join("\n")
    }
}

/// An object: its scalar attributes as aligned lines, then each nested one under its name.
fn object(out: &mut String, map: &Map<String, Value>, indent: usize) {
    let (scalars, nested): (Vec<_>, Vec<_>) = map
        .iter()
        .partition(|(_, v)| !v.is_object() && !is_table(v));
    let width = scalars
        .iter()
        .map(|(k, _)| sanitize(k).chars().count())
        .max()
        .unwrap_or(0);
    for (key, value) in scalars {
        let key = sanitize(key);
        let pad = width - key.chars().count();
        let _ = writeln!(out, "{:indent$}{key}{:pad$}  {}", "", "", scalar(value));
    }
    for (key, value) in nested {
        let _ = writeln!(out, "{:indent$}{}:", "", sanitize(key));
        match value {
            Value::Object(map) if map.is_empty() => {
                let _ = writeln!(out, "{:1$}(none)", "", indent + 2);
            }
            Value::Object(map) => object(out, map, indent + 2),
            Value::Array(rows) => table(out, rows, indent + 2),
            _ => unreachable!("partitioned as nested"),
        }
    }
}

/// An array that reads best as a table: one of objects (or an empty one).
fn is_table(value: &Value) -> bool {
    value
        .as_array()
        .is_some_and(|rows| rows.iter().all(Value::is_object))
}

/// Rows of objects as a table: a header of the keys (identifying ones first), then a line
/// per row, columns as wide as their widest cell.
fn table(out: &mut String, rows: &[Value], indent: usize) {
    if rows.is_empty() {
        let _ = writeln!(out, "{:indent$}(none)", "");
        return;
    }
    let mut columns: Vec<&str> = Vec::new();
    for row in rows.iter().filter_map(Value::as_object) {
        for key in row.keys() {
            if !columns.contains(&key.as_str()) {
                columns.push(key);
            }
        }
    }
    columns.sort_by_key(|c| {
        LEADING_COLUMNS
            .iter()
            .position(|l| l == c)
            .unwrap_or(LEADING_COLUMNS.len())
    });
    let cells: Vec<Vec<String>> = rows
        .iter()
        .filter_map(Value::as_object)
        .map(|row| {
            columns
                .iter()
                .map(|c| row.get(*c).map(scalar).unwrap_or_default())
                .collect()
        })
        .collect();
    let header: Vec<String> = columns.iter().map(|c| sanitize(c).into_owned()).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            std::iter::once(&header)
                .chain(&cells)
                .map(|row| row[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in std::iter::once(&header).chain(&cells) {
        let mut line = " ".repeat(indent);
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:width$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

/// One value on one line: strings as they are ("" when empty, so it shows), numbers and
/// booleans as JSON, arrays of scalars comma-separated, anything deeper as compact JSON.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "\"\"".to_string(),
        Value::String(s) => sanitize(s).into_owned(),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        }
        other => sanitize(&other.to_string()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::parse;
    use crate::line::split;

    fn command(line: &str) -> Command {
        parse(&split(line).unwrap()).unwrap().unwrap()
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(sanitize("plain Zürich"), "plain Zürich");
        assert_eq!(
            sanitize("a\u{1b}[2Jb\n\u{202e}"),
            "a\\u{1b}[2Jb\\u{a}\\u{202e}"
        );
        let body = r#"{"Version":"v1","Connection":[{"ClientID":"evil\u001b]0;pwned\u0007","UserID":"u"}]}"#;
        let text = success(&command("stat Connection"), body);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(text.contains("evil\\u{1b}]0;pwned\\u{7}"), "{text}");
        let text = failure(400, "{\"Code\":\"X\",\"Message\":\"bad\\u001b[31m\"}");
        assert_eq!(text, "X bad\\u{1b}[31m (HTTP 400)");
    }

    #[test]
    fn amlens_code_and_message_is_one_line() {
        let ok = r#"{"Version":"v1","Code":"CWLNA6011","Message":"The requested configuration change has completed successfully."}"#;
        assert_eq!(
            success(&command("delete TopicPolicy P"), ok),
            "CWLNA6011 The requested configuration change has completed successfully."
        );
        let refused = r#"{"Version":"v1","Code":"CWLNA0138","Message":"The property name is invalid. Object: Endpoint Name: E Property: Prot"}"#;
        assert_eq!(
            failure(400, refused),
            "CWLNA0138 The property name is invalid. Object: Endpoint Name: E Property: Prot (HTTP 400)"
        );
    }

    #[test]
    fn answers_that_are_not_json_are_quoted_and_cut() {
        assert_eq!(failure(502, ""), "the admin endpoint answered HTTP 502");
        assert_eq!(
            failure(500, "<html>oops</html>\n"),
            "the admin endpoint answered HTTP 500: <html>oops</html>"
        );
        let long = "x".repeat(RAW_ANSWER_CHARS_MAX + 50);
        let text = failure(500, &long);
        assert!(text.ends_with(&format!("{}...", "x".repeat(RAW_ANSWER_CHARS_MAX))));
        assert_eq!(success(&command("status"), ""), "done");
    }

    #[test]
    fn objects_are_aligned_and_nested() {
        let body = r#"{"Version":"v1","Endpoint":{"DemoEndpoint":{"Port":1883,"Enabled":true,
            "Description":"","Interface":"All","Protocol":["MQTT","JMS"]}}}"#;
        assert_eq!(
            success(&command("show Endpoint DemoEndpoint"), body),
            "Endpoint:\n  DemoEndpoint:\n    Description  \"\"\n    Enabled      true\n    \
             Interface    All\n    Port         1883\n    Protocol     MQTT, JMS"
        );
    }

    #[test]
    fn lists_are_names() {
        let body = r#"{"Version":"v1","Endpoint":{"B":{"Port":2},"A":{"Port":1}}}"#;
        assert_eq!(success(&command("list Endpoint"), body), "A\nB");
        let none = r#"{"Version":"v1","Endpoint":{}}"#;
        assert_eq!(
            success(&command("list Endpoint"), none),
            "no Endpoint objects"
        );
    }

    #[test]
    fn rows_are_tables_with_identifying_columns_first() {
        let body = r#"{"Version":"v1","Connection":[
            {"Port":1883,"ClientID":"c1","Name":"n1","ReadMsg":5},
            {"Port":1883,"ClientID":"client-two","Name":"n2","ReadMsg":12345}]}"#;
        assert_eq!(
            success(&command("stat Connection"), body),
            "Connection:\n  \
             Name  ClientID    Port  ReadMsg\n  \
             n1    c1          1883  5\n  \
             n2    client-two  1883  12345"
        );
        let empty = r#"{"Version":"v1","Subscription":[]}"#;
        assert_eq!(
            success(&command("stat Subscription"), empty),
            "Subscription:\n  (none)"
        );
    }

    #[test]
    fn status_sections() {
        let body = r#"{"Version":"v1","Server":{"Name":"a:9089","Status":"Running","UpTimeSeconds":5},
            "Cluster":{"Status":"Inactive","Enabled":false}}"#;
        assert_eq!(
            success(&command("status"), body),
            "Cluster:\n  Enabled  false\n  Status   Inactive\nServer:\n  Name           a:9089\n  \
             Status         Running\n  UpTimeSeconds  5"
        );
    }
}
