//! The record codec: the core's journal records (`ironsight_core::journal::Record`) as frame
//! bodies, and back into a `recovery::Recovery` at start (`docs/store.md`, "Records").
//!
//! A message is written once per batch (what one `fdatasync` makes durable), as its own frame
//! (kind [`MESSAGE`]), before the first record that names it; `Stored` and `Retained` name it by
//! id. So a payload fanned out to ten thousand durable sessions of a shard (one routing pass,
//! one batch) is on disk once. A batch never spans two segments, so a segment reads without the
//! ones before it, and the writer may start a new segment before any batch. Times are wall-clock milliseconds since the Unix epoch ([`Clock`]): a deadline keeps
//! counting while the broker is down, and the running process turns it back into an `Instant`.
//!
//! Integers are LEB128 varints; strings and byte strings a varint length and the bytes; an
//! optional field a presence byte (or a bit in a flags byte) and the field.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ironsight_codec::{ByteString, Bytes, MessageProperties, PacketId, QoS, SubscriptionOptions};
use ironsight_core::auth::Principal;
use ironsight_core::journal::Record;
use ironsight_core::message::{Message, SharedMessage};
use ironsight_core::policy::Publisher;
use ironsight_core::queue::QueueBehavior;
use ironsight_core::recovery::Recovery;
use ironsight_core::session::Will;

use crate::frame;

/// Frame kinds. A kind this version does not know is an error at start, never skipped: it
/// would be state lost silently.
pub const SESSION: u8 = 1;
pub const SESSION_ENDED: u8 = 2;
pub const SUBSCRIBED: u8 = 3;
pub const UNSUBSCRIBED: u8 = 4;
pub const WILL: u8 = 5;
pub const MESSAGE: u8 = 6;
pub const STORED: u8 = 7;
pub const SENT: u8 = 8;
pub const RELEASED: u8 = 9;
pub const PUBREC_RECEIVED: u8 = 10;
pub const PUBCOMP_RECEIVED: u8 = 11;
pub const INBOUND_QOS2: u8 = 12;
pub const INBOUND_RELEASED: u8 = 13;
pub const RETAINED: u8 = 14;

/// Why a frame's body (whose CRC was good) does not make a record.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("record body ends early")]
    Short,
    #[error("record body has {0} bytes after its end")]
    Trailing(usize),
    #[error("invalid {0}")]
    Invalid(&'static str),
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("a record names message {0:#x}, which no earlier frame of the segment holds")]
    UnknownMessage(u64),
}

/// One moment on both clocks: how an `Instant` of this process and a wall-clock time in a
/// journal are turned into each other.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    instant: Instant,
    unix_ms: u64,
}

impl Clock {
    /// Now, on both clocks.
    pub fn now() -> Clock {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Clock::at(Instant::now(), unix_ms)
    }

    pub fn at(instant: Instant, unix_ms: u64) -> Clock {
        Clock { instant, unix_ms }
    }

    fn to_unix_ms(self, at: Instant) -> u64 {
        if at >= self.instant {
            self.unix_ms
                .saturating_add(at.duration_since(self.instant).as_millis() as u64)
        } else {
            self.unix_ms
                .saturating_sub(self.instant.duration_since(at).as_millis() as u64)
        }
    }

    /// The `Instant` of a wall-clock time; one before this process's clock can go is as early
    /// as it can go (a deadline that long past has passed either way).
    fn to_instant(self, unix_ms: u64) -> Instant {
        if unix_ms >= self.unix_ms {
            self.instant + Duration::from_millis(unix_ms - self.unix_ms)
        } else {
            let back = Duration::from_millis(self.unix_ms - unix_ms);
            self.instant
                .checked_sub(back)
                .unwrap_or_else(|| earliest(self.instant, back))
        }
    }
}

/// The earliest `Instant` at most `back` before `from` (halving the step until one exists).
fn earliest(from: Instant, back: Duration) -> Instant {
    let mut at = from;
    let mut step = back;
    while step > Duration::from_millis(1) {
        match at.checked_sub(step) {
            Some(earlier) => at = earlier,
            None => step /= 2,
        }
    }
    at
}

