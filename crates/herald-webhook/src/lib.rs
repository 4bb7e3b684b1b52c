//! Herald's WebHook: broker events become HTTP POST requests with a JSON
//! body, compatible with EMQX 4.x's `emqx_web_hook` (`docs/webhook.md`).
//!
//! The crate sees the broker only through `herald_broker::hooks`. Its path,
//! following one event:
//!
//! ```text
//! Event ─► rules (how many requests?) ─► body (JSON bytes) ─► spool ─► lane ─► HTTP POST
//! ```
//!
//! - [`conf`]: [`WebhookConfig`], read from an EMQX `emqx_web_hook.conf`
//!   unchanged or from key/value pairs; every key and default is listed
//!   there.
//! - [`endpoint`]: the normalised `web.hook.url`.
//! - [`event`]: the thirteen [`EventKind`]s of the contract and what an
//!   event's topic and client are.
//! - [`rules`]: [`Rules`], which events are sent and how many times.
//! - [`body`]: [`BodyBuilder`], the JSON bodies in the `v4.0` and `v4.4`
//!   [`Profile`]s.
//! - [`payload`]: the `plain` / `base64` / `base62` payload encodings;
//!   [`reason`]: the broker's disconnect, termination and drop reasons in
//!   EMQX's words.
//! - [`spool`]: the on-disk queue of requests waiting to be delivered.
//! - [`deliver`]: the lanes that send them, with retries; [`dead_letter`]:
//!   the file of events given up on, and their replay; [`http`]: one
//!   HTTP/1.1 connection (hyper), plain or TLS; [`metrics`]: counters and their
//!   Prometheus text.
//! - [`listen`]: a local receiver that prints what it gets (`herald webhook
//!   listen`), also used by tests and the benchmark sink.
//! - [`service`]: [`WebHook`], the handler plus the lanes, attached to a
//!   running broker, reloadable; `generation`: the spool generations a
//!   change of `pool_size` leaves, drained oldest first.
//!
//! Everything that runs on the broker's side of the spool (matching rules,
//! building a body) is synchronous, allocation-light and never blocks: a
//! hook handler matches, builds and enqueues, nothing more. Delivery runs
//! on its own tasks.

pub mod body;
pub mod conf;
pub mod dead_letter;
pub mod deliver;
pub mod endpoint;
pub mod event;
mod generation;
pub mod http;
pub mod listen;
pub mod metrics;
pub mod payload;
pub mod reason;
pub mod rules;
pub mod service;
pub mod spool;
pub mod threads;

pub use body::{BodyBuilder, Profile};
pub use conf::{ConfError, Origin, WebhookConfig};
pub use event::EventKind;
pub use payload::PayloadEncoding;
pub use rules::Rules;
pub use service::WebHook;
