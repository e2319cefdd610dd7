//! What lies between a connection's socket and its MQTT bytes when it is not plain TCP: TLS
//! (rustls), a WebSocket ([`ws`]), or a WebSocket inside TLS. A plain connection has no link
//! and costs nothing for it (`Conn::link` is `None`).
//!
//! The connection keeps its own buffers: MQTT bytes are queued in `Conn::wbuf` and decoded
//! from `Conn::rbuf` exactly as for plain TCP. A flush moves them down the layers (MQTT bytes
//! into WebSocket frames, frames into TLS records, records onto the socket); a read takes
//! socket bytes up (records decrypted, frames unwrapped) into the MQTT bytes. Each layer keeps
//! what the one below has not taken, bounded: one WebSocket frame, and rustls's buffer limit.
//! MQTT bytes wait in `wbuf` until every layer below is open (TLS handshake done, `101`
//! received), so the CONNECT of a TLS connection leaves with its first application record and
//! CONNACK latency includes the handshake.

mod ws;

use std::io::{self, BufRead, Write};
use std::net::{Ipv6Addr, TcpStream};

use bytes::{Buf, BytesMut};
use rustls::ClientConnection;

use self::ws::{WebSocket, WsError};
use super::reactor::{write_buf, write_until_blocked};
use crate::spec::ClientSpec;
use crate::tls::{self, TlsClient, TlsError};

/// Bytes rustls may hold for us unsent (plaintext before the handshake ends, records after):
/// as much as a sender's burst, as `wbuf` holds for a plain connection.
pub const TLS_BUFFERED_MAX: usize = super::sender::WBUF_TARGET;

/// How far a flush got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flushed {
    /// Everything is on the socket.
    All,
    /// The socket pushed back: EPOLLOUT resumes.
    Blocked,
    /// MQTT bytes wait for a layer to open (handshake or upgrade): a read resumes.
    Held,
}

/// Why a link failed, nested by layer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS: {0}")]
    TlsInput(io::Error),
    #[error(transparent)]
    Ws(#[from] WsError),
}

/// What every link of a worker shares.
pub struct LinkConfig {
    tls: Option<TlsClient>,
    ws: Option<WsTarget>,
}

/// Where the WebSocket upgrade goes.
struct WsTarget {
    /// The Host header without the port (which differs per connection).
    host: String,
    path: String,
}

impl LinkConfig {
    /// The links `client` asks for; `None` for plain TCP.
    pub fn new(client: &ClientSpec) -> Result<Option<LinkConfig>, TlsError> {
        let tls = match &client.tls {
            Some(spec) => Some(tls::client(spec, &client.host)?),
            None => None,
        };
        let ws = client.ws_path.as_ref().map(|path| {
            // RFC 3986: an IPv6 literal is bracketed in an authority.
            let host = match client.host.parse::<Ipv6Addr>() {
                Ok(_) => format!("[{}]", client.host),
                Err(_) => client.host.clone(),
            };
            WsTarget {
                host,
                path: path.clone(),
            }
        });
        if tls.is_none() && ws.is_none() {
            return Ok(None);
        }
        // aws-lc seeds its random generator on first use, which takes about 50 ms: do it now,
        // before the first connect(), or the first CONNACK latencies would include it.
        ws::random(&mut [0u8; 1]);
        Ok(Some(LinkConfig { tls, ws }))
    }

    /// A link for a connection to `port` that just connected: the ClientHello or the upgrade
    /// request is queued.
    pub fn open(&self, port: u16) -> Result<Link, rustls::Error> {
        let tls = match &self.tls {
            Some(t) => {
                let mut session = ClientConnection::new(t.config.clone(), t.server_name.clone())?;
                session.set_buffer_limit(Some(TLS_BUFFERED_MAX));
                Some(session)
            }
            None => None,
        };
        let ws = self
            .ws
            .as_ref()
            .map(|w| WebSocket::new(&format!("{}:{port}", w.host), &w.path));
        assert!(tls.is_some() || ws.is_some(), "a link has a layer");
        Ok(Link {
            tls,
            ws,
            closing: false,
            close_notify_sent: false,
            tls_ended: false,
        })
    }
}

/// One connection's layers. At least one of `tls` and `ws` is set; with both, the WebSocket
/// runs inside TLS.
pub struct Link {
    tls: Option<ClientConnection>,
    ws: Option<WebSocket>,
    /// DISCONNECT is queued: once it has gone down, each layer's goodbye follows it (the close
    /// frame, then close_notify).
    closing: bool,
    close_notify_sent: bool,
    /// The broker sent close_notify.
    tls_ended: bool,
}

