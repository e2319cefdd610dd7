//! A bounded, de-duplicated list of what went wrong. Ten thousand refused connections make one
//! line with a count, not ten thousand lines.

use std::collections::BTreeMap;

/// Distinct messages kept; later distinct messages are only counted.
pub const ERRORS_DISTINCT_MAX: usize = 64;

#[derive(Clone, Debug, Default)]
pub struct ErrorLog {
    counts: BTreeMap<String, u64>,
    /// Occurrences of messages not kept because of [`ERRORS_DISTINCT_MAX`].
    dropped: u64,
}

impl ErrorLog {
    pub fn push(&mut self, message: impl Into<String>) {
        self.add(message.into(), 1);
    }

    fn add(&mut self, message: String, n: u64) {
        if let Some(count) = self.counts.get_mut(&message) {
            *count += n;
        } else if self.counts.len() < ERRORS_DISTINCT_MAX {
            self.counts.insert(message, n);
        } else {
            self.dropped += n;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.dropped == 0
    }

    /// One line per distinct message, with "(×n)" when it happened more than once.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .counts
            .iter()
            .map(|(m, &n)| {
                if n == 1 {
                    m.clone()
                } else {
                    format!("{m} (×{n})")
                }
            })
            .collect();
        if self.dropped > 0 {
            lines.push(format!("{} more errors of other kinds", self.dropped));
        }
        lines
    }

    /// Folds in lines produced by [`ErrorLog::lines`] in another process.
    pub fn merge_lines(&mut self, lines: &[String]) {
        for line in lines {
            let (message, n) = split_count(line);
            self.add(message.to_string(), n);
        }
    }
}

/// "msg (×3)" → ("msg", 3); anything else → (line, 1).
fn split_count(line: &str) -> (&str, u64) {
    if let Some(open) = line.rfind(" (×") {
        if let Some(n) = line[open + " (×".len()..]
            .strip_suffix(')')
            .and_then(|n| n.parse().ok())
        {
            return (&line[..open], n);
        }
    }
    (line, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves repeats are counted, lines merge across processes, and the list is bounded.
    #[test]
    fn dedup_merge_and_bound() {
        let mut a = ErrorLog::default();
        a.push("connect: refused");
        a.push("connect: refused");
        a.push("timeout");
        assert_eq!(a.lines(), ["connect: refused (×2)", "timeout"]);
        let mut b = ErrorLog::default();
        b.push("connect: refused");
        b.merge_lines(&a.lines());
        assert_eq!(b.lines(), ["connect: refused (×3)", "timeout"]);
        let mut c = ErrorLog::default();
        for i in 0..ERRORS_DISTINCT_MAX + 5 {
            c.push(format!("e{i}"));
        }
        assert_eq!(c.lines().len(), ERRORS_DISTINCT_MAX + 1);
        assert!(c.lines().last().unwrap().starts_with("5 more"));
    }
}
