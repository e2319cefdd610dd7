//! MQTT 5 reason codes (§2.4), which packet may carry which (the tables of §3.x), and the
//! mapping onto the 3.1.1 CONNACK return codes and SUBACK codes.

use crate::error::DecodeError;

/// Every MQTT 5 reason code. `Success` (0x00) is also "Normal disconnection" in a DISCONNECT and
/// "Granted QoS 0" in a SUBACK; the associated constants give those names.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReasonCode {
    Success = 0x00,
    GrantedQoS1 = 0x01,
    GrantedQoS2 = 0x02,
    DisconnectWithWillMessage = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    ContinueAuthentication = 0x18,
    ReAuthenticate = 0x19,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QoSNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

impl ReasonCode {
    /// 0x00 in a DISCONNECT.
    pub const NORMAL_DISCONNECTION: ReasonCode = ReasonCode::Success;
    /// 0x00 in a SUBACK.
    pub const GRANTED_QOS_0: ReasonCode = ReasonCode::Success;

    /// The reason code with this value, if MQTT 5 defines one.
    pub fn from_u8(value: u8) -> Option<Self> {
        use ReasonCode as R;
        Some(match value {
            0x00 => R::Success,
            0x01 => R::GrantedQoS1,
            0x02 => R::GrantedQoS2,
            0x04 => R::DisconnectWithWillMessage,
            0x10 => R::NoMatchingSubscribers,
            0x11 => R::NoSubscriptionExisted,
            0x18 => R::ContinueAuthentication,
            0x19 => R::ReAuthenticate,
            0x80 => R::UnspecifiedError,
            0x81 => R::MalformedPacket,
            0x82 => R::ProtocolError,
            0x83 => R::ImplementationSpecificError,
            0x84 => R::UnsupportedProtocolVersion,
            0x85 => R::ClientIdentifierNotValid,
            0x86 => R::BadUserNameOrPassword,
            0x87 => R::NotAuthorized,
            0x88 => R::ServerUnavailable,
            0x89 => R::ServerBusy,
            0x8A => R::Banned,
            0x8B => R::ServerShuttingDown,
            0x8C => R::BadAuthenticationMethod,
            0x8D => R::KeepAliveTimeout,
            0x8E => R::SessionTakenOver,
            0x8F => R::TopicFilterInvalid,
            0x90 => R::TopicNameInvalid,
            0x91 => R::PacketIdentifierInUse,
            0x92 => R::PacketIdentifierNotFound,
            0x93 => R::ReceiveMaximumExceeded,
            0x94 => R::TopicAliasInvalid,
            0x95 => R::PacketTooLarge,
            0x96 => R::MessageRateTooHigh,
            0x97 => R::QuotaExceeded,
            0x98 => R::AdministrativeAction,
            0x99 => R::PayloadFormatInvalid,
            0x9A => R::RetainNotSupported,
            0x9B => R::QoSNotSupported,
            0x9C => R::UseAnotherServer,
            0x9D => R::ServerMoved,
            0x9E => R::SharedSubscriptionsNotSupported,
            0x9F => R::ConnectionRateExceeded,
            0xA0 => R::MaximumConnectTime,
            0xA1 => R::SubscriptionIdentifiersNotSupported,
            0xA2 => R::WildcardSubscriptionsNotSupported,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        self as u8
    }

    /// Reason codes of 0x80 and above report a failure (§2.4).
    pub fn is_error(self) -> bool {
        self as u8 >= 0x80
    }

    /// The MQTT 3.1/3.1.1 CONNACK return code (§3.2.2.3 of 3.1.1) that best carries this reason:
    /// 0 accepted, 1 unacceptable protocol version, 2 identifier rejected, 3 server unavailable,
    /// 4 bad user name or password, 5 not authorized. Any reason without a closer v3 meaning is
    /// reported as 3, which tells the client to try again later rather than to give up.
    pub fn v3_connack_return_code(self) -> u8 {
        match self {
            ReasonCode::Success => 0,
            ReasonCode::UnsupportedProtocolVersion => 1,
            ReasonCode::ClientIdentifierNotValid => 2,
            ReasonCode::BadUserNameOrPassword => 4,
            ReasonCode::NotAuthorized => 5,
            _ => 3,
        }
    }

    /// The inverse of [`ReasonCode::v3_connack_return_code`] for the six defined return codes.
    pub(crate) fn from_v3_connack_return_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => ReasonCode::Success,
            1 => ReasonCode::UnsupportedProtocolVersion,
            2 => ReasonCode::ClientIdentifierNotValid,
            3 => ReasonCode::ServerUnavailable,
            4 => ReasonCode::BadUserNameOrPassword,
            5 => ReasonCode::NotAuthorized,
            _ => return None,
        })
    }

    /// The 3.1.1 SUBACK return code: granted QoS 0/1/2, or 0x80 for any failure. 3.1 has no
    /// failure code, but 0x80 is the only honest answer there too.
    pub(crate) fn v3_suback_code(self) -> u8 {
        match self {
            ReasonCode::Success => 0x00,
            ReasonCode::GrantedQoS1 => 0x01,
            ReasonCode::GrantedQoS2 => 0x02,
            _ => 0x80,
        }
    }

    pub(crate) fn from_v3_suback_code(code: u8) -> Option<Self> {
        Some(match code {
            0x00 => ReasonCode::Success,
            0x01 => ReasonCode::GrantedQoS1,
            0x02 => ReasonCode::GrantedQoS2,
            0x80 => ReasonCode::UnspecifiedError,
            _ => return None,
        })
    }
}

