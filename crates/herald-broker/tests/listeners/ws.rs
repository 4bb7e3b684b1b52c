//! MQTT over WebSocket with frames written by the test: the upgrade and its
//! subprotocols, packets split across frames and joined in one, ping and
//! close, plain HTTP errors, the address header, and secure WebSocket.

use crate::client::{
    BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, Ws, connect, encode, http, upgrade_request,
};
use crate::pki::{Ca, client_config, tls_connect};
use crate::start;
use herald_broker::Server;
use herald_broker::config::Config;
use herald_broker::metrics::Metrics;
use herald_broker::transport::ListenerKind;
use herald_codec::Packet;
use tokio::net::TcpStream;

fn with_ws(c: &mut Config) {
    c.listener.ws.bind = vec!["127.0.0.1:0".parse().unwrap()];
}

fn ws_addr(server: &Server) -> std::net::SocketAddr {
    server
        .addr_of(ListenerKind::Ws)
        .expect("a WebSocket listener")
}

/// SUBSCRIBE to `t` (packet id 1, QoS 0).
const SUBSCRIBE_T: [u8; 8] = [0x82, 0x06, 0x00, 0x01, 0x00, 0x01, b't', 0x00];
/// PUBLISH "hi" to `t`, QoS 0.
const PUBLISH_T: [u8; 7] = [0x30, 0x05, 0x00, 0x01, b't', b'h', b'i'];

#[tokio::test]
async fn packets_split_across_frames_and_joined_in_one() {
    let (server, mut connected) = start(with_ws).await;
    let tcp = TcpStream::connect(ws_addr(&server)).await.unwrap();
    let mut ws = Ws::open(tcp, "/mqtt", "").await;
    // CONNECT split over three frames: one message of a first fragment and
    // a continuation, then a second message with the rest.
    let connect = connect("ws-1");
    ws.frame(BINARY, false, &connect[..3]).await;
    ws.frame(CONTINUATION, true, &connect[3..7]).await;
    ws.frame(BINARY, true, &connect[7..]).await;
    assert!(matches!(ws.recv().await, Some(Packet::ConnAck(_))));
    let info = connected.next().await;
    assert_eq!(info.listener, ListenerKind::Ws);
    assert_eq!(info.peer.ip().to_string(), "127.0.0.1");
    let metrics = &server.broker.metrics;
    assert_eq!(
        Metrics::get(&metrics.connected_by_listener[ListenerKind::Ws.index()]),
        1
    );

    // SUBSCRIBE, PUBLISH and PINGREQ in one frame: all three answered (the
    // message may come after PINGRESP).
    let joined = [&SUBSCRIBE_T[..], &PUBLISH_T, &encode(&Packet::PingReq)].concat();
    ws.frame(BINARY, true, &joined).await;
    assert!(matches!(ws.recv().await, Some(Packet::SubAck(_))));
    let mut got = Vec::new();
    for _ in 0..2 {
        match ws.recv().await {
            Some(Packet::Publish(p)) => got.push(format!("publish {:?}", p.payload)),
            Some(Packet::PingResp) => got.push("pingresp".into()),
            other => panic!("expected the message and PINGRESP, got {other:?}"),
        }
    }
    got.sort();
    assert_eq!(got, ["pingresp", "publish b\"hi\""]);

    // WebSocket ping gets a pong with the same payload; close gets a close.
    ws.frame(PING, true, b"are you there").await;
    assert_eq!(
        ws.read_frame().await,
        Some((PONG, b"are you there".to_vec()))
    );
    ws.frame(CLOSE, true, &1000u16.to_be_bytes()).await;
    let (opcode, _) = ws.read_frame().await.expect("a close frame back");
    assert_eq!(opcode, CLOSE);
    assert_eq!(ws.read_frame().await, None, "then the connection ends");
    server.shutdown().await;
}

