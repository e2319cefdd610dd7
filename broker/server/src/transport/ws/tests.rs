use super::*;
use bytes::BufMut;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ=="; // RFC 6455 1.3's example key

fn request(extra: &str) -> String {
    format!(
        "GET /mqtt HTTP/1.1\r\nHost: broker\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// A client frame: masked with `mask`, as a client must send it.
fn client_frame(fin: bool, op: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | op];
    match payload.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Feeds `chunks` to the WebSocket; returns the MQTT bytes delivered and the last result.
fn feed(ws: &mut WebSocket, chunks: &[&[u8]]) -> (Vec<u8>, Result<(), WsError>) {
    let mut delivered = Vec::new();
    let mut result = Ok(());
    for chunk in chunks {
        let mut data = chunk.to_vec();
        result = ws.read(&mut data, 1024, &mut |b| delivered.extend_from_slice(b));
        if result.is_err() {
            break;
        }
    }
    (delivered, result)
}

fn reply(ws: &WebSocket) -> String {
    String::from_utf8_lossy(&ws.control.output).into_owned()
}

fn upgraded() -> WebSocket {
    let mut ws = WebSocket::default();
    let (_, result) = feed(
        &mut ws,
        &[request("Sec-WebSocket-Protocol: mqtt\r\n").as_bytes()],
    );
    result.unwrap();
    ws.control.output.clear();
    ws
}

/// Proves the upgrade answer of RFC 6455 1.3's example (accept key s3pPLMBi...) with the
/// subprotocol mqtt chosen from the client's list.
#[test]
fn upgrade_answers_101_with_the_accept_key() {
    let mut ws = WebSocket::default();
    let (_, result) = feed(
        &mut ws,
        &[request("Sec-WebSocket-Protocol: chat, mqtt\r\n").as_bytes()],
    );
    assert_eq!(result, Ok(()));
    assert_eq!(
        reply(&ws),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
}

/// Proves a request split byte by byte is assembled, and a frame following it in the same
/// bytes is read.
#[test]
fn upgrade_split_byte_by_byte_then_a_frame() {
    let mut ws = WebSocket::default();
    let mut bytes = request("Sec-WebSocket-Protocol: mqttv3.1\r\n").into_bytes();
    bytes.extend(client_frame(true, 0x2, b"\xC0\x00", [1, 2, 3, 4]));
    let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
    let (delivered, result) = feed(&mut ws, &chunks);
    assert_eq!(result, Ok(()));
    assert!(reply(&ws).contains("Sec-WebSocket-Protocol: mqttv3.1\r\n"));
    assert_eq!(delivered, b"\xC0\x00", "PINGREQ");
}

#[test]
fn requests_that_are_not_upgrades_get_http_errors() {
    let cases = [
        (
            request(""),
            "HTTP/1.1 400 Bad Request",
            WsError::Http("the client must offer the WebSocket subprotocol mqtt [MQTT-6.0.0-3]"),
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
            "HTTP/1.1 426 Upgrade Required",
            WsError::Http("not a WebSocket upgrade"),
        ),
        (
            "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_string(),
            "HTTP/1.1 405 Method Not Allowed",
            WsError::Http("not a GET request"),
        ),
        (
            request("Sec-WebSocket-Protocol: mqtt\r\n").replace("Version: 13", "Version: 8"),
            "HTTP/1.1 426 Upgrade Required",
            WsError::Http("WebSocket version other than 13"),
        ),
        (
            request("Sec-WebSocket-Protocol: mqtt\r\n").replace(KEY, "c2hvcnQ="),
            "HTTP/1.1 400 Bad Request",
            WsError::Http("missing or malformed Sec-WebSocket-Key"),
        ),
        (
            "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_string(),
            "HTTP/1.1 400 Bad Request",
            WsError::Http("malformed HTTP request"),
        ),
    ];
    for (text, status, error) in cases {
        let mut ws = WebSocket::default();
        let (_, result) = feed(&mut ws, &[text.as_bytes()]);
        assert_eq!(result, Err(error), "{text}");
        let answer = reply(&ws);
        assert!(answer.starts_with(status), "{text}: {answer}");
        let closes = answer.contains("Connection: close\r\n")
            || answer.contains("Connection: upgrade, close\r\n");
        assert!(closes, "{answer}");
    }
}

#[test]
fn an_endless_request_is_refused_at_the_limit() {
    let mut ws = WebSocket::default();
    let header = format!("GET / HTTP/1.1\r\nX-Filler: {}", "a".repeat(REQUEST_MAX));
    let (_, result) = feed(&mut ws, &[header.as_bytes()]);
    assert_eq!(result, Err(WsError::Http("request too large")));
    assert!(reply(&ws).starts_with("HTTP/1.1 431 "));
}

/// Proves payloads are unmasked and passed on across frame and read boundaries: a packet
/// split over two frames, two packets in one frame, a fragmented message, each read split at
/// every byte.
#[test]
fn frames_carry_one_byte_stream() {
    let mut bytes = client_frame(false, 0x2, b"\x30\x05\x00\x01t", [9, 8, 7, 6]); // PUBLISH starts
    bytes.extend(client_frame(true, 0x0, b"ab", [1, 1, 1, 1])); // ... and ends in a continuation
    bytes.extend(client_frame(
        true,
        0x2,
        b"\xC0\x00\xC0\x00",
        [0, 0xFF, 0, 0xFF],
    )); // two PINGREQs
    bytes.extend(client_frame(true, 0x2, b"", [5, 5, 5, 5])); // empty frames are allowed
    for split in 1..bytes.len() {
        let mut ws = upgraded();
        let (delivered, result) = feed(&mut ws, &[&bytes[..split], &bytes[split..]]);
        assert_eq!(result, Ok(()), "split at {split}");
        assert_eq!(
            delivered, b"\x30\x05\x00\x01tab\xC0\x00\xC0\x00",
            "split at {split}"
        );
    }
}

#[test]
fn ping_is_answered_and_close_is_echoed() {
    let mut ws = upgraded();
    let (_, result) = feed(&mut ws, &[&client_frame(true, 0x9, b"hi", [3, 1, 4, 1])]);
    assert_eq!(result, Ok(()));
    assert_eq!(
        &ws.control.output[..],
        b"\x8A\x02hi",
        "pong with the ping's payload"
    );
    ws.control.output.clear();
    let (_, result) = feed(
        &mut ws,
        &[&client_frame(
            true,
            0x8,
            &1001u16.to_be_bytes(),
            [7, 7, 7, 7],
        )],
    );
    assert_eq!(result, Err(WsError::Closed(1001)));
    assert_eq!(
        &ws.control.output[..],
        b"\x88\x02\x03\xE9",
        "close 1001 echoed"
    );
}

/// Proves a client that floods pings without reading cannot grow the pongs waiting for it.
#[test]
fn a_ping_flood_is_bounded() {
    let mut ws = upgraded();
    let ping = client_frame(true, 0x9, &[7; 125], [1, 2, 3, 4]);
    let flood: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 1000)
        .collect();
    let (_, result) = feed(&mut ws, &[&flood]);
    assert_eq!(result, Ok(()));
    assert!(
        ws.control.output.len() <= CONTROL_QUEUE_MAX + 127,
        "{}",
        ws.control.output.len()
    );
}

/// Proves each violation closes with the status RFC 6455 gives it.
#[test]
fn violations_close_with_their_status() {
    let unmasked = [0x82u8, 0x02, 0xC0, 0x00];
    let cases: Vec<(Vec<u8>, WsError, u16)> = vec![
        (
            unmasked.to_vec(),
            WsError::Protocol("client frame not masked"),
            1002,
        ),
        (
            client_frame(true, 0x1, b"text", [1, 2, 3, 4]),
            WsError::Text,
            1003,
        ),
        (
            client_frame(true, 0x2, &[0; 1025], [1, 2, 3, 4]),
            WsError::TooBig,
            1009,
        ),
        (
            client_frame(true, 0x0, b"x", [1, 2, 3, 4]),
            WsError::Protocol("continuation frame without a message"),
            1002,
        ),
        (
            client_frame(true, 0x3, b"", [1, 2, 3, 4]),
            WsError::Protocol("unknown opcode"),
            1002,
        ),
        (
            client_frame(false, 0x9, b"", [1, 2, 3, 4]),
            WsError::Protocol("control frame fragmented or over 125 bytes"),
            1002,
        ),
        (
            client_frame(true, 0x9, &[0; 126], [1, 2, 3, 4]),
            WsError::Protocol("control frame fragmented or over 125 bytes"),
            1002,
        ),
        (
            {
                let mut f = client_frame(true, 0x2, b"", [1, 2, 3, 4]);
                f[0] |= 0x40;
                f
            },
            WsError::Protocol("reserved bits set (no extension was agreed)"),
            1002,
        ),
        (
            vec![0x82, 0xFE, 0x00, 0x05, 1, 2, 3, 4],
            WsError::Protocol("frame length not in its shortest form"),
            1002,
        ),
        (
            {
                let mut f = client_frame(false, 0x2, b"a", [0; 4]);
                f.extend(client_frame(true, 0x2, b"b", [0; 4]));
                f
            },
            WsError::Protocol("new message before the last one ended"),
            1002,
        ),
    ];
    for (frame, error, code) in cases {
        let mut ws = upgraded();
        let (_, result) = feed(&mut ws, &[&frame]);
        assert_eq!(result, Err(error));
        let mut close = vec![0x88, 0x02];
        close.extend_from_slice(&code.to_be_bytes());
        assert_eq!(&ws.control.output[..], &close[..], "{error}");
    }
}

fn written(ws: &mut WebSocket, out: &mut OutBuf, chunk: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    loop {
        ws.prepare(out);
        if !ws.has_output(out) {
            return wire;
        }
        let mut slices = [IoSlice::new(&[]); 8];
        let n = ws.io_slices(out, &mut slices);
        let bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        let take = bytes.len().min(chunk);
        wire.extend_from_slice(&bytes[..take]);
        ws.advance(out, take);
    }
}

/// Proves output leaves as one binary frame whose header goes in front of the output's own
/// slices, with the 7-, 16- and 64-bit lengths, whatever the socket takes at a time, and that
/// a pong waits for the frame in progress.
#[test]
fn output_is_framed_without_copying() {
    for (len, header) in [
        (5usize, vec![0x82, 5]),
        (126, vec![0x82, 126, 0, 126]),
        (70_000, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]),
    ] {
        for chunk in [1, 3, 1000, usize::MAX] {
            if len == 70_000 && chunk < 1000 {
                continue;
            }
            let mut ws = upgraded();
            let mut out = OutBuf::default();
            out.tail().put_bytes(b'x', len);
            let mut expected = header.clone();
            expected.resize(header.len() + len, b'x');
            assert_eq!(
                written(&mut ws, &mut out, chunk),
                expected,
                "{len} bytes by {chunk}"
            );
        }
    }
    let mut ws = upgraded();
    let mut out = OutBuf::default();
    out.tail().put_slice(b"abc");
    ws.prepare(&out);
    ws.advance(&mut out, 2); // header out, payload not yet
    let (_, result) = feed(&mut ws, &[&client_frame(true, 0x9, b"", [1, 2, 3, 4])]);
    assert_eq!(result, Ok(()));
    assert_eq!(written(&mut ws, &mut out, usize::MAX), b"abc\x8A\x00");
}

#[test]
fn frames_inside_tls_are_built_in_the_plaintext() {
    let mut ws = upgraded();
    let (_, result) = feed(&mut ws, &[&client_frame(true, 0x9, b"p", [1, 2, 3, 4])]);
    assert_eq!(result, Ok(()));
    let mut out = OutBuf::default();
    out.tail().put_slice(b"hello");
    let mut plain = BytesMut::new();
    ws.frame_into(&mut out, &mut plain, 3);
    assert_eq!(&plain[..], b"\x8A\x01p\x82\x03hel");
    assert!(ws.has_plaintext(&out));
    plain.clear();
    ws.frame_into(&mut out, &mut plain, 3);
    assert_eq!(&plain[..], b"\x82\x02lo");
    assert!(!ws.has_plaintext(&out));
}
