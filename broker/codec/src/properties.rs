//! MQTT 5 properties (§2.2.2): the identifiers, a reader that enforces "at most once" and value
//! ranges, writers, and the two property sets several packets share ([`MessageProperties`] for a
//! Will and a PUBLISH, [`ReasonProperties`] for the acknowledgements).
//!
//! A property block is a Variable Byte Integer length followed by that many bytes of
//! `identifier, value` pairs. An identifier the specification does not define is
//! [`DecodeError::UnknownProperty`]; one it defines for other packets is
//! [`DecodeError::PropertyNotAllowed`]; both are Malformed Packets (§2.2.2.2). A second copy of
//! a property that may appear once is a Protocol Error ([`DecodeError::DuplicateProperty`]).

use std::fmt;
use std::num::{NonZeroU16, NonZeroU32};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::error::DecodeError;
use crate::reason::ReasonCode;
use crate::strings::{prefixed_len, put_binary, put_string, Reader};
use crate::types::{ProtocolVersion, QoS, UserProperties};
use crate::varint;

/// Property identifiers (MQTT 5.0 §2.2.2.2, Table 2-4).
pub mod property_id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

use property_id as id;

/// Whether MQTT 5 defines the identifier at all.
fn is_known(identifier: u8) -> bool {
    matches!(
        identifier,
        0x01..=0x03 | 0x08 | 0x09 | 0x0B | 0x11..=0x13 | 0x15..=0x1A | 0x1C | 0x1F | 0x21..=0x2A
    )
}

/// The error for an identifier a packet does not accept.
pub(crate) fn unexpected(identifier: u8) -> DecodeError {
    if is_known(identifier) {
        DecodeError::PropertyNotAllowed { id: identifier }
    } else {
        DecodeError::UnknownProperty { id: identifier }
    }
}

/// Reads one property block.
pub(crate) struct PropertyReader<'a> {
    r: Reader<'a>,
}

impl<'a> PropertyReader<'a> {
    /// Reads the Property Length from `r` and bounds a reader to exactly that many bytes.
    #[inline]
    pub(crate) fn new(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let len = r.varint()? as usize;
        Ok(PropertyReader { r: r.sub(len)? })
    }

    /// The next identifier, or `None` at the end of the block. Identifiers are Variable Byte
    /// Integers, but every one MQTT 5 defines fits in one byte; a byte with the continuation bit
    /// set therefore cannot start a defined identifier and is reported as unknown.
    #[inline]
    pub(crate) fn next_id(&mut self) -> Result<Option<u8>, DecodeError> {
        if self.r.is_empty() {
            return Ok(None);
        }
        let identifier = self.r.u8()?;
        if identifier & 0x80 != 0 {
            return Err(DecodeError::UnknownProperty { id: identifier });
        }
        Ok(Some(identifier))
    }

    pub(crate) fn u32(
        &mut self,
        slot: &mut Option<u32>,
        identifier: u8,
    ) -> Result<(), DecodeError> {
        vacant(slot, identifier)?;
        *slot = Some(self.r.u32()?);
        Ok(())
    }

    pub(crate) fn u16(
        &mut self,
        slot: &mut Option<u16>,
        identifier: u8,
    ) -> Result<(), DecodeError> {
        vacant(slot, identifier)?;
        *slot = Some(self.r.u16()?);
        Ok(())
    }

    /// A Two Byte Integer for which 0 is a Protocol Error (Receive Maximum).
    pub(crate) fn nonzero_u16(
        &mut self,
        slot: &mut Option<NonZeroU16>,
        identifier: u8,
    ) -> Result<(), DecodeError> {
        vacant(slot, identifier)?;
        let value = NonZeroU16::new(self.r.u16()?);
        *slot = Some(value.ok_or(DecodeError::InvalidPropertyValue { id: identifier })?);
        Ok(())
    }

    /// A Four Byte Integer for which 0 is a Protocol Error (Maximum Packet Size).
    pub(crate) fn nonzero_u32(
        &mut self,
        slot: &mut Option<NonZeroU32>,
        identifier: u8,
    ) -> Result<(), DecodeError> {
        vacant(slot, identifier)?;
        let value = NonZeroU32::new(self.r.u32()?);
        *slot = Some(value.ok_or(DecodeError::InvalidPropertyValue { id: identifier })?);
        Ok(())
    }

