//! MQTT over WebSocket (RFC 6455, and MQTT's chapter 6): the HTTP upgrade, then binary frames
//! whose payloads are one byte stream of MQTT packets (a packet may span frames, a frame may
//! hold several packets).
//!
//! Reading unmasks payloads in place and passes them on without buffering them; only a frame
//! header split across reads (at most 14 bytes) and a control frame's payload (at most 125) are
//! kept. Writing puts a frame header in front of the core's output slices, so a plain WebSocket
//! connection writes with the same vectored, zero-copy sends as a plain MQTT one; inside TLS the
//! frame is built in the plaintext that is encrypted anyway ([`WebSocket::frame_into`]).
//!
//! Every violation closes the connection with the status code RFC 6455 names: 1002 for an
//! unmasked, reserved-bit or malformed frame, 1003 for text frames ([MQTT-6.0.0-1]), 1009 for a
//! frame larger than the endpoint's MaxMessageSize.

use std::io::IoSlice;

use base64::Engine;
use bytes::{Buf, BufMut, BytesMut};
use ironsight_core::outbuf::OutBuf;

/// The largest upgrade request accepted; browsers send well under 2 KiB.
pub const REQUEST_MAX: usize = 8 * 1024;
/// Headers parsed in an upgrade request.
const HEADERS_MAX: usize = 32;
/// A control frame's payload, at most (RFC 6455 5.5).
const CONTROL_MAX: usize = 125;
/// Control bytes queued for a peer that does not read, beyond which pings go unanswered.
const CONTROL_QUEUE_MAX: usize = 1024;
/// Subprotocols ironsight speaks, in its order of preference ([MQTT-6.0.0-3]; `mqttv3.1` is
/// what MQTT 3.1 clients such as older Paho libraries offer).
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];
/// RFC 6455 1.3: appended to the client's key before hashing for Sec-WebSocket-Accept.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a WebSocket connection ends. Each carries what was queued for the peer (an HTTP error
/// response or a close frame), which goes out before the socket closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("HTTP request refused: {0}")]
    Http(&'static str),
    #[error("WebSocket protocol error: {0}")]
    Protocol(&'static str),
    #[error("text frame: MQTT travels in binary frames [MQTT-6.0.0-1]")]
    Text,
    #[error("WebSocket frame larger than MaxMessageSize")]
    TooBig,
    #[error("the client closed the WebSocket (code {0})")]
    Closed(u16),
}

/// Frame opcodes (RFC 6455 5.2).
mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// Close status codes (RFC 6455 7.4.1).
mod status {
    pub const NORMAL: u16 = 1000;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const TOO_BIG: u16 = 1009;
}

enum Phase {
    /// Before the upgrade: the request so far.
    Upgrading(BytesMut),
    Open(Reader),
}

/// The read side of an open WebSocket.
struct Reader {
    state: FrameState,
    /// A fragmented binary message is in progress: continuation frames may follow.
    in_message: bool,
}

enum FrameState {
    /// Collecting a frame header: its bytes so far.
    Header { buf: [u8; 14], len: u8 },
    /// Inside a frame's payload.
    Payload {
        left: u64,
        mask: [u8; 4],
        /// Position in the mask of the next payload byte.
        at: u8,
        /// The opcode of a control frame, whose payload is collected; `None` for data.
        control: Option<u8>,
    },
}

/// Control frames: the payload of the one being read, and what is queued for the peer.
#[derive(Default)]
struct Control {
    /// The payload of the control frame being read.
    input: Vec<u8>,
    /// Wire bytes to send at the next frame boundary: the upgrade response, pongs, a close.
    output: BytesMut,
    /// A close frame was queued: nothing follows it.
    closed: bool,
}

impl Control {
    fn on_frame(&mut self, op: u8) -> Result<(), WsError> {
        match op {
            opcode::PING => {
                // A peer may flood pings without reading; RFC 6455 5.5.3 lets us skip pongs
                // (only the newest needs an answer), so the queue stays bounded.
                if !self.closed && self.output.len() < CONTROL_QUEUE_MAX {
                    put_frame(&mut self.output, opcode::PONG, &self.input);
                }
                Ok(())
            }
            opcode::PONG => Ok(()),
            opcode::CLOSE => match self.input.as_slice() {
                [] => Err(WsError::Closed(status::NORMAL)),
                [hi, lo, ..] => Err(WsError::Closed(u16::from_be_bytes([*hi, *lo]))),
                [_] => Err(WsError::Protocol("close frame with a one-byte payload")),
            },
            _ => unreachable!("frame_header admits only known control opcodes"),
        }
    }

    fn close(&mut self, code: u16) {
        if !self.closed {
            self.closed = true;
            put_frame(&mut self.output, opcode::CLOSE, &code.to_be_bytes());
        }
    }
}

impl Reader {
    fn new() -> Reader {
        Reader {
            state: FrameState::Header {
                buf: [0; 14],
                len: 0,
            },
            in_message: false,
        }
    }

    /// Reads frames from `data`: data payloads unmasked to `deliver`, control frames handled.
    fn read(
        &mut self,
        mut data: &mut [u8],
        frame_max: u32,
        control: &mut Control,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<(), WsError> {
        loop {
            match &mut self.state {
                FrameState::Header { buf, len } => {
                    if data.is_empty() {
                        return Ok(());
                    }
                    let have = usize::from(*len);
                    let take = data.len().min(buf.len() - have);
                    buf[have..have + take].copy_from_slice(&data[..take]);
                    let Some((header_len, next)) =
                        frame_header(&buf[..have + take], frame_max, self.in_message)?
                    else {
                        *len = (have + take) as u8;
                        data = &mut data[take..];
                        continue;
                    };
                    if let FrameState::Payload { control: None, .. } = next {
                        self.in_message = buf[0] & 0x80 == 0; // not FIN: continuations follow
                    }
                    data = &mut data[header_len - have..];
                    self.state = next;
                    control.input.clear();
                }
                FrameState::Payload {
                    left,
                    mask,
                    at,
                    control: op,
                } => {
                    let take = data.len().min(usize::try_from(*left).unwrap_or(usize::MAX));
                    let (payload, rest) = std::mem::take(&mut data).split_at_mut(take);
                    data = rest;
                    for (i, byte) in payload.iter_mut().enumerate() {
                        *byte ^= mask[(usize::from(*at) + i) % 4];
                    }
                    *at = ((usize::from(*at) + take) % 4) as u8;
                    *left -= take as u64;
                    match op {
                        None if !payload.is_empty() => deliver(payload),
                        None => {}
                        Some(_) => control.input.extend_from_slice(payload),
                    }
                    if *left > 0 {
                        return Ok(()); // the payload continues in the next read
                    }
                    let op = *op;
                    self.state = FrameState::Header {
                        buf: [0; 14],
                        len: 0,
                    };
                    if let Some(op) = op {
                        control.on_frame(op)?;
                    }
                }
            }
        }
    }
}

pub struct WebSocket {
    phase: Phase,
    control: Control,
    /// The header of the data frame being sent, and how much of it is out.
    header: [u8; 10],
    header_len: u8,
    header_sent: u8,
    /// Payload bytes of the data frame being sent that have not gone out yet.
    frame_left: usize,
}

impl Default for WebSocket {
    fn default() -> Self {
        WebSocket {
            phase: Phase::Upgrading(BytesMut::new()),
            control: Control::default(),
            header: [0; 10],
            header_len: 0,
            header_sent: 0,
            frame_left: 0,
        }
    }
}

impl WebSocket {
    /// Bytes from the peer: the upgrade request, then frames. MQTT bytes go to `deliver`.
    /// `frame_max` is the endpoint's MaxMessageSize. On an error, the HTTP response or close
    /// frame that tells the peer why is queued.
    pub fn read(
        &mut self,
        mut data: &mut [u8],
        frame_max: u32,
        deliver: &mut dyn FnMut(&[u8]),
    ) -> Result<(), WsError> {
        if let Phase::Upgrading(request) = &mut self.phase {
            let Some(used) = upgrade(request, data, &mut self.control.output)? else {
                return Ok(());
            };
            data = &mut data[used..];
            self.phase = Phase::Open(Reader::new());
        }
        let Phase::Open(reader) = &mut self.phase else {
            unreachable!("upgraded above")
        };
        let result = reader.read(data, frame_max, &mut self.control, deliver);
        if let Err(error) = &result {
            self.control.close(match error {
                WsError::Text => status::UNSUPPORTED_DATA,
                WsError::TooBig => status::TOO_BIG,
                WsError::Closed(code) => *code,
                WsError::Protocol(_) | WsError::Http(_) => status::PROTOCOL_ERROR,
            });
        }
        result
    }

    /// The goodbye of a connection the broker closes: a normal close frame, if the upgrade
    /// happened and none was sent yet.
    pub fn goodbye(&mut self) {
        if self.open() {
            self.control.close(status::NORMAL);
        }
    }

    /// Whether a data frame is partly sent (nothing else may go out before its end).
    fn in_frame(&self) -> bool {
        self.frame_left > 0 || self.header_sent < self.header_len
    }

    /// Whether the upgrade has been answered and no close sent: MQTT output may flow.
    fn open(&self) -> bool {
        matches!(self.phase, Phase::Open(_)) && !self.control.closed
    }

    // ----- writing over a plain socket: a header in front of the output's slices -----

    /// Starts a data frame for the output, unless a frame is in progress or control bytes
    /// must go first.
    pub fn prepare(&mut self, out: &OutBuf) {
        if self.in_frame() || !self.control.output.is_empty() || out.is_empty() || !self.open() {
            return;
        }
        let len = out.len();
        let mut header = BytesMut::with_capacity(10);
        put_header(&mut header, opcode::BINARY, len);
        self.header[..header.len()].copy_from_slice(&header);
        self.header_len = header.len() as u8;
        self.header_sent = 0;
        self.frame_left = len;
    }

    pub fn has_output(&self, out: &OutBuf) -> bool {
        self.in_frame() || !self.control.output.is_empty() || (self.open() && !out.is_empty())
    }

    pub fn io_slices<'a>(&'a self, out: &'a OutBuf, slices: &mut [IoSlice<'a>]) -> usize {
        if !self.in_frame() {
            if self.control.output.is_empty() || slices.is_empty() {
                return 0;
            }
            slices[0] = IoSlice::new(&self.control.output);
            return 1;
        }
        let mut used = 0;
        let header = &self.header[usize::from(self.header_sent)..usize::from(self.header_len)];
        if !header.is_empty() {
            slices[0] = IoSlice::new(header);
            used = 1;
        }
        used + out.io_slices_upto(&mut slices[used..], self.frame_left)
    }

    pub fn advance(&mut self, out: &mut OutBuf, mut n: usize) {
        if !self.in_frame() {
            self.control.output.advance(n);
            return;
        }
        let header_left = usize::from(self.header_len - self.header_sent);
        let from_header = n.min(header_left);
        self.header_sent += from_header as u8;
        n -= from_header;
        assert!(n <= self.frame_left, "advanced past the frame");
        out.advance(n);
        self.frame_left -= n;
    }

    // ----- writing inside TLS: the frame is built in the plaintext to encrypt -----

    /// Appends control bytes and then one data frame of at most `max` output bytes to
    /// `plain`, taking them from `out`.
    pub fn frame_into(&mut self, out: &mut OutBuf, plain: &mut BytesMut, max: usize) {
        plain.extend_from_slice(&self.control.output);
        self.control.output.clear();
        if !self.open() || out.is_empty() {
            return;
        }
        let len = out.len().min(max);
        put_header(plain, opcode::BINARY, len);
        let mut left = len;
        while left > 0 {
            let chunk = out.first_chunk();
            let take = chunk.len().min(left);
            plain.extend_from_slice(&chunk[..take]);
            out.advance(take);
            left -= take;
        }
    }

    /// Whether anything is waiting that [`WebSocket::frame_into`] would produce.
    pub fn has_plaintext(&self, out: &OutBuf) -> bool {
        !self.control.output.is_empty() || (self.open() && !out.is_empty())
    }

    /// Frees what an idle connection does not need.
    pub fn release_buffers(&mut self) {
        if self.control.output.is_empty() {
            self.control.output = BytesMut::new();
        }
        self.control.input = Vec::new();
    }
}

