//! What one record of the state log says, as bytes: the data of one
//! [`crate::frame`].
//!
//! ```text
//! kind 1, a retained message: expires_ms u64 | received_ms u64
//!         | client str | has_username u8 [| username str]
//!         | the message as an MQTT 5.0 PUBLISH packet (topic, QoS,
//!           payload, properties: the codec's own encoding)
//! kind 2, a retained message cleared: topic (the rest of the record)
//! kind 3, a persistent session: client str | has_username u8 [| username
//!         str] | expiry_interval u32 | expires_ms u64 | n u32 | n × (filter
//!         str | options u8 (5.0 byte) | has_id u8 [| id u32])
//!         (read, no longer written: kind 11 replaced it)
//! kind 11, a persistent session: as kind 3, then
//!         has_owner u8 [| owner] | has_will u8 [| will], where
//!         owner = family u8 (4, 6) | address (4 or 16 bytes) | port u16
//!         | protocol level u8 | keep alive u16 | clean start u8
//!         | connected_ms u64 | listener u8 | superuser u8
//!         | has_cert u8 [| has_cn u8 [| cn str] | dn str]
//!         will = delay u32 | due_ms u64 (0: due its delay after a
//!         restart) | the will as an MQTT 5.0 PUBLISH packet
//! kind 4, a session ended: client (the rest)
//! kind 5, a message queued for a session: client str | seq u64 | qos u8 |
//!         retain u8 | n u16 | n × subscription id u32 | message as kind 1
//! kind 6, sent: client str | seq u64 | packet id u16
//! kind 7, released (PUBREC received): client str | seq u64
//! kind 8, done (acknowledged or dropped): client str | seq u64
//! kind 9, an incoming QoS 2 packet id awaiting PUBREL (10: no longer):
//!         client str | packet id u16
//! ```
//!
//! Integers are big-endian; `str` is a u16 length and UTF-8 bytes.
//! `expires_ms` is the wall-clock time (ms since the epoch) the message
//! expires at, 0 for never: expiry counts from the original publish across
//! restarts. Encoding and decoding only; nothing here does I/O.

use crate::hooks::ClientInfo;
use crate::message::{Delivery, Message};
use crate::session::{Owner, SessionWill, SubEntry};
use crate::support::now_ms;
use crate::transport::{ListenerKind, PeerCert};
use bytes::{Buf, Bytes, BytesMut};
use herald_codec::{ByteStr, DecodeOptions, Packet, Protocol, Publish, QoS, SubOptions, Will};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Record kind: a retained message set on its topic.
const RETAIN: u8 = 1;
/// Record kind: the retained message of a topic cleared.
const UNRETAIN: u8 = 2;
/// Record kind: a persistent session's settings and subscriptions.
const SESSION: u8 = 3;
/// Record kind: a session ended.
const SESSION_GONE: u8 = 4;
/// Record kind: a delivery queued for a session.
const QUEUED: u8 = 5;
/// Record kind: a queued delivery sent with a packet id.
const SENT: u8 = 6;
/// Record kind: a QoS 2 delivery's PUBREC received.
const RELEASED: u8 = 7;
/// Record kind: a delivery acknowledged (or dropped).
const DONE: u8 = 8;
/// Record kind: an incoming QoS 2 packet id awaiting PUBREL.
const QOS2_IN: u8 = 9;
/// Record kind: an incoming QoS 2 packet id released.
const QOS2_IN_DONE: u8 = 10;
/// Record kind: a persistent session with its owner and will.
const SESSION_WITH_WILL: u8 = 11;

/// Wall-clock expiry of a stored session meaning "connected when
/// written": its expiry starts counting at the restart.
pub(crate) const CONNECTED: u64 = 0;
/// Wall-clock expiry of a stored session that never expires.
pub(crate) const NEVER: u64 = u64::MAX;

/// A persistent session as stored.
#[derive(Debug, Clone)]
pub(crate) struct StoredSession {
    /// Its client id.
    pub(crate) client_id: ByteStr,
    /// User name of its last connection.
    pub(crate) username: Option<ByteStr>,
    /// Session Expiry Interval, seconds.
    pub(crate) expiry_interval: u32,
    /// When it expires, ms since the epoch; [`CONNECTED`] or [`NEVER`].
    pub(crate) expires_ms: u64,
    /// Topic filter (as sent) and subscription.
    pub(crate) subscriptions: Vec<(ByteStr, SubEntry)>,
    /// Who its last connection was (`None` in records of kind 3).
    pub(crate) owner: Option<Arc<Owner>>,
    /// Its will, waiting.
    pub(crate) will: Option<SessionWill>,
}