/// Encodes a shard's records into frames, writing each message once per batch.
pub struct RecordEncoder {
    clock: Clock,
    /// Messages already written in the current batch.
    written: HashSet<u64>,
}

impl RecordEncoder {
    pub fn new(clock: Clock) -> RecordEncoder {
        RecordEncoder {
            clock,
            written: HashSet::new(),
        }
    }

    /// A new batch begins: messages are written in it again before their first use, with the
    /// clocks read again (the wall clock may have been stepped meanwhile).
    pub fn new_batch(&mut self, clock: Clock) {
        self.clock = clock;
        self.written.clear();
    }

    /// Appends the frames of `record` to `out`.
    pub fn encode(&mut self, record: &Record<'_>, out: &mut Vec<u8>) {
        let clock = self.clock;
        match *record {
            Record::Session {
                client_id,
                expiry_s,
                user_id,
                connected,
                expires_at,
                queue_max,
                queue_behavior,
            } => frame::encode(out, SESSION, |w| {
                put_str(w, client_id);
                put_varint(w, u64::from(expiry_s));
                put_opt_str(w, user_id);
                let discard = queue_behavior == QueueBehavior::DiscardOldMessages;
                w.push(
                    u8::from(connected)
                        | u8::from(expires_at.is_some()) << 1
                        | u8::from(discard) << 2,
                );
                if let Some(at) = expires_at {
                    put_varint(w, clock.to_unix_ms(at));
                }
                put_varint(w, u64::from(queue_max));
            }),
            Record::SessionEnded { client_id } => {
                frame::encode(out, SESSION_ENDED, |w| put_str(w, client_id))
            }
            Record::Subscribed {
                client_id,
                filter,
                options,
                id,
            } => frame::encode(out, SUBSCRIBED, |w| {
                put_str(w, client_id);
                put_str(w, filter);
                w.push(options.to_byte());
                put_varint(w, id.map_or(0, |id| u64::from(id.get())));
            }),
            Record::Unsubscribed { client_id, filter } => frame::encode(out, UNSUBSCRIBED, |w| {
                put_str(w, client_id);
                put_str(w, filter);
            }),
            Record::Will { client_id, will } => frame::encode(out, WILL, |w| {
                put_str(w, client_id);
                w.push(u8::from(will.is_some()));
                if let Some(will) = will {
                    put_will(w, will, clock);
                }
            }),
            Record::Stored {
                client_id,
                message,
                qos,
                retain,
                sub_ids,
                share,
            } => {
                self.message(message, out);
                frame::encode(out, STORED, |w| {
                    put_str(w, client_id);
                    put_varint(w, message.id);
                    w.push(qos as u8 | u8::from(retain) << 2);
                    put_varint(w, sub_ids.len() as u64);
                    for id in sub_ids {
                        put_varint(w, u64::from(id.get()));
                    }
                    put_opt_str(w, share);
                });
            }
            Record::Sent {
                client_id,
                id,
                packet_id,
            } => frame::encode(out, SENT, |w| {
                put_str(w, client_id);
                put_varint(w, id);
                put_varint(w, u64::from(packet_id.get()));
            }),
            Record::Released { client_id, id } => frame::encode(out, RELEASED, |w| {
                put_str(w, client_id);
                put_varint(w, id);
            }),
            Record::PubRecReceived {
                client_id,
                packet_id,
            } => packet_id_frame(out, PUBREC_RECEIVED, client_id, packet_id),
            Record::PubCompReceived {
                client_id,
                packet_id,
            } => packet_id_frame(out, PUBCOMP_RECEIVED, client_id, packet_id),
            Record::InboundQos2 {
                client_id,
                packet_id,
            } => packet_id_frame(out, INBOUND_QOS2, client_id, packet_id),
            Record::InboundReleased {
                client_id,
                packet_id,
            } => packet_id_frame(out, INBOUND_RELEASED, client_id, packet_id),
            Record::Retained { topic, message } => {
                self.message(message, out);
                frame::encode(out, RETAINED, |w| {
                    put_str(w, topic);
                    put_varint(w, message.id);
                });
            }
        }
    }

