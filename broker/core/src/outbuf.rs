//! Bytes encoded for one connection and not yet written to its socket.
//!
//! Small packets are encoded into one growing `tail`, so that many messages leave in one send; a
//! large payload is appended as a shared `Bytes` chunk (no copy), and the writer hands the chunks
//! to one vectored send. An idle connection holds no buffer at all: `release` gives the memory back.

use std::collections::VecDeque;
use std::io::IoSlice;

use ironsight_codec::{Bytes, BytesMut};

/// Payloads at least this large are sent from the message's own buffer instead of being copied.
pub const SHARED_PAYLOAD_MIN: usize = 4096;

#[derive(Debug, Default)]
pub struct OutBuf {
    /// Frozen chunks, oldest first; all bytes of a chunk are unsent.
    chunks: VecDeque<Bytes>,
    chunks_len: usize,
    tail: BytesMut,
}

impl OutBuf {
    pub fn len(&self) -> usize {
        self.chunks_len + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where small packets are encoded.
    pub fn tail(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    /// Appends `bytes` after everything written so far, without copying it.
    pub fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.freeze_tail();
        self.chunks_len += bytes.len();
        self.chunks.push_back(bytes);
    }

    fn freeze_tail(&mut self) {
        if !self.tail.is_empty() {
            let chunk = self.tail.split().freeze();
            self.chunks_len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Fills `slices` with the unsent bytes, oldest first; returns how many slices were used.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let sources = self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[..]));
        let mut used = 0;
        for (slot, bytes) in slices.iter_mut().zip(sources.filter(|b| !b.is_empty())) {
            *slot = IoSlice::new(bytes);
            used += 1;
        }
        used
    }

    /// The oldest unsent bytes (empty when nothing is pending).
    pub fn first_chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&self.tail[..], |c| &c[..])
    }

    /// Marks `n` bytes as written.
    pub fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len(), "advanced past the buffered bytes");
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                let _ = self.tail.split_to(n);
                return;
            };
            if n < front.len() {
                let _ = front.split_to(n);
                self.chunks_len -= n;
                return;
            }
            n -= front.len();
            self.chunks_len -= front.len();
            self.chunks.pop_front();
        }
        if self.tail.is_empty() {
            // Reuse the allocation from its start rather than creeping through it.
            self.tail.clear();
        }
    }

    /// Drops every unsent byte.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.chunks_len = 0;
        self.tail.clear();
    }

    /// Returns the buffers' memory when nothing is pending (an idle connection keeps none).
    pub fn release(&mut self) {
        if self.is_empty() {
            *self = OutBuf::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn gather(buf: &OutBuf) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 8];
        let n = buf.io_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn shared_chunks_keep_their_place_in_order() {
        let mut buf = OutBuf::default();
        buf.tail().put_slice(b"ab");
        buf.push_shared(Bytes::from_static(b"CDE"));
        buf.tail().put_slice(b"f");
        assert_eq!(buf.len(), 6);
        assert_eq!(gather(&buf), b"abCDEf");
    }

    #[test]
    fn advance_crosses_chunks() {
        let mut buf = OutBuf::default();
        buf.tail().put_slice(b"ab");
        buf.push_shared(Bytes::from_static(b"CDE"));
        buf.tail().put_slice(b"fg");
        buf.advance(3);
        assert_eq!(gather(&buf), b"DEfg");
        buf.advance(3);
        assert_eq!(gather(&buf), b"g");
        buf.advance(1);
        assert!(buf.is_empty());
        buf.release();
        assert_eq!(
            buf.tail.capacity(),
            0,
            "an empty buffer gives its memory back"
        );
    }

    #[test]
    fn release_keeps_pending_bytes() {
        let mut buf = OutBuf::default();
        buf.tail().put_slice(b"xyz");
        buf.release();
        assert_eq!(gather(&buf), b"xyz");
    }

    #[test]
    #[should_panic(expected = "advanced past")]
    fn advancing_too_far_is_a_bug() {
        let mut buf = OutBuf::default();
        buf.tail().put_slice(b"x");
        buf.advance(2);
    }
}
