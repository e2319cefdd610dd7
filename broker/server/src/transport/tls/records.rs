//! The TLS record layer after the handshake, kept by ironsight itself: the kTLS model.
//!
//! rustls does the handshake; then its connection is converted into the traffic keys
//! (`dangerous_into_kernel_connection`) and dropped, and this module seals and opens records
//! with them. An idle TLS connection so keeps only [`Records`]: two directions of key, IV,
//! sequence number and (TLS 1.3) traffic secret, about 200 bytes, instead of a rustls
//! connection with its cipher contexts and key schedule (about 3 KB); the cipher contexts are
//! rebuilt from the keys when the connection is active again ([`Records::release`]). Where the
//! kernel offers the `tls` ULP, the same keys could go to kTLS unchanged.
//!
//! What a record layer must do, from RFC 8446 (TLS 1.3) 5.2-5.5 and 4.6.3, RFC 5246 (TLS 1.2)
//! 6.2.3.3 with RFC 5288 (AES-GCM) and RFC 7905 (ChaCha20-Poly1305):
//! - the nonce is the IV with the record's 64-bit sequence number XORed into its last 8 bytes;
//!   TLS 1.2 AES-GCM sends those 8 bytes in the record as its explicit nonce;
//! - the additional data is the record header (1.3), or the sequence number, type, version and
//!   plaintext length (1.2);
//! - a 1.3 record hides its real content type after the plaintext, followed by optional zeros;
//! - a key may seal only so many records (the suite's confidentiality limit): TLS 1.3 then
//!   moves to the next keys with a KeyUpdate, derived from the traffic secret; TLS 1.2, which
//!   cannot, closes the connection. A peer's KeyUpdate moves its keys the same way.
//! - sequence numbers never wrap; a record that does not open ends the connection.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use bytes::{BufMut, BytesMut};
use zeroize::Zeroize;

/// Plaintext bytes one record carries at most (RFC 8446 5.1).
pub const PLAINTEXT_MAX: usize = 1 << 14;
/// A record header: type, legacy version, length.
pub const HEADER_LEN: usize = 5;
const TAG_LEN: usize = 16;
/// TLS 1.2 AES-GCM's explicit nonce, sent in front of each record's ciphertext.
const EXPLICIT_NONCE_LEN: usize = 8;
/// The longest ciphertext a peer may send in one record: 2^14 + 256 in TLS 1.3, 2^14 + 2048 in
/// TLS 1.2 (RFC 8446 5.2, RFC 5246 6.2.3).
const CIPHERTEXT_MAX_13: usize = PLAINTEXT_MAX + 256;
const CIPHERTEXT_MAX_12: usize = PLAINTEXT_MAX + 2048;
/// Records under a key's limit kept for a KeyUpdate or a closing alert.
const RESERVED_RECORDS: u64 = 2;
/// The largest record a peer may send, header included.
pub const RECORD_MAX: usize = HEADER_LEN + CIPHERTEXT_MAX_12;

/// Content types (RFC 8446 B.1).
pub mod content {
    pub const CHANGE_CIPHER_SPEC: u8 = 20;
    pub const ALERT: u8 = 21;
    pub const HANDSHAKE: u8 = 22;
    pub const APPLICATION_DATA: u8 = 23;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Tls12,
    Tls13,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl Cipher {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Cipher::Aes128Gcm => &aead::AES_128_GCM,
            Cipher::Aes256Gcm => &aead::AES_256_GCM,
            Cipher::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }

    fn key_len(self) -> usize {
        self.algorithm().key_len()
    }

    /// The hash of the TLS 1.3 suite using this cipher (SHA-384 only for AES-256-GCM).
    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Cipher::Aes256Gcm => hkdf::HKDF_SHA384,
            Cipher::Aes128Gcm | Cipher::ChaCha20Poly1305 => hkdf::HKDF_SHA256,
        }
    }
}

/// A TLS 1.3 traffic secret: the hash's length of bytes.
#[derive(Clone)]
pub struct Secret {
    bytes: [u8; 48],
    len: u8,
}