    /// The message's own frame, unless this batch has it already.
    fn message(&mut self, m: &Message, out: &mut Vec<u8>) {
        if !self.written.insert(m.id) {
            return;
        }
        let clock = self.clock;
        frame::encode(out, MESSAGE, |w| {
            put_varint(w, m.id);
            put_bytes(w, m.topic.as_bytes());
            put_bytes(w, &m.payload);
            w.push(m.qos as u8 | u8::from(m.retain) << 2);
            put_properties(w, &m.properties);
            put_varint(w, clock.to_unix_ms(m.published_at));
            put_opt_time(w, m.expires_at, clock);
            put_publisher(w, m.publisher.as_deref());
        });
    }
}

fn packet_id_frame(out: &mut Vec<u8>, kind: u8, client_id: &str, packet_id: PacketId) {
    frame::encode(out, kind, |w| {
        put_str(w, client_id);
        put_varint(w, u64::from(packet_id.get()));
    });
}

/// Decodes frames back into records, applied to a [`Recovery`] in order.
pub struct RecordDecoder {
    clock: Clock,
    /// The messages of the segment read so far, by id (a batch, which names only its own
    /// messages, never spans two segments).
    messages: HashMap<u64, SharedMessage>,
}

impl RecordDecoder {
    pub fn new(clock: Clock) -> RecordDecoder {
        RecordDecoder {
            clock,
            messages: HashMap::new(),
        }
    }

    /// A new segment begins: its records name only messages written in it.
    pub fn new_segment(&mut self) {
        self.messages.clear();
    }

    /// Applies the record of one frame.
    pub fn apply(
        &mut self,
        kind: u8,
        body: &[u8],
        recovery: &mut Recovery,
    ) -> Result<(), CodecError> {
        let mut r = Reader { rest: body };
        let clock = self.clock;
        match kind {
            SESSION => {
                let client_id = r.str()?;
                let expiry_s = r.u32()?;
                let user_id = r.opt_str()?;
                let flags = r.u8()?;
                let expires_at = if flags & 2 != 0 {
                    Some(clock.to_instant(r.varint()?))
                } else {
                    None
                };
                let queue_max = r.u32()?;
                let queue_behavior = if flags & 4 != 0 {
                    QueueBehavior::DiscardOldMessages
                } else {
                    QueueBehavior::RejectNewMessages
                };
                r.end()?;
                recovery.apply(Record::Session {
                    client_id,
                    expiry_s,
                    user_id,
                    connected: flags & 1 != 0,
                    expires_at,
                    queue_max,
                    queue_behavior,
                });
            }
            SESSION_ENDED => {
                let client_id = r.str()?;
                r.end()?;
                recovery.apply(Record::SessionEnded { client_id });
            }
            SUBSCRIBED => {
                let client_id = r.str()?;
                let filter = r.str()?;
                let options = SubscriptionOptions::from_byte(r.u8()?)
                    .map_err(|_| CodecError::Invalid("subscription options"))?;
                let id = NonZeroU32::new(r.u32()?);
                r.end()?;
                recovery.apply(Record::Subscribed {
                    client_id,
                    filter,
                    options,
                    id,
                });
            }
            UNSUBSCRIBED => {
                let client_id = r.str()?;
                let filter = r.str()?;
                r.end()?;
                recovery.apply(Record::Unsubscribed { client_id, filter });
            }
            WILL => {
                let client_id = r.str()?;
                let will = match r.u8()? {
                    0 => None,
                    1 => Some(r.will(clock)?),
                    _ => return Err(CodecError::Invalid("will presence")),
                };
                r.end()?;
                recovery.apply(Record::Will {
                    client_id,
                    will: will.as_ref(),
                });
            }
            MESSAGE => {
                let message = r.message(clock)?;
                r.end()?;
                self.messages.insert(message.id, Arc::new(message));
            }
            STORED => {
                let client_id = r.str()?;
                let message = self.named(r.varint()?)?;
                let (qos, retain) = r.qos_and_retain()?;
                let count = r.varint()?;
                let mut sub_ids = Vec::new();
                for _ in 0..count {
                    let id = NonZeroU32::new(r.u32()?)
                        .ok_or(CodecError::Invalid("subscription identifier 0"))?;
                    sub_ids.push(id);
                }
                let share = r.opt_str()?;
                r.end()?;
                recovery.apply(Record::Stored {
                    client_id,
                    message: &message,
                    qos,
                    retain,
                    sub_ids: &sub_ids,
                    share,
                });
            }
            SENT => {
                let client_id = r.str()?;
                let id = r.varint()?;
                let packet_id = r.packet_id()?;
                r.end()?;
                recovery.apply(Record::Sent {
                    client_id,
                    id,
                    packet_id,
                });
            }
            RELEASED => {
                let client_id = r.str()?;
                let id = r.varint()?;
                r.end()?;
                recovery.apply(Record::Released { client_id, id });
            }
            PUBREC_RECEIVED | PUBCOMP_RECEIVED | INBOUND_QOS2 | INBOUND_RELEASED => {
                let client_id = r.str()?;
                let packet_id = r.packet_id()?;
                r.end()?;
                recovery.apply(match kind {
                    PUBREC_RECEIVED => Record::PubRecReceived {
                        client_id,
                        packet_id,
                    },
                    PUBCOMP_RECEIVED => Record::PubCompReceived {
                        client_id,
                        packet_id,
                    },
                    INBOUND_QOS2 => Record::InboundQos2 {
                        client_id,
                        packet_id,
                    },
                    _ => Record::InboundReleased {
                        client_id,
                        packet_id,
                    },
                });
            }
            RETAINED => {
                let topic = r.str()?;
                let message = self.named(r.varint()?)?;
                r.end()?;
                recovery.apply(Record::Retained {
                    topic,
                    message: &message,
                });
            }
            other => return Err(CodecError::UnknownKind(other)),
        }
        Ok(())
    }

