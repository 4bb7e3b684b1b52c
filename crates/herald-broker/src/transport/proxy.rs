//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load
//! balancer puts in front of a connection to say whose it is. Read once, at
//! the start of a connection of a listener with `proxy_protocol = true`;
//! a connection without a valid header is refused.
//!
//! Only the source address is used. `PROXY UNKNOWN` (v1) and the `LOCAL`
//! command or an unspecified or Unix family (v2) carry no client address:
//! the connection keeps the balancer's own, as the specification asks.
//! TLVs (v2) are skipped. Bytes read past the header are handed back in a
//! [`Rewind`] so the next layer sees them first.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The 12 bytes every v2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// What every v1 header starts with.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest v1 header, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// Fixed part of a v2 header: signature, version/command, family, length.
const V2_FIXED: usize = 16;

/// Why a PROXY header was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The connection does not start with a PROXY header.
    #[error("no PROXY protocol header")]
    Missing,
    /// It starts like one but breaks the format.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    /// The connection closed before the header was complete.
    #[error("connection closed inside the PROXY protocol header")]
    Truncated,
    /// Reading failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

/// Reads a PROXY header from the start of `stream`. Returns the client's
/// address it carries (`None`: it carries none, keep the socket's) and the
/// bytes read after it.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(Option<SocketAddr>, BytesMut), ProxyError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if let Some((len, addr)) = parse(&buf)? {
            buf.advance(len);
            return Ok((addr, buf));
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(ProxyError::Truncated);
        }
    }
}

/// Parses a header at the start of `buf`: `Ok(None)` when more bytes are
/// needed, else the header's length and the source address.
pub fn parse(buf: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyError> {
    let starts = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf.get(..n) == sig.get(..n)
    };
    if starts(V2_SIGNATURE) {
        if buf.len() < V2_FIXED {
            return Ok(None);
        }
        parse_v2(buf)
    } else if starts(V1_PREFIX) {
        parse_v1(buf)
    } else {
        Err(ProxyError::Missing)
    }
}

/// Version 1: one line of text.
fn parse_v1(buf: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyError> {
    let window = buf.get(..buf.len().min(V1_MAX)).unwrap_or(buf);
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX {
            return Err(ProxyError::Malformed("v1 line longer than 107 bytes"));
        }
        return Ok(None);
    };
    let line = std::str::from_utf8(window.get(..end).unwrap_or_default())
        .map_err(|_| ProxyError::Malformed("v1 line is not ASCII"))?;
    let mut fields = line.split(' ').skip(1);
    let proto = fields.next().unwrap_or_default();
    if proto == "UNKNOWN" {
        return Ok(Some((end + 2, None)));
    }
    let mut next = || {
        fields
            .next()
            .ok_or(ProxyError::Malformed("v1 line too short"))
    };
    let (src, _dst, sport, _dport) = (next()?, next()?, next()?, next()?);
    if fields.next().is_some() {
        return Err(ProxyError::Malformed("v1 line too long"));
    }
    let ip: IpAddr = match proto {
        "TCP4" => src
            .parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| ProxyError::Malformed("v1 source is not an IPv4 address"))?,
        "TCP6" => src
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ProxyError::Malformed("v1 source is not an IPv6 address"))?,
        _ => {
            return Err(ProxyError::Malformed(
                "v1 protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    let port = parse_port(sport)?;
    Ok(Some((end + 2, Some(SocketAddr::new(ip, port)))))
}

/// A v1 port: decimal 0..=65535 without a sign or leading zeros.
fn parse_port(text: &str) -> Result<u16, ProxyError> {
    let bad = ProxyError::Malformed("v1 port is not a number from 0 to 65535");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.len() > 5 {
        return Err(bad);
    }
    if text.len() > 1 && text.starts_with('0') {
        return Err(bad);
    }
    text.parse().map_err(|_| bad)
}

/// Version 2: binary, with a length.
fn parse_v2(buf: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyError> {
    let byte = |i: usize| buf.get(i).copied().unwrap_or(0);
    let (ver_cmd, family) = (byte(12), byte(13));
    let len = usize::from(u16::from_be_bytes([byte(14), byte(15)]));
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::Malformed("v2 version is not 2"));
    }
    let total = V2_FIXED + len;
    let Some(body) = buf.get(V2_FIXED..total) else {
        return Ok(None);
    };
    let addr = match ver_cmd & 0x0F {
        // LOCAL: the balancer's own connection (a health check).
        0x0 => None,
        0x1 => match family >> 4 {
            0x1 => {
                let a: &[u8; 12] = body
                    .get(..12)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(ProxyError::Malformed("v2 IPv4 addresses truncated"))?;
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
            }
            0x2 => {
                let a: &[u8; 36] = body
                    .get(..36)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(ProxyError::Malformed("v2 IPv6 addresses truncated"))?;
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&a[..16]);
                let port = u16::from_be_bytes([a[32], a[33]]);
                Some(SocketAddr::new(Ipv6Addr::from(ip).into(), port))
            }
            // Unspecified or Unix: nothing usable.
            0x0 | 0x3 => None,
            _ => return Err(ProxyError::Malformed("v2 address family unknown")),
        },
        _ => {
            return Err(ProxyError::Malformed(
                "v2 command is neither LOCAL nor PROXY",
            ));
        }
    };
    Ok(Some((total, addr)))
}

/// A stream with some bytes already read from it put back in front.
pub struct Rewind<S> {
    /// Bytes to hand out before reading from `inner` again.
    prefix: BytesMut,
    /// The stream.
    inner: S,
}

