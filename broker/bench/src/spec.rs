//! The run, checked: [`Spec`] is what the command line means once every option has been checked
//! against the others and against this machine's limits. It travels as JSON to every worker
//! process together with that worker's [`Assignment`].

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::cli::{self, ClientOpts, Command, LoadOpts, MqttVersion};
use crate::header::HEADER_LEN;
use crate::target;
use crate::tls::{self, Identity, TlsSpec};
use crate::workers::check_capacity;
pub use crate::workers::{partition, warnings, Assignment};

/// Open files a worker keeps beside its sockets: its epoll descriptor, stdio and a margin for
/// the runtime. What is left of its open-file limit is [`Machine::sockets_per_worker`].
pub const WORKER_FILES_RESERVED: u64 = 1_000;
/// Worker processes.
pub const PROCS_MAX: u32 = 64;
/// Largest payload: beyond this a benchmark measures memcpy, not a broker.
pub const PAYLOAD_MAX: usize = 16 * 1024 * 1024;
/// Longest warm-up, window, drain or hold, in seconds: every run must end by itself.
pub const PHASE_MAX_S: f64 = 24.0 * 3600.0;
/// Smallest non-zero rate one sender can be paced at (the pacer's resolution).
pub const RATE_PER_SENDER_MIN: f64 = 0.001;
/// QoS 1/2 window per publisher: packet ids are 16 bits.
pub const INFLIGHT_MAX: u16 = u16::MAX;
/// Most seconds allowed for one connection's TCP handshake and CONNACK (with --tls and --ws,
/// the TLS handshake and the WebSocket upgrade too).
pub const CONNECT_TIMEOUT_S: f64 = 10.0;
/// Longest --ws-path: it travels in the request line of every upgrade.
pub const WS_PATH_MAX: usize = 1024;

/// Why a run was refused before it started.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    #[error(
        "--ws-path {0:?}: must start with '/', hold only visible ASCII (no spaces) and be at \
         most {WS_PATH_MAX} bytes"
    )]
    WsPath(String),
    #[error(
        "request-response needs MQTT 5 (Response Topic and Correlation Data); --mqtt {0} cannot \
         carry them"
    )]
    RequestResponseNeedsV5(&'static str),
    #[error(
        "request-response sends requests at QoS 2 and responses at QoS 1; --qos does not apply"
    )]
    RequestResponseQos,
    #[error("--payload {payload}: must be from {min} (the payload header) to {max} bytes")]
    Payload {
        payload: usize,
        min: usize,
        max: usize,
    },
    #[error("{option} must be at least {min}")]
    TooFew { option: &'static str, min: u64 },
    #[error("{option} {value}: must be a number from 0 to {max}")]
    OutOfRange {
        option: &'static str,
        value: f64,
        max: f64,
    },
    #[error(
        "--rate {rate} over {senders} senders is {per:.6}/s each, below the pacer's resolution \
         of {min}/s"
    )]
    RateTooLow {
        rate: f64,
        senders: u32,
        per: f64,
        min: f64,
    },
    #[error("--procs {0}: must be from 1 to {PROCS_MAX}")]
    Procs(u32),
    #[error(
        "worker {worker} would hold {sockets} sockets, over the {max} one process may hold (its \
         open-file limit less {WORKER_FILES_RESERVED}): use --procs {procs_needed} or more"
    )]
    TooManySockets {
        worker: u32,
        sockets: u64,
        max: u64,
        procs_needed: u64,
    },
    #[error(
        "{connections} connections need more local ports than {capacity} ({ports_per_addr} per \
         source address × {addrs} source addresses × {targets} ports): use --source-addrs"
    )]
    LocalPorts {
        connections: u64,
        capacity: u64,
        ports_per_addr: u64,
        addrs: u64,
        targets: u64,
    },
    #[error("--source-addrs binds IPv4 loopback addresses; the target {0} is not IPv4")]
    SourceAddrsNeedIpv4(IpAddr),
    #[error("--port: 0 is not a port")]
    PortZero,
    #[error("--shared {0:?}: a group name must be non-empty and hold no '/', '+' or '#'")]
    SharedGroup(String),
    #[error("{option} {value:?}: must be a non-empty topic without wildcards")]
    Topic { option: &'static str, value: String },
    #[error("{0}")]
    Target(#[from] target::TargetError),
    #[error("{0}")]
    RunId(String),
}

/// One scenario and its own parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Scenario {
    Conn {
        connections: u32,
        rate: f64,
        hold_s: f64,
    },
    Fanout {
        publishers: u32,
        subscribers: u32,
        topic: String,
    },
    Fanin {
        publishers: u32,
        subscribers: u32,
        prefix: String,
        shared: Option<String>,
    },
    P2p {
        pairs: u32,
        prefix: String,
    },
    Retained {
        messages: u32,
        subscribers: u32,
        prefix: String,
        filter: String,
    },
    RequestResponse {
        users: u32,
    },
}