/// One change of the stored state.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// `message` is now retained on its topic.
    Retain(Arc<Message>),
    /// Nothing is retained on this topic any more.
    Unretain(ByteStr),
    /// A persistent session's settings and subscriptions (replacing what
    /// was stored of them; its messages stay).
    Session(Arc<StoredSession>),
    /// A session ended: everything of it goes.
    SessionGone(ByteStr),
    /// A delivery queued for a session, numbered `seq` in it.
    Queued(ByteStr, u64, Delivery),
    /// Delivery `seq` sent with this packet id.
    Sent(ByteStr, u64, u16),
    /// Delivery `seq` (QoS 2) PUBREC'd.
    Released(ByteStr, u64),
    /// Delivery `seq` acknowledged or dropped.
    Done(ByteStr, u64),
    /// An incoming QoS 2 packet id awaiting PUBREL (`true`) or released.
    Qos2In(ByteStr, u16, bool),
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Undecodable;

/// Appends the record data of `change` to `out`.
pub(crate) fn encode(change: &Change, out: &mut Vec<u8>) {
    match change {
        Change::Retain(m) => {
            out.push(RETAIN);
            encode_message(m, out);
        }
        Change::Unretain(topic) => {
            out.push(UNRETAIN);
            out.extend_from_slice(topic.as_bytes());
        }
        Change::Session(s) => {
            out.push(SESSION_WITH_WILL);
            put_str(out, &s.client_id);
            put_opt_str(out, s.username.as_ref());
            out.extend_from_slice(&s.expiry_interval.to_be_bytes());
            out.extend_from_slice(&s.expires_ms.to_be_bytes());
            out.extend_from_slice(&(s.subscriptions.len() as u32).to_be_bytes());
            for (filter, entry) in &s.subscriptions {
                put_str(out, filter);
                out.push(entry.options.to_byte(Protocol::V5));
                match entry.id {
                    Some(id) => {
                        out.push(1);
                        out.extend_from_slice(&id.to_be_bytes());
                    }
                    None => out.push(0),
                }
            }
            match &s.owner {
                Some(owner) => {
                    out.push(1);
                    encode_owner(owner, out);
                }
                None => out.push(0),
            }
            match &s.will {
                Some(will) => {
                    out.push(1);
                    encode_will(will, out);
                }
                None => out.push(0),
            }
        }
        Change::SessionGone(client) => {
            out.push(SESSION_GONE);
            out.extend_from_slice(client.as_bytes());
        }
        Change::Queued(client, seq, d) => {
            out.push(QUEUED);
            put_str(out, client);
            out.extend_from_slice(&seq.to_be_bytes());
            out.push(d.qos as u8);
            out.push(u8::from(d.retain));
            let ids = d.subscription_ids.len().min(usize::from(u16::MAX));
            out.extend_from_slice(&(ids as u16).to_be_bytes());
            for id in d.subscription_ids.iter().take(ids) {
                out.extend_from_slice(&id.to_be_bytes());
            }
            encode_message(&d.message, out);
        }
        Change::Sent(client, seq, packet_id) => {
            out.push(SENT);
            put_str(out, client);
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&packet_id.to_be_bytes());
        }
        Change::Released(client, seq) | Change::Done(client, seq) => {
            out.push(if matches!(change, Change::Released(..)) {
                RELEASED
            } else {
                DONE
            });
            put_str(out, client);
            out.extend_from_slice(&seq.to_be_bytes());
        }
        Change::Qos2In(client, packet_id, awaiting) => {
            out.push(if *awaiting { QOS2_IN } else { QOS2_IN_DONE });
            put_str(out, client);
            out.extend_from_slice(&packet_id.to_be_bytes());
        }
    }
}

/// Appends who a session's last connection was.
fn encode_owner(owner: &Owner, out: &mut Vec<u8>) {
    let info = &owner.info;
    match info.peer.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&info.peer.port().to_be_bytes());
    out.push(info.protocol.level());
    out.extend_from_slice(&info.keepalive.to_be_bytes());
    out.push(u8::from(info.clean_start));
    out.extend_from_slice(&info.connected_at_ms.to_be_bytes());
    out.push(info.listener.index() as u8);
    out.push(u8::from(owner.superuser));
    match &info.cert {
        Some(cert) => {
            out.push(1);
            let cn = cert.cn.as_deref().map(ByteStr::from);
            put_opt_str(out, cn.as_ref());
            put_str(out, &cert.dn);
        }
        None => out.push(0),
    }
}