impl Secret {
    pub fn new(bytes: &[u8]) -> Option<Secret> {
        let mut s = Secret {
            bytes: [0; 48],
            len: u8::try_from(bytes.len()).ok().filter(|&l| l <= 48)?,
        };
        s.bytes[..bytes.len()].copy_from_slice(bytes);
        Some(s)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

/// HKDF-Expand-Label (RFC 8446 7.1) with an empty context.
fn expand_label(secret: &[u8], cipher: Cipher, label: &[u8], out: &mut [u8]) {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let length = (out.len() as u16).to_be_bytes();
    let label_len = [(6 + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    hkdf::Prk::new_less_safe(cipher.hkdf(), secret)
        .expand(&info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-Expand-Label output fits the hash");
}

/// One direction's keys.
pub struct Keys {
    key: [u8; 32],
    iv: [u8; 12],
    seq: u64,
    /// TLS 1.3: the traffic secret the next keys derive from.
    secret: Option<Secret>,
}

impl Keys {
    pub fn new(key: &[u8], iv: &[u8], seq: u64, secret: Option<Secret>) -> Keys {
        let mut k = Keys {
            key: [0; 32],
            iv: [0; 12],
            seq,
            secret,
        };
        k.key[..key.len()].copy_from_slice(key);
        k.iv.copy_from_slice(iv);
        k
    }

    /// Whether the keys are those the traffic secret derives (RFC 8446 7.3), which proves the
    /// secret belongs to this connection.
    pub fn match_secret(&self, cipher: Cipher) -> bool {
        let Some(secret) = &self.secret else {
            return false;
        };
        let (mut key, mut iv) = ([0u8; 32], [0u8; 12]);
        let key_len = cipher.key_len();
        expand_label(secret.as_bytes(), cipher, b"key", &mut key[..key_len]);
        expand_label(secret.as_bytes(), cipher, b"iv", &mut iv);
        let matches = key[..key_len] == self.key[..key_len] && iv == self.iv;
        key.zeroize();
        matches
    }

    /// Moves to the next traffic secret and its keys (RFC 8446 4.6.3 and 7.2).
    fn update(&mut self, cipher: Cipher) {
        let secret = self
            .secret
            .as_ref()
            .expect("TLS 1.3 keys carry their secret");
        let mut next = Secret {
            bytes: [0; 48],
            len: secret.len,
        };
        let len = usize::from(secret.len);
        expand_label(
            secret.as_bytes(),
            cipher,
            b"traffic upd",
            &mut next.bytes[..len],
        );
        let key_len = cipher.key_len();
        expand_label(next.as_bytes(), cipher, b"key", &mut self.key[..key_len]);
        expand_label(next.as_bytes(), cipher, b"iv", &mut self.iv);
        self.secret = Some(next);
        self.seq = 0;
    }

    /// The nonce of the next record, and the sequence number moved on.
    fn next_nonce(&mut self) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        self.seq = self
            .seq
            .checked_add(1)
            .expect("sequence numbers never wrap");
        nonce
    }

    fn cipher_key(&self, cipher: Cipher) -> LessSafeKey {
        let unbound = UnboundKey::new(cipher.algorithm(), &self.key[..cipher.key_len()])
            .expect("the key has the cipher's length");
        LessSafeKey::new(unbound)
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.key.zeroize();
        self.iv.zeroize();
    }
}

/// The cipher contexts of an active connection, built from [`Keys`].
struct Live {
    tx: LessSafeKey,
    rx: LessSafeKey,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("TLS record of {0} bytes is longer than allowed")]
    TooLong(usize),
    #[error("TLS record does not decrypt (bad_record_mac)")]
    BadMac,
    #[error("unexpected TLS record type {0} after the handshake")]
    UnexpectedType(u8),
    #[error("TLS record without a content type")]
    NoContentType,
    #[error("the TLS 1.2 session reached its key's record limit")]
    KeyExhausted,
}

pub struct Records {
    pub version: Version,
    pub cipher: Cipher,
    tx: Keys,
    rx: Keys,
    live: Option<Box<Live>>,
    /// Records one key may seal (the suite's confidentiality limit).
    tx_limit: u64,
}

/// A record's header announces this many more bytes, when `data` holds the header.
pub fn record_len(data: &[u8]) -> Option<usize> {
    let header = data.get(..HEADER_LEN)?;
    Some(HEADER_LEN + usize::from(u16::from_be_bytes([header[3], header[4]])))
}

impl Records {
    pub fn new(version: Version, cipher: Cipher, tx: Keys, rx: Keys, tx_limit: u64) -> Records {
        Records {
            version,
            cipher,
            tx,
            rx,
            live: None,
            tx_limit,
        }
    }

    fn live(&mut self) -> &mut Live {
        let (tx, rx, cipher) = (&self.tx, &self.rx, self.cipher);
        self.live.get_or_insert_with(|| {
            Box::new(Live {
                tx: tx.cipher_key(cipher),
                rx: rx.cipher_key(cipher),
            })
        })
    }

    /// Lowers the key's record limit, so that a test reaches it.
    #[cfg(test)]
    pub fn set_tx_limit(&mut self, limit: u64) {
        self.tx_limit = limit;
    }

    /// Drops the cipher contexts of a connection going idle; the keys stay.
    pub fn release(&mut self) {
        self.live = None;
    }

    /// Whether the key nears its limit. The last records under the limit are kept for the
    /// KeyUpdate or the closing alert.
    fn tx_exhausted(&self) -> bool {
        self.tx.seq + RESERVED_RECORDS >= self.tx_limit
    }

    // ----- sealing -----

    /// Bytes in front of a record's plaintext: the header, and TLS 1.2 AES-GCM's explicit nonce.
    fn prefix_len(&self) -> usize {
        match (self.version, self.cipher) {
            (Version::Tls12, Cipher::Aes128Gcm | Cipher::Aes256Gcm) => {
                HEADER_LEN + EXPLICIT_NONCE_LEN
            }
            _ => HEADER_LEN,
        }
    }

    /// Seals `plaintext` (any length) as application data records at the end of `wire`.
    pub fn seal(&mut self, plaintext: &[u8], wire: &mut BytesMut) -> Result<(), RecordError> {
        for chunk in plaintext.chunks(PLAINTEXT_MAX) {
            let start = self.begin(wire, chunk.len())?;
            wire.extend_from_slice(chunk);
            self.finish(content::APPLICATION_DATA, wire, start);
        }
        Ok(())
    }

    /// Starts a record at the end of `wire` for `len` bytes of plaintext (at most
    /// [`PLAINTEXT_MAX`]), which are appended next; then [`Records::finish`] seals it. Returns
    /// the record's start. A key near its limit is replaced first (TLS 1.3: a KeyUpdate goes
    /// out before the record); TLS 1.2 cannot replace it, and the connection must end.
    pub fn begin(&mut self, wire: &mut BytesMut, len: usize) -> Result<usize, RecordError> {
        if self.tx_exhausted() {
            match self.version {
                Version::Tls13 => self.update_tx(wire, false),
                Version::Tls12 => return Err(RecordError::KeyExhausted),
            }
        }
        Ok(self.begin_record(wire, len))
    }

    /// Room for exactly the record: a 4-byte CONNACK must not cost a 16 KiB buffer.
    fn begin_record(&mut self, wire: &mut BytesMut, len: usize) -> usize {
        let start = wire.len();
        wire.reserve(self.prefix_len() + len + 1 + TAG_LEN);
        wire.put_bytes(0, self.prefix_len());
        start
    }

    /// Seals one record of `typ` under the current key, using the records kept in reserve.
    fn seal_reserved(&mut self, typ: u8, message: &[u8], wire: &mut BytesMut) {
        let start = self.begin_record(wire, message.len());
        wire.extend_from_slice(message);
        self.finish(typ, wire, start);
    }

    /// Seals the record begun at `start`, its plaintext being everything after the prefix.
    pub fn finish(&mut self, typ: u8, wire: &mut BytesMut, start: usize) {
        let prefix = self.prefix_len();
        let plain_len = wire.len() - start - prefix;
        assert!(
            plain_len <= PLAINTEXT_MAX,
            "a record carries at most 2^14 bytes"
        );
        assert!(
            self.tx.seq < self.tx_limit,
            "a key sealed its limit of records"
        );
        let nonce = self.tx.next_nonce();
        let seq = self.tx.seq - 1;
        let mut aad = [0u8; 13];
        let (outer_type, body_len, aad_len) = match self.version {
            Version::Tls13 => {
                wire.put_u8(typ); // the real type, inside the encryption
                let body_len = plain_len + 1 + TAG_LEN;
                aad[..HEADER_LEN].copy_from_slice(&header(content::APPLICATION_DATA, body_len));
                (content::APPLICATION_DATA, body_len, HEADER_LEN)
            }
            Version::Tls12 => {
                aad = aad12(seq, typ, plain_len);
                (typ, prefix - HEADER_LEN + plain_len + TAG_LEN, aad.len())
            }
        };
        wire[start..start + HEADER_LEN].copy_from_slice(&header(outer_type, body_len));
        if prefix > HEADER_LEN {
            wire[start + HEADER_LEN..start + prefix].copy_from_slice(&nonce[4..]);
        }
        let live = self.live();
        let tag = live
            .tx
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..aad_len]),
                &mut wire[start + prefix..],
            )
            .expect("sealing a record within the limits cannot fail");
        wire.extend_from_slice(tag.as_ref());
    }

