//! systemd's readiness protocol (`sd_notify`, for `Type=notify` units): one
//! datagram such as `READY=1` to the Unix socket named by `NOTIFY_SOCKET`.
//! Without that variable (not started by systemd) it does nothing; a failed
//! send is logged, never fatal.

use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;

/// The variable systemd sets to the socket's path (`@name`: an abstract
/// socket, Linux only).
const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells systemd the broker is ready: every listener is bound.
pub fn ready() {
    send("READY=1");
}

/// Tells systemd the broker is stopping.
pub fn stopping() {
    send("STOPPING=1");
}

fn send(state: &str) {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    if let Err(err) = send_to(&socket, state) {
        tracing::warn!(
            socket = %socket.to_string_lossy(),
            error = %err,
            "cannot tell systemd {state}"
        );
    }
}

fn send_to(socket: &OsStr, state: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let datagram = UnixDatagram::unbound()?;
    match socket.as_bytes().strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            datagram.send_to_addr(state.as_bytes(), &addr)?;
        }
        _ => {
            datagram.send_to(state.as_bytes(), socket)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_one_datagram_to_a_path_socket() {
        let path = std::env::temp_dir().join(format!("herald-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let systemd = UnixDatagram::bind(&path).unwrap_or_else(|e| panic!("{e}"));
        send_to(path.as_os_str(), "READY=1").unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 64];
        let n = systemd.recv(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf[..n], b"READY=1");
        let _ = std::fs::remove_file(&path);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("herald-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let systemd = UnixDatagram::bind_addr(&addr).unwrap_or_else(|e| panic!("{e}"));
        send_to(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap_or_else(|e| panic!("{e}"));
        let mut buf = [0u8; 64];
        let n = systemd.recv(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&buf[..n], b"STOPPING=1");
    }
}
