//! `GET /metrics` (Monitor): Prometheus's text exposition format (version 0.0.4), written
//! here rather than with a client library: the figures already exist (the shards' snapshots,
//! the gauges they walk for when asked, /proc), so a scrape costs the shards one walk and
//! nothing on the message path keeps a registry, an atomic or a lock.
//!
//! There are no latency histograms: the broker does not time messages as they pass, and a
//! histogram made up from nothing would mislead.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use axum::Extension;
use ironsight_config::admin::Action;
use ironsight_core::monitor::Gauges;

use crate::api::{Api, Peer};
use crate::error::Answer;
use crate::monitor::{by_endpoint, gauges};
use crate::shards::ShardSnapshot;
use crate::system::{self, Memory};

/// A metric family: its name, type and help, and how a value is read from `T`.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> f64);

/// Everything one scrape shows.
pub struct Scrape {
    pub shards: Vec<ShardSnapshot>,
    /// Each shard's CPU time in seconds, by shard number (`None`: not readable).
    pub shard_cpu_s: Vec<Option<f64>>,
    pub gauges: Gauges,
    pub memory: Memory,
    /// Seconds since the epoch when the broker started.
    pub start_time_s: f64,
}

/// GET `/metrics`.
pub async fn metrics(
    State(api): State<Arc<Api>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Answer {
    api.allow(&headers, peer, Action::Monitor).await?;
    let gauges = gauges(&api).await?;
    let shards = api.shards.snapshots();
    let scrape = Scrape {
        shard_cpu_s: shards
            .iter()
            .map(|s| system::thread_cpu_s(s.thread_id))
            .collect(),
        shards,
        gauges,
        memory: system::memory(),
        start_time_s: api
            .started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    };
    let mut response = render(&scrape).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
}

/// The exposition text of `scrape`.
pub fn render(scrape: &Scrape) -> String {
    let mut out = Text::default();
    let endpoints = by_endpoint(&scrape.shards);
    let per_endpoint: [Family<crate::monitor::Totals>; 7] = [
        ("ironsight_connections", "gauge", "Connections open now.", |t| t.active.max(0) as f64),
        ("ironsight_connections_accepted_total", "counter", "Connections accepted.", |t| t.accepted as f64),
        ("ironsight_connections_bad_total", "counter", "Connections that ended before their CONNECT was accepted (refused, broken, timed out).", |t| t.bad as f64),
        ("ironsight_messages_received_total", "counter", "PUBLISH packets received from clients.", |t| t.msgs_in as f64),
        ("ironsight_messages_sent_total", "counter", "PUBLISH packets sent to clients.", |t| t.msgs_out as f64),
        ("ironsight_bytes_received_total", "counter", "Bytes read from client sockets (TLS and WebSocket framing included).", |t| t.bytes_in as f64),
        ("ironsight_bytes_sent_total", "counter", "Bytes written to client sockets (TLS and WebSocket framing included).", |t| t.bytes_out as f64),
    ];
    for (name, kind, help, value) in per_endpoint {
        out.family(name, kind, help);
        for (endpoint, totals) in &endpoints {
            out.sample(name, &[("endpoint", endpoint)], value(totals));
        }
    }
    let g = &scrape.gauges;
    for (name, help, value) in [
        (
            "ironsight_sessions",
            "Sessions, connected or not.",
            g.sessions,
        ),
        (
            "ironsight_subscriptions",
            "Subscriptions of every session.",
            g.subscriptions,
        ),
        (
            "ironsight_messages_buffered",
            "Messages queued or in flight for sessions.",
            g.buffered_msgs,
        ),
        (
            "ironsight_retained_messages",
            "Topics with a retained message.",
            g.retained_msgs,
        ),
    ] {
        out.family(name, "gauge", help);
        out.sample(name, &[], value as f64);
    }
    let stat = |f: fn(&ironsight_core::stats::Stats) -> u64| -> f64 {
        scrape.shards.iter().map(|s| f(&s.stats)).sum::<u64>() as f64
    };
    let name = "ironsight_messages_dropped_total";
    out.family(name, "counter", "Deliveries not made, by reason: a full queue refused them (rejected), made room by dropping them (discarded), they expired, exceeded the client's Maximum Packet Size (oversize), or were QoS 0 for a disconnected session (offline).");
    for (reason, value) in [
        ("rejected", stat(|s| s.messages_rejected)),
        ("discarded", stat(|s| s.messages_discarded)),
        ("expired", stat(|s| s.messages_expired)),
        ("oversize", stat(|s| s.messages_oversize)),
        ("offline", stat(|s| s.messages_dropped_offline)),
    ] {
        out.sample(name, &[("reason", reason)], value);
    }
    let name = "ironsight_authentications_total";
    out.family(
        name,
        "counter",
        "CONNECTs checked by the authentication service, by result.",
    );
    for (result, value) in [
        ("accepted", stat(|s| s.authentications_accepted)),
        ("refused", stat(|s| s.authentications_refused)),
        ("shed", stat(|s| s.authentications_shed)),
    ] {
        out.sample(name, &[("result", result)], value);
    }
    for (name, help, value) in [
        (
            "ironsight_protocol_errors_total",
            "Connections ended for breaking the protocol or a limit.",
            stat(|s| s.protocol_errors),
        ),
        (
            "ironsight_sessions_expired_total",
            "Sessions ended by their expiry interval.",
            stat(|s| s.sessions_expired),
        ),
        (
            "ironsight_wills_published_total",
            "Will messages published.",
            stat(|s| s.wills_published),
        ),
        (
            "ironsight_notifications_published_total",
            "Disconnected-client notifications published on $SYS/DisconnectedClientNotification.",
            stat(|s| s.notifications_published),
        ),
    ] {
        out.family(name, "counter", help);
        out.sample(name, &[], value);
    }
    shard_load(&mut out, scrape);
    let m = &scrape.memory;
    for (name, kind, help, value) in [
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory of the broker process.",
            m.process_resident as f64,
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory of the broker process.",
            m.process_virtual as f64,
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "When the broker started, in seconds since the epoch.",
            scrape.start_time_s,
        ),
        (
            "ironsight_machine_memory_bytes",
            "gauge",
            "The machine's memory.",
            m.total as f64,
        ),
        (
            "ironsight_machine_memory_available_bytes",
            "gauge",
            "Memory the machine could give without swapping (MemAvailable).",
            m.free as f64,
        ),
    ] {
        out.family(name, kind, help);
        out.sample(name, &[], value);
    }
    out.0
}