#[tokio::test]
async fn subprotocol_answered_as_asked() {
    let (server, _connected) = start(with_ws).await;
    for (offered, answered) in [
        ("mqtt", Some("mqtt")),
        ("mqttv3.1", Some("mqttv3.1")),
        ("foo, mqttv3.1, mqtt", Some("mqttv3.1")),
        ("", None),
    ] {
        let mut tcp = TcpStream::connect(ws_addr(&server)).await.unwrap();
        let (head, _) = http(&mut tcp, &upgrade_request("/mqtt", offered, "")).await;
        assert!(head.starts_with("HTTP/1.1 101 "), "{offered}: {head}");
        match answered {
            Some(p) => assert!(
                head.contains(&format!("Sec-WebSocket-Protocol: {p}\r\n")),
                "{head}"
            ),
            None => assert!(!head.contains("Sec-WebSocket-Protocol"), "{head}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn wrong_path_missing_upgrade_and_bad_requests_get_http_errors() {
    let (server, mut connected) = start(with_ws).await;
    let cases = [
        (upgrade_request("/other", "mqtt", ""), "404"),
        (
            "GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n".to_owned(),
            "426",
        ),
        (upgrade_request("/mqtt", "chat", ""), "400"),
        (
            upgrade_request("/mqtt", "mqtt", "").replace("GET", "POST"),
            "405",
        ),
        (
            upgrade_request("/mqtt", "mqtt", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "short"),
            "400",
        ),
    ];
    for (request, status) in cases {
        let mut tcp = TcpStream::connect(ws_addr(&server)).await.unwrap();
        let (head, _) = http(&mut tcp, &request).await;
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status} ")),
            "{request}: {head}"
        );
        assert!(crate::client::closed_without_packet(&mut tcp).await);
    }
    // MQTT straight onto the WebSocket port is not an HTTP request.
    let mut tcp = TcpStream::connect(ws_addr(&server)).await.unwrap();
    let (head, _) = http(&mut tcp, &String::from_utf8_lossy(&connect("raw"))).await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(connected.none_yet());
    let errors = &server.broker.metrics.handshake_errors[ListenerKind::Ws.index()];
    crate::eventually("six refusals counted", || Metrics::get(errors) == 6).await;
    server.shutdown().await;
}

#[tokio::test]
async fn text_frames_close_the_connection() {
    let (server, _connected) = start(with_ws).await;
    let tcp = TcpStream::connect(ws_addr(&server)).await.unwrap();
    let mut ws = Ws::open(tcp, "/mqtt", "").await;
    ws.frame(BINARY, true, &connect("texter")).await;
    assert!(matches!(ws.recv().await, Some(Packet::ConnAck(_))));
    ws.frame(TEXT, true, b"hello").await;
    assert_eq!(ws.recv().await, None);
    server.shutdown().await;
}

/// After a DISCONNECT the broker sends its Close frame and then waits for
/// the client's Close reply before it drops the socket, so a client
/// answering the closing handshake never writes to a closed socket (MQTT.js
/// reported EPIPE).
#[tokio::test]
async fn close_waits_for_the_clients_close_reply() {
    let (server, _connected) = start(with_ws).await;
    let tcp = TcpStream::connect(ws_addr(&server)).await.unwrap();
    let mut ws = Ws::open(tcp, "/mqtt", "").await;
    ws.frame(BINARY, true, &connect("closer")).await;
    assert!(matches!(ws.recv().await, Some(Packet::ConnAck(_))));
    ws.frame(BINARY, true, &[0xE0, 0x00]).await;
    loop {
        match ws.read_frame().await {
            Some((CLOSE, _)) => break,
            Some(_) => continue,
            None => panic!("the socket closed without a Close frame"),
        }
    }
    // Still open: nothing more comes, and no end of stream, while the
    // broker waits for our reply (it gives up after a second).
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), ws.read_frame()).await;
    assert!(
        early.is_err(),
        "the broker did not wait for the Close reply: {early:?}"
    );
    ws.frame(CLOSE, true, &[0x03, 0xE8]).await;
    assert_eq!(ws.read_frame().await, None);
    server.shutdown().await;
}

#[tokio::test]
async fn address_header_gives_the_client_address() {
    let (server, mut connected) = start(|c| {
        with_ws(c);
        c.listener.ws.proxy_address_header = "X-Forwarded-For".into();
    })
    .await;
    let tcp = TcpStream::connect(ws_addr(&server)).await.unwrap();
    let mut ws = Ws::open(tcp, "/mqtt", "x-forwarded-for: 203.0.113.9, 10.0.0.1\r\n").await;
    ws.frame(BINARY, true, &connect("forwarded")).await;
    assert!(matches!(ws.recv().await, Some(Packet::ConnAck(_))));
    assert_eq!(connected.next().await.peer.ip().to_string(), "203.0.113.9");
    // Without the header, the socket's address stays.
    let tcp = TcpStream::connect(ws_addr(&server)).await.unwrap();
    let mut ws = Ws::open(tcp, "/mqtt", "").await;
    ws.frame(BINARY, true, &connect("direct")).await;
    assert!(matches!(ws.recv().await, Some(Packet::ConnAck(_))));
    assert_eq!(connected.next().await.peer.ip().to_string(), "127.0.0.1");
    server.shutdown().await;
}

#[tokio::test]
async fn secure_websocket_with_the_tls_settings() {
    let ca = Ca::new("wss");
    let cert = ca.server("server");
    let (server, mut connected) = start(|c| {
        c.listener.tls.certfile = cert.cert_file.clone().into();
        c.listener.tls.keyfile = cert.key_file.clone().into();
        c.listener.wss.bind = vec!["127.0.0.1:0".parse().unwrap()];
        c.listener.wss.path = "/secure".into();
    })
    .await;
    assert_eq!(server.addr_of(ListenerKind::Tls), None, "tls.bind is empty");
    let addr = server.addr_of(ListenerKind::Wss).expect("wss listener");
    let tls = tls_connect(addr, client_config(&ca, None, &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut ws = Ws::open(tls, "/secure", "").await;
    let connect = connect("wss-1");
    ws.frame(BINARY, true, &connect[..5]).await;
    ws.frame(BINARY, true, &connect[5..]).await;
    assert!(matches!(ws.recv().await, Some(Packet::ConnAck(_))));
    assert_eq!(connected.next().await.listener, ListenerKind::Wss);
    ws.frame(BINARY, true, &[&SUBSCRIBE_T[..], &PUBLISH_T].concat())
        .await;
    assert!(matches!(ws.recv().await, Some(Packet::SubAck(_))));
    assert!(matches!(ws.recv().await, Some(Packet::Publish(_))));
    server.shutdown().await;
}