/// What a client does in its scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Connects, holds, answers the liveness check (conn).
    Idle,
    Publisher,
    Subscriber,
    /// Publishes the retained tree before the storm and clears it afterwards.
    RetainedPublisher,
    Requester,
    Responder,
}

/// Where and how clients connect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientSpec {
    /// --host as given: the TLS server name and the WebSocket Host.
    pub host: String,
    pub target: IpAddr,
    pub ports: Vec<u16>,
    pub mqtt: MqttVersion,
    pub keepalive_s: u16,
    pub persistent: bool,
    pub session_expiry_s: u32,
    pub username: Option<String>,
    /// Never printed: [`crate::report`] shows only whether one was given.
    pub password: Option<String>,
    /// Connections spread over this many numbered users (0: the name and password as given).
    pub users: u32,
    pub client_prefix: String,
    /// Connections/s in total during setup (0: unpaced).
    pub connect_rate: f64,
    pub source_addrs: u8,
    pub pin: bool,
    /// --tls: connect over TLS.
    pub tls: Option<TlsSpec>,
    /// --ws: MQTT over WebSocket, upgrading at this path.
    pub ws_path: Option<String>,
}

impl ClientSpec {
    /// `value` (the user name or the password) for connection `index`: with `users` set, the
    /// number of its user follows it.
    pub fn numbered(&self, value: &Option<String>, index: u32) -> Option<String> {
        let value = value.as_ref()?;
        Some(match self.users {
            0 => value.clone(),
            n => format!("{value}{}", index % n),
        })
    }
}

/// How messages are sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    pub qos: u8,
    pub payload: usize,
    /// Messages/s in total across publishers (0: as fast as flow control allows).
    pub rate: f64,
    pub inflight: u16,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub drain_s: f64,
}

/// A checked run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub scenario: Scenario,
    pub client: ClientSpec,
    pub load: LoadSpec,
    pub run_id: u32,
    pub procs: u32,
}

/// Options of the parent process only.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub json_only: bool,
    pub broker_pid: Option<u32>,
}

/// Facts about the machine that validation depends on, passed in so tests control them.
#[derive(Clone, Copy, Debug)]
pub struct Machine {
    pub private_netns: bool,
    /// Size of net.ipv4.ip_local_port_range.
    pub local_ports: u64,
    /// Sockets one worker process may hold: the open-file limit (RLIMIT_NOFILE) its workers
    /// inherit, less [`WORKER_FILES_RESERVED`]. 19,000 on the development machines (20,000
    /// open files a process); far more inside the appliance.
    pub sockets_per_worker: u64,
}

impl Machine {
    pub fn detect() -> Machine {
        Machine {
            private_netns: target::in_private_netns(),
            local_ports: local_port_range().unwrap_or(28_232),
            sockets_per_worker: open_files_limit().saturating_sub(WORKER_FILES_RESERVED),
        }
    }
}

/// The soft open-file limit, which the workers inherit; Linux's usual 1,024 if unreadable.
fn open_files_limit() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1_024, |(soft, _hard)| soft)
}

