//! A shard's listening sockets and their accept loops: one per address an endpoint listens on
//! ([`ListenerGroup`]), opened when a generation of the configuration asks for them and
//! closed when one no longer does (an endpoint disabled, removed or moved) or the broker
//! stops. Closing shuts the socket down, which ends its pending accept; the port is free at
//! once and the kernel refuses new connections to it.

use std::cell::Cell;
use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::net::TcpListener;

use crate::live_config::generation::ListenerGroup;
use crate::shard_io::ShardIo;

/// The sockets one shard accepts on, by the group each belongs to.
pub struct Listening {
    shard: usize,
    open: HashMap<u64, Accepting>,
}

struct Accepting {
    fd: RawFd,
    /// Set when the socket closes: its accept loop ends instead of warning about the error
    /// the shutdown gives it.
    closed: Rc<Cell<bool>>,
}

impl Listening {
    pub fn new(shard: usize) -> Listening {
        Listening {
            shard,
            open: HashMap::new(),
        }
    }

    /// Closes the sockets of groups not in `wanted`.
    pub fn close_unwanted(&mut self, wanted: &[Arc<ListenerGroup>]) {
        let unwanted: Vec<u64> = self
            .open
            .keys()
            .filter(|id| !wanted.iter().any(|g| g.id == **id))
            .copied()
            .collect();
        for id in unwanted {
            let accepting = self.open.remove(&id).expect("listed above");
            accepting.close();
        }
    }

    /// Starts accepting on this shard's socket of each group in `wanted` it does not have yet.
    pub fn open_wanted(&mut self, io: &Rc<ShardIo>, wanted: &[Arc<ListenerGroup>]) {
        for group in wanted {
            if self.open.contains_key(&group.id) {
                continue;
            }
            let Some(fd) = group.take(self.shard) else {
                continue; // taken before: this shard accepted on it and closed it
            };
            let raw = fd.as_raw_fd();
            // SAFETY: the listening socket's fd moves into glommio's listener, once.
            let listener = unsafe { TcpListener::from_raw_fd(fd.into_raw_fd()) };
            let closed = Rc::new(Cell::new(false));
            let task = accept_loop(io.clone(), listener, group.endpoint, closed.clone());
            glommio::spawn_local(task).detach();
            self.open.insert(group.id, Accepting { fd: raw, closed });
        }
    }

    /// Stops accepting everywhere: the broker stops.
    pub fn close_all(&mut self) {
        for (_, accepting) in self.open.drain() {
            accepting.close();
        }
    }
}

impl Accepting {
    fn close(self) {
        self.closed.set(true);
        // SAFETY: shutdown on a listening socket this shard still owns (its accept loop holds
        // it until it sees `closed`). io_uring would otherwise keep the socket listening for a
        // moment after its last fd is gone.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
    }
}

async fn accept_loop(
    io: Rc<ShardIo>,
    listener: TcpListener,
    endpoint: u16,
    closed: Rc<Cell<bool>>,
) {
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = listener.accept().await;
        if closed.get() {
            return; // dropping the listener closes its socket; a stream accepted last is dropped
        }
        match accepted {
            Ok(stream) => io.accepted(endpoint, stream),
            Err(error) => {
                // Out of file descriptors, typically: say so once a second, and let the
                // backlog wait rather than spin.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(%error, "accept failed");
                    last_warning = Some(Instant::now());
                }
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
