//! The open-file limit: raised at start from the soft to the hard limit
//! (every MQTT connection is a descriptor, and the usual soft limit of
//! 1,024 is far below what a broker holds), and a reserve kept out of
//! `listener.max_connections` so that at the limit `/metrics`, the WebHook's
//! connections and spool files, and the runtime still get descriptors.

/// Descriptors kept for everything but MQTT connections: the `/metrics`
/// listener's connection cap, WebHook lanes and spool segments, the
/// runtime's own, with room to spare. Never more than a quarter of the
/// limit, so a small limit still leaves most of it to MQTT.
const RESERVE: u64 = 256;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, logs both, and caps
/// `max_connections` so MQTT connections leave the reserve free.
#[cfg(unix)]
#[allow(clippy::useless_conversion)] // rlim_t is u64 on most targets, not all
#[allow(unsafe_code)] // two FFI calls on a struct we own; see the SAFETY notes
pub fn raise(max_connections: &mut u32) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other effect.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let err = std::io::Error::last_os_error();
        tracing::warn!(error = %err, "cannot read the open-file limit");
        return;
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own; raising the soft limit
        // up to the hard one needs no privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        } else {
            let err = std::io::Error::last_os_error();
            tracing::warn!(error = %err, "cannot raise the open-file limit");
        }
    }
    let soft = u64::from(limit.rlim_cur);
    tracing::info!(
        soft_before = u64::from(before),
        soft = soft,
        hard = u64::from(limit.rlim_max),
        "open-file limit"
    );
    let usable = soft - RESERVE.min(soft / 4);
    if u64::from(*max_connections) > usable {
        let capped = u32::try_from(usable).unwrap_or(u32::MAX).max(1);
        tracing::warn!(
            max_connections = *max_connections,
            capped,
            "listener.max_connections is above what the open-file limit allows; using {capped}"
        );
        *max_connections = capped;
    }
}

/// Not a Unix: the limit is left as it is.
#[cfg(not(unix))]
pub fn raise(_max_connections: &mut u32) {}
