//! DISCONNECT and AUTH, and the "reason code, then properties, both optional"
//! tail they share with the PUBLISH acknowledgements (5.0 §3.4.2.1, §3.14.2.1,
//! §3.15.2.1: a missing reason code means success, missing properties mean
//! none).

use crate::error::{DecodeError, EncodeError};
use crate::packet::Protocol;
use crate::properties::{Context, Properties};
use crate::reason::ReasonCode;
use crate::wire::Reader;
use bytes::{BufMut, BytesMut};

/// Reads an optional reason code (checked against the packet) and optional
/// properties.
pub(crate) fn decode_reason_and_properties(
    r: &mut Reader,
    ctx: Context,
) -> Result<(ReasonCode, Properties), DecodeError> {
    let packet = r.packet();
    if r.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let code = r.u8("reason code")?;
    let reason = ReasonCode(code);
    if !reason.allowed_in(packet) {
        return Err(DecodeError::InvalidReasonCode { packet, code });
    }
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(r, ctx)?
    };
    Ok((reason, properties))
}

/// Size of the shortest encoding of a reason code and properties.
pub(crate) fn reason_and_properties_len(
    reason: ReasonCode,
    properties: &Properties,
) -> Result<usize, EncodeError> {
    let props = properties.encoded_len()?;
    Ok(if props > 0 {
        1 + crate::wire::varint_len(props) + props
    } else if reason != ReasonCode::SUCCESS {
        1
    } else {
        0
    })
}

/// Writes the shortest encoding: nothing for success without properties.
pub(crate) fn write_reason_and_properties(
    buf: &mut BytesMut,
    reason: ReasonCode,
    properties: &Properties,
) -> Result<(), EncodeError> {
    let props = properties.encoded_len()?;
    if props > 0 || reason != ReasonCode::SUCCESS {
        buf.put_u8(reason.0);
    }
    if props > 0 {
        properties.write(buf, props)?;
    }
    Ok(())
}

/// A DISCONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Reason code (5.0); 0x00 normal disconnection.
    pub reason: ReasonCode,
    /// Session expiry, reason string, server reference, user properties (5.0).
    pub properties: Properties,
}

impl Disconnect {
    pub(crate) fn decode(r: &mut Reader, protocol: Protocol) -> Result<Disconnect, DecodeError> {
        if !protocol.is_v5() {
            return Ok(Disconnect::default());
        }
        let (reason, properties) = decode_reason_and_properties(r, Context::DISCONNECT)?;
        Ok(Disconnect { reason, properties })
    }

    // A DISCONNECT with a reason code always carries its property length,
    // even when 0: the shorter form is valid (5.0 §3.14.2.2.1), but some
    // clients (rumqttc 0.25) cannot read it and lose the reason.
    pub(crate) fn remaining_len(&self, protocol: Protocol) -> Result<usize, EncodeError> {
        if !protocol.is_v5() {
            return Ok(0);
        }
        let n = reason_and_properties_len(self.reason, &self.properties)?;
        Ok(if n == 1 { 2 } else { n })
    }

    pub(crate) fn write(&self, buf: &mut BytesMut, protocol: Protocol) -> Result<(), EncodeError> {
        if protocol.is_v5() {
            write_reason_and_properties(buf, self.reason, &self.properties)?;
            if self.reason != ReasonCode::SUCCESS && self.properties.encoded_len()? == 0 {
                buf.put_u8(0);
            }
        }
        Ok(())
    }
}

/// An AUTH packet (5.0 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// 0x00 success, 0x18 continue authentication, 0x19 re-authenticate.
    pub reason: ReasonCode,
    /// Authentication method and data, reason string, user properties.
    pub properties: Properties,
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader) -> Result<Auth, DecodeError> {
        let (reason, properties) = decode_reason_and_properties(r, Context::AUTH)?;
        Ok(Auth { reason, properties })
    }

    pub(crate) fn remaining_len(&self) -> Result<usize, EncodeError> {
        reason_and_properties_len(self.reason, &self.properties)
    }

    pub(crate) fn write(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        write_reason_and_properties(buf, self.reason, &self.properties)
    }
}
