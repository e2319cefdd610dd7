//! The PROXY protocol header (versions 1 and 2, as HAProxy and cloud load balancers send it):
//! a load balancer that relays TCP connections puts the client's real address in front of the
//! client's first byte, so that policies and logs see the client rather than the balancer.
//!
//! An endpoint that enables it requires the header on every connection; one that does not
//! refuses it (anybody could otherwise claim any address).
//!
//! ```text
//! v1: "PROXY TCP4 203.0.113.7 192.0.2.1 56324 1883\r\n"             (text, at most 107 bytes)
//! v2: 0D 0A 0D 0A 00 0D 0A 51 55 49 54 0A  (signature)
//!     21                                     version 2, command PROXY (20: LOCAL)
//!     11                                     TCP over IPv4 (21: TCP over IPv6)
//!     00 0C                                  12 bytes of addresses (and TLVs) follow
//!     CB 00 71 07  C0 00 02 01  DC 04  07 5B source 203.0.113.7:56324, destination ...:1883
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The first bytes of a version 2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// A version 1 header, CRLF included, is at most this long (the specification's bound).
const V1_MAX: usize = 107;
/// A version 2 header's address block and TLVs; a balancer sends far less (TLVs of a few
/// dozen bytes), and a peer may not make the broker hold more before it knows who it is.
const V2_BODY_MAX: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The header is not complete yet.
    NeedMore,
    /// The header took `len` bytes. `source` is the client's address; `None` for a LOCAL
    /// (v2) or UNKNOWN (v1) header, which a balancer sends for its own health checks: the
    /// socket's peer address stands.
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("the connection does not start with a PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol v1 header")]
    BadV1,
    #[error("malformed PROXY protocol v2 header")]
    BadV2,
    #[error("PROXY protocol v2 header longer than {V2_BODY_MAX} bytes")]
    TooLong,
}

/// Parses the header at the front of `data`.
pub fn parse(data: &[u8]) -> Result<Parsed, ProxyError> {
    if data.first() == Some(&V2_SIGNATURE[0]) {
        return parse_v2(data);
    }
    let prefix = &data[..data.len().min(6)];
    if !b"PROXY ".starts_with(prefix) {
        return Err(ProxyError::Missing);
    }
    parse_v1(data)
}

fn parse_v1(data: &[u8]) -> Result<Parsed, ProxyError> {
    let Some(end) = data.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if data.len() >= V1_MAX {
            Err(ProxyError::BadV1)
        } else {
            Ok(Parsed::NeedMore)
        };
    };
    let line = std::str::from_utf8(&data[..end]).map_err(|_| ProxyError::BadV1)?;
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", family @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let src: IpAddr = src.parse().map_err(|_| ProxyError::BadV1)?;
            let dst: IpAddr = dst.parse().map_err(|_| ProxyError::BadV1)?;
            let v4 = *family == "TCP4";
            if src.is_ipv4() != v4 || dst.is_ipv4() != v4 {
                return Err(ProxyError::BadV1);
            }
            let _: u16 = port(dport)?;
            Some(SocketAddr::new(src, port(sport)?))
        }
        _ => return Err(ProxyError::BadV1),
    };
    Ok(Parsed::Header {
        len: end + 2,
        source,
    })
}

/// A v1 port: decimal, no sign, no leading zero.
fn port(text: &str) -> Result<u16, ProxyError> {
    if text.is_empty() || (text.len() > 1 && text.starts_with('0')) {
        return Err(ProxyError::BadV1);
    }
    text.parse().map_err(|_| ProxyError::BadV1)
}