/// Reads what [`encode_owner`] wrote; `client_id` and `username` come
/// from the session record.
fn decode_owner(
    data: &mut Bytes,
    client_id: &ByteStr,
    username: Option<&ByteStr>,
) -> Result<Owner, Undecodable> {
    let ip = match get_u8(data)? {
        4 if data.remaining() >= 4 => {
            let mut b = [0; 4];
            data.copy_to_slice(&mut b);
            IpAddr::from(b)
        }
        6 if data.remaining() >= 16 => {
            let mut b = [0; 16];
            data.copy_to_slice(&mut b);
            IpAddr::from(b)
        }
        _ => return Err(Undecodable),
    };
    let peer = SocketAddr::new(ip, get_u16(data)?);
    let protocol = match get_u8(data)? {
        3 => Protocol::V3_1,
        4 => Protocol::V3_1_1,
        5 => Protocol::V5,
        _ => return Err(Undecodable),
    };
    let keepalive = get_u16(data)?;
    let clean_start = get_u8(data)? != 0;
    let connected_at_ms = get_u64(data)?;
    let listener = *ListenerKind::ALL
        .get(usize::from(get_u8(data)?))
        .ok_or(Undecodable)?;
    let superuser = get_u8(data)? != 0;
    let cert = match get_u8(data)? {
        0 => None,
        1 => {
            let cn = get_opt_str(data)?.map(|s| s.to_string());
            let dn = get_str(data)?.to_string();
            Some(Arc::new(PeerCert { cn, dn }))
        }
        _ => return Err(Undecodable),
    };
    Ok(Owner {
        info: ClientInfo {
            client_id: client_id.clone(),
            username: username.cloned(),
            peer,
            protocol,
            keepalive,
            clean_start,
            connected_at_ms,
            listener,
            cert,
        },
        superuser,
    })
}

/// Appends a session's will: its delay, when it is due, and the will as a
/// PUBLISH packet (the delay is not a PUBLISH property).
fn encode_will(w: &SessionWill, out: &mut Vec<u8>) {
    out.extend_from_slice(&w.delay().to_be_bytes());
    out.extend_from_slice(&w.due_ms.to_be_bytes());
    let mut properties = w.will.properties.clone();
    properties.will_delay_interval = None;
    let publish = Publish {
        dup: false,
        qos: w.will.qos,
        retain: w.will.retain,
        topic: w.will.topic.clone(),
        packet_id: if w.will.qos == QoS::AtMostOnce { 0 } else { 1 },
        properties,
        payload: w.will.payload.clone(),
    };
    let mut packet = BytesMut::new();
    // A will the broker accepted always encodes; should one not, the
    // record is skipped as undecodable when read.
    if Packet::Publish(publish)
        .encode(Protocol::V5, &mut packet)
        .is_ok()
    {
        out.extend_from_slice(&packet);
    }
}

/// Reads what [`encode_will`] wrote (the rest of the record).
fn decode_will(mut data: Bytes) -> Result<SessionWill, Undecodable> {
    let delay = get_u32(&mut data)?;
    let due_ms = get_u64(&mut data)?;
    let p = decode_publish(data)?;
    let mut properties = p.properties;
    properties.detach();
    properties.will_delay_interval = (delay > 0).then_some(delay);
    let (topic, payload) = p.topic.detached_with(&p.payload);
    Ok(SessionWill {
        will: Arc::new(Will {
            topic,
            payload,
            qos: p.qos,
            retain: p.retain,
            properties,
        }),
        due_ms,
    })
}

/// Decodes a whole record rest as one PUBLISH packet.
fn decode_publish(data: Bytes) -> Result<Publish, Undecodable> {
    let mut packet = BytesMut::from(&data[..]);
    let Ok(Some(Packet::Publish(p))) = herald_codec::decode(&mut packet, &DecodeOptions::default())
    else {
        return Err(Undecodable);
    };
    if !packet.is_empty() {
        return Err(Undecodable);
    }
    Ok(p)
}