    fn named(&self, id: u64) -> Result<SharedMessage, CodecError> {
        self.messages
            .get(&id)
            .cloned()
            .ok_or(CodecError::UnknownMessage(id))
    }
}

// ----- writing -----

fn put_varint(w: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        w.push(n as u8 | 0x80);
        n >>= 7;
    }
    w.push(n as u8);
}

fn put_bytes(w: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(w, bytes.len() as u64);
    w.extend_from_slice(bytes);
}

fn put_str(w: &mut Vec<u8>, s: &str) {
    put_bytes(w, s.as_bytes());
}

fn put_opt_str(w: &mut Vec<u8>, s: Option<&str>) {
    w.push(u8::from(s.is_some()));
    if let Some(s) = s {
        put_str(w, s);
    }
}

fn put_opt_time(w: &mut Vec<u8>, at: Option<Instant>, clock: Clock) {
    w.push(u8::from(at.is_some()));
    if let Some(at) = at {
        put_varint(w, clock.to_unix_ms(at));
    }
}

fn put_properties(w: &mut Vec<u8>, p: &MessageProperties) {
    let flags = u8::from(p.payload_format_indicator.is_some())
        | u8::from(p.message_expiry_interval_s.is_some()) << 1
        | u8::from(p.content_type.is_some()) << 2
        | u8::from(p.response_topic.is_some()) << 3
        | u8::from(p.correlation_data.is_some()) << 4;
    w.push(flags);
    if let Some(format) = p.payload_format_indicator {
        w.push(format);
    }
    if let Some(expiry) = p.message_expiry_interval_s {
        put_varint(w, u64::from(expiry));
    }
    for s in [&p.content_type, &p.response_topic].into_iter().flatten() {
        put_str(w, s);
    }
    if let Some(data) = &p.correlation_data {
        put_bytes(w, data);
    }
    put_varint(w, p.user_properties.len() as u64);
    for (key, value) in &p.user_properties {
        put_str(w, key);
        put_str(w, value);
    }
}

fn put_publisher(w: &mut Vec<u8>, p: Option<&Publisher>) {
    w.push(u8::from(p.is_some()));
    let Some(p) = p else { return };
    put_varint(w, u64::from(p.endpoint));
    put_str(w, &p.client_id);
    w.push(u8::from(p.principal.is_some()));
    if let Some(principal) = &p.principal {
        put_str(w, &principal.user_id);
        put_varint(w, principal.groups.len() as u64);
        for group in principal.groups.iter() {
            put_str(w, group);
        }
    }
    put_opt_str(w, p.common_name.as_deref());
    match p.addr {
        IpAddr::V4(a) => {
            w.push(4);
            w.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            w.push(6);
            w.extend_from_slice(&a.octets());
        }
    }
}