fn parse_v2(data: &[u8]) -> Result<Parsed, ProxyError> {
    let known = data.len().min(V2_SIGNATURE.len());
    if data[..known] != V2_SIGNATURE[..known] {
        return Err(ProxyError::Missing);
    }
    if data.len() < 16 {
        return Ok(Parsed::NeedMore);
    }
    let (version_command, family) = (data[12], data[13]);
    let body_len = usize::from(u16::from_be_bytes([data[14], data[15]]));
    if version_command >> 4 != 2 {
        return Err(ProxyError::BadV2);
    }
    if body_len > V2_BODY_MAX {
        return Err(ProxyError::TooLong);
    }
    if data.len() < 16 + body_len {
        return Ok(Parsed::NeedMore);
    }
    let body = &data[16..16 + body_len];
    let len = 16 + body_len;
    let source = match (version_command & 0x0F, family) {
        (0x0, _) => None,    // LOCAL: the balancer itself
        (0x1, 0x00) => None, // PROXY of an unspecified family
        (0x1, 0x11) if body.len() >= 12 => Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&body[..4]).expect("4 bytes"),
            )),
            u16::from_be_bytes([body[8], body[9]]),
        )),
        (0x1, 0x21) if body.len() >= 36 => Some(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&body[..16]).expect("16 bytes"),
            )),
            u16::from_be_bytes([body[32], body[33]]),
        )),
        _ => return Err(ProxyError::BadV2), // UDP, Unix sockets, short bodies, other commands
    };
    Ok(Parsed::Header { len, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: usize, source: &str) -> Result<Parsed, ProxyError> {
        Ok(Parsed::Header {
            len,
            source: Some(source.parse().unwrap()),
        })
    }

    #[test]
    fn v1_headers() {
        let line = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1883\r\n\x10\x0c";
        assert_eq!(parse(line), header(line.len() - 2, "203.0.113.7:56324"));
        let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 56324 1883\r\n";
        assert_eq!(parse(line), header(line.len(), "[2001:db8::7]:56324"));
        let line = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
        assert_eq!(
            parse(line),
            Ok(Parsed::Header {
                len: line.len(),
                source: None
            })
        );
        for partial in [&b"P"[..], b"PROX", b"PROXY TCP4 203.0.113.7 192."] {
            assert_eq!(parse(partial), Ok(Parsed::NeedMore), "{partial:?}");
        }
    }

    #[test]
    fn v1_mistakes() {
        for bad in [
            &b"PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n"[..], // a field missing
            b"PROXY TCP4 2001:db8::7 192.0.2.1 56324 1883\r\n", // family and address disagree
            b"PROXY TCP4 203.0.113.7 192.0.2.1 056324 1883\r\n", // leading zero
            b"PROXY TCP4 203.0.113.7 192.0.2.1 70000 1883\r\n", // port out of range
            b"PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",
        ] {
            assert_eq!(parse(bad), Err(ProxyError::BadV1), "{bad:?}");
        }
        let endless = [b'P', b'R', b'O', b'X', b'Y', b' ']
            .into_iter()
            .chain(std::iter::repeat_n(b'1', 200))
            .collect::<Vec<u8>>();
        assert_eq!(
            parse(&endless),
            Err(ProxyError::BadV1),
            "no CRLF within 107 bytes"
        );
        assert_eq!(parse(b"\x10\x0c\x00\x04MQTT"), Err(ProxyError::Missing));
        assert_eq!(parse(b"POST / HTTP/1.1"), Err(ProxyError::Missing));
    }

    #[test]
    fn v2_headers() {
        let mut v4 = V2_SIGNATURE.to_vec();
        v4.extend_from_slice(&[
            0x21, 0x11, 0x00, 0x0C, // PROXY, TCP over IPv4, 12 bytes
            203, 0, 113, 7, // source address
            192, 0, 2, 1, // destination address
            0xDC, 0x04, // source port 56324
            0x07, 0x5B, // destination port 1883
        ]);
        assert_eq!(parse(&v4), header(28, "203.0.113.7:56324"));
        assert_eq!(parse(&v4[..20]), Ok(Parsed::NeedMore));
        let mut v6 = V2_SIGNATURE.to_vec();
        v6.extend_from_slice(&[0x21, 0x21, 0x00, 0x27]); // 36 bytes of addresses + a 3-byte TLV
        v6.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0; 16]);
        v6.extend_from_slice(&[0xDC, 0x04, 0x07, 0x5B]);
        v6.extend_from_slice(&[0x04, 0x00, 0x00]); // TLV: NOOP, empty
        assert_eq!(parse(&v6), header(16 + 39, "[2001:db8::7]:56324"));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(
            parse(&local),
            Ok(Parsed::Header {
                len: 16,
                source: None
            })
        );
    }

    #[test]
    fn v2_mistakes() {
        let mut long = V2_SIGNATURE.to_vec();
        long.extend_from_slice(&[0x21, 0x11, 0x04, 0x00]); // 1024 bytes announced
        assert_eq!(parse(&long), Err(ProxyError::TooLong));
        let mut v1_version = V2_SIGNATURE.to_vec();
        v1_version.extend_from_slice(&[0x11, 0x11, 0x00, 0x0C]);
        assert_eq!(parse(&v1_version), Err(ProxyError::BadV2));
        let mut udp = V2_SIGNATURE.to_vec();
        udp.extend_from_slice(&[0x21, 0x12, 0x00, 0x0C]);
        udp.extend_from_slice(&[0; 12]);
        assert_eq!(parse(&udp), Err(ProxyError::BadV2));
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]);
        assert_eq!(parse(&short), Err(ProxyError::BadV2));
        assert_eq!(parse(b"\r\n\r\nGET"), Err(ProxyError::Missing));
    }
}
