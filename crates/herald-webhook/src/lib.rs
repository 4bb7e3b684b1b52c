//! Herald's WebHook (crate page to be completed by the configuration work).

pub mod spool;
