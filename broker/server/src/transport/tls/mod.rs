//! MQTT (or WebSocket) over TLS 1.2 and 1.3.
//!
//! The handshake runs through rustls's unbuffered API, which keeps no buffers of its own: the
//! bytes come from the shard's read buffer (a partial record is carried to the next read by the
//! layered transport) and the flight to send goes straight into the connection's wire buffer.
//! Once the handshake is done, rustls hands over the traffic keys and is dropped; from then on
//! [`records::Records`] seals and opens records, in place, with a few hundred bytes of state.
//!
//! # Layout
//! - [`context`]: security profiles to rustls server configurations; certificate files.
//! - [`records`]: the record layer after the handshake.
//! - [`secrets`]: the TLS 1.3 traffic secrets, for key updates.
//! - [`certificate`]: what is kept of a client certificate.

pub mod certificate;
pub mod context;
pub mod records;
pub mod secrets;

#[cfg(test)]
mod tests;

use bytes::BytesMut;
use ironsight_core::outbuf::OutBuf;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError};
use rustls::{ConnectionTrafficSecrets, ProtocolVersion, SupportedCipherSuite};

use certificate::CertificateFacts;
use context::TlsContext;
use records::{content, Cipher, Keys, RecordError, Records, Version};

/// Bytes a handshake may hold before it completes: a ClientHello, or a client's certificate
/// chain spread over several records. Larger is refused; so thousands of half-done handshakes
/// hold bounded memory, and the endpoint's ConnectTimeout bounds how long.
pub const HANDSHAKE_BYTES_MAX: usize = 32 * 1024;

