//! The client side of MQTT over WebSocket (RFC 6455 and MQTT's chapter 6), without I/O: the
//! upgrade request, the check of the `101` response, MQTT bytes out as masked binary frames,
//! and the broker's frames in, their payloads one MQTT byte stream.
//!
//! Why by hand and not a WebSocket crate: the link feeds this layer whatever bytes TLS or the
//! socket produced, in any split, and takes its output as bytes; a crate would bring its own
//! stream, buffers and tasks per connection, and a worker holds thousands. A client needs a
//! small part of the protocol: one request, one response, frames without extensions.
//!
//! Nothing is framed before the `101` arrives (RFC 6455 4.1: the client waits for the response
//! before sending any further data): until then the MQTT bytes stay in the connection's write
//! buffer. Bytes in may split anywhere: a response over several reads, a frame header over two.

use std::fmt::Write as _;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use bytes::{Buf, BufMut, BytesMut};

use crate::worker::sender::WBUF_TARGET;

/// RFC 6455 1.3: appended to the key before hashing for Sec-WebSocket-Accept.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// The one subprotocol offered and accepted ([MQTT-6.0.0-3], [MQTT-6.0.0-4]).
const SUBPROTOCOL: &str = "mqtt";
/// Bytes of a Sec-WebSocket-Key before base64 (RFC 6455 4.1).
const KEY_LEN: usize = 16;
/// The largest upgrade response accepted; a broker's is about 150 bytes.
const RESPONSE_MAX: usize = 8 * 1024;
/// Headers parsed in an upgrade response.
const HEADERS_MAX: usize = 32;
/// Payload of one data frame sent, at most: a sender's burst goes out as one frame.
const FRAME_PAYLOAD_MAX: usize = WBUF_TARGET;
/// The longest header of a frame we send: 2 bytes, 8 of extended length, 4 of mask.
const CLIENT_HEADER_MAX: usize = 14;
/// The longest header of a broker frame: 2 bytes and 8 of extended length (never masked).
const SERVER_HEADER_MAX: usize = 10;
/// A control frame's payload, at most (RFC 6455 5.5).
const CONTROL_MAX: usize = 125;
/// Bytes of pongs queued beside one data frame; beyond, pings go unanswered until the layer
/// below takes what is queued.
const CONTROL_QUEUE_MAX: usize = 1024;
/// Header of a control frame we send: 2 bytes and the mask (its payload fits 7 bits).
const CONTROL_HEADER_LEN: usize = 6;

const _: () = assert!(CONTROL_HEADER_LEN + CONTROL_MAX <= CONTROL_QUEUE_MAX);

/// Frame opcodes (RFC 6455 5.2).
mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Close status of an orderly end (RFC 6455 7.4.1).
const STATUS_NORMAL: u16 = 1000;

/// Why a WebSocket connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("WebSocket upgrade refused: HTTP status {0}")]
    Status(u16),
    #[error("WebSocket upgrade response: {0}")]
    Upgrade(&'static str),
    #[error("WebSocket upgrade response larger than {RESPONSE_MAX} bytes")]
    ResponseTooBig,
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("text frame from the broker: MQTT travels in binary frames [MQTT-6.0.0-1]")]
    Text,
}

enum State {
    /// The request is queued or sent; the response so far, and the accept value it must carry.
    Upgrading {
        response: BytesMut,
        accept: String,
    },
    Open(Reader),
    /// The broker sent a close frame: nothing more is read.
    Ended,
}

/// The read side of an open WebSocket.
struct Reader {
    frame: Frame,
    /// A fragmented binary message is in progress: continuation frames may follow.
    in_message: bool,
}

enum Frame {
    /// A header, `have` bytes of it so far.
    Header {
        have: usize,
        bytes: [u8; SERVER_HEADER_MAX],
    },
    /// Inside a binary or continuation frame: payload bytes still to come.
    Data { left: u64 },
    /// Inside a control frame: its payload so far.
    Control {
        opcode: u8,
        len: usize,
        have: usize,
        payload: [u8; CONTROL_MAX],
    },
}

