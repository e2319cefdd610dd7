//! Closing a socket without destroying its last bytes.
//!
//! When a socket is closed while input it received was never read, Linux answers with a reset,
//! and a reset throws away whatever still waits in the send queue: a refused client would miss
//! its CONNACK reason, a misbehaving one its DISCONNECT reason, a slow one its last messages.
//! So a connection that ends with unread input, or whose peer may still be sending, first sends
//! its FIN after the queued bytes (`shutdown(SHUT_WR)`), then lingers: a small task reads and
//! discards what the peer still sends until the peer closes too, `LINGER` passes, or it has
//! discarded `LINGER_DISCARD_MAX` bytes (a peer still sending that much has stopped reading
//! what we send). The number of lingering sockets is bounded, so a flood of refused clients
//! cannot hold file descriptors beyond it.

use std::cell::Cell;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use glommio::net::TcpStream;

/// How long a closed connection may keep discarding input.
pub const LINGER: Duration = Duration::from_secs(2);
/// Sockets one shard lets linger at once; past that, a close is immediate.
pub const LINGERING_MAX: u32 = 1024;
/// Bytes one lingering socket reads and discards before it is closed anyway. A client that
/// has not yet read our last bytes has at most its socket buffers in flight, a few hundred KB
/// on Linux by default; 1 MiB covers that, and bounds the reading a shard does for sockets it
/// has finished with to `LINGERING_MAX` MiB per `LINGER`.
pub const LINGER_DISCARD_MAX: usize = 1 << 20;

/// Whether the kernel holds input for `fd` that nobody has read.
pub fn has_unread_input(fd: RawFd) -> bool {
    let mut unread: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which lives across the call.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) };
    rc == 0 && unread > 0
}

/// The shard's lingering sockets: a count, shared with their tasks.
#[derive(Clone, Default)]
pub struct Lingering(Rc<Cell<u32>>);

impl Lingering {
    /// Sends the FIN after the queued bytes and starts a task that discards input until the
    /// peer closes or `LINGER` passes. Returns the socket back when too many already linger.
    pub fn start(&self, fd: OwnedFd) -> Result<(), OwnedFd> {
        if self.0.get() >= LINGERING_MAX {
            return Err(fd);
        }
        // SAFETY: shutdown on an fd we own; an error (peer already gone) is harmless.
        unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) };
        self.0.set(self.0.get() + 1);
        let count = self.0.clone();
        // SAFETY: ownership of the fd moves into the stream, once.
        let mut stream = unsafe { TcpStream::from_raw_fd(fd.into_raw_fd()) };
        glommio::spawn_local(async move {
            let mut sink = [0u8; 2048];
            let _ = glommio::timer::timeout(LINGER, async {
                let mut discarded = 0;
                while discarded < LINGER_DISCARD_MAX {
                    match stream.read(&mut sink).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => discarded += n,
                    }
                }
                Ok(())
            })
            .await;
            count.set(count.get() - 1);
        })
        .detach();
        Ok(())
    }
}
