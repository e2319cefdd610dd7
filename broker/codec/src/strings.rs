//! The data representations of §1.5 (integers, UTF-8 strings, binary data, string pairs) read
//! from and written to the body of a packet.
//!
//! [`Reader`] is a cursor over the packet's `Bytes`: integers are read in place, and strings and
//! binary data come out as slices of the same buffer (zero-copy, one reference count each).

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::DecodeError;
use crate::types::PacketId;
use crate::varint::{self, VarintRead};

/// A cursor over part of a packet body. Borrowing the body (rather than owning a clone of its
/// `Bytes`) keeps reading free of reference-count traffic; only fields that are kept are sliced.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a Bytes) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    /// Bytes read so far, counted from the start of the buffer.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos == self.end
    }

    /// Fails unless every byte has been read.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    #[inline]
    fn advance(&mut self, n: usize) -> Result<usize, DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::UnexpectedEnd);
        }
        let start = self.pos;
        self.pos += n;
        Ok(start)
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let at = self.advance(1)?;
        Ok(self.buf[at])
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let at = self.advance(2)?;
        Ok(u16::from_be_bytes([self.buf[at], self.buf[at + 1]]))
    }

    #[inline]
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let at = self.advance(4)?;
        let b = &self.buf[at..at + 4];
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A packet identifier, which is never 0 ([MQTT-2.2.1-3]).
    #[inline]
    pub(crate) fn packet_id(&mut self) -> Result<PacketId, DecodeError> {
        PacketId::new(self.u16()?).ok_or(DecodeError::PacketIdZero)
    }

    /// A Variable Byte Integer (§1.5.5) inside the body.
    #[inline]
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match varint::decode(&self.buf[self.pos..self.end]) {
            VarintRead::Done { value, len } => {
                self.pos += len;
                Ok(value)
            }
            VarintRead::Incomplete => Err(DecodeError::UnexpectedEnd),
            VarintRead::TooLong => Err(DecodeError::MalformedVariableByteInteger),
        }
    }

    /// The next `n` bytes as a slice of the packet.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let at = self.advance(n)?;
        Ok(self.buf.slice(at..at + n))
    }

    /// The next `n` bytes as a reader of their own (a property block); this reader skips them.
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader<'a>, DecodeError> {
        let at = self.advance(n)?;
        Ok(Reader {
            buf: self.buf,
            pos: at,
            end: at + n,
        })
    }

    /// The raw bytes of a length-prefixed field, without taking a slice (protocol name).
    pub(crate) fn prefixed_raw(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16()?);
        let at = self.advance(len)?;
        let buf: &'a Bytes = self.buf;
        Ok(&buf[at..at + len])
    }

    /// Binary Data (§1.5.6): a two-byte length, then that many bytes.
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::from(self.u16()?);
        self.take(len)
    }

    /// A UTF-8 Encoded String (§1.5.4): well-formed UTF-8 ([MQTT-1.5.4-1]) without U+0000
    /// ([MQTT-1.5.4-2]). A BOM is kept as it is ([MQTT-1.5.4-3]).
    #[inline]
    pub(crate) fn string(&mut self) -> Result<ByteString, DecodeError> {
        let bytes = self.binary()?;
        if bytes.contains(&0) {
            return Err(DecodeError::NullCharacter);
        }
        // `try_from` validates once and keeps the same `Bytes`: no copy.
        ByteString::try_from(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// A topic name: a UTF-8 string without the wildcards `+` and `#`; `wildcard` is the error to
    /// report when it has one (which rule it breaks depends on where the name is).
    #[inline]
    pub(crate) fn topic_name(&mut self, wildcard: DecodeError) -> Result<ByteString, DecodeError> {
        let bytes = self.binary()?;
        // One pass for the three forbidden bytes, before the UTF-8 check (a topic is usually
        // ASCII, for which both loops are short).
        for &byte in bytes.iter() {
            match byte {
                0 => return Err(DecodeError::NullCharacter),
                b'+' | b'#' => return Err(wildcard),
                _ => {}
            }
        }
        ByteString::try_from(bytes).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// A UTF-8 String Pair (§1.5.7): both strings follow the string rules ([MQTT-1.5.7-1]).
    pub(crate) fn string_pair(&mut self) -> Result<(ByteString, ByteString), DecodeError> {
        let name = self.string()?;
        let value = self.string()?;
        Ok((name, value))
    }
}

/// Encoded length of a UTF-8 string or binary field: two length bytes, then the data.
#[inline]
pub(crate) fn prefixed_len(data: &[u8]) -> usize {
    2 + data.len()
}

/// Writes Binary Data (§1.5.6).
///
/// # Panics
/// If `data` is longer than 65,535 bytes, which MQTT cannot carry: a bug in the caller (decoded
/// fields never are).
#[inline]
pub(crate) fn put_binary(out: &mut BytesMut, data: &[u8]) {
    let len =
        u16::try_from(data.len()).expect("MQTT string or binary field longer than 65,535 bytes");
    out.put_u16(len);
    out.put_slice(data);
}

/// Writes a UTF-8 Encoded String (§1.5.4). Same limit as [`put_binary`].
#[inline]
pub(crate) fn put_string(out: &mut BytesMut, s: &str) {
    put_binary(out, s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader_over(bytes: &'static [u8]) -> Bytes {
        Bytes::from_static(bytes)
    }

    /// Proves strings are slices of the packet buffer, not copies.
    #[test]
    fn string_is_zero_copy() {
        let body = Bytes::from(vec![0x00, 0x03, b'a', b'/', b'b']);
        let mut r = Reader::new(&body);
        let s = r.string().unwrap();
        assert_eq!(&s[..], "a/b");
        assert_eq!(s.as_bytes().as_ptr(), body[2..].as_ptr());
        r.finish().unwrap();
    }

    /// Proves [MQTT-1.5.4-1]: ill-formed UTF-8, including an encoded surrogate, is refused.
    #[test]
    #[rustfmt::skip]
    fn ill_formed_utf8_is_refused() {
        let surrogate = reader_over(&[
            0x00, 0x03,       // length 3
            0xED, 0xA0, 0x80, // U+D800 encoded as if it were a scalar value
        ]);
        assert_eq!(
            Reader::new(&surrogate).string(),
            Err(DecodeError::InvalidUtf8)
        );
        let truncated = reader_over(&[0x00, 0x01, 0xC3]);
        assert_eq!(
            Reader::new(&truncated).string(),
            Err(DecodeError::InvalidUtf8)
        );
    }

    /// Proves [MQTT-1.5.4-2]: U+0000 is refused in strings and topic names.
    #[test]
    fn null_character_is_refused() {
        let body = reader_over(&[0x00, 0x03, b'a', 0x00, b'b']);
        assert_eq!(Reader::new(&body).string(), Err(DecodeError::NullCharacter));
        assert_eq!(
            Reader::new(&body).topic_name(DecodeError::PublishTopicWildcard),
            Err(DecodeError::NullCharacter)
        );
    }

    /// Proves [MQTT-1.5.4-3]: a leading BOM is kept, not stripped.
    #[test]
    fn bom_is_kept() {
        let body = reader_over(&[0x00, 0x04, 0xEF, 0xBB, 0xBF, b'a']);
        assert_eq!(&Reader::new(&body).string().unwrap()[..], "\u{FEFF}a");
    }

    /// Proves a length prefix that runs past the body is UnexpectedEnd, not a panic.
    #[test]
    fn length_past_the_end() {
        let body = reader_over(&[0x00, 0x05, b'a']);
        assert_eq!(Reader::new(&body).binary(), Err(DecodeError::UnexpectedEnd));
        let one = reader_over(&[0x00]);
        assert_eq!(Reader::new(&one).u16(), Err(DecodeError::UnexpectedEnd));
    }

    /// Proves a sub-reader is bounded by its length and the outer reader skips past it.
    #[test]
    fn sub_reader_is_bounded() {
        let body = reader_over(&[0x01, 0x02, 0x03]);
        let mut r = Reader::new(&body);
        let mut sub = r.sub(2).unwrap();
        assert_eq!(sub.u16().unwrap(), 0x0102);
        assert_eq!(sub.u8(), Err(DecodeError::UnexpectedEnd));
        assert_eq!(r.u8().unwrap(), 0x03);
        r.finish().unwrap();
    }

    /// Proves writers and readers agree, including the empty string.
    #[test]
    fn write_then_read() {
        let mut out = BytesMut::new();
        put_string(&mut out, "");
        put_string(&mut out, "héllo");
        put_binary(&mut out, &[0xFF, 0x00]);
        assert_eq!(
            out.len(),
            prefixed_len(b"") + prefixed_len("héllo".as_bytes()) + 4
        );
        let body = out.freeze();
        let mut r = Reader::new(&body);
        assert_eq!(&r.string().unwrap()[..], "");
        assert_eq!(&r.string().unwrap()[..], "héllo");
        assert_eq!(&r.binary().unwrap()[..], &[0xFF, 0x00]);
        r.finish().unwrap();
    }
}
