//! MQTT over WebSocket with an independent client stack: rumqttc's
//! `websocket` feature (async-tungstenite), MQTT 3.1.1 and 5.0, over ws and
//! over wss with a rustls configuration trusting the test's CA. Each client
//! subscribes to `t/#` and publishes a QoS 0 and a QoS 1 message that come
//! back to it through the broker.

use crate::client::WAIT;
use crate::pki::{Ca, client_config};
use crate::{Connected, start};
use herald_broker::Server;
use herald_broker::config::Config;
use herald_broker::transport::ListenerKind;
use rumqttc::{TlsConfiguration, Transport};

/// The messages each round trip publishes and must get back, in order.
const SENT: [(&str, u8, &[u8]); 2] = [("t/0", 0, b"qos 0"), ("t/1", 1, b"qos 1")];

/// A broker with a ws listener on `/mqtt` and a wss listener (the TLS
/// settings with `ca`'s server certificate) on `/mqtt`.
async fn start_ws_and_wss(ca: &Ca) -> (Server, Connected) {
    let cert = ca.server("server");
    start(move |c: &mut Config| {
        c.listener.ws.bind = vec!["127.0.0.1:0".parse().unwrap()];
        c.listener.wss.bind = vec!["127.0.0.1:0".parse().unwrap()];
        c.listener.tls.certfile = cert.cert_file.into();
        c.listener.tls.keyfile = cert.key_file.into();
    })
    .await
}

fn url(server: &Server, kind: ListenerKind, path: &str) -> String {
    let addr = server.addr_of(kind).expect("listener bound");
    let scheme = if kind == ListenerKind::Wss {
        "wss"
    } else {
        "ws"
    };
    format!("{scheme}://{addr}{path}")
}

/// rumqttc's transport for `kind`; wss trusts `ca`.
fn transport(kind: ListenerKind, ca: &Ca) -> Transport {
    match kind {
        ListenerKind::Wss => Transport::wss_with_config(TlsConfiguration::Rustls(client_config(
            ca,
            None,
            &[b"http/1.1"],
        ))),
        _ => Transport::Ws,
    }
}

/// Defines `async fn $name(url, transport)`: a rumqttc client (`$client`
/// is `rumqttc` for 3.1.1 or `rumqttc::v5` for 5.0; `$packets` and `$qos`
/// where that flavour keeps its packet and QoS types: same shapes, not the
/// same types) CONNECTs to `url` over `transport`, SUBSCRIBEs to `t/#` at
/// QoS 1 and PUBLISHes [`SENT`]; the result is the messages it received
/// (topic, QoS, payload) once its QoS 1 publish is acknowledged, or the
/// connection's error.
macro_rules! round_trip {
    ($name:ident, $id:literal, [$($client:tt)*], [$($packets:tt)*], [$($qos:tt)*]) => {
        async fn $name(
            url: &str,
            transport: Transport,
        ) -> Result<Vec<(String, u8, Vec<u8>)>, $($client)*::ConnectionError> {
            use $($client)*::{AsyncClient, Event, MqttOptions};
            use $($packets)*::{Packet, SubscribeReasonCode};
            use $($qos)*::QoS;
            let mut opts = MqttOptions::new($id, url, 0);
            opts.set_transport(transport);
            let (client, mut events) = AsyncClient::new(opts, 10);
            let mut next = async || loop {
                match tokio::time::timeout(WAIT, events.poll()).await {
                    Ok(Ok(Event::Incoming(p))) => return Ok(p),
                    Ok(Ok(Event::Outgoing(_))) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => panic!("no event from the broker within the wait"),
                }
            };
            assert!(matches!(next().await?, Packet::ConnAck(_)));
            client.subscribe("t/#", QoS::AtLeastOnce).await.unwrap();
            match next().await? {
                Packet::SubAck(ack) => assert_eq!(
                    ack.return_codes,
                    [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
                ),
                other => panic!("expected SUBACK, got {other:?}"),
            }
            for (topic, qos, payload) in SENT {
                let qos = [QoS::AtMostOnce, QoS::AtLeastOnce][usize::from(qos)];
                client.publish(topic, qos, false, payload).await.unwrap();
            }
            let (mut got, mut acked) = (Vec::new(), false);
            while got.len() < SENT.len() || !acked {
                match next().await? {
                    Packet::Publish(p) => {
                        let topic = AsRef::<[u8]>::as_ref(&p.topic).to_vec();
                        let topic = String::from_utf8(topic).unwrap();
                        got.push((topic, p.qos as u8, p.payload.to_vec()))
                    }
                    Packet::PubAck(_) => acked = true,
                    other => panic!("unexpected {other:?}"),
                }
            }
            client.disconnect().await.unwrap();
            Ok(got)
        }
    };
}

round_trip!(
    round_trip_v311,
    "rumqttc-ws-311",
    [rumqttc],
    [rumqttc],
    [rumqttc]
);
round_trip!(
    round_trip_v5,
    "rumqttc-ws-5",
    [rumqttc::v5],
    [rumqttc::v5::mqttbytes::v5],
    [rumqttc::v5::mqttbytes]
);

fn sent() -> Vec<(String, u8, Vec<u8>)> {
    SENT.iter()
        .map(|(t, q, p)| (t.to_string(), *q, p.to_vec()))
        .collect()
}

#[tokio::test]
async fn rumqttc_311_and_5_over_ws_and_wss_get_their_own_messages() {
    let ca = Ca::new("rumqttc-ws");
    let (server, mut connected) = start_ws_and_wss(&ca).await;
    for kind in [ListenerKind::Ws, ListenerKind::Wss] {
        let url = url(&server, kind, "/mqtt");
        let got = round_trip_v311(&url, transport(kind, &ca)).await;
        assert_eq!(got.unwrap(), sent(), "3.1.1 over {url}");
        let info = connected.next().await;
        assert_eq!((info.listener, info.proto_ver()), (kind, 4), "{url}");

        let got = round_trip_v5(&url, transport(kind, &ca)).await;
        assert_eq!(got.unwrap(), sent(), "5.0 over {url}");
        let info = connected.next().await;
        assert_eq!((info.listener, info.proto_ver()), (kind, 5), "{url}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn rumqttc_ws_wrong_path_and_wss_foreign_ca_are_refused() {
    let ca = Ca::new("rumqttc-ws-refused");
    let (server, mut connected) = start_ws_and_wss(&ca).await;
    for kind in [ListenerKind::Ws, ListenerKind::Wss] {
        let url = url(&server, kind, "/other");
        let err = round_trip_v311(&url, transport(kind, &ca))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("404 Not Found"),
            "3.1.1 {url}: {err}"
        );
        let err = round_trip_v5(&url, transport(kind, &ca)).await.unwrap_err();
        assert!(
            err.to_string().contains("404 Not Found"),
            "5.0 {url}: {err}"
        );
    }
    // A server certificate from a CA the client does not trust.
    let foreign = Ca::new("rumqttc-ws-foreign");
    let url = url(&server, ListenerKind::Wss, "/mqtt");
    let err = round_trip_v311(&url, transport(ListenerKind::Wss, &foreign))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "3.1.1: {err}");
    let err = round_trip_v5(&url, transport(ListenerKind::Wss, &foreign))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "5.0: {err}");
    assert!(connected.none_yet(), "no refused client got in");
    server.shutdown().await;
}
