//! Herald's MQTT broker as a library.
//!
//! Layout, following the data flow (socket → codec → connection → router →
//! session queue → connection → codec → socket):
//! - [`listener`]: accept loops, the connection limit, graceful shutdown;
//!   [`start`], [`start_on`] (a broker made beforehand, with hooks attached)
//!   and [`serve`] are the entry points.
//! - [`transport`]: what a connection runs over before MQTT starts (PROXY
//!   header, TLS, WebSocket) and what it learns about the client.
//! - [`connection`]: framed packet I/O over any `AsyncRead + AsyncWrite`.
//! - [`protocol`]: one connection's state machine, one file per packet family.
//! - [`session`]: state that outlives a connection (queue, inflight, expiry).
//! - [`broker`]: what connections share (registry, router, retained store).
//! - [`router`]: topic-filter trie, shared groups, retained store.
//! - [`hooks`]: the extension point: events and decision handlers;
//!   [`reason`]: why connections, sessions and messages end.
//! - [`ack`]: acknowledgements held until what handlers did is durable.
//! - [`access`]: access control: authentication and per-client rights.
//! - [`store`]: the broker's state on disk (`[persistence]`), written in
//!   [`frame`]s (checksummed records, shared with the WebHook spool).
//! - [`message`], [`metrics`], [`sys`] (`$SYS` topics), [`config`].
//! - [`support`]: the clock, poison-ignoring locks and a log throttle,
//!   shared with the other Herald crates.

pub mod access;
pub mod ack;
pub mod broker;
pub mod config;
pub mod config_path;
pub mod connection;
pub mod exposition;
pub mod frame;
pub mod hooks;
pub mod listener;
pub mod message;
pub mod metrics;
pub mod protocol;
pub mod queue;
pub mod reason;
pub mod router;
pub mod session;
pub mod store;
pub mod support;
pub mod sys;
pub mod transport;

pub use listener::{ServeError, Server, serve, start, start_on};
