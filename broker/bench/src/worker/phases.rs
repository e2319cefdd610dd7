//! The phase transitions of a worker's [`Engine`]: setup (connecting, subscribing), the start,
//! the end of the window (conn: the liveness check; retained: the storm), the drain, and the
//! teardown. Each is a method called from the loop in `engine` when its time or condition comes.

use std::cmp::Reverse;

use ironsight_codec::{
    ByteString, Packet, PacketId, QoS, Subscribe, SubscribeFilter, SubscriptionOptions,
};

use super::conn::ConnState;
use super::engine::{
    qos_of, Engine, Phase, CONNECTS_PENDING_MAX, CONNECTS_PER_TURN, CONNECT_CALL_SLOW_NS,
};
use super::reactor;
use super::sender::Kind;
use super::sweep::SweepOp;
use crate::clock::{now_ns, s_to_ns, NS_PER_S};
use crate::pacer::{stagger_ns, Pacer};
use crate::plan;
use crate::protocol::{FromWorker, Schedule, CLEAR_TIMEOUT_S, PING_TIMEOUT_S, TEARDOWN_TIMEOUT_S};
use crate::spec::{Role, Scenario, CONNECT_TIMEOUT_S};

impl Engine {
    pub(super) fn setup(&mut self, now: u64) {
        let mut started = 0;
        while self.next_connect < self.conns.len()
            && self.connecting < CONNECTS_PENDING_MAX
            && started < CONNECTS_PER_TURN
        {
            if self.connect_pacer.allowance(now) == 0 {
                break;
            }
            self.connect_pacer.sent(1);
            self.next_connect += 1;
            started += 1;
            self.start_connect(self.next_connect - 1, now);
        }
        let (settled, given_up) = self.retained_sender.map_or((true, false), |i| {
            let s = &self.senders[i];
            let conn = &self.conns[s.conn];
            let failed = matches!(conn.state, ConnState::Failed | ConnState::Closed);
            (s.retained_settled(conn), failed)
        });
        if settled && self.retained_sender.is_some() && self.publish_span.1 == 0 {
            self.publish_span.1 = now;
        }
        let retained_ready = settled || given_up;
        let all_started = self.next_connect == self.conns.len();
        let done = all_started && self.connecting == 0 && self.subscribing == 0 && retained_ready;
        if done || now >= self.setup_deadline_ns {
            if !done {
                self.abandon_setup();
            }
            self.phase = Phase::AwaitGo;
            self.emit(&FromWorker::Ready);
        }
    }

    /// The setup deadline passed: whatever is not connected yet fails.
    pub(super) fn abandon_setup(&mut self) {
        self.errors.push(format!(
            "setup did not finish within its bound of {:.1} s",
            self.spec.setup_bound_s_for(self.conns.len() as u64)
        ));
        for i in 0..self.conns.len() {
            match self.conns[i].state {
                ConnState::Waiting => {
                    self.conns[i].state = ConnState::Failed;
                    self.counts.failed += 1;
                }
                ConnState::Connecting | ConnState::AwaitConnAck => {
                    self.close(i, Some("no CONNACK before the setup deadline".into()));
                }
                ConnState::AwaitSubAck if !self.conns[i].storm => {
                    self.errors.push("no SUBACK before the setup deadline");
                    self.conns[i].state = ConnState::Ready;
                    self.subscribing -= 1;
                }
                _ => {}
            }
        }
        if let Some(i) = self.retained_sender {
            if !self.senders[i].retained_settled(&self.conns[self.senders[i].conn]) {
                self.errors
                    .push("the retained tree was not published before the setup deadline");
            }
        }
    }

