//! The live one-line display on stderr: connections, messages/s sent and received, in flight.
//! Drawn only when stderr is a terminal (a log file should not fill with carriage returns) and
//! cleared before the summary.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};

use crate::protocol::Progress;

/// How often the line is redrawn.
pub const REFRESH_NS: u64 = 250_000_000;
/// Rates are taken over this much history: workers sample every 250 ms on their own clocks, so
/// a shorter span would alias into rates of zero.
pub const RATE_SPAN_NS: u64 = 1_000_000_000;

pub struct Display {
    enabled: bool,
    /// Samples of the last [`RATE_SPAN_NS`], oldest first.
    history: VecDeque<(u64, Progress)>,
    last_draw_ns: u64,
    drawn: bool,
}

impl Display {
    pub fn new(json_only: bool) -> Display {
        Display {
            enabled: !json_only && std::io::stderr().is_terminal(),
            history: VecDeque::new(),
            last_draw_ns: 0,
            drawn: false,
        }
    }

    /// Redraws if the last draw is at least [`REFRESH_NS`] old.
    pub fn update(&mut self, now_ns: u64, phase: &str, total: Progress) {
        if !self.enabled {
            return;
        }
        if self.drawn && now_ns < self.last_draw_ns + REFRESH_NS {
            return;
        }
        self.last_draw_ns = now_ns;
        while self
            .history
            .front()
            .is_some_and(|&(t, _)| t + RATE_SPAN_NS < now_ns)
        {
            self.history.pop_front();
        }
        let (sent_rate, received_rate) = match self.history.front() {
            Some(&(t, prev)) => rates(prev, total, now_ns - t),
            None => (0.0, 0.0),
        };
        self.history.push_back((now_ns, total));
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{}",
            line(phase, total, sent_rate, received_rate)
        );
        let _ = err.flush();
        self.drawn = true;
    }

    pub fn clear(&mut self) {
        if self.drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
            self.drawn = false;
        }
    }
}

/// Messages per second sent and received between two samples `dt_ns` apart.
fn rates(prev: Progress, now: Progress, dt_ns: u64) -> (f64, f64) {
    let dt = dt_ns as f64 / 1e9;
    if dt <= 0.0 {
        return (0.0, 0.0);
    }
    (
        now.sent.saturating_sub(prev.sent) as f64 / dt,
        now.received.saturating_sub(prev.received) as f64 / dt,
    )
}

pub fn line(phase: &str, p: Progress, sent_rate: f64, received_rate: f64) -> String {
    format!(
        "[{phase}] conns {} | sent {:.0}/s | recv {:.0}/s | in flight {}",
        p.open, sent_rate, received_rate, p.inflight
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves rates come from the difference of two cumulative samples.
    #[test]
    fn rates_and_line() {
        let a = Progress {
            open: 3,
            sent: 100,
            received: 1000,
            inflight: 0,
        };
        let b = Progress {
            sent: 600,
            received: 3000,
            inflight: 7,
            ..a
        };
        assert_eq!(rates(a, b, 500_000_000), (1000.0, 4000.0));
        assert_eq!(
            line("window", b, 1000.0, 4000.0),
            "[window] conns 3 | sent 1000/s | recv 4000/s | in flight 7"
        );
    }
}