    /// Sends a KeyUpdate and moves to the next transmit keys (TLS 1.3). `request`: asks the
    /// peer to update its keys too.
    pub fn update_tx(&mut self, wire: &mut BytesMut, request: bool) {
        assert_eq!(self.version, Version::Tls13, "TLS 1.2 has no key update");
        // HandshakeType key_update (24), length 1, KeyUpdateRequest (RFC 8446 4.6.3).
        let message = [24, 0, 0, 1, u8::from(request)];
        self.seal_reserved(content::HANDSHAKE, &message, wire);
        self.tx.update(self.cipher);
        if let Some(live) = &mut self.live {
            live.tx = self.tx.cipher_key(self.cipher);
        }
    }

    /// An alert record (RFC 8446 6): close_notify is a warning, everything else fatal.
    pub fn alert(&mut self, description: u8, wire: &mut BytesMut) {
        let level = if description == 0 { 1 } else { 2 };
        self.seal_reserved(content::ALERT, &[level, description], wire);
    }

    // ----- opening -----

    /// Opens the whole record `record` (header included) in place. Returns its content type
    /// and plaintext.
    pub fn open<'a>(&mut self, record: &'a mut [u8]) -> Result<(u8, &'a mut [u8]), RecordError> {
        let (typ, body_len) = (record[0], record.len() - HEADER_LEN);
        let ciphertext_max = match self.version {
            Version::Tls13 => CIPHERTEXT_MAX_13,
            Version::Tls12 => CIPHERTEXT_MAX_12,
        };
        if body_len > ciphertext_max {
            return Err(RecordError::TooLong(body_len));
        }
        let explicit = self.prefix_len() - HEADER_LEN;
        if body_len < explicit + TAG_LEN {
            return Err(RecordError::BadMac);
        }
        let mut nonce = self.rx.next_nonce();
        let seq = self.rx.seq - 1;
        let mut aad = [0u8; 13];
        let aad_len = match self.version {
            Version::Tls13 => {
                if typ != content::APPLICATION_DATA {
                    return Err(RecordError::UnexpectedType(typ));
                }
                aad[..HEADER_LEN].copy_from_slice(&record[..HEADER_LEN]);
                HEADER_LEN
            }
            Version::Tls12 => {
                if ![
                    content::ALERT,
                    content::HANDSHAKE,
                    content::APPLICATION_DATA,
                ]
                .contains(&typ)
                {
                    return Err(RecordError::UnexpectedType(typ));
                }
                if explicit > 0 {
                    nonce[4..].copy_from_slice(&record[HEADER_LEN..HEADER_LEN + explicit]);
                }
                aad = aad12(seq, typ, body_len - explicit - TAG_LEN);
                aad.len()
            }
        };
        let live = self.live();
        let (_, body) = record.split_at_mut(HEADER_LEN + explicit);
        let plain = live
            .rx
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&aad[..aad_len]),
                body,
            )
            .map_err(|_| RecordError::BadMac)?;
        match self.version {
            Version::Tls12 => Ok((typ, plain)),
            Version::Tls13 => {
                // The real type is the last non-zero byte; zeros after it are padding.
                let end = plain
                    .iter()
                    .rposition(|&b| b != 0)
                    .ok_or(RecordError::NoContentType)?;
                let inner = plain[end];
                if end > PLAINTEXT_MAX {
                    return Err(RecordError::TooLong(end));
                }
                Ok((inner, &mut plain[..end]))
            }
        }
    }

    /// The peer updated its keys (its KeyUpdate arrived): the receive keys move on.
    pub fn update_rx(&mut self) {
        self.rx.update(self.cipher);
        if let Some(live) = &mut self.live {
            live.rx = self.rx.cipher_key(self.cipher);
        }
    }
}

fn header(typ: u8, body_len: usize) -> [u8; HEADER_LEN] {
    let len = (body_len as u16).to_be_bytes();
    [typ, 3, 3, len[0], len[1]]
}

/// TLS 1.2's additional data: sequence number, type, version, plaintext length.
fn aad12(seq: u64, typ: u8, plain_len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9..11].copy_from_slice(&[3, 3]);
    aad[11..].copy_from_slice(&(plain_len as u16).to_be_bytes());
    aad
}
