//! A worker's event loop and its phases. One thread, one epoll; every wait is bounded and every
//! phase has a deadline, so a worker always reaches [`Phase::Done`] by itself.
//!
//! Phases: `Setup` (connect, subscribe, publish the retained tree) → `AwaitGo` → `Running`
//! (warm-up and window; conn: hold and liveness check; retained: the storm) → `AwaitExpect` →
//! `Draining` → `Clearing` (retained only) → `Teardown` → `Done`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Write;

use bytes::BytesMut;
use ironsight_codec::{ByteString, ProtocolVersion, QoS};

use super::conn::{Conn, ConnState};
use super::link::LinkConfig;
use super::reactor::{self, Reactor};
use super::sender::{Ctx, Kind, Next, Sender};
use super::stdin::StdinLines;
use super::sweep::Sweep;
use super::template::Template;
use crate::accounting::Accounting;
use crate::cli::MqttVersion;
use crate::clock::{now_ns, s_to_ns, NS_PER_S};
use crate::errors::ErrorLog;
use crate::latency::Latency;
use crate::pacer::Pacer;
use crate::plan::{self, Sources};
use crate::protocol::{
    FromWorker, Progress, Schedule, ToWorker, WorkerSpec, PHASE_SLACK_S, TEARDOWN_TIMEOUT_S,
};
use crate::report::{ConnCounts, MsgCounts, Partial};
use crate::spec::{Role, Scenario, Spec};

/// Connections with a TCP handshake or CONNECT outstanding at once, per worker: more only
/// overflows the broker's accept backlog and turns into SYN retransmits.
pub const CONNECTS_PENDING_MAX: usize = 256;
/// Longest single epoll wait; also the granularity of phase edges nobody wakes us for.
pub const POLL_MAX_MS: u64 = 50;
/// How often progress goes to the parent.
pub const PROGRESS_INTERVAL_NS: u64 = 250_000_000;
/// How often keepalives and connect timeouts are checked.
pub const HOUSEKEEPING_INTERVAL_NS: u64 = NS_PER_S;
/// connect() calls per loop turn: between batches the loop reads CONNACKs, so the tool's own
/// connect() time does not pile up into the CONNACK latency of connections already waiting.
pub const CONNECTS_PER_TURN: usize = 32;
/// A connect() call slower than this is counted as slow (a loopback connect() normally takes
/// tens of µs). See `spec::warnings` for the usual cause.
pub const CONNECT_CALL_SLOW_NS: u64 = 500_000;
/// Bytes read per read() call.
pub const READ_CHUNK: usize = 64 * 1024;
/// Reads per readiness event, so one busy connection cannot starve the rest.
pub const READ_ROUNDS_MAX: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Setup,
    AwaitGo,
    Running,
    AwaitExpect,
    Draining,
    Clearing { deadline_ns: u64 },
    Teardown { deadline_ns: u64 },
    Done,
}

