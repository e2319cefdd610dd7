//! Writing a connection's output with one vectored, non-blocking send.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use ironsight_core::outbuf::OutBuf;
use nix::sys::socket::{sendmsg, MsgFlags, SockaddrStorage};

/// Slices one send may carry; the rest goes in the next.
const SLICES_PER_SEND: usize = 64;

pub enum Sent {
    /// Everything buffered was written.
    All,
    /// The socket is full: wait until it is writable.
    Blocked,
}

/// Writes as much of `out` as the socket takes now.
pub fn send_all(fd: RawFd, out: &mut OutBuf) -> io::Result<Sent> {
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    while !out.is_empty() {
        let result = {
            let mut slices = [IoSlice::new(&[]); SLICES_PER_SEND];
            let n = out.io_slices(&mut slices);
            sendmsg::<SockaddrStorage>(fd, &slices[..n], &[], flags, None)
        };
        match result {
            Ok(written) => out.advance(written),
            Err(nix::errno::Errno::EAGAIN) => return Ok(Sent::Blocked),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
    Ok(Sent::All)
}
