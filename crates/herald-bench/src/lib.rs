//! `herald-bench`: a load generator for MQTT brokers and a sink for the
//! WebHook, in the spirit of emqtt-bench.
//!
//! It measures end to end: every payload starts with a header (publisher
//! id, sequence number, send time on a process-wide monotonic clock), so the
//! subscribers in the same process compute latency and find lost,
//! duplicated and reordered messages themselves. The MQTT side is
//! `herald-codec` over tokio TCP with batched reads and writes, light enough
//! that the broker, not the tool, is what gets measured.
//!
//! Layout:
//! - [`payload`]: the payload header and the clock.
//! - [`histogram`]: latency histogram and percentiles.
//! - [`seq`]: loss / duplicate / order accounting of a numbered stream.
//! - [`client`]: one MQTT connection (connect, subscribe, non-blocking I/O).
//! - [`transport`]: TCP, TLS, WebSocket or both under a connection.
//! - [`publisher`], [`subscriber`]: the two roles' hot loops.
//! - [`live`]: counters shared by a run, timing, the progress line.
//! - [`load`]: the fan-in, fan-out and pairs scenarios and their report.
//! - [`conn`]: the connection-rate and idle-connection scenario.
//! - [`sink`]: the WebHook sink.
//! - [`state`]: fills a broker with sessions, queued and retained messages
//!   (what a restart reads back).
//! - [`error`]: why a run could not be carried out.
//!
//! Nothing here is part of the broker; the broker crates never depend on it
//! (the tool borrows the broker's WebSocket byte stream for `--transport ws`).

pub mod client;
pub mod conn;
pub mod error;
pub mod histogram;
pub mod live;
pub mod load;
pub mod payload;
pub mod publisher;
pub mod seq;
pub mod sink;
pub mod state;
pub mod subscriber;
pub mod transport;

pub use error::BenchError;
