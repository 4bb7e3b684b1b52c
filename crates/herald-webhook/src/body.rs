//! The JSON body of each WebHook request (`docs/webhook.md` §3), in the two
//! profiles: `v4.0` (the EMQX 4.0 documentation, the default) and `v4.4`
//! (what EMQX 4.3/4.4 sends).
//!
//! A body is written straight into one byte buffer as compact JSON, fields
//! in the order of §3's examples; nothing is built as an intermediate tree.
//! This module never decides whether an event is sent (that is
//! [`crate::rules`]) and never does I/O: it runs on the broker's connection
//! tasks, so it must stay cheap and must not block.

use crate::event::EventKind;
use crate::payload::PayloadEncoding;
use crate::reason;
use herald_broker::hooks::{ClientInfo, Event, SubscriptionInfo};
use herald_broker::message::Message;
use herald_codec::{QoS, ReasonCode};
use std::io::Write as _;
use std::net::IpAddr;

/// Which EMQX version's bodies to send (`web.hook.body.profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// EMQX 4.0 documentation: `"undefined"` for an absent username,
    /// `connected_at` in seconds, no `node`.
    #[default]
    V4_0,
    /// EMQX 4.3/4.4: `null` username, `connected_at` in milliseconds,
    /// `node` in every body, and the extra fields of §3's table.
    V4_4,
}

