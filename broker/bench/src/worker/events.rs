//! Readiness events of client sockets: connect completion, reads split into frames, writes
//! resumed, and closing.

use std::os::fd::AsFd;

use bytes::BytesMut;
use ironsight_codec::{Connect, ConnectProperties, Framer, Packet};

use super::conn::{ConnState, PACKET_MAX};
use super::engine::{Engine, Phase, READ_CHUNK, READ_ROUNDS_MAX};
use super::reactor::{read_into, Ready};
use crate::clock::now_ns;
use crate::plan;

impl Engine {
    pub(super) fn on_ready(&mut self, ready: Ready) {
        let i = ready.token as usize;
        if i >= self.conns.len() || self.conns[i].sock.is_none() {
            return;
        }
        let now = now_ns();
        if self.conns[i].state == ConnState::Connecting {
            if ready.writable || ready.error {
                self.on_connected(i, now);
            }
            return;
        }
        if ready.readable || ready.error {
            self.on_readable(i);
        }
        if ready.writable && self.conns[i].sock.is_some() {
            self.flush(i, now);
            if self.conns[i].wbuf.is_empty() {
                if let Some(slot) = self.conns[i].sender {
                    self.wake(slot);
                }
            }
        }
    }

    /// The TCP handshake finished (or failed): send CONNECT.
    fn on_connected(&mut self, i: usize, now: u64) {
        let error = match self.conns[i].sock.as_ref().map(|s| s.take_error()) {
            Some(Ok(None)) => None,
            Some(Ok(Some(e))) | Some(Err(e)) => Some(e.to_string()),
            None => Some("no socket".to_string()),
        };
        if let Some(e) = error {
            let port = plan::plan(&self.spec, self.conns[i].role, self.conns[i].index).port;
            self.close(
                i,
                Some(format!("connect {}:{port}: {e}", self.spec.client.target)),
            );
            return;
        }
        let connect = self.connect_packet(i);
        let conn = &mut self.conns[i];
        conn.state = ConnState::AwaitConnAck;
        conn.queue(&Packet::Connect(Box::new(connect)), self.version);
        self.flush(i, now);
    }

    fn connect_packet(&self, i: usize) -> Connect {
        let c = &self.spec.client;
        let p = plan::plan(&self.spec, self.conns[i].role, self.conns[i].index);
        let mut properties = ConnectProperties::default();
        if c.persistent && self.version.is_v5() {
            properties.session_expiry_interval_s = Some(c.session_expiry_s);
        }
        Connect {
            protocol: self.version,
            clean_start: !c.persistent,
            keep_alive_s: c.keepalive_s,
            client_id: p.client_id.into(),
            will: None,
            username: c.username.clone().map(Into::into),
            password: c.password.clone().map(|p| p.into_bytes().into()),
            properties,
        }
    }

    /// Reads what is there (bounded rounds) and handles every whole frame.
    fn on_readable(&mut self, i: usize) {
        for _ in 0..READ_ROUNDS_MAX {
            // A partial frame lives in the connection's own buffer; otherwise read into the
            // shared scratch buffer and keep only a leftover partial frame.
            let own = !self.conns[i].rbuf.is_empty();
            let mut buf = if own {
                std::mem::take(&mut self.conns[i].rbuf)
            } else {
                std::mem::take(&mut self.scratch)
            };
            let Some(sock) = self.conns[i].sock.as_ref() else {
                return;
            };
            let read = read_into(sock.as_fd(), &mut buf, READ_CHUNK);
            let n = match read {
                Ok(0) => {
                    self.restore(i, own, buf);
                    self.on_eof(i);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    self.restore(i, own, buf);
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                    self.restore(i, own, buf);
                    continue;
                }
                Err(e) => {
                    self.restore(i, own, buf);
                    self.close(i, Some(format!("read: {e}")));
                    return;
                }
            };
            self.frames(i, &mut buf);
            self.restore(i, own, buf);
            if n < READ_CHUNK || self.conns[i].sock.is_none() {
                break;
            }
        }
        let now = now_ns();
        if self.conns[i].sock.is_some() && !self.conns[i].wbuf.is_empty() {
            self.flush(i, now);
        }
    }

