//! The values of the `[webhook]` table of `herald.toml`: what an EMQX
//! `key = value` line can hold, or a table of further keys. The binary only
//! carries them to the WebHook's own parser (`crate::webhook`), which
//! decides what they mean.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One value of the `[webhook]` table: a string, an integer, a boolean, or
/// a table of further keys (TOML dotted keys such as `ssl.verify = false`
/// make tables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookValue {
    /// A string, passed on as it is.
    String(String),
    /// An integer, passed on in decimal.
    Integer(i64),
    /// `true` or `false`.
    Boolean(bool),
    /// Keys below this one, joined with `.`.
    Table(BTreeMap<String, WebhookValue>),
}

impl WebhookValue {
    /// The value as the text of an EMQX `key = value` line; `None` for a
    /// table.
    pub fn as_text(&self) -> Option<String> {
        match self {
            WebhookValue::String(s) => Some(s.clone()),
            WebhookValue::Integer(i) => Some(i.to_string()),
            WebhookValue::Boolean(b) => Some(b.to_string()),
            WebhookValue::Table(_) => None,
        }
    }
}

impl Serialize for WebhookValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WebhookValue::String(v) => s.serialize_str(v),
            WebhookValue::Integer(v) => s.serialize_i64(*v),
            WebhookValue::Boolean(v) => s.serialize_bool(*v),
            WebhookValue::Table(v) => v.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for WebhookValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl<'de> Visitor<'de> for ValueVisitor {
            type Value = WebhookValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an integer, a boolean or a table")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<WebhookValue, E> {
                Ok(WebhookValue::Boolean(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<WebhookValue, E> {
                Ok(WebhookValue::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<WebhookValue, E> {
                i64::try_from(v)
                    .map(WebhookValue::Integer)
                    .map_err(|_| E::custom(format!("integer {v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<WebhookValue, E> {
                Ok(WebhookValue::String(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<WebhookValue, E> {
                Ok(WebhookValue::String(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WebhookValue, A::Error> {
                let mut table = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, WebhookValue>()? {
                    table.insert(k, v);
                }
                Ok(WebhookValue::Table(table))
            }
        }
        d.deserialize_any(ValueVisitor)
    }
}
