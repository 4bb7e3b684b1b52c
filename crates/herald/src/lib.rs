//! The `herald` binary's library half: what the command (`main.rs`) and the
//! integration tests share.
//!
//! - [`config`]: `HeraldConfig`, the whole `herald.toml` (the broker's
//!   settings and those of the parts around it), and how it is loaded.
//! - [`webhook`]: the WebHook's configuration as the binary assembles it
//!   from `webhook_conf` and the `[webhook]` table.
//!
//! No broker or WebHook logic lives here; that is in the library crates.

pub mod config;
pub mod webhook;