/// Parses a frame header from `buf` (RFC 6455 5.2). `None`: more bytes are needed.
fn frame_header(
    buf: &[u8],
    frame_max: u32,
    in_message: bool,
) -> Result<Option<(usize, FrameState)>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let (fin, rsv, op) = (b0 & 0x80 != 0, b0 & 0x70, b0 & 0x0F);
    if rsv != 0 {
        return Err(WsError::Protocol(
            "reserved bits set (no extension was agreed)",
        ));
    }
    if b1 & 0x80 == 0 {
        return Err(WsError::Protocol("client frame not masked"));
    }
    let (len_bytes, short) = match b1 & 0x7F {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let header_len = 2 + len_bytes + 4;
    if buf.len() < header_len {
        return Ok(None);
    }
    let len = short.unwrap_or_else(|| {
        buf[2..2 + len_bytes]
            .iter()
            .fold(0u64, |acc, &b| acc << 8 | u64::from(b))
    });
    let minimal = match len_bytes {
        2 => len >= 126,
        8 => len > 0xFFFF && len >> 63 == 0,
        _ => true,
    };
    if !minimal {
        return Err(WsError::Protocol("frame length not in its shortest form"));
    }
    let control = match op {
        opcode::CLOSE | opcode::PING | opcode::PONG => {
            if !fin || len > CONTROL_MAX as u64 {
                return Err(WsError::Protocol(
                    "control frame fragmented or over 125 bytes",
                ));
            }
            Some(op)
        }
        opcode::BINARY if in_message => {
            return Err(WsError::Protocol("new message before the last one ended"))
        }
        opcode::CONTINUATION if !in_message => {
            return Err(WsError::Protocol("continuation frame without a message"))
        }
        opcode::BINARY | opcode::CONTINUATION => {
            if len > u64::from(frame_max) {
                return Err(WsError::TooBig);
            }
            None
        }
        opcode::TEXT => return Err(WsError::Text),
        _ => return Err(WsError::Protocol("unknown opcode")),
    };
    let mask = buf[2 + len_bytes..header_len]
        .try_into()
        .expect("four mask bytes");
    Ok(Some((
        header_len,
        FrameState::Payload {
            left: len,
            mask,
            at: 0,
            control,
        },
    )))
}