pub struct Engine {
    pub(super) spec: Spec,
    pub(super) version: ProtocolVersion,
    pub(super) reactor: Reactor,
    pub(super) conns: Vec<Conn>,
    pub(super) senders: Vec<Sender>,
    pub(super) acct: Accounting,
    pub(super) phase: Phase,
    pub(super) schedule: Option<Schedule>,
    pub(super) errors: ErrorLog,
    pub(super) scratch: BytesMut,
    /// TLS and WebSocket settings every connection shares; `None` for plain TCP.
    pub(super) links: Option<LinkConfig>,
    /// Socket bytes of connections with a link, before the link turns them into MQTT bytes.
    pub(super) wire: BytesMut,
    pub(super) connack: Latency,
    /// Window messages' PUBLISH to PUBACK (QoS 1) or PUBCOMP (QoS 2).
    pub(super) ack: Latency,
    pub(super) counts: ConnCounts,
    /// Messages decoded by this worker's subscribers (for progress).
    pub(super) received: u64,
    /// Connections in Connecting or AwaitConnAck.
    pub(super) connecting: usize,
    /// Setup subscriptions without SUBACK yet.
    pub(super) subscribing: usize,
    /// Connections open (CONNACK received, not closed).
    pub(super) open: u64,
    /// Connections that sent DISCONNECT and wait for the broker to close them: counted, not
    /// counted up on every loop turn, since a paced teardown takes many turns.
    pub(super) closing: u64,
    /// Liveness checks without PINGRESP yet (conn).
    pub(super) alive_pending: u64,
    /// Storm subscribers not complete yet (retained).
    pub(super) storm_pending: u64,
    pub(super) storm_last_ns: u64,
    /// Topics each retained subscriber should receive.
    pub(super) retained_matching: u64,
    pub(super) retained_sender: Option<usize>,
    pub(super) publish_span: (u64, u64),
    pub(super) run_queue: Vec<usize>,
    pub(super) timers: BinaryHeap<Reverse<(u64, usize)>>,
    pub(super) next_connect: usize,
    pub(super) connect_pacer: Pacer,
    pub(super) setup_deadline_ns: u64,
    pub(super) stdin: StdinLines,
    pub(super) window_counts: HashMap<u32, u64>,
    pub(super) next_progress_ns: u64,
    pub(super) next_housekeeping_ns: u64,
    pub(super) pings_sent: bool,
    /// The liveness check's PINGREQs or the teardown's DISCONNECTs, while going out.
    pub(super) sweep: Option<Sweep>,
    pub(super) storm_started: bool,
    pub(super) worker: u32,
}

pub fn codec_version(v: MqttVersion) -> ProtocolVersion {
    match v {
        MqttVersion::V3_1 => ProtocolVersion::V3_1,
        MqttVersion::V3_1_1 => ProtocolVersion::V3_1_1,
        MqttVersion::V5 => ProtocolVersion::V5,
    }
}

pub(super) fn qos_of(n: u8) -> QoS {
    QoS::try_from(n).expect("QoS was validated")
}

/// The publishing state of client `p` (connection `conn`), if it publishes.
fn make_sender(
    spec: &Spec,
    version: ProtocolVersion,
    p: &plan::ClientPlan,
    conn: usize,
) -> Option<Sender> {
    let qos = qos_of(spec.load.qos);
    // Each flow sender's share of --rate (the schedule is set again, staggered, at the start).
    let rate = spec.load.rate / spec.scenario.publishers().max(1) as f64;
    let topic = || p.publish_topic.clone().expect("this role publishes");
    let (publisher, qos, rate, kind) = match p.role {
        Role::Publisher => {
            let template = Template::new(&topic(), qos, false, spec.load.payload, version);
            (p.index, qos, rate, Kind::Plain { template })
        }
        Role::Requester => {
            let kind = Kind::Requester {
                topic: ByteString::from(topic()),
                client_id: p.client_id.clone(),
            };
            (p.index, QoS::ExactlyOnce, rate, kind)
        }
        Role::Responder => {
            let kind = Kind::Responder {
                pending: Default::default(),
            };
            (p.index, QoS::AtLeastOnce, 0.0, kind)
        }
        Role::RetainedPublisher => {
            let Scenario::Retained { messages, .. } = spec.scenario else {
                unreachable!("retained publisher outside retained")
            };
            let kind = Kind::Retained {
                prefix: topic(),
                messages,
                next: 0,
                clearing: false,
                settle_ping: false,
            };
            (0, qos, spec.load.rate, kind)
        }
        Role::Idle | Role::Subscriber => return None,
    };
    Some(Sender::new(conn, publisher, qos, rate, kind))
}

