//! The MQTT wire codec of ironsight: bytes <-> packets for MQTT 3.1, 3.1.1 and 5.0. No I/O, no
//! runtime; decoding allocates only a packet's own lists (filters, user properties, reason codes)
//! and the box of a CONNECT.
//!
//! # Layout
//!
//! - `error`: [`DecodeError`], one `Copy` variant per protocol violation, named after the
//!   specification's normative statement, and its [`ReasonCode`].
//! - `reason`: [`ReasonCode`], which packet may carry which code, and the 3.x mappings.
//! - `varint`: the Variable Byte Integer (remaining length, property length, subscription id).
//! - `strings`: the body cursor, UTF-8 strings, binary data and string pairs (§1.5).
//! - `properties`: property identifiers, the checked property reader and writers, and the
//!   property sets several packets share ([`MessageProperties`], [`ReasonProperties`]).
//! - `types`: the values every packet shares: [`ProtocolVersion`], [`QoS`], [`PacketId`],
//!   [`UserProperties`].
//! - `header`: the fixed header: [`packet_type`], reading it ([`parse_fixed_header`],
//!   [`FrameHeader`]) and writing it (`begin_packet`, `packet_len`).
//! - `framer`: the [`Framer`] state machine that finds where frames end in a stream (splitting
//!   them off a `BytesMut`, or measuring them in a slice the caller copies from).
//! - `connect`, `connack`, `publish`, `ack` (PUBACK/PUBREC/PUBREL/PUBCOMP), `subscribe`,
//!   `suback`, `unsubscribe`, `unsuback`, `disconnect`, `auth`: one packet each, every one with
//!   the same `decode` / `encode` / `encoded_len` interface and its tests at the bottom.
//! - `packet`: [`Packet`] and the dispatch from a frame to the packet files and back. PINGREQ
//!   and PINGRESP have no body and live here.
//!
//! The imports go one way: the packet files import `types`, `header`, `strings` and
//! `properties`, never `packet`; only `packet` imports the packet files (their tests use its
//! round-trip helpers).
//!
//! # Invariants a change must not break
//!
//! - **Decode is zero-copy over the frame `Bytes`.** Strings and binary fields are slices of the
//!   frame (one reference count each, no copy); a decoded packet keeps its frame alive.
//! - **The declared length is checked against the limit from the fixed header, before the body
//!   is buffered** ([`parse_fixed_header`], [`Framer`]): a peer can never make the broker hold
//!   more than `max_packet_size` bytes for one packet.
//! - **Encode never allocates beyond the output buffer.** Every encoder reserves its exact
//!   `encoded_len` once and then writes; `encoded_len` must equal the bytes written (the fuzzer
//!   checks it).
//! - **Bytes from the network never panic the decoder**: every violation is a [`DecodeError`].
//!   Encoding a value no decoder could have produced (a QoS 1 PUBLISH without packet id, a string
//!   over 65,535 bytes, a packet over 268,435,455 bytes, AUTH for 3.x) is a bug in the caller
//!   and panics.
//! - **Decode then encode is exact**: encoding a decoded packet in the same version and decoding
//!   it again gives an equal packet (the encoder writes the shortest form, so the bytes may be
//!   fewer).
//!
//! The codec checks what the bytes alone decide. Rules that need session state (receive maximum,
//! topic alias tables, packet ids in use, wildcard placement in filters, shared subscription
//! syntax, direction of a packet) are the core's.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod error;
mod framer;
mod header;
mod packet;
mod properties;
mod publish;
mod reason;
mod strings;
mod suback;
mod subscribe;
mod types;
mod unsuback;
mod unsubscribe;
mod varint;

pub use bytes::{Bytes, BytesMut};
pub use bytestring::ByteString;

pub use crate::ack::{PubResponse, PubResponseKind};
pub use crate::auth::{Auth, AuthProperties};
pub use crate::connack::{ConnAck, ConnAckProperties};
pub use crate::connect::{Connect, ConnectProperties, Will};
pub use crate::disconnect::{Disconnect, DisconnectProperties};
pub use crate::error::DecodeError;
pub use crate::framer::Framer;
pub use crate::header::{packet_type, parse_fixed_header, FrameHeader};
pub use crate::packet::Packet;
pub use crate::properties::{property_id, MessageProperties, ReasonProperties};
pub use crate::publish::{Publish, PublishProperties};
pub use crate::reason::ReasonCode;
pub use crate::suback::SubAck;
pub use crate::subscribe::{
    RetainHandling, Subscribe, SubscribeFilter, SubscribeFilters, SubscribeFrame,
    SubscribeProperties, SubscriptionOptions,
};
pub use crate::types::{PacketId, ProtocolVersion, QoS, UserProperties};
pub use crate::unsuback::UnsubAck;
pub use crate::unsubscribe::Unsubscribe;
pub use crate::varint::{VARINT_LEN_MAX, VARINT_MAX};
