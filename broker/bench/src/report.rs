//! Results: a worker's [`Partial`], the merge of all partials, and the one JSON document a run
//! prints ([`Report`]), with its short human summary.

use serde::{Deserialize, Serialize};

use crate::accounting::Totals;
use crate::clock::ns_to_s;
use crate::errors::ErrorLog;
use crate::latency::{Latency, Summary};
use crate::proc_stats::{Cpu, Sample};
use crate::spec::{Scenario, Spec};

/// Connection counters of one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnCounts {
    pub attempted: u64,
    /// CONNACK with success.
    pub opened: u64,
    /// Refused, reset, timed out or answered with an error CONNACK.
    pub failed: u64,
    /// Open connections closed by the broker (or the network) before teardown.
    pub lost: u64,
    /// Connections checked with PINGREQ at the end of the hold (conn).
    pub alive_checked: u64,
    /// Of those, the ones that answered PINGRESP in time.
    pub alive: u64,
    /// First connect() and last CONNACK, CLOCK_MONOTONIC ns (0 when none).
    pub first_attempt_ns: u64,
    pub last_connack_ns: u64,
    /// Time spent inside connect() calls, and the longest one.
    pub connect_call_ns: u64,
    pub connect_call_max_ns: u64,
    /// connect() calls slower than the worker's slow-call threshold (500 µs).
    pub connect_calls_slow: u64,
}

impl ConnCounts {
    fn merge(&mut self, o: &ConnCounts) {
        self.attempted += o.attempted;
        self.opened += o.opened;
        self.failed += o.failed;
        self.lost += o.lost;
        self.alive_checked += o.alive_checked;
        self.alive += o.alive;
        self.first_attempt_ns = match (self.first_attempt_ns, o.first_attempt_ns) {
            (0, b) => b,
            (a, 0) => a,
            (a, b) => a.min(b),
        };
        self.last_connack_ns = self.last_connack_ns.max(o.last_connack_ns);
        self.connect_call_ns += o.connect_call_ns;
        self.connect_call_max_ns = self.connect_call_max_ns.max(o.connect_call_max_ns);
        self.connect_calls_slow += o.connect_calls_slow;
    }

    /// Connections per second from the first connect() to the last CONNACK.
    fn rate_per_s(&self) -> f64 {
        let span = self.last_connack_ns.saturating_sub(self.first_attempt_ns);
        if self.opened == 0 || span == 0 {
            0.0
        } else {
            self.opened as f64 / ns_to_s(span)
        }
    }
}

/// One worker's result. Histograms travel as V2 base64.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Partial {
    pub worker: u32,
    pub connections: ConnCounts,
    pub connack_hist: String,
    pub ack_hist: String,
    pub latency_hist: String,
    pub messages: MsgCounts,
    pub totals: Totals,
    /// Retained: from the first retained PUBLISH to the tree being settled.
    pub publish_span_ns: u64,
    /// Retained: from the storm's start to this worker's last complete subscriber.
    pub storm_span_ns: u64,
    pub errors: Vec<String>,
}

/// A worker's message counters; merged by summing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsgCounts {
    /// Window messages sent by publishers.
    pub published: u64,
    /// All messages sent, warm-up included.
    pub published_total: u64,
    /// Benchmark messages of other runs.
    pub stale: u64,
    /// Payloads that are no benchmark message at all.
    pub foreign: u64,
    /// This run's messages stamped before the window.
    pub warmup_received: u64,
    /// Messages from a publisher the receiving subscriber should not hear (misrouted).
    pub unexpected: u64,
    /// This run's messages decoded while the window was open.
    pub received_during_window: u64,
    /// Publisher-seconds spent blocked by flow control inside the window, in ns.
    pub backpressure_ns: u64,
}

impl MsgCounts {
    fn add(&mut self, o: &MsgCounts) {
        self.published += o.published;
        self.published_total += o.published_total;
        self.stale += o.stale;
        self.foreign += o.foreign;
        self.warmup_received += o.warmup_received;
        self.unexpected += o.unexpected;
        self.received_during_window += o.received_during_window;
        self.backpressure_ns += o.backpressure_ns;
    }
}

/// All partials folded together.
#[derive(Debug, Default)]
pub struct Merged {
    pub workers: u32,
    pub connections: ConnCounts,
    pub connack: Latency,
    pub ack: Latency,
    pub latency: Latency,
    pub messages: MsgCounts,
    pub totals: Totals,
    pub publish_span_ns: u64,
    pub storm_span_ns: u64,
    pub errors: ErrorLog,
}

