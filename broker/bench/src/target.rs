//! Where load may go: loopback only, so the tool can never be turned on someone else's host. The
//! one exception is a private network namespace (a container or `ip netns`), whose every address
//! is as contained as loopback is.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// Why a target was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("cannot resolve host {host:?}: {reason}")]
    Resolve { host: String, reason: String },
    #[error(
        "refusing to load {addr}: only loopback targets (127.0.0.0/8, ::1) are allowed outside a \
         private network namespace"
    )]
    NotLoopback { addr: IpAddr },
}

/// Whether this process runs in a network namespace other than the initial one (that of PID 1).
/// If /proc/1 cannot be read (hidepid, no permission), it is treated as the initial namespace:
/// when unsure, refuse.
pub fn in_private_netns() -> bool {
    let own = std::fs::read_link("/proc/self/ns/net");
    let init = std::fs::read_link("/proc/1/ns/net");
    match (own, init) {
        (Ok(own), Ok(init)) => own != init,
        _ => false,
    }
}

/// Checks one address against the rule.
pub fn check_addr(addr: IpAddr, private_netns: bool) -> Result<(), TargetError> {
    let loopback = match addr {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    };
    if loopback || private_netns {
        Ok(())
    } else {
        Err(TargetError::NotLoopback { addr })
    }
}

/// Resolves `host` (an IP literal or a name such as `localhost`) and checks every address it
/// resolves to; returns the first.
pub fn resolve(host: &str, private_netns: bool) -> Result<IpAddr, TargetError> {
    let resolve_error = |reason: String| TargetError::Resolve {
        host: host.to_string(),
        reason,
    };
    let addrs: Vec<SocketAddr> = (host, 0)
        .to_socket_addrs()
        .map_err(|e| resolve_error(e.to_string()))?
        .collect();
    for addr in &addrs {
        check_addr(addr.ip(), private_netns)?;
    }
    addrs
        .first()
        .map(SocketAddr::ip)
        .ok_or_else(|| resolve_error("no addresses".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves loopback addresses of both families are accepted anywhere.
    #[test]
    fn loopback_accepted() {
        for a in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(check_addr(a.parse().unwrap(), false), Ok(()), "{a}");
        }
        assert_eq!(
            resolve("127.0.0.1", false),
            Ok("127.0.0.1".parse().unwrap())
        );
    }

    /// Proves every other address is refused in the initial namespace, with the address named.
    #[test]
    fn others_refused() {
        for a in [
            "10.0.0.1",
            "192.168.1.1",
            "8.8.8.8",
            "0.0.0.0",
            "::",
            "2001:db8::1",
        ] {
            let addr: IpAddr = a.parse().unwrap();
            let err = check_addr(addr, false).unwrap_err();
            assert_eq!(err, TargetError::NotLoopback { addr });
            assert!(err.to_string().contains(a), "{err}");
        }
        assert!(resolve("10.1.2.3", false).is_err());
    }

    /// Proves a private network namespace lifts the restriction.
    #[test]
    fn private_namespace_allows_any() {
        assert_eq!(check_addr("10.0.0.1".parse().unwrap(), true), Ok(()));
    }
}
