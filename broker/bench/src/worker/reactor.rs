//! The only I/O of a worker: one epoll instance, non-blocking sockets, raw reads into
//! `BytesMut` and writes until the socket pushes back.
//!
//! Why a hand-written epoll loop and not glommio (which the broker uses): a load generator's
//! cost is per *idle* connection. A worker must hold 19,000 connections on a 2-core machine
//! next to the broker, and with io_uring every idle connection keeps a receive (and its buffer)
//! posted, or needs the broker's own "park in epoll" trick. With epoll an idle connection is a
//! file descriptor, a level-triggered registration and a ~200-byte [`super::conn::Conn`]; bytes
//! are read into one shared scratch buffer and only a partial frame is ever kept per connection.
//! One thread per worker process, and `--procs` for more cores, keeps the loop free of locks.

use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use bytes::{Buf, BytesMut};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Events handled per epoll_wait.
pub const EVENTS_MAX: usize = 1024;
/// Token of the parent's command pipe (stdin); connection tokens are their index.
pub const STDIN_TOKEN: u64 = u64::MAX;

/// Readiness of one descriptor.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    /// Error or hang-up: read to find out (EOF or an error).
    pub error: bool,
}

pub struct Reactor {
    epoll: Epoll,
    events: Vec<EpollEvent>,
}

fn flags(write: bool) -> EpollFlags {
    let mut f = EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
    if write {
        f |= EpollFlags::EPOLLOUT;
    }
    f
}

impl Reactor {
    pub fn new() -> io::Result<Reactor> {
        Ok(Reactor {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            events: vec![EpollEvent::empty(); EVENTS_MAX],
        })
    }

    /// Level-triggered registration: readable always, writable when `write`.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64, write: bool) -> io::Result<()> {
        Ok(self.epoll.add(fd, EpollEvent::new(flags(write), token))?)
    }

    pub fn modify(&self, fd: BorrowedFd<'_>, token: u64, write: bool) -> io::Result<()> {
        let mut event = EpollEvent::new(flags(write), token);
        Ok(self.epoll.modify(fd, &mut event)?)
    }

    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(self.epoll.delete(fd)?)
    }

    /// Waits at most `timeout_ms` and returns what is ready.
    pub fn wait(&mut self, timeout_ms: u16) -> io::Result<Vec<Ready>> {
        let n = match self
            .epoll
            .wait(&mut self.events, EpollTimeout::from(timeout_ms))
        {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(self.events[..n]
            .iter()
            .map(|e| {
                let f = e.events();
                Ready {
                    token: e.data(),
                    readable: f.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP),
                    writable: f.contains(EpollFlags::EPOLLOUT),
                    error: f.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP),
                }
            })
            .collect())
    }
}

/// Starts a non-blocking connect to `target`, bound first to `source` (any port, chosen at
/// connect time thanks to IP_BIND_ADDRESS_NO_PORT, so ports are shared across destinations).
pub fn connect(target: SocketAddr, source: Option<IpAddr>) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_nodelay(true)?;
    if let Some(source) = source {
        set_bind_address_no_port(&socket)?;
        socket.bind(&SockAddr::from(SocketAddr::new(source, 0)))?;
    }
    match socket.connect(&SockAddr::from(target)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(socket.into())
}

fn set_bind_address_no_port(socket: &Socket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket, a pointer to a live c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads at most `chunk` bytes appended to `buf`, without zeroing the spare capacity first.
/// `Ok(0)` is end of stream.
pub fn read_into(fd: impl AsFd, buf: &mut BytesMut, chunk: usize) -> io::Result<usize> {
    buf.reserve(chunk);
    let spare = buf.spare_capacity_mut();
    let len = spare.len().min(chunk);
    // SAFETY: `spare` is writable memory of at least `len` bytes owned by `buf`; read() writes
    // at most `len` bytes into it and returns how many.
    let n = unsafe { libc::read(fd.as_fd().as_raw_fd(), spare.as_mut_ptr().cast(), len) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    assert!(n <= len);
    // SAFETY: read() initialized the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Writes while `step` has something to write (`Some`), until it has not (`Ok(true)`) or the
/// socket pushes back (`Ok(false)`).
pub fn write_until_blocked(
    mut step: impl FnMut() -> Option<io::Result<usize>>,
) -> io::Result<bool> {
    while let Some(written) = step() {
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes what the socket takes of `buf`, dropping it from the front. `Ok(true)`: all of it.
pub fn write_buf(mut sock: &TcpStream, buf: &mut BytesMut) -> io::Result<bool> {
    write_until_blocked(|| {
        (!buf.is_empty()).then(|| {
            let n = sock.write(buf)?;
            buf.advance(n);
            Ok(n)
        })
    })
}

/// Sets O_NONBLOCK on a descriptor (the stdin pipe).
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Proves a non-blocking connect completes through the reactor, a source address can be
    /// bound with IP_BIND_ADDRESS_NO_PORT, and reads land in the buffer.
    #[test]
    fn connect_and_read() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = listener.local_addr().unwrap();
        let stream = connect(target, Some("127.0.0.2".parse().unwrap())).unwrap();
        let mut reactor = Reactor::new().unwrap();
        reactor.add(stream.as_fd(), 7, true).unwrap();
        let (mut server, peer) = listener.accept().unwrap();
        assert_eq!(peer.ip(), "127.0.0.2".parse::<IpAddr>().unwrap());
        let ready = reactor.wait(1000).unwrap();
        assert!(ready.iter().any(|r| r.token == 7 && r.writable));
        server.write_all(b"hello").unwrap();
        reactor.modify(stream.as_fd(), 7, false).unwrap();
        let ready = reactor.wait(1000).unwrap();
        assert!(ready.iter().any(|r| r.token == 7 && r.readable));
        let mut buf = BytesMut::new();
        assert_eq!(read_into(&stream, &mut buf, 64).unwrap(), 5);
        assert_eq!(&buf[..], b"hello");
        drop(server);
        assert_eq!(read_into(&stream, &mut buf, 64).unwrap(), 0);
        reactor.delete(stream.as_fd()).unwrap();
    }
}