    pub(super) fn start_connect(&mut self, i: usize, now: u64) {
        let p = plan::plan(&self.spec, self.conns[i].role, self.conns[i].index);
        let target = std::net::SocketAddr::new(self.spec.client.target, p.port);
        self.counts.attempted += 1;
        if self.counts.first_attempt_ns == 0 {
            self.counts.first_attempt_ns = now;
        }
        let conn = &mut self.conns[i];
        // CONNACK latency starts right before the call, not at the loop's `now`: earlier
        // connect() calls of this turn must not count against this connection.
        let before = now_ns();
        conn.started_ns = before;
        let connected = reactor::connect(target, p.source);
        // The call itself can be slow (see CONNECT_CALL_SLOW_NS): time it.
        let call_ns = now_ns().saturating_sub(before);
        self.counts.connect_call_ns += call_ns;
        self.counts.connect_call_max_ns = self.counts.connect_call_max_ns.max(call_ns);
        if call_ns > CONNECT_CALL_SLOW_NS {
            self.counts.connect_calls_slow += 1;
        }
        match connected {
            Ok(sock) => {
                if let Err(e) = self
                    .reactor
                    .add(std::os::fd::AsFd::as_fd(&sock), i as u64, true)
                {
                    conn.state = ConnState::Failed;
                    self.counts.failed += 1;
                    self.errors.push(format!("epoll add: {e}"));
                    return;
                }
                conn.sock = Some(sock);
                conn.state = ConnState::Connecting;
                conn.want_write = true;
                self.connecting += 1;
            }
            Err(e) => {
                conn.state = ConnState::Failed;
                self.counts.failed += 1;
                self.errors.push(format!("connect {target}: {e}"));
            }
        }
    }

    /// Sends SUBSCRIBE for connection `i`.
    pub(super) fn subscribe(&mut self, i: usize, now: u64) {
        let conn = &self.conns[i];
        let p = plan::plan(&self.spec, conn.role, conn.index);
        let filter = p.subscription.expect("subscribers have a filter");
        let qos = match conn.role {
            Role::Requester => QoS::AtLeastOnce,
            Role::Responder => QoS::ExactlyOnce,
            _ => qos_of(self.spec.load.qos),
        };
        let packet = Packet::Subscribe(Subscribe {
            packet_id: PacketId::MIN,
            filters: vec![SubscribeFilter {
                filter: ByteString::from(filter),
                options: SubscriptionOptions::with_qos(qos),
            }],
            properties: Default::default(),
        });
        let conn = &mut self.conns[i];
        conn.queue(&packet, self.version);
        conn.state = ConnState::AwaitSubAck;
        conn.subscribe_sent_ns = now;
        if !conn.storm {
            self.subscribing += 1;
        }
        self.flush(i, now);
    }

    /// Go: the schedule is known; senders start at its start.
    pub(super) fn on_go(&mut self, schedule: Schedule) {
        if self.phase != Phase::AwaitGo {
            self.errors
                .push(format!("start command in phase {:?}", self.phase));
            return;
        }
        self.schedule = Some(schedule);
        self.acct.set_window(schedule.window);
        let publishers = self.spec.scenario.publishers().max(1);
        let rate = self.spec.load.rate / publishers as f64;
        for (slot, s) in self.senders.iter_mut().enumerate() {
            if matches!(s.kind, Kind::Plain { .. } | Kind::Requester { .. }) {
                let start = schedule.start_ns + stagger_ns(rate, s.publisher_id, publishers);
                s.pacer = Pacer::new(rate, start);
                self.timers.push(Reverse((start, slot)));
            }
        }
        self.phase = Phase::Running;
    }

    pub(super) fn running(&mut self, now: u64) {
        let s = self.schedule.expect("running has a schedule");
        match self.spec.scenario {
            Scenario::Conn { .. } => {
                if !self.pings_sent && now >= s.window.end_ns {
                    self.check_alive(now);
                }
                let answered = !self.sweeping() && self.alive_pending == 0;
                if self.pings_sent && (answered || now >= s.drain_end_ns) {
                    if !answered {
                        self.errors.push(format!(
                            "{} connections did not answer PINGREQ within {PING_TIMEOUT_S} s \
                             of the check's pace",
                            self.alive_pending
                        ));
                    }
                    self.finish_running(now);
                }
            }
            Scenario::Retained { .. } => {
                if !self.storm_started && now >= s.start_ns {
                    self.start_storm(now);
                }
                if self.storm_started && (self.storm_pending == 0 || now >= s.window.end_ns) {
                    if self.storm_pending > 0 {
                        self.errors.push(format!(
                            "{} subscribers did not get all {} retained messages within {} s",
                            self.storm_pending, self.retained_matching, self.spec.load.duration_s
                        ));
                    }
                    self.finish_running(now);
                }
            }
            _ => {
                if now >= s.window.end_ns {
                    self.finish_running(now);
                }
            }
        }
    }