impl Frame {
    fn header() -> Frame {
        Frame::Header {
            have: 0,
            bytes: [0; SERVER_HEADER_MAX],
        }
    }
}

/// One client WebSocket: its state and what waits for the layer below.
pub struct WebSocket {
    state: State,
    /// The upgrade request, then frames, not yet taken by the layer below. Holds whole frames
    /// only, so a pong can always be appended: at most one data frame, [`CONTROL_QUEUE_MAX`]
    /// bytes of pongs and the close frame. (The upgrade request, before any frame, is smaller:
    /// its path is at most [`crate::spec::WS_PATH_MAX`] bytes.)
    out: BytesMut,
    /// Bytes of pongs queued since `out` was last empty.
    pongs_queued: usize,
    close_sent: bool,
}

impl WebSocket {
    /// A WebSocket whose upgrade request (to `authority`, the Host header, and `path`) is
    /// queued, with a fresh random key.
    pub fn new(authority: &str, path: &str) -> WebSocket {
        let mut key = [0u8; KEY_LEN];
        random(&mut key);
        WebSocket::with_key(authority, path, key)
    }

    fn with_key(authority: &str, path: &str, key: [u8; KEY_LEN]) -> WebSocket {
        let key = BASE64.encode(key);
        let mut request = String::new();
        write!(
            request,
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
        )
        .expect("writing to a String cannot fail");
        WebSocket {
            state: State::Upgrading {
                response: BytesMut::new(),
                accept: accept_for(&key),
            },
            out: BytesMut::from(request.as_bytes()),
            pongs_queued: 0,
            close_sent: false,
        }
    }

    /// The `101` arrived and was checked: MQTT bytes may be framed.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// The broker sent a close frame.
    pub fn is_ended(&self) -> bool {
        matches!(self.state, State::Ended)
    }

