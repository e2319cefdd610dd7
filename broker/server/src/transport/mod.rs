//! Transports: everything between a connection's socket and the core's MQTT bytes.
//!
//! Every read, write, park, handoff and close of a connection goes through its [`Transport`],
//! so that a connection over TLS or WebSocket is parked, handed to another shard, flushed with
//! vectored writes and lingered exactly like a plain one. The core sees MQTT bytes only, and the
//! identity facts a transport establishes (`ironsight_core::conn::Identity`), told once through
//! [`Upward::identify`] before the first MQTT byte.
//!
//! # Layout
//! - [`detect`]: one port for everything: the first bytes say MQTT, TLS or WebSocket.
//! - [`proxy`]: the PROXY protocol header a load balancer puts in front.
//! - [`tls`]: TLS 1.2 and 1.3: rustls for the handshake, then a record layer of our own.
//! - [`ws`]: MQTT over WebSocket: the upgrade and the framing.
//! - [`layered`]: a connection through those layers.
//! - [`send`]: writing a connection's output with vectored, non-blocking sends.
//! - [`park`]: idle connections wait in epoll, without a task.
//! - [`linger`]: closing a socket without a reset destroying its last bytes.
//!
//! A plain MQTT connection carries no transport state at all ([`Transport::Plain`]): its bytes
//! go to the core as read and leave from the core's buffers, as before any of this existed.

pub mod detect;
pub mod layered;
pub mod linger;
pub mod park;
pub mod proxy;
pub mod send;
pub mod tls;
pub mod ws;

use std::io::IoSlice;
use std::sync::Arc;

use ironsight_config::objects::{Endpoint, Transports};
use ironsight_config::Config;
use ironsight_core::outbuf::OutBuf;

use layered::{Layered, Learnt, Next};
use tls::certificate::RevocationKey;
use tls::context::{TlsContext, TlsContexts};

/// Bytes a connection may carry from one read to the next (a partial TLS handshake, record or
/// PROXY header); the shard's read buffer has room for them in front of a read.
pub const CARRY_MAX: usize = tls::HANDSHAKE_BYTES_MAX;
const _: () = assert!(tls::records::RECORD_MAX <= CARRY_MAX);

/// What one endpoint accepts, as the connections of a shard need it.
#[derive(Clone)]
pub struct EndpointTransport {
    pub transports: Transports,
    /// Every connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// The endpoint's MaxMessageSize, which also bounds a WebSocket frame.
    pub frame_max: u32,
    /// The security profile's TLS context, when the endpoint accepts TLS.
    pub tls: Option<Arc<TlsContext>>,
}

/// Where a transport's results go: the core of the connection's shard.
pub trait Upward {
    /// What the transport learnt of the peer; called once, before the first MQTT byte.
    fn identify(&mut self, learnt: Learnt);
    fn deliver(&mut self, mqtt: &[u8]);
}

/// Why a transport ends a connection. Whatever tells the peer why (an HTTP error, a close
/// frame, a TLS alert) was queued already.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Ws(#[from] ws::WsError),
    #[error("{0} is not accepted on this endpoint")]
    NotAccepted(&'static str),
}

impl EndpointTransport {
    /// The transports of every enabled endpoint, by endpoint number, with their TLS contexts.
    pub fn all(config: &Config, contexts: &TlsContexts) -> Vec<EndpointTransport> {
        config
            .enabled()
            .map(|(_, e)| EndpointTransport::of(e, contexts))
            .collect()
    }

    /// What the endpoint `e` accepts, with the TLS context of its security profile.
    pub fn of(e: &Endpoint, contexts: &TlsContexts) -> EndpointTransport {
        EndpointTransport {
            transports: e.transports,
            proxy_protocol: e.proxy_protocol,
            frame_max: u32::try_from(e.max_message_size).expect("checked at most 256MB"),
            tls: contexts.get(&e.security_profile).cloned(),
        }
    }
}

impl TransportError {
    /// Whether the peer simply ended the session (as opposed to breaking a rule).
    pub fn peer_closed(&self) -> bool {
        matches!(
            self,
            TransportError::Tls(tls::TlsError::PeerClosed)
                | TransportError::Ws(ws::WsError::Closed(_))
        )
    }
}