    pub(super) fn check_alive(&mut self, now: u64) {
        self.pings_sent = true;
        self.start_sweep(SweepOp::Ping, now);
    }

    pub(super) fn start_storm(&mut self, now: u64) {
        self.storm_started = true;
        for i in 0..self.conns.len() {
            if self.conns[i].storm && self.conns[i].state == ConnState::Ready {
                self.storm_pending += 1;
                self.subscribe(i, now);
            }
        }
    }

    /// A storm subscriber has everything its filter covers.
    pub(super) fn storm_complete(&mut self, i: usize, now: u64) {
        let conn = &mut self.conns[i];
        if conn.storm_done {
            return;
        }
        conn.storm_done = true;
        self.acct
            .latency
            .record_ns(now.saturating_sub(conn.subscribe_sent_ns));
        self.storm_pending -= 1;
        self.storm_last_ns = now;
    }

    pub(super) fn finish_running(&mut self, now: u64) {
        let window = self.schedule.expect("running has a schedule").window;
        let mut counts = Vec::new();
        for s in &mut self.senders {
            s.unblock(now, window);
            match s.kind {
                Kind::Plain { .. } | Kind::Requester { .. } => {
                    counts.push((s.publisher_id, s.window_count))
                }
                Kind::Retained { next, .. } => counts.push((s.publisher_id, next as u64)),
                Kind::Responder { .. } => {}
            }
        }
        self.emit(&FromWorker::Published { counts });
        self.phase = Phase::AwaitExpect;
    }

    pub(super) fn on_expect(&mut self, counts: Vec<(u32, u64)>) {
        if self.phase != Phase::AwaitExpect {
            self.errors
                .push(format!("expected counts in phase {:?}", self.phase));
            return;
        }
        self.window_counts = counts.into_iter().collect();
        self.acct.settle(&self.window_counts);
        self.phase = Phase::Draining;
    }

    pub(super) fn finish_drain(&mut self, now: u64) {
        if let Some(i) = self.retained_sender {
            if self.conns[self.senders[i].conn].state == ConnState::Ready {
                self.senders[i].start_clearing(now);
                self.phase = Phase::Clearing {
                    deadline_ns: now + s_to_ns(CLEAR_TIMEOUT_S),
                };
                self.wake(i);
                return;
            }
        }
        self.begin_teardown(now);
    }

    /// DISCONNECT every open connection, then wait (bounded) for the broker to close them.
    pub(super) fn begin_teardown(&mut self, now: u64) {
        if matches!(self.phase, Phase::Teardown { .. } | Phase::Done) {
            return;
        }
        self.phase = Phase::Teardown {
            deadline_ns: now + s_to_ns(TEARDOWN_TIMEOUT_S + self.spec.sweep_bound_s()),
        };
        self.start_sweep(SweepOp::Disconnect, now);
    }

    pub(super) fn housekeeping(&mut self, now: u64) {
        let connect_timeout = s_to_ns(CONNECT_TIMEOUT_S);
        let keepalive = self.spec.client.keepalive_s as u64 * NS_PER_S;
        let tearing_down = matches!(self.phase, Phase::Teardown { .. } | Phase::Done);
        for i in 0..self.conns.len() {
            let conn = &self.conns[i];
            if conn.is_connecting() && now - conn.started_ns > connect_timeout {
                self.close(i, Some(format!("no CONNACK within {CONNECT_TIMEOUT_S} s")));
            } else if conn.is_open()
                && !tearing_down
                && keepalive > 0
                && conn.pings_out == 0
                && now - conn.last_tx_ns >= keepalive / 2
            {
                let conn = &mut self.conns[i];
                conn.queue(&Packet::PingReq, self.version);
                conn.pings_out += 1;
                self.flush(i, now);
            }
        }
    }
}
