//! Protocol violations: what a client did that the specification forbids, each named after the
//! normative statement it breaks and mapped, in one place, to the reason code a v5 client is
//! told in the DISCONNECT that ends its connection.
//!
//! The codec finds what the bytes alone decide ([`DecodeError`], nested here unchanged); the core
//! finds what needs the connection's state: the direction of a packet, a second CONNECT, topic
//! aliases, the Receive Maximum, the session a DISCONNECT may not revive. As in the codec, each
//! message starts with the statement's id (`[MQTT-x.y.z-n]`, MQTT 5.0 numbering), or with its
//! section (`§x.y.z`) where the rule has no numbered statement. The message travels to a v5
//! client as the DISCONNECT's Reason String when it asked for problem information and the
//! packet stays within its Maximum Packet Size.
//!
//! Limits the broker chooses (topic length, subscriptions per session) and policies (who may
//! publish where) are not violations: they end connections with their own reason codes.

use ironsight_codec::{packet_type, DecodeError, PacketId, ReasonCode};

use crate::topic::FilterError;

/// Why the core ends a connection for breaking the protocol. Small and `Copy`, like the codec's
/// errors it nests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The packet does not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("[MQTT-3.1.0-1] the first packet is not CONNECT")]
    FirstPacketNotConnect,
    #[error("[MQTT-3.1.0-2] a second CONNECT")]
    SecondConnect,
    /// CONNACK, SUBACK, UNSUBACK or PINGRESP: their direction is server to client only (the
    /// "Direction of flow" column of §2.1.2). The specification calls a packet that breaks the
    /// protocol's rules without being malformed a Protocol Error (§1.2, §4.13).
    #[error("§2.1.2 {} flows only from server to client", packet_name(*.packet))]
    ServerToClientPacket {
        /// The control packet type.
        packet: u8,
    },
    #[error("[MQTT-4.12.0-7] AUTH from a client whose CONNECT named no authentication method")]
    AuthWithoutMethod,
    #[error("[MQTT-3.3.4-6] a PUBLISH from a client carries a Subscription Identifier")]
    SubscriptionIdentifierFromClient,
    #[error("[MQTT-3.3.2-9] topic alias {alias} exceeds the Topic Alias Maximum {max}")]
    TopicAliasAboveMaximum {
        /// The alias the client sent.
        alias: u16,
        /// The Topic Alias Maximum the broker announced.
        max: u16,
    },
    #[error("§3.3.2.3.4 topic alias {alias} was never set on this connection")]
    TopicAliasUnknown {
        /// The alias the client sent with an empty topic.
        alias: u16,
    },
    #[error(
        "[MQTT-3.3.4-7] more than the Receive Maximum of {max} QoS 1 and 2 PUBLISHes unacknowledged"
    )]
    ReceiveMaximumExceeded {
        /// The Receive Maximum the broker announced.
        max: u16,
    },
    /// The filter's own message names the rule ([MQTT-4.7.1-1], [MQTT-4.8.2-1], ...).
    #[error("{0}")]
    TopicFilterInvalid(FilterError),
    #[error("[MQTT-3.8.3-4] No Local on a shared subscription")]
    NoLocalOnSharedSubscription,
    #[error(
        "§3.14.2.2.2 DISCONNECT sets a Session Expiry Interval on a session that was to end with \
         its connection"
    )]
    SessionExpiryRevived,
    #[error("§4.3.3 PUBREC for packet id {pid}, a QoS 1 delivery")]
    PubRecForQoS1 {
        /// The packet id of the QoS 1 PUBLISH in flight.
        pid: PacketId,
    },
}

impl Violation {
    /// The reason code of the DISCONNECT (or, before CONNACK, the CONNACK) that tells a v5 client.
    pub fn reason_code(self) -> ReasonCode {
        use Violation as V;
        match self {
            V::Decode(error) => error.reason_code(),
            // 3.3.2.3.4: an alias of 0 or above the maximum is answered with Topic Alias invalid.
            V::TopicAliasAboveMaximum { .. } => ReasonCode::TopicAliasInvalid,
            // 3.3.4: "uses DISCONNECT with Reason Code 0x93 (Receive Maximum exceeded)".
            V::ReceiveMaximumExceeded { .. } => ReasonCode::ReceiveMaximumExceeded,
            V::FirstPacketNotConnect
            | V::SecondConnect
            | V::ServerToClientPacket { .. }
            | V::AuthWithoutMethod
            | V::SubscriptionIdentifierFromClient
            | V::TopicAliasUnknown { .. }
            | V::TopicFilterInvalid(_)
            | V::NoLocalOnSharedSubscription
            | V::SessionExpiryRevived
            | V::PubRecForQoS1 { .. } => ReasonCode::ProtocolError,
        }
    }

