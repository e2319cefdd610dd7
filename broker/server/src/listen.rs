//! Listening sockets: one per endpoint address per shard, all bound with `SO_REUSEPORT` so the
//! kernel spreads new connections over the shards. They are created before any shard starts, so
//! a busy port fails the start with a clear error, and a port 0 is resolved once and shared.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use ironsight_config::Listener;
use socket2::{Domain, Protocol, Socket, Type};

/// How many connections may wait for `accept`; the kernel caps it at `net.core.somaxconn`.
pub const BACKLOG: i32 = 65535;

/// A listener's sockets, one per shard, and the address they are bound to.
pub struct BoundListener {
    pub spec: Listener,
    pub addr: SocketAddr,
    pub per_shard: Vec<OwnedFd>,
}

fn socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Inherited by accepted sockets: small MQTT packets must not wait for Nagle.
    socket.set_nodelay(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    Ok(socket)
}

/// SO_REUSEPORT lets any process of the same user bind the port too, and the kernel would then
/// spread connections over both: a second broker started by mistake must fail instead. So the
/// port is first bound once without SO_REUSEPORT, which fails while anyone holds it; the probe
/// is closed again before the shards bind. It also resolves a port 0.
fn claim(addr: SocketAddr) -> io::Result<SocketAddr> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    if addr.is_ipv6() {
        probe.set_only_v6(false)?;
    }
    probe.bind(&addr.into())?;
    Ok(probe.local_addr()?.as_socket().expect("an inet socket"))
}

pub fn bind(spec: &Listener, shards: usize) -> io::Result<BoundListener> {
    let context = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("endpoint {} on {}: {e}", spec.name, spec.addr),
        )
    };
    let mut addr = claim(spec.addr).map_err(context)?;
    let mut per_shard = Vec::with_capacity(shards);
    for _ in 0..shards {
        let socket = socket(addr).map_err(context)?;
        socket.bind(&addr.into()).map_err(context)?;
        socket.listen(BACKLOG).map_err(context)?;
        addr = socket
            .local_addr()
            .map_err(context)?
            .as_socket()
            .expect("an inet socket");
        per_shard.push(socket.into());
    }
    Ok(BoundListener {
        spec: spec.clone(),
        addr,
        per_shard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_shared_by_every_shard() {
        let spec = Listener {
            endpoint: 0,
            name: "t".into(),
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let bound = bind(&spec, 3).unwrap();
        assert_ne!(bound.addr.port(), 0);
        assert_eq!(bound.per_shard.len(), 3);
        for fd in &bound.per_shard {
            let socket = socket2::SockRef::from(fd);
            assert_eq!(
                socket.local_addr().unwrap().as_socket().unwrap(),
                bound.addr
            );
        }
    }

    #[test]
    fn a_second_broker_cannot_share_the_port() {
        let spec = Listener {
            endpoint: 0,
            name: "First".into(),
            addr: "127.0.0.1:0".parse().unwrap(),
        };
        let first = bind(&spec, 2).unwrap();
        let again = Listener {
            name: "Second".into(),
            addr: first.addr,
            ..spec
        };
        let error = bind(&again, 2)
            .err()
            .expect("SO_REUSEPORT must not let a second broker in");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
    }

    #[test]
    fn a_busy_port_names_the_endpoint() {
        let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let spec = Listener {
            endpoint: 0,
            name: "Busy".into(),
            addr: holder.local_addr().unwrap(),
        };
        let error = bind(&spec, 1)
            .err()
            .expect("the port is taken without SO_REUSEPORT");
        assert!(
            error.to_string().starts_with("endpoint Busy on 127.0.0.1:"),
            "{error}"
        );
    }
}
