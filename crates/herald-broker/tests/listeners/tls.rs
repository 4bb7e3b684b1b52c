//! MQTT over TLS: rumqttc with rustls, mutual TLS with the certificate's
//! names as user name, refused client certificates, bad files, TLS
//! versions and ALPN, certificate reload.

use crate::client::{closed_without_packet, connect, encode, recv};
use crate::pki::{Ca, Issued, client_config, tls_connect};
use crate::start;
use bytes::BytesMut;
use herald_broker::config::{Config, PeerCertAsUsername};
use herald_broker::metrics::Metrics;
use herald_broker::transport::ListenerKind;
use herald_broker::{ServeError, Server};
use herald_codec::Packet;
use rcgen::DnType;
use rumqttc::{AsyncClient, Event, MqttOptions, QoS, TlsConfiguration, Transport};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio_rustls::rustls;

/// TLS on an ephemeral port with `server`'s certificate.
fn with_tls(server: &Issued) -> impl FnOnce(&mut Config) + use<> {
    let (cert, key) = (server.cert_file.clone(), server.key_file.clone());
    move |c: &mut Config| {
        c.listener.tls.bind = vec!["127.0.0.1:0".parse().unwrap()];
        c.listener.tls.certfile = cert.into();
        c.listener.tls.keyfile = key.into();
    }
}

fn tls_addr(server: &Server) -> std::net::SocketAddr {
    server.addr_of(ListenerKind::Tls).expect("a TLS listener")
}