impl Engine {
    pub fn new(ws: WorkerSpec, stdin: StdinLines) -> std::io::Result<Engine> {
        let WorkerSpec { spec, assignment } = ws;
        let version = codec_version(spec.client.mqtt);
        let record_latency = !matches!(spec.scenario, Scenario::Retained { .. });
        let mut acct = Accounting::new(spec.run_id, record_latency);
        let mut conns = Vec::with_capacity(assignment.sockets() as usize);
        let mut senders = Vec::new();
        let mut retained_sender = None;
        let now = now_ns();
        for (role, range) in &assignment.groups {
            for index in range.clone() {
                let p = plan::plan(&spec, *role, index);
                let mut conn = Conn::new(*role, index, p.sink, p.subscribe_at_go);
                if let Some(sink) = p.sink {
                    acct.add_sink(sink, plan::sources(&spec, sink));
                }
                let sender = make_sender(&spec, version, &p, conns.len());
                if sender
                    .as_ref()
                    .is_some_and(|s| matches!(s.kind, Kind::Retained { .. }))
                {
                    retained_sender = Some(senders.len());
                }
                if let Some(s) = sender {
                    conn.sender = Some(senders.len());
                    senders.push(s);
                }
                conns.push(conn);
            }
        }
        let retained_matching = match spec.scenario {
            Scenario::Retained { .. } => match plan::sources(&spec, 0) {
                Sources::Retained { matching, .. } => matching,
                _ => 0,
            },
            _ => 0,
        };
        let connect_rate = spec.connect_rate_for(conns.len() as u64);
        let setup_deadline_ns = now + s_to_ns(spec.setup_bound_s(&assignment));
        let links = LinkConfig::new(&spec.client).map_err(std::io::Error::other)?;
        Ok(Engine {
            version,
            reactor: Reactor::new()?,
            conns,
            senders,
            acct,
            phase: Phase::Setup,
            schedule: None,
            errors: ErrorLog::default(),
            scratch: BytesMut::with_capacity(READ_CHUNK),
            links,
            wire: BytesMut::new(),
            connack: Latency::new(),
            ack: Latency::new(),
            counts: ConnCounts::default(),
            received: 0,
            connecting: 0,
            subscribing: 0,
            open: 0,
            closing: 0,
            alive_pending: 0,
            storm_pending: 0,
            storm_last_ns: 0,
            retained_matching,
            retained_sender,
            publish_span: (0, 0),
            run_queue: Vec::new(),
            timers: BinaryHeap::new(),
            next_connect: 0,
            connect_pacer: Pacer::new(connect_rate, now),
            setup_deadline_ns,
            stdin,
            window_counts: HashMap::new(),
            next_progress_ns: now,
            next_housekeeping_ns: now + HOUSEKEEPING_INTERVAL_NS,
            pings_sent: false,
            sweep: None,
            storm_started: false,
            worker: assignment.worker,
            spec,
        })
    }

    /// Runs every phase to the end and returns the worker's result. Connections still
    /// closing stay open until the engine is dropped.
    pub fn run(&mut self) -> std::io::Result<Partial> {
        self.reactor
            .add(self.stdin.fd(), reactor::STDIN_TOKEN, false)?;
        while self.phase != Phase::Done {
            let now = now_ns();
            self.step(now);
            self.service_run_queue();
            if self.phase == Phase::Done {
                break;
            }
            let timeout = self.poll_timeout_ms(now_ns());
            for ready in self.reactor.wait(timeout)? {
                if ready.token == reactor::STDIN_TOKEN {
                    self.on_stdin();
                } else {
                    self.on_ready(ready);
                }
            }
        }
        Ok(self.partial())
    }

    fn poll_timeout_ms(&self, now: u64) -> u16 {
        if !self.run_queue.is_empty() {
            return 0;
        }
        let mut next = now + POLL_MAX_MS * 1_000_000;
        if let Some(Reverse((t, _))) = self.timers.peek() {
            next = next.min(*t);
        }
        if let Some(s) = self.schedule {
            for edge in [
                s.start_ns,
                s.window.start_ns,
                s.window.end_ns,
                s.drain_end_ns,
            ] {
                if edge > now {
                    next = next.min(edge);
                }
            }
        }
        if let Some(t) = self.sweep_due_ns() {
            next = next.min(t.max(now));
        }
        if self.phase == Phase::Setup && self.next_connect < self.conns.len() {
            if let Some(t) = self.connect_pacer.next_due_ns() {
                next = next.min(t.max(now));
            }
        }
        next.saturating_sub(now).div_ceil(1_000_000) as u16
    }