/// An unmasked (server-to-client) frame header for a final frame of `len` bytes.
fn put_header(buf: &mut BytesMut, op: u8, len: usize) {
    buf.put_u8(0x80 | op);
    match len {
        0..=125 => buf.put_u8(len as u8),
        126..=0xFFFF => {
            buf.put_u8(126);
            buf.put_u16(len as u16);
        }
        _ => {
            buf.put_u8(127);
            buf.put_u64(len as u64);
        }
    }
}

fn put_frame(buf: &mut BytesMut, op: u8, payload: &[u8]) {
    put_header(buf, op, payload.len());
    buf.extend_from_slice(payload);
}

/// Reads the upgrade request; answers it into `reply`. Returns how many bytes of `data` the
/// request took once it is complete and accepted.
fn upgrade(
    request: &mut BytesMut,
    data: &[u8],
    reply: &mut BytesMut,
) -> Result<Option<usize>, WsError> {
    let before = request.len();
    request.extend_from_slice(&data[..data.len().min(REQUEST_MAX + 1 - before)]);
    let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut parsed = httparse::Request::new(&mut headers);
    let refuse = |reply: &mut BytesMut, code, reason, extra: &str, why: &'static str| {
        http_error(reply, code, reason, extra, why);
        Err(WsError::Http(why))
    };
    let end = match parsed.parse(request) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) if request.len() > REQUEST_MAX => {
            return refuse(
                reply,
                431,
                "Request Header Fields Too Large",
                "",
                "request too large",
            )
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return refuse(
                reply,
                431,
                "Request Header Fields Too Large",
                "",
                "too many headers",
            )
        }
        Err(_) => return refuse(reply, 400, "Bad Request", "", "malformed HTTP request"),
    };
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if parsed.method != Some("GET") {
        return refuse(
            reply,
            405,
            "Method Not Allowed",
            "Allow: GET\r\n",
            "not a GET request",
        );
    }
    if parsed.version != Some(1)
        || !has_token("Upgrade", "websocket")
        || !has_token("Connection", "upgrade")
    {
        return refuse(
            reply,
            426,
            "Upgrade Required",
            "Upgrade: websocket\r\n",
            "not a WebSocket upgrade",
        );
    }
    if header("Sec-WebSocket-Version") != Some("13") {
        return refuse(
            reply,
            426,
            "Upgrade Required",
            "Sec-WebSocket-Version: 13\r\n",
            "WebSocket version other than 13",
        );
    }
    let key = header("Sec-WebSocket-Key")
        .map(str::trim)
        .unwrap_or_default();
    let engine = base64::engine::general_purpose::STANDARD;
    if engine.decode(key).map_or(true, |k| k.len() != 16) {
        return refuse(
            reply,
            400,
            "Bad Request",
            "",
            "missing or malformed Sec-WebSocket-Key",
        );
    }
    let offered: Vec<&str> = header("Sec-WebSocket-Protocol")
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let Some(subprotocol) = SUBPROTOCOLS.iter().find(|p| offered.contains(p)) else {
        return refuse(
            reply,
            400,
            "Bad Request",
            "",
            "the client must offer the WebSocket subprotocol mqtt [MQTT-6.0.0-3]",
        );
    };
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{ACCEPT_GUID}").as_bytes(),
    );
    let accept = engine.encode(digest.as_ref());
    reply.extend_from_slice(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
        )
        .as_bytes(),
    );
    *request = BytesMut::new();
    Ok(Some(end - before))
}

/// An HTTP error answer, after which the connection closes. A 426 names the protocol to
/// upgrade to, which also puts `upgrade` in its Connection header (RFC 9110 7.8).
fn http_error(reply: &mut BytesMut, code: u16, reason: &str, extra: &str, why: &str) {
    let body =
        format!("{why}.\nThis port speaks MQTT, also over WebSocket (subprotocol \"mqtt\").\n");
    let connection = if code == 426 {
        "upgrade, close"
    } else {
        "close"
    };
    reply.extend_from_slice(
        format!(
            "HTTP/1.1 {code} {reason}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

#[cfg(test)]
mod tests;