impl<S> Rewind<S> {
    /// `inner`, with `prefix` read first.
    pub fn new(prefix: BytesMut, inner: S) -> Rewind<S> {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix.split_to(n));
            if self.prefix.is_empty() {
                // Free the buffer: a long-lived connection should not keep it.
                self.prefix = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().expect("test address"))
    }

    fn v2(cmd: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | cmd);
        h.push(family);
        h.extend_from_slice(&u16::try_from(body.len()).expect("short").to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    #[test]
    fn v1_tcp4_tcp6_and_unknown() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 1883\r\nMQTT";
        assert_eq!(
            parse(h).expect("valid"),
            Some((h.len() - 4, addr("192.0.2.7:51000")))
        );
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 1883\r\n";
        assert_eq!(
            parse(h).expect("valid"),
            Some((h.len(), addr("[2001:db8::7]:65535")))
        );
        let h = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
        assert_eq!(parse(h).expect("valid"), Some((h.len(), None)));
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").expect("valid"),
            Some((15, None))
        );
    }

    #[test]
    fn v1_incomplete_needs_more() {
        let full = b"PROXY TCP4 192.0.2.7 198.51.100.1 51000 1883\r\n";
        for n in 0..full.len() {
            assert_eq!(
                parse(&full[..n]).expect("prefix is fine"),
                None,
                "{n} bytes"
            );
        }
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 51000\r\n"[..],
            b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
            b"PROXY TCP6 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 65536 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n",
            b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2 3\r\n",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(parse(&long), Err(ProxyError::Malformed(_))));
    }

    #[test]
    fn not_a_proxy_header() {
        // An MQTT CONNECT, a TLS ClientHello, an HTTP request.
        for start in [&[0x10u8, 0x0c, 0x00][..], &[0x16, 0x03, 0x01], b"GET /mqtt"] {
            assert!(matches!(parse(start), Err(ProxyError::Missing)));
        }
        assert!(matches!(parse(b"PROXZ"), Err(ProxyError::Missing)));
    }

    #[test]
    fn v2_inet_inet6_local_and_tlvs() {
        let mut body = vec![192, 0, 2, 7, 198, 51, 100, 1];
        body.extend_from_slice(&51000u16.to_be_bytes());
        body.extend_from_slice(&1883u16.to_be_bytes());
        let h = v2(1, 0x11, &body);
        assert_eq!(
            parse(&h).expect("valid"),
            Some((h.len(), addr("192.0.2.7:51000")))
        );

        let src: Ipv6Addr = "2001:db8::7".parse().expect("ip");
        let mut body = src.octets().to_vec();
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0x1F, 0x90, 0x07, 0x5B]);
        // A TLV (PP2_TYPE_AUTHORITY "x") after the addresses is skipped.
        body.extend_from_slice(&[0x02, 0x00, 0x01, b'x']);
        let mut h = v2(1, 0x21, &body);
        let len = h.len();
        h.extend_from_slice(b"\x10rest");
        assert_eq!(
            parse(&h).expect("valid"),
            Some((len, addr("[2001:db8::7]:8080")))
        );

        let h = v2(0, 0x00, &[]);
        assert_eq!(parse(&h).expect("valid"), Some((16, None)));
        let h = v2(1, 0x31, &[0u8; 216]);
        assert_eq!(parse(&h).expect("valid"), Some((16 + 216, None)));
    }

    #[test]
    fn v2_incomplete_and_malformed() {
        let h = v2(1, 0x11, &[1u8; 12]);
        for n in 0..h.len() {
            assert_eq!(parse(&h[..n]).expect("prefix is fine"), None, "{n} bytes");
        }
        let mut bad_version = h.clone();
        bad_version[12] = 0x11;
        assert!(matches!(parse(&bad_version), Err(ProxyError::Malformed(_))));
        let mut bad_cmd = h.clone();
        bad_cmd[12] = 0x22;
        assert!(matches!(parse(&bad_cmd), Err(ProxyError::Malformed(_))));
        let short = v2(1, 0x11, &[1u8; 4]);
        assert!(matches!(parse(&short), Err(ProxyError::Malformed(_))));
        let short6 = v2(1, 0x21, &[1u8; 12]);
        assert!(matches!(parse(&short6), Err(ProxyError::Malformed(_))));
        let family = v2(1, 0x41, &[1u8; 12]);
        assert!(matches!(parse(&family), Err(ProxyError::Malformed(_))));
    }

    #[tokio::test]
    async fn header_split_across_reads_then_rest_rewound() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for part in [
                &b"PROXY TCP4 192.0."[..],
                b"2.7 198.51.100.1 5",
                b"1000 1883\r\nhello",
            ] {
                client.write_all(part).await.expect("write");
                tokio::task::yield_now().await;
            }
            client
        });
        let (addr, rest) = read_header(&mut server).await.expect("header");
        assert_eq!(addr, "192.0.2.7:51000".parse().ok());
        let _client = writer.await.expect("writer");
        let mut rewound = Rewind::new(rest, server);
        let mut got = [0u8; 5];
        rewound.read_exact(&mut got).await.expect("rest");
        assert_eq!(&got, b"hello");
    }

    #[tokio::test]
    async fn eof_inside_the_header_is_truncated() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut client = client;
        tokio::io::AsyncWriteExt::write_all(&mut client, b"PROXY TCP4 1.2.3.4")
            .await
            .expect("write");
        drop(client);
        assert!(matches!(
            read_header(&mut server).await,
            Err(ProxyError::Truncated)
        ));
    }
}
