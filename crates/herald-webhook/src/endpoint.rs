//! The URL every request goes to (`web.hook.url`), parsed and normalised
//! the way §1 of `docs/webhook.md` says: a missing scheme means `http://`,
//! an empty path means `/`, a query string is kept, IPv6 hosts are written
//! in brackets (`http://[::1]:8080/hook`).
//!
//! Only `http` and `https` URLs are accepted. This module never resolves a
//! name or opens a connection; it only turns text into an [`Endpoint`] or
//! an [`UrlError`] that says what is wrong.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use thiserror::Error;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (default port 80).
    Http,
    /// HTTP over TLS (default port 443).
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// The host part of the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, lower-cased.
    Name(String),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written in brackets in the URL).
    Ipv6(Ipv6Addr),
}

impl fmt::Display for Host {
    /// As in a URL or a `Host` header: IPv6 in brackets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(ip) => write!(f, "[{ip}]"),
        }
    }
}

/// A normalised `http`/`https` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`.
    scheme: Scheme,
    /// Where to connect.
    host: Host,
    /// Explicit or the scheme's default.
    port: u16,
    /// Starts with `/`; includes `?query` when the URL had one.
    path_and_query: String,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlError {
    /// Nothing but whitespace.
    #[error("the URL is empty")]
    Empty,
    /// A scheme other than `http` / `https`.
    #[error("scheme `{0}` is not supported (use http or https)")]
    Scheme(String),
    /// `http://` with no host, or `http://:80/`.
    #[error("the URL has no host")]
    MissingHost,
    /// Characters a host name cannot hold, or an unbracketed IPv6 address.
    #[error("invalid host `{0}`")]
    Host(String),
    /// Not a number from 1 to 65535.
    #[error("invalid port `{0}`")]
    Port(String),
    /// `user:password@host`: credentials belong in a header.
    #[error(
        "user credentials in the URL are not supported; set web.hook.headers.authorization instead"
    )]
    UserInfo,
    /// Whitespace or control characters.
    #[error("the URL contains whitespace or control characters")]
    InvalidChar,
}

impl Endpoint {
    /// Parses and normalises `text` (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<Endpoint, UrlError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(UrlError::Empty);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::InvalidChar);
        }
        let (scheme, rest) = match text.split_once("://") {
            Some((name, rest)) => {
                let scheme = if name.eq_ignore_ascii_case("http") {
                    Scheme::Http
                } else if name.eq_ignore_ascii_case("https") {
                    Scheme::Https
                } else {
                    return Err(UrlError::Scheme(name.to_owned()));
                };
                (scheme, rest)
            }
            None => (Scheme::Http, text),
        };
        // The fragment is never sent in HTTP: drop it.
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if authority.contains('@') {
            return Err(UrlError::UserInfo);
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None | Some("") => scheme.default_port(),
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(UrlError::Port(p.to_owned())),
            },
        };
        let mut path_and_query = String::with_capacity(tail.len() + 1);
        if !tail.starts_with('/') {
            path_and_query.push('/');
        }
        // Non-ASCII characters are percent-encoded, as a browser would.
        for c in tail.chars() {
            if c.is_ascii() {
                path_and_query.push(c);
            } else {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    path_and_query.push_str(&format!("%{b:02X}"));
                }
            }
        }
        Ok(Endpoint {
            scheme,
            host,
            port,
            path_and_query,
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether requests need TLS.
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::Https
    }

    /// The host to connect to.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The TCP port (the scheme's default when the URL has none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The request target: path (at least `/`) and `?query`.
    pub fn path_and_query(&self) -> &str {
        &self.path_and_query
    }

    /// The `Host` header value: host, plus `:port` unless it is the
    /// scheme's default.
    pub fn authority(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    /// The normalised URL: `http://host[:port]/path?query`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.name(),
            self.authority(),
            self.path_and_query
        )
    }
}

/// A URL as written, fit to print: the password of a `user:password@`
/// part is replaced by `***` (errors and logs never show it).
pub fn redacted(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            let user = userinfo.split(':').next().unwrap_or_default();
            let hidden = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}{user}{hidden}{host}{tail}")
        }
        None => url.to_owned(),
    }
}

