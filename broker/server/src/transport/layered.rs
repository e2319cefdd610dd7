//! A connection whose bytes pass through layers before they are MQTT: detection (and the PROXY
//! header), TLS, WebSocket. The outer layer faces the socket, the inner one the core.
//!
//! | outer                | inner                 | the endpoint transport |
//! |----------------------|-----------------------|------------------------|
//! | `Detect`             | -                     | not known yet          |
//! | `Socket`             | `WebSocket`           | `ws`                   |
//! | `Tls`                | `Undecided`           | TLS, no plaintext yet  |
//! | `Tls`                | `Mqtt`                | `mqtts`                |
//! | `Tls`                | `WebSocket`           | `wss`                  |
//!
//! Plain MQTT leaves this type as soon as it is detected: it becomes [`super::Transport::Plain`].
//!
//! Reading: the bytes of a read (with what was carried from the last one in front) go through
//! the outer layer, whose plaintext goes through the inner layer, whose MQTT bytes go up. Before
//! the first MQTT byte, what the layers learnt (the PROXY header's address, TLS and the client
//! certificate) is told to the core, once.
//!
//! Writing: `wire` holds bytes ready for the socket (handshake flights, sealed records) and
//! always goes first; then, over a plain socket, WebSocket frames are written around the core's
//! output without copying it, and inside TLS the core's output (framed, for WebSocket) is
//! sealed into `wire` in batches.

use std::cell::RefCell;
use std::io::IoSlice;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use ironsight_core::outbuf::OutBuf;

use super::detect::{self, Detected};
use super::tls::certificate::{CertificateFacts, RevocationKey};
use super::tls::{Tls, TlsEvent};
use super::ws::WebSocket;
use super::{EndpointTransport, TransportError, Upward};

/// Plaintext sealed per write pass: enough for many small packets per record, while a
/// connection that cannot write holds at most this much ciphertext of its own.
const SEAL_BATCH: usize = 64 * 1024;

thread_local! {
    /// Where WebSocket frames for a TLS connection are built before they are sealed.
    static FRAMES: RefCell<BytesMut> = RefCell::default();
}

enum Outer {
    Detect,
    Socket,
    /// Boxed: a WebSocket over a plain socket, as light as it can be, carries none of it.
    Tls(Box<Tls>),
}

enum Inner {
    Undecided,
    Mqtt,
    /// Boxed: TLS connections carrying plain MQTT, the common case, need none of it.
    WebSocket(Box<WebSocket>),
}

/// What the layers learnt about the peer, told to the core before the first MQTT byte.
#[derive(Default)]
pub struct Learnt {
    /// The client's address from a PROXY header.
    pub proxied_peer: Option<SocketAddr>,
    pub secure: bool,
    pub certificate: Option<CertificateFacts>,
}

/// What a read leaves the connection as.
pub enum Next {
    Layered,
    /// Plain MQTT: the layers are gone.
    Plain,
}

pub struct Layered {
    outer: Outer,
    inner: Inner,
    /// Bytes for the socket, before anything else.
    wire: BytesMut,
    /// Bytes read but not used yet: a partial PROXY header or TLS record.
    carry: BytesMut,
    proxy_done: bool,
    /// Until the core was told; boxed, as it is needed only until the first MQTT byte.
    learnt: Option<Box<Learnt>>,
    /// The client certificate, as a revocation list would name it.
    revocation: Option<Box<RevocationKey>>,
}

impl Default for Layered {
    fn default() -> Layered {
        Layered {
            outer: Outer::Detect,
            inner: Inner::Undecided,
            wire: BytesMut::new(),
            carry: BytesMut::new(),
            proxy_done: false,
            learnt: Some(Box::default()),
            revocation: None,
        }
    }
}

impl Layered {
    pub fn carried(&self) -> &[u8] {
        &self.carry
    }

    pub fn revocation(&self) -> Option<&RevocationKey> {
        self.revocation.as_deref()
    }

    /// Processes `data`: the carried bytes followed by what was just read.
    pub fn read(
        &mut self,
        mut data: &mut [u8],
        ep: &EndpointTransport,
        up: &mut dyn Upward,
    ) -> Result<Next, TransportError> {
        self.carry.clear();
        while let Outer::Detect = self.outer {
            match detect::outer(data, ep, self.proxy_done)? {
                Detected::NeedMore => {
                    self.keep(data);
                    return Ok(Next::Layered);
                }
                Detected::Proxy { len, source } => {
                    self.proxy_done = true;
                    if let Some(learnt) = &mut self.learnt {
                        learnt.proxied_peer = source;
                    }
                    data = &mut data[len..];
                }
                Detected::Mqtt => {
                    announce(&mut self.learnt, up);
                    up.deliver(data);
                    return Ok(Next::Plain);
                }
                Detected::Tls => {
                    let context = ep.tls.as_ref().ok_or(TransportError::NotAccepted("TLS"))?;
                    self.outer = Outer::Tls(Box::new(Tls::new(context)?));
                }
                Detected::WebSocket => {
                    self.outer = Outer::Socket;
                    self.inner = Inner::WebSocket(Box::default());
                }
            }
        }
        let Layered {
            outer,
            inner,
            wire,
            learnt,
            revocation,
            ..
        } = self;
        let used = match outer {
            Outer::Detect => unreachable!("detected above"),
            Outer::Socket => {
                read_inner(inner, data, ep, learnt, up)?;
                data.len()
            }
            Outer::Tls(tls) => tls.read(data, wire, &mut |event| match event {
                TlsEvent::Established(established) => {
                    if let Some(learnt) = learnt {
                        learnt.secure = true;
                        if let Some(cert) = established.certificate {
                            *revocation = Some(Box::new(cert.revocation.clone()));
                            learnt.certificate = Some(cert);
                        }
                    }
                    Ok(())
                }
                TlsEvent::Plaintext(plain) => read_inner(inner, plain, ep, learnt, up),
            })?,
        };
        self.keep(&data[used..]);
        Ok(Next::Layered)
    }