    /// Writes one message to the parent. A parent gone away shows up as EOF on stdin.
    pub(super) fn emit(&self, msg: &FromWorker) {
        let mut out = std::io::stdout().lock();
        let line = serde_json::to_string(msg).expect("worker messages serialize");
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }

    fn step(&mut self, now: u64) {
        while let Some(Reverse((t, slot))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            self.wake(slot);
        }
        self.advance_sweep(now);
        if now >= self.next_housekeeping_ns {
            self.next_housekeeping_ns = now + HOUSEKEEPING_INTERVAL_NS;
            self.housekeeping(now);
        }
        if now >= self.next_progress_ns {
            self.next_progress_ns = now + PROGRESS_INTERVAL_NS;
            self.emit(&FromWorker::Progress(self.progress()));
        }
        match self.phase {
            Phase::Setup => self.setup(now),
            Phase::AwaitGo => {
                if now > self.setup_deadline_ns + s_to_ns(PHASE_SLACK_S) {
                    self.errors.push("no start command from the parent");
                    self.begin_teardown(now);
                }
            }
            Phase::Running => self.running(now),
            Phase::AwaitExpect => {
                let s = self.schedule.expect("running had a schedule");
                if now > s.drain_end_ns + s_to_ns(PHASE_SLACK_S) {
                    self.errors.push("no expected counts from the parent");
                    self.begin_teardown(now);
                }
            }
            Phase::Draining => {
                let s = self.schedule.expect("running had a schedule");
                if self.acct.complete() || now >= s.drain_end_ns {
                    self.finish_drain(now);
                }
            }
            Phase::Clearing { deadline_ns } => {
                let settled = self.retained_sender.is_some_and(|i| {
                    let s = &self.senders[i];
                    let conn = &self.conns[s.conn];
                    !conn.is_open() || s.retained_settled(conn)
                });
                if settled || now >= deadline_ns {
                    if !settled {
                        self.errors.push("clearing the retained messages timed out");
                    }
                    self.begin_teardown(now);
                }
            }
            Phase::Teardown { deadline_ns } => {
                let closing = self.closing;
                let closed = closing == 0 && !self.sweeping();
                if closed || now >= deadline_ns {
                    if !closed {
                        self.errors.push(format!(
                            "{closing} connections not closed by the broker within \
                             {TEARDOWN_TIMEOUT_S} s of the DISCONNECTs' pace"
                        ));
                    }
                    // What still waits for the broker closes when the engine is dropped,
                    // after the worker's report: in an emulated guest, closing a quarter of a
                    // million sockets took longer than the parent waits for the report.
                    for i in 0..self.conns.len() {
                        let conn = &self.conns[i];
                        if conn.sock.is_some() && conn.state != ConnState::Closing {
                            self.close(i, None);
                        }
                    }
                    self.phase = Phase::Done;
                }
            }
            Phase::Done => {}
        }
    }

    fn progress(&self) -> Progress {
        Progress {
            open: self.open,
            sent: self.senders.iter().map(|s| s.sent_total).sum(),
            received: self.received,
            inflight: self.senders.iter().map(Sender::inflight).sum(),
        }
    }

    pub(super) fn wake(&mut self, slot: usize) {
        let s = &mut self.senders[slot];
        if !s.queued {
            s.queued = true;
            self.run_queue.push(slot);
        }
    }

    fn service_run_queue(&mut self) {
        let queue = std::mem::take(&mut self.run_queue);
        for slot in queue {
            self.senders[slot].queued = false;
            self.service(slot);
        }
    }

