//! Decode errors: one variant per distinct protocol violation.
//!
//! Each message starts with the normative statement it breaks, as numbered in MQTT 5.0 (the 3.1.1
//! number follows where it differs), so a log line can be looked up in the specification; where the
//! rule has no numbered statement the message starts with its section (`§2.2.2.2`) instead. Every
//! variant maps to the reason code a v5 peer is told ([`DecodeError::reason_code`]): 0x81
//! Malformed Packet where the bytes cannot be parsed as the specification lays them out, 0x82
//! Protocol Error where they parse but carry data the protocol forbids (the two definitions of
//! MQTT 5.0 §1.2 and §4.13), and the specific codes the specification names elsewhere.

use crate::reason::ReasonCode;

/// Why a packet could not be decoded. Small and `Copy`, so it nests into the core's and the
/// server's errors without allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    // ---- Framing -------------------------------------------------------------------------------
    /// The fixed header declares a packet longer than the negotiated maximum; found before the
    /// body is buffered.
    #[error(
        "[MQTT-3.2.2-15] packet of {size} bytes exceeds the maximum packet size of {max} bytes"
    )]
    PacketTooLarge {
        /// Declared size of the whole packet, fixed header included (saturating at `u32::MAX`).
        size: u32,
        /// The limit it was checked against.
        max: u32,
    },
    #[error("§1.5.5 remaining length has a fifth continuation byte")]
    MalformedRemainingLength,
    #[error("§1.5.5 variable byte integer has a fifth continuation byte")]
    MalformedVariableByteInteger,
    #[error("§4.13 packet ends before its fields do")]
    UnexpectedEnd,
    #[error("§4.13 packet has bytes after its last field")]
    TrailingBytes,
    #[error("§2.1.2 reserved or unknown packet type (AUTH is MQTT 5 only)")]
    InvalidPacketType,
    #[error("[MQTT-2.1.3-1] fixed header flags differ from the values the packet type reserves")]
    ReservedFlags,

    // ---- Data representation -------------------------------------------------------------------
    #[error("[MQTT-1.5.4-1] string is not well-formed UTF-8")]
    InvalidUtf8,
    #[error("[MQTT-1.5.4-2] string contains the null character U+0000")]
    NullCharacter,
    #[error("[MQTT-2.2.1-3] packet identifier is 0")]
    PacketIdZero,

    // ---- CONNECT / CONNACK ---------------------------------------------------------------------
    #[error("[MQTT-3.1.2-1] protocol name is neither \"MQTT\" nor \"MQIsdp\"")]
    InvalidProtocolName,
    #[error("[MQTT-3.1.2-2] unsupported protocol level {level}")]
    UnsupportedProtocolVersion {
        /// The protocol level byte the client sent.
        level: u8,
    },
    #[error("[MQTT-3.1.2-3] CONNECT reserved flag is not 0")]
    ConnectReservedFlag,
    #[error("[MQTT-3.1.2-11] [MQTT-3.1.2-13] will QoS or will retain set without the will flag")]
    WillFlagsWithoutWill,
    #[error("[MQTT-3.1.2-12] will QoS is 3")]
    WillQoS3,
    #[error("[MQTT-3.1.2-22] (3.1.1) password flag set without the user name flag")]
    PasswordWithoutUsername,
    #[error("[MQTT-4.7.0-1] will topic contains a wildcard")]
    WillTopicWildcard,
    #[error("§3.1.2.11.10 authentication data without an authentication method")]
    AuthenticationDataWithoutMethod,
    #[error("[MQTT-3.2.2-1] CONNACK acknowledge flags bits 7-1 are not 0")]
    ConnAckReservedFlags,
    #[error("[MQTT-3.2.2-6] CONNACK has session present set with a refusing reason code")]
    ConnAckSessionPresentWithError,

    // ---- PUBLISH -------------------------------------------------------------------------------
    #[error("[MQTT-3.3.1-4] QoS is 3")]
    InvalidQoS,
    #[error("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")]
    PublishDupWithQoS0,
    #[error("[MQTT-3.3.2-2] PUBLISH topic name contains a wildcard")]
    PublishTopicWildcard,
    #[error("§3.3.2.3.4 PUBLISH topic name is empty and there is no topic alias")]
    EmptyTopicWithoutAlias,
    #[error("[MQTT-4.7.3-1] topic name is empty")]
    EmptyTopicName,
    #[error("[MQTT-3.3.2-8] topic alias is 0")]
    TopicAliasZero,
    #[error("[MQTT-3.3.2-14] response topic contains a wildcard")]
    ResponseTopicWildcard,

    // ---- Properties (MQTT 5) -------------------------------------------------------------------
    #[error("§2.2.2.2 unknown property identifier {id:#04x}")]
    UnknownProperty {
        /// The identifier byte.
        id: u8,
    },
    #[error("§2.2.2.2 property {id:#04x} is not allowed in this packet")]
    PropertyNotAllowed {
        /// The identifier byte.
        id: u8,
    },
    #[error("§2.2.2.2 property {id:#04x} appears more than once")]
    DuplicateProperty {
        /// The identifier byte.
        id: u8,
    },
    #[error("§2.2.2.2 property {id:#04x} has a value the protocol forbids")]
    InvalidPropertyValue {
        /// The identifier byte.
        id: u8,
    },

    // ---- Reason codes --------------------------------------------------------------------------
    #[error("§2.4 reason code {code:#04x} is not one that packet type {packet} may carry")]
    InvalidReasonCode {
        /// The control packet type (1 CONNECT .. 15 AUTH).
        packet: u8,
        /// The reason (or v3 return) code byte.
        code: u8,
    },

    // ---- SUBSCRIBE / UNSUBSCRIBE ---------------------------------------------------------------
    #[error("[MQTT-3.8.3-2] (3.1.1: [MQTT-3.8.3-3]) SUBSCRIBE carries no topic filter")]
    SubscribeNoFilters,
    #[error("[MQTT-3.10.3-2] UNSUBSCRIBE carries no topic filter")]
    UnsubscribeNoFilters,
    #[error("[MQTT-3.8.3-5] (3.1.1: [MQTT-3.8.3-4]) subscription options reserved bits are not 0")]
    SubscriptionOptionsReserved,
    #[error("§3.8.3.1 subscription maximum QoS is 3")]
    SubscriptionQoSInvalid,
    #[error("§3.8.3.1 retain handling is 3")]
    RetainHandlingInvalid,
    #[error("[MQTT-4.7.3-1] topic filter is empty")]
    EmptyTopicFilter,
}

