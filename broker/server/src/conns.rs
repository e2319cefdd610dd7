//! The shard's connection table: for every connection the core knows, its socket and the state
//! of its transport, indexed like the core's connections.
//!
//! Ownership of a connection's socket: while the connection is *active*, its glommio task owns
//! the `TcpStream` and the table keeps only the raw fd (for vectored sends and shutdown); while
//! it is *parked*, the table owns the fd and the epoll set watches it. So a connection holds one
//! file descriptor at all times, which matters under a per-process fd limit.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::task::Waker;

use ironsight_core::conn::ConnId;

use crate::transport::Transport;

pub enum Socket {
    /// The connection's task owns the stream; this is its fd number.
    Active { fd: RawFd, waker: Option<Waker> },
    /// No task: the fd waits in the epoll set.
    Parked { fd: OwnedFd },
}

pub struct ConnIo {
    pub generation: u32,
    /// The endpoint the connection arrived on: its transports and their settings.
    pub endpoint: u16,
    pub socket: Socket,
    pub transport: Transport,
    /// The socket took less than was written; the connection's task waits until it drains.
    pub write_blocked: bool,
    pub park_requested: bool,
    /// When (on the shard's clock) a closing connection started waiting for its last bytes.
    pub closing_since_s: Option<u32>,
    /// Bytes read from and written to its socket, for monitoring.
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl ConnIo {
    pub fn new(generation: u32, endpoint: u16, fd: RawFd, transport: Transport) -> ConnIo {
        ConnIo {
            generation,
            endpoint,
            socket: Socket::Active { fd, waker: None },
            transport,
            write_blocked: false,
            park_requested: false,
            closing_since_s: None,
            bytes_read: 0,
            bytes_written: 0,
        }
    }

    pub fn fd(&self) -> RawFd {
        match &self.socket {
            Socket::Active { fd, .. } => *fd,
            Socket::Parked { fd } => fd.as_raw_fd(),
        }
    }

    pub fn is_parked(&self) -> bool {
        matches!(self.socket, Socket::Parked { .. })
    }

    /// Wakes the connection's task, if it has one.
    pub fn wake(&self) {
        if let Socket::Active {
            waker: Some(waker), ..
        } = &self.socket
        {
            waker.wake_by_ref();
        }
    }
}

/// Connections by id; a slot is empty once the connection closed or moved to another shard.
#[derive(Default)]
pub struct ConnTable {
    slots: Vec<Option<ConnIo>>,
    /// Bytes read and written on each endpoint's sockets, closed ones included, by endpoint
    /// number: plain counters, read by the shard's tick for its snapshot.
    traffic: Vec<Traffic>,
}

/// Bytes on an endpoint's sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub read: u64,
    pub written: u64,
}

impl ConnTable {
    /// The connection `conn`, if it is still the one of this `generation`.
    pub fn get(&mut self, conn: ConnId, generation: u32) -> Option<&mut ConnIo> {
        self.any(conn).filter(|c| c.generation == generation)
    }

    /// The connection in slot `conn`, whatever its generation.
    pub fn any(&mut self, conn: ConnId) -> Option<&mut ConnIo> {
        self.slots.get_mut(conn as usize)?.as_mut()
    }

    pub fn insert(&mut self, conn: ConnId, io: ConnIo) {
        let at = conn as usize;
        if self.slots.len() <= at {
            self.slots.resize_with(at + 1, || None);
        }
        assert!(
            self.slots[at].is_none(),
            "connection slot {conn} is still in use"
        );
        self.slots[at] = Some(io);
    }

    /// Removes the connection from the table (it closed, or moves to another shard).
    pub fn take(&mut self, conn: ConnId) -> Option<ConnIo> {
        self.slots.get_mut(conn as usize)?.take()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ConnId, &mut ConnIo)> {
        self.slots
            .iter_mut()
            .enumerate()
            .filter_map(|(i, c)| Some((i as ConnId, c.as_mut()?)))
    }

    /// `read` and `written` more bytes on `conn`'s socket.
    pub fn count(&mut self, conn: ConnId, read: usize, written: usize) {
        let Some(c) = self.any(conn) else {
            return;
        };
        c.bytes_read += read as u64;
        c.bytes_written += written as u64;
        let endpoint = usize::from(c.endpoint);
        if self.traffic.len() <= endpoint {
            self.traffic.resize(endpoint + 1, Traffic::default());
        }
        self.traffic[endpoint].read += read as u64;
        self.traffic[endpoint].written += written as u64;
    }

    /// Bytes by endpoint number.
    pub fn traffic(&self) -> &[Traffic] {
        &self.traffic
    }

    pub fn ids(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, c)| c.is_some())
            .map(|(i, _)| i as ConnId)
            .collect()
    }
}