/// Which packet a reason code is read from; each allows its own table of codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReasonTable {
    ConnAck,
    /// PUBACK and PUBREC share a table (§3.4.2.1, §3.5.2.1).
    PubAckPubRec,
    /// PUBREL and PUBCOMP share a table (§3.6.2.1, §3.7.2.1).
    PubRelPubComp,
    SubAck,
    UnsubAck,
    Disconnect,
    Auth,
}

impl ReasonTable {
    /// Whether the table of this packet type contains `code`.
    pub(crate) fn allows(self, code: ReasonCode) -> bool {
        use ReasonCode as R;
        match self {
            ReasonTable::ConnAck => matches!(
                code,
                R::Success
                    | R::UnspecifiedError
                    | R::MalformedPacket
                    | R::ProtocolError
                    | R::ImplementationSpecificError
                    | R::UnsupportedProtocolVersion
                    | R::ClientIdentifierNotValid
                    | R::BadUserNameOrPassword
                    | R::NotAuthorized
                    | R::ServerUnavailable
                    | R::ServerBusy
                    | R::Banned
                    | R::BadAuthenticationMethod
                    | R::TopicNameInvalid
                    | R::PacketTooLarge
                    | R::QuotaExceeded
                    | R::PayloadFormatInvalid
                    | R::RetainNotSupported
                    | R::QoSNotSupported
                    | R::UseAnotherServer
                    | R::ServerMoved
                    | R::ConnectionRateExceeded
            ),
            ReasonTable::PubAckPubRec => matches!(
                code,
                R::Success
                    | R::NoMatchingSubscribers
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicNameInvalid
                    | R::PacketIdentifierInUse
                    | R::QuotaExceeded
                    | R::PayloadFormatInvalid
            ),
            ReasonTable::PubRelPubComp => {
                matches!(code, R::Success | R::PacketIdentifierNotFound)
            }
            ReasonTable::SubAck => matches!(
                code,
                R::Success
                    | R::GrantedQoS1
                    | R::GrantedQoS2
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicFilterInvalid
                    | R::PacketIdentifierInUse
                    | R::QuotaExceeded
                    | R::SharedSubscriptionsNotSupported
                    | R::SubscriptionIdentifiersNotSupported
                    | R::WildcardSubscriptionsNotSupported
            ),
            ReasonTable::UnsubAck => matches!(
                code,
                R::Success
                    | R::NoSubscriptionExisted
                    | R::UnspecifiedError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::TopicFilterInvalid
                    | R::PacketIdentifierInUse
            ),
            ReasonTable::Disconnect => matches!(
                code,
                R::Success
                    | R::DisconnectWithWillMessage
                    | R::UnspecifiedError
                    | R::MalformedPacket
                    | R::ProtocolError
                    | R::ImplementationSpecificError
                    | R::NotAuthorized
                    | R::ServerBusy
                    | R::ServerShuttingDown
                    | R::KeepAliveTimeout
                    | R::SessionTakenOver
                    | R::TopicFilterInvalid
                    | R::TopicNameInvalid
                    | R::ReceiveMaximumExceeded
                    | R::TopicAliasInvalid
                    | R::PacketTooLarge
                    | R::MessageRateTooHigh
                    | R::QuotaExceeded
                    | R::AdministrativeAction
                    | R::PayloadFormatInvalid
                    | R::RetainNotSupported
                    | R::QoSNotSupported
                    | R::UseAnotherServer
                    | R::ServerMoved
                    | R::SharedSubscriptionsNotSupported
                    | R::ConnectionRateExceeded
                    | R::MaximumConnectTime
                    | R::SubscriptionIdentifiersNotSupported
                    | R::WildcardSubscriptionsNotSupported
            ),
            ReasonTable::Auth => {
                matches!(
                    code,
                    R::Success | R::ContinueAuthentication | R::ReAuthenticate
                )
            }
        }
    }