/// Connects rumqttc over TLS and waits for CONNACK.
async fn rumqttc_tls(
    server: &Server,
    id: &str,
    tls: Arc<rustls::ClientConfig>,
    user: Option<&str>,
) -> (AsyncClient, rumqttc::EventLoop) {
    let mut opts = MqttOptions::new(id, "localhost", tls_addr(server).port());
    opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    if let Some(user) = user {
        opts.set_credentials(user, "pw");
    }
    let (client, mut events) = AsyncClient::new(opts, 10);
    loop {
        match tokio::time::timeout(crate::client::WAIT, events.poll()).await {
            Ok(Ok(Event::Incoming(rumqttc::Packet::ConnAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("no CONNACK over TLS: {other:?}"),
        }
    }
    (client, events)
}

#[tokio::test]
async fn rumqttc_over_tls_subscribes_and_receives() {
    let ca = Ca::new("tls-basic");
    let (server, mut connected) = start(with_tls(&ca.server("server"))).await;
    let tls = client_config(&ca, None, &[b"mqtt"]);
    let (client, mut events) = rumqttc_tls(&server, "tls-1", tls, None).await;
    let info = connected.next().await;
    assert_eq!(info.listener, ListenerKind::Tls);
    assert!(info.cert.is_none());
    assert_eq!(info.peer.ip().to_string(), "127.0.0.1");
    let by_listener = &server.broker.metrics.connected_by_listener;
    assert_eq!(Metrics::get(&by_listener[ListenerKind::Tls.index()]), 1);
    assert_eq!(Metrics::get(&by_listener[ListenerKind::Tcp.index()]), 0);

    client.subscribe("t/#", QoS::AtLeastOnce).await.unwrap();
    client
        .publish("t/1", QoS::AtLeastOnce, false, "over tls")
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(crate::client::WAIT, events.poll()).await {
            Ok(Ok(Event::Incoming(rumqttc::Packet::Publish(p)))) => {
                assert_eq!(&p.payload[..], b"over tls");
                break;
            }
            Ok(Ok(_)) => {}
            other => panic!("no message back: {other:?}"),
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn tls_1_2_and_1_3_with_alpn_mqtt() {
    let ca = Ca::new("tls-versions");
    let (server, _connected) = start(with_tls(&ca.server("server"))).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"mqtt".to_vec()];
        let mut tls = tls_connect(tls_addr(&server), Arc::new(config))
            .await
            .expect("handshake");
        let session = tls.get_ref().1;
        assert_eq!(session.protocol_version(), Some(version.version));
        assert_eq!(session.alpn_protocol(), Some(&b"mqtt"[..]));
        tls.write_all(&connect("versions")).await.unwrap();
        let mut buf = BytesMut::new();
        assert!(matches!(
            recv(&mut tls, &mut buf).await,
            Some(Packet::ConnAck(_))
        ));
    }
    server.shutdown().await;
}

/// Mutual TLS: a broker that requires client certificates of `ca`.
fn with_mutual_tls(
    ca: &Ca,
    name: &str,
    as_username: PeerCertAsUsername,
) -> impl FnOnce(&mut Config) + use<> {
    let tls = with_tls(&ca.server("server"));
    let ca_file = ca.ca_file(name);
    move |c: &mut Config| {
        tls(c);
        c.listener.tls.cacertfile = ca_file.into();
        c.listener.tls.verify_peer = true;
        c.listener.tls.fail_if_no_peer_cert = true;
        c.listener.tls.peer_cert_as_username = as_username;
    }
}

#[tokio::test]
async fn client_certificate_common_name_becomes_the_user_name() {
    let ca = Ca::new("mtls-cn");
    let (server, mut connected) =
        start(with_mutual_tls(&ca, "mtls-cn", PeerCertAsUsername::Cn)).await;
    let dev = ca.client(
        "dev1",
        &[
            (DnType::OrganizationName, "Acme, Inc."),
            (DnType::CommonName, "dev1"),
        ],
        false,
    );
    let tls = client_config(&ca, Some(&dev), &[b"mqtt"]);
    let (_client, _events) = rumqttc_tls(&server, "m-1", tls, Some("someone-else")).await;
    let info = connected.next().await;
    assert_eq!(info.username.as_deref(), Some("dev1"));
    let cert = info.cert.expect("the certificate's names are kept");
    assert_eq!(cert.cn.as_deref(), Some("dev1"));
    assert_eq!(
        cert.dn, "O=Acme\\, Inc.,CN=dev1",
        "as openssl -nameopt RFC2253 prints it"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn client_certificate_distinguished_name_becomes_the_user_name() {
    let ca = Ca::new("mtls-dn");
    let (server, mut connected) =
        start(with_mutual_tls(&ca, "mtls-dn", PeerCertAsUsername::Dn)).await;
    let dev = ca.client(
        "dev2",
        &[
            (DnType::CountryName, "SE"),
            (DnType::OrganizationName, "Acme"),
            (DnType::CommonName, "dev2"),
        ],
        false,
    );
    let tls = client_config(&ca, Some(&dev), &[b"mqtt"]);
    let (_client, _events) = rumqttc_tls(&server, "m-2", tls, None).await;
    let info = connected.next().await;
    assert_eq!(info.username.as_deref(), Some("O=Acme,C=SE,CN=dev2"));
    server.shutdown().await;
}

/// Connects with `tls`, sends CONNECT, and tells whether the broker
/// refused (closed without CONNACK, or the handshake failed).
async fn refused(server: &Server, tls: Arc<rustls::ClientConfig>) -> bool {
    let Ok(mut stream) = tls_connect(tls_addr(server), tls).await else {
        return true;
    };
    if stream.write_all(&connect("refused?")).await.is_err() {
        return true;
    }
    closed_without_packet(&mut stream).await
}

#[tokio::test]
async fn missing_expired_and_foreign_client_certificates_are_refused() {
    let ca = Ca::new("mtls-refuse");
    let (server, mut connected) =
        start(with_mutual_tls(&ca, "mtls-refuse", PeerCertAsUsername::No)).await;
    let other = Ca::in_dir(&ca.dir, "other");
    let expired = ca.client("old", &[(DnType::CommonName, "old")], true);
    let foreign = other.client("foreign", &[(DnType::CommonName, "foreign")], false);
    let good = ca.client("good", &[(DnType::CommonName, "good")], false);
    let errors =
        || Metrics::get(&server.broker.metrics.handshake_errors[ListenerKind::Tls.index()]);
    for (what, cert) in [
        ("no", None),
        ("an expired", Some(&expired)),
        ("another CA's", Some(&foreign)),
    ] {
        let before = errors();
        assert!(
            refused(&server, client_config(&ca, cert, &[b"mqtt"])).await,
            "{what} certificate must be refused"
        );
        crate::eventually("handshake error counted", || errors() > before).await;
    }
    assert!(connected.none_yet());
    // The same broker lets a good certificate in.
    assert!(!refused(&server, client_config(&ca, Some(&good), &[b"mqtt"])).await);
    assert_eq!(
        connected
            .next()
            .await
            .cert
            .and_then(|c| c.cn.clone())
            .as_deref(),
        Some("good")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn optional_client_certificate_lets_clients_without_one_in() {
    let ca = Ca::new("mtls-optional");
    let base = with_mutual_tls(&ca, "mtls-optional", PeerCertAsUsername::No);
    let (server, mut connected) = start(|c| {
        base(c);
        c.listener.tls.fail_if_no_peer_cert = false;
    })
    .await;
    assert!(!refused(&server, client_config(&ca, None, &[b"mqtt"])).await);
    assert!(connected.next().await.cert.is_none());
    let expired = ca.client("old", &[(DnType::CommonName, "old")], true);
    assert!(refused(&server, client_config(&ca, Some(&expired), &[b"mqtt"])).await);
    server.shutdown().await;
}

/// Starting with `edit` fails; the error's text.
async fn start_error(edit: impl FnOnce(&mut Config)) -> String {
    let mut config = Config::default();
    config.listener.bind = vec!["127.0.0.1:0".parse().unwrap()];
    edit(&mut config);
    match herald_broker::start(config).await {
        Ok(_) => panic!("the broker must not start"),
        Err(e @ (ServeError::Tls(_) | ServeError::Config(_))) => e.to_string(),
        Err(other) => panic!("unexpected error: {other}"),
    }
}

#[tokio::test]
async fn bad_or_missing_files_stop_start_up_naming_key_and_file() {
    let ca = Ca::new("bad-files");
    let server = ca.server("server");
    let other = ca.server("other");
    let garbage = ca.dir.join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").unwrap();
    let missing = ca.dir.join("missing.pem");

    let err = start_error(|c| {
        with_tls(&server)(c);
        c.listener.tls.certfile = missing.clone().into();
    })
    .await;
    assert!(
        err.contains("listener.tls.certfile")
            && err.contains("missing.pem")
            && err.contains("cannot read"),
        "{err}"
    );

    let err = start_error(|c| {
        with_tls(&server)(c);
        c.listener.tls.keyfile = garbage.clone().into();
    })
    .await;
    assert!(
        err.contains("listener.tls.keyfile") && err.contains("garbage.pem"),
        "{err}"
    );

    let err = start_error(|c| {
        with_tls(&server)(c);
        c.listener.tls.certfile = garbage.clone().into();
    })
    .await;
    assert!(
        err.contains("listener.tls.certfile") && err.contains("no PEM certificate"),
        "{err}"
    );

    let err = start_error(|c| {
        with_tls(&server)(c);
        c.listener.tls.keyfile = other.key_file.clone().into();
    })
    .await;
    assert!(
        err.contains("listener.tls.keyfile") && err.contains("does not fit"),
        "{err}"
    );

    let err = start_error(|c| {
        with_tls(&server)(c);
        c.listener.tls.verify_peer = true;
        c.listener.tls.cacertfile = garbage.clone().into();
    })
    .await;
    assert!(
        err.contains("listener.tls.cacertfile") && err.contains("garbage.pem"),
        "{err}"
    );

    let err = start_error(|c| c.listener.tls.bind = vec!["127.0.0.1:0".parse().unwrap()]).await;
    assert!(
        err.contains("listener.tls.certfile") && err.contains("required"),
        "{err}"
    );

    // wss takes tls's files unless it names its own, and says which it used.
    let err = start_error(|c| {
        c.listener.tls.certfile = server.cert_file.clone().into();
        c.listener.tls.keyfile = server.key_file.clone().into();
        c.listener.wss.bind = vec!["127.0.0.1:0".parse().unwrap()];
        c.listener.wss.keyfile = Some(garbage.clone().into());
    })
    .await;
    assert!(
        err.contains("listener.wss.keyfile") && err.contains("garbage.pem"),
        "{err}"
    );
}

#[tokio::test]
async fn reload_gives_new_connections_the_new_certificate_and_keeps_old_ones() {
    let ca = Ca::new("reload");
    let first = ca.server("first");
    let second = ca.server("second");
    let live = ca.server("live");
    std::fs::copy(&first.cert_file, &live.cert_file).unwrap();
    std::fs::copy(&first.key_file, &live.key_file).unwrap();
    let (server, _connected) = start(with_tls(&live)).await;
    let config = client_config(&ca, None, &[b"mqtt"]);
    let presented = |s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        s.get_ref().1.peer_certificates().unwrap()[0].clone()
    };

    let mut old = tls_connect(tls_addr(&server), config.clone())
        .await
        .unwrap();
    assert_eq!(presented(&old), first.cert);
    old.write_all(&connect("old")).await.unwrap();
    let mut buf = BytesMut::new();
    assert!(matches!(
        recv(&mut old, &mut buf).await,
        Some(Packet::ConnAck(_))
    ));

    std::fs::copy(&second.cert_file, &live.cert_file).unwrap();
    std::fs::copy(&second.key_file, &live.key_file).unwrap();
    server.reload_certificates().expect("reload");
    let new = tls_connect(tls_addr(&server), config.clone())
        .await
        .unwrap();
    assert_eq!(presented(&new), second.cert);

    // A broken file on reload: an error, and the last good ones stay.
    std::fs::write(&live.key_file, "broken").unwrap();
    let err = server.reload_certificates().expect_err("broken key");
    assert!(err.to_string().contains("listener.tls.keyfile"), "{err}");
    let again = tls_connect(tls_addr(&server), config).await.unwrap();
    assert_eq!(presented(&again), second.cert);

    // The connection from before the reload still works.
    old.write_all(&encode(&Packet::PingReq)).await.unwrap();
    assert!(matches!(
        recv(&mut old, &mut buf).await,
        Some(Packet::PingResp)
    ));
    server.shutdown().await;
}

/// With `listener.certificate_check_interval`, changed files are picked up
/// without SIGHUP: new connections get the new certificate.
#[tokio::test]
async fn changed_certificate_files_are_reloaded_without_a_signal() {
    let ca = Ca::new("watch");
    let first = ca.server("first");
    let second = ca.server("second");
    let live = ca.server("live");
    std::fs::copy(&first.cert_file, &live.cert_file).unwrap();
    std::fs::copy(&first.key_file, &live.key_file).unwrap();
    let tls = with_tls(&live);
    let (server, _connected) = start(|c| {
        tls(c);
        c.listener.certificate_check_interval = 1;
    })
    .await;
    let config = client_config(&ca, None, &[b"mqtt"]);
    let presented = |s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        s.get_ref().1.peer_certificates().unwrap()[0].clone()
    };
    let before = tls_connect(tls_addr(&server), config.clone())
        .await
        .unwrap();
    assert_eq!(presented(&before), first.cert);

    std::fs::copy(&second.cert_file, &live.cert_file).unwrap();
    std::fs::copy(&second.key_file, &live.key_file).unwrap();
    // The watcher looks every second; poll with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let s = tls_connect(tls_addr(&server), config.clone())
            .await
            .unwrap();
        if presented(&s) == second.cert {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the changed files were not reloaded"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Nothing changed since: nothing to reload.
    let certificates = server.certificates();
    let (tried, result) = tokio::task::spawn_blocking(move || certificates.reload_changed())
        .await
        .unwrap();
    assert_eq!(tried, 0);
    assert!(result.is_ok());
    server.shutdown().await;
}

#[tokio::test]
async fn a_stalled_handshake_blocks_no_one_and_ends_at_the_connect_timeout() {
    let ca = Ca::new("stalled");
    let tls = with_tls(&ca.server("server"));
    let (server, mut connected) = start(|c| {
        tls(c);
        c.listener.connect_timeout = 1;
    })
    .await;
    // Connects and never starts the handshake.
    let mut stalled = tokio::net::TcpStream::connect(tls_addr(&server))
        .await
        .unwrap();
    let since = tokio::time::Instant::now();
    // Meanwhile another client gets through.
    let config = client_config(&ca, None, &[b"mqtt"]);
    let (_client, _events) = rumqttc_tls(&server, "not-blocked", config, None).await;
    assert_eq!(connected.next().await.client_id.as_str(), "not-blocked");
    assert!(closed_without_packet(&mut stalled).await);
    let waited = since.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    let errors = &server.broker.metrics.handshake_errors[ListenerKind::Tls.index()];
    crate::eventually("timeout counted", || Metrics::get(errors) == 1).await;
    server.shutdown().await;
}
