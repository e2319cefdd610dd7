//! What the parent and its worker processes say to each other: one JSON document per line, the
//! worker's spec first on its stdin, then commands; progress and results on its stdout.
//!
//! ```text
//! parent                         worker
//!   WorkerSpec  ───────────────▶  connect, subscribe (retained: publish the tree)
//!               ◀───────────────  Ready
//!   Go(schedule) ──────────────▶  warm-up, window (conn: hold, then ping every connection)
//!               ◀───────────────  Published(window counts of its publishers)
//!   Expect(all counts) ────────▶  drain until complete or deadline, clear, disconnect
//!               ◀───────────────  Result(Partial)
//! ```
//!
//! Progress lines come at any time. `Stop` (or the parent's stdin closing) makes a worker tear
//! down and report at once.

use serde::{Deserialize, Serialize};

use crate::accounting::Window;
use crate::report::Partial;
use crate::spec::{Assignment, Spec};

/// Bound on the liveness check's PINGRESPs (conn) after the hold, in seconds.
pub const PING_TIMEOUT_S: f64 = 10.0;
/// Bound on clearing the retained tree, in seconds.
pub const CLEAR_TIMEOUT_S: f64 = 15.0;
/// Bound on the broker closing connections after DISCONNECT, in seconds.
pub const TEARDOWN_TIMEOUT_S: f64 = 5.0;
/// How much later than its schedule says a phase may report before it counts as hung, in
/// seconds (both sides use it: the parent before killing a worker, a worker before giving up on
/// its parent).
pub const PHASE_SLACK_S: f64 = 15.0;

/// The first line on a worker's stdin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerSpec {
    pub spec: Spec,
    pub assignment: Assignment,
}

/// The common time plan of a run, in CLOCK_MONOTONIC ns (the same clock in every process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Publishing (warm-up) starts; the retained storm subscribes.
    pub start_ns: u64,
    /// The measured window (conn: the hold).
    pub window: Window,
    /// Last moment to wait for stragglers (conn: for PINGRESPs).
    pub drain_end_ns: u64,
}

/// Parent → worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum ToWorker {
    Go {
        schedule: Schedule,
    },
    /// Every publisher's window count: publisher id → messages.
    Expect {
        counts: Vec<(u32, u64)>,
    },
    Stop,
}

/// Cumulative counters for the live display.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub open: u64,
    pub sent: u64,
    pub received: u64,
    pub inflight: u64,
}

/// Worker → parent.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum FromWorker {
    Progress(Progress),
    Ready,
    Published { counts: Vec<(u32, u64)> },
    Result(Box<Partial>),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves commands and messages keep their shape through one JSON line each.
    #[test]
    fn lines_round_trip() {
        let go = ToWorker::Go {
            schedule: Schedule {
                start_ns: 1,
                window: Window {
                    start_ns: 2,
                    end_ns: 3,
                },
                drain_end_ns: 4,
            },
        };
        let line = serde_json::to_string(&go).unwrap();
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<ToWorker>(&line).unwrap(), go);
        let msg = FromWorker::Published {
            counts: vec![(0, 10), (1, 11)],
        };
        let line = serde_json::to_string(&msg).unwrap();
        assert!(line.starts_with(r#"{"msg":"published""#), "{line}");
        let back: FromWorker = serde_json::from_str(&line).unwrap();
        assert!(matches!(back, FromWorker::Published { counts } if counts.len() == 2));
        let result = FromWorker::Result(Box::default());
        let back: FromWorker =
            serde_json::from_str(&serde_json::to_string(&result).unwrap()).unwrap();
        assert!(matches!(back, FromWorker::Result(_)));
    }
}
