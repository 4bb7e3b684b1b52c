//! The WebHook sink: an HTTP/1.1 server (hyper, keep-alive, answers to
//! pipelined requests flushed together) that plays the web service and
//! checks what the WebHook promises — every event delivered, none twice,
//! each client's events in order. It is cheap per request so that it is not
//! the bottleneck of a WebHook benchmark: bodies are read for their client
//! ids only, without building a `serde_json::Value`, and outside the lock
//! on the accounts.
//!
//! Every request carries its event id(s) in a header (`x-herald-event-id`
//! by default): `<spool id>-<lane>-<seq>`, a comma-separated list in batch
//! mode, where the body is a JSON array with one event per id. Per lane
//! (spool id and lane number), sequence numbers are checked with a
//! [`SeqTracker`] (gaps, duplicates, late arrivals); per client (`clientid`,
//! or `from_client_id` for message events), each new event must come after
//! the previous one. Only requests answered with a 2xx count: anything else
//! the WebHook must send again.
//!
//! It can answer with another status, fail a fraction of requests with 500,
//! delay answers or never answer at all, to exercise retries.
//!
//! The report carries a timeline (distinct events every 100 ms) and each
//! lane's lowest sequence number, so scripts can compute rates over a
//! window and stitch the reports of two sink runs (an outage) together.

use crate::error::BenchError;
use crate::live::thousands;
use crate::seq::{Seen, SeqTracker};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::HeaderName;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

/// What the sink is told.
#[derive(Debug, Clone)]
pub struct SinkSettings {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Status to answer with.
    pub status: u16,
    /// Fraction of requests (0 to 1) answered 500 instead, at random.
    pub fail_ratio: f64,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Accept requests but never answer them.
    pub hang: bool,
    /// Header holding the event ids.
    pub event_id_header: String,
    /// Stop after this long (`None`: until interrupted or `expect`).
    pub duration: Option<Duration>,
    /// Stop once this many distinct events have been received.
    pub expect: Option<u64>,
    /// Print a line every second.
    pub progress: bool,
}

/// Per-lane figures.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LaneReport {
    /// `<spool id>-<lane>`.
    pub lane: String,
    /// Events received (duplicates included).
    pub received: u64,
    /// Events received more than once.
    pub duplicates: u64,
    /// Events that arrived after a later one of the same lane.
    pub out_of_order: u64,
    /// Forward jumps in the lane's sequence.
    pub gaps: u64,
    /// Events skipped and never received.
    pub missing: u64,
    /// One past the highest sequence number seen.
    pub next_seq: Option<u64>,
    /// The lowest sequence number seen.
    pub first_seq: Option<u64>,
}

/// The figures of a sink run.
#[derive(Debug, Clone, Serialize)]
pub struct SinkReport {
    /// Always `sink`.
    pub scenario: &'static str,
    /// Seconds the sink ran.
    pub elapsed_s: f64,
    /// Requests received (any answer).
    pub requests: u64,
    /// Requests answered with a non-2xx status (to be retried).
    pub refused: u64,
    /// Requests answered 2xx.
    pub accepted: u64,
    /// Events in accepted requests (duplicates included).
    pub events: u64,
    /// Distinct events.
    pub unique: u64,
    /// Events received more than once.
    pub duplicates: u64,
    /// Events that arrived after a later one of their lane.
    pub out_of_order: u64,
    /// Forward jumps in lane sequences.
    pub gaps: u64,
    /// Events skipped and never received.
    pub missing: u64,
    /// Events that came after a later event of the same client.
    pub client_order_violations: u64,
    /// Distinct clients seen.
    pub clients: u64,
    /// Requests whose ids or body could not be read, or did not match.
    pub malformed: u64,
    /// Distinct events per second over the run.
    pub events_per_s: f64,
    /// Highest one-second event count.
    pub peak_events_per_s: u64,
    /// Wall-clock time the sink started, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// `[seconds since start, distinct events so far]`, every 100 ms.
    pub timeline: Vec<(f64, u64)>,
    /// Per lane.
    pub lanes: Vec<LaneReport>,
}

