//! Writing a connection's output with one vectored, non-blocking send.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use ironsight_core::outbuf::OutBuf;
use nix::sys::socket::{sendmsg, MsgFlags, SockaddrStorage};

use super::Transport;

/// Slices one send may carry; the rest goes in the next.
const SLICES_PER_SEND: usize = 64;

pub enum Sent {
    /// Everything buffered was written.
    All,
    /// Everything that may go now was written; the rest waits for the journal, whose report
    /// lists the connection for the flusher again (`ironsight_core::outbuf`).
    Held,
    /// The socket is full: wait until it is writable.
    Blocked,
}

/// Writes as much of `out` (through its transport) as the socket takes now, adding the bytes
/// the socket took to `sent_bytes`.
pub fn send_all(
    fd: RawFd,
    transport: &mut Transport,
    out: &mut OutBuf,
    sent_bytes: &mut usize,
) -> io::Result<Sent> {
    let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL;
    loop {
        // A transport that cannot seal (a TLS 1.2 key at its limit) ends the connection.
        transport
            .prepare(out)
            .map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e))?;
        if !transport.has_output(out) {
            return Ok(if out.is_held() { Sent::Held } else { Sent::All });
        }
        let result = {
            let mut slices = [IoSlice::new(&[]); SLICES_PER_SEND];
            let n = transport.io_slices(out, &mut slices);
            sendmsg::<SockaddrStorage>(fd, &slices[..n], &[], flags, None)
        };
        match result {
            Ok(written) => {
                *sent_bytes += written;
                transport.advance(out, written)
            }
            Err(nix::errno::Errno::EAGAIN) => return Ok(Sent::Blocked),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}
