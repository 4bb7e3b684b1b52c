//! Why a benchmark run could not be carried out (as opposed to what it
//! measured: losses and client failures during a run are results, not
//! errors).

use crate::client::ClientError;

/// A run that could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A setting is out of range or settings contradict each other.
    #[error("invalid setting: {0}")]
    Invalid(String),
    /// The broker address did not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// What was given.
        host: String,
        /// Why.
        reason: String,
    },
    /// A client needed to set up the run could not connect or subscribe.
    #[error("setting up {who}: {source}")]
    Setup {
        /// Which client.
        who: String,
        /// Why.
        source: ClientError,
    },
    /// The WebHook sink could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}
