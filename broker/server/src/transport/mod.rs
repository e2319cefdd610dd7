//! Transports: everything between a connection's socket and the core's MQTT bytes.
//!
//! Every read, write, park, handoff and close of a connection goes through its [`Transport`],
//! so that a connection over TLS or WebSocket is parked, handed to another shard, flushed with
//! vectored writes and lingered exactly like a plain one. The core sees MQTT bytes only, and the
//! identity facts a transport establishes (`ironsight_core::conn::Identity`).
//!
//! # Layout
//! - [`send`]: writing a connection's output with vectored, non-blocking sends.
//! - [`park`]: idle connections wait in epoll, without a task.
//! - [`linger`]: closing a socket without a reset destroying its last bytes.

pub mod linger;
pub mod park;
pub mod send;

use std::io::IoSlice;

use ironsight_core::outbuf::OutBuf;

/// A connection's transport state. A plain MQTT connection carries none.
pub enum Transport {
    /// MQTT straight on the socket: bytes go to the core as read, and out of it as encoded.
    Plain,
}

impl Transport {
    /// Makes the next bytes to write ready; nothing for a plain connection.
    pub fn prepare(&mut self, _out: &mut OutBuf) {}

    /// Whether anything is left to write: the core's output or the transport's own.
    pub fn has_output(&self, out: &OutBuf) -> bool {
        !out.is_empty()
    }

    /// Fills `slices` with the bytes to write next, oldest first; returns how many it used.
    pub fn io_slices<'a>(&'a self, out: &'a OutBuf, slices: &mut [IoSlice<'a>]) -> usize {
        out.io_slices(slices)
    }

    /// `n` bytes of those [`Transport::io_slices`] gave were written.
    pub fn advance(&mut self, out: &mut OutBuf, n: usize) {
        out.advance(n);
    }
}
