//! One client connection of a worker: its socket, its protocol state, and bytes in and out.
//! Kept small on purpose (a worker holds 19,000 of them here, 250,000 in the appliance's
//! million-connection run): buffers are empty unless a
//! partial frame arrived or the socket pushed back, role state lives elsewhere
//! ([`super::sender::Sender`]), referenced by index, and TLS or WebSocket state behind one
//! pointer ([`Link`]) that plain connections leave empty.

use std::io;
use std::net::TcpStream;

use bytes::BytesMut;
use ironsight_codec::{Disconnect, Framer, Packet, ProtocolVersion};

use super::link::{Flushed, Link};
use super::reactor::write_buf;
use crate::spec::Role;

/// Largest packet a worker accepts from the broker: the largest payload plus room for topic and
/// properties.
pub const PACKET_MAX: u32 = (crate::spec::PAYLOAD_MAX + 64 * 1024) as u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    /// Not connected yet.
    Waiting,
    /// TCP handshake in progress.
    Connecting,
    /// CONNECT sent.
    AwaitConnAck,
    /// SUBSCRIBE sent.
    AwaitSubAck,
    Ready,
    /// DISCONNECT sent and our side shut down; waiting for the broker to close.
    Closing,
    /// Closed after having been open.
    Closed,
    /// Never opened: refused, reset or timed out.
    Failed,
}

pub struct Conn {
    pub role: Role,
    pub index: u32,
    pub sink: Option<u32>,
    /// Index into the worker's senders, for clients that publish.
    pub sender: Option<usize>,
    /// Subscribes when the run starts (retained storm) rather than during setup.
    pub storm: bool,
    pub sock: Option<TcpStream>,
    pub state: ConnState,
    pub framer: Framer,
    /// Bytes of a partial frame; empty (no allocation) most of the time.
    pub rbuf: BytesMut,
    /// MQTT bytes not yet on the socket (or, with a link, not yet taken by it).
    pub wbuf: BytesMut,
    /// TLS and/or WebSocket between the socket and the MQTT bytes; `None` for plain TCP.
    pub link: Option<Box<Link>>,
    /// EPOLLOUT is registered.
    pub want_write: bool,
    /// connect() was called (CONNACK latency starts here).
    pub started_ns: u64,
    pub last_tx_ns: u64,
    pub pings_out: u16,
    /// Waiting for the PINGRESP of the liveness check (conn scenario).
    pub alive_check: bool,
    /// When the storm SUBSCRIBE went out (retained).
    pub subscribe_sent_ns: u64,
    /// Storm subscriber that has all its retained messages.
    pub storm_done: bool,
}

impl Conn {
    pub fn new(role: Role, index: u32, sink: Option<u32>, storm: bool) -> Conn {
        Conn {
            role,
            index,
            sink,
            sender: None,
            storm,
            sock: None,
            state: ConnState::Waiting,
            framer: Framer::new(PACKET_MAX),
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            link: None,
            want_write: false,
            started_ns: 0,
            last_tx_ns: 0,
            pings_out: 0,
            alive_check: false,
            subscribe_sent_ns: 0,
            storm_done: false,
        }
    }

    /// CONNACK received and not closed.
    pub fn is_open(&self) -> bool {
        matches!(self.state, ConnState::AwaitSubAck | ConnState::Ready)
    }

    /// Connect in progress (TCP or MQTT).
    pub fn is_connecting(&self) -> bool {
        matches!(self.state, ConnState::Connecting | ConnState::AwaitConnAck)
    }

    pub fn queue(&mut self, packet: &Packet, version: ProtocolVersion) {
        packet.encode(version, &mut self.wbuf);
    }

    /// Queues DISCONNECT; the link says goodbye after it.
    pub fn disconnect(&mut self, version: ProtocolVersion) {
        self.queue(&Packet::Disconnect(Disconnect::normal()), version);
        self.state = ConnState::Closing;
        if let Some(link) = self.link.as_deref_mut() {
            link.close();
        }
    }

    /// Everything queued is on the socket: none in `wbuf`, none inside the link. This, not an
    /// empty `wbuf`, is what lets a sender encode more.
    pub fn is_flushed(&self) -> bool {
        self.wbuf.is_empty() && self.link.as_ref().is_none_or(|l| l.is_drained())
    }

    /// The broker ended the TLS session or the WebSocket: as good as end of stream.
    pub fn peer_ended(&self) -> bool {
        self.link.as_ref().is_some_and(|l| l.peer_ended())
    }

    /// Writes what the socket takes, through the link if there is one.
    pub fn flush(&mut self, now_ns: u64) -> io::Result<Flushed> {
        if !self.is_flushed() {
            self.last_tx_ns = now_ns;
        }
        let Some(sock) = self.sock.as_mut() else {
            return Ok(Flushed::Blocked);
        };
        match self.link.as_deref_mut() {
            Some(link) => link.flush(&mut self.wbuf, sock),
            None if write_buf(sock, &mut self.wbuf)? => Ok(Flushed::All),
            None => Ok(Flushed::Blocked),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves a connection is small: the 19,000-per-worker budget depends on it.
    #[test]
    fn conn_is_small() {
        assert!(
            std::mem::size_of::<Conn>() <= 256,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }
}
