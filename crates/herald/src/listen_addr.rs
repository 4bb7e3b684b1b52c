//! The address forms `--listen` and its siblings (`--listen-tls`,
//! `--listen-ws`, `--listen-wss`) accept on the command line.
//!
//! - `IP:PORT` and `[IPv6]:PORT`: that address, as in `herald.toml`.
//! - `:PORT` and a bare `PORT`: every interface, IPv6 and IPv4 on one
//!   socket (`[::]:PORT`; the listener falls back to `0.0.0.0:PORT` on a
//!   machine without IPv6).
//! - `HOST:PORT`: every address the name resolves to (`localhost:1883` is
//!   `127.0.0.1:1883` and `[::1]:1883` where both exist), each once.

use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};

/// The addresses one `--listen` value stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddrs(pub Vec<SocketAddr>);

/// Parses one `--listen` value; the error names the value and the forms
/// accepted (clap prefixes the flag).
pub fn parse(text: &str) -> Result<ListenAddrs, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(ListenAddrs(vec![addr]));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port)) => (host, port),
        None => ("", text),
    };
    let port: u16 = port.parse().map_err(|_| {
        format!("{text:?} is not an address: expected IP:PORT, HOST:PORT, :PORT or PORT")
    })?;
    if host.is_empty() {
        return Ok(ListenAddrs(vec![SocketAddr::from((
            Ipv6Addr::UNSPECIFIED,
            port,
        ))]));
    }
    if host.starts_with('[') || host.contains(':') {
        return Err(format!(
            "{text:?} is not an address: an IPv6 address goes in brackets, e.g. [::1]:{port}"
        ));
    }
    let resolved = (host, port)
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve {host:?}: {err}"))?;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for addr in resolved {
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    if addrs.is_empty() {
        return Err(format!("{host:?} resolves to no address"));
    }
    Ok(ListenAddrs(addrs))
}

/// Every address of every `--listen` value, in the order given.
pub fn flatten(values: Vec<ListenAddrs>) -> Vec<SocketAddr> {
    values.into_iter().flat_map(|v| v.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> SocketAddr {
        let parsed = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(parsed.0.len(), 1, "{text}: {parsed:?}");
        parsed.0[0]
    }

    #[test]
    fn ip_forms_are_taken_as_they_are() {
        assert_eq!(one("127.0.0.1:1883"), "127.0.0.1:1883".parse().unwrap());
        assert_eq!(one("[::1]:8883"), "[::1]:8883".parse().unwrap());
        assert_eq!(one("0.0.0.0:0"), "0.0.0.0:0".parse().unwrap());
    }

    #[test]
    fn a_port_alone_means_every_interface_of_both_families() {
        assert_eq!(one(":1883"), "[::]:1883".parse().unwrap());
        assert_eq!(one("1883"), "[::]:1883".parse().unwrap());
        assert_eq!(one("0"), "[::]:0".parse().unwrap());
    }

    #[test]
    fn a_host_name_binds_each_of_its_addresses_once() {
        let addrs = parse("localhost:1883").unwrap().0;
        assert!(!addrs.is_empty());
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 1883)
        );
        let mut unique = addrs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), addrs.len(), "{addrs:?}");
    }

    #[test]
    fn bad_values_name_the_forms() {
        for bad in ["nowhere", "1883x", ":70000", "host:", ""] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.contains("expected IP:PORT, HOST:PORT, :PORT or PORT"),
                "{bad}: {err}"
            );
        }
        assert!(parse("::1:1883").unwrap_err().contains("[::1]:1883"));
        assert!(
            parse("no-such-host.invalid:1883")
                .unwrap_err()
                .contains("cannot resolve \"no-such-host.invalid\"")
        );
    }

    #[test]
    fn flatten_keeps_the_order_given() {
        let addrs = flatten(vec![parse("127.0.0.1:1").unwrap(), parse(":2").unwrap()]);
        assert_eq!(
            addrs,
            vec![
                "127.0.0.1:1".parse::<SocketAddr>().unwrap(),
                "[::]:2".parse().unwrap()
            ]
        );
    }
}
