//! Sweeps: one packet to every connection of the worker, at a bounded pace. The conn run's
//! liveness check is a sweep of PINGREQ, the teardown a sweep of DISCONNECT. Where connections
//! were paced in, a sweep goes out at [`crate::spec::SWEEP_RATE_PER_CONNECT_RATE`] times their
//! rate, so it costs the machine about what the set-up did; sent all at once, 900,000 PINGREQs
//! held an emulated guest's CPUs in softirq for 30 s and the workers missed their deadlines.
//! Unpaced runs sweep everything at once, as before.

use ironsight_codec::Packet;

use super::conn::ConnState;
use super::engine::Engine;
use crate::pacer::Pacer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SweepOp {
    /// A PINGREQ to every ready connection, each counted as a liveness check.
    Ping,
    /// A DISCONNECT to every open connection; connections still connecting are closed.
    Disconnect,
}

/// A sweep going out: what it sends, the next connection in turn, and its pace.
#[derive(Debug)]
pub(super) struct Sweep {
    op: SweepOp,
    next: usize,
    pacer: Pacer,
}

impl Engine {
    /// Starts a sweep (replacing one still going out) and sends what is due at once.
    pub(super) fn start_sweep(&mut self, op: SweepOp, now: u64) {
        let rate = self.spec.sweep_rate_for(self.conns.len() as u64);
        self.sweep = Some(Sweep {
            op,
            next: 0,
            pacer: Pacer::new(rate, now),
        });
        self.advance_sweep(now);
    }

    /// Sends what the sweep's pace allows by `now`; the sweep ends once every connection has
    /// had its turn.
    pub(super) fn advance_sweep(&mut self, now: u64) {
        let Some(mut sweep) = self.sweep.take() else {
            return;
        };
        let mut allowance = sweep.pacer.allowance(now);
        while allowance > 0 && sweep.next < self.conns.len() {
            let i = sweep.next;
            sweep.next += 1;
            if self.sweep_one(sweep.op, i, now) {
                allowance -= 1;
                sweep.pacer.sent(1);
            }
        }
        if sweep.next < self.conns.len() {
            self.sweep = Some(sweep);
        }
    }

    /// Whether a sweep is still going out.
    pub(super) fn sweeping(&self) -> bool {
        self.sweep.is_some()
    }

    /// When the sweep's next packet is due (`None`: no sweep, or unpaced).
    pub(super) fn sweep_due_ns(&self) -> Option<u64> {
        self.sweep.as_ref().and_then(|s| s.pacer.next_due_ns())
    }

    /// The sweep's turn of connection `i`; whether it sent a packet (what the pace counts).
    fn sweep_one(&mut self, op: SweepOp, i: usize, now: u64) -> bool {
        match (op, self.conns[i].state) {
            (SweepOp::Ping, ConnState::Ready) => {
                let conn = &mut self.conns[i];
                conn.queue(&Packet::PingReq, self.version);
                conn.pings_out += 1;
                conn.alive_check = true;
                self.alive_pending += 1;
                self.counts.alive_checked += 1;
                self.flush(i, now);
                true
            }
            (SweepOp::Disconnect, ConnState::AwaitSubAck | ConnState::Ready) => {
                self.conns[i].disconnect(self.version);
                self.open -= 1;
                self.closing += 1;
                // Once all is out, the flush shuts our side down.
                self.flush(i, now);
                true
            }
            (SweepOp::Disconnect, ConnState::Connecting | ConnState::AwaitConnAck) => {
                self.close(i, None);
                false
            }
            _ => false,
        }
    }
}