    /// The violation a packet of this type is by its type alone, from a connected client: a
    /// packet only a server sends, a second CONNECT, or AUTH (no client authenticates with a
    /// method yet, so none may send AUTH; an authentication issue opens this for clients that
    /// named a supported method). Decided from the first byte, before the body is decoded, so
    /// that a packet that should not be there at all is a Protocol Error whatever its body.
    pub fn by_packet_type(first_byte: u8, v5: bool) -> Option<Violation> {
        match first_byte >> 4 {
            packet_type::CONNECT => Some(Violation::SecondConnect),
            packet @ (packet_type::CONNACK
            | packet_type::SUBACK
            | packet_type::UNSUBACK
            | packet_type::PINGRESP) => Some(Violation::ServerToClientPacket { packet }),
            // Under 3.x, type 15 is reserved: the codec calls it malformed.
            packet_type::AUTH if v5 => Some(Violation::AuthWithoutMethod),
            _ => None,
        }
    }
}

fn packet_name(packet: u8) -> &'static str {
    match packet {
        packet_type::CONNACK => "CONNACK",
        packet_type::SUBACK => "SUBACK",
        packet_type::UNSUBACK => "UNSUBACK",
        packet_type::PINGRESP => "PINGRESP",
        _ => "this packet",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the violation stays small enough to pass by value, with a decode error inside.
    #[test]
    fn violation_is_small() {
        assert!(std::mem::size_of::<Violation>() <= 16);
    }

    /// Proves messages lead with the normative id and carry the values a reader acts on, and a
    /// nested decode error keeps its own message.
    #[test]
    fn messages_name_the_rule() {
        let v = Violation::ServerToClientPacket {
            packet: packet_type::SUBACK,
        };
        assert_eq!(
            v.to_string(),
            "§2.1.2 SUBACK flows only from server to client"
        );
        assert_eq!(
            Violation::TopicAliasAboveMaximum { alias: 9, max: 8 }.to_string(),
            "[MQTT-3.3.2-9] topic alias 9 exceeds the Topic Alias Maximum 8"
        );
        let nested = Violation::from(DecodeError::InvalidQoS);
        assert_eq!(nested.to_string(), DecodeError::InvalidQoS.to_string());
        assert_eq!(
            Violation::TopicFilterInvalid(FilterError::MultiLevelWildcard).to_string(),
            FilterError::MultiLevelWildcard.to_string()
        );
    }

    /// Proves the reason codes: a packet in the wrong direction is a Protocol Error (0x82), not
    /// a Malformed Packet (0x81); the codes the specification names are used where it names one.
    #[test]
    fn reason_codes() {
        for packet in [2, 9, 11, 13] {
            let v = Violation::by_packet_type(packet << 4, true).unwrap();
            assert_eq!(v.reason_code(), ReasonCode::ProtocolError, "type {packet}");
        }
        assert_eq!(
            Violation::by_packet_type(0x10, false),
            Some(Violation::SecondConnect)
        );
        assert_eq!(
            Violation::by_packet_type(0xF0, true),
            Some(Violation::AuthWithoutMethod)
        );
        assert_eq!(
            Violation::by_packet_type(0xF0, false),
            None,
            "reserved in 3.x"
        );
        for allowed in [3u8, 4, 5, 6, 7, 8, 10, 12, 14] {
            assert_eq!(Violation::by_packet_type(allowed << 4, true), None);
        }
        assert_eq!(
            Violation::ReceiveMaximumExceeded { max: 5 }.reason_code(),
            ReasonCode::ReceiveMaximumExceeded
        );
        assert_eq!(
            Violation::TopicAliasAboveMaximum { alias: 9, max: 8 }.reason_code(),
            ReasonCode::TopicAliasInvalid
        );
        assert_eq!(
            Violation::Decode(DecodeError::InvalidQoS).reason_code(),
            ReasonCode::MalformedPacket
        );
    }
}