impl Link {
    /// The broker ended the session (close_notify or a close frame): treat as end of stream.
    pub fn peer_ended(&self) -> bool {
        self.tls_ended || self.ws.as_ref().is_some_and(WebSocket::is_ended)
    }

    /// Nothing waits in the layers for the socket.
    pub fn is_drained(&self) -> bool {
        self.tls.as_ref().is_none_or(|t| !t.wants_write())
            && self.ws.as_ref().is_none_or(|w| !w.has_output())
    }

    /// After DISCONNECT: the layers say goodbye once it has gone down (never waited for: the
    /// teardown's deadline bounds the wait for the broker's close).
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Moves MQTT bytes from `wbuf` down the layers and writes what comes out to `sock`.
    pub fn flush(&mut self, wbuf: &mut BytesMut, sock: &mut TcpStream) -> io::Result<Flushed> {
        loop {
            if !self.write(sock)? {
                return Ok(Flushed::Blocked);
            }
            if !self.take(wbuf)? {
                break;
            }
        }
        Ok(if wbuf.is_empty() && self.is_drained() {
            Flushed::All
        } else {
            Flushed::Held
        })
    }

    /// Writes what the lowest layer holds. `Ok(false)`: the socket pushed back.
    fn write(&mut self, sock: &mut TcpStream) -> io::Result<bool> {
        match (&mut self.tls, &mut self.ws) {
            (Some(tls), _) => {
                write_until_blocked(|| tls.wants_write().then(|| tls.write_tls(sock)))
            }
            (None, Some(ws)) => write_buf(sock, ws.out()),
            (None, None) => unreachable!("a link has a layer"),
        }
    }

    /// Moves bytes one layer down where the layer below is open and has room: MQTT bytes into
    /// a frame, frames (or MQTT bytes) into TLS; then the goodbyes. Whether anything moved.
    fn take(&mut self, wbuf: &mut BytesMut) -> io::Result<bool> {
        let mut moved = false;
        if let Some(ws) = &mut self.ws {
            moved |= ws.send(wbuf);
            if self.closing && wbuf.is_empty() {
                moved |= ws.close();
            }
        }
        let Some(tls) = &mut self.tls else {
            return Ok(moved);
        };
        if tls.is_handshaking() {
            return Ok(moved);
        }
        // TLS carries the WebSocket's output (the upgrade request, then frames), or MQTT bytes.
        let above = match &mut self.ws {
            Some(ws) => ws.out(),
            None => &mut *wbuf,
        };
        if !above.is_empty() {
            let n = tls.writer().write(above)?;
            above.advance(n);
            moved |= n > 0;
        }
        let above_empty = above.is_empty();
        if self.closing && !self.close_notify_sent && above_empty && wbuf.is_empty() {
            tls.send_close_notify();
            self.close_notify_sent = true;
            moved = true;
        }
        Ok(moved)
    }

    /// Bytes read from the socket: the MQTT bytes they carry are appended to `mqtt`; what they
    /// call for (handshake messages, pongs) waits in the layers for the next flush.
    pub fn input(&mut self, wire: &[u8], mqtt: &mut BytesMut) -> Result<(), LinkError> {
        match (&mut self.tls, &mut self.ws) {
            (Some(tls), ws) => {
                self.tls_ended |= decrypt(tls, ws.as_mut(), wire, mqtt)?;
                Ok(())
            }
            (None, Some(ws)) => Ok(ws.input(wire, mqtt)?),
            (None, None) => unreachable!("a link has a layer"),
        }
    }
}