/// One event id: `<spool>-<lane>-<seq>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventId<'a> {
    /// The spool's id.
    pub spool: &'a str,
    /// Lane number.
    pub lane: u32,
    /// Sequence number within the lane.
    pub seq: u64,
}

/// Parses one event id; the spool id may itself contain dashes.
pub fn parse_event_id(s: &str) -> Option<EventId<'_>> {
    let mut parts = s.trim().rsplitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let lane = parts.next()?.parse().ok()?;
    let spool = parts.next().filter(|s| !s.is_empty())?;
    Some(EventId { spool, lane, seq })
}

/// Parses one event id and names its lane, `<spool>-<lane>`: borrowed from
/// the id when the lane number is written the way it prints (no sign, no
/// leading zero), so that `s-01-5` still counts in lane `s-1`.
fn parse_with_lane(s: &str) -> Option<(EventId<'_>, Cow<'_, str>)> {
    let id = parse_event_id(s)?;
    let (key, _) = s.trim().rsplit_once('-')?;
    let number = &key[id.spool.len() + 1..];
    let canonical = !number.starts_with('+') && (number.len() == 1 || !number.starts_with('0'));
    let key = if canonical {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{}-{}", id.spool, id.lane))
    };
    Some((id, key))
}

/// One event as the sink reads it: only its client (`clientid`, else
/// `from_client_id`, as long as it is a string). Read straight from the
/// JSON, with the same checks as parsing a `serde_json::Value` but without
/// building one: the client id is borrowed from the body unless it holds
/// escapes.
#[derive(Debug, Default, PartialEq, Eq)]
struct Ev<'a> {
    /// `clientid`, when the key is there (`Some(None)`: not a string).
    clientid: Option<Option<Cow<'a, str>>>,
    /// `from_client_id`, likewise.
    from_client_id: Option<Option<Cow<'a, str>>>,
}

impl Ev<'_> {
    /// The client the event belongs to.
    fn client(&self) -> Option<&str> {
        match &self.clientid {
            Some(c) => c.as_deref(),
            None => self.from_client_id.as_ref()?.as_deref(),
        }
    }
}

