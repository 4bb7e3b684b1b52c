//! A request body read for what the sink checks and nothing else: the
//! number of events and each one's client id (`clientid`, else
//! `from_client_id`), straight from the JSON, without building a
//! `serde_json::Value`.
//!
//! A body counts as readable exactly when `serde_json::Value` would parse
//! it (UTF-8, escapes, numbers in range, also in fields it skips); it never
//! reads a value it does not need into memory.

use std::borrow::Cow;

/// One event as the sink reads it: only its client (`clientid`, else
/// `from_client_id`, as long as it is a string). Read straight from the
/// JSON, with the same checks as parsing a `serde_json::Value` but without
/// building one: the client id is borrowed from the body unless it holds
/// escapes.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Ev<'a> {
    /// `clientid`, when the key is there (`Some(None)`: not a string).
    clientid: Option<Option<Cow<'a, str>>>,
    /// `from_client_id`, likewise.
    from_client_id: Option<Option<Cow<'a, str>>>,
}

impl Ev<'_> {
    /// The client the event belongs to.
    pub(super) fn client(&self) -> Option<&str> {
        match &self.clientid {
            Some(c) => c.as_deref(),
            None => self.from_client_id.as_ref()?.as_deref(),
        }
    }
}

/// A request body: one event, or in batch mode an array of them.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Events<'a> {
    /// Not JSON.
    Unreadable,
    /// A single JSON value.
    One(Ev<'a>),
    /// A JSON array.
    Many(Vec<Ev<'a>>),
}

impl<'a> Events<'a> {
    /// Reads a body; anything but JSON is [`Events::Unreadable`].
    pub(super) fn parse(body: &'a [u8]) -> Events<'a> {
        serde_json::from_slice(body).unwrap_or(Events::Unreadable)
    }

    /// How many events the body holds.
    pub(super) fn len(&self) -> usize {
        match self {
            Events::Unreadable => 0,
            Events::One(_) => 1,
            Events::Many(events) => events.len(),
        }
    }

    /// The `i`th event.
    pub(super) fn get(&self, i: usize) -> Option<&Ev<'a>> {
        match self {
            Events::Unreadable => None,
            Events::One(event) => (i == 0).then_some(event),
            Events::Many(events) => events.get(i),
        }
    }
}

/// The visitors that read bodies. Each accepts any JSON value, like
/// `serde_json::Value` does, and keeps only what the sink needs.
mod read {
    use super::{Ev, Events};
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use std::borrow::Cow;
    use std::fmt;

    /// Answers the scalar cases of a visitor with a fixed value.
    macro_rules! scalars {
        ($value:expr) => {
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok($value)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok($value)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok($value)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok($value)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok($value)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok($value)
            }
        };
    }

    /// Reads the rest of an array, dropping it.
    fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(())
    }

    /// Reads the rest of an object, dropping it.
    fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(())
    }

    /// Any JSON value, read (and checked) and dropped.
    ///
    /// Not `serde::de::IgnoredAny`: serde_json skips an ignored value
    /// without checking it, so with `IgnoredAny` in its place the bodies
    /// `{"payload":"\xff",...}` (not UTF-8), `{"payload":"x\ud800y",...}`
    /// (a lone surrogate) and `{"n":1e400,...}` (out of range) read as
    /// valid, where a `serde_json::Value` refuses them, and a WebHook that
    /// sent such a body would go unnoticed (tried: three cases of
    /// `bodies_read_as_a_json_value_would` fail). This visitor parses each
    /// value the way `serde_json::Value` does and keeps nothing.
    struct Skip;

    impl<'de> Deserialize<'de> for Skip {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Skip, D::Error> {
            d.deserialize_any(SkipVisitor).map(|()| Skip)
        }
    }

    struct SkipVisitor;

    impl<'de> Visitor<'de> for SkipVisitor {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        scalars!(());
        fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            Skip::deserialize(d).map(drop)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
            skip_seq(seq)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
            skip_map(map)
        }
    }

    /// A value that is kept if it is a string.
    struct MaybeStr<'a>(Option<Cow<'a, str>>);

    impl<'de> Deserialize<'de> for MaybeStr<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MaybeStr<'de>, D::Error> {
            d.deserialize_any(MaybeStrVisitor).map(MaybeStr)
        }
    }

    struct MaybeStrVisitor;

    impl<'de> Visitor<'de> for MaybeStrVisitor {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        scalars!(None);
        fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            MaybeStr::deserialize(d).map(|m| m.0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            skip_seq(seq).map(|()| None)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            skip_map(map).map(|()| None)
        }
    }

    /// An object key: one the sink wants, or another.
    enum Key {
        ClientId,
        FromClientId,
        Other,
    }

    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
            d.deserialize_str(KeyVisitor)
        }
    }

    struct KeyVisitor;

    impl Visitor<'_> for KeyVisitor {
        type Value = Key;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object key")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
            Ok(match v {
                "clientid" => Key::ClientId,
                "from_client_id" => Key::FromClientId,
                _ => Key::Other,
            })
        }
    }

    /// Reads one event object; a later duplicate key wins, as in a
    /// `serde_json::Value`.
    fn event<'de, A: MapAccess<'de>>(mut map: A) -> Result<Ev<'de>, A::Error> {
        let mut ev = Ev::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::ClientId => ev.clientid = Some(map.next_value::<MaybeStr>()?.0),
                Key::FromClientId => ev.from_client_id = Some(map.next_value::<MaybeStr>()?.0),
                Key::Other => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(ev)
    }

    impl<'de> Deserialize<'de> for Ev<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Ev<'de>, D::Error> {
            d.deserialize_any(EvVisitor)
        }
    }

    /// An event: an object, or any other value (which has no client).
    struct EvVisitor;

    impl<'de> Visitor<'de> for EvVisitor {
        type Value = Ev<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        scalars!(Ev::default());
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Ev::default())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            Ev::deserialize(d)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            skip_seq(seq).map(|()| Ev::default())
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            event(map)
        }
    }

    impl<'de> Deserialize<'de> for Events<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Events<'de>, D::Error> {
            d.deserialize_any(EventsVisitor)
        }
    }

    /// A body: an array is a batch, anything else one event.
    struct EventsVisitor;

    impl<'de> Visitor<'de> for EventsVisitor {
        type Value = Events<'de>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        scalars!(Events::One(Ev::default()));
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(Events::One(Ev::default()))
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            Events::deserialize(d)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut events = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(event) = seq.next_element::<Ev>()? {
                events.push(event);
            }
            Ok(Events::Many(events))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            event(map).map(Events::One)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the sink read from a body before it stopped building a
    /// `serde_json::Value`: the number of events and each one's client.
    fn as_value(body: &[u8]) -> Option<(usize, Vec<Option<String>>)> {
        let events = match serde_json::from_slice::<serde_json::Value>(body).ok()? {
            serde_json::Value::Array(events) => events,
            event => vec![event],
        };
        let clients = events
            .iter()
            .map(|e| {
                e.get("clientid")
                    .or_else(|| e.get("from_client_id"))
                    .and_then(|c| c.as_str())
                    .map(str::to_owned)
            })
            .collect();
        Some((events.len(), clients))
    }

    #[test]
    fn bodies_read_as_a_json_value_would() {
        let bodies: &[&[u8]] = &[
            br#"{"action":"client_connected","clientid":"c1","username":"u"}"#,
            br#"{"action":"message_publish","from_client_id":"c1","from_username":"undefined","topic":"t","qos":1,"retain":false,"payload":"hello","ts":1}"#,
            br#"[{"clientid":"a"},{"from_client_id":"b"},{"clientid":"c","from_client_id":"d"}]"#,
            br#"[{"from_client_id":"d","clientid":"c"}]"#,
            br#"{"clientid":null,"from_client_id":"x"}"#,
            br#"{"clientid":7,"from_client_id":"x"}"#,
            br#"{"from_client_id":["x"],"clientid":{"a":"b"}}"#,
            br#"{"clientid":"first","clientid":"second"}"#,
            br#"{"client\u0069d":"escaped key","x":{"clientid":"nested"}}"#,
            br#"{"clientid":"esc\"aped\u00e9\ud83d\ude00"}"#,
            br#"[1, "s", null, true, [{"clientid":"deep"}], {}, 2.5e3, -0]"#,
            br#"[]"#,
            br#" "just a string" "#,
            br#"42"#,
            br#"null"#,
            br#"{"payload":"x\ud800y","clientid":"c"}"#,
            br#"{"n":1e400,"clientid":"c"}"#,
            br#"{"clientid":"c"} trailing"#,
            br#"{"clientid":"c","#,
            br#"[{"clientid":"c"},]"#,
            b"{\"payload\":\"\xff\",\"clientid\":\"c\"}",
            b"{\"payload\":\"a\x01b\",\"clientid\":\"c\"}",
            br#"{"payload":"\q","clientid":"c"}"#,
            b"",
            b"not json",
            br#"{"clientid":"c"}{"clientid":"d"}"#,
        ];
        for body in bodies {
            let events = Events::parse(body);
            let read = (events != Events::Unreadable).then(|| {
                let clients = (0..events.len())
                    .map(|i| events.get(i).and_then(Ev::client).map(str::to_owned))
                    .collect();
                (events.len(), clients)
            });
            assert_eq!(read, as_value(body), "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn client_ids_borrow_unless_escaped() {
        let body = br#"[{"clientid":"plain"},{"from_client_id":"c\u0031"},{"clientid":"a\"b"}]"#;
        let Events::Many(events) = Events::parse(body) else {
            panic!("not a batch");
        };
        assert!(matches!(
            events[0].clientid,
            Some(Some(Cow::Borrowed("plain")))
        ));
        assert_eq!(events[1].client(), Some("c1"));
        assert_eq!(events[2].client(), Some("a\"b"));
    }
}