fn local_port_range() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<u64>().ok());
    let (low, high) = (it.next()??, it.next()??);
    Some(high.checked_sub(low)? + 1)
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Conn { .. } => "conn",
            Scenario::Fanout { .. } => "fanout",
            Scenario::Fanin { .. } => "fanin",
            Scenario::P2p { .. } => "p2p",
            Scenario::Retained { .. } => "retained",
            Scenario::RequestResponse { .. } => "request-response",
        }
    }

    /// Every role of the scenario with its client count, in connection order.
    pub fn groups(&self) -> Vec<(Role, u32)> {
        match *self {
            Scenario::Conn { connections, .. } => vec![(Role::Idle, connections)],
            Scenario::Fanout {
                publishers,
                subscribers,
                ..
            }
            | Scenario::Fanin {
                publishers,
                subscribers,
                ..
            } => vec![
                (Role::Subscriber, subscribers),
                (Role::Publisher, publishers),
            ],
            Scenario::P2p { pairs, .. } => {
                vec![(Role::Subscriber, pairs), (Role::Publisher, pairs)]
            }
            Scenario::Retained { subscribers, .. } => vec![
                (Role::RetainedPublisher, 1),
                (Role::Subscriber, subscribers),
            ],
            Scenario::RequestResponse { users } => {
                vec![(Role::Responder, users), (Role::Requester, users)]
            }
        }
    }

    /// Publishers (senders of accounted messages): publisher ids are `0..publishers()`.
    pub fn publishers(&self) -> u32 {
        self.groups()
            .iter()
            .filter(|(r, _)| matches!(r, Role::Publisher | Role::Requester))
            .map(|&(_, n)| n)
            .sum()
    }

    pub fn total_clients(&self) -> u64 {
        self.groups().iter().map(|&(_, n)| n as u64).sum()
    }

    /// Whether every subscriber must run in one worker (a shared group, so that exactly-once
    /// delivery across the group can be checked in one place).
    pub(crate) fn subscribers_together(&self) -> bool {
        matches!(
            self,
            Scenario::Fanin {
                shared: Some(_),
                ..
            }
        )
    }
}

/// Checks a parsed command line. `machine` supplies what depends on the host.
pub fn build(command: Command, machine: Machine) -> Result<(Spec, RunOptions), SpecError> {
    let (scenario, client, load) = match command {
        Command::Conn(a) => (
            Scenario::Conn {
                connections: a.connections,
                rate: a.rate,
                hold_s: a.hold,
            },
            a.client,
            None,
        ),
        Command::Fanout(a) => (
            Scenario::Fanout {
                publishers: a.publishers,
                subscribers: a.subscribers,
                topic: a.topic,
            },
            a.client,
            Some(a.load),
        ),
        Command::Fanin(a) => (
            Scenario::Fanin {
                publishers: a.publishers,
                subscribers: a.subscribers,
                prefix: a.prefix,
                shared: a.shared,
            },
            a.client,
            Some(a.load),
        ),
        Command::P2p(a) => (
            Scenario::P2p {
                pairs: a.pairs,
                prefix: a.prefix,
            },
            a.client,
            Some(a.load),
        ),
        Command::Retained(a) => {
            let filter = a.filter.unwrap_or_else(|| format!("{}/#", a.prefix));
            (
                Scenario::Retained {
                    messages: a.messages,
                    subscribers: a.subscribers,
                    prefix: a.prefix,
                    filter,
                },
                a.client,
                Some(a.load),
            )
        }
        Command::RequestResponse(a) => (
            Scenario::RequestResponse { users: a.users },
            a.client,
            Some(a.load),
        ),
        Command::Worker | Command::Plot(_) => unreachable!("handled before a run is built"),
    };
    let options = RunOptions {
        json_only: client.json_only,
        broker_pid: client.broker_pid,
    };
    let spec = Spec {
        run_id: run_id(&client)?,
        procs: client.procs,
        load: check_load(&scenario, &client, load)?,
        client: check_client(&client, machine)?,
        scenario,
    };
    check_scenario(&spec)?;
    check_capacity(&spec, machine)?;
    Ok((spec, options))
}

fn run_id(client: &ClientOpts) -> Result<u32, SpecError> {
    match &client.run_id {
        Some(text) => cli::parse_run_id(text).map_err(SpecError::RunId),
        None => Ok(random_u32()),
    }
}

/// A random run id: from the kernel's generator, falling back to the clock and pid.
fn random_u32() -> u32 {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => u32::from_le_bytes(bytes),
        Err(_) => (crate::clock::now_ns() as u32) ^ std::process::id().rotate_left(16),
    }
}