    /// Reads `byte` as a reason code of this table, for a packet of type `packet`.
    #[inline]
    pub(crate) fn decode(self, packet: u8, byte: u8) -> Result<ReasonCode, DecodeError> {
        match ReasonCode::from_u8(byte) {
            Some(code) if self.allows(code) => Ok(code),
            _ => Err(DecodeError::InvalidReasonCode { packet, code: byte }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves `from_u8` is the exact inverse of the discriminants, over all 256 bytes.
    #[test]
    fn from_u8_round_trips_every_defined_code() {
        let mut defined = 0;
        for byte in 0..=u8::MAX {
            if let Some(code) = ReasonCode::from_u8(byte) {
                assert_eq!(code as u8, byte);
                defined += 1;
            }
        }
        assert_eq!(
            defined, 43,
            "MQTT 5.0 §2.4 defines 43 distinct reason code values"
        );
    }

    /// Proves the error split sits at 0x80 in both directions.
    #[test]
    fn is_error_splits_at_0x80() {
        assert!(!ReasonCode::Success.is_error());
        assert!(!ReasonCode::ReAuthenticate.is_error());
        assert!(ReasonCode::UnspecifiedError.is_error());
        assert!(ReasonCode::WildcardSubscriptionsNotSupported.is_error());
    }

    /// Proves the v3 CONNACK mapping named in the design, code by code.
    #[test]
    fn v3_connack_return_codes() {
        assert_eq!(ReasonCode::Success.v3_connack_return_code(), 0);
        assert_eq!(
            ReasonCode::UnsupportedProtocolVersion.v3_connack_return_code(),
            1
        );
        assert_eq!(
            ReasonCode::ClientIdentifierNotValid.v3_connack_return_code(),
            2
        );
        assert_eq!(ReasonCode::ServerUnavailable.v3_connack_return_code(), 3);
        assert_eq!(ReasonCode::ServerBusy.v3_connack_return_code(), 3);
        assert_eq!(ReasonCode::Banned.v3_connack_return_code(), 3);
        assert_eq!(
            ReasonCode::BadUserNameOrPassword.v3_connack_return_code(),
            4
        );
        assert_eq!(ReasonCode::NotAuthorized.v3_connack_return_code(), 5);
        assert_eq!(ReasonCode::MalformedPacket.v3_connack_return_code(), 3);
        for code in 0..=5 {
            let reason = ReasonCode::from_v3_connack_return_code(code).unwrap();
            assert_eq!(reason.v3_connack_return_code(), code);
        }
        assert_eq!(ReasonCode::from_v3_connack_return_code(6), None);
    }

    /// Proves every code in every table is a defined code, and spot-checks the tables' edges.
    #[test]
    fn tables_hold_the_spec_codes() {
        assert!(ReasonTable::PubRelPubComp.allows(ReasonCode::PacketIdentifierNotFound));
        assert!(!ReasonTable::PubRelPubComp.allows(ReasonCode::UnspecifiedError));
        assert!(ReasonTable::Auth.allows(ReasonCode::ReAuthenticate));
        assert!(!ReasonTable::Auth.allows(ReasonCode::NotAuthorized));
        assert!(!ReasonTable::ConnAck.allows(ReasonCode::GrantedQoS1));
        assert!(ReasonTable::Disconnect.allows(ReasonCode::DisconnectWithWillMessage));
        assert!(!ReasonTable::Disconnect.allows(ReasonCode::NoMatchingSubscribers));
        assert_eq!(
            ReasonTable::Auth.decode(15, 0x87),
            Err(DecodeError::InvalidReasonCode {
                packet: 15,
                code: 0x87
            })
        );
        assert_eq!(
            ReasonTable::SubAck.decode(9, 0x03),
            Err(DecodeError::InvalidReasonCode {
                packet: 9,
                code: 0x03
            })
        );
    }
}