    /// A Byte that must be 0 or 1.
    pub(crate) fn bool(
        &mut self,
        slot: &mut Option<bool>,
        identifier: u8,
    ) -> Result<(), DecodeError> {
        vacant(slot, identifier)?;
        *slot = Some(match self.r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::InvalidPropertyValue { id: identifier }),
        });
        Ok(())
    }

    /// A Byte no larger than `max`.
    pub(crate) fn u8_up_to(
        &mut self,
        slot: &mut Option<u8>,
        identifier: u8,
        max: u8,
    ) -> Result<(), DecodeError> {
        vacant(slot, identifier)?;
        let value = self.r.u8()?;
        if value > max {
            return Err(DecodeError::InvalidPropertyValue { id: identifier });
        }
        *slot = Some(value);
        Ok(())
    }

    /// A Maximum QoS byte: 0 or 1 (§3.2.2.3.4; a server supporting QoS 2 omits the property).
    pub(crate) fn maximum_qos(
        &mut self,
        slot: &mut Option<QoS>,
        identifier: u8,
    ) -> Result<(), DecodeError> {
        vacant(slot, identifier)?;
        *slot = Some(match self.r.u8()? {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => return Err(DecodeError::InvalidPropertyValue { id: identifier }),
        });
        Ok(())
    }

    pub(crate) fn string(
        &mut self,
        slot: &mut Option<ByteString>,
        identifier: u8,
    ) -> Result<(), DecodeError> {
        vacant(slot, identifier)?;
        *slot = Some(self.r.string()?);
        Ok(())
    }

    /// A string that is used as a topic name (Response Topic): no wildcards.
    pub(crate) fn topic_name(
        &mut self,
        slot: &mut Option<ByteString>,
        identifier: u8,
        wildcard: DecodeError,
    ) -> Result<(), DecodeError> {
        vacant(slot, identifier)?;
        *slot = Some(self.r.topic_name(wildcard)?);
        Ok(())
    }

    pub(crate) fn binary(
        &mut self,
        slot: &mut Option<Bytes>,
        identifier: u8,
    ) -> Result<(), DecodeError> {
        vacant(slot, identifier)?;
        *slot = Some(self.r.binary()?);
        Ok(())
    }

    /// A Topic Alias: 0 is not permitted ([MQTT-3.3.2-8]).
    pub(crate) fn topic_alias(
        &mut self,
        slot: &mut Option<NonZeroU16>,
        identifier: u8,
    ) -> Result<(), DecodeError> {
        vacant(slot, identifier)?;
        *slot = Some(NonZeroU16::new(self.r.u16()?).ok_or(DecodeError::TopicAliasZero)?);
        Ok(())
    }

    /// A Subscription Identifier: a Variable Byte Integer of 1 to 268,435,455 (§3.3.2.3.8).
    pub(crate) fn subscription_identifier(&mut self) -> Result<NonZeroU32, DecodeError> {
        let value = self.r.varint()?;
        NonZeroU32::new(value).ok_or(DecodeError::InvalidPropertyValue {
            id: id::SUBSCRIPTION_IDENTIFIER,
        })
    }

    /// A User Property; it may appear any number of times, and order is kept.
    pub(crate) fn user_property(&mut self, list: &mut UserProperties) -> Result<(), DecodeError> {
        list.push(self.r.string_pair()?);
        Ok(())
    }
}

/// Fails with DuplicateProperty if the property was already read.
#[inline]
fn vacant<T>(slot: &Option<T>, identifier: u8) -> Result<(), DecodeError> {
    if slot.is_some() {
        Err(DecodeError::DuplicateProperty { id: identifier })
    } else {
        Ok(())
    }
}

// ---- Writing ---------------------------------------------------------------------------------

/// A property value: how long it is on the wire and how to write it (identifier excluded).
pub(crate) trait PropertyValue {
    fn value_len(&self) -> usize;
    fn put_value(&self, out: &mut BytesMut);
}

impl PropertyValue for u8 {
    fn value_len(&self) -> usize {
        1
    }
    fn put_value(&self, out: &mut BytesMut) {
        out.put_u8(*self);
    }
}