fn check_client(c: &ClientOpts, machine: Machine) -> Result<ClientSpec, SpecError> {
    if c.port.contains(&0) {
        return Err(SpecError::PortZero);
    }
    if !(1..=PROCS_MAX).contains(&c.procs) {
        return Err(SpecError::Procs(c.procs));
    }
    check_seconds("--connect-rate", c.connect_rate, f64::MAX)?;
    let target = target::resolve(&c.host, machine.private_netns)?;
    if c.source_addrs > 0 && !target.is_ipv4() {
        return Err(SpecError::SourceAddrsNeedIpv4(target));
    }
    let tls = c.tls.then(|| TlsSpec {
        cafile: c.cafile.clone().expect("clap requires --cafile with --tls"),
        identity: c.cert.clone().map(|cert| Identity {
            cert,
            key: c.key.clone().expect("clap requires --key with --cert"),
        }),
        version: c.tls_version,
    });
    if let Some(spec) = &tls {
        // Read the files now: a bad one refuses the run before any worker starts.
        tls::client(spec, &c.host)?;
    }
    let ws_path = c.ws.then(|| c.ws_path.clone());
    if let Some(path) = &ws_path {
        check_ws_path(path)?;
    }
    Ok(ClientSpec {
        host: c.host.clone(),
        target,
        ports: c.port.clone(),
        mqtt: c.mqtt,
        keepalive_s: c.keepalive,
        persistent: c.persistent,
        session_expiry_s: c.session_expiry,
        username: c.username.clone(),
        password: c.password.clone(),
        users: c.login_users,
        client_prefix: c.client_prefix.clone(),
        connect_rate: c.connect_rate,
        source_addrs: c.source_addrs,
        pin: c.pin,
        tls,
        ws_path,
    })
}

/// The path goes verbatim into the upgrade's request line.
fn check_ws_path(path: &str) -> Result<(), SpecError> {
    let visible = path.bytes().all(|b| b.is_ascii_graphic());
    if !path.starts_with('/') || !visible || path.len() > WS_PATH_MAX {
        return Err(SpecError::WsPath(path.to_string()));
    }
    Ok(())
}

fn check_load(
    scenario: &Scenario,
    client: &ClientOpts,
    load: Option<LoadOpts>,
) -> Result<LoadSpec, SpecError> {
    let Some(l) = load else {
        // conn sends no messages: its "window" is the hold.
        let Scenario::Conn { hold_s, .. } = scenario else {
            unreachable!("only conn has no load options")
        };
        return Ok(LoadSpec {
            qos: 0,
            payload: HEADER_LEN,
            rate: 0.0,
            inflight: 1,
            warmup_s: 0.0,
            duration_s: *hold_s,
            drain_s: 0.0,
        });
    };
    let request_response = matches!(scenario, Scenario::RequestResponse { .. });
    if request_response {
        if client.mqtt != MqttVersion::V5 {
            let name = match client.mqtt {
                MqttVersion::V3_1 => "3.1",
                _ => "3.1.1",
            };
            return Err(SpecError::RequestResponseNeedsV5(name));
        }
        if l.qos.is_some() {
            return Err(SpecError::RequestResponseQos);
        }
    }
    if !(HEADER_LEN..=PAYLOAD_MAX).contains(&l.payload) {
        return Err(SpecError::Payload {
            payload: l.payload,
            min: HEADER_LEN,
            max: PAYLOAD_MAX,
        });
    }
    if l.inflight == 0 {
        return Err(SpecError::TooFew {
            option: "--inflight",
            min: 1,
        });
    }
    check_seconds("--rate", l.rate, f64::MAX)?;
    check_seconds("--warmup", l.warmup, PHASE_MAX_S)?;
    check_seconds("--duration", l.duration, PHASE_MAX_S)?;
    check_seconds("--drain", l.drain, PHASE_MAX_S)?;
    if l.duration == 0.0 {
        return Err(SpecError::TooFew {
            option: "--duration",
            min: 1,
        });
    }
    Ok(LoadSpec {
        qos: if request_response {
            2
        } else {
            l.qos.unwrap_or(0)
        },
        payload: l.payload,
        rate: l.rate,
        inflight: l.inflight,
        warmup_s: l.warmup,
        duration_s: l.duration,
        drain_s: l.drain,
    })
}

fn check_seconds(option: &'static str, value: f64, max: f64) -> Result<(), SpecError> {
    if value.is_finite() && (0.0..=max).contains(&value) {
        Ok(())
    } else {
        Err(SpecError::OutOfRange { option, value, max })
    }
}

