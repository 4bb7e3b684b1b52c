//! The WebHook over HTTPS against a real rustls web service, with
//! certificates made in the test (rcgen): a CA file, mutual TLS,
//! `ssl.verify = false`, and the SNI name overridden or disabled.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

mod harness;

use harness::{Flow, Handshake, Mqtt5, Pki, Profile, Sink, full_flow, options5, server_tls, start};

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

#[tokio::test]
async fn full_flow_over_https_with_a_ca_file() {
    let pki = Pki::new("ca-file");
    let server = pki.issue("server", &["127.0.0.1"], false);
    let mut sink = Sink::https("127.0.0.1:0", server_tls(&server, None)).await;
    let extra = format!(
        "web.hook.ssl.cacertfile = {}\n{}{}",
        path(&pki.ca_file()),
        Profile::V40.conf(),
        harness::ALL_RULES
    );
    let hooked = start(
        &format!("{}/tls", sink.base("https")),
        &extra,
        |_| {},
        |_| {},
    )
    .await;
    let flow = Flow {
        profile: Profile::V40,
        username: None,
        ip: "127.0.0.1",
        path: "/tls".into(),
    };
    let got = full_flow(&hooked, &mut sink, &flow).await;
    // An IP address is not sent as SNI; no client certificate was asked.
    assert_eq!(got[0].sni, None);
    assert!(!got[0].client_cert);
    hooked.stop().await;
}

#[tokio::test]
async fn full_flow_over_mutual_tls_with_a_client_certificate() {
    let pki = Pki::new("mutual");
    let server = pki.issue("server", &["localhost"], false);
    let client = pki.issue("client", &["herald"], true);
    let mut sink = Sink::https("127.0.0.1:0", server_tls(&server, Some(&pki))).await;
    // `localhost` is resolved and checked against the certificate; the
    // old key name `cafile` works as `cacertfile`.
    let url = format!("https://localhost:{}/mtls", sink.addr.port());
    let extra = format!(
        "web.hook.ssl.cafile = {}\nweb.hook.ssl.certfile = {}\nweb.hook.ssl.keyfile = {}\n{}{}",
        path(&pki.ca_file()),
        path(&client.cert_file),
        path(&client.key_file),
        Profile::V44.conf(),
        harness::ALL_RULES
    );
    let hooked = start(&url, &extra, |_| {}, |_| {}).await;
    let flow = Flow {
        profile: Profile::V44,
        username: Some("alice"),
        ip: "127.0.0.1",
        path: "/mtls".into(),
    };
    let got = full_flow(&hooked, &mut sink, &flow).await;
    assert!(got.iter().all(|g| g.client_cert), "client certificate sent");
    assert_eq!(got[0].sni.as_deref(), Some("localhost"));
    hooked.stop().await;
}

#[tokio::test]
async fn mutual_tls_without_a_client_certificate_is_refused_by_the_server() {
    let pki = Pki::new("mutual-missing");
    let server = pki.issue("server", &["127.0.0.1"], false);
    let mut sink = Sink::https("127.0.0.1:0", server_tls(&server, Some(&pki))).await;
    let extra = format!(
        "web.hook.ssl.cacertfile = {}\n\
         web.hook.rule.client.connect.1 = {{\"action\": \"on_client_connect\"}}\n",
        path(&pki.ca_file())
    );
    let hooked = start(&sink.base("https"), &extra, |_| {}, |_| {}).await;
    let _c = Mqtt5::connect(options5(hooked.mqtt(), "c1")).await;
    match sink.handshake().await {
        Handshake::Failed(why) => assert!(why.to_lowercase().contains("certificate"), "{why}"),
        done => panic!("handshake should fail: {done:?}"),
    }
    assert!(sink.rx.try_recv().is_err());
    hooked.stop().await;
}

