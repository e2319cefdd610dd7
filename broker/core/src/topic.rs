//! Topic names and topic filters: validation and shared-subscription parsing.
//!
//! Filters, after mosquitto's `subs.c`:
//!
//! | filter            | valid | matches `a/b` | matches `$SYS/x` | note                              |
//! |-------------------|-------|---------------|------------------|-----------------------------------|
//! | `a/b`             | yes   | yes           | no               |                                   |
//! | `a/+`             | yes   | yes           | no               | `+` is exactly one level          |
//! | `a/#`             | yes   | yes           | no               | also matches `a` itself           |
//! | `#`               | yes   | yes           | no               | never matches `$`-topics          |
//! | `+/x`             | yes   | no            | no               | never matches `$`-topics          |
//! | `$SYS/#`          | yes   | no            | yes              |                                   |
//! | `a//b`, `/a`      | yes   | no            | no               | empty levels are levels           |
//! | `a/#/b`, `a#`     | no    |               |                  | `#` must be last and whole level  |
//! | `a+`, `+a/b`      | no    |               |                  | `+` must be a whole level         |
//! | `` (empty)        | no    |               |                  | [MQTT-4.7.3-1]                    |
//!
//! Shared subscriptions: `$share/<group>/<filter>` (MQTT 5, also accepted on 3.1.1 as MessageSight
//! did) and MessageSight's own `$SharedSubscription/<group>/<filter>`. Both name the same group
//! space: the group name and the filter make a shared subscription, the prefix does not.

use std::borrow::Cow;
use std::fmt;

/// Why a topic filter was refused; maps to SUBACK 0x8F (v5) or 0x80 (v3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterError {
    /// [MQTT-4.7.3-1] topic filters are at least one character long.
    Empty,
    /// [MQTT-4.7.1-1] `#` must be the last character and occupy a whole level.
    MultiLevelWildcard,
    /// [MQTT-4.7.1-2] `+` must occupy a whole level.
    SingleLevelWildcard,
    /// [MQTT-4.8.2-1] a share name is at least one character and has no `/`, `+` or `#`.
    ShareName,
    /// [MQTT-4.8.2-2] a shared subscription needs a filter after the share name.
    ShareWithoutFilter,
    /// The filter is longer or deeper than the broker's limits.
    TooLong,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FilterError::Empty => "[MQTT-4.7.3-1] empty topic filter",
            FilterError::MultiLevelWildcard => "[MQTT-4.7.1-1] '#' is not the whole last level",
            FilterError::SingleLevelWildcard => "[MQTT-4.7.1-2] '+' is not a whole level",
            FilterError::ShareName => "[MQTT-4.8.2-1] invalid share name",
            FilterError::ShareWithoutFilter => "[MQTT-4.8.2-2] shared subscription has no filter",
            FilterError::TooLong => "topic filter exceeds the broker's length or depth limit",
        };
        f.write_str(text)
    }
}

/// A subscription filter after parsing: either a plain filter or a share group plus filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParsedFilter<'a> {
    pub share_group: Option<&'a str>,
    pub filter: &'a str,
}

/// What parsing learnt about a filter, in four bytes: where its share group and its topic filter
/// start in its text. A SUBSCRIBE keeps one per filter between checking the whole packet and
/// applying it, so no filter is parsed twice, and a packet of 400,000 filters keeps 1.6 MB of
/// splits rather than 16 MB of `ParsedFilter`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterSplit {
    /// Where the share group starts; 0 for a plain filter.
    group_at: u16,
    /// Where the topic filter starts (after the group's `/`); 0 for a plain filter.
    filter_at: u16,
}

impl FilterSplit {
    pub fn is_shared(self) -> bool {
        self.filter_at > 0
    }

    /// The parts of `text`, which must be the text this split was made from.
    pub fn parts(self, text: &str) -> ParsedFilter<'_> {
        let filter_at = usize::from(self.filter_at);
        let share_group = self
            .is_shared()
            .then(|| &text[usize::from(self.group_at)..filter_at - 1]);
        ParsedFilter {
            share_group,
            filter: &text[filter_at..],
        }
    }
}

const SHARE_PREFIXES: [&str; 2] = ["$share/", "$SharedSubscription/"];