/// A request body: one event, or in batch mode an array of them.
#[derive(Debug, PartialEq, Eq)]
enum Events<'a> {
    /// Not JSON.
    Unreadable,
    /// A single JSON value.
    One(Ev<'a>),
    /// A JSON array.
    Many(Vec<Ev<'a>>),
}

impl<'a> Events<'a> {
    /// Reads a body; anything but JSON is [`Events::Unreadable`].
    fn parse(body: &'a [u8]) -> Events<'a> {
        serde_json::from_slice(body).unwrap_or(Events::Unreadable)
    }

    /// How many events the body holds.
    fn len(&self) -> usize {
        match self {
            Events::Unreadable => 0,
            Events::One(_) => 1,
            Events::Many(events) => events.len(),
        }
    }

    /// The `i`th event.
    fn get(&self, i: usize) -> Option<&Ev<'a>> {
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

/// The last event seen of one client.
#[derive(Debug, Clone, Copy)]
struct ClientMark {
    /// Its lane (index in [`Accounts::lanes`]).
    lane: usize,
    /// Its sequence number.
    seq: u64,
}

/// One lane's accounts.
#[derive(Debug)]
struct Lane {
    /// `<spool>-<lane>`.
    key: String,
    /// Its sequence numbers.
    tracker: SeqTracker,
    /// The lowest sequence number seen.
    first: u64,
}

/// Everything the sink has counted.
#[derive(Debug, Default)]
pub struct Accounts {
    /// `<spool>-<lane>` → index in `lanes`.
    lane_index: HashMap<String, usize>,
    /// Per lane, in order of appearance.
    lanes: Vec<Lane>,
    /// Per client id, its latest event.
    clients: HashMap<String, ClientMark>,
    /// Accepted requests.
    accepted: u64,
    /// Events received.
    events: u64,
    /// Client order violations.
    client_order: u64,
    /// Unreadable or inconsistent requests.
    malformed: u64,
}

impl Accounts {
    /// Accounts for one accepted request: its id header and body.
    pub fn record(&mut self, ids: Option<&str>, body: &[u8]) {
        self.apply(ids, &Events::parse(body));
    }

    /// Accounts for one accepted request whose body has been read (outside
    /// the lock).
    fn apply(&mut self, ids: Option<&str>, events: &Events<'_>) {
        self.accepted += 1;
        let Some(ids) = ids else {
            self.malformed += 1;
            return;
        };
        let (mut count, mut unreadable) = (0, false);
        for (i, id) in ids.split(',').enumerate() {
            count += 1;
            let Some((id, key)) = parse_with_lane(id) else {
                unreadable = true;
                continue;
            };
            self.events += 1;
            let lane = self.lane(&key, id.seq);
            let l = &mut self.lanes[lane];
            l.first = l.first.min(id.seq);
            if l.tracker.observe(id.seq) == Seen::Duplicate {
                continue;
            }
            let Some(client) = events.get(i).and_then(Ev::client) else {
                continue;
            };
            let seq = id.seq;
            match self.clients.get_mut(client) {
                Some(mark) => {
                    if mark.lane == lane && seq < mark.seq {
                        self.client_order += 1;
                    } else {
                        *mark = ClientMark { lane, seq };
                    }
                }
                None => {
                    self.clients
                        .insert(client.to_owned(), ClientMark { lane, seq });
                }
            }
        }
        if count != events.len() || unreadable {
            self.malformed += 1;
        }
    }

    /// The index of lane `key`, added (first seen at `seq`) if new.
    fn lane(&mut self, key: &str, seq: u64) -> usize {
        if let Some(&i) = self.lane_index.get(key) {
            return i;
        }
        let i = self.lanes.len();
        self.lanes.push(Lane {
            key: key.to_owned(),
            tracker: SeqTracker::joined(),
            first: seq,
        });
        self.lane_index.insert(key.to_owned(), i);
        i
    }

    /// Distinct events.
    pub fn unique(&self) -> u64 {
        self.lanes.iter().map(|l| l.tracker.unique()).sum()
    }

    /// Distinct events, duplicates, out of order and missing, over all lanes.
    fn totals(&self) -> (u64, u64, u64, u64) {
        self.lanes.iter().fold((0, 0, 0, 0), |(u, d, o, m), l| {
            let t = &l.tracker;
            (
                u + t.unique(),
                d + t.duplicates,
                o + t.out_of_order,
                m + t.missing(),
            )
        })
    }

    /// The per-lane figures, sorted by lane.
    pub fn lanes(&self) -> Vec<LaneReport> {
        let mut lanes: Vec<_> = self
            .lanes
            .iter()
            .map(|l| LaneReport {
                lane: l.key.clone(),
                received: l.tracker.received,
                duplicates: l.tracker.duplicates,
                out_of_order: l.tracker.out_of_order,
                gaps: l.tracker.gaps,
                missing: l.tracker.missing(),
                next_seq: l.tracker.next_expected(),
                first_seq: Some(l.first),
            })
            .collect();
        lanes.sort_by(|a, b| a.lane.cmp(&b.lane));
        lanes
    }
}

/// A cheap random number in [0, 1) for `--fail-ratio`.
fn random_unit(state: &AtomicU64) -> f64 {
    let x = state.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// What the server shares between connections.
struct Sink {
    /// What has been counted.
    accounts: Mutex<Accounts>,
    /// Requests received.
    requests: AtomicU64,
    /// Requests answered non-2xx.
    refused: AtomicU64,
    /// State of [`random_unit`].
    seed: AtomicU64,
    /// The event id header (`None` if not a valid header name: no request
    /// has it).
    header: Option<HeaderName>,
    /// Status to answer with.
    status: u16,
    /// Fraction of requests answered 500.
    fail_ratio: f64,
    /// Wait before answering.
    delay: Duration,
    /// Never answer.
    hang: bool,
}

impl Sink {
    /// A sink as `s` says, with nothing counted yet.
    fn new(s: &SinkSettings) -> Sink {
        Sink {
            accounts: Mutex::new(Accounts::default()),
            requests: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            seed: AtomicU64::new(
                u64::from(std::process::id()) ^ crate::payload::now_ns().rotate_left(17),
            ),
            header: HeaderName::from_bytes(s.event_id_header.to_ascii_lowercase().as_bytes()).ok(),
            status: s.status,
            fail_ratio: s.fail_ratio,
            delay: s.delay,
            hang: s.hang,
        }
    }

    /// Serves one connection: HTTP/1.1 with keep-alive, answers to
    /// pipelined requests written together.
    async fn connection(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let service = service_fn(move |request| self.clone().answer(request));
        let _ = http1::Builder::new()
            .keep_alive(true)
            .pipeline_flush(true)
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }

    /// Reads one request, decides the answer and, if it is a success,
    /// accounts for the request.
    async fn answer(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<Empty<Bytes>>, hyper::Error> {
        let (head, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        self.requests.fetch_add(1, Ordering::Relaxed);
        if self.hang {
            std::future::pending::<()>().await;
        }
        let code = if self.fail_ratio > 0.0 && random_unit(&self.seed) < self.fail_ratio {
            500
        } else {
            self.status
        };
        let success = (200..300).contains(&code);
        if !success {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        // Only a request that got a success answer counts as received by
        // the service; others are for the sender to retry.
        if success {
            let ids = self
                .header
                .as_ref()
                .and_then(|h| head.headers.get(h))
                .and_then(|v| v.to_str().ok());
            let events = Events::parse(&body);
            if let Ok(mut a) = self.accounts.lock() {
                a.apply(ids, &events);
            }
        }
        let mut response = Response::new(Empty::new());
        *response.status_mut() =
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Ok(response)
    }
}

/// The HTTP server, on a thread of its own with a single-threaded runtime:
/// a request then costs no wake-up of another worker, and the sink takes at
/// most one core from the broker it measures. Stops when dropped.
struct Server {
    /// Dropped (or sent to) to stop the server.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Serves `listener` (non-blocking) on a new thread.
    fn start(listener: std::net::TcpListener, sink: Arc<Sink>) -> std::io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sink-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    let accept = async {
                        loop {
                            match listener.accept().await {
                                Ok((stream, _)) => {
                                    tokio::spawn(sink.clone().connection(stream));
                                }
                                // Out of file descriptors, say: try again
                                // shortly.
                                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = accept => {}
                    }
                });
                // Dropping the runtime drops the connections.
                drop(runtime);
            })?;
        Ok(Server { stop: Some(stop) })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs the sink until `stop` resolves, `duration` passes or `expect`
/// events arrived; returns what it counted.
pub async fn run(
    s: &SinkSettings,
    stop: impl Future<Output = ()>,
) -> Result<SinkReport, BenchError> {
    if !(0.0..=1.0).contains(&s.fail_ratio) {
        return Err(BenchError::Invalid(format!(
            "--fail-ratio {} must be between 0 and 1",
            s.fail_ratio
        )));
    }
    let sink = Arc::new(Sink::new(s));
    let listen_error = |source| BenchError::Listen {
        addr: s.bind,
        source,
    };
    let listener = std::net::TcpListener::bind(s.bind).map_err(listen_error)?;
    listener.set_nonblocking(true).map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    let server = Server::start(listener, sink.clone())
        .map_err(|e| BenchError::Invalid(format!("starting the sink's server: {e}")))?;
    eprintln!("sink: listening on http://{addr}");
    let start = Instant::now();
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let mut timeline = Vec::new();
    let deadline = s.duration.map(|d| start + d);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_print = start;
    let mut last_unique = 0u64;
    let mut peak = 0u64;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => {}
        }
        let (unique, dups, ooo, missing) = match sink.accounts.lock() {
            Ok(a) => a.totals(),
            Err(_) => break,
        };
        timeline.push((start.elapsed().as_secs_f64(), unique));
        if last_print.elapsed() >= Duration::from_secs(1) {
            let secs = last_print.elapsed().as_secs_f64();
            let per_s = ((unique - last_unique) as f64 / secs) as u64;
            peak = peak.max(per_s);
            if s.progress {
                eprintln!(
                    "sink {:>4}s  events {:>10} ({:>7}/s)  requests {:>9}  refused {:>7}  dup {}  late {}  missing {}",
                    start.elapsed().as_secs(),
                    thousands(unique),
                    thousands(per_s),
                    thousands(sink.requests.load(Ordering::Relaxed)),
                    thousands(sink.refused.load(Ordering::Relaxed)),
                    dups,
                    ooo,
                    missing,
                );
            }
            last_print = Instant::now();
            last_unique = unique;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) || s.expect.is_some_and(|e| unique >= e) {
            break;
        }
    }
    drop(server);
    let elapsed_s = start.elapsed().as_secs_f64();
    let a = sink
        .accounts
        .lock()
        .map_err(|_| BenchError::Invalid("sink accounts poisoned".into()))?;
    let lanes = a.lanes();
    let unique = a.unique();
    Ok(SinkReport {
        scenario: "sink",
        elapsed_s,
        requests: sink.requests.load(Ordering::Relaxed),
        refused: sink.refused.load(Ordering::Relaxed),
        accepted: a.accepted,
        events: a.events,
        unique,
        duplicates: lanes.iter().map(|l| l.duplicates).sum(),
        out_of_order: lanes.iter().map(|l| l.out_of_order).sum(),
        gaps: lanes.iter().map(|l| l.gaps).sum(),
        missing: lanes.iter().map(|l| l.missing).sum(),
        client_order_violations: a.client_order,
        clients: a.clients.len() as u64,
        malformed: a.malformed,
        events_per_s: if elapsed_s > 0.0 {
            unique as f64 / elapsed_s
        } else {
            0.0
        },
        peak_events_per_s: peak,
        started_unix_s,
        timeline,
        lanes,
    })
}

impl SinkReport {
    /// The report for a person.
    pub fn human(&self) -> String {
        let mut out = format!(
            "sink: {} events ({} distinct) in {} requests over {:.1} s, {:.0} events/s (peak {}/s)\n",
            thousands(self.events),
            thousands(self.unique),
            thousands(self.requests),
            self.elapsed_s,
            self.events_per_s,
            thousands(self.peak_events_per_s),
        );
        out += &format!(
            "  refused {}  duplicates {}  out of order {}  gaps {}  missing {}  client order violations {}  malformed {}  clients {}\n",
            self.refused,
            self.duplicates,
            self.out_of_order,
            self.gaps,
            self.missing,
            self.client_order_violations,
            self.malformed,
            self.clients
        );
        for l in &self.lanes {
            if l.duplicates + l.out_of_order + l.missing > 0 {
                out += &format!(
                    "  lane {}: received {} duplicates {} out of order {} gaps {} missing {}\n",
                    l.lane, l.received, l.duplicates, l.out_of_order, l.gaps, l.missing
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_parse_from_the_right() {
        assert_eq!(
            parse_event_id("a1b2c3d4e5f6-3-42"),
            Some(EventId {
                spool: "a1b2c3d4e5f6",
                lane: 3,
                seq: 42
            })
        );
        assert_eq!(
            parse_event_id(" my-spool-0-7 "),
            Some(EventId {
                spool: "my-spool",
                lane: 0,
                seq: 7
            })
        );
        for bad in ["", "x", "a-1", "-1-2", "a-b-3", "a-1-c", "a-1-"] {
            assert_eq!(parse_event_id(bad), None, "{bad:?}");
        }
    }

    fn event(client: &str) -> String {
        format!(r#"{{"action":"client_connected","clientid":"{client}"}}"#)
    }

    #[test]
    fn single_events_in_order() {
        let mut a = Accounts::default();
        for seq in 0..5 {
            a.record(Some(&format!("s-1-{seq}")), event("c1").as_bytes());
        }
        assert_eq!(
            (a.events, a.unique(), a.client_order, a.malformed),
            (5, 5, 0, 0)
        );
        let lanes = a.lanes();
        assert_eq!(lanes.len(), 1);
        assert_eq!(lanes[0].lane, "s-1");
        assert_eq!(lanes[0].next_seq, Some(5));
    }

    #[test]
    fn batches_duplicates_gaps_and_client_order() {
        let mut a = Accounts::default();
        let batch = format!("[{},{},{}]", event("c1"), event("c2"), event("c1"));
        a.record(Some("s-0-10,s-0-11,s-0-12"), batch.as_bytes());
        // The same batch again (a retry after a lost answer): duplicates.
        a.record(Some("s-0-10,s-0-11,s-0-12"), batch.as_bytes());
        // A gap: 13 and 14 skipped.
        a.record(Some("s-0-15"), event("c2").as_bytes());
        // 13 arrives late, for c1 whose last event was 12: in order for c1.
        a.record(Some("s-0-13"), event("c1").as_bytes());
        // 14 for c2 arrives after c2's 15: a client order violation.
        a.record(Some("s-0-14"), event("c2").as_bytes());
        let lane = &a.lanes()[0];
        assert_eq!(lane.received, 9);
        assert_eq!(lane.duplicates, 3);
        assert_eq!(lane.gaps, 1);
        assert_eq!(lane.out_of_order, 2);
        assert_eq!(lane.missing, 0);
        assert_eq!(a.unique(), 6);
        assert_eq!(a.client_order, 1);
        assert_eq!(a.clients.len(), 2);
        assert_eq!(a.malformed, 0);
    }

    #[test]
    fn message_events_use_from_client_id_and_lanes_are_separate() {
        let mut a = Accounts::default();
        let publish = r#"{"action":"message_publish","from_client_id":"dev9"}"#;
        a.record(Some("s-2-5"), publish.as_bytes());
        a.record(Some("s-3-1"), event("other").as_bytes());
        a.record(Some("s-2-4"), publish.as_bytes());
        // dev9's event 4 came after its event 5.
        assert_eq!(a.client_order, 1);
        assert_eq!(a.lanes().len(), 2);
        assert!(a.clients.contains_key("dev9"));
    }

    #[test]
    fn malformed_requests_are_counted() {
        let mut a = Accounts::default();
        a.record(None, event("c").as_bytes());
        a.record(Some("s-0-1,s-0-2"), event("c").as_bytes()); // 2 ids, 1 event
        a.record(Some("garbage"), event("c").as_bytes());
        a.record(Some("s-0-3"), b"not json");
        assert_eq!(a.malformed, 4);
        assert_eq!(a.accepted, 4);
        // Ids that parsed still count as events.
        assert_eq!(a.events, 3);
    }

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

    #[test]
    fn batch_with_escaped_client_ids() {
        let mut a = Accounts::default();
        let batch = r#"[{"action":"message_publish","from_client_id":"dev\u0039","payload":"\"q\""},{"clientid":"c\\2"}]"#;
        a.record(Some("s-0-5,s-0-6"), batch.as_bytes());
        // dev9's next event, sent plain, comes before its event 5.
        a.record(
            Some("s-0-4"),
            br#"{"action":"message_publish","from_client_id":"dev9"}"#,
        );
        assert_eq!(a.malformed, 0);
        assert_eq!(a.client_order, 1);
        assert_eq!(a.clients.len(), 2);
        assert!(a.clients.contains_key("dev9"));
        assert!(a.clients.contains_key("c\\2"));
    }

    #[test]
    fn lanes_are_named_by_their_number() {
        let mut a = Accounts::default();
        a.record(Some("s-01-5"), event("c").as_bytes());
        a.record(Some("s-1-6"), event("c").as_bytes());
        a.record(Some("s-+1-7"), event("c").as_bytes());
        a.record(
            Some(" s-0-1 , s-00-2"),
            format!("[{},{}]", event("d"), event("d")).as_bytes(),
        );
        let lanes = a.lanes();
        let names: Vec<_> = lanes.iter().map(|l| l.lane.as_str()).collect();
        assert_eq!(names, ["s-0", "s-1"]);
        assert_eq!(
            (lanes[0].received, lanes[0].first_seq, lanes[0].next_seq),
            (2, Some(1), Some(3))
        );
        assert_eq!(
            (lanes[1].received, lanes[1].first_seq, lanes[1].next_seq),
            (3, Some(5), Some(8))
        );
        assert_eq!((a.unique(), a.malformed), (5, 0));
    }

    /// A sink answering `status`, served on a port of its own.
    fn serve_sink(status: u16) -> (Arc<Sink>, Server, SocketAddr) {
        let settings = SinkSettings {
            bind: "127.0.0.1:0".parse().unwrap(),
            status,
            fail_ratio: 0.0,
            delay: Duration::ZERO,
            hang: false,
            event_id_header: "X-Herald-Event-Id".into(),
            duration: None,
            expect: None,
            progress: false,
        };
        let sink = Arc::new(Sink::new(&settings));
        let listener = std::net::TcpListener::bind(settings.bind).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::start(listener, sink.clone()).unwrap();
        (sink, server, addr)
    }

    /// Writes `requests` at once and reads `n` answers (without bodies).
    fn exchange(addr: SocketAddr, requests: &str, n: usize) -> String {
        use std::io::{Read, Write};
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        client.write_all(requests.as_bytes()).unwrap();
        let mut answers = String::new();
        let mut buf = [0u8; 4096];
        while answers.matches("\r\n\r\n").count() < n {
            let n = client.read(&mut buf).unwrap();
            assert!(n > 0, "closed after {answers:?}");
            answers += std::str::from_utf8(&buf[..n]).unwrap();
        }
        answers
    }

    #[test]
    fn refused_requests_are_not_counted() {
        let (sink, server, addr) = serve_sink(503);
        let body = event("c1");
        let request = format!(
            "POST / HTTP/1.1\r\nx-herald-event-id: s-0-0\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let answers = exchange(addr, &request.repeat(2), 2);
        assert_eq!(answers.matches("HTTP/1.1 503 ").count(), 2, "{answers}");
        drop(server);
        assert_eq!(sink.requests.load(Ordering::Relaxed), 2);
        assert_eq!(sink.refused.load(Ordering::Relaxed), 2);
        let a = sink.accounts.lock().unwrap();
        assert_eq!((a.accepted, a.events), (0, 0));
    }

    #[test]
    fn pipelined_requests_are_all_answered_and_counted() {
        let (sink, server, addr) = serve_sink(200);

        let request = |ids: &str, body: &str| {
            format!(
                "POST /hook HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
                 x-herald-event-id: {ids}\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        // Ten requests written at once: eight single events, a batch with an
        // escaped client id, and one without the id header.
        let mut out = String::new();
        for seq in 0..8 {
            out += &request(&format!("s-0-{seq}"), &event("c1"));
        }
        out += &request(
            "s-0-8,s-0-9",
            r#"[{"clientid":"c\u0031"},{"from_client_id":"c2"}]"#,
        );
        out += "POST /hook HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n{}";
        let answers = exchange(addr, &out, 10);
        assert_eq!(
            answers.matches("HTTP/1.1 200 OK\r\n").count(),
            10,
            "{answers}"
        );
        drop(server);

        assert_eq!(sink.requests.load(Ordering::Relaxed), 10);
        let a = sink.accounts.lock().unwrap();
        assert_eq!((a.accepted, a.events, a.unique()), (10, 10, 10));
        assert_eq!((a.malformed, a.client_order, a.clients.len()), (1, 0, 2));
        assert_eq!(a.lanes()[0].next_seq, Some(10));
    }

    #[test]
    fn random_unit_is_in_range_and_roughly_uniform() {
        let state = AtomicU64::new(1);
        let n = 100_000;
        let below = (0..n)
            .map(|_| random_unit(&state))
            .inspect(|x| assert!((0.0..1.0).contains(x)))
            .filter(|&x| x < 0.2)
            .count();
        let ratio = below as f64 / n as f64;
        assert!((0.18..0.22).contains(&ratio), "{ratio}");
    }
}