/// Appends an optional string: a presence byte, then the string.
fn put_opt_str(out: &mut Vec<u8>, s: Option<&ByteStr>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

/// Reads what [`put_opt_str`] wrote.
fn get_opt_str(data: &mut Bytes) -> Result<Option<ByteStr>, Undecodable> {
    match get_u8(data)? {
        0 => Ok(None),
        1 => get_str(data).map(Some),
        _ => Err(Undecodable),
    }
}

fn get_u8(data: &mut Bytes) -> Result<u8, Undecodable> {
    data.has_remaining()
        .then(|| data.get_u8())
        .ok_or(Undecodable)
}

fn get_u16(data: &mut Bytes) -> Result<u16, Undecodable> {
    (data.remaining() >= 2)
        .then(|| data.get_u16())
        .ok_or(Undecodable)
}

fn get_u32(data: &mut Bytes) -> Result<u32, Undecodable> {
    (data.remaining() >= 4)
        .then(|| data.get_u32())
        .ok_or(Undecodable)
}

fn get_u64(data: &mut Bytes) -> Result<u64, Undecodable> {
    (data.remaining() >= 8)
        .then(|| data.get_u64())
        .ok_or(Undecodable)
}

/// The rest of a record, which must be empty.
fn end(data: &Bytes) -> Result<(), Undecodable> {
    if data.has_remaining() {
        Err(Undecodable)
    } else {
        Ok(())
    }
}

/// Appends a message: its expiry, arrival, publisher and PUBLISH packet.
fn encode_message(m: &Message, out: &mut Vec<u8>) {
    let now = Instant::now();
    let expires_ms = m.expires_at.map_or(0, |at| {
        let left = at.saturating_duration_since(now);
        now_ms()
            .saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
            .max(1)
    });
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out.extend_from_slice(&m.received_at_ms.to_be_bytes());
    put_str(out, &m.from_client_id);
    put_opt_str(out, m.from_username.as_ref());
    let publish = Publish {
        dup: false,
        qos: m.qos,
        retain: m.retain,
        topic: m.topic.clone(),
        packet_id: if m.qos == QoS::AtMostOnce { 0 } else { 1 },
        properties: m.properties.as_deref().cloned().unwrap_or_default(),
        payload: m.payload.clone(),
    };
    let mut packet = BytesMut::new();
    // A message the broker accepted always encodes (it was decoded from a
    // packet of at most the maximum size); should one not, the record
    // holds no packet and is skipped as undecodable when read.
    if Packet::Publish(publish)
        .encode(Protocol::V5, &mut packet)
        .is_ok()
    {
        out.extend_from_slice(&packet);
    }
}

/// Appends a u16-length-prefixed string (longer ones cannot occur: client
/// ids and user names come from MQTT strings).
fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes().get(..len).unwrap_or_default());
}

/// Reads a u16-length-prefixed UTF-8 string.
fn get_str(data: &mut Bytes) -> Result<ByteStr, Undecodable> {
    if data.remaining() < 2 {
        return Err(Undecodable);
    }
    let len = usize::from(data.get_u16());
    if data.remaining() < len {
        return Err(Undecodable);
    }
    ByteStr::from_utf8(data.split_to(len)).map_err(|_| Undecodable)
}

