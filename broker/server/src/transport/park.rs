//! Parking idle connections, so that an idle client costs only its core state.
//!
//! An active connection has a glommio task with a pending io_uring poll, about 800 bytes of
//! memory. A connection idle for a while gives both up: its socket goes into this shard's epoll
//! set (kernel memory, one-shot), and a small relay thread waits on that set and passes the
//! tokens of sockets that became readable back to the shard over a socketpair. The shard then
//! starts a task for the connection again. The relay touches no broker state.

use std::io::{self, Write};
use std::os::fd::{BorrowedFd, FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::Arc;

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Identifies a parked connection: its id and generation, so a stale token is recognised.
pub type Token = u64;

pub fn token(conn: u32, generation: u32) -> Token {
    u64::from(conn) | (u64::from(generation) << 32)
}

pub fn untoken(token: Token) -> (u32, u32) {
    (token as u32, (token >> 32) as u32)
}

pub struct Parking {
    epoll: Arc<Epoll>,
}

/// Events one epoll_wait returns at most; more simply wait for the next round.
const EVENTS_PER_WAIT: usize = 1024;

fn flags() -> EpollFlags {
    EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLONESHOT
}

impl Parking {
    /// Creates the epoll set and its relay thread; returns the shard's end of the token stream.
    pub fn start(shard: usize) -> io::Result<(Parking, glommio::net::UnixStream)> {
        let epoll = Arc::new(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?);
        let (relay_end, shard_end) = StdUnixStream::pair()?;
        let relay_epoll = epoll.clone();
        std::thread::Builder::new()
            .name(format!("ironsight-park-{shard}"))
            .spawn(move || relay(&relay_epoll, relay_end))?;
        shard_end.set_nonblocking(true)?;
        // SAFETY: the fd was just taken from a live, owned std socket.
        let stream = unsafe { glommio::net::UnixStream::from_raw_fd(shard_end.into_raw_fd()) };
        Ok((Parking { epoll }, stream))
    }

    /// Watches `fd` until it becomes readable (or hangs up), once. `registered` says whether the
    /// fd is already in the set from an earlier parking.
    pub fn park(&self, fd: BorrowedFd<'_>, token: Token, registered: bool) -> io::Result<()> {
        let mut event = EpollEvent::new(flags(), token);
        if registered {
            self.epoll.modify(fd, &mut event)?;
        } else {
            self.epoll.add(fd, event)?;
        }
        Ok(())
    }

    /// Stops watching `fd` (its connection is active again).
    pub fn unwatch(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.epoll.delete(fd)?;
        Ok(())
    }
}

/// The relay: forwards ready tokens to the shard until the shard's end closes.
fn relay(epoll: &Epoll, mut to_shard: StdUnixStream) {
    let mut events = vec![EpollEvent::empty(); EVENTS_PER_WAIT];
    let mut tokens = Vec::with_capacity(EVENTS_PER_WAIT * 8);
    loop {
        let ready = match epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(error) => {
                tracing::error!(%error, "epoll_wait failed; parked connections stop waking");
                return;
            }
        };
        tokens.clear();
        for event in &events[..ready] {
            tokens.extend_from_slice(&event.data().to_le_bytes());
        }
        if to_shard.write_all(&tokens).is_err() {
            return; // the shard is gone
        }
    }
}

/// Splits the token stream into tokens, keeping a partial one for the next read.
#[derive(Default)]
pub struct TokenReader {
    partial: Vec<u8>,
}

impl TokenReader {
    pub fn feed(&mut self, bytes: &[u8], mut each: impl FnMut(Token)) {
        self.partial.extend_from_slice(bytes);
        let whole = self.partial.len() / 8 * 8;
        for chunk in self.partial[..whole].chunks_exact(8) {
            each(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        self.partial.drain(..whole);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        assert_eq!(untoken(token(7, u32::MAX)), (7, u32::MAX));
    }

    #[test]
    fn token_reader_handles_split_tokens() {
        let bytes: Vec<u8> = [token(1, 2), token(3, 4)]
            .iter()
            .flat_map(|t| t.to_le_bytes())
            .collect();
        let mut reader = TokenReader::default();
        let mut seen = Vec::new();
        reader.feed(&bytes[..5], |t| seen.push(t));
        assert!(seen.is_empty());
        reader.feed(&bytes[5..12], |t| seen.push(t));
        reader.feed(&bytes[12..], |t| seen.push(t));
        assert_eq!(seen, [token(1, 2), token(3, 4)]);
    }

    #[test]
    fn a_parked_socket_wakes_the_relay() {
        let (parking, mut from_relay) = {
            // Build the parts without glommio: epoll plus a std socketpair, as `start` does.
            let epoll = Arc::new(Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).unwrap());
            let (relay_end, shard_end) = StdUnixStream::pair().unwrap();
            let relay_epoll = epoll.clone();
            std::thread::spawn(move || relay(&relay_epoll, relay_end));
            (Parking { epoll }, shard_end)
        };
        use std::os::fd::AsFd;
        let (mut a, b) = StdUnixStream::pair().unwrap();
        parking.park(b.as_fd(), token(5, 9), false).unwrap();
        a.write_all(b"x").unwrap();
        let mut buf = [0u8; 8];
        std::io::Read::read_exact(&mut from_relay, &mut buf).unwrap();
        assert_eq!(u64::from_le_bytes(buf), token(5, 9));
    }
}
