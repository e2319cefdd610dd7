//! Frames arbitrary bytes under every protocol version, decodes each frame, and checks that a
//! decoded packet survives encode -> decode exactly, that `encoded_len` predicts the bytes
//! written, and that re-encoding never grows a packet (so a packet that fitted the limit on the
//! way in still fits on the way out). It also checks that the framer cuts the same frames when
//! the bytes arrive in two reads as when they arrive in one.
//!
//! Run: `cd broker/codec/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decode -- -max_total_time=60`

#![no_main]

use ironsight_codec::{Bytes, BytesMut, Framer, Packet, ProtocolVersion};
use libfuzzer_sys::fuzz_target;

const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

/// Large enough for anything the fuzzer generates; the limit itself is unit-tested.
const MAX_PACKET_SIZE: u32 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let frames = split_frames(&[data]);
    assert_eq!(
        frames,
        split_frames(&[&data[..data.len() / 2], &data[data.len() / 2..]])
    );
    for version in VERSIONS {
        for frame in &frames {
            check_round_trip(frame.clone(), version);
        }
    }
});

/// The frames a connection reading `reads` one after the other would see. An error ends the
/// stream, as it ends a connection.
fn split_frames(reads: &[&[u8]]) -> Vec<Bytes> {
    let mut framer = Framer::new(MAX_PACKET_SIZE);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for read in reads {
        buf.extend_from_slice(read);
        loop {
            match framer.next_frame(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => return frames,
            }
        }
    }
    frames
}

fn check_round_trip(frame: Bytes, version: ProtocolVersion) {
    let frame_len = frame.len();
    let Ok(packet) = Packet::decode(frame, version) else {
        return;
    };
    // Debug must not panic either (it is what the logs call).
    let _ = format!("{packet:?}");
    let mut out = BytesMut::new();
    packet.encode(version, &mut out);
    assert_eq!(
        out.len(),
        packet.encoded_len(version),
        "encoded_len of {packet:?}"
    );
    assert!(
        out.len() <= frame_len,
        "re-encoding grew {packet:?} from {frame_len} bytes"
    );
    let again = Packet::decode(out.freeze(), version)
        .unwrap_or_else(|e| panic!("re-decoding {packet:?} under {version:?}: {e}"));
    assert_eq!(packet, again, "round trip under {version:?}");
}