impl PropertyValue for bool {
    fn value_len(&self) -> usize {
        1
    }
    fn put_value(&self, out: &mut BytesMut) {
        out.put_u8(u8::from(*self));
    }
}

impl PropertyValue for QoS {
    fn value_len(&self) -> usize {
        1
    }
    fn put_value(&self, out: &mut BytesMut) {
        out.put_u8(*self as u8);
    }
}

impl PropertyValue for u16 {
    fn value_len(&self) -> usize {
        2
    }
    fn put_value(&self, out: &mut BytesMut) {
        out.put_u16(*self);
    }
}

impl PropertyValue for NonZeroU16 {
    fn value_len(&self) -> usize {
        2
    }
    fn put_value(&self, out: &mut BytesMut) {
        out.put_u16(self.get());
    }
}

impl PropertyValue for u32 {
    fn value_len(&self) -> usize {
        4
    }
    fn put_value(&self, out: &mut BytesMut) {
        out.put_u32(*self);
    }
}

impl PropertyValue for NonZeroU32 {
    fn value_len(&self) -> usize {
        4
    }
    fn put_value(&self, out: &mut BytesMut) {
        out.put_u32(self.get());
    }
}

impl PropertyValue for ByteString {
    fn value_len(&self) -> usize {
        prefixed_len(self.as_bytes())
    }
    fn put_value(&self, out: &mut BytesMut) {
        put_string(out, self);
    }
}

impl PropertyValue for Bytes {
    fn value_len(&self) -> usize {
        prefixed_len(self)
    }
    fn put_value(&self, out: &mut BytesMut) {
        put_binary(out, self);
    }
}

/// Encoded length of an optional property, identifier included.
#[inline]
pub(crate) fn opt_len<V: PropertyValue>(value: &Option<V>) -> usize {
    value.as_ref().map_or(0, |v| 1 + v.value_len())
}

/// Writes an optional property, identifier included.
#[inline]
pub(crate) fn put_opt<V: PropertyValue>(out: &mut BytesMut, identifier: u8, value: &Option<V>) {
    if let Some(v) = value {
        out.put_u8(identifier);
        v.put_value(out);
    }
}

pub(crate) fn user_properties_len(list: &UserProperties) -> usize {
    list.iter()
        .map(|(name, value)| 1 + prefixed_len(name.as_bytes()) + prefixed_len(value.as_bytes()))
        .sum()
}

pub(crate) fn put_user_properties(out: &mut BytesMut, list: &UserProperties) {
    for (name, value) in list {
        out.put_u8(id::USER_PROPERTY);
        put_string(out, name);
        put_string(out, value);
    }
}

/// Length of a whole property block: the Property Length integer plus the properties.
#[inline]
pub(crate) fn block_len(properties_len: usize) -> usize {
    varint::encoded_len(properties_len) + properties_len
}

/// Writes the Property Length that starts a block.
#[inline]
pub(crate) fn put_block_len(out: &mut BytesMut, properties_len: usize) {
    varint::write(out, properties_len);
}

/// Length of the tail that ends PUBACK, PUBREC, PUBREL, PUBCOMP, DISCONNECT and AUTH in v5: a
/// reason code, then a property block, each left out when it says nothing ([MQTT-3.4.2-1],
/// [MQTT-3.14.2-1], §3.15.2.1). Success without properties needs no tail at all; a reason
/// without properties needs one byte.
pub(crate) fn reason_tail_len(reason_code: ReasonCode, properties_len: usize) -> usize {
    if properties_len == 0 {
        usize::from(reason_code != ReasonCode::Success)
    } else {
        1 + block_len(properties_len)
    }
}

/// The property block's and the reason tail's lengths of a packet that has the tail only in
/// v5 (the four acks, DISCONNECT).
pub(crate) fn v5_reason_tail_len(
    version: ProtocolVersion,
    reason_code: ReasonCode,
    properties_len: impl FnOnce() -> usize,
) -> (usize, usize) {
    if !version.is_v5() {
        return (0, 0);
    }
    let properties_len = properties_len();
    (properties_len, reason_tail_len(reason_code, properties_len))
}