/// Alert descriptions (RFC 8446 6.2) sent when the record layer refuses a record.
mod alert {
    pub const CLOSE_NOTIFY: u8 = 0;
    pub const UNEXPECTED_MESSAGE: u8 = 10;
    pub const BAD_RECORD_MAC: u8 = 20;
    pub const RECORD_OVERFLOW: u8 = 22;
    pub const HANDSHAKE_FAILURE: u8 = 40;
    pub const DECODE_ERROR: u8 = 50;
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS handshake failed: {0}")]
    Handshake(rustls::Error),
    #[error("TLS handshake larger than {HANDSHAKE_BYTES_MAX} bytes")]
    HandshakeTooLarge,
    #[error("TLS handshake ended without usable keys: {0}")]
    Keys(&'static str),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("the client sent TLS alert {0}")]
    PeerAlert(u8),
    #[error("the client closed the TLS session (close_notify)")]
    PeerClosed,
    #[error("unexpected TLS handshake message {0} after the handshake")]
    UnexpectedHandshake(u8),
}

/// What a TLS session established, once: the verified client certificate, if any.
pub struct Established {
    pub certificate: Option<CertificateFacts>,
}

/// A handshake that completed: what it established, and the plaintext the client sent along
/// with its Finished.
struct Completed {
    established: Established,
    early: Vec<u8>,
}

/// What a TLS session passes up: first, once, what its handshake established; then plaintext.
pub enum TlsEvent<'a> {
    Established(Established),
    Plaintext(&'a mut [u8]),
}

// The open state is the one a session spends its life in; it is not boxed (the whole `Tls`
// lives in the connection's boxed transport already).
#[allow(clippy::large_enum_variant)]
enum State {
    Handshaking(Box<Handshake>),
    Open(Records),
    /// The session failed or was closed: nothing more is read or sealed.
    Done,
}

/// A handshake in progress: rustls's connection, and the traffic secrets it logged so far (the
/// server's flight derives them, a later read completes the handshake).
struct Handshake {
    conn: UnbufferedServerConnection,
    secrets: secrets::TrafficSecrets,
}

pub struct Tls {
    state: State,
    /// The close_notify was sealed.
    closed: bool,
}

impl Tls {
    pub fn new(context: &TlsContext) -> Result<Tls, TlsError> {
        let conn =
            UnbufferedServerConnection::new(context.server.clone()).map_err(TlsError::Handshake)?;
        Ok(Tls {
            state: State::Handshaking(Box::new(Handshake {
                conn,
                secrets: secrets::TrafficSecrets::default(),
            })),
            closed: false,
        })
    }

    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Processes bytes from the socket; handshake flights and alerts go into `wire`, what the
    /// session establishes and its plaintext to `up`. Returns how many bytes were used: the
    /// rest is a partial record, to be read again with what follows.
    pub fn read<E: From<TlsError>>(
        &mut self,
        data: &mut [u8],
        wire: &mut BytesMut,
        up: &mut dyn FnMut(TlsEvent<'_>) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut used = 0;
        if let State::Handshaking(_) = self.state {
            let (n, done) = self.handshake(data, wire)?;
            used = n;
            let Some(Completed {
                established,
                mut early,
            }) = done
            else {
                return Ok(used);
            };
            up(TlsEvent::Established(established))?;
            if !early.is_empty() {
                up(TlsEvent::Plaintext(&mut early))?;
            }
        }
        if let State::Open(records) = &mut self.state {
            let mut plain = |bytes: &mut [u8]| up(TlsEvent::Plaintext(bytes));
            match read_records(records, &mut data[used..], wire, &mut plain) {
                Ok(n) => used += n,
                Err(Stop::Inner(e)) => return Err(e),
                Err(Stop::Tls(e)) => {
                    if let Some(description) = alert_for(&e) {
                        records.alert(description, wire);
                        self.closed = true;
                    }
                    self.state = State::Done;
                    return Err(e.into());
                }
            }
        }
        Ok(used)
    }

    /// Drives the handshake over `data`. Returns the bytes used and, when it completed, what it
    /// established with any plaintext the client sent along with its Finished.
    fn handshake(
        &mut self,
        data: &mut [u8],
        wire: &mut BytesMut,
    ) -> Result<(usize, Option<Completed>), TlsError> {
        let State::Handshaking(hs) = &mut self.state else {
            unreachable!("called while handshaking")
        };
        let Handshake { conn, secrets } = &mut **hs;
        let mut used = 0;
        let mut early = Vec::new();
        loop {
            let status = conn.process_tls_records(&mut data[used..]);
            let logged = secrets::take();
            secrets.client = logged.client.or(secrets.client.take());
            secrets.server = logged.server.or(secrets.server.take());
            let discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(error) => {
                    // rustls may have queued an alert telling the client why; asking for it
                    // means calling again, and a call must see the bytes the last one did not
                    // discard (an empty slice makes rustls index past its end).
                    used += discard;
                    if let Ok(ConnectionState::EncodeTlsData(mut e)) =
                        conn.process_tls_records(&mut data[used..]).state
                    {
                        encode(wire, |buf| e.encode(buf));
                    }
                    self.state = State::Done;
                    return Err(TlsError::Handshake(error));
                }
            };
            let mut done = false;
            match state {
                ConnectionState::EncodeTlsData(mut e) => encode(wire, |buf| e.encode(buf)),
                ConnectionState::TransmitTlsData(t) => t.done(), // `wire` is written in order
                ConnectionState::ReadTraffic(mut r) => {
                    // A client may send its first records together with its Finished; they
                    // wait until the session's facts are told.
                    while let Some(record) = r.next_record() {
                        early.extend_from_slice(record.map_err(TlsError::Handshake)?.payload);
                    }
                }
                ConnectionState::BlockedHandshake => {
                    used += discard;
                    if data.len() - used > HANDSHAKE_BYTES_MAX {
                        self.state = State::Done;
                        return Err(TlsError::HandshakeTooLarge);
                    }
                    return Ok((used, None));
                }
                ConnectionState::WriteTraffic(_) => done = true,
                other => {
                    // Early data is not enabled; the peer closing mid-handshake ends it.
                    tracing::debug!(state = ?other, "TLS session ended during the handshake");
                    self.state = State::Done;
                    return Err(TlsError::PeerClosed);
                }
            }
            used += discard;
            if done {
                break;
            }
        }
        let State::Handshaking(hs) = std::mem::replace(&mut self.state, State::Done) else {
            unreachable!("still handshaking")
        };
        let (records, established) = open(hs.conn, hs.secrets)?;
        self.state = State::Open(records);
        Ok((used, Some(Completed { established, early })))
    }