fn put_will(w: &mut Vec<u8>, will: &Will, clock: Clock) {
    put_bytes(w, will.topic.as_bytes());
    put_bytes(w, &will.payload);
    w.push(will.qos as u8 | u8::from(will.retain) << 2);
    put_varint(w, u64::from(will.delay_s));
    put_properties(w, &will.properties);
    put_opt_time(w, will.publish_at, clock);
    put_publisher(w, will.publisher.as_deref());
}

// ----- reading -----

/// The unread rest of a body. Every length is checked against what is left before anything
/// is allocated for it.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, CodecError> {
        let (&b, rest) = self.rest.split_first().ok_or(CodecError::Short)?;
        self.rest = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, CodecError> {
        let mut n = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            n |= u64::from(b & 0x7F)
                .checked_shl(shift)
                .filter(|v| v >> shift == u64::from(b & 0x7F))
                .ok_or(CodecError::Invalid("varint"))?;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(CodecError::Invalid("varint"))
    }

    fn u32(&mut self) -> Result<u32, CodecError> {
        u32::try_from(self.varint()?).map_err(|_| CodecError::Invalid("32-bit integer"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = usize::try_from(self.varint()?).map_err(|_| CodecError::Short)?;
        if len > self.rest.len() {
            return Err(CodecError::Short);
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(bytes)
    }

    fn str(&mut self) -> Result<&'a str, CodecError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| CodecError::Invalid("UTF-8 string"))
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(CodecError::Invalid("presence byte")),
        }
    }

    fn opt_time(&mut self, clock: Clock) -> Result<Option<Instant>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(clock.to_instant(self.varint()?))),
            _ => Err(CodecError::Invalid("presence byte")),
        }
    }

    fn packet_id(&mut self) -> Result<PacketId, CodecError> {
        u16::try_from(self.varint()?)
            .ok()
            .and_then(PacketId::new)
            .ok_or(CodecError::Invalid("packet id"))
    }

    fn qos_and_retain(&mut self) -> Result<(QoS, bool), CodecError> {
        let b = self.u8()?;
        let qos = match b & 3 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            _ => return Err(CodecError::Invalid("QoS")),
        };
        if b & !7 != 0 {
            return Err(CodecError::Invalid("QoS and RETAIN byte"));
        }
        Ok((qos, b & 4 != 0))
    }

    fn byte_string(&mut self) -> Result<ByteString, CodecError> {
        self.str().map(ByteString::from)
    }

    fn properties(&mut self) -> Result<MessageProperties, CodecError> {
        let flags = self.u8()?;
        if flags & !0x1F != 0 {
            return Err(CodecError::Invalid("property flags"));
        }
        let mut p = MessageProperties::default();
        if flags & 1 != 0 {
            p.payload_format_indicator = Some(self.u8()?);
        }
        if flags & 2 != 0 {
            p.message_expiry_interval_s = Some(self.u32()?);
        }
        if flags & 4 != 0 {
            p.content_type = Some(self.byte_string()?);
        }
        if flags & 8 != 0 {
            p.response_topic = Some(self.byte_string()?);
        }
        if flags & 16 != 0 {
            p.correlation_data = Some(Bytes::copy_from_slice(self.bytes()?));
        }
        let count = self.varint()?;
        for _ in 0..count {
            // Each pair takes at least two bytes: a count beyond that is not read on trust.
            if self.rest.len() < 2 {
                return Err(CodecError::Short);
            }
            let pair = (self.byte_string()?, self.byte_string()?);
            p.user_properties.push(pair);
        }
        Ok(p)
    }

    fn publisher(&mut self) -> Result<Option<Arc<Publisher>>, CodecError> {
        match self.u8()? {
            0 => return Ok(None),
            1 => {}
            _ => return Err(CodecError::Invalid("presence byte")),
        }
        let endpoint =
            u16::try_from(self.varint()?).map_err(|_| CodecError::Invalid("endpoint"))?;
        let client_id = self.str()?.into();
        let principal = match self.u8()? {
            0 => None,
            1 => {
                let user_id = self.str()?;
                let count = self.varint()?;
                let mut groups = Vec::new();
                for _ in 0..count {
                    groups.push(Box::from(self.str()?));
                }
                Some(Arc::new(Principal::new(user_id, groups)))
            }
            _ => return Err(CodecError::Invalid("presence byte")),
        };
        let common_name = self.opt_str()?.map(Box::from);
        let addr = match self.u8()? {
            4 => IpAddr::from(self.array::<4>()?),
            6 => IpAddr::from(self.array::<16>()?),
            _ => return Err(CodecError::Invalid("address family")),
        };
        Ok(Some(Arc::new(Publisher {
            endpoint,
            client_id,
            principal,
            common_name,
            addr,
        })))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let Some((head, rest)) = self.rest.split_first_chunk::<N>() else {
            return Err(CodecError::Short);
        };
        self.rest = rest;
        Ok(*head)
    }

    fn message(&mut self, clock: Clock) -> Result<Message, CodecError> {
        let id = self.varint()?;
        let topic = self.byte_string()?;
        let payload = Bytes::copy_from_slice(self.bytes()?);
        let (qos, retain) = self.qos_and_retain()?;
        let properties = self.properties()?;
        let published_at = clock.to_instant(self.varint()?);
        let expires_at = self.opt_time(clock)?;
        let publisher = self.publisher()?;
        // The session that published it is gone: origin 0 names none (generations start at
        // 1), so No Local holds back a recovered message from no one.
        let mut m = Message::new(published_at, topic, payload, qos, retain, properties, 0);
        m.expires_at = expires_at;
        m.id = id;
        m.publisher = publisher;
        Ok(m)
    }

    fn will(&mut self, clock: Clock) -> Result<Will, CodecError> {
        let topic = self.byte_string()?;
        let payload = Bytes::copy_from_slice(self.bytes()?);
        let (qos, retain) = self.qos_and_retain()?;
        let delay_s = self.u32()?;
        let properties = self.properties()?;
        let publish_at = self.opt_time(clock)?;
        let publisher = self.publisher()?;
        Ok(Will {
            topic,
            payload,
            qos,
            retain,
            delay_s,
            properties,
            publish_at,
            publisher,
        })
    }

    fn end(&self) -> Result<(), CodecError> {
        match self.rest.len() {
            0 => Ok(()),
            n => Err(CodecError::Trailing(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use ironsight_core::message::message_id;

    use super::*;

    fn clock() -> Clock {
        Clock::at(Instant::now(), 1_700_000_000_000)
    }

    fn message(n: u64, clock: Clock) -> SharedMessage {
        let properties = MessageProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval_s: Some(60),
            content_type: Some("text/plain".into()),
            response_topic: Some("reply/here".into()),
            correlation_data: Some(Bytes::from_static(b"\x00corr")),
            user_properties: vec![("k".into(), "v".into())],
        };
        let mut m = Message::new(
            clock.instant,
            "a/b".into(),
            Bytes::from(vec![n as u8; 3]),
            QoS::ExactlyOnce,
            true,
            properties,
            7,
        );
        m.id = message_id(2, n);
        m.publisher = Some(Arc::new(Publisher {
            endpoint: 1,
            client_id: "pub".into(),
            principal: Some(Arc::new(Principal::new("alice", ["staff".into()]))),
            common_name: Some("device-1".into()),
            addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
        }));
        Arc::new(m)
    }

    /// Frames back into a recovery, as the reader hands them over.
    fn replay(bytes: &[u8], clock: Clock, recovery: &mut Recovery) -> Vec<u8> {
        let mut decoder = RecordDecoder::new(clock);
        let mut kinds = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let f = frame::decode(&bytes[at..]).unwrap();
            decoder.apply(f.kind, f.body, recovery).unwrap();
            kinds.push(f.kind);
            at += f.frame_len();
        }
        kinds
    }

    /// Proves the bytes of one record, field by field: the format is documented by this test.
    #[test]
    fn a_sent_record_spelled_out() {
        let mut out = Vec::new();
        let record = Record::Sent {
            client_id: "c1",
            id: 300,
            packet_id: PacketId::new(5).unwrap(),
        };
        RecordEncoder::new(clock()).encode(&record, &mut out);
        let body = [
            2, b'c', b'1', // client id: length 2, "c1"
            0xAC, 0x02, // message id 300 as a varint: 0x2C | 0x80, then 0x02
            5,    // packet id 5
        ];
        assert_eq!(out[5], SENT, "the frame's kind");
        assert_eq!(&out[frame::HEADER_BYTES..], &body);
    }

    /// Proves every kind of record comes back as it went: a session with its will, expiry
    /// deadline and queue limits, a subscription with its options and identifier, messages
    /// with every property and their publisher, in-flight ids both ways, retained messages.
    #[test]
    fn records_come_back_as_they_went() {
        let clock = clock();
        let later = clock.instant + Duration::from_secs(90);
        let (m1, m2, m3) = (message(1, clock), message(2, clock), message(3, clock));
        let will = Will {
            topic: "will/t".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            delay_s: 30,
            properties: MessageProperties::default(),
            publish_at: Some(later),
            publisher: m1.publisher.clone(),
        };
        let pid = |n| PacketId::new(n).unwrap();
        let options = SubscriptionOptions {
            no_local: true,
            retain_as_published: true,
            ..SubscriptionOptions::with_qos(QoS::ExactlyOnce)
        };
        let sub_ids = [NonZeroU32::new(7).unwrap(), NonZeroU32::new(9).unwrap()];
        let records = [
            Record::Session {
                client_id: "d",
                expiry_s: 600,
                user_id: Some("alice"),
                connected: false,
                expires_at: Some(later),
                queue_max: 42,
                queue_behavior: QueueBehavior::DiscardOldMessages,
            },
            Record::Will {
                client_id: "d",
                will: Some(&will),
            },
            Record::Subscribed {
                client_id: "d",
                filter: "$share/g/a/+",
                options,
                id: Some(sub_ids[0]),
            },
            Record::Stored {
                client_id: "d",
                message: &m1,
                qos: QoS::AtLeastOnce,
                retain: true,
                sub_ids: &sub_ids,
                share: Some("g/a/+"),
            },
            Record::Stored {
                client_id: "d",
                message: &m2,
                qos: QoS::ExactlyOnce,
                retain: false,
                sub_ids: &[],
                share: None,
            },
            Record::Sent {
                client_id: "d",
                id: m2.id,
                packet_id: pid(4),
            },
            Record::Stored {
                client_id: "d",
                message: &m3,
                qos: QoS::ExactlyOnce,
                retain: false,
                sub_ids: &[],
                share: None,
            },
            Record::Sent {
                client_id: "d",
                id: m3.id,
                packet_id: pid(5),
            },
            Record::PubRecReceived {
                client_id: "d",
                packet_id: pid(5),
            },
            Record::InboundQos2 {
                client_id: "d",
                packet_id: pid(11),
            },
            Record::Retained {
                topic: "a/b",
                message: &m1,
            },
        ];
        let mut out = Vec::new();
        let mut encoder = RecordEncoder::new(clock);
        for r in &records {
            encoder.encode(r, &mut out);
        }
        // Read back later, with the clocks read again.
        let reading = Clock::at(
            Instant::now() + Duration::from_secs(5),
            clock.unix_ms + 5_000,
        );
        let mut recovery = Recovery::default();
        let kinds = replay(&out, reading, &mut recovery);
        assert_eq!(
            kinds.iter().filter(|&&k| k == MESSAGE).count(),
            3,
            "each message once in the batch, though m1 is named twice"
        );
        let recovered = recovery.finish();
        let d = &recovered.sessions[0];
        assert_eq!(
            (&*d.client_id, d.user_id.as_deref(), d.expiry_s),
            ("d", Some("alice"), 600)
        );
        assert_eq!(
            (d.queue_max, d.queue_behavior),
            (42, QueueBehavior::DiscardOldMessages)
        );
        // The reader's clocks map wall time to its Instants as the writer's did (5 s on
        // both): a deadline comes back at the same moment, to the millisecond.
        let same_moment = |a: Instant, b: Instant| a.max(b) - a.min(b) < Duration::from_millis(2);
        assert!(same_moment(d.expires_at.unwrap(), later));
        let w = d.will.as_ref().unwrap();
        assert_eq!(
            (&*w.topic, &w.payload[..], w.qos, w.retain, w.delay_s),
            ("will/t", &b"bye"[..], QoS::AtLeastOnce, true, 30)
        );
        assert!(same_moment(w.publish_at.unwrap(), later));
        assert_eq!(w.publisher, m1.publisher);
        assert_eq!(
            d.subscriptions,
            [("$share/g/a/+".into(), options, Some(sub_ids[0]))]
        );
        let q = &d.queued[0];
        assert_eq!(
            (
                q.msg.id,
                q.qos,
                q.retain,
                q.sub_ids.as_slice(),
                q.share.as_deref()
            ),
            (m1.id, QoS::AtLeastOnce, true, &sub_ids[..], Some("g/a/+"))
        );
        let back = &q.msg;
        assert_eq!(
            (&*back.topic, &back.payload[..], back.qos, back.retain),
            ("a/b", &m1.payload[..], QoS::ExactlyOnce, true)
        );
        assert_eq!(back.properties, m1.properties);
        assert_eq!(back.publisher, m1.publisher);
        assert!(same_moment(back.published_at, m1.published_at));
        assert!(same_moment(
            back.expires_at.unwrap(),
            m1.expires_at.unwrap()
        ));
        let inflight: Vec<_> = d
            .inflight
            .iter()
            .map(|(p, m)| (*p, m.as_ref().map(|m| m.msg.id)))
            .collect();
        assert_eq!(inflight, [(pid(4), Some(m2.id)), (pid(5), None)]);
        assert_eq!(d.inbound_qos2, [pid(11)]);
        assert_eq!(recovered.retained.len(), 1);
        assert_eq!(recovered.message_n_max, 3);
    }

    /// Proves a new batch gets the messages again (so a segment reads without the ones before
    /// it), and that a decoder that starts a new segment does not know the old one's messages.
    #[test]
    fn messages_are_written_once_per_batch() {
        let clock = clock();
        let m = message(1, clock);
        let stored = |client_id| Record::Stored {
            client_id,
            message: &m,
            qos: QoS::AtLeastOnce,
            retain: false,
            sub_ids: &[],
            share: None,
        };
        let mut encoder = RecordEncoder::new(clock);
        let (mut first, mut second) = (Vec::new(), Vec::new());
        encoder.encode(&stored("a"), &mut first);
        encoder.encode(&stored("b"), &mut first);
        encoder.new_batch(clock);
        encoder.encode(&stored("c"), &mut second);
        let mut recovery = Recovery::default();
        assert_eq!(
            replay(&first, clock, &mut recovery),
            [MESSAGE, STORED, STORED]
        );
        assert_eq!(replay(&second, clock, &mut recovery), [MESSAGE, STORED]);

        let mut decoder = RecordDecoder::new(clock);
        let body = &second[frame::decode(&second).unwrap().frame_len()..];
        let f = frame::decode(body).unwrap();
        assert_eq!(
            decoder.apply(f.kind, f.body, &mut Recovery::default()),
            Err(CodecError::UnknownMessage(m.id))
        );
    }

    /// Proves bodies cut short anywhere, with bytes after their end, or of an unknown kind
    /// are errors, never a panic or a record made up from half a body.
    #[test]
    fn damaged_bodies_are_errors() {
        let clock = clock();
        let m = message(1, clock);
        let mut out = Vec::new();
        RecordEncoder::new(clock).encode(
            &Record::Retained {
                topic: "a/b",
                message: &m,
            },
            &mut out,
        );
        let f = frame::decode(&out).unwrap();
        assert_eq!(f.kind, MESSAGE);
        for len in 0..f.body.len() {
            let mut decoder = RecordDecoder::new(clock);
            let result = decoder.apply(MESSAGE, &f.body[..len], &mut Recovery::default());
            assert!(
                result.is_err(),
                "a body cut at {len} of {} bytes",
                f.body.len()
            );
        }
        let mut longer = f.body.to_vec();
        longer.push(0);
        let mut decoder = RecordDecoder::new(clock);
        assert_eq!(
            decoder.apply(MESSAGE, &longer, &mut Recovery::default()),
            Err(CodecError::Trailing(1))
        );
        assert_eq!(
            decoder.apply(200, b"", &mut Recovery::default()),
            Err(CodecError::UnknownKind(200))
        );
    }
}