    /// What waits for the layer below (TLS or the socket), which takes from the front.
    pub fn out(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Something waits for the layer below.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    /// Frames the front of `wbuf` as one binary frame, when open and the last frame has gone
    /// down (so at most one data frame waits here). Whether a frame was made.
    pub fn send(&mut self, wbuf: &mut BytesMut) -> bool {
        if !self.is_open() || self.close_sent || !self.out.is_empty() || wbuf.is_empty() {
            return false;
        }
        let n = wbuf.len().min(FRAME_PAYLOAD_MAX);
        put_frame(&mut self.out, opcode::BINARY, &wbuf[..n]);
        wbuf.advance(n);
        true
    }

    /// Queues the close frame (status 1000), once and only while open. Whether it was queued
    /// now.
    pub fn close(&mut self) -> bool {
        if !self.is_open() || self.close_sent {
            return false;
        }
        self.close_sent = true;
        put_frame(&mut self.out, opcode::CLOSE, &STATUS_NORMAL.to_be_bytes());
        true
    }

    /// Bytes from the broker: the upgrade response, then frames. Data payloads are appended to
    /// `mqtt`; pings queue pongs; a close frame ends the WebSocket ([`WebSocket::is_ended`]).
    pub fn input(&mut self, mut bytes: &[u8], mqtt: &mut BytesMut) -> Result<(), WsError> {
        loop {
            match &mut self.state {
                State::Upgrading { response, accept } => {
                    if bytes.is_empty() {
                        return Ok(());
                    }
                    let Some(used) = on_response(response, accept, bytes)? else {
                        return Ok(());
                    };
                    bytes = &bytes[used..];
                    self.state = State::Open(Reader {
                        frame: Frame::header(),
                        in_message: false,
                    });
                }
                State::Open(reader) => {
                    let control = reader.read(&mut bytes, mqtt)?;
                    match control {
                        None => return Ok(()),
                        Some((opcode::PING, payload)) => self.pong(&payload),
                        Some((opcode::CLOSE, _)) => {
                            self.state = State::Ended;
                            return Ok(());
                        }
                        // A pong answers nothing.
                        Some(_) => {}
                    }
                }
                State::Ended => return Ok(()),
            }
        }
    }

    /// Answers a ping with its payload, while the queue has room and no close was sent.
    fn pong(&mut self, payload: &[u8]) {
        if self.out.is_empty() {
            self.pongs_queued = 0;
        }
        let len = CONTROL_HEADER_LEN + payload.len();
        if self.close_sent || self.pongs_queued + len > CONTROL_QUEUE_MAX {
            return;
        }
        self.pongs_queued += len;
        put_frame(&mut self.out, opcode::PONG, payload);
    }
}

/// Adds `bytes` to the response so far; once it is complete and checked, how many of `bytes`
/// it used (the rest are frames).
fn on_response(
    response: &mut BytesMut,
    accept: &str,
    bytes: &[u8],
) -> Result<Option<usize>, WsError> {
    let before = response.len();
    response.extend_from_slice(bytes);
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(response) {
        Ok(httparse::Status::Partial) if response.len() > RESPONSE_MAX => {
            Err(WsError::ResponseTooBig)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Ok(httparse::Status::Complete(len)) => {
            check_response(&parsed, accept)?;
            // The bytes before were an incomplete response, so it ends in these.
            assert!(len > before);
            Ok(Some(len - before))
        }
        Err(_) => Err(WsError::Upgrade("not an HTTP/1.1 response")),
    }
}

/// RFC 6455 4.1: status 101, the upgrade headers, the accept value of our key; and the
/// subprotocol MQTT requires ([MQTT-6.0.0-4]).
fn check_response(r: &httparse::Response<'_, '_>, accept: &str) -> Result<(), WsError> {
    let code = r.code.unwrap_or(0);
    if code != 101 {
        return Err(WsError::Status(code));
    }
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim_ascii())
    };
    if !header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket")) {
        return Err(WsError::Upgrade("no \"Upgrade: websocket\""));
    }
    let upgrade_token = |v: &[u8]| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    };
    if !header("Connection").is_some_and(upgrade_token) {
        return Err(WsError::Upgrade("no \"Connection: Upgrade\""));
    }
    if header("Sec-WebSocket-Accept") != Some(accept.as_bytes()) {
        return Err(WsError::Upgrade(
            "Sec-WebSocket-Accept does not answer our key",
        ));
    }
    if header("Sec-WebSocket-Protocol") != Some(SUBPROTOCOL.as_bytes()) {
        return Err(WsError::Upgrade(
            "the subprotocol chosen is not \"mqtt\" [MQTT-6.0.0-4]",
        ));
    }
    Ok(())
}

impl Reader {
    /// Reads frames from `bytes` (advancing it), data payloads into `mqtt`, until the bytes
    /// run out (`None`) or a control frame is complete (its opcode and payload).
    fn read(
        &mut self,
        bytes: &mut &[u8],
        mqtt: &mut BytesMut,
    ) -> Result<Option<(u8, Vec<u8>)>, WsError> {
        loop {
            match &mut self.frame {
                Frame::Header {
                    have,
                    bytes: header,
                } => {
                    let need = if *have < 2 { 2 } else { header_len(header[1])? };
                    if *have < need {
                        if bytes.is_empty() {
                            return Ok(None);
                        }
                        let take = (need - *have).min(bytes.len());
                        header[*have..*have + take].copy_from_slice(&bytes[..take]);
                        *have += take;
                        *bytes = &bytes[take..];
                        continue;
                    }
                    let header = *header;
                    self.frame = self.start(&header[..need])?;
                }
                Frame::Data { left } => {
                    if *left == 0 {
                        self.frame = Frame::header();
                        continue;
                    }
                    if bytes.is_empty() {
                        return Ok(None);
                    }
                    let take = (*left).min(bytes.len() as u64) as usize;
                    mqtt.extend_from_slice(&bytes[..take]);
                    *left -= take as u64;
                    *bytes = &bytes[take..];
                }
                Frame::Control {
                    opcode,
                    len,
                    have,
                    payload,
                } => {
                    if *have < *len {
                        if bytes.is_empty() {
                            return Ok(None);
                        }
                        let take = (*len - *have).min(bytes.len());
                        payload[*have..*have + take].copy_from_slice(&bytes[..take]);
                        *have += take;
                        *bytes = &bytes[take..];
                        continue;
                    }
                    let control = (*opcode, payload[..*len].to_vec());
                    self.frame = Frame::header();
                    return Ok(Some(control));
                }
            }
        }
    }