/// Writes a tail of `tail_len` bytes, as [`reason_tail_len`] measured it.
pub(crate) fn put_reason_tail(
    out: &mut BytesMut,
    tail_len: usize,
    reason_code: ReasonCode,
    properties_len: usize,
    put_properties: impl FnOnce(&mut BytesMut),
) {
    if tail_len > 0 {
        out.put_u8(reason_code as u8);
    }
    if tail_len > 1 {
        put_block_len(out, properties_len);
        put_properties(out);
    }
}

/// Stands in for a secret (password, authentication data) in `Debug` output.
pub(crate) struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `Some(<redacted>)` or `None`: shows whether a secret is there, never what it is.
pub(crate) fn redact<T>(secret: &Option<T>) -> Option<Redacted> {
    secret.as_ref().map(|_| Redacted)
}

// ---- Shared property sets --------------------------------------------------------------------

/// Properties of an application message, shared by a Will and a PUBLISH.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MessageProperties {
    /// 0: unspecified bytes, 1: UTF-8 (§3.3.2.3.2). Values above 1 are refused on decode.
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval_s: Option<u32>,
    pub content_type: Option<ByteString>,
    /// A topic name: never holds a wildcard ([MQTT-3.3.2-14]).
    pub response_topic: Option<ByteString>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: UserProperties,
}

impl MessageProperties {
    /// Reads `identifier` into `self` if it is a message property; `Ok(false)` if it is not.
    pub(crate) fn read(
        &mut self,
        pr: &mut PropertyReader<'_>,
        identifier: u8,
    ) -> Result<bool, DecodeError> {
        match identifier {
            id::PAYLOAD_FORMAT_INDICATOR => {
                pr.u8_up_to(&mut self.payload_format_indicator, identifier, 1)?
            }
            id::MESSAGE_EXPIRY_INTERVAL => {
                pr.u32(&mut self.message_expiry_interval_s, identifier)?
            }
            id::CONTENT_TYPE => pr.string(&mut self.content_type, identifier)?,
            id::RESPONSE_TOPIC => pr.topic_name(
                &mut self.response_topic,
                identifier,
                DecodeError::ResponseTopicWildcard,
            )?,
            id::CORRELATION_DATA => pr.binary(&mut self.correlation_data, identifier)?,
            id::USER_PROPERTY => pr.user_property(&mut self.user_properties)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Encoded length of these properties (without a Property Length).
    pub(crate) fn encoded_len(&self) -> usize {
        opt_len(&self.payload_format_indicator)
            + opt_len(&self.message_expiry_interval_s)
            + opt_len(&self.content_type)
            + opt_len(&self.response_topic)
            + opt_len(&self.correlation_data)
            + user_properties_len(&self.user_properties)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        put_opt(
            out,
            id::PAYLOAD_FORMAT_INDICATOR,
            &self.payload_format_indicator,
        );
        put_opt(
            out,
            id::MESSAGE_EXPIRY_INTERVAL,
            &self.message_expiry_interval_s,
        );
        put_opt(out, id::CONTENT_TYPE, &self.content_type);
        put_opt(out, id::RESPONSE_TOPIC, &self.response_topic);
        put_opt(out, id::CORRELATION_DATA, &self.correlation_data);
        put_user_properties(out, &self.user_properties);
    }
}

/// Correlation data is application data: show its length only.
impl fmt::Debug for MessageProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageProperties")
            .field("payload_format_indicator", &self.payload_format_indicator)
            .field("message_expiry_interval_s", &self.message_expiry_interval_s)
            .field("content_type", &self.content_type)
            .field("response_topic", &self.response_topic)
            .field(
                "correlation_data_len",
                &self.correlation_data.as_ref().map(Bytes::len),
            )
            .field("user_properties", &self.user_properties)
            .finish()
    }
}

/// Properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReasonProperties {
    pub reason_string: Option<ByteString>,
    pub user_properties: UserProperties,
}