/// The text that identifies a subscription within its session. MessageSight's
/// `$SharedSubscription/g/f` is the same subscription as `$share/g/f` (one share group), so both
/// are stored, and matched on UNSUBSCRIBE, as the latter.
pub fn subscription_text(text: &str) -> Cow<'_, str> {
    match text.strip_prefix(SHARE_PREFIXES[1]) {
        Some(rest) => Cow::Owned(format!("{}{rest}", SHARE_PREFIXES[0])),
        None => Cow::Borrowed(text),
    }
}

/// Validates a subscription filter and splits off a shared-subscription group.
pub fn parse_filter(
    text: &str,
    max_len: usize,
    max_levels: usize,
) -> Result<ParsedFilter<'_>, FilterError> {
    split_filter(text, max_len, max_levels).map(|split| split.parts(text))
}

/// Validates a subscription filter in one pass and says where its parts start. A syntax error
/// wins over the broker's limits: the first is a protocol error that ends the connection, the
/// second only refuses that filter (SUBACK 0x8F), so a filter too long *and* malformed must be
/// seen as malformed.
pub fn split_filter(
    text: &str,
    max_len: usize,
    max_levels: usize,
) -> Result<FilterSplit, FilterError> {
    if text.is_empty() {
        return Err(FilterError::Empty);
    }
    // An MQTT string is at most 65,535 bytes, so nothing from the wire is refused here; the
    // bound lets a split be two `u16`s.
    if text.len() > usize::from(u16::MAX) {
        return Err(FilterError::TooLong);
    }
    let (group_at, filter_at) = match SHARE_PREFIXES.iter().find(|p| text.starts_with(**p)) {
        Some(prefix) => {
            let (group, _) = text[prefix.len()..]
                .split_once('/')
                .ok_or(FilterError::ShareWithoutFilter)?;
            if group.is_empty() || group.contains(['+', '#']) {
                return Err(FilterError::ShareName);
            }
            (prefix.len(), prefix.len() + group.len() + 1)
        }
        None => (0, 0),
    };
    let filter = &text[filter_at..];
    if filter.is_empty() {
        return Err(if filter_at > 0 {
            FilterError::ShareWithoutFilter
        } else {
            FilterError::Empty
        });
    }
    let levels = filter_levels(filter)?;
    if text.len() > max_len || levels > max_levels {
        return Err(FilterError::TooLong);
    }
    let offset = |at: usize| u16::try_from(at).expect("within the text, checked above");
    Ok(FilterSplit {
        group_at: offset(group_at),
        filter_at: offset(filter_at),
    })
}

/// Checks where the wildcards of a (non-shared) filter stand; returns its number of levels.
fn filter_levels(filter: &str) -> Result<usize, FilterError> {
    let mut levels = filter.split('/').peekable();
    let mut count = 0;
    while let Some(level) = levels.next() {
        count += 1;
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(FilterError::MultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(FilterError::SingleLevelWildcard);
        }
    }
    Ok(count)
}

/// Checks a PUBLISH topic name against the broker's limits (wildcards and UTF-8 are the codec's).
pub fn topic_within_limits(topic: &str, max_len: usize, max_levels: usize) -> bool {
    topic.len() <= max_len && topic.split('/').count() <= max_levels
}

/// True when the filter (not shared) has a wildcard level.
pub fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
}