impl Merged {
    /// Folds one partial in: sums, histogram merge, spans by maximum.
    pub fn add(&mut self, p: &Partial) {
        self.workers += 1;
        self.connections.merge(&p.connections);
        for (hist, text, name) in [
            (&mut self.connack, &p.connack_hist, "CONNACK"),
            (&mut self.ack, &p.ack_hist, "acknowledgement"),
            (&mut self.latency, &p.latency_hist, "latency"),
        ] {
            match Latency::from_base64(text) {
                Ok(h) => hist.merge(&h),
                Err(e) => self.errors.push(format!(
                    "worker {}: {name} histogram unreadable: {e}",
                    p.worker
                )),
            }
        }
        self.messages.add(&p.messages);
        self.totals.add(&p.totals);
        self.publish_span_ns = self.publish_span_ns.max(p.publish_span_ns);
        self.storm_span_ns = self.storm_span_ns.max(p.storm_span_ns);
        self.errors.merge_lines(&p.errors);
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ConnReport {
    pub attempted: u64,
    pub opened: u64,
    pub failed: u64,
    pub lost: u64,
    pub alive_checked: u64,
    pub alive: u64,
    /// Connections/s from the first connect() to the last CONNACK.
    pub rate_per_s: f64,
    /// From connect() to CONNACK decoded, µs.
    pub connack_latency_us: Summary,
    /// Seconds the tool spent inside connect() calls (all workers), and the longest call in
    /// µs: a slow call delays every other connection of its worker.
    pub connect_call_s: f64,
    pub connect_call_max_us: u64,
    /// connect() calls over 500 µs.
    pub connect_calls_slow: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ToolCpu {
    pub user_s: f64,
    pub sys_s: f64,
    /// (user + sys) / wall time × 100; above 100 with several workers.
    pub percent: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BrokerReport {
    pub pid: u32,
    /// CPU seconds the broker used during the run.
    pub cpu_s: f64,
    pub cpu_percent: f64,
    pub rss_before_kb: u64,
    pub rss_after_kb: u64,
    /// CPU seconds the broker used in the measured window alone (sampled when it opened and
    /// closed): the cost of the offered rate, without set-up, drain and teardown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_cpu_s: Option<f64>,
    /// `window_cpu_s` over the window's length × 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_cpu_percent: Option<f64>,
}

/// The JSON document of a run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub scenario: String,
    pub run_id: String,
    pub parameters: serde_json::Value,
    pub workers: u32,
    pub connections: ConnReport,
    /// Messages sent in the measured window (retained: the tree; request-response: requests).
    pub published: u64,
    /// Messages sent in all, warm-up included.
    pub published_total: u64,
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    /// Benchmark messages of other runs.
    pub stale: u64,
    /// Payloads that are no benchmark message at all.
    pub foreign: u64,
    /// This run's messages stamped before the window (warm-up), not counted.
    pub warmup_received: u64,
    /// Messages from a publisher the subscriber should not hear: misrouted by the broker.
    pub unexpected: u64,
    /// Publisher→subscriber pairs that lost at least one message.
    pub pairs_with_loss: u64,
    /// Subscribers (or groups) that never subscribed, left out of expected.
    pub inactive_subscribers: u64,
    /// Window messages sent per second.
    pub sent_rate: f64,
    /// This run's messages decoded per second while the window was open (retained: distinct
    /// retained messages per second of the storm).
    pub received_rate: f64,
    /// µs: publish to decode (request-response: round trip; retained: per subscriber, SUBSCRIBE
    /// to its last retained message).
    pub latency: Summary,
    /// µs: a window message's PUBLISH to its PUBACK (QoS 1) or PUBCOMP (QoS 2) at the
    /// publisher; empty at QoS 0. With a durable store this is the wait for the disk.
    pub ack_latency: Summary,
    /// Publisher-seconds blocked by flow control in the window.
    pub backpressure_s: f64,
    pub window_s: f64,
    pub wall_s: f64,
    pub tool_cpu: ToolCpu,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerReport>,
    pub errors: Vec<String>,
}

/// Broker samples before and after, when --broker-pid was given.
#[derive(Clone, Copy, Debug)]
pub struct BrokerSamples {
    pub pid: u32,
    pub before: Sample,
    pub after: Sample,
    /// At the measured window's start and end, when the run got that far.
    pub window: Option<WindowSamples>,
}

/// Broker samples when the measured window opened and closed, and the seconds between them.
#[derive(Clone, Copy, Debug)]
pub struct WindowSamples {
    pub seconds: f64,
    pub start: Sample,
    pub end: Sample,
}

/// Everything measured outside the workers.
pub struct Outside {
    pub wall_s: f64,
    pub cpu: Cpu,
    pub broker: Option<BrokerSamples>,
}

/// The spec as shown in the report: the password never appears.
fn parameters(spec: &Spec) -> serde_json::Value {
    let mut value = serde_json::to_value(spec).expect("a spec serializes");
    if let Some(client) = value.get_mut("client").and_then(|c| c.as_object_mut()) {
        let given = spec.client.password.is_some();
        client.insert("password".into(), serde_json::Value::Bool(given));
    }
    value
}

impl Report {
    pub fn build(spec: &Spec, m: &Merged, outside: &Outside, mut errors: ErrorLog) -> Report {
        let window_s = spec.load.duration_s;
        let (sent_rate, received_rate) = match &spec.scenario {
            Scenario::Conn { .. } => (0.0, 0.0),
            Scenario::Retained { .. } => (
                per_s(m.messages.published as f64, ns_to_s(m.publish_span_ns)),
                per_s(m.totals.received as f64, ns_to_s(m.storm_span_ns)),
            ),
            _ => (
                per_s(m.messages.published as f64, window_s),
                per_s(m.messages.received_during_window as f64, window_s),
            ),
        };
        errors.merge_lines(&m.errors.lines());
        let broker = outside.broker.map(|b| {
            let cpu_s = (b.after.cpu_s - b.before.cpu_s).max(0.0);
            let window_cpu_s = b.window.map(|w| (w.end.cpu_s - w.start.cpu_s).max(0.0));
            BrokerReport {
                pid: b.pid,
                cpu_s,
                cpu_percent: per_s(cpu_s * 100.0, outside.wall_s),
                rss_before_kb: b.before.rss_kb,
                rss_after_kb: b.after.rss_kb,
                window_cpu_s,
                window_cpu_percent: b
                    .window
                    .zip(window_cpu_s)
                    .map(|(w, cpu_s)| per_s(cpu_s * 100.0, w.seconds)),
            }
        });
        Report {
            scenario: spec.scenario.name().to_string(),
            run_id: format!("{:08x}", spec.run_id),
            parameters: parameters(spec),
            workers: m.workers,
            connections: ConnReport {
                attempted: m.connections.attempted,
                opened: m.connections.opened,
                failed: m.connections.failed,
                lost: m.connections.lost,
                alive_checked: m.connections.alive_checked,
                alive: m.connections.alive,
                rate_per_s: m.connections.rate_per_s(),
                connack_latency_us: m.connack.summary(),
                connect_call_s: ns_to_s(m.connections.connect_call_ns),
                connect_call_max_us: m.connections.connect_call_max_ns / 1_000,
                connect_calls_slow: m.connections.connect_calls_slow,
            },
            published: m.messages.published,
            published_total: m.messages.published_total,
            expected: m.totals.expected,
            received: m.totals.received,
            lost: m.totals.lost,
            duplicates: m.totals.duplicates,
            stale: m.messages.stale,
            foreign: m.messages.foreign,
            warmup_received: m.messages.warmup_received,
            unexpected: m.messages.unexpected,
            pairs_with_loss: m.totals.pairs_with_loss,
            inactive_subscribers: m.totals.inactive_sinks,
            sent_rate,
            received_rate,
            latency: m.latency.summary(),
            ack_latency: m.ack.summary(),
            backpressure_s: ns_to_s(m.messages.backpressure_ns),
            window_s,
            wall_s: outside.wall_s,
            tool_cpu: ToolCpu {
                user_s: outside.cpu.user_s,
                sys_s: outside.cpu.sys_s,
                percent: per_s(outside.cpu.total_s() * 100.0, outside.wall_s),
            },
            broker,
            errors: errors.lines(),
        }
    }

    /// A few lines for a person; the JSON on stdout is the record.
    pub fn summary(&self) -> String {
        let c = &self.connections;
        let l = &self.latency;
        let mut s = format!(
            "{} run {}: {} workers, {:.1} s wall\n\
             connections: {} opened, {} failed, {} lost; {:.0}/s; CONNACK µs p50 {} p99 {} max {}\n",
            self.scenario,
            self.run_id,
            self.workers,
            self.wall_s,
            c.opened,
            c.failed,
            c.lost,
            c.rate_per_s,
            c.connack_latency_us.p50,
            c.connack_latency_us.p99,
            c.connack_latency_us.max,
        );
        if c.alive_checked > 0 {
            s += &format!(
                "alive: {} of {} answered PINGREQ\n",
                c.alive, c.alive_checked
            );
        }
        if self.scenario != "conn" {
            s += &format!(
                "messages: {} published, {} expected, {} received, {} lost, {} duplicates, {} stale\n\
                 rates: {:.0}/s sent, {:.0}/s received; backpressure {:.2} publisher-s\n\
                 latency µs: p50 {} p90 {} p99 {} p99.9 {} max {}\n",
                self.published,
                self.expected,
                self.received,
                self.lost,
                self.duplicates,
                self.stale,
                self.sent_rate,
                self.received_rate,
                self.backpressure_s,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
            );
            let a = &self.ack_latency;
            if a.count > 0 {
                s += &format!(
                    "acknowledged µs: p50 {} p90 {} p99 {} p99.9 {} max {}\n",
                    a.p50, a.p90, a.p99, a.p999, a.max,
                );
            }
        }
        s += &format!(
            "tool cpu: {:.2} s user, {:.2} s sys ({:.0}% of one core)",
            self.tool_cpu.user_s, self.tool_cpu.sys_s, self.tool_cpu.percent
        );
        if let Some(b) = &self.broker {
            s += &format!(
                "\nbroker: {:.2} cpu s ({:.0}%), rss {} -> {} kB",
                b.cpu_s, b.cpu_percent, b.rss_before_kb, b.rss_after_kb
            );
            if let Some(percent) = b.window_cpu_percent {
                s += &format!(", {percent:.0}% of a core in the measured window");
            }
        }
        for e in &self.errors {
            s += &format!("\nerror: {e}");
        }
        s
    }
}

fn per_s(count: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(worker: u32, latencies_us: &[u64], received: u64) -> Partial {
        let mut h = Latency::new();
        for &us in latencies_us {
            h.record_ns(us * 1000);
        }
        let mut c = Latency::new();
        c.record_ns(1_000_000);
        let mut a = Latency::new();
        a.record_ns(4_000_000);
        Partial {
            worker,
            connections: ConnCounts {
                attempted: 10,
                opened: 9,
                failed: 1,
                first_attempt_ns: 1_000 + worker as u64,
                last_connack_ns: 1_000_000_000 + worker as u64,
                ..Default::default()
            },
            connack_hist: c.to_base64(),
            ack_hist: a.to_base64(),
            latency_hist: h.to_base64(),
            messages: MsgCounts {
                published: 100,
                stale: 1,
                ..Default::default()
            },
            totals: Totals {
                expected: 100,
                received,
                lost: 100 - received,
                ..Default::default()
            },
            errors: vec!["connect: refused".into()],
            ..Default::default()
        }
    }

    /// Proves merging sums counters, merges histograms, keeps the widest connection span and
    /// counts repeated errors.
    #[test]
    fn merge_partials() {
        let mut m = Merged::default();
        m.add(&partial(0, &[100, 200], 100));
        m.add(&partial(1, &[300], 98));
        assert_eq!(m.workers, 2);
        assert_eq!(m.connections.opened, 18);
        assert_eq!(m.connections.first_attempt_ns, 1_000);
        assert_eq!(m.connections.last_connack_ns, 1_000_000_001);
        assert_eq!(m.totals.expected, 200);
        assert_eq!(m.totals.lost, 2);
        assert_eq!(m.messages.stale, 2);
        assert_eq!(m.messages.published, 200);
        assert_eq!(m.latency.count(), 3);
        assert_eq!(m.connack.count(), 2);
        assert_eq!(m.ack.count(), 2);
        assert_eq!(m.errors.lines(), ["connect: refused (×2)"]);
    }

    /// Proves a bad histogram from a worker becomes an error, not a panic.
    #[test]
    fn bad_histogram_is_an_error() {
        let mut p = partial(3, &[1], 100);
        p.latency_hist = "garbage".into();
        let mut m = Merged::default();
        m.add(&p);
        assert!(m.errors.lines().iter().any(|e| e.contains("worker 3")));
    }
}
