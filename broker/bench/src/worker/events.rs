//! Readiness events of client sockets: connect completion, reads (through the link, if any)
//! split into frames, writes resumed, and closing.

use std::io;
use std::os::fd::AsFd;

use bytes::BytesMut;
use ironsight_codec::{Connect, ConnectProperties, Framer, Packet};

use super::conn::{ConnState, PACKET_MAX};
use super::engine::{Engine, Phase, READ_CHUNK, READ_ROUNDS_MAX};
use super::link::Flushed;
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
        if let Some(links) = &self.links {
            let port = plan::plan(&self.spec, self.conns[i].role, self.conns[i].index).port;
            match links.open(port) {
                Ok(link) => self.conns[i].link = Some(Box::new(link)),
                Err(e) => {
                    self.close(i, Some(format!("TLS: {e}")));
                    return;
                }
            }
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
            username: c.numbered(&c.username, self.conns[i].index).map(Into::into),
            password: c
                .numbered(&c.password, self.conns[i].index)
                .map(|p| p.into_bytes().into()),
            properties,
        }
    }

    /// Reads what is there (bounded rounds) and handles every whole frame.
    fn on_readable(&mut self, i: usize) {
        for _ in 0..READ_ROUNDS_MAX {
            if self.conns[i].sock.is_none() {
                return;
            }
            // A partial frame lives in the connection's own buffer; otherwise read into the
            // shared scratch buffer and keep only a leftover partial frame.
            let own = !self.conns[i].rbuf.is_empty();
            let mut buf = if own {
                std::mem::take(&mut self.conns[i].rbuf)
            } else {
                std::mem::take(&mut self.scratch)
            };
            let n = match self.read_once(i, &mut buf) {
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
            if self.conns[i].peer_ended() {
                self.on_eof(i);
                return;
            }
            if n < READ_CHUNK || self.conns[i].sock.is_none() {
                break;
            }
        }
        // Answers (PUBACK, PUBCOMP; with a link also handshake messages, pongs, and the MQTT
        // bytes a finished handshake releases) go out now.
        let now = now_ns();
        if self.conns[i].sock.is_some() && !self.conns[i].is_flushed() {
            self.flush(i, now);
        }
    }

    /// One read from connection `i`'s socket, its MQTT bytes appended to `buf`: directly for
    /// plain TCP; through the link otherwise, the socket's bytes passing through the shared
    /// `wire` buffer. Returns the socket's byte count (0: end of stream).
    fn read_once(&mut self, i: usize, buf: &mut BytesMut) -> io::Result<usize> {
        let conn = &mut self.conns[i];
        let sock = conn.sock.as_ref().expect("the caller checked the socket");
        let Some(link) = conn.link.as_deref_mut() else {
            return read_into(sock.as_fd(), buf, READ_CHUNK);
        };
        let n = read_into(sock.as_fd(), &mut self.wire, READ_CHUNK)?;
        let carried = link.input(&self.wire, buf);
        self.wire.clear();
        carried.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(n)
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

    /// Writes pending bytes; registers for EPOLLOUT while the socket pushes back, and wakes
    /// the connection's sender once it has taken everything after pushing back (whether
    /// EPOLLOUT or a read's answers got it there).
    pub(super) fn flush(&mut self, i: usize, now: u64) {
        let conn = &mut self.conns[i];
        let flushed = match conn.flush(now) {
            Ok(flushed) => flushed,
            Err(e) => {
                self.close(i, Some(format!("write: {e}")));
                return;
            }
        };
        let Some(sock) = conn.sock.as_ref() else {
            return;
        };
        let want = flushed == Flushed::Blocked;
        let resumed = conn.want_write && flushed == Flushed::All;
        if want != conn.want_write {
            conn.want_write = want;
            // The registration is keyed by this descriptor: modify through it, never a dup.
            if let Err(e) = self.reactor.modify(sock.as_fd(), i as u64, want) {
                self.errors.push(format!("epoll modify: {e}"));
            }
        }
        if flushed == Flushed::All && conn.state == ConnState::Closing {
            let _ = sock.shutdown(std::net::Shutdown::Write);
        }
        if let (true, Some(slot)) = (resumed, conn.sender) {
            self.wake(slot);
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
        conn.link = None;
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
            ConnState::Closing => {
                conn.state = ConnState::Closed;
                self.closing -= 1;
            }
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
