//! The values every packet shares: [`ProtocolVersion`], [`QoS`], [`PacketId`] and
//! [`UserProperties`]. This module imports no packet file, so every packet file can import it
//! without making a circle.

use bytestring::ByteString;

use crate::error::DecodeError;

/// A non-zero packet identifier ([MQTT-2.2.1-3]).
pub type PacketId = std::num::NonZeroU16;

/// User Properties in wire order; a name may repeat (§3.3.2.3.7).
pub type UserProperties = Vec<(ByteString, ByteString)>;

/// The protocol a connection speaks, fixed by its CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    V5,
}

impl ProtocolVersion {
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }

    /// The Protocol Level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The Protocol Name string of CONNECT.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
        }
    }
}

/// Quality of service of a message or a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl TryFrom<u8> for QoS {
    type Error = DecodeError;

    #[inline]
    fn try_from(value: u8) -> Result<Self, DecodeError> {
        match value {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(DecodeError::InvalidQoS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the helpers of the public types.
    #[test]
    fn versions_and_qos() {
        let all = [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ];
        assert_eq!(all.map(ProtocolVersion::level), [3, 4, 5]);
        assert_eq!(all.map(ProtocolVersion::is_v5), [false, false, true]);
        assert_eq!(
            all.map(ProtocolVersion::protocol_name),
            ["MQIsdp", "MQTT", "MQTT"]
        );
        assert_eq!(QoS::try_from(2), Ok(QoS::ExactlyOnce));
        assert_eq!(QoS::try_from(3), Err(DecodeError::InvalidQoS));
        assert!(QoS::AtMostOnce < QoS::ExactlyOnce);
    }
}