fn check_scenario(spec: &Spec) -> Result<(), SpecError> {
    let too_few = |option| Err(SpecError::TooFew { option, min: 1 });
    match &spec.scenario {
        Scenario::Conn {
            connections,
            rate,
            hold_s,
        } => {
            if *connections == 0 {
                return too_few("--connections");
            }
            check_seconds("--rate", *rate, f64::MAX)?;
            check_seconds("--hold", *hold_s, PHASE_MAX_S)?;
        }
        Scenario::Fanout {
            publishers,
            subscribers,
            topic,
        } => {
            count_at_least_1("--publishers", *publishers)?;
            count_at_least_1("--subscribers", *subscribers)?;
            check_topic("--topic", topic)?;
        }
        Scenario::Fanin {
            publishers,
            subscribers,
            prefix,
            shared,
        } => {
            count_at_least_1("--publishers", *publishers)?;
            count_at_least_1("--subscribers", *subscribers)?;
            check_topic("--prefix", prefix)?;
            if let Some(group) = shared {
                if group.is_empty() || group.contains(['/', '+', '#']) {
                    return Err(SpecError::SharedGroup(group.clone()));
                }
            }
        }
        Scenario::P2p { pairs, prefix } => {
            count_at_least_1("--pairs", *pairs)?;
            check_topic("--prefix", prefix)?;
        }
        Scenario::Retained {
            messages,
            subscribers,
            prefix,
            ..
        } => {
            count_at_least_1("--messages", *messages)?;
            count_at_least_1("--subscribers", *subscribers)?;
            check_topic("--prefix", prefix)?;
        }
        Scenario::RequestResponse { users } => count_at_least_1("--users", *users)?,
    }
    let senders = match spec.scenario {
        Scenario::Retained { .. } => 1,
        _ => spec.scenario.publishers(),
    };
    let rate = spec.load.rate;
    if rate > 0.0 && senders > 0 && rate / (senders as f64) < RATE_PER_SENDER_MIN {
        return Err(SpecError::RateTooLow {
            rate,
            senders,
            per: rate / senders as f64,
            min: RATE_PER_SENDER_MIN,
        });
    }
    Ok(())
}

fn count_at_least_1(option: &'static str, n: u32) -> Result<(), SpecError> {
    if n == 0 {
        Err(SpecError::TooFew { option, min: 1 })
    } else {
        Ok(())
    }
}

fn check_topic(option: &'static str, topic: &str) -> Result<(), SpecError> {
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(SpecError::Topic {
            option,
            value: topic.to_string(),
        });
    }
    Ok(())
}

/// How much slower than its pace a paced phase (the set-up's connects, a sweep) may run
/// within its bound: an emulated guest asked for 1,000 connections a second fell to 875 a
/// second past 500,000 connections, and its set-up hit a bound without slack
/// (results/million/2026-11-30T2252).
pub const PACE_SLACK: f64 = 1.25;

/// A sweep (the conn run's PINGREQ to every connection, the teardown's DISCONNECT to every
/// connection) goes out at this multiple of the connect rate, where connections were paced in:
/// a PINGREQ or a DISCONNECT costs a fraction of a connection's set-up. Sent all at once,
/// 900,000 PINGREQs held an emulated guest's CPUs in softirq for 30 s
/// (results/million/2026-11-30T2252).
pub const SWEEP_RATE_PER_CONNECT_RATE: f64 = 4.0;

impl Spec {
    /// Position of a client among all clients of the run, for spreading ports and source
    /// addresses round-robin.
    pub fn ordinal(&self, role: Role, index: u32) -> u64 {
        let mut offset = 0u64;
        for (r, n) in self.scenario.groups() {
            if r == role {
                return offset + index as u64;
            }
            offset += n as u64;
        }
        unreachable!("role {role:?} is not part of {}", self.scenario.name())
    }

    /// Bound on a worker's setup (connecting, subscribing, publishing the retained tree), in
    /// seconds: its share of the connection ramp (with [`PACE_SLACK`]) plus the per-connection
    /// timeout, and for the retained publisher the time its rate needs.
    pub fn setup_bound_s(&self, assignment: &Assignment) -> f64 {
        self.setup_bound_s_for(assignment.sockets())
    }

    /// The run's connection rate (connections/s, 0 unpaced) and the clients it opens.
    fn connect_rate_and_clients(&self) -> (f64, f64) {
        match self.scenario {
            Scenario::Conn {
                rate, connections, ..
            } => (rate, connections as f64),
            _ => (
                self.client.connect_rate,
                self.scenario.total_clients() as f64,
            ),
        }
    }

