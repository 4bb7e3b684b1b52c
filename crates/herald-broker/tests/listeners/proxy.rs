//! PROXY protocol v1 and v2 headers written by the test: the carried
//! address becomes the client's; a connection without one is refused.
//! Also dual-stack binding.

use crate::client::{closed_without_packet, connect, recv};
use crate::start;
use bytes::BytesMut;
use herald_broker::transport::ListenerKind;
use herald_codec::Packet;
use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A v2 header for a TCP over IPv4 connection from `src`.
fn v2_inet(src: SocketAddr) -> Vec<u8> {
    let SocketAddr::V4(src) = src else {
        panic!("IPv4 only")
    };
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0x00, 12]);
    h.extend_from_slice(&src.ip().octets());
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&src.port().to_be_bytes());
    h.extend_from_slice(&1883u16.to_be_bytes());
    h
}

#[tokio::test]
async fn carried_address_becomes_the_clients_and_headerless_connections_are_refused() {
    let (server, mut connected) = start(|c| c.listener.proxy_protocol = true).await;
    let addr = server.local_addrs[0];
    let v1 = b"PROXY TCP4 198.51.100.7 127.0.0.1 40001 1883\r\n".to_vec();
    let v1_6 = b"PROXY TCP6 2001:db8::7 ::1 40002 1883\r\n".to_vec();
    let v2 = v2_inet("192.0.2.33:40003".parse().unwrap());
    for (header, expected, id) in [
        (v1, "198.51.100.7:40001", "v1"),
        (v1_6, "[2001:db8::7]:40002", "v1-6"),
        (v2, "192.0.2.33:40003", "v2"),
    ] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // Header and CONNECT in one write, as a balancer forwards them.
        tcp.write_all(&[header, connect(id)].concat())
            .await
            .unwrap();
        let mut buf = BytesMut::new();
        assert!(matches!(
            recv(&mut tcp, &mut buf).await,
            Some(Packet::ConnAck(_))
        ));
        let info = connected.next().await;
        assert_eq!(info.peer, expected.parse::<SocketAddr>().unwrap(), "{id}");
        assert_eq!(info.listener, ListenerKind::Tcp);
    }
    // `PROXY UNKNOWN` (a health check) keeps the socket's address.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&[b"PROXY UNKNOWN\r\n".to_vec(), connect("unknown")].concat())
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    assert!(matches!(
        recv(&mut tcp, &mut buf).await,
        Some(Packet::ConnAck(_))
    ));
    assert_eq!(connected.next().await.peer.ip().to_string(), "127.0.0.1");

    // No header, or a broken one: closed without an answer.
    for start in [connect("plain"), b"PROXY TCP4 nonsense\r\n".to_vec()] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(&start).await.unwrap();
        assert!(closed_without_packet(&mut tcp).await);
    }
    assert!(connected.none_yet());
    server.shutdown().await;
}

#[tokio::test]
async fn proxy_header_in_front_of_websocket() {
    let (server, mut connected) = start(|c| {
        c.listener.ws.bind = vec!["127.0.0.1:0".parse().unwrap()];
        c.listener.ws.proxy_protocol = true;
    })
    .await;
    let mut tcp = TcpStream::connect(server.addr_of(ListenerKind::Ws).unwrap())
        .await
        .unwrap();
    tcp.write_all(&v2_inet("192.0.2.44:1234".parse().unwrap()))
        .await
        .unwrap();
    let mut ws = crate::client::Ws::open(tcp, "/mqtt", "").await;
    ws.frame(crate::client::BINARY, true, &connect("ws-proxied"))
        .await;
    assert!(matches!(ws.recv().await, Some(Packet::ConnAck(_))));
    assert_eq!(
        connected.next().await.peer,
        "192.0.2.44:1234".parse().unwrap()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn ipv6_wildcard_accepts_ipv4_and_ipv6() {
    // Skip where the machine has no IPv6 loopback.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    }
    let (server, mut connected) =
        start(|c| c.listener.bind = vec!["[::]:0".parse().unwrap()]).await;
    let port = server.local_addrs[0].port();
    for (addr, id, ip) in [("127.0.0.1", "v4", "127.0.0.1"), ("::1", "v6", "::1")] {
        let mut tcp = TcpStream::connect((addr, port)).await.unwrap();
        tcp.write_all(&connect(id)).await.unwrap();
        let mut buf = BytesMut::new();
        assert!(matches!(
            recv(&mut tcp, &mut buf).await,
            Some(Packet::ConnAck(_))
        ));
        // An IPv4-mapped peer is reported as plain IPv4.
        assert_eq!(connected.next().await.peer.ip().to_string(), ip);
    }
    server.shutdown().await;
}