    /// Seals up to `max` bytes of `out` as application data records into `wire`.
    pub fn seal_output(
        &mut self,
        out: &mut OutBuf,
        max: usize,
        wire: &mut BytesMut,
    ) -> Result<(), TlsError> {
        let records = self.records()?;
        let mut sealed = 0;
        while !out.is_empty() && sealed < max {
            let mut room = records::PLAINTEXT_MAX.min(max - sealed).min(out.len());
            let start = records.begin(wire, room)?;
            while room > 0 && !out.is_empty() {
                let chunk = out.first_chunk();
                let take = chunk.len().min(room);
                wire.extend_from_slice(&chunk[..take]);
                out.advance(take);
                room -= take;
                sealed += take;
            }
            records.finish(content::APPLICATION_DATA, wire, start);
        }
        Ok(())
    }

    /// Seals `plain` as application data records into `wire`.
    pub fn seal(&mut self, plain: &[u8], wire: &mut BytesMut) -> Result<(), TlsError> {
        Ok(self.records()?.seal(plain, wire)?)
    }

    fn records(&mut self) -> Result<&mut Records, TlsError> {
        match &mut self.state {
            State::Open(records) => Ok(records),
            _ => Err(TlsError::Keys(
                "nothing may be sealed outside an open session",
            )),
        }
    }

    /// The goodbye of a session the broker closes: close_notify, once.
    pub fn goodbye(&mut self, wire: &mut BytesMut) {
        if let (State::Open(records), false) = (&mut self.state, self.closed) {
            records.alert(alert::CLOSE_NOTIFY, wire);
            self.closed = true;
        }
    }

    /// Frees what an idle session does not need: the cipher contexts (the keys stay).
    pub fn release(&mut self) {
        if let State::Open(records) = &mut self.state {
            records.release();
        }
    }
}

/// Encodes one handshake record into `wire`, growing it as rustls asks.
fn encode(wire: &mut BytesMut, mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>) {
    let start = wire.len();
    let mut room = 4096;
    loop {
        wire.resize(start + room, 0);
        match encode(&mut wire[start..]) {
            Ok(n) => {
                wire.truncate(start + n);
                return;
            }
            Err(EncodeError::InsufficientSize(e)) => room = e.required_size,
            Err(EncodeError::AlreadyEncoded) => {
                wire.truncate(start);
                return;
            }
        }
    }
}

/// The handshake is complete: the keys leave rustls for the record layer.
fn open(
    conn: UnbufferedServerConnection,
    secrets: secrets::TrafficSecrets,
) -> Result<(Records, Established), TlsError> {
    let certificate = match conn.peer_certificates().and_then(|c| c.first()) {
        None => None,
        Some(der) => Some(
            CertificateFacts::of(der)
                .ok_or(TlsError::Keys("the client certificate does not parse"))?,
        ),
    };
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => Version::Tls13,
        Some(ProtocolVersion::TLSv1_2) => Version::Tls12,
        _ => return Err(TlsError::Keys("no protocol version")),
    };
    let limit = match conn.negotiated_cipher_suite() {
        Some(SupportedCipherSuite::Tls13(suite)) => suite.common.confidentiality_limit,
        Some(SupportedCipherSuite::Tls12(suite)) => suite.common.confidentiality_limit,
        None => return Err(TlsError::Keys("no cipher suite")),
    };
    let (extracted, _kernel) = conn
        .dangerous_into_kernel_connection()
        .map_err(TlsError::Handshake)?;
    // The kernel connection would handle key updates and tickets; ironsight derives key updates
    // itself from the traffic secrets (a server receives no tickets), so it is dropped here.
    let (tx_seq, tx) = extracted.tx;
    let (rx_seq, rx) = extracted.rx;
    let (cipher, tx_key, tx_iv) = traffic_keys(&tx)?;
    let (_, rx_key, rx_iv) = traffic_keys(&rx)?;
    let tls13 = version == Version::Tls13;
    let tx = Keys::new(tx_key, tx_iv, tx_seq, secrets.server.filter(|_| tls13));
    let rx = Keys::new(rx_key, rx_iv, rx_seq, secrets.client.filter(|_| tls13));
    if tls13 && !(tx.match_secret(cipher) && rx.match_secret(cipher)) {
        return Err(TlsError::Keys(
            "the logged traffic secrets do not match the keys",
        ));
    }
    Ok((
        Records::new(version, cipher, tx, rx, limit),
        Established { certificate },
    ))
}