/// Feeds records to rustls and passes the plaintext up (to the WebSocket or straight to the
/// MQTT bytes). Whether the broker sent close_notify.
fn decrypt(
    tls: &mut ClientConnection,
    mut ws: Option<&mut WebSocket>,
    mut wire: &[u8],
    mqtt: &mut BytesMut,
) -> Result<bool, LinkError> {
    while !wire.is_empty() {
        // rustls takes at most one record buffer (4 KiB) per call: feed it until all is used,
        // emptying its plaintext each time so that its own bound is never hit.
        if tls.read_tls(&mut wire).map_err(LinkError::TlsInput)? == 0 {
            // close_notify was received before: nothing more is read.
            return Ok(true);
        }
        let state = tls.process_new_packets()?;
        let mut reader = tls.reader();
        while let Ok(plain) = reader.fill_buf() {
            if plain.is_empty() {
                break;
            }
            let n = plain.len();
            match ws.as_deref_mut() {
                Some(ws) => ws.input(plain, mqtt)?,
                None => mqtt.extend_from_slice(plain),
            }
            reader.consume(n);
        }
        if state.peer_has_closed() {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rustls::crypto::aws_lc_rs;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::{ServerConfig, ServerConnection};

    use super::super::reactor::read_into;
    use super::ws::tests::unmask;
    use super::*;
    use crate::tls::TlsSpec;

    /// How long a test waits for bytes it expects.
    const WAIT: Duration = Duration::from_secs(5);

    /// A connected pair on loopback: the link's socket (non-blocking, as in a worker) and the
    /// broker's end.
    fn pair() -> (TcpStream, TcpStream, u16) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        sock.set_nonblocking(true).unwrap();
        let (broker, _) = listener.accept().unwrap();
        (sock, broker, port)
    }

    /// The 101 a broker answers `request` with.
    fn switching(request: &[u8]) -> String {
        let key = std::str::from_utf8(request)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .expect("the request has a key");
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
            ws::accept_for(key)
        )
    }

    /// Bytes `peer` sends until `done` says they are complete (bounded by a read timeout).
    fn receive(peer: &mut TcpStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        while !done(&got) {
            let n = peer.read(&mut chunk).expect("the link sends within 5 s");
            assert!(n > 0, "closed early after {got:?}");
            got.extend_from_slice(&chunk[..n]);
        }
        got
    }

    /// Proves a WebSocket link sends only its upgrade request until the 101 arrives (the
    /// CONNECT stays in `wbuf` and the flush says Held), then the CONNECT as one masked binary
    /// frame; and that after DISCONNECT the close frame follows it.
    #[test]
    fn websocket_link_waits_for_the_upgrade() {
        let (mut sock, mut broker, port) = pair();
        let config = LinkConfig {
            tls: None,
            ws: Some(WsTarget {
                host: "127.0.0.1".into(),
                path: "/mqtt".into(),
            }),
        };
        let mut link = config.open(port).unwrap();
        let connect = [0x10, 0x02, 0xAB, 0xCD]; // a stand-in CONNECT: MQTT bytes are opaque here
        let mut wbuf = BytesMut::from(&connect[..]);
        assert_eq!(link.flush(&mut wbuf, &mut sock).unwrap(), Flushed::Held);
        assert_eq!(&wbuf[..], connect, "held until the 101");
        let request = receive(&mut broker, |b| b.ends_with(b"\r\n\r\n"));
        assert!(request.starts_with(b"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:"));
        let mut mqtt = BytesMut::new();
        link.input(switching(&request).as_bytes(), &mut mqtt)
            .unwrap();
        assert!(mqtt.is_empty());
        assert_eq!(link.flush(&mut wbuf, &mut sock).unwrap(), Flushed::All);
        assert!(wbuf.is_empty() && link.is_drained());
        let frame = receive(&mut broker, |b| b.len() >= 2 + 4 + connect.len());
        assert_eq!(unmask(&frame), (0x82, connect.to_vec(), frame.len()));

        let disconnect = [0xE0, 0x00];
        wbuf.extend_from_slice(&disconnect);
        link.close();
        assert_eq!(link.flush(&mut wbuf, &mut sock).unwrap(), Flushed::All);
        let frames = receive(&mut broker, |b| b.len() >= (6 + 2) + (6 + 2));
        assert_eq!(unmask(&frames), (0x82, disconnect.to_vec(), 8));
        assert_eq!(
            unmask(&frames[8..]),
            (0x88, 1000u16.to_be_bytes().to_vec(), 8)
        );
        assert!(!link.peer_ended());
        link.input(&[0x88, 0x00], &mut mqtt).unwrap(); // the broker's close frame
        assert!(link.peer_ended());
    }

    /// The broker's end of a TLS connection, driven by hand: rustls's server session over a
    /// blocking socket, the plaintext it has received, and whether close_notify came.
    struct TlsBroker {
        session: ServerConnection,
        sock: TcpStream,
        plain: Vec<u8>,
        closed: bool,
    }

    impl TlsBroker {
        /// Sends what the session wants to send, then takes what arrived within a few ms.
        fn pump(&mut self) {
            while self.session.wants_write() {
                self.session.write_tls(&mut self.sock).unwrap();
            }
            match self.session.read_tls(&mut self.sock) {
                Ok(_) => {
                    self.closed |= self
                        .session
                        .process_new_packets()
                        .unwrap()
                        .peer_has_closed();
                    // Ends with WouldBlock once the plaintext is all read.
                    let _ = self.session.reader().read_to_end(&mut self.plain);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("broker read: {e}"),
            }
            while self.session.wants_write() {
                self.session.write_tls(&mut self.sock).unwrap();
            }
        }
    }

    /// Moves bytes both ways (link flush, broker, link read) until `done`, within [`WAIT`].
    fn exchange(
        link: &mut Link,
        sock: &mut TcpStream,
        wbuf: &mut BytesMut,
        broker: &mut TlsBroker,
        done: impl Fn(&TlsBroker) -> bool,
    ) {
        let started = Instant::now();
        let mut wire = BytesMut::new();
        while !done(broker) {
            assert!(
                started.elapsed() < WAIT,
                "stuck; broker got {:?}",
                broker.plain
            );
            link.flush(wbuf, sock).unwrap();
            broker.pump();
            match read_into(&*sock, &mut wire, 64 * 1024) {
                Ok(_) => {
                    let mut mqtt = BytesMut::new();
                    link.input(&wire, &mut mqtt).unwrap();
                    assert!(mqtt.is_empty(), "the broker sent no MQTT bytes");
                    wire.clear();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("link read: {e}"),
            }
        }
    }

    /// Proves a WebSocket inside TLS: the CONNECT waits in `wbuf` through the TLS handshake
    /// and the upgrade (which travels encrypted), then goes as a masked binary frame inside
    /// TLS; after DISCONNECT come the close frame and then close_notify, in that order.
    #[test]
    fn websocket_inside_tls_in_order() {
        let dir = std::env::temp_dir().join(format!("isb-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        std::fs::write(dir.join("ca.pem"), certified.cert.pem()).unwrap();
        let spec = TlsSpec {
            cafile: dir.join("ca.pem"),
            identity: None,
            version: None,
        };
        let config = LinkConfig {
            tls: Some(tls::client(&spec, "127.0.0.1").unwrap()),
            ws: Some(WsTarget {
                host: "127.0.0.1".into(),
                path: "/mqtt".into(),
            }),
        };
        std::fs::remove_dir_all(&dir).unwrap();
        let key = PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
        let server = ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(certified.cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(key),
            )
            .unwrap();
        let (mut sock, broker_sock, port) = pair();
        broker_sock
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let mut broker = TlsBroker {
            session: ServerConnection::new(Arc::new(server)).unwrap(),
            sock: broker_sock,
            plain: Vec::new(),
            closed: false,
        };
        let mut link = config.open(port).unwrap();
        let connect = [0x10, 0x02, 0xAB, 0xCD]; // a stand-in CONNECT: MQTT bytes are opaque here
        let mut wbuf = BytesMut::from(&connect[..]);

        let request_in = |b: &TlsBroker| b.plain.ends_with(b"\r\n\r\n");
        exchange(&mut link, &mut sock, &mut wbuf, &mut broker, request_in);
        assert!(broker.plain.starts_with(b"GET /mqtt HTTP/1.1\r\n"));
        assert_eq!(
            &wbuf[..],
            connect,
            "held through the handshake and the upgrade"
        );
        let response = switching(&broker.plain);
        broker
            .session
            .writer()
            .write_all(response.as_bytes())
            .unwrap();
        broker.plain.clear();

        let frame_len = 2 + 4 + connect.len();
        let frame_in = |b: &TlsBroker| b.plain.len() >= frame_len;
        exchange(&mut link, &mut sock, &mut wbuf, &mut broker, frame_in);
        assert_eq!(unmask(&broker.plain), (0x82, connect.to_vec(), frame_len));
        assert!(wbuf.is_empty() && link.is_drained());
        broker.plain.clear();

        let disconnect = [0xE0, 0x00];
        wbuf.extend_from_slice(&disconnect);
        link.close();
        let closed = |b: &TlsBroker| b.closed;
        exchange(&mut link, &mut sock, &mut wbuf, &mut broker, closed);
        assert_eq!(unmask(&broker.plain), (0x82, disconnect.to_vec(), 8));
        let close = unmask(&broker.plain[8..]);
        assert_eq!(close, (0x88, 1000u16.to_be_bytes().to_vec(), 8));
        assert_eq!(broker.plain.len(), 16, "nothing after the close frame");
    }
}