    /// A worker's share of the run's connection rate (connections/s) for its `sockets`
    /// clients; 0 is unpaced.
    pub fn connect_rate_for(&self, sockets: u64) -> f64 {
        let (rate, total) = self.connect_rate_and_clients();
        rate * sockets as f64 / total.max(1.0)
    }

    /// A worker's pace (messages/s) for a sweep over its `sockets` connections; 0 is unpaced.
    pub fn sweep_rate_for(&self, sockets: u64) -> f64 {
        self.connect_rate_for(sockets) * SWEEP_RATE_PER_CONNECT_RATE
    }

    /// Bound on a sweep going out to every connection of the run, in seconds: the same for
    /// every worker, since each worker's pace is its share of the run's. 0 when unpaced.
    pub fn sweep_bound_s(&self) -> f64 {
        let (rate, total) = self.connect_rate_and_clients();
        if rate > 0.0 {
            total / (rate * SWEEP_RATE_PER_CONNECT_RATE) * PACE_SLACK
        } else {
            0.0
        }
    }

    /// [`Spec::setup_bound_s`] for a worker holding `sockets` clients.
    pub fn setup_bound_s_for(&self, sockets: u64) -> f64 {
        let rate = self.connect_rate_for(sockets);
        let sockets = sockets as f64;
        let ramp_s = if rate > 0.0 {
            sockets / rate * PACE_SLACK
        } else {
            // Unpaced: assume at least 1,000 connections/s.
            sockets / 1000.0
        };
        let retained_s = match self.scenario {
            Scenario::Retained { messages, .. } if self.load.rate > 0.0 => {
                messages as f64 / self.load.rate
            }
            Scenario::Retained { messages, .. } => messages as f64 / 1000.0,
            _ => 0.0,
        };
        ramp_s + retained_s + 2.0 * CONNECT_TIMEOUT_S
    }
}

/// The machine the tests validate against: the host network, Linux's default port range.
#[cfg(test)]
pub(crate) const TEST_MACHINE: Machine = Machine {
    private_netns: false,
    local_ports: 28_232,
    sockets_per_worker: 19_000,
};

