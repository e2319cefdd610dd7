//! One port for everything: the first bytes of a connection say what it speaks.
//!
//! | first byte            | meaning                                   |
//! |-----------------------|-------------------------------------------|
//! | `0x16`                | a TLS handshake record (ClientHello)      |
//! | `A`..`Z`              | an HTTP request: a WebSocket upgrade      |
//! | anything else         | MQTT (a CONNECT is `0x10`; the core refuses anything else) |
//!
//! Inside TLS the first plaintext byte decides again, between MQTT and WebSocket. An endpoint
//! that requires the PROXY protocol reads its header first. What the endpoint does not accept
//! (its `Transports`) is refused before a byte reaches the core.

use std::net::SocketAddr;

use super::proxy::{self, Parsed};
use super::{EndpointTransport, TransportError};

/// What the first bytes of a connection (or of a TLS session) are.
#[derive(Debug, PartialEq, Eq)]
pub enum Detected {
    /// Not enough bytes to tell (a PROXY header in progress).
    NeedMore,
    /// A PROXY header of `len` bytes; `source` is the client's address (none: the socket's).
    Proxy {
        len: usize,
        source: Option<SocketAddr>,
    },
    Mqtt,
    Tls,
    WebSocket,
}

/// What a connection's first bytes are. `proxy_done`: the PROXY header (if the endpoint
/// requires one) was read already.
pub fn outer(
    data: &[u8],
    ep: &EndpointTransport,
    proxy_done: bool,
) -> Result<Detected, TransportError> {
    if ep.proxy_protocol && !proxy_done {
        return match proxy::parse(data)? {
            Parsed::NeedMore => Ok(Detected::NeedMore),
            Parsed::Header { len, source } => Ok(Detected::Proxy { len, source }),
        };
    }
    let t = &ep.transports;
    match data.first() {
        None => Ok(Detected::NeedMore),
        Some(0x16) if t.tls() => Ok(Detected::Tls),
        Some(0x16) => Err(TransportError::NotAccepted("TLS")),
        Some(b'A'..=b'Z') if t.ws => Ok(Detected::WebSocket),
        Some(_) if t.mqtt => Ok(Detected::Mqtt),
        Some(b'A'..=b'Z') => Err(TransportError::NotAccepted("WebSocket without TLS")),
        Some(_) => Err(TransportError::NotAccepted("MQTT without TLS")),
    }
}

/// What the first plaintext bytes of a TLS session are.
pub fn inner(data: &[u8], ep: &EndpointTransport) -> Result<Detected, TransportError> {
    let t = &ep.transports;
    match data.first() {
        None => Ok(Detected::NeedMore),
        Some(b'A'..=b'Z') if t.wss => Ok(Detected::WebSocket),
        Some(_) if t.mqtts => Ok(Detected::Mqtt),
        Some(b'A'..=b'Z') => Err(TransportError::NotAccepted("WebSocket over TLS")),
        Some(_) => Err(TransportError::NotAccepted("MQTT over TLS")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ironsight_config::objects::Transports;

    fn endpoint(list: &str, proxy_protocol: bool) -> EndpointTransport {
        let has = |name| list.split(',').any(|t| t == name);
        EndpointTransport {
            transports: Transports {
                mqtt: has("mqtt"),
                mqtts: has("mqtts"),
                ws: has("ws"),
                wss: has("wss"),
            },
            proxy_protocol,
            frame_max: 1024,
            tls: None,
        }
    }

    fn outcome(result: Result<Detected, TransportError>) -> String {
        match result {
            Ok(d) => format!("{d:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Proves each first byte lands where the table says, and what an endpoint does not accept
    /// is refused by name.
    #[test]
    fn first_bytes_decide() {
        let all = endpoint("mqtt,mqtts,ws,wss", false);
        assert_eq!(outcome(outer(b"\x10\x0c", &all, false)), "Mqtt");
        assert_eq!(outcome(outer(b"\x16\x03\x01", &all, false)), "Tls");
        assert_eq!(outcome(outer(b"GET /", &all, false)), "WebSocket");
        assert_eq!(
            outcome(outer(b"\xF0", &all, false)),
            "Mqtt",
            "the core refuses garbage"
        );
        assert_eq!(outcome(outer(b"", &all, false)), "NeedMore");
        let tls_only = endpoint("mqtts,wss", false);
        assert_eq!(
            outcome(outer(b"\x10", &tls_only, false)),
            "MQTT without TLS is not accepted on this endpoint"
        );
        assert_eq!(
            outcome(outer(b"GET", &tls_only, false)),
            "WebSocket without TLS is not accepted on this endpoint"
        );
        let plain = endpoint("mqtt", false);
        assert_eq!(
            outcome(outer(b"\x16", &plain, false)),
            "TLS is not accepted on this endpoint"
        );
        assert_eq!(
            outcome(outer(b"GET", &plain, false)),
            "Mqtt",
            "the core closes it"
        );
        assert_eq!(outcome(inner(b"GET", &all)), "WebSocket");
        assert_eq!(outcome(inner(b"\x10", &all)), "Mqtt");
        assert_eq!(outcome(inner(b"GET", &endpoint("mqtts", false))), "Mqtt");
        assert_eq!(
            outcome(inner(b"\x10", &endpoint("wss", false))),
            "MQTT over TLS is not accepted on this endpoint"
        );
    }

    #[test]
    fn a_proxy_header_comes_first_where_required() {
        let ep = endpoint("mqtt", true);
        assert_eq!(outcome(outer(b"PROXY TCP4 ", &ep, false)), "NeedMore");
        assert_eq!(
            outcome(outer(
                b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 1883\r\n\x10",
                &ep,
                false
            )),
            "Proxy { len: 45, source: Some(203.0.113.7:56324) }"
        );
        assert_eq!(
            outcome(outer(b"\x10\x0c", &ep, false)),
            "the connection does not start with a PROXY protocol header"
        );
        assert_eq!(outcome(outer(b"\x10\x0c", &ep, true)), "Mqtt");
    }
}