/// Splits `host[:port]` / `[v6][:port]`; the port text is returned raw.
fn split_host_port(authority: &str) -> Result<(Host, Option<&str>), UrlError> {
    if let Some(inner) = authority.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| UrlError::Host(authority.to_owned()))?;
        let ip: Ipv6Addr = addr
            .parse()
            .map_err(|_| UrlError::Host(authority.to_owned()))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| UrlError::Host(authority.to_owned()))?,
            ),
        };
        return Ok((Host::Ipv6(ip), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    if port.is_some_and(|p| p.contains(':')) {
        // `::1` or `::1:8080`: IPv6 needs brackets.
        return Err(UrlError::Host(authority.to_owned()));
    }
    if host.is_empty() {
        return Err(UrlError::MissingHost);
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok((Host::Ipv4(ip), port));
    }
    if !valid_host_name(host) {
        return Err(UrlError::Host(host.to_owned()));
    }
    Ok((Host::Name(host.to_ascii_lowercase()), port))
}

/// A DNS name (or a name resolved some other way): letters, digits, `-`,
/// `_` and `.`, not starting or ending with a dot.
pub(crate) fn valid_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('.')
        && !host.ends_with('.')
        && !host.contains("..")
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(text: &str) -> String {
        match Endpoint::parse(text) {
            Ok(e) => e.to_string(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn normalisation() {
        assert_eq!(norm("http://127.0.0.1:80"), "http://127.0.0.1/");
        assert_eq!(norm("127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(norm("localhost"), "http://localhost/");
        assert_eq!(norm("HTTPS://Example.COM/Hook"), "https://example.com/Hook");
        assert_eq!(norm("https://example.com:443"), "https://example.com/");
        assert_eq!(
            norm("http://h:9000/a/b?x=1&y=2"),
            "http://h:9000/a/b?x=1&y=2"
        );
        assert_eq!(norm("http://h?x=1"), "http://h/?x=1");
        assert_eq!(norm("http://h/p#frag"), "http://h/p");
        assert_eq!(norm("http://h:/p"), "http://h/p");
        assert_eq!(norm("  http://h/  "), "http://h/");
        assert_eq!(norm("http://h/é"), "http://h/%C3%A9");
    }

    #[test]
    fn ipv6() {
        let e = Endpoint::parse("http://[::1]:8080/hook").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.host(), &Host::Ipv6(Ipv6Addr::LOCALHOST));
        assert_eq!(e.port(), 8080);
        assert_eq!(e.authority(), "[::1]:8080");
        assert_eq!(e.to_string(), "http://[::1]:8080/hook");
        assert_eq!(norm("[::1]"), "http://[::1]/");
        assert_eq!(norm("https://[2001:DB8::1]"), "https://[2001:db8::1]/");
        assert!(norm("http://::1/").starts_with("error: invalid host"));
        assert!(norm("http://::1:80/").starts_with("error: invalid host"));
        assert!(norm("http://[::1/").starts_with("error: invalid host"));
        assert!(norm("http://[::1]x/").starts_with("error: invalid host"));
        assert!(norm("http://[nope]/").starts_with("error: invalid host"));
    }

    #[test]
    fn parts() {
        let e = Endpoint::parse("https://hooks.example.com/emqx?token=a").unwrap_or_else(|e| {
            panic!("{e}");
        });
        assert!(e.is_https());
        assert_eq!(e.scheme(), Scheme::Https);
        assert_eq!(e.port(), 443);
        assert_eq!(e.path_and_query(), "/emqx?token=a");
        assert_eq!(e.authority(), "hooks.example.com");
        assert_eq!(e.host(), &Host::Name("hooks.example.com".into()));
        let e = Endpoint::parse("10.0.0.1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.host(), &Host::Ipv4(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn refusals() {
        assert_eq!(Endpoint::parse(" "), Err(UrlError::Empty));
        assert_eq!(
            Endpoint::parse("ftp://h/"),
            Err(UrlError::Scheme("ftp".into()))
        );
        assert_eq!(Endpoint::parse("http:///x"), Err(UrlError::MissingHost));
        assert_eq!(Endpoint::parse("http://:80/"), Err(UrlError::MissingHost));
        assert_eq!(
            Endpoint::parse("http://h:0/"),
            Err(UrlError::Port("0".into()))
        );
        assert_eq!(
            Endpoint::parse("http://h:65536/"),
            Err(UrlError::Port("65536".into()))
        );
        assert_eq!(
            Endpoint::parse("http://h:+80/"),
            Err(UrlError::Port("+80".into()))
        );
        assert_eq!(Endpoint::parse("http://u:p@h/"), Err(UrlError::UserInfo));
        assert_eq!(Endpoint::parse("http://h/a b"), Err(UrlError::InvalidChar));
        assert_eq!(
            Endpoint::parse("http://h$/"),
            Err(UrlError::Host("h$".into()))
        );
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::redacted;

    #[test]
    fn passwords_never_printed() {
        assert_eq!(
            redacted("http://alice:s3cret@example.com:8080/hook?x=1"),
            "http://alice:***@example.com:8080/hook?x=1"
        );
        assert_eq!(redacted("https://bob@h/p"), "https://bob@h/p");
        assert_eq!(redacted("http://h:80/a@b"), "http://h:80/a@b");
        assert_eq!(redacted("u:p@h"), "u:***@h");
    }
}
