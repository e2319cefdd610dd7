//! MessageSight's connection and topic policies, compiled: who may connect, and who may publish
//! or subscribe where.
//!
//! - A *client id filter* is exact, or a prefix ending in `*`; `*` alone admits everyone.
//! - A *topic pattern* matches topic names and filters as strings: `*` matches any run of
//!   characters, `/` included; `${ClientID}` is replaced by the client's id first, so
//!   `devices/${ClientID}/*` gives each device its own subtree. `${$}` and `${*}` are a literal
//!   `$` and `*`.
//!
//! The first connection policy of an endpoint that admits a client decides its connection
//! limits; a publish or subscribe is allowed when any topic policy that admits the client allows
//! that action on the topic.

use crate::queue::QueueBehavior;

/// A client id filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdFilter {
    Any,
    Exact(String),
    Prefix(String),
}

impl IdFilter {
    pub fn parse(text: &str) -> IdFilter {
        match text.strip_suffix('*') {
            Some("") => IdFilter::Any,
            Some(prefix) => IdFilter::Prefix(prefix.to_string()),
            None => IdFilter::Exact(text.to_string()),
        }
    }

    pub fn admits(&self, id: &str) -> bool {
        match self {
            IdFilter::Any => true,
            IdFilter::Exact(exact) => id == exact,
            IdFilter::Prefix(prefix) => id.starts_with(prefix.as_str()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Star,
    ClientId,
}

/// Why a topic pattern was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError(pub String);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPattern {
    segments: Vec<Segment>,
}

impl TopicPattern {
    pub fn parse(text: &str) -> Result<TopicPattern, PatternError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(c) = rest.chars().next() {
            if c == '*' {
                push_literal(&mut segments, &mut literal);
                if segments.last() != Some(&Segment::Star) {
                    segments.push(Segment::Star);
                }
                rest = &rest[1..];
            } else if let Some(after) = rest.strip_prefix("${") {
                let (name, tail) = after
                    .split_once('}')
                    .ok_or_else(|| PatternError(format!("unclosed variable in \"{text}\"")))?;
                match name {
                    "$" | "*" => literal.push_str(name),
                    "ClientID" => {
                        push_literal(&mut segments, &mut literal);
                        segments.push(Segment::ClientId);
                    }
                    "UserID" | "GroupID" | "CommonName" => {
                        return Err(PatternError(format!(
                        "${{{name}}} needs client authentication, which this version does not have"
                    )))
                    }
                    other => return Err(PatternError(format!("unknown variable ${{{other}}}"))),
                }
                rest = tail;
            } else {
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        push_literal(&mut segments, &mut literal);
        Ok(TopicPattern { segments })
    }

    pub fn matches(&self, topic: &str, client_id: &str) -> bool {
        if self.segments == [Segment::Star] {
            return true;
        }
        matches_from(&self.segments, topic, client_id)
    }
}

fn push_literal(segments: &mut Vec<Segment>, literal: &mut String) {
    if !literal.is_empty() {
        segments.push(Segment::Literal(std::mem::take(literal)));
    }
}

/// Glob matching; `*` tries each split point, which is fine for the handful of stars a policy has.
fn matches_from(segments: &[Segment], text: &str, client_id: &str) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return text.is_empty();
    };
    match first {
        Segment::Literal(lit) => text
            .strip_prefix(lit.as_str())
            .is_some_and(|t| matches_from(rest, t, client_id)),
        // An id with a topic separator or a wildcard would reach other clients' topics (id `+`
        // subscribing to `devices/+/#` under `devices/${ClientID}/*`): such ids match nothing.
        Segment::ClientId if client_id.contains(['/', '+', '#']) => false,
        Segment::ClientId => text
            .strip_prefix(client_id)
            .is_some_and(|t| matches_from(rest, t, client_id)),
        Segment::Star => {
            if rest.is_empty() {
                return true;
            }
            text.char_indices()
                .map(|(i, _)| i)
                .chain(std::iter::once(text.len()))
                .any(|i| matches_from(rest, &text[i..], client_id))
        }
    }
}

/// A ConnectionPolicy, compiled.
#[derive(Clone, Debug)]
pub struct ConnectionRule {
    pub name: String,
    pub client_id: IdFilter,
    pub allow_durable: bool,
    pub allow_persistent: bool,
    /// `u32::MAX` is no maximum.
    pub session_expiry_max_s: u32,
}

/// A TopicPolicy, compiled.
#[derive(Clone, Debug)]
pub struct TopicRule {
    pub name: String,
    pub topic: TopicPattern,
    pub client_id: IdFilter,
    pub publish: bool,
    pub subscribe: bool,
    pub queue_messages_max: u32,
    pub queue_behavior: QueueBehavior,
    pub message_ttl_max_s: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
}

impl TopicRule {
    pub fn allows(&self, action: Action, topic: &str, client_id: &str) -> bool {
        let allowed = match action {
            Action::Publish => self.publish,
            Action::Subscribe => self.subscribe,
        };
        allowed && self.client_id.admits(client_id) && self.topic.matches(topic, client_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> TopicPattern {
        TopicPattern::parse(text).unwrap()
    }

    #[test]
    fn id_filters_are_exact_or_prefix() {
        assert!(IdFilter::parse("*").admits("anything"));
        assert!(IdFilter::parse("dev-*").admits("dev-1"));
        assert!(!IdFilter::parse("dev-*").admits("de"));
        assert!(IdFilter::parse("one").admits("one"));
        assert!(!IdFilter::parse("one").admits("one1"));
    }

    #[test]
    fn star_spans_levels() {
        assert!(pattern("*").matches("a/b/c", "c"));
        assert!(pattern("a/*").matches("a/b/c", "c"));
        assert!(pattern("a/*").matches("a/", "c"));
        assert!(!pattern("a/*").matches("b/a", "c"));
        assert!(pattern("*/end").matches("x/y/end", "c"));
        assert!(pattern("a/*/c/*").matches("a/b/c/d", "x"));
        assert!(!pattern("a/*/c/*").matches("a/b/d/c", "x"));
        assert!(pattern("exact").matches("exact", "c"));
        assert!(!pattern("exact").matches("exact/", "c"));
    }

    #[test]
    fn client_id_is_substituted() {
        let p = pattern("devices/${ClientID}/*");
        assert!(p.matches("devices/d1/status", "d1"));
        assert!(!p.matches("devices/d2/status", "d1"));
        assert!(!p.matches("devices/d1", "d1"));
    }

    /// Proves an id with a wildcard or a separator cannot widen `${ClientID}` to other clients'
    /// topics: `+` would subscribe to `devices/+/#`, `d1/x` would reach into `d1`'s subtree.
    #[test]
    fn client_ids_with_wildcards_or_separators_match_nothing() {
        let p = pattern("devices/${ClientID}/*");
        assert!(!p.matches("devices/+/#", "+"));
        assert!(!p.matches("devices/#/x", "#"));
        assert!(!p.matches("devices/d1/x/status", "d1/x"));
        assert!(pattern("devices/*").matches("devices/+/#", "+"));
    }

    #[test]
    fn escapes_and_unknown_variables() {
        assert!(pattern("a${*}b").matches("a*b", "c"));
        assert!(!pattern("a${*}b").matches("axb", "c"));
        assert!(pattern("${$}SYS/*").matches("$SYS/x", "c"));
        assert!(TopicPattern::parse("${Nope}").is_err());
        assert!(TopicPattern::parse("${UserID}/x").is_err());
        assert!(TopicPattern::parse("${ClientID").is_err());
    }

    #[test]
    fn rules_check_action_client_and_topic() {
        let rule = TopicRule {
            name: "p".into(),
            topic: pattern("in/${ClientID}/*"),
            client_id: IdFilter::parse("dev*"),
            publish: true,
            subscribe: false,
            queue_messages_max: 10,
            queue_behavior: QueueBehavior::RejectNewMessages,
            message_ttl_max_s: None,
        };
        assert!(rule.allows(Action::Publish, "in/dev1/t", "dev1"));
        assert!(!rule.allows(Action::Subscribe, "in/dev1/t", "dev1"));
        assert!(!rule.allows(Action::Publish, "in/dev1/t", "app1"));
        assert!(!rule.allows(Action::Publish, "in/dev2/t", "dev1"));
    }
}