/// Parses a command line (without the program name) and builds its spec on [`TEST_MACHINE`].
#[cfg(test)]
pub(crate) fn build_args(args: &[&str]) -> Result<Spec, SpecError> {
    use clap::Parser;
    let mut argv = vec!["ironsight-bench"];
    argv.extend_from_slice(args);
    let cli = crate::cli::Cli::try_parse_from(argv).expect("arguments parse");
    build(cli.command, TEST_MACHINE).map(|(spec, _)| spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a plain fanout run is accepted with the documented defaults.
    #[test]
    fn defaults_accepted() {
        let spec = build_args(&["fanout", "--run-id", "7"]).unwrap();
        assert_eq!(spec.run_id, 7);
        assert_eq!(spec.load.qos, 0);
        assert_eq!(spec.load.payload, 64);
        assert_eq!(spec.client.ports, [1883]);
        assert_eq!(spec.scenario.publishers(), 1);
    }

    /// Proves --login-users numbers the user name and password of each connection alike,
    /// and that without it every connection logs in as given.
    #[test]
    fn logins_spread_over_numbered_users() {
        let spec = build_args(&[
            "conn",
            "--username",
            "user",
            "--password",
            "pw",
            "--login-users",
            "3",
        ])
        .unwrap();
        let c = &spec.client;
        assert_eq!(c.numbered(&c.username, 7).as_deref(), Some("user1"));
        assert_eq!(c.numbered(&c.password, 7).as_deref(), Some("pw1"));
        let plain = build_args(&["conn", "--username", "user"]).unwrap();
        let c = &plain.client;
        assert_eq!(c.numbered(&c.username, 7).as_deref(), Some("user"));
        assert_eq!(c.numbered(&c.password, 7), None);
    }

    /// Proves the refusals the brief names: request-response over 3.1.1, a payload smaller
    /// than the header, non-loopback targets.
    #[test]
    fn refusals() {
        let rr = build_args(&["request-response", "--mqtt", "3.1.1"]).unwrap_err();
        assert_eq!(rr, SpecError::RequestResponseNeedsV5("3.1.1"));
        assert!(rr.to_string().contains("MQTT 5"));
        assert_eq!(
            build_args(&["request-response", "--qos", "1"]),
            Err(SpecError::RequestResponseQos)
        );
        assert!(matches!(
            build_args(&["fanout", "--payload", "27"]),
            Err(SpecError::Payload { payload: 27, .. })
        ));
        assert!(build_args(&["fanout", "--payload", "28"]).is_ok());
        let far = build_args(&["conn", "--host", "10.0.0.1"]).unwrap_err();
        assert!(far.to_string().contains("loopback"), "{far}");
        assert!(build_args(&["fanin", "--shared", "a/b"]).is_err());
        assert!(build_args(&["fanout", "--topic", "a/#"]).is_err());
        assert!(build_args(&["fanout", "--subscribers", "0"]).is_err());
        assert!(build_args(&["fanout", "--duration", "0"]).is_err());
        assert!(build_args(&["fanout", "--warmup=-1"]).is_err());
        assert!(build_args(&["fanout", "--inflight", "0"]).is_err());
        assert!(build_args(&["fanout", "--procs", "0"]).is_err());
        assert!(build_args(&["p2p", "--pairs", "10", "--rate", "0.001"]).is_err());
        assert!(build_args(&["conn", "--host", "::1", "--source-addrs", "2"]).is_err());
    }

    /// Proves ordinals number all clients of a run consecutively, role after role.
    #[test]
    fn ordinals() {
        let spec = build_args(&["p2p", "--pairs", "3"]).unwrap();
        assert_eq!(spec.ordinal(Role::Subscriber, 2), 2);
        assert_eq!(spec.ordinal(Role::Publisher, 0), 3);
    }

    /// Proves --tls reads its files before the run (a missing CA file is refused, naming it),
    /// and that the options only it uses are refused without it, as --cert is without --key.
    #[test]
    fn tls_options() {
        let missing = build_args(&["conn", "--tls", "--cafile", "/nonexistent/ca.pem"]);
        let Err(SpecError::Tls(e)) = missing else {
            panic!("{missing:?}")
        };
        assert!(
            e.to_string().contains("--cafile /nonexistent/ca.pem"),
            "{e}"
        );
        use clap::Parser;
        let parses = |args: &[&str]| {
            let argv = [&["ironsight-bench", "conn"], args].concat();
            crate::cli::Cli::try_parse_from(argv).is_ok()
        };
        assert!(!parses(&["--tls"]), "--tls needs --cafile");
        assert!(!parses(&["--cafile", "ca.pem"]), "--cafile needs --tls");
        assert!(!parses(&["--tls", "--cafile", "ca.pem", "--cert", "c.pem"]));
        assert!(!parses(&["--tls", "--cafile", "ca.pem", "--key", "k.pem"]));
        assert!(
            !parses(&["--tls-version", "1.3"]),
            "--tls-version needs --tls"
        );
        assert!(!parses(&[
            "--tls",
            "--cafile",
            "ca.pem",
            "--tls-version",
            "1.1"
        ]));
        assert!(parses(&[
            "--tls",
            "--cafile",
            "ca.pem",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "--tls-version",
            "1.2"
        ]));
    }

    /// Proves --ws takes its path (default /mqtt), --ws-path needs --ws, and a path that
    /// would break the request line is refused.
    #[test]
    fn ws_options() {
        let spec = build_args(&["conn", "--ws"]).unwrap();
        assert_eq!(spec.client.ws_path.as_deref(), Some("/mqtt"));
        assert_eq!(build_args(&["conn"]).unwrap().client.ws_path, None);
        let spec = build_args(&["conn", "--ws", "--ws-path", "/a/b?c=1"]).unwrap();
        assert_eq!(spec.client.ws_path.as_deref(), Some("/a/b?c=1"));
        for bad in ["mqtt", "/a b", "/a\r\nX: y"] {
            assert_eq!(
                build_args(&["conn", "--ws", "--ws-path", bad]),
                Err(SpecError::WsPath(bad.to_string()))
            );
        }
        use clap::Parser;
        let alone = crate::cli::Cli::try_parse_from(["b", "conn", "--ws-path", "/x"]);
        assert!(alone.is_err(), "--ws-path needs --ws");
    }

    /// Proves the spec survives the JSON trip to a worker unchanged.
    #[test]
    fn spec_json_round_trip() {
        let spec = build_args(&["retained", "--filter", "bench/retained/+"]).unwrap();
        let text = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<Spec>(&text).unwrap(), spec);
    }
}