    /// Keeps unused bytes for the next read; an empty carry holds no memory.
    fn keep(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            self.carry = BytesMut::new();
        } else {
            self.carry.extend_from_slice(rest);
        }
    }

    // ----- writing -----

    /// Makes the next bytes ready: seals a batch of output inside TLS, or starts a frame.
    pub fn prepare(&mut self, out: &mut OutBuf) -> Result<(), TransportError> {
        if !self.wire.is_empty() {
            return Ok(());
        }
        match (&mut self.outer, &mut self.inner) {
            (Outer::Tls(tls), Inner::Mqtt) if !out.is_empty() => {
                tls.seal_output(out, SEAL_BATCH, &mut self.wire)?
            }
            (Outer::Tls(tls), Inner::WebSocket(ws)) if ws.has_plaintext(out) => {
                FRAMES.with(|frames| {
                    let mut frames = frames.borrow_mut();
                    frames.clear();
                    ws.frame_into(out, &mut frames, SEAL_BATCH);
                    tls.seal(&frames, &mut self.wire)
                })?
            }
            (Outer::Socket, Inner::WebSocket(ws)) => ws.prepare(out),
            _ => {}
        }
        Ok(())
    }

    pub fn has_output(&self, out: &OutBuf) -> bool {
        !self.wire.is_empty()
            || match (&self.outer, &self.inner) {
                (Outer::Socket, Inner::WebSocket(ws)) => ws.has_output(out),
                (Outer::Tls(tls), Inner::Mqtt) => tls.is_open() && !out.is_empty(),
                (Outer::Tls(tls), Inner::WebSocket(ws)) => tls.is_open() && ws.has_plaintext(out),
                _ => false,
            }
    }

    pub fn io_slices<'a>(&'a self, out: &'a OutBuf, slices: &mut [IoSlice<'a>]) -> usize {
        if !self.wire.is_empty() {
            slices[0] = IoSlice::new(&self.wire);
            return 1;
        }
        match (&self.outer, &self.inner) {
            (Outer::Socket, Inner::WebSocket(ws)) => ws.io_slices(out, slices),
            _ => 0,
        }
    }

    pub fn advance(&mut self, out: &mut OutBuf, n: usize) {
        if !self.wire.is_empty() {
            self.wire.advance(n);
            return;
        }
        if let (Outer::Socket, Inner::WebSocket(ws)) = (&self.outer, &mut self.inner) {
            ws.advance(out, n);
        }
    }

    /// Whether the transport has bytes of its own waiting.
    pub fn has_pending(&self) -> bool {
        self.has_output(&OutBuf::default())
    }

    /// Queues the transport's goodbye: a WebSocket close frame, a TLS close_notify.
    pub fn goodbye(&mut self) {
        if let Inner::WebSocket(ws) = &mut self.inner {
            ws.goodbye();
        }
        if let Outer::Tls(tls) = &mut self.outer {
            if let Inner::WebSocket(ws) = &mut self.inner {
                // The close frame goes inside TLS, before the close_notify.
                let _ = FRAMES.with(|frames| {
                    let mut frames = frames.borrow_mut();
                    frames.clear();
                    ws.frame_into(&mut OutBuf::default(), &mut frames, 0);
                    if frames.is_empty() {
                        return Ok(());
                    }
                    tls.seal(&frames, &mut self.wire)
                });
            }
            tls.goodbye(&mut self.wire);
        }
    }

    /// Frees what an idle connection does not need.
    pub fn release_buffers(&mut self) {
        if self.wire.is_empty() {
            self.wire = BytesMut::new();
        }
        if let Outer::Tls(tls) = &mut self.outer {
            tls.release();
        }
        if let Inner::WebSocket(ws) = &mut self.inner {
            ws.release_buffers();
        }
    }
}

/// Tells the core what the layers learnt, once, before the first MQTT byte.
fn announce(learnt: &mut Option<Box<Learnt>>, up: &mut dyn Upward) {
    if let Some(learnt) = learnt.take() {
        up.identify(*learnt);
    }
}

/// Plaintext through the inner layer: detection inside TLS, then MQTT or WebSocket.
fn read_inner(
    inner: &mut Inner,
    data: &mut [u8],
    ep: &EndpointTransport,
    learnt: &mut Option<Box<Learnt>>,
    up: &mut dyn Upward,
) -> Result<(), TransportError> {
    if let Inner::Undecided = inner {
        match detect::inner(data, ep)? {
            Detected::NeedMore => return Ok(()),
            Detected::WebSocket => *inner = Inner::WebSocket(Box::default()),
            _ => *inner = Inner::Mqtt,
        }
    }
    match inner {
        Inner::Undecided => unreachable!("decided above"),
        Inner::Mqtt => {
            announce(learnt, up);
            up.deliver(data);
            Ok(())
        }
        Inner::WebSocket(ws) => Ok(ws.read(data, ep.frame_max, &mut |mqtt| {
            announce(learnt, up);
            up.deliver(mqtt);
        })?),
    }
}