impl DecodeError {
    /// The reason code to put in the CONNACK (for a CONNECT) or DISCONNECT sent to a v5 peer
    /// before closing the connection.
    pub fn reason_code(self) -> ReasonCode {
        use DecodeError as E;
        match self {
            E::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            E::UnsupportedProtocolVersion { .. } => ReasonCode::UnsupportedProtocolVersion,
            E::PublishTopicWildcard | E::WillTopicWildcard | E::EmptyTopicName => {
                ReasonCode::TopicNameInvalid
            }
            E::TopicAliasZero => ReasonCode::TopicAliasInvalid,
            // Parsed, but forbidden: Protocol Error.
            E::InvalidProtocolName
            | E::WillFlagsWithoutWill
            | E::PasswordWithoutUsername
            | E::AuthenticationDataWithoutMethod
            | E::ConnAckSessionPresentWithError
            | E::PacketIdZero
            | E::EmptyTopicWithoutAlias
            | E::ResponseTopicWildcard
            | E::DuplicateProperty { .. }
            | E::InvalidPropertyValue { .. }
            | E::InvalidReasonCode { .. }
            | E::SubscribeNoFilters
            | E::UnsubscribeNoFilters
            | E::SubscriptionQoSInvalid
            | E::RetainHandlingInvalid
            | E::EmptyTopicFilter => ReasonCode::ProtocolError,
            // Cannot be parsed as the specification lays the packet out: Malformed Packet.
            E::MalformedRemainingLength
            | E::MalformedVariableByteInteger
            | E::UnexpectedEnd
            | E::TrailingBytes
            | E::InvalidPacketType
            | E::ReservedFlags
            | E::InvalidUtf8
            | E::NullCharacter
            | E::ConnectReservedFlag
            | E::WillQoS3
            | E::ConnAckReservedFlags
            | E::InvalidQoS
            | E::PublishDupWithQoS0
            | E::UnknownProperty { .. }
            | E::PropertyNotAllowed { .. }
            | E::SubscriptionOptionsReserved => ReasonCode::MalformedPacket,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the error stays small enough to be returned by value on the hot path.
    #[test]
    fn decode_error_is_small() {
        assert!(std::mem::size_of::<DecodeError>() <= 12);
    }

    /// Proves messages lead with the normative id and carry the values a reader acts on.
    #[test]
    fn messages_name_the_rule_and_the_values() {
        let e = DecodeError::PacketTooLarge {
            size: 2000,
            max: 1024,
        };
        assert_eq!(
            e.to_string(),
            "[MQTT-3.2.2-15] packet of 2000 bytes exceeds the maximum packet size of 1024 bytes"
        );
        assert_eq!(
            DecodeError::PublishTopicWildcard.to_string(),
            "[MQTT-3.3.2-2] PUBLISH topic name contains a wildcard"
        );
        assert_eq!(
            DecodeError::UnknownProperty { id: 0x7f }.to_string(),
            "§2.2.2.2 unknown property identifier 0x7f"
        );
    }

    /// Proves the reason codes the specification names explicitly.
    #[test]
    fn reason_codes_follow_the_spec_wording() {
        use DecodeError as E;
        assert_eq!(
            E::PacketTooLarge { size: 9, max: 8 }.reason_code(),
            ReasonCode::PacketTooLarge
        );
        assert_eq!(
            E::UnsupportedProtocolVersion { level: 6 }.reason_code(),
            ReasonCode::UnsupportedProtocolVersion
        );
        assert_eq!(
            E::PublishTopicWildcard.reason_code(),
            ReasonCode::TopicNameInvalid
        );
        assert_eq!(
            E::TopicAliasZero.reason_code(),
            ReasonCode::TopicAliasInvalid
        );
        assert_eq!(E::InvalidQoS.reason_code(), ReasonCode::MalformedPacket);
        assert_eq!(
            E::ConnectReservedFlag.reason_code(),
            ReasonCode::MalformedPacket
        );
        assert_eq!(
            E::SubscribeNoFilters.reason_code(),
            ReasonCode::ProtocolError
        );
        assert_eq!(
            E::DuplicateProperty { id: 1 }.reason_code(),
            ReasonCode::ProtocolError
        );
        assert_eq!(
            E::PropertyNotAllowed { id: 1 }.reason_code(),
            ReasonCode::MalformedPacket
        );
    }
}