    /// Puts a read buffer back: leftovers of the scratch buffer are copied to the connection.
    fn restore(&mut self, i: usize, own: bool, mut buf: BytesMut) {
        if own {
            if buf.is_empty() {
                // Give the memory back: idle connections should cost no buffer.
                buf = BytesMut::new();
            }
            self.conns[i].rbuf = buf;
        } else {
            if !buf.is_empty() {
                self.conns[i].rbuf = BytesMut::from(&buf[..]);
                buf.clear();
            }
            self.scratch = buf;
        }
    }

    fn frames(&mut self, i: usize, buf: &mut BytesMut) {
        let mut framer = std::mem::replace(&mut self.conns[i].framer, Framer::new(PACKET_MAX));
        let now = now_ns();
        loop {
            if self.conns[i].sock.is_none() {
                break;
            }
            let frame = match framer.next_frame(buf) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    buf.clear();
                    self.close(i, Some(format!("framing: {e}")));
                    break;
                }
            };
            match Packet::decode(frame, self.version) {
                Ok(packet) => self.on_packet(i, packet, now),
                Err(e) => {
                    buf.clear();
                    self.close(i, Some(format!("decode: {e}")));
                    break;
                }
            }
        }
        self.conns[i].framer = framer;
    }

    fn on_eof(&mut self, i: usize) {
        if self.conns[i].state == ConnState::Closing {
            self.close(i, None);
        } else {
            self.close(i, Some("closed by the broker".into()));
        }
    }

    /// Writes pending bytes; registers for EPOLLOUT while some remain.
    pub(super) fn flush(&mut self, i: usize, now: u64) {
        let conn = &mut self.conns[i];
        let done = match conn.flush(now) {
            Ok(done) => done,
            Err(e) => {
                self.close(i, Some(format!("write: {e}")));
                return;
            }
        };
        let Some(sock) = conn.sock.as_ref() else {
            return;
        };
        let want = !done;
        if want != conn.want_write {
            conn.want_write = want;
            // The registration is keyed by this descriptor: modify through it, never a dup.
            if let Err(e) = self.reactor.modify(sock.as_fd(), i as u64, want) {
                self.errors.push(format!("epoll modify: {e}"));
            }
        }
        if done && conn.state == ConnState::Closing {
            let _ = sock.shutdown(std::net::Shutdown::Write);
        }
    }

    /// Closes connection `i`. `reason`: what went wrong, or `None` for an orderly close.
    pub(super) fn close(&mut self, i: usize, reason: Option<String>) {
        let conn = &mut self.conns[i];
        if let Some(sock) = conn.sock.take() {
            let _ = self.reactor.delete(sock.as_fd());
        }
        let was = conn.state;
        conn.rbuf = BytesMut::new();
        conn.wbuf = BytesMut::new();
        conn.want_write = false;
        let tearing_down = matches!(self.phase, Phase::Teardown { .. } | Phase::Done);
        match was {
            ConnState::Connecting | ConnState::AwaitConnAck => {
                conn.state = ConnState::Failed;
                self.connecting -= 1;
                self.counts.failed += 1;
            }
            ConnState::AwaitSubAck | ConnState::Ready => {
                conn.state = ConnState::Closed;
                self.open -= 1;
                if was == ConnState::AwaitSubAck && !conn.storm && self.phase == Phase::Setup {
                    self.subscribing -= 1;
                }
                if !tearing_down {
                    self.counts.lost += 1;
                }
            }
            ConnState::Closing => conn.state = ConnState::Closed,
            ConnState::Waiting | ConnState::Closed | ConnState::Failed => {}
        }
        if conn.alive_check {
            conn.alive_check = false;
            self.alive_pending -= 1;
        }
        if conn.storm && conn.subscribe_sent_ns > 0 && !conn.storm_done {
            conn.storm_done = true;
            self.storm_pending -= 1;
        }
        if let Some(reason) = reason {
            if !tearing_down || was != ConnState::Closing {
                self.errors.push(reason);
            }
        }
    }
}
