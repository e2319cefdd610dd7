//! Variable Byte Integer (MQTT 5.0 §1.5.5; the "Remaining Length" of 3.1.1 §2.2.3): seven bits a
//! byte, least significant group first, the top bit set on every byte but the last, at most four
//! bytes. Decoding accepts non-minimal encodings (the minimum-length rule [MQTT-1.5.5-1] binds the
//! sender); encoding always writes the minimal form.

use bytes::{BufMut, BytesMut};

/// The largest value four bytes can carry: 268,435,455 (256 MiB - 1).
pub const VARINT_MAX: u32 = 0x0FFF_FFFF;

/// The most bytes a Variable Byte Integer takes.
pub const VARINT_LEN_MAX: usize = 4;

/// What reading a Variable Byte Integer from the front of a slice found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VarintRead {
    /// The value and the number of bytes it took.
    Done { value: u32, len: usize },
    /// The slice ends before the last byte of the integer.
    Incomplete,
    /// The fourth byte still has its continuation bit set.
    TooLong,
}

/// Reads a Variable Byte Integer from the front of `buf`; never looks at more than four bytes.
#[inline]
pub(crate) fn decode(buf: &[u8]) -> VarintRead {
    // One-byte values are by far the most common (every packet under 128 bytes).
    match buf.first() {
        None => return VarintRead::Incomplete,
        Some(&byte) if byte & 0x80 == 0 => {
            return VarintRead::Done {
                value: u32::from(byte),
                len: 1,
            };
        }
        Some(_) => {}
    }
    let mut value = 0u32;
    for (i, &byte) in buf.iter().take(VARINT_LEN_MAX).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return VarintRead::Done { value, len: i + 1 };
        }
    }
    if buf.len() >= VARINT_LEN_MAX {
        VarintRead::TooLong
    } else {
        VarintRead::Incomplete
    }
}

/// Number of bytes the minimal encoding of `value` takes.
#[inline]
pub(crate) fn encoded_len(value: usize) -> usize {
    match value {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        _ => 4,
    }
}

/// Writes the minimal encoding of `value`.
///
/// # Panics
/// If `value` exceeds [`VARINT_MAX`]: the caller built a packet MQTT cannot carry, which is a bug
/// (the broker checks sizes against the peer's maximum packet size before encoding).
#[inline]
pub(crate) fn write(out: &mut BytesMut, value: usize) {
    assert!(
        value <= VARINT_MAX as usize,
        "variable byte integer {value} exceeds {VARINT_MAX}"
    );
    let mut rest = value;
    loop {
        // Truncation is the point: the low seven bits.
        let byte = (rest & 0x7F) as u8;
        rest >>= 7;
        if rest == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the boundary values of §1.5.5's table encode in the documented number of bytes and
    /// decode back.
    #[test]
    fn boundaries_round_trip() {
        let cases: [(u32, &[u8]); 8] = [
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for (value, bytes) in cases {
            let mut out = BytesMut::new();
            write(&mut out, value as usize);
            assert_eq!(&out[..], bytes, "encoding {value}");
            assert_eq!(encoded_len(value as usize), bytes.len());
            assert_eq!(
                decode(bytes),
                VarintRead::Done {
                    value,
                    len: bytes.len()
                }
            );
        }
    }

    /// Proves a non-minimal encoding is accepted on decode (the minimum rule binds senders).
    #[test]
    fn non_minimal_is_accepted() {
        assert_eq!(decode(&[0x81, 0x00]), VarintRead::Done { value: 1, len: 2 });
    }

    /// Proves "need more bytes" and "too long" are told apart, and the fifth byte is never read.
    #[test]
    fn incomplete_and_too_long() {
        assert_eq!(decode(&[]), VarintRead::Incomplete);
        assert_eq!(decode(&[0x80]), VarintRead::Incomplete);
        assert_eq!(decode(&[0xFF, 0xFF, 0xFF]), VarintRead::Incomplete);
        assert_eq!(decode(&[0xFF, 0xFF, 0xFF, 0xFF]), VarintRead::TooLong);
        assert_eq!(decode(&[0xFF, 0xFF, 0xFF, 0xFF, 0x01]), VarintRead::TooLong);
    }

    /// Proves encoding a value MQTT cannot carry is refused loudly rather than truncated.
    #[test]
    #[should_panic(expected = "exceeds")]
    fn write_rejects_values_past_the_maximum() {
        write(&mut BytesMut::new(), VARINT_MAX as usize + 1);
    }
}