    /// Lets sender `slot` publish what it may now, and arranges for it to be woken again.
    fn service(&mut self, slot: usize) {
        let now = now_ns();
        let i = self.senders[slot].conn;
        if self.conns[i].state != ConnState::Ready || !self.conns[i].is_flushed() {
            // Not connected, or the socket is full: CONNACK or the flush that empties it
            // wakes it.
            if self.conns[i].state == ConnState::Ready && self.phase == Phase::Running {
                self.senders[slot].block(now);
            }
            return;
        }
        let fallback = Schedule {
            start_ns: 0,
            window: crate::accounting::Window {
                start_ns: 0,
                end_ns: 0,
            },
            drain_end_ns: 0,
        };
        let ctx = Ctx {
            run_id: self.spec.run_id,
            version: self.version,
            payload_len: self.spec.load.payload,
            schedule: self.schedule.as_ref().unwrap_or(&fallback),
        };
        let sender = &mut self.senders[slot];
        let conn = &mut self.conns[i];
        let next = match (&sender.kind, self.phase) {
            (Kind::Plain { .. } | Kind::Requester { .. }, Phase::Running) => {
                sender.fill_flow(conn, &ctx, now)
            }
            (Kind::Retained { .. }, Phase::Setup | Phase::Clearing { .. }) => {
                if self.publish_span.0 == 0 {
                    // The retained tree's schedule starts with its first message.
                    self.publish_span.0 = now;
                    sender.pacer = Pacer::new(self.spec.load.rate, now);
                }
                sender.fill_retained(conn, &ctx, now)
            }
            (Kind::Responder { .. }, p) if !matches!(p, Phase::Teardown { .. } | Phase::Done) => {
                sender.fill_responses(conn, &ctx)
            }
            _ => Next::Idle,
        };
        self.flush(i, now);
        if !self.conns[i].is_flushed() {
            if matches!(next, Next::Again | Next::WaitAck) && self.phase == Phase::Running {
                self.senders[slot].block(now);
            }
            return;
        }
        match next {
            Next::Again => self.wake(slot),
            Next::At(t) => self.timers.push(Reverse((t, slot))),
            Next::WaitAck => {
                if self.phase == Phase::Running {
                    self.senders[slot].block(now);
                }
            }
            Next::Idle => {}
        }
    }

    fn partial(&self) -> Partial {
        let totals = self.acct.totals(&self.window_counts);
        let published = self
            .senders
            .iter()
            .filter(|s| !matches!(s.kind, Kind::Responder { .. }))
            .map(|s| match s.kind {
                Kind::Retained { messages, .. } if self.publish_span.1 > 0 => messages as u64,
                Kind::Retained { .. } => 0,
                _ => s.window_count,
            })
            .sum();
        let storm_span_ns = match (self.schedule, self.storm_last_ns) {
            (Some(s), last) if last > 0 => last.saturating_sub(s.start_ns),
            _ => 0,
        };
        Partial {
            worker: self.worker,
            connections: self.counts,
            connack_hist: self.connack.to_base64(),
            ack_hist: self.ack.to_base64(),
            latency_hist: self.acct.latency.to_base64(),
            messages: MsgCounts {
                published,
                published_total: self
                    .senders
                    .iter()
                    .filter(|s| !matches!(s.kind, Kind::Responder { .. }))
                    .map(|s| s.sent_total)
                    .sum(),
                stale: self.acct.stale,
                foreign: self.acct.foreign,
                warmup_received: self.acct.warmup,
                unexpected: self.acct.unexpected,
                received_during_window: self.acct.received_during_window,
                backpressure_ns: self.senders.iter().map(|s| s.backpressure_ns).sum(),
            },
            totals,
            publish_span_ns: self.publish_span.1.saturating_sub(self.publish_span.0),
            storm_span_ns,
            errors: self.errors.lines(),
        }
    }

    /// Commands from the parent.
    fn on_stdin(&mut self) {
        let (lines, eof) = self.stdin.read_lines();
        for line in lines {
            match serde_json::from_str::<ToWorker>(&line) {
                Ok(ToWorker::Go { schedule }) => self.on_go(schedule),
                Ok(ToWorker::Expect { counts }) => self.on_expect(counts),
                Ok(ToWorker::Stop) => {
                    self.errors.push("stopped by the parent");
                    self.begin_teardown(now_ns());
                }
                Err(e) => self
                    .errors
                    .push(format!("bad command from the parent: {e}")),
            }
        }
        if eof {
            let _ = self.reactor.delete(self.stdin.fd());
            if !matches!(self.phase, Phase::Teardown { .. } | Phase::Done) {
                self.errors.push("the parent went away");
                self.begin_teardown(now_ns());
            }
        }
    }
}
