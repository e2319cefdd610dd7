//! The command line: one subcommand per scenario, each with the options that apply to it. Values
//! are only parsed here; [`crate::spec`] checks them against each other and the machine.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// MQTT load generator for ironsight (and any MQTT broker on loopback).
///
/// Every run prints exactly one JSON document on stdout, a live progress line and a short
/// summary on stderr. Counts cover only messages sent in the measured window (after --warmup,
/// for --duration seconds); --drain bounds the wait for stragglers. Every phase has a deadline,
/// so a run always ends by itself.
#[derive(Parser, Debug)]
#[command(name = "ironsight-bench", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Connection storm: open N connections at R connections/s, wait for every CONNACK, hold
    /// them, check each is alive (PINGREQ/PINGRESP), disconnect cleanly. Reports connections/s
    /// achieved and the CONNACK latency (from connect() to CONNACK decoded).
    Conn(ConnArgs),
    /// P publishers -> N subscribers, all on one topic. Expected = messages sent in the window
    /// × subscribers.
    Fanout(FanoutArgs),
    /// N publishers, each on its own topic PREFIX/<i>, -> S subscribers on PREFIX/+. With
    /// --shared GROUP the subscribers form one $share/GROUP/PREFIX/+ group: each message is
    /// expected once in total, and a second copy anywhere in the group is a duplicate.
    Fanin(FaninArgs),
    /// N pairs: publisher i -> subscriber i on PREFIX/<i>.
    P2p(P2pArgs),
    /// Publish K retained messages on PREFIX/<i>, then S subscribers subscribe to FILTER at once
    /// (a subscription storm); latency is each subscriber's time from SUBSCRIBE to its last
    /// retained message. The retained messages are cleared at the end. --duration bounds the
    /// wait; --warmup and --drain do not apply.
    Retained(RetainedArgs),
    /// N requesters and N responders (MQTT 5 only). Requester i sends requests at QoS 2 to
    /// req/u<i> with Response Topic resp/<client>/<seq> and Correlation Data; responder i
    /// answers at QoS 1 on the Response Topic with the same Correlation Data. Latency is the
    /// round trip; a request without a response is lost.
    RequestResponse(RequestResponseArgs),
    /// Draw PNG charts (throughput and p99 latency per broker) from a comparison run's
    /// results.json, one chart per scenario (see tests/bench/compare.py).
    Plot(PlotArgs),
    /// Internal: one worker process, driven by its parent over stdin/stdout.
    #[command(hide = true)]
    Worker,
}

#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// The results.json written by tests/bench/compare.py.
    #[arg(long)]
    pub input: PathBuf,
    /// Folder for the PNG files.
    #[arg(long)]
    pub out: PathBuf,
    /// TrueType font for the text.
    #[arg(long, default_value = crate::plot::DEFAULT_FONT)]
    pub font: PathBuf,
}

/// The protocol version clients speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum MqttVersion {
    #[value(name = "3.1")]
    #[serde(rename = "3.1")]
    V3_1,
    #[value(name = "3.1.1")]
    #[serde(rename = "3.1.1")]
    V3_1_1,
    #[value(name = "5")]
    #[serde(rename = "5")]
    V5,
}

/// The TLS version of `--tls-version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize, serde::Deserialize)]
pub enum TlsVersion {
    #[value(name = "1.2")]
    #[serde(rename = "1.2")]
    V1_2,
    #[value(name = "1.3")]
    #[serde(rename = "1.3")]
    V1_3,
}