impl Profile {
    /// The configuration value: `v4.0` or `v4.4`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::V4_0 => "v4.0",
            Profile::V4_4 => "v4.4",
        }
    }

    /// Parses a configuration value.
    pub fn from_name(name: &str) -> Option<Profile> {
        match name {
            "v4.0" => Some(Profile::V4_0),
            "v4.4" => Some(Profile::V4_4),
            _ => None,
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Builds request bodies from broker events.
#[derive(Debug, Clone)]
pub struct BodyBuilder {
    /// Field set and value conventions.
    profile: Profile,
    /// How the `payload` field is written.
    encoding: PayloadEncoding,
    /// The `node` field of v4.4 bodies, pre-escaped as a JSON string
    /// literal (quotes included) so writing it is one copy.
    node_json: Vec<u8>,
}

impl BodyBuilder {
    /// A builder for `profile`, writing payloads with `encoding`; `node` is
    /// the broker's node name (used by v4.4 only).
    pub fn new(profile: Profile, encoding: PayloadEncoding, node: &str) -> BodyBuilder {
        let mut node_json = Vec::with_capacity(node.len() + 2);
        write_str(node, &mut node_json);
        BodyBuilder {
            profile,
            encoding,
            node_json,
        }
    }

    /// A builder with the settings of `config`.
    pub fn from_config(config: &crate::conf::WebhookConfig) -> BodyBuilder {
        BodyBuilder::new(
            config.body_profile,
            config.payload_encoding,
            &config.node_name,
        )
    }

    /// The profile in use.
    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The body for `event` as compact JSON, or `None` for broker events
    /// the WebHook does not send (`session.created`, ...). `now_ms` is the
    /// current time in milliseconds since the epoch (v4.4's
    /// `disconnected_at`).
    pub fn build(&self, event: &Event<'_>, now_ms: u64) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(256);
        self.write(event, now_ms, &mut out)?;
        Some(out)
    }

    /// Appends the body for `event` to `out` and returns its kind; appends
    /// nothing and returns `None` for events the WebHook does not send.
    pub fn write(&self, event: &Event<'_>, now_ms: u64, out: &mut Vec<u8>) -> Option<EventKind> {
        let kind = EventKind::of(event)?;
        let v44 = self.profile == Profile::V4_4;
        let mut o = Obj::start(out, kind, v44.then_some(self.node_json.as_slice()));
        match *event {
            Event::ClientConnect { client, .. } => self.connection(&mut o, client),
            Event::ClientConnack { client, reason } => {
                self.connection(&mut o, client);
                o.str("conn_ack", reason.name());
                if v44 && reason == ReasonCode::SUCCESS {
                    o.uint("connected_at", client.connected_at_ms);
                }
            }
            Event::ClientConnected { client } => {
                self.connection(&mut o, client);
                o.uint("connected_at", self.connected_at(client));
            }
            Event::ClientDisconnected { client, reason } => {
                self.who(&mut o, &client.client_id, client.username.as_deref());
                o.str("reason", reason::disconnect(reason));
                if v44 {
                    o.uint("connected_at", client.connected_at_ms);
                    o.uint("disconnected_at", now_ms);
                }
            }
            Event::ClientSubscribe { client, sub } => {
                self.who(&mut o, &client.client_id, client.username.as_deref());
                o.str("topic", sub.topic);
                o.key("opts");
                write_opts(o.out, &sub, None);
            }
            Event::SessionSubscribed {
                client,
                sub,
                is_new,
            } => {
                self.who(&mut o, &client.client_id, client.username.as_deref());
                o.str("topic", sub.topic);
                o.key("opts");
                write_opts(o.out, &sub, v44.then_some(is_new));
            }
            Event::ClientUnsubscribe {
                client,
                topic,
                share,
            } => {
                self.who(&mut o, &client.client_id, client.username.as_deref());
                o.str("topic", topic);
                if v44 {
                    o.key("opts");
                    match share {
                        Some(group) => {
                            o.out.extend_from_slice(b"{\"share\":");
                            write_str(group, o.out);
                            o.out.push(b'}');
                        }
                        None => o.out.extend_from_slice(b"{}"),
                    }
                }
            }
            Event::SessionUnsubscribed { client, topic, .. } => {
                self.who(&mut o, &client.client_id, client.username.as_deref());
                o.str("topic", topic);
            }
            Event::SessionTerminated {
                client_id,
                username,
                reason,
            } => {
                self.who(&mut o, client_id, username);
                o.str("reason", reason::termination(reason));
            }
            Event::MessagePublish { message } => {
                self.message(&mut o, message, message.qos, message.retain)
            }
            Event::MessageDelivered {
                client,
                message,
                qos,
                retain,
            } => {
                self.who(&mut o, &client.client_id, client.username.as_deref());
                self.message(&mut o, message, qos, retain);
            }
            Event::MessageAcked {
                client,
                message,
                qos,
                retain,
            } => {
                o.str("clientid", &client.client_id);
                if v44 {
                    self.username(&mut o, "username", client.username.as_deref());
                }
                self.message(&mut o, message, qos, retain);
            }
            Event::MessageDropped { message, reason } => {
                self.message(&mut o, message, message.qos, message.retain);
                o.str("reason", reason::dropped(reason));
            }
            Event::SessionCreated { .. }
            | Event::SessionResumed { .. }
            | Event::SessionTakeovered { .. }
            | Event::SessionDiscarded { .. } => {}
        }
        o.out.push(b'}');
        Some(kind)
    }

    /// `clientid`, `username`, `ipaddress`, `keepalive`, `proto_ver`.
    fn connection(&self, o: &mut Obj<'_>, client: &ClientInfo) {
        self.who(o, &client.client_id, client.username.as_deref());
        o.key("ipaddress");
        let ip = match client.peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        // IP addresses need no JSON escaping; writing to a Vec cannot fail.
        let _ = write!(o.out, "\"{ip}\"");
        o.uint("keepalive", client.keepalive.into());
        o.uint("proto_ver", client.proto_ver().into());
    }

    /// `clientid` and `username`.
    fn who(&self, o: &mut Obj<'_>, client_id: &str, username: Option<&str>) {
        o.str("clientid", client_id);
        self.username(o, "username", username);
    }

    /// A username field: the string, or `"undefined"` (v4.0) / `null` (v4.4).
    fn username(&self, o: &mut Obj<'_>, key: &str, username: Option<&str>) {
        match (username, self.profile) {
            (Some(name), _) => o.str(key, name),
            (None, Profile::V4_0) => o.str(key, "undefined"),
            (None, Profile::V4_4) => {
                o.key(key);
                o.out.extend_from_slice(b"null");
            }
        }
    }

    /// `from_client_id`, `from_username`, `topic`, `qos`, `retain`,
    /// `payload`, `ts`.
    fn message(&self, o: &mut Obj<'_>, message: &Message, qos: QoS, retain: bool) {
        o.str("from_client_id", &message.from_client_id);
        self.username(o, "from_username", message.from_username.as_deref());
        o.str("topic", &message.topic);
        o.uint("qos", qos as u64);
        o.bool("retain", retain);
        o.key("payload");
        self.encoding.write_json(&message.payload, o.out);
        o.uint("ts", message.received_at_ms);
    }

    /// `connected_at` in the profile's unit.
    fn connected_at(&self, client: &ClientInfo) -> u64 {
        match self.profile {
            Profile::V4_0 => client.connected_at_ms / 1000,
            Profile::V4_4 => client.connected_at_ms,
        }
    }
}

/// `{"qos":q,"nl":0|1,"rap":0|1,"rh":0|1|2}` plus `share`, `subid` and
/// (v4.4 `session_subscribed`) `is_new` when present.
fn write_opts(out: &mut Vec<u8>, sub: &SubscriptionInfo<'_>, is_new: Option<bool>) {
    let opts = sub.options;
    let _ = write!(
        out,
        "{{\"qos\":{},\"nl\":{},\"rap\":{},\"rh\":{}",
        opts.qos as u8,
        u8::from(opts.no_local),
        u8::from(opts.retain_as_published),
        opts.retain_handling as u8
    );
    if let Some(group) = sub.share {
        out.extend_from_slice(b",\"share\":");
        write_str(group, out);
    }
    if let Some(id) = sub.subscription_id {
        let _ = write!(out, ",\"subid\":{id}");
    }
    if let Some(is_new) = is_new {
        let _ = write!(out, ",\"is_new\":{is_new}");
    }
    out.push(b'}');
}

/// A JSON object being written: tracks whether a comma is needed.
struct Obj<'a> {
    /// The buffer the body is appended to.
    out: &'a mut Vec<u8>,
}

impl<'a> Obj<'a> {
    /// Opens the object with `"action"` (and `"node"` when given, already
    /// a JSON string literal).
    fn start(out: &'a mut Vec<u8>, kind: EventKind, node_json: Option<&[u8]>) -> Obj<'a> {
        out.extend_from_slice(b"{\"action\":\"");
        out.extend_from_slice(kind.body_action().as_bytes());
        out.push(b'"');
        if let Some(node) = node_json {
            out.extend_from_slice(b",\"node\":");
            out.extend_from_slice(node);
        }
        Obj { out }
    }

    /// Writes `,"key":`; keys are fixed ASCII names needing no escaping.
    fn key(&mut self, key: &str) {
        self.out.extend_from_slice(b",\"");
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        write_str(value, self.out);
    }

    fn uint(&mut self, key: &str, value: u64) {
        self.key(key);
        let _ = write!(self.out, "{value}");
    }

    fn bool(&mut self, key: &str, value: bool) {
        self.key(key);
        self.out
            .extend_from_slice(if value { b"true" } else { b"false" });
    }
}

/// Appends `s` as a JSON string literal, quotes included.
fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    escape_into(s, out);
    out.push(b'"');
}

/// Appends `s` escaped for the inside of a JSON string: `"`, `\` and the
/// control characters U+0000..U+001F; everything else as is (UTF-8).
pub(crate) fn escape_into(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let (len, seq) = ESCAPES[usize::from(b)];
        if len == 0 {
            continue;
        }
        if start < i {
            out.extend_from_slice(&bytes[start..i]);
        }
        // A fixed-size copy, then cut to the escape's length: cheaper than
        // a copy of variable length.
        out.extend_from_slice(&seq);
        out.truncate(out.len() - (6 - usize::from(len)));
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// What each byte becomes inside a JSON string: `(0, _)` for itself, else
/// the length and bytes of its escape (RFC 8259 §7: `"`, `\` and the
/// control characters; the short forms where JSON has them).
static ESCAPES: [(u8, [u8; 6]); 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [(0u8, [0u8; 6]); 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = (6, [b'\\', b'u', b'0', b'0', HEX[b >> 4], HEX[b & 0x0F]]);
        b += 1;
    }
    let short: [(u8, u8); 7] = [
        (b'"', b'"'),
        (b'\\', b'\\'),
        (b'\n', b'n'),
        (b'\r', b'r'),
        (b'\t', b't'),
        (0x08, b'b'),
        (0x0C, b'f'),
    ];
    let mut i = 0;
    while i < short.len() {
        table[short[i].0 as usize] = (2, [b'\\', short[i].1, 0, 0, 0, 0]);
        i += 1;
    }
    table
};