    /// The frame a complete header starts (RFC 6455 5.2, 5.4, 5.5).
    fn start(&mut self, header: &[u8]) -> Result<Frame, WsError> {
        let fin = header[0] & 0x80 != 0;
        if header[0] & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set, no extension agreed"));
        }
        let len = match header[1] & 0x7F {
            126 => {
                let len = u16::from_be_bytes([header[2], header[3]]) as u64;
                if len < 126 {
                    return Err(WsError::Protocol("frame length not in its shortest form"));
                }
                len
            }
            127 => {
                let len = u64::from_be_bytes(header[2..10].try_into().expect("8 bytes"));
                if len >> 63 != 0 {
                    return Err(WsError::Protocol("frame length with its top bit set"));
                }
                if len <= u16::MAX as u64 {
                    return Err(WsError::Protocol("frame length not in its shortest form"));
                }
                len
            }
            len => len as u64,
        };
        let op = header[0] & 0x0F;
        match op {
            opcode::BINARY | opcode::CONTINUATION => {
                if op == opcode::BINARY && self.in_message {
                    return Err(WsError::Protocol("new message before the last one ended"));
                }
                if op == opcode::CONTINUATION && !self.in_message {
                    return Err(WsError::Protocol("continuation frame without a message"));
                }
                self.in_message = !fin;
                Ok(Frame::Data { left: len })
            }
            opcode::TEXT => Err(WsError::Text),
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                if !fin {
                    return Err(WsError::Protocol("fragmented control frame"));
                }
                if len > CONTROL_MAX as u64 {
                    return Err(WsError::Protocol("control frame longer than 125 bytes"));
                }
                Ok(Frame::Control {
                    opcode: op,
                    len: len as usize,
                    have: 0,
                    payload: [0; CONTROL_MAX],
                })
            }
            _ => Err(WsError::Protocol("unknown opcode")),
        }
    }
}

/// Length of a broker frame's header, from its second byte.
fn header_len(second: u8) -> Result<usize, WsError> {
    if second & 0x80 != 0 {
        // RFC 6455 5.1: a client closes the connection on a masked frame.
        return Err(WsError::Protocol("frame from the broker is masked"));
    }
    Ok(match second & 0x7F {
        126 => 4,
        127 => SERVER_HEADER_MAX,
        _ => 2,
    })
}

/// RFC 6455 4.2.2: base64 of the SHA-1 of the key and the GUID.
pub(super) fn accept_for(key: &str) -> String {
    let mut input = key.as_bytes().to_vec();
    input.extend_from_slice(ACCEPT_GUID.as_bytes());
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    BASE64.encode(hash.as_ref())
}

