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

/// SO_REUSEPORT lets any process of the same user bind a listening port too, and the kernel
/// would then spread connections over both: a second broker started by mistake must fail
/// instead. The kernel's listening sockets are in /proc/net/tcp and tcp6 (state 0A); one on our
/// port, on our address or a wildcard, belongs to someone else, since we have not bound yet.
///
/// A broker that just exited can leave its listener for a moment: io_uring tears down its
/// pending operations after the process is gone, and they hold the socket. So a listener is
/// given `LINGER` to disappear before the start is refused (a quick restart then works).
fn refuse_if_listened(addr: SocketAddr) -> io::Result<()> {
    const LINGER: std::time::Duration = std::time::Duration::from_secs(3);
    if addr.port() == 0 {
        return Ok(()); // the kernel picks a free port
    }
    let started = std::time::Instant::now();
    while port_listened(addr) {
        if started.elapsed() >= LINGER {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process listens on this port",
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(())
}

fn port_listened(addr: SocketAddr) -> bool {
    use std::io::BufRead;
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        // Line by line: with many connections in TIME_WAIT the table runs to megabytes, and
        // reading it whole left that much resident in an idle broker.
        std::fs::File::open(table).is_ok_and(|file| {
            std::io::BufReader::new(file)
                .lines()
                .skip(1)
                .map_while(Result::ok)
                .any(|line| listens_on(&line, addr))
        })
    })
}

/// Whether one line of /proc/net/tcp{,6} is a listening socket that overlaps `addr`.
fn listens_on(line: &str, addr: SocketAddr) -> bool {
    let mut fields = line.split_whitespace();
    let (Some(local), Some(_remote), Some(state)) = (fields.nth(1), fields.next(), fields.next())
    else {
        return false;
    };
    let Some((ip_hex, port_hex)) = local.split_once(':') else {
        return false;
    };
    if state != "0A" || u16::from_str_radix(port_hex, 16) != Ok(addr.port()) {
        return false;
    }
    // Addresses are written as 32-bit words in host order: all zeros is the wildcard.
    let wildcard = ip_hex.bytes().all(|b| b == b'0');
    let ours = match addr.ip() {
        std::net::IpAddr::V4(v4) => {
            ip_hex.len() == 8
                && u32::from_str_radix(ip_hex, 16) == Ok(u32::from_ne_bytes(v4.octets()))
        }
        std::net::IpAddr::V6(_) => false,
    };
    wildcard || ours || addr.ip().is_unspecified()
}

/// `Interface: All` listens on `[::]`, which takes IPv4 clients too; a machine whose kernel
/// has IPv6 disabled gets `0.0.0.0` instead.
fn dual_stack_or_ipv4(addr: SocketAddr) -> SocketAddr {
    if addr.ip() != std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) {
        return addr;
    }
    match Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)) {
        Ok(_) => addr,
        Err(error) => {
            tracing::warn!(%error, "no IPv6 on this machine; listening on IPv4 only");
            SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), addr.port())
        }
    }
}

fn context(spec: &Listener) -> impl Fn(io::Error) -> io::Error + Copy + '_ {
    |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("endpoint {} on {}: {e}", spec.name, spec.addr),
        )
    }
}

/// Binds a socket per shard for `spec`, refusing a port some other process listens on.
pub fn bind(spec: &Listener, shards: usize) -> io::Result<BoundListener> {
    refuse_if_listened(spec.addr).map_err(context(spec))?;
    bind_beside_own(spec, shards)
}

/// Binds a socket per shard for `spec` on a port this broker already listens on (an endpoint
/// moving to another interface of its port, or taking the port of one being removed, while the
/// broker runs): the check for another process would find this one. Its old sockets close once
/// the shards take up the new ones.
pub fn bind_beside_own(spec: &Listener, shards: usize) -> io::Result<BoundListener> {
    let context = context(spec);
    let mut addr = dual_stack_or_ipv4(spec.addr);
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
    fn proc_net_tcp_lines_are_read() {
        let addr: SocketAddr = "127.0.0.1:1883".parse().unwrap();
        // sl local_address rem_address st ...: 127.0.0.1:1883 listening, then 0.0.0.0:1883.
        assert!(listens_on(
            "  0: 0100007F:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000",
            addr
        ));
        assert!(listens_on(
            "  1: 00000000:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000",
            addr
        ));
        assert!(
            !listens_on(
                "  2: 0100007F:075B 0100007F:C000 01 00000000:00000000 00:00000000 00000000",
                addr
            ),
            "established"
        );
        assert!(
            !listens_on(
                "  3: 0100007F:075C 00000000:0000 0A 00000000:00000000 00:00000000 00000000",
                addr
            ),
            "other port"
        );
        assert!(
            !listens_on(
                "  4: 0200007F:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000",
                addr
            ),
            "127.0.0.2"
        );
    }

    /// Proves `Interface: All` takes IPv6 and IPv4 clients on one port.
    #[test]
    fn all_interfaces_take_ipv4_and_ipv6() {
        let spec = Listener {
            endpoint: 0,
            name: "All".into(),
            addr: "[::]:0".parse().unwrap(),
        };
        let bound = bind(&spec, 1).unwrap();
        let port = bound.addr.port();
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("IPv4 client");
        if std::net::TcpStream::connect(("::1", port)).is_err() {
            assert!(
                bound.addr.is_ipv4(),
                "IPv6 is available, so the listener must take it"
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