/// Options of every scenario: where to connect, how clients identify, how the tool runs.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Broker host: a loopback address or a name resolving only to loopback.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port(s), repeatable or a comma list; clients are spread round-robin.
    #[arg(long, value_delimiter = ',', default_value = "1883")]
    pub port: Vec<u16>,
    /// MQTT protocol version.
    #[arg(long, value_enum, default_value = "5")]
    pub mqtt: MqttVersion,
    /// Keep alive in seconds (0 = off); idle clients send PINGREQ at half of it.
    #[arg(long, default_value_t = 60)]
    pub keepalive: u16,
    /// Clean sessions (the default): client ids include the run id.
    #[arg(long, conflicts_with = "persistent")]
    pub clean: bool,
    /// Persistent sessions: stable client ids, clean start off, MQTT 5 session expiry
    /// --session-expiry. Backlogs of earlier runs show up as "stale".
    #[arg(long)]
    pub persistent: bool,
    /// Session expiry interval in seconds for --persistent with MQTT 5.
    #[arg(long, default_value_t = 3600)]
    pub session_expiry: u32,
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long)]
    pub password: Option<String>,
    /// Spread connections over N users: connection i logs in as --username followed by i mod N,
    /// with --password followed by the same number (a directory of N users, as
    /// tests/bench/auth_storm.py writes one). 0: every connection uses them as given.
    #[arg(long, default_value_t = 0)]
    pub login_users: u32,
    /// Client id prefix.
    #[arg(long, default_value = "isb")]
    pub client_prefix: String,
    /// Connection ramp while setting up, connections/s in total (0 = as fast as the
    /// pending-connection limit allows). The conn scenario uses --rate instead.
    #[arg(long, default_value_t = 0.0)]
    pub connect_rate: f64,
    /// Worker processes; clients are split between them. Each may hold its open-file limit
    /// less 1,000 in sockets (19,000 on a machine that allows 20,000 open files a process).
    #[arg(long, default_value_t = 1)]
    pub procs: u32,
    /// Bind client sockets to N source addresses 127.0.0.1 .. 127.0.0.N (IPv4 targets), so
    /// more than 64K connections fit (0 = let the kernel choose).
    #[arg(long, default_value_t = 0)]
    pub source_addrs: u8,
    /// Pin worker i to CPU i (mod the CPUs available).
    #[arg(long)]
    pub pin: bool,
    /// Connect over TLS (rustls, aws-lc-rs), verifying the broker's certificate with --cafile
    /// against --host. Every connection does a full handshake (no session resumption).
    #[arg(long, requires = "cafile")]
    pub tls: bool,
    /// PEM CA bundle that verifies the broker's certificate (--tls).
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub cafile: Option<PathBuf>,
    /// Client certificate chain, PEM (--tls, with --key).
    #[arg(long, value_name = "FILE", requires_all = ["tls", "key"])]
    pub cert: Option<PathBuf>,
    /// Private key of --cert, PEM.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Offer only this TLS version (default: 1.3 and 1.2).
    #[arg(long, value_enum, requires = "tls")]
    pub tls_version: Option<TlsVersion>,
    /// MQTT over WebSocket (subprotocol mqtt, binary frames); with --tls, WebSocket inside TLS.
    #[arg(long)]
    pub ws: bool,
    /// Request path of the WebSocket upgrade (--ws).
    #[arg(long, value_name = "PATH", default_value = "/mqtt", requires = "ws")]
    pub ws_path: String,
    /// Print only the JSON document (no progress line, no summary).
    #[arg(long)]
    pub json_only: bool,
    /// Run id written into every payload (decimal or 0x hex); default random.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Broker process id: report its CPU seconds and resident memory before and after.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

/// Options of the scenarios that move messages.
#[derive(Args, Debug, Clone)]
pub struct LoadOpts {
    /// QoS of publications and subscriptions.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: Option<u8>,
    /// Payload bytes, at least the 28-byte header.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Messages/s in total across publishers (0 = as fast as flow control allows).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// QoS 1/2 window per publisher (capped by the broker's Receive Maximum).
    #[arg(long, default_value_t = 32)]
    pub inflight: u16,
    /// Seconds of publishing before the measured window; not counted.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seconds of the measured window.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Most seconds to wait for stragglers after publishing stops (ends early when all
    /// expected messages arrived).
    #[arg(long, default_value_t = 5.0)]
    pub drain: f64,
}