fn traffic_keys(secrets: &ConnectionTrafficSecrets) -> Result<(Cipher, &[u8], &[u8]), TlsError> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            Ok((Cipher::Aes128Gcm, key.as_ref(), iv.as_ref()))
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            Ok((Cipher::Aes256Gcm, key.as_ref(), iv.as_ref()))
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            Ok((Cipher::ChaCha20Poly1305, key.as_ref(), iv.as_ref()))
        }
        _ => Err(TlsError::Keys("a cipher the record layer does not know")),
    }
}

/// Why reading records stopped: the TLS session failed, or the layer above refused its
/// plaintext.
enum Stop<E> {
    Tls(TlsError),
    Inner(E),
}

/// Opens the whole records at the front of `data`, in place. Returns how many bytes they took.
fn read_records<E>(
    records: &mut Records,
    data: &mut [u8],
    wire: &mut BytesMut,
    plain: &mut dyn FnMut(&mut [u8]) -> Result<(), E>,
) -> Result<usize, Stop<E>> {
    let mut used = 0;
    while let Some(len) = records::record_len(&data[used..]) {
        if len > records::RECORD_MAX {
            return Err(Stop::Tls(RecordError::TooLong(len).into()));
        }
        if data.len() - used < len {
            break; // the rest of the record is still on its way
        }
        let (typ, payload) = records
            .open(&mut data[used..used + len])
            .map_err(|e| Stop::Tls(e.into()))?;
        used += len;
        match typ {
            content::APPLICATION_DATA => plain(payload).map_err(Stop::Inner)?,
            content::ALERT => {
                return Err(Stop::Tls(match payload {
                    [_, alert::CLOSE_NOTIFY] => TlsError::PeerClosed,
                    [_, description] => TlsError::PeerAlert(*description),
                    _ => RecordError::BadMac.into(),
                }))
            }
            content::HANDSHAKE => on_handshake(records, payload, wire).map_err(Stop::Tls)?,
            other => return Err(Stop::Tls(RecordError::UnexpectedType(other).into())),
        }
    }
    Ok(used)
}

/// A handshake message after the handshake: only a TLS 1.3 KeyUpdate is welcome (a TLS 1.2
/// renegotiation is refused, as rustls refuses it).
fn on_handshake(
    records: &mut Records,
    message: &[u8],
    wire: &mut BytesMut,
) -> Result<(), TlsError> {
    const KEY_UPDATE: u8 = 24;
    match (records.version, message) {
        (Version::Tls13, [KEY_UPDATE, 0, 0, 1, request @ (0 | 1)]) => {
            records.update_rx();
            if *request == 1 {
                records.update_tx(wire, false);
            }
            Ok(())
        }
        (_, [kind, ..]) => Err(TlsError::UnexpectedHandshake(*kind)),
        (_, []) => Err(RecordError::NoContentType.into()),
    }
}

/// The alert that tells the peer why the record layer gave up; none when the peer ended it.
fn alert_for(error: &TlsError) -> Option<u8> {
    match error {
        TlsError::Record(RecordError::BadMac) => Some(alert::BAD_RECORD_MAC),
        TlsError::Record(RecordError::TooLong(_)) => Some(alert::RECORD_OVERFLOW),
        TlsError::Record(RecordError::KeyExhausted) => Some(alert::CLOSE_NOTIFY),
        TlsError::Record(_) | TlsError::UnexpectedHandshake(_) => Some(alert::UNEXPECTED_MESSAGE),
        TlsError::Keys(_) => Some(alert::HANDSHAKE_FAILURE),
        TlsError::PeerClosed | TlsError::PeerAlert(_) => None,
        TlsError::Handshake(_) | TlsError::HandshakeTooLarge => Some(alert::DECODE_ERROR),
    }
}