/// A connection's transport state.
pub enum Transport {
    /// MQTT straight on the socket: bytes go to the core as read, and out of it as encoded.
    Plain,
    /// Anything else (still detecting, TLS, WebSocket): boxed, so a plain connection stays small.
    Layered(Box<Layered>),
}

impl Transport {
    /// The transport of a connection accepted on `ep`: plain when the endpoint accepts nothing
    /// but plain MQTT, otherwise one that first looks at what the client sends.
    pub fn accept(ep: &EndpointTransport) -> Transport {
        let plain_only = ep.transports
            == Transports {
                mqtt: true,
                ..Transports::default()
            };
        if plain_only && !ep.proxy_protocol {
            Transport::Plain
        } else {
            Transport::Layered(Box::default())
        }
    }

    /// Bytes from an earlier read that go in front of the next one.
    pub fn carried(&self) -> &[u8] {
        match self {
            Transport::Plain => &[],
            Transport::Layered(l) => l.carried(),
        }
    }

    /// Processes what was read (after the carried bytes), passing MQTT bytes up.
    pub fn read(
        &mut self,
        data: &mut [u8],
        ep: &EndpointTransport,
        up: &mut dyn Upward,
    ) -> Result<(), TransportError> {
        match self {
            Transport::Plain => up.deliver(data),
            Transport::Layered(l) => {
                if let Next::Plain = l.read(data, ep, up)? {
                    *self = Transport::Plain;
                }
            }
        }
        Ok(())
    }

    /// Makes the next bytes to write ready (seals a batch of TLS records, starts a frame).
    pub fn prepare(&mut self, out: &mut OutBuf) -> Result<(), TransportError> {
        match self {
            Transport::Plain => Ok(()),
            Transport::Layered(l) => l.prepare(out),
        }
    }

    /// Whether anything is left to write: the core's output or the transport's own.
    pub fn has_output(&self, out: &OutBuf) -> bool {
        match self {
            Transport::Plain => !out.is_empty(),
            Transport::Layered(l) => l.has_output(out),
        }
    }

    /// Fills `slices` with the bytes to write next, oldest first; returns how many it used.
    pub fn io_slices<'a>(&'a self, out: &'a OutBuf, slices: &mut [IoSlice<'a>]) -> usize {
        match self {
            Transport::Plain => out.io_slices(slices),
            Transport::Layered(l) => l.io_slices(out, slices),
        }
    }

    /// `n` bytes of those [`Transport::io_slices`] gave were written.
    pub fn advance(&mut self, out: &mut OutBuf, n: usize) {
        match self {
            Transport::Plain => out.advance(n),
            Transport::Layered(l) => l.advance(out, n),
        }
    }

    /// Whether the transport has bytes of its own to write (a handshake flight, a pong).
    pub fn has_pending(&self) -> bool {
        match self {
            Transport::Plain => false,
            Transport::Layered(l) => l.has_pending(),
        }
    }

    /// Queues what a closing connection says last at the transport level (a WebSocket close
    /// frame, a TLS close_notify). Returns whether there is anything to write.
    pub fn goodbye(&mut self) -> bool {
        match self {
            Transport::Plain => false,
            Transport::Layered(l) => {
                l.goodbye();
                l.has_pending()
            }
        }
    }

    /// Frees what an idle connection does not need (cipher contexts, empty buffers).
    pub fn release_buffers(&mut self) {
        if let Transport::Layered(l) = self {
            l.release_buffers();
        }
    }

    /// The client certificate, as a revocation list names it.
    pub fn revocation(&self) -> Option<&RevocationKey> {
        match self {
            Transport::Plain => None,
            Transport::Layered(l) => l.revocation(),
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every idle connection pays for its transport state; a field added carelessly here is
    /// paid a million times. A plain connection's transport is one word; a layered one is a
    /// small box (128 bytes), plus a WebSocket's framing state or a TLS session's keys (no
    /// cipher contexts while idle) in boxes of their own. Raise these bounds knowingly.
    #[test]
    fn per_connection_transport_state_stays_small() {
        use std::mem::size_of;
        assert_eq!(size_of::<super::Transport>(), 8);
        assert!(
            size_of::<super::layered::Layered>() <= 352,
            "{}",
            size_of::<super::layered::Layered>()
        );
        assert!(size_of::<super::tls::records::Records>() <= 232);
        assert!(size_of::<super::ws::WebSocket>() <= 128);
    }
}