impl ReasonProperties {
    /// Reads a whole property block.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let mut p = ReasonProperties::default();
        let mut pr = PropertyReader::new(r)?;
        while let Some(identifier) = pr.next_id()? {
            match identifier {
                id::REASON_STRING => pr.string(&mut p.reason_string, identifier)?,
                id::USER_PROPERTY => pr.user_property(&mut p.user_properties)?,
                other => return Err(unexpected(other)),
            }
        }
        Ok(p)
    }

    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }

    /// Encoded length of these properties (without a Property Length).
    pub(crate) fn encoded_len(&self) -> usize {
        opt_len(&self.reason_string) + user_properties_len(&self.user_properties)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        put_opt(out, id::REASON_STRING, &self.reason_string);
        put_user_properties(out, &self.user_properties);
    }
}

/// Reads a property block that may hold only User Properties (UNSUBSCRIBE).
pub(crate) fn decode_user_properties_only(
    r: &mut Reader<'_>,
) -> Result<UserProperties, DecodeError> {
    let mut list = UserProperties::new();
    let mut pr = PropertyReader::new(r)?;
    while let Some(identifier) = pr.next_id()? {
        match identifier {
            id::USER_PROPERTY => pr.user_property(&mut list)?,
            other => return Err(unexpected(other)),
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_reason(bytes: &'static [u8]) -> Result<ReasonProperties, DecodeError> {
        let body = Bytes::from_static(bytes);
        let mut r = Reader::new(&body);
        let p = ReasonProperties::decode(&mut r)?;
        r.finish()?;
        Ok(p)
    }

    /// Proves identifiers defined for other packets and undefined ones are told apart.
    #[test]
    #[rustfmt::skip]
    fn unknown_and_not_allowed() {
        assert_eq!(
            decode_reason(&[
                0x02,       // property length 2
                0x21, 0x00, // Receive Maximum: defined, but not in an ack
            ]),
            Err(DecodeError::PropertyNotAllowed { id: 0x21 })
        );
        assert_eq!(
            decode_reason(&[
                0x02,       // property length 2
                0x7F, 0x00, // 0x7F: not defined by MQTT 5
            ]),
            Err(DecodeError::UnknownProperty { id: 0x7F })
        );
        assert_eq!(
            decode_reason(&[
                0x02,       // property length 2
                0x9F, 0x00, // a two-byte identifier: none is defined
            ]),
            Err(DecodeError::UnknownProperty { id: 0x9F })
        );
    }

    /// Proves the Reason String may appear once and User Properties any number of times, in order.
    #[test]
    #[rustfmt::skip]
    fn once_and_many() {
        assert_eq!(
            decode_reason(&[
                0x08,                   // property length 8
                0x1F, 0x00, 0x01, b'a', // Reason String "a"
                0x1F, 0x00, 0x01, b'b', // Reason String again
            ]),
            Err(DecodeError::DuplicateProperty { id: 0x1F })
        );
        let p = decode_reason(&[
            0x0E,                                     // property length 14
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'2', // User Property k=2
            0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'1', // User Property k=1
        ])
        .unwrap();
        assert_eq!(
            p.user_properties,
            vec![("k".into(), "2".into()), ("k".into(), "1".into())]
        );
    }

    /// Proves a value running past the Property Length is caught even when the packet goes on.
    #[test]
    #[rustfmt::skip]
    fn value_past_the_block() {
        assert_eq!(
            decode_reason(&[
                0x02,                   // property length 2, but the string needs 4
                0x1F, 0x00, 0x01, b'a', //   reason string "a", running past the block
            ]),
            Err(DecodeError::UnexpectedEnd)
        );
    }

    /// Proves every defined identifier is known and a few undefined ones are not.
    #[test]
    #[rustfmt::skip]
    fn known_identifiers() {
        let defined = [
            0x01, 0x02, 0x03, 0x08, 0x09, 0x0B, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x19,
            0x1A, 0x1C, 0x1F, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2A,
        ];
        for identifier in 0..=u8::MAX {
            assert_eq!(
                is_known(identifier),
                defined.contains(&identifier),
                "{identifier:#04x}"
            );
        }
    }

    /// Proves Debug shows the correlation data's length, not its bytes.
    #[test]
    fn debug_hides_correlation_data() {
        let p = MessageProperties {
            correlation_data: Some(Bytes::from_static(b"secret-request-id")),
            ..MessageProperties::default()
        };
        let shown = format!("{p:?}");
        assert!(shown.contains("correlation_data_len: Some(17)"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }
}