/// Whether the plain filter `filter` matches the topic name `topic`, as the trie decides for
/// many filters at once ([`crate::tree::TopicTree::for_each_match`]): `+` is one level, `#` the
/// rest and the parent level, and neither matches a `$` topic's first level ([MQTT-4.7.2-1]).
/// For one session's few filters, where building a trie would cost more than the walk.
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        if level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(t) if level == "+" || level == t => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ParsedFilter<'_>, FilterError> {
        parse_filter(text, 65535, 32)
    }

    #[test]
    fn valid_filters_parse_unchanged() {
        for f in [
            "a/b", "a/+", "a/#", "#", "+", "+/x", "$SYS/#", "a//b", "/a", "/", "+/+/#",
        ] {
            assert_eq!(
                parse(f),
                Ok(ParsedFilter {
                    share_group: None,
                    filter: f
                }),
                "{f}"
            );
        }
    }

    #[test]
    fn invalid_filters_are_named() {
        assert_eq!(parse(""), Err(FilterError::Empty));
        assert_eq!(parse("a/#/b"), Err(FilterError::MultiLevelWildcard));
        assert_eq!(parse("a#"), Err(FilterError::MultiLevelWildcard));
        assert_eq!(parse("#/"), Err(FilterError::MultiLevelWildcard));
        assert_eq!(parse("a+"), Err(FilterError::SingleLevelWildcard));
        assert_eq!(parse("+a/b"), Err(FilterError::SingleLevelWildcard));
    }

    #[test]
    fn both_share_prefixes_name_a_group() {
        let expected = ParsedFilter {
            share_group: Some("g"),
            filter: "a/+",
        };
        assert_eq!(parse("$share/g/a/+"), Ok(expected));
        assert_eq!(parse("$SharedSubscription/g/a/+"), Ok(expected));
    }

    #[test]
    fn malformed_shares_are_refused() {
        assert_eq!(parse("$share/g"), Err(FilterError::ShareWithoutFilter));
        assert_eq!(parse("$share/g/"), Err(FilterError::ShareWithoutFilter));
        assert_eq!(parse("$share//a"), Err(FilterError::ShareName));
        assert_eq!(parse("$share/g+/a"), Err(FilterError::ShareName));
        assert_eq!(
            parse("$share/g/a/#/b"),
            Err(FilterError::MultiLevelWildcard)
        );
    }

    /// Proves a split gives back the parts a parse gives, for plain filters and both share
    /// spellings, so a SUBSCRIBE that keeps splits instead of parses sees the same filters.
    #[test]
    fn splits_give_back_the_parsed_parts() {
        for text in [
            "a/b",
            "#",
            "$SYS/+",
            "$share/g/a/+",
            "$SharedSubscription/group/#",
            "$share/g//",
        ] {
            let split = split_filter(text, 65535, 32).unwrap();
            let parsed = parse(text).unwrap();
            assert_eq!(split.parts(text), parsed, "{text}");
            assert_eq!(split.is_shared(), parsed.share_group.is_some(), "{text}");
        }
        let split = split_filter("$share/group/a/b", 65535, 32).unwrap();
        assert_eq!(split.parts("$share/group/a/b").share_group, Some("group"));
        assert_eq!(split.parts("$share/group/a/b").filter, "a/b");
    }

    /// Proves a malformed filter is reported as malformed even when it is also over the
    /// limits: the first ends the connection, the second refuses only that filter.
    #[test]
    fn syntax_errors_win_over_limits() {
        let deep_and_bad = format!("{}a#", "x/".repeat(40));
        assert_eq!(
            parse_filter(&deep_and_bad, 65535, 32),
            Err(FilterError::MultiLevelWildcard)
        );
        assert_eq!(
            parse_filter("aaaaaaaa/b+", 4, 32),
            Err(FilterError::SingleLevelWildcard)
        );
        let deep = format!("{}x", "x/".repeat(40));
        assert_eq!(parse_filter(&deep, 65535, 32), Err(FilterError::TooLong));
    }

    #[test]
    fn limits_apply_to_length_and_depth() {
        assert_eq!(parse_filter("a/b/c", 4, 32), Err(FilterError::TooLong));
        assert_eq!(parse_filter("a/b/c", 64, 2), Err(FilterError::TooLong));
        assert!(parse_filter("a/b", 64, 2).is_ok());
        assert!(topic_within_limits("a/b", 3, 2));
        assert!(!topic_within_limits("a/b/c", 64, 2));
    }

    /// Proves one filter is matched as the table at the top of this file says, `$` rule and
    /// `#`'s parent level included.
    #[test]
    fn one_filter_matches_as_the_trie_does() {
        let yes = [
            ("a/b", "a/b"),
            ("a/+", "a/b"),
            ("a/#", "a/b"),
            ("a/#", "a"),
            ("#", "a/b"),
            ("+/b", "a/b"),
            ("$SYS/#", "$SYS/x"),
            ("$SYS/+", "$SYS/x"),
            ("a//b", "a//b"),
            ("+", ""),
        ];
        for (filter, topic) in yes {
            assert!(filter_matches(filter, topic), "{filter} matches {topic}");
        }
        let no = [
            ("a/b", "a/b/c"),
            ("a/b/c", "a/b"),
            ("a/+", "a"),
            ("a/+", "a/b/c"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
            ("a//b", "a/b"),
            ("b/#", "a/b"),
        ];
        for (filter, topic) in no {
            assert!(
                !filter_matches(filter, topic),
                "{filter} does not match {topic}"
            );
        }
    }
}