#[derive(Args, Debug)]
pub struct ConnArgs {
    /// Connections to open.
    #[arg(short = 'n', long, default_value_t = 1000)]
    pub connections: u32,
    /// Connections/s in total (0 = as fast as the pending-connection limit allows).
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Seconds to hold the connections open before the liveness check.
    #[arg(long, default_value_t = 5.0)]
    pub hold: f64,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(Args, Debug)]
pub struct FanoutArgs {
    #[arg(long, default_value_t = 1)]
    pub publishers: u32,
    #[arg(long, default_value_t = 10)]
    pub subscribers: u32,
    #[arg(long, default_value = "bench/fanout")]
    pub topic: String,
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(flatten)]
    pub load: LoadOpts,
}

#[derive(Args, Debug)]
pub struct FaninArgs {
    #[arg(long, default_value_t = 10)]
    pub publishers: u32,
    #[arg(long, default_value_t = 1)]
    pub subscribers: u32,
    #[arg(long, default_value = "bench/fanin")]
    pub prefix: String,
    /// Make the subscribers one shared subscription group $share/GROUP/PREFIX/+.
    #[arg(long, value_name = "GROUP")]
    pub shared: Option<String>,
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(flatten)]
    pub load: LoadOpts,
}

#[derive(Args, Debug)]
pub struct P2pArgs {
    #[arg(long, default_value_t = 10)]
    pub pairs: u32,
    #[arg(long, default_value = "bench/p2p")]
    pub prefix: String,
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(flatten)]
    pub load: LoadOpts,
}

#[derive(Args, Debug)]
pub struct RetainedArgs {
    /// Retained messages to publish (K).
    #[arg(short = 'k', long, default_value_t = 100)]
    pub messages: u32,
    /// Subscribers in the storm (S).
    #[arg(long, default_value_t = 10)]
    pub subscribers: u32,
    #[arg(long, default_value = "bench/retained")]
    pub prefix: String,
    /// Filter the subscribers use (default PREFIX/#); expected counts the topics it matches.
    #[arg(long)]
    pub filter: Option<String>,
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(flatten)]
    pub load: LoadOpts,
}

#[derive(Args, Debug)]
pub struct RequestResponseArgs {
    /// Users: one requester and one responder each.
    #[arg(long, default_value_t = 10)]
    pub users: u32,
    #[command(flatten)]
    pub client: ClientOpts,
    #[command(flatten)]
    pub load: LoadOpts,
}

/// `--run-id`: decimal or 0x-prefixed hex, 32 bits.
pub fn parse_run_id(text: &str) -> Result<u32, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|e| format!("--run-id {text:?}: {e} (expected a 32-bit number)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the clap definitions are consistent (clap's own debug assertions).
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// Proves ports accept both a comma list and repetition, and versions parse by name.
    #[test]
    fn ports_and_versions() {
        let cli = Cli::try_parse_from([
            "b",
            "fanout",
            "--port",
            "1883,1884",
            "--port",
            "1885",
            "--mqtt",
            "3.1.1",
        ])
        .unwrap();
        let Command::Fanout(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.client.port, [1883, 1884, 1885]);
        assert_eq!(a.client.mqtt, MqttVersion::V3_1_1);
        assert!(Cli::try_parse_from(["b", "fanout", "--qos", "3"]).is_err());
        assert!(Cli::try_parse_from(["b", "conn", "--clean", "--persistent"]).is_err());
    }

    /// Proves run ids parse in both notations and bad ones are refused.
    #[test]
    fn run_ids() {
        assert_eq!(parse_run_id("42"), Ok(42));
        assert_eq!(parse_run_id("0xff"), Ok(255));
        assert!(parse_run_id("0x1_0000_0000").is_err());
        assert!(parse_run_id("x").is_err());
    }
}
