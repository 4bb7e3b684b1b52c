//! MQTT control packets for protocol levels 3 (3.1), 4 (3.1.1) and 5 (5.0),
//! as Rust types, decoded from and encoded into `bytes` buffers.
//!
//! This crate does no I/O and knows nothing of tokio: a connection reads
//! bytes into a [`BytesMut`](bytes::BytesMut) and calls [`decode`] until it
//! returns `Ok(None)` ("need more bytes"; nothing consumed). Decoding a
//! PUBLISH does not copy its topic or payload: both share the read buffer.
//!
//! Validation is strict, as the specifications require; every violation is a
//! [`DecodeError`] variant naming the rule, and
//! [`DecodeError::reason_code`] gives the reason code to answer with. Nothing
//! in this crate panics on any input.
//!
//! Layout: [`packet`] (the enum, fixed header, entry points), one file per
//! packet family ([`connect`], [`publish`], [`subscribe`], [`control`]),
//! [`properties`] (MQTT 5 properties), [`reason`] (reason codes), `wire`
//! (integers, strings, variable byte integers) and [`bytestr`] (zero-copy
//! UTF-8 strings).

pub mod bytestr;
pub mod connect;
pub mod control;
pub mod error;
pub mod packet;
pub mod properties;
pub mod publish;
pub mod reason;
pub mod subscribe;
mod wire;

pub use bytestr::ByteStr;
pub use connect::{ConnAck, Connect, Will};
pub use control::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError};
pub use packet::{
    DecodeOptions, MAX_PACKET_SIZE, Packet, PacketType, Protocol, QoS, decode, peek_publish,
    take_short_ack,
};
pub use properties::Properties;
pub use publish::{PubResp, Publish, PublishRef};
pub use reason::ReasonCode;
pub use subscribe::{
    RetainHandling, SubAck, SubOptions, Subscribe, Subscription, UnsubAck, Unsubscribe,
};
pub use wire::{read_varint, varint_len};