/// Appends one final frame with a fresh random mask (RFC 6455 5.3: every client frame is
/// masked, with a key the peer cannot predict).
fn put_frame(out: &mut BytesMut, op: u8, payload: &[u8]) {
    let mut mask = [0u8; 4];
    random(&mut mask);
    out.reserve(CLIENT_HEADER_MAX + payload.len());
    out.put_u8(0x80 | op);
    match payload.len() {
        n if n < 126 => out.put_u8(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.put_u8(0x80 | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(0x80 | 127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(&mask);
    let start = out.len();
    out.put_slice(payload);
    apply_mask(&mut out[start..], mask);
}

/// XORs `bytes` with the repeated mask, eight bytes at a time.
fn apply_mask(bytes: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = bytes.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let v = u64::from_ne_bytes((&*chunk).try_into().expect("8 bytes")) ^ wide;
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, so at mask byte 0.
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Fills `bytes` from the system's secure generator (aws-lc's, which rustls already uses).
pub(super) fn random(bytes: &mut [u8]) {
    aws_lc_rs::rand::fill(bytes).expect("the system random generator works");
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// The key of RFC 6455's own example (1.3): "the sample nonce".
    const SAMPLE_KEY: [u8; KEY_LEN] = *b"the sample nonce";
    /// Its accept value, as printed in RFC 6455 1.3.
    const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn upgrading() -> WebSocket {
        WebSocket::with_key("127.0.0.1:1883", "/mqtt", SAMPLE_KEY)
    }

    fn response(accept: &str, protocol: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n"
        )
        .into_bytes()
    }

    fn open() -> WebSocket {
        let mut ws = upgrading();
        ws.input(&response(SAMPLE_ACCEPT, "mqtt"), &mut BytesMut::new())
            .unwrap();
        assert!(ws.is_open());
        ws.out.clear();
        ws
    }

    /// Decodes one frame we sent: (first byte, payload unmasked, frame length).
    pub(in crate::worker::link) fn unmask(frame: &[u8]) -> (u8, Vec<u8>, usize) {
        assert_eq!(frame[1] & 0x80, 0x80, "client frames are masked");
        let (len, at) = match frame[1] & 0x7F {
            126 => (u16::from_be_bytes([frame[2], frame[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let mask = [frame[at], frame[at + 1], frame[at + 2], frame[at + 3]];
        let body = &frame[at + 4..at + 4 + len];
        let payload = body
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        (frame[0], payload, at + 4 + len)
    }

    /// Proves the request carries every header RFC 6455 4.1 and MQTT 6.0 require, and that
    /// the accept value of RFC 6455's sample key is the one the RFC prints.
    #[test]
    fn upgrade_request() {
        let mut ws = upgrading();
        let request = String::from_utf8(ws.out().to_vec()).unwrap();
        assert_eq!(
            request,
            "GET /mqtt HTTP/1.1\r\n\
             Host: 127.0.0.1:1883\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        );
        assert_eq!(accept_for("dGhlIHNhbXBsZSBub25jZQ=="), SAMPLE_ACCEPT);
        assert!(!ws.is_open());
    }

    /// Proves nothing is framed before the 101, and the response is understood however it is
    /// split, with the frame that follows it in the same bytes read as MQTT bytes.
    #[test]
    fn response_split_anywhere() {
        let mut bytes = response(SAMPLE_ACCEPT, "mqtt");
        bytes.extend_from_slice(&[
            0x82, 0x02, // FIN, binary, unmasked, length 2
            0x20, 0x00, // CONNACK's first bytes
        ]);
        for split in 0..bytes.len() {
            let mut ws = upgrading();
            let mut wbuf = BytesMut::from(&b"\x10\x00"[..]);
            let mut mqtt = BytesMut::new();
            ws.input(&bytes[..split], &mut mqtt).unwrap();
            if !ws.is_open() {
                assert!(!ws.send(&mut wbuf), "framed before the 101 ({split})");
            }
            ws.input(&bytes[split..], &mut mqtt).unwrap();
            assert!(ws.is_open(), "split at {split}");
            assert_eq!(&mqtt[..], [0x20, 0x00], "split at {split}");
        }
    }

    /// Proves each refusal of RFC 6455 4.1 and MQTT 6.0: a status other than 101, a wrong
    /// accept value, a missing or different subprotocol, missing upgrade headers, an endless
    /// response.
    #[test]
    fn response_refusals() {
        let refused = |bytes: &[u8]| upgrading().input(bytes, &mut BytesMut::new());
        assert_eq!(
            refused(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            Err(WsError::Status(404))
        );
        assert!(matches!(
            refused(&response("AAAAAAAAAAAAAAAAAAAAAAAAAAA=", "mqtt")),
            Err(WsError::Upgrade(m)) if m.contains("Accept")
        ));
        assert!(matches!(
            refused(&response(SAMPLE_ACCEPT, "mqttv3.1")),
            Err(WsError::Upgrade(m)) if m.contains("MQTT-6.0.0-4")
        ));
        let no_protocol = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\n\r\n"
        );
        assert!(refused(no_protocol.as_bytes()).is_err());
        let no_upgrade = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {SAMPLE_ACCEPT}\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
        );
        assert!(refused(no_upgrade.as_bytes()).is_err());
        assert_eq!(
            refused(b"SSH-2.0-x\r\n\r\n"),
            Err(WsError::Upgrade("not an HTTP/1.1 response"))
        );
        let endless = [
            b"HTTP/1.1 101 Switching Protocols\r\nX: ".as_slice(),
            &[b'a'; RESPONSE_MAX],
        ]
        .concat();
        assert_eq!(refused(&endless), Err(WsError::ResponseTooBig));
    }

    /// Proves MQTT bytes go out as masked binary frames, in all three length forms, one frame
    /// per call, and at most FRAME_PAYLOAD_MAX bytes each.
    #[test]
    fn frames_out_are_masked_binary() {
        let mut ws = open();
        let mut wbuf = BytesMut::from(&[0xC0, 0x00][..]); // PINGREQ
        assert!(ws.send(&mut wbuf));
        assert!(wbuf.is_empty());
        let out = ws.out().split().freeze();
        assert_eq!(out[0], 0x82); // FIN, binary
        assert_eq!(out[1], 0x80 | 2); // masked, length 2
        assert_eq!(unmask(&out), (0x82, vec![0xC0, 0x00], 2 + 4 + 2));

        let body: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut wbuf = BytesMut::from(&body[..]);
        assert!(ws.send(&mut wbuf));
        let out = ws.out().split().freeze();
        assert_eq!(&out[..4], [0x82, 0x80 | 126, 0x01, 0x2C]); // 16-bit length 300
        assert_eq!(unmask(&out).1, body);

        let big = vec![7u8; FRAME_PAYLOAD_MAX + 10];
        let mut wbuf = BytesMut::from(&big[..]);
        assert!(ws.send(&mut wbuf));
        assert!(!ws.send(&mut wbuf), "one data frame waits at a time");
        assert_eq!(wbuf.len(), 10);
        let (_, payload, len) = unmask(ws.out());
        assert_eq!(payload.len(), FRAME_PAYLOAD_MAX);
        assert_eq!(len, ws.out().len());
        ws.out().clear();
        assert!(ws.send(&mut wbuf));
        assert_eq!(unmask(ws.out()).1, vec![7u8; 10]);
    }

    /// Proves a 64-bit length is produced for large payloads and the mask covers every byte.
    #[test]
    fn mask_covers_every_byte() {
        let mut out = BytesMut::new();
        let payload = vec![0xAAu8; u16::MAX as usize + 3];
        put_frame(&mut out, opcode::BINARY, &payload);
        assert_eq!(out[1], 0x80 | 127);
        assert_eq!(&out[2..10], (payload.len() as u64).to_be_bytes());
        assert_eq!(unmask(&out).1, payload);
    }

    /// Proves broker frames are read in any split: a short binary frame, a 16-bit length,
    /// a fragmented message (binary without FIN, then a continuation), and a ping in the
    /// middle of it, which queues a pong with the same payload.
    #[test]
    fn frames_in_split_anywhere() {
        let bytes = [
            0x82, 0x02, 0x30, 0x00, // FIN, binary, length 2: PUBLISH's first bytes
            0x02, 0x7E, 0x00, 0x80, // binary without FIN, 16-bit length 128
        ]
        .iter()
        .copied()
        .chain([0x11; 128]) // its payload
        .chain([0x89, 0x02, b'h', b'i']) // FIN, ping, length 2, "hi"
        .chain([0x80, 0x01, 0x22]) // FIN, continuation, length 1
        .chain([0x8A, 0x00]) // FIN, pong, length 0: answers nothing
        .collect::<Vec<u8>>();
        let mut expected = vec![0x30, 0x00];
        expected.extend_from_slice(&[0x11; 128]);
        expected.push(0x22);
        for split in 0..=bytes.len() {
            let mut ws = open();
            let mut mqtt = BytesMut::new();
            ws.input(&bytes[..split], &mut mqtt).unwrap();
            ws.input(&bytes[split..], &mut mqtt).unwrap();
            assert_eq!(&mqtt[..], expected, "split at {split}");
            let (first, payload, len) = unmask(ws.out());
            assert_eq!(first, 0x8A, "a pong ({split})");
            assert_eq!(payload, b"hi");
            assert_eq!(len, ws.out().len(), "one pong only ({split})");
            assert!(!ws.is_ended());
        }
    }

    /// Proves a 64-bit length is read, and a close frame (even with nothing after its header)
    /// ends the WebSocket, with later bytes ignored.
    #[test]
    fn long_frame_then_close() {
        let len = u16::MAX as u64 + 1;
        let mut bytes = vec![0x82, 127]; // FIN, binary, 64-bit length
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend(std::iter::repeat_n(0x55, len as usize));
        bytes.extend_from_slice(&[0x88, 0x00]); // FIN, close, no status
        bytes.extend_from_slice(&[0x82, 0x01, 0x99]); // after the close: ignored
        let mut ws = open();
        let mut mqtt = BytesMut::new();
        ws.input(&bytes[..9], &mut mqtt).unwrap();
        ws.input(&bytes[9..bytes.len() - 3], &mut mqtt).unwrap();
        assert!(ws.is_ended());
        ws.input(&bytes[bytes.len() - 3..], &mut mqtt).unwrap();
        assert_eq!(mqtt.len(), len as usize);
        assert!(mqtt.iter().all(|&b| b == 0x55));
    }

    /// Proves the broker frames RFC 6455 and MQTT 6.0 forbid are refused.
    #[test]
    fn frame_refusals() {
        let refused = |bytes: &[u8]| open().input(bytes, &mut BytesMut::new());
        let protocol = |r: Result<(), WsError>| matches!(r, Err(WsError::Protocol(_)));
        assert!(protocol(refused(&[0x82, 0x81, 1, 2, 3, 4, 0]))); // masked
        assert_eq!(refused(&[0x81, 0x01, b'a']), Err(WsError::Text)); // text
        assert!(protocol(refused(&[0xC2, 0x00]))); // RSV1 set
        assert!(protocol(refused(&[0x80, 0x00]))); // continuation without a message
        assert!(protocol(refused(&[0x02, 0x00, 0x82, 0x00]))); // binary inside a message
        assert!(protocol(refused(&[0x09, 0x00]))); // ping without FIN
        assert!(protocol(refused(&[0x89, 0x7E, 0x00, 0x7E]))); // ping of 126 bytes
        assert!(protocol(refused(&[0x82, 0x7E, 0x00, 0x05]))); // 16-bit length for 5
        assert!(protocol(refused(&[0x83, 0x00]))); // opcode 3
        let top_bit = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert!(protocol(refused(&top_bit)));
    }

    /// Proves the close frame is queued once, carries status 1000, and stops data frames and
    /// pongs; and that pongs stop at the queue's bound.
    #[test]
    fn close_and_bounds() {
        let mut ws = open();
        let ping = [0x89, 0x7D]
            .iter()
            .copied()
            .chain([0u8; 125])
            .collect::<Vec<u8>>();
        for _ in 0..100 {
            ws.input(&ping, &mut BytesMut::new()).unwrap();
        }
        assert!(ws.out().len() <= CONTROL_QUEUE_MAX);
        assert!(ws.out().len() > CONTROL_QUEUE_MAX - CONTROL_HEADER_LEN - CONTROL_MAX);
        ws.out().clear();
        ws.input(&ping, &mut BytesMut::new()).unwrap();
        assert!(ws.has_output(), "room again once the queue went down");
        ws.out().clear();
        ws.out().clear();
        assert!(ws.close());
        assert!(!ws.close());
        let (first, payload, _) = unmask(ws.out());
        assert_eq!(first, 0x88);
        assert_eq!(payload, 1000u16.to_be_bytes());
        ws.out().clear();
        assert!(!ws.send(&mut BytesMut::from(&b"x"[..])));
        ws.input(&ping, &mut BytesMut::new()).unwrap();
        assert!(ws.out().is_empty());
    }
}