#[tokio::test]
async fn verify_false_accepts_an_untrusted_certificate() {
    let untrusted = Pki::new("untrusted");
    let server = untrusted.issue("server", &["127.0.0.1"], false);
    let rule = "web.hook.rule.client.connect.1 = {\"action\": \"on_client_connect\"}\n";

    // Verified (the default) against the system's roots: refused.
    let mut sink = Sink::https("127.0.0.1:0", server_tls(&server, None)).await;
    let hooked = start(&sink.base("https"), rule, |_| {}, |_| {}).await;
    let _c = Mqtt5::connect(options5(hooked.mqtt(), "c1")).await;
    match sink.handshake().await {
        Handshake::Failed(why) => assert!(why.contains("alert"), "{why}"),
        done => panic!("an untrusted certificate must be refused: {done:?}"),
    }
    assert!(sink.rx.try_recv().is_err());
    hooked.stop().await;

    // verify = false: delivered.
    let mut sink = Sink::https("127.0.0.1:0", server_tls(&server, None)).await;
    let extra = format!("web.hook.ssl.verify = false\n{rule}");
    let hooked = start(&sink.base("https"), &extra, |_| {}, |_| {}).await;
    let _c = Mqtt5::connect(options5(hooked.mqtt(), "c2")).await;
    let got = sink.next().await;
    assert_eq!(got.action(), "client_connect");
    assert_eq!(got.json["clientid"], "c2");
    hooked.stop().await;
}

#[tokio::test]
async fn sni_override_and_disable_with_a_certificate_for_another_name() {
    let pki = Pki::new("sni");
    // The certificate names neither 127.0.0.1 nor anything the URL says.
    let server = pki.issue("server", &["hooks.example.test"], false);
    let tls = server_tls(&server, None);
    let ca = path(&pki.ca_file());
    let rule = "web.hook.rule.client.connect.1 = {\"action\": \"on_client_connect\"}\n";

    // No override: the name check fails.
    let mut sink = Sink::https("127.0.0.1:0", tls.clone()).await;
    let extra = format!("web.hook.ssl.cacertfile = {ca}\n{rule}");
    let hooked = start(&sink.base("https"), &extra, |_| {}, |_| {}).await;
    let _c = Mqtt5::connect(options5(hooked.mqtt(), "c1")).await;
    assert!(
        matches!(sink.handshake().await, Handshake::Failed(_)),
        "a certificate for another name is refused"
    );
    hooked.stop().await;

    // Override: the name is sent as SNI and checked.
    let mut sink = Sink::https("127.0.0.1:0", tls.clone()).await;
    let extra = format!(
        "web.hook.ssl.cacertfile = {ca}\n\
         web.hook.ssl.server_name_indication = hooks.example.test\n{rule}"
    );
    let hooked = start(&sink.base("https"), &extra, |_| {}, |_| {}).await;
    let _c = Mqtt5::connect(options5(hooked.mqtt(), "c2")).await;
    let got = sink.next().await;
    assert_eq!(got.json["clientid"], "c2");
    assert_eq!(got.sni.as_deref(), Some("hooks.example.test"));
    hooked.stop().await;

    // disable: no SNI, no name check; the chain is still verified.
    let mut sink = Sink::https("127.0.0.1:0", tls.clone()).await;
    let url = format!("https://localhost:{}/", sink.addr.port());
    let extra = format!(
        "web.hook.ssl.cacertfile = {ca}\n\
         web.hook.ssl.server_name_indication = disable\n{rule}"
    );
    let hooked = start(&url, &extra, |_| {}, |_| {}).await;
    let _c = Mqtt5::connect(options5(hooked.mqtt(), "c3")).await;
    let got = sink.next().await;
    assert_eq!(got.json["clientid"], "c3");
    assert_eq!(got.sni, None, "no SNI with disable");
    hooked.stop().await;

    // disable does not turn verification off: another CA is refused.
    let other = Pki::new("sni-other");
    let mut sink = Sink::https("127.0.0.1:0", tls).await;
    let extra = format!(
        "web.hook.ssl.cacertfile = {}\n\
         web.hook.ssl.server_name_indication = disable\n{rule}",
        path(&other.ca_file())
    );
    let hooked = start(&sink.base("https"), &extra, |_| {}, |_| {}).await;
    let _c = Mqtt5::connect(options5(hooked.mqtt(), "c4")).await;
    assert!(matches!(sink.handshake().await, Handshake::Failed(_)));
    hooked.stop().await;
}