/// Each shard's load: its connections, messages and CPU time.
fn shard_load(out: &mut Text, scrape: &Scrape) {
    let families: [Family<ShardSnapshot>; 3] = [
        (
            "ironsight_shard_connections",
            "gauge",
            "Connections on each shard.",
            |s| s.connections as f64,
        ),
        (
            "ironsight_shard_messages_received_total",
            "counter",
            "PUBLISH packets received on each shard.",
            |s| s.stats.messages_received as f64,
        ),
        (
            "ironsight_shard_messages_sent_total",
            "counter",
            "PUBLISH packets sent by each shard.",
            |s| s.stats.messages_sent as f64,
        ),
    ];
    for (name, kind, help, value) in families {
        out.family(name, kind, help);
        for (i, s) in scrape.shards.iter().enumerate() {
            out.sample(name, &[("shard", &i.to_string())], value(s));
        }
    }
    let name = "ironsight_shard_cpu_seconds_total";
    out.family(
        name,
        "counter",
        "CPU time of each shard's thread (user and system).",
    );
    for (i, cpu) in scrape.shard_cpu_s.iter().enumerate() {
        if let Some(cpu) = cpu {
            out.sample(name, &[("shard", &i.to_string())], *cpu);
        }
    }
}

/// The exposition text being written.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let escaped = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{label}=\"{escaped}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shards::EndpointSnapshot;
    use ironsight_core::stats::EndpointStats;

    fn snapshot(endpoint: &str, msgs_in: u64, cpu_tid: i32) -> ShardSnapshot {
        let mut s = ShardSnapshot {
            endpoints: vec![EndpointSnapshot {
                name: endpoint.to_string(),
                stats: EndpointStats {
                    accepted: 3,
                    active: 2,
                    bad: 1,
                    messages_in: msgs_in,
                    messages_out: 2 * msgs_in,
                },
                bytes_read: 100,
                bytes_written: 200,
            }],
            connections: 2,
            thread_id: cpu_tid,
            ..ShardSnapshot::default()
        };
        s.stats.messages_rejected = 4;
        s.stats.messages_received = msgs_in;
        s
    }

    /// Proves the text sums the shards by endpoint, keeps shards apart where it should, and
    /// escapes label values; each family is declared once, before its samples.
    #[test]
    fn shards_are_summed_by_endpoint() {
        let scrape = Scrape {
            shards: vec![snapshot("E\"1", 5, 0), snapshot("E\"1", 7, 0)],
            shard_cpu_s: vec![Some(1.5), None],
            gauges: Gauges {
                buffered_msgs: 9,
                ..Gauges::default()
            },
            memory: Memory {
                total: 1000,
                free: 500,
                process_virtual: 300,
                process_resident: 200,
            },
            start_time_s: 1.0e9,
        };
        let text = render(&scrape);
        let has = |line: &str| text.lines().any(|l| l == line);
        assert!(
            has(r#"ironsight_messages_received_total{endpoint="E\"1"} 12"#),
            "{text}"
        );
        assert!(has(r#"ironsight_messages_sent_total{endpoint="E\"1"} 24"#));
        assert!(has(r#"ironsight_connections{endpoint="E\"1"} 4"#));
        assert!(has(
            r#"ironsight_bytes_received_total{endpoint="E\"1"} 200"#
        ));
        assert!(has(
            r#"ironsight_messages_dropped_total{reason="rejected"} 8"#
        ));
        assert!(has("ironsight_messages_buffered 9"));
        assert!(has(
            r#"ironsight_shard_messages_received_total{shard="1"} 7"#
        ));
        assert!(has(r#"ironsight_shard_cpu_seconds_total{shard="0"} 1.5"#));
        assert!(!text.contains(r#"ironsight_shard_cpu_seconds_total{shard="1"}"#));
        assert!(has("process_resident_memory_bytes 200"));
        assert!(has("process_start_time_seconds 1000000000"));
        let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
        let mut unique = types.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(types.len(), unique.len(), "each family once");
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap();
            let declared = text.find(&format!("# TYPE {name} ")).expect("declared");
            assert!(declared < text.find(line).unwrap(), "{name} declared first");
        }
    }
}