/// Decodes record data; a stored expiry becomes one on the broker's clock
/// (already passed if it passed while the broker was down).
pub(crate) fn decode(data: Bytes) -> Result<Change, Undecodable> {
    let mut data = data;
    if !data.has_remaining() {
        return Err(Undecodable);
    }
    match data.get_u8() {
        RETAIN => decode_message(data).map(|m| Change::Retain(Arc::new(m))),
        UNRETAIN => ByteStr::from_utf8(data)
            .map(Change::Unretain)
            .map_err(|_| Undecodable),
        kind @ (SESSION | SESSION_WITH_WILL) => {
            let client_id = get_str(&mut data)?.detached();
            let username = get_opt_str(&mut data)?.map(|u| u.detached());
            let expiry_interval = get_u32(&mut data)?;
            let expires_ms = get_u64(&mut data)?;
            let n = get_u32(&mut data)?;
            let mut subscriptions = Vec::new();
            for _ in 0..n {
                let filter = get_str(&mut data)?.detached();
                let options = SubOptions::from_byte(get_u8(&mut data)?, Protocol::V5)
                    .map_err(|_| Undecodable)?;
                let id = match get_u8(&mut data)? {
                    0 => None,
                    1 => Some(get_u32(&mut data)?),
                    _ => return Err(Undecodable),
                };
                subscriptions.push((filter, SubEntry { options, id }));
            }
            let (mut owner, mut will) = (None, None);
            if kind == SESSION_WITH_WILL {
                owner = match get_u8(&mut data)? {
                    0 => None,
                    1 => Some(Arc::new(decode_owner(
                        &mut data,
                        &client_id,
                        username.as_ref(),
                    )?)),
                    _ => return Err(Undecodable),
                };
                will = match get_u8(&mut data)? {
                    0 => None,
                    1 => Some(decode_will(std::mem::take(&mut data))?),
                    _ => return Err(Undecodable),
                };
            }
            end(&data)?;
            Ok(Change::Session(Arc::new(StoredSession {
                client_id,
                username,
                expiry_interval,
                expires_ms,
                subscriptions,
                owner,
                will,
            })))
        }
        SESSION_GONE => ByteStr::from_utf8(data)
            .map(|c| Change::SessionGone(c.detached()))
            .map_err(|_| Undecodable),
        QUEUED => {
            let client = get_str(&mut data)?.detached();
            let seq = get_u64(&mut data)?;
            let qos = QoS::from_u8(get_u8(&mut data)?).map_err(|_| Undecodable)?;
            let retain = get_u8(&mut data)? != 0;
            let n = get_u16(&mut data)?;
            let mut subscription_ids = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                subscription_ids.push(get_u32(&mut data)?);
            }
            let message = Arc::new(decode_message(data)?);
            Ok(Change::Queued(
                client,
                seq,
                Delivery {
                    message,
                    qos,
                    retain,
                    subscription_ids,
                    seq,
                },
            ))
        }
        SENT => {
            let client = get_str(&mut data)?.detached();
            let seq = get_u64(&mut data)?;
            let packet_id = get_u16(&mut data)?;
            end(&data)?;
            Ok(Change::Sent(client, seq, packet_id))
        }
        kind @ (RELEASED | DONE) => {
            let client = get_str(&mut data)?.detached();
            let seq = get_u64(&mut data)?;
            end(&data)?;
            Ok(if kind == RELEASED {
                Change::Released(client, seq)
            } else {
                Change::Done(client, seq)
            })
        }
        kind @ (QOS2_IN | QOS2_IN_DONE) => {
            let client = get_str(&mut data)?.detached();
            let packet_id = get_u16(&mut data)?;
            end(&data)?;
            Ok(Change::Qos2In(client, packet_id, kind == QOS2_IN))
        }
        _ => Err(Undecodable),
    }
}

