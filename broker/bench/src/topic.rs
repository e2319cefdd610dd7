//! Just enough topic matching to know how many of the retained scenario's topics a filter
//! covers, so that "expected" follows a `--filter` that selects only part of the tree.
//!
//! Valid filters: `a/b`, `a/+/c`, `a/#`, `#`, `+`. A `$share/group/` prefix is stripped first.
//! Valid but non-matching: `a/+` does not match `a/b/c`; `a/b/#` matches `a/b` (the parent).

/// Whether topic name `topic` matches filter `filter` (MQTT §4.7).
pub fn matches(filter: &str, topic: &str) -> bool {
    let filter = strip_share(filter);
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// `$share/group/filter` → `filter`; other filters unchanged.
pub fn strip_share(filter: &str) -> &str {
    filter
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(filter, |(_, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the single-level, multi-level and literal cases, including the parent rule of `#`.
    #[test]
    fn matching() {
        assert!(matches("bench/retained/#", "bench/retained/5"));
        assert!(matches("bench/retained/#", "bench/retained"));
        assert!(matches("bench/+/5", "bench/retained/5"));
        assert!(matches("#", "a/b"));
        assert!(!matches("bench/+", "bench/retained/5"));
        assert!(!matches("bench/retained/1", "bench/retained/10"));
        assert!(matches("$share/g/bench/+", "bench/x"));
    }
}
