//! Readiness for systemd (`Type=notify` in systemd/ironsight.service): once every shard
//! accepts, the broker sends `READY=1` to the socket systemd names in `NOTIFY_SOCKET`, so that
//! units ordered after it (and `systemctl start`) wait for a broker that answers, not for a
//! process that has only begun recovering its store. The protocol is one datagram on a Unix
//! socket (sd_notify(3)); it needs no library. Without `NOTIFY_SOCKET` (not under systemd)
//! nothing is sent.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Tells systemd the broker is ready, with a status line `systemctl status` shows. A failure
/// is returned for the caller to log: the broker serves either way, and systemd reports the
/// missing notification itself (the start times out).
pub fn ready(status: &str) -> io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(socket) => send(&socket.to_string_lossy(), &ready_state(status)),
        None => Ok(()),
    }
}

fn ready_state(status: &str) -> String {
    format!("READY=1\nSTATUS={status}\n")
}

/// Sends `state` to the notification socket `path`.
fn send(path: &str, state: &str) -> io::Result<()> {
    // "@name" is a socket in the abstract namespace, written with a leading NUL.
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(path)?,
    };
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the datagram reaches a socket named by path, and an abstract one, whole.
    #[test]
    fn ready_reaches_the_notify_socket() {
        let path = std::env::temp_dir().join(format!("ironsight-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let abstract_name = format!("ironsight-notify-test-{}", std::process::id());
        let abstract_listener =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&abstract_name).unwrap())
                .unwrap();
        let mut buf = [0u8; 256];
        for (target, socket) in [
            (path.to_string_lossy().into_owned(), &listener),
            (format!("@{abstract_name}"), &abstract_listener),
        ] {
            send(&target, &ready_state("ready: 2 shards")).unwrap();
            let n = socket.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"READY=1\nSTATUS=ready: 2 shards\n", "{target}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
