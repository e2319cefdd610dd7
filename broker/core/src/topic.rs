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
    if text.is_empty() {
        return Err(FilterError::Empty);
    }
    if text.len() > max_len {
        return Err(FilterError::TooLong);
    }
    let (share_group, filter) = match SHARE_PREFIXES.iter().find_map(|p| text.strip_prefix(p)) {
        Some(rest) => {
            let (group, filter) = rest
                .split_once('/')
                .ok_or(FilterError::ShareWithoutFilter)?;
            if group.is_empty() || group.contains(['+', '#']) {
                return Err(FilterError::ShareName);
            }
            (Some(group), filter)
        }
        None => (None, text),
    };
    if filter.is_empty() {
        return Err(if share_group.is_some() {
            FilterError::ShareWithoutFilter
        } else {
            FilterError::Empty
        });
    }
    validate_filter_levels(filter, max_levels)?;
    Ok(ParsedFilter {
        share_group,
        filter,
    })
}

fn validate_filter_levels(filter: &str, max_levels: usize) -> Result<(), FilterError> {
    let mut levels = filter.split('/').peekable();
    let mut count = 0;
    while let Some(level) = levels.next() {
        count += 1;
        if count > max_levels {
            return Err(FilterError::TooLong);
        }
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(FilterError::MultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(FilterError::SingleLevelWildcard);
        }
    }
    Ok(())
}

/// Checks a PUBLISH topic name against the broker's limits (wildcards and UTF-8 are the codec's).
pub fn topic_within_limits(topic: &str, max_len: usize, max_levels: usize) -> bool {
    topic.len() <= max_len && topic.split('/').count() <= max_levels
}

/// True when the filter (not shared) has a wildcard level.
pub fn has_wildcard(filter: &str) -> bool {
    filter.contains(['+', '#'])
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

    #[test]
    fn limits_apply_to_length_and_depth() {
        assert_eq!(parse_filter("a/b/c", 4, 32), Err(FilterError::TooLong));
        assert_eq!(parse_filter("a/b/c", 64, 2), Err(FilterError::TooLong));
        assert!(parse_filter("a/b", 64, 2).is_ok());
        assert!(topic_within_limits("a/b", 3, 2));
        assert!(!topic_within_limits("a/b/c", 64, 2));
    }
}