/// Decodes what [`encode_message`] wrote.
fn decode_message(mut data: Bytes) -> Result<Message, Undecodable> {
    if data.remaining() < 16 {
        return Err(Undecodable);
    }
    let expires_ms = data.get_u64();
    let received_at_ms = data.get_u64();
    let from_client_id = get_str(&mut data)?;
    if !data.has_remaining() {
        return Err(Undecodable);
    }
    let from_username = match data.get_u8() {
        0 => None,
        1 => Some(get_str(&mut data)?),
        _ => return Err(Undecodable),
    };
    let p = decode_publish(data)?;
    let expires_at = (expires_ms != 0).then(|| {
        let left = expires_ms.saturating_sub(now_ms());
        Instant::now() + Duration::from_millis(left)
    });
    let mut properties = p.properties;
    properties.detach();
    let (topic, payload) = p.topic.detached_with(&p.payload);
    Ok(Message {
        topic,
        payload,
        qos: p.qos,
        retain: p.retain,
        properties: (!properties.is_empty()).then(|| Box::new(properties)),
        from_client_id: from_client_id.detached(),
        from_username: from_username.map(|u| u.detached()),
        received_at_ms,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_codec::Properties;

    #[test]
    fn a_retained_message_round_trips_with_its_expiry() {
        let mut props = Properties {
            message_expiry_interval: Some(100),
            content_type: Some(ByteStr::from("text/plain")),
            ..Properties::default()
        };
        props
            .user_properties
            .push((ByteStr::from("k"), ByteStr::from("v")));
        let m = Message::new(
            ByteStr::from("a/b"),
            Bytes::from_static(b"payload"),
            QoS::ExactlyOnce,
            true,
            props,
            ByteStr::from("dev-1"),
            Some(ByteStr::from("alice")),
        );
        let mut out = Vec::new();
        encode(&Change::Retain(Arc::new(m)), &mut out);
        let Ok(Change::Retain(back)) = decode(Bytes::from(out.clone())) else {
            panic!("decodes");
        };
        assert_eq!(back.topic, "a/b");
        assert_eq!(&back.payload[..], b"payload");
        assert_eq!(back.qos, QoS::ExactlyOnce);
        assert!(back.retain);
        assert_eq!(back.from_client_id, "dev-1");
        assert_eq!(back.from_username.as_deref(), Some("alice"));
        let props = back.properties.as_deref().expect("properties kept");
        assert_eq!(props.content_type.as_deref(), Some("text/plain"));
        assert_eq!(props.user_properties.len(), 1);
        let left = back.remaining_expiry(Instant::now()).expect("expiry kept");
        assert!((99..=100).contains(&left), "{left}");

        out.truncate(out.len() - 1);
        assert!(decode(Bytes::from(out)).is_err(), "a short record");
        let mut out = Vec::new();
        encode(&Change::Unretain(ByteStr::from("x/y")), &mut out);
        assert!(matches!(decode(Bytes::from(out)), Ok(Change::Unretain(t)) if t == "x/y"));
        assert!(decode(Bytes::from_static(&[9])).is_err());
    }

    #[test]
    fn a_session_round_trips_with_its_owner_and_will() {
        let mut props = Properties {
            will_delay_interval: Some(30),
            message_expiry_interval: Some(60),
            ..Properties::default()
        };
        props
            .user_properties
            .push((ByteStr::from("k"), ByteStr::from("v")));
        let owner = Owner {
            info: ClientInfo {
                client_id: ByteStr::from("dev-1"),
                username: Some(ByteStr::from("alice")),
                peer: "[2001:db8::1]:4000".parse().unwrap(),
                protocol: Protocol::V3_1_1,
                keepalive: 45,
                clean_start: false,
                connected_at_ms: 1234,
                listener: ListenerKind::Wss,
                cert: Some(Arc::new(PeerCert {
                    cn: Some("dev-1".into()),
                    dn: "CN=dev-1,O=x".into(),
                })),
            },
            superuser: true,
        };
        let session = StoredSession {
            client_id: ByteStr::from("dev-1"),
            username: Some(ByteStr::from("alice")),
            expiry_interval: 3600,
            expires_ms: 99,
            subscriptions: Vec::new(),
            owner: Some(Arc::new(owner)),
            will: Some(SessionWill {
                will: Arc::new(Will {
                    topic: ByteStr::from("w/dev-1"),
                    payload: Bytes::from_static(b"gone"),
                    qos: QoS::ExactlyOnce,
                    retain: true,
                    properties: props,
                }),
                due_ms: 777,
            }),
        };
        let mut out = Vec::new();
        encode(&Change::Session(Arc::new(session)), &mut out);
        let Ok(Change::Session(back)) = decode(Bytes::from(out.clone())) else {
            panic!("decodes");
        };
        let owner = back.owner.as_deref().expect("owner kept");
        assert!(owner.superuser);
        let info = &owner.info;
        assert_eq!(info.client_id, "dev-1");
        assert_eq!(info.username.as_deref(), Some("alice"));
        assert_eq!(info.peer, "[2001:db8::1]:4000".parse().unwrap());
        assert_eq!(info.protocol, Protocol::V3_1_1);
        assert_eq!((info.keepalive, info.connected_at_ms), (45, 1234));
        assert_eq!(info.listener, ListenerKind::Wss);
        let cert = info.cert.as_deref().expect("certificate names kept");
        assert_eq!(
            (cert.cn.as_deref(), cert.dn.as_str()),
            (Some("dev-1"), "CN=dev-1,O=x")
        );
        let will = back.will.as_ref().expect("will kept");
        assert_eq!(will.due_ms, 777);
        assert_eq!(will.delay(), 30);
        assert_eq!(will.will.topic, "w/dev-1");
        assert_eq!(&will.will.payload[..], b"gone");
        assert_eq!((will.will.qos, will.will.retain), (QoS::ExactlyOnce, true));
        assert_eq!(will.will.properties.message_expiry_interval, Some(60));
        assert_eq!(will.will.properties.user_properties.len(), 1);
        out.truncate(out.len() - 1);
        assert!(decode(Bytes::from(out)).is_err(), "a short record");
    }
}
