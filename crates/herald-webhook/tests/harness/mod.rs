//! Black-box harness for the WebHook tests: a real HTTP(S) web service
//! (hyper, optionally behind rustls, certificates made with rcgen), the
//! broker with the WebHook attached before it accepts anyone, real MQTT
//! clients (rumqttc), and the full connect → disconnect flow checked field
//! by field against `docs/webhook.md` §3.
//!
//! Nothing here sleeps: every wait is on a channel, bounded by [`WAIT`].

#![allow(dead_code)]

use bytes::Bytes;
use herald_broker::Server;
use herald_broker::broker::Broker;
use herald_broker::config::Config;
use herald_webhook::{WebHook, WebhookConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// Longest any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A rule for every one of the thirteen events.
pub const ALL_RULES: &str = "\
web.hook.rule.client.connect.1 = {\"action\": \"on_client_connect\"}
web.hook.rule.client.connack.1 = {\"action\": \"on_client_connack\"}
web.hook.rule.client.connected.1 = {\"action\": \"on_client_connected\"}
web.hook.rule.client.disconnected.1 = {\"action\": \"on_client_disconnected\"}
web.hook.rule.client.subscribe.1 = {\"action\": \"on_client_subscribe\"}
web.hook.rule.client.unsubscribe.1 = {\"action\": \"on_client_unsubscribe\"}
web.hook.rule.session.subscribed.1 = {\"action\": \"on_session_subscribed\"}
web.hook.rule.session.unsubscribed.1 = {\"action\": \"on_session_unsubscribed\"}
web.hook.rule.session.terminated.1 = {\"action\": \"on_session_terminated\"}
web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\"}
web.hook.rule.message.delivered.1 = {\"action\": \"on_message_delivered\"}
web.hook.rule.message.acked.1 = {\"action\": \"on_message_acked\"}
web.hook.rule.message.dropped.1 = {\"action\": \"on_message_dropped\"}
";

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh directory under the system's temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "herald-webhook-test-{}-{name}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

// ---------------------------------------------------------------------------
// The web service

/// One request the web service received.
#[derive(Debug, Clone)]
pub struct Got {
    /// `POST`, hopefully.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Request headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: Bytes,
    /// The body parsed (`Null` if it is not JSON).
    pub json: Value,
    /// The SNI name the client sent, for TLS.
    pub sni: Option<String>,
    /// Whether the client presented a certificate (mutual TLS).
    pub client_cert: bool,
}

impl Got {
    /// A header's value as text (`""` when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The body's `action`.
    pub fn action(&self) -> &str {
        self.json["action"].as_str().unwrap_or("")
    }
}

/// How a TLS handshake with the web service went.
#[derive(Debug, Clone)]
pub enum Handshake {
    /// Done; the SNI name and whether a client certificate came.
    Done {
        sni: Option<String>,
        client_cert: bool,
    },
    /// Refused, with rustls's reason.
    Failed(String),
}

/// A web service answering 200 to every request, over HTTP or HTTPS.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests, in arrival order.
    pub rx: UnboundedReceiver<Got>,
    /// TLS handshakes, in order (HTTPS only).
    pub handshakes: UnboundedReceiver<Handshake>,
    task: JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// Listens on `bind` (port 0 for any), plain HTTP.
    pub async fn http(bind: &str) -> Sink {
        Sink::start(bind, None).await
    }

    /// Listens on `bind` with TLS.
    pub async fn https(bind: &str, tls: Arc<ServerConfig>) -> Sink {
        Sink::start(bind, Some(TlsAcceptor::from(tls))).await
    }

    async fn start(bind: &str, tls: Option<TlsAcceptor>) -> Sink {
        let bind: SocketAddr = bind.parse().unwrap_or_else(|e| panic!("{bind}: {e}"));
        let listener = TcpListener::bind(bind)
            .await
            .unwrap_or_else(|e| panic!("bind {bind}: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let (tx, rx) = unbounded_channel();
        let (hs_tx, handshakes) = unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                let hs_tx = hs_tx.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => serve_http(TokioIo::new(tcp), tx, None, false).await,
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(stream) => {
                                let (_, conn) = stream.get_ref();
                                let sni = conn.server_name().map(str::to_owned);
                                let client_cert =
                                    conn.peer_certificates().is_some_and(|c| !c.is_empty());
                                let _ = hs_tx.send(Handshake::Done {
                                    sni: sni.clone(),
                                    client_cert,
                                });
                                serve_http(TokioIo::new(stream), tx, sni, client_cert).await;
                            }
                            Err(e) => {
                                let _ = hs_tx.send(Handshake::Failed(e.to_string()));
                            }
                        },
                    }
                });
            }
        });
        Sink {
            addr,
            rx,
            handshakes,
            task,
        }
    }

    /// `http(s)://<addr>` (IPv6 in brackets).
    pub fn base(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// The next request.
    pub async fn next(&mut self) -> Got {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no WebHook request within {WAIT:?}"))
            .unwrap_or_else(|| panic!("web service stopped"))
    }

    /// The next `n` requests.
    pub async fn take(&mut self, n: usize) -> Vec<Got> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// The next TLS handshake.
    pub async fn handshake(&mut self) -> Handshake {
        tokio::time::timeout(WAIT, self.handshakes.recv())
            .await
            .unwrap_or_else(|_| panic!("no TLS handshake within {WAIT:?}"))
            .unwrap_or_else(|| panic!("web service stopped"))
    }
}

async fn serve_http<I>(io: I, tx: UnboundedSender<Got>, sni: Option<String>, client_cert: bool)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let tx = tx.clone();
        let sni = sni.clone();
        async move {
            let method = request.method().to_string();
            let path = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            let headers = request.headers().clone();
            let body = request.into_body().collect().await?.to_bytes();
            let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let _ = tx.send(Got {
                method,
                path,
                headers,
                body,
                json,
                sni,
                client_cert,
            });
            Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::new())))
        }
    });
    let _ = http1::Builder::new().serve_connection(io, service).await;
}

// ---------------------------------------------------------------------------
// Certificates

/// A test CA and what it can issue, written to PEM files in a directory.
pub struct Pki {
    /// Where the PEM files are.
    pub dir: PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A certificate with its key, in DER and as PEM files.
pub struct Issued {
    pub cert: rustls_pki_types::CertificateDer<'static>,
    pub key: rustls_pki_types::PrivateKeyDer<'static>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

pub use tokio_rustls::rustls::pki_types as rustls_pki_types;

impl Pki {
    /// A new CA named `name`; its certificate is `<dir>/<name>-ca.pem`.
    pub fn new(name: &str) -> Pki {
        let dir = temp_dir(name);
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap_or_else(|e| panic!("{e}"));
        Pki { dir, ca }
    }

    /// The CA certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA certificate.
    pub fn ca_der(&self) -> rustls_pki_types::CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// A certificate for `names` (DNS names or IP addresses), signed by the
    /// CA, written as `<file>.pem` and `<file>-key.pem`.
    pub fn issue(&self, file: &str, names: &[&str], client: bool) -> Issued {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap_or_else(|e| panic!("{e}"));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, file.to_owned());
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let cert = params
            .signed_by(&key, &self.ca)
            .unwrap_or_else(|e| panic!("{e}"));
        let cert_file = self.dir.join(format!("{file}.pem"));
        let key_file = self.dir.join(format!("{file}-key.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&key_file, key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));
        Issued {
            cert: cert.der().clone(),
            key: rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            cert_file,
            key_file,
        }
    }
}

/// A rustls server configuration presenting `server`; with `clients_of`,
/// client certificates signed by that CA are required (mutual TLS).
pub fn server_tls(server: &Issued, clients_of: Option<&Pki>) -> Arc<ServerConfig> {
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|e| panic!("{e}"));
    let builder = match clients_of {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.ca_der()).unwrap_or_else(|e| panic!("{e}"));
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(vec![server.cert.clone()], server.key.clone_key())
        .unwrap_or_else(|e| panic!("{e}"));
    Arc::new(config)
}

// ---------------------------------------------------------------------------
// The broker with the WebHook

/// A running broker with the WebHook attached.
pub struct Hooked {
    pub server: Server,
    pub webhook: WebHook,
}

impl Hooked {
    /// The first MQTT address.
    pub fn mqtt(&self) -> SocketAddr {
        self.server.local_addrs[0]
    }

    /// The broker.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.server.broker
    }

    /// A counter of the WebHook's Prometheus text, e.g.
    /// `herald_webhook_events_matched_total{event="message.publish"}`.
    pub fn metric(&self, series: &str) -> u64 {
        let text = self.webhook.render_metrics();
        text.lines()
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse::<u64>().ok())?
            })
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    }

    /// `matched` of one event (`message.publish`).
    pub fn matched(&self, event: &str) -> u64 {
        self.metric(&format!(
            "herald_webhook_events_matched_total{{event=\"{event}\"}}"
        ))
    }

    /// Stops the broker first (its disconnect events still go out), then
    /// the WebHook.
    pub async fn stop(self) {
        self.server.shutdown().await;
        self.webhook.shutdown(Duration::from_secs(2)).await;
    }
}

/// The configuration every test starts from: the URL, an in-memory spool,
/// four lanes and quick retries, then `extra` (later keys win).
pub fn conf_text(url: &str, extra: &str) -> String {
    format!(
        "web.hook.url = {url}\n\
         web.hook.spool.mode = memory\n\
         web.hook.pool_size = 4\n\
         web.hook.retry.initial_backoff = 10ms\n\
         web.hook.retry.max_backoff = 100ms\n\
         web.hook.request.connect_timeout = 5s\n\
         {extra}"
    )
}

/// Starts a broker on 127.0.0.1:0 (`$SYS` off; `edit` may change that),
/// attaches the WebHook configured by [`conf_text`], then, with `before`
/// having seen the broker, starts accepting MQTT.
pub async fn start(
    url: &str,
    extra: &str,
    edit: impl FnOnce(&mut Config),
    before: impl FnOnce(&Arc<Broker>),
) -> Hooked {
    let mut config = Config::default();
    config.listener.bind = vec!["127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}"))];
    config.sys.interval = 0;
    config.metrics.bind = None;
    edit(&mut config);
    let text = conf_text(url, extra);
    let whc = WebhookConfig::parse(&text, "test.conf").unwrap_or_else(|e| panic!("{e}\n{text}"));
    let broker = Broker::new(config);
    before(&broker);
    let webhook = WebHook::start(&whc, Path::new("/nonexistent-data-dir"), &broker)
        .unwrap_or_else(|e| panic!("webhook starts: {e}"));
    let server = herald_broker::start_on(broker)
        .await
        .unwrap_or_else(|e| panic!("broker starts: {e}"));
    Hooked { server, webhook }
}

// ---------------------------------------------------------------------------
// MQTT clients

/// A rumqttc client whose event loop runs on its own task; events arrive
/// on a channel, the first connection error ends it (no reconnecting).
pub struct Mqtt5 {
    pub client: rumqttc::v5::AsyncClient,
    events: UnboundedReceiver<Result<rumqttc::v5::Event, String>>,
    pump: JoinHandle<()>,
}

impl Drop for Mqtt5 {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// MQTT 5 options for `id` at `addr`, keep alive 60 s.
pub fn options5(addr: SocketAddr, id: &str) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(60));
    o
}

impl Mqtt5 {
    /// Starts the client without waiting.
    pub fn start(options: rumqttc::v5::MqttOptions) -> Mqtt5 {
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(options, 100);
        let (tx, events) = unbounded_channel();
        let pump = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if tx.send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        Mqtt5 {
            client,
            events,
            pump,
        }
    }

    /// Connects and waits for a successful CONNACK.
    pub async fn connect(options: rumqttc::v5::MqttOptions) -> Mqtt5 {
        let mut m = Mqtt5::start(options);
        m.wait(|p| matches!(p, rumqttc::v5::mqttbytes::v5::Packet::ConnAck(_)).then_some(()))
            .await;
        m
    }

    /// Connects and expects a refusal; returns rumqttc's error text.
    pub async fn refused(options: rumqttc::v5::MqttOptions) -> String {
        let mut m = Mqtt5::start(options);
        loop {
            match tokio::time::timeout(WAIT, m.events.recv()).await {
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(rumqttc::v5::Event::Incoming(
                    rumqttc::v5::mqttbytes::v5::Packet::ConnAck(ack),
                )))) if ack.code == rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success => {
                    panic!("connection accepted")
                }
                Ok(Some(Ok(_))) => continue,
                Ok(None) => panic!("client stopped"),
                Err(_) => panic!("no refusal within {WAIT:?}"),
            }
        }
    }

    /// Waits for an incoming packet `pick` accepts; a connection error
    /// fails the test.
    pub async fn wait<T>(
        &mut self,
        mut pick: impl FnMut(&rumqttc::v5::mqttbytes::v5::Packet) -> Option<T>,
    ) -> T {
        loop {
            let event = tokio::time::timeout(WAIT, self.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no MQTT event within {WAIT:?}"))
                .unwrap_or_else(|| panic!("client stopped"))
                .unwrap_or_else(|e| panic!("MQTT connection failed: {e}"));
            if let rumqttc::v5::Event::Incoming(p) = event
                && let Some(t) = pick(&p)
            {
                return t;
            }
        }
    }

    /// The next PUBLISH received.
    pub async fn publish_received(&mut self) -> rumqttc::v5::mqttbytes::v5::Publish {
        self.wait(|p| match p {
            rumqttc::v5::mqttbytes::v5::Packet::Publish(p) => Some(p.clone()),
            _ => None,
        })
        .await
    }

    /// Waits for a SUBACK.
    pub async fn suback(&mut self) {
        self.wait(|p| matches!(p, rumqttc::v5::mqttbytes::v5::Packet::SubAck(_)).then_some(()))
            .await;
    }

    /// Waits for an UNSUBACK.
    pub async fn unsuback(&mut self) {
        self.wait(|p| matches!(p, rumqttc::v5::mqttbytes::v5::Packet::UnsubAck(_)).then_some(()))
            .await;
    }
}

/// The MQTT 3.1.1 twin of [`Mqtt5`].
pub struct Mqtt4 {
    pub client: rumqttc::AsyncClient,
    events: UnboundedReceiver<Result<rumqttc::Event, String>>,
    pump: JoinHandle<()>,
}

impl Drop for Mqtt4 {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

/// MQTT 3.1.1 options for `id` at `addr`, keep alive 30 s.
pub fn options4(addr: SocketAddr, id: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    o.set_keep_alive(Duration::from_secs(30));
    o
}

impl Mqtt4 {
    /// Starts the client without waiting.
    pub fn start(options: rumqttc::MqttOptions) -> Mqtt4 {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
        let (tx, events) = unbounded_channel();
        let pump = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(event) => {
                        if tx.send(Ok(event)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return;
                    }
                }
            }
        });
        Mqtt4 {
            client,
            events,
            pump,
        }
    }

    /// Connects and waits for a successful CONNACK.
    pub async fn connect(options: rumqttc::MqttOptions) -> Mqtt4 {
        let mut m = Mqtt4::start(options);
        loop {
            let event = tokio::time::timeout(WAIT, m.events.recv())
                .await
                .unwrap_or_else(|_| panic!("no CONNACK within {WAIT:?}"))
                .unwrap_or_else(|| panic!("client stopped"))
                .unwrap_or_else(|e| panic!("MQTT connection failed: {e}"));
            if let rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) = event {
                return m;
            }
        }
    }

    /// Connects and expects a refusal; returns rumqttc's error text.
    pub async fn refused(options: rumqttc::MqttOptions) -> String {
        let mut m = Mqtt4::start(options);
        loop {
            match tokio::time::timeout(WAIT, m.events.recv()).await {
                Ok(Some(Err(e))) => return e,
                Ok(Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)))))
                    if ack.code == rumqttc::ConnectReturnCode::Success =>
                {
                    panic!("connection accepted")
                }
                Ok(Some(Ok(_))) => continue,
                Ok(None) => panic!("client stopped"),
                Err(_) => panic!("no refusal within {WAIT:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Bodies

/// Compares a body with what §3 says, field by field: the same field names,
/// equal values, except that `"<ms>"` / `"<s>"` in `expected` stand for a
/// time in milliseconds / seconds between `t0` and `t1` (ms).
pub fn check_body(actual: &Value, expected: &Value, t0: u64, t1: u64) {
    let action = expected["action"].as_str().unwrap_or("?");
    let (Value::Object(a), Value::Object(e)) = (actual, expected) else {
        panic!("{action}: not a JSON object: {actual}");
    };
    let got: BTreeSet<&String> = a.keys().collect();
    let want: BTreeSet<&String> = e.keys().collect();
    assert_eq!(got, want, "{action}: field names differ\n  body: {actual}");
    for (k, want) in e {
        let got = &a[k];
        match want.as_str() {
            Some("<ms>") => {
                let v = got
                    .as_u64()
                    .unwrap_or_else(|| panic!("{action}.{k}: {got} is not an integer"));
                assert!(
                    (t0..=t1).contains(&v),
                    "{action}.{k} = {v} ms is not between {t0} and {t1}"
                );
            }
            Some("<s>") => {
                let v = got
                    .as_u64()
                    .unwrap_or_else(|| panic!("{action}.{k}: {got} is not an integer"));
                assert!(
                    (t0 / 1000..=t1 / 1000).contains(&v),
                    "{action}.{k} = {v} s is not between {} and {}",
                    t0 / 1000,
                    t1 / 1000
                );
            }
            _ => assert_eq!(got, want, "{action}.{k}\n  body: {actual}"),
        }
    }
}

/// Which profile a flow runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    V40,
    V44,
}

impl Profile {
    /// The configuration line.
    pub fn conf(self) -> &'static str {
        match self {
            Profile::V40 => "web.hook.body.profile = v4.0\n",
            Profile::V44 => "web.hook.body.profile = v4.4\n",
        }
    }
}

/// What [`full_flow`] connects as.
#[derive(Debug, Clone)]
pub struct Flow {
    pub profile: Profile,
    /// User name of the client (`None`: anonymous).
    pub username: Option<&'static str>,
    /// The `ipaddress` expected.
    pub ip: &'static str,
    /// Path and query every request must arrive at.
    pub path: String,
}

/// The full flow of one MQTT 5 client `c1` with every event's rule on:
/// connect → subscribe → publish (QoS 1, to itself) → deliver → ack →
/// publish to nobody (dropped) → unsubscribe → disconnect. All its events
/// share one lane, so they arrive in exactly this order; each body is
/// compared field by field with §3 for the profile. Returns the requests.
pub async fn full_flow(hooked: &Hooked, sink: &mut Sink, flow: &Flow) -> Vec<Got> {
    let t0 = now_ms();
    let mut options = options5(hooked.mqtt(), "c1");
    if let Some(user) = flow.username {
        options.set_credentials(user, "pw");
    }
    let mut c1 = Mqtt5::connect(options).await;
    let mut got = sink.take(3).await;

    c1.client
        .subscribe("TopicA", rumqttc::v5::mqttbytes::QoS::ExactlyOnce)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c1.suback().await;
    got.extend(sink.take(2).await);

    c1.client
        .publish(
            "TopicA",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            "Payload...",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let echo = c1.publish_received().await;
    assert_eq!(&echo.payload[..], b"Payload...");
    got.extend(sink.take(3).await);

    c1.client
        .publish(
            "Nobody",
            rumqttc::v5::mqttbytes::QoS::AtMostOnce,
            false,
            "x",
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    got.extend(sink.take(2).await);

    c1.client
        .unsubscribe("TopicA")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    c1.unsuback().await;
    got.extend(sink.take(2).await);

    c1.client
        .disconnect()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    got.extend(sink.take(2).await);
    let t1 = now_ms();

    let actions: Vec<&str> = got.iter().map(Got::action).collect();
    assert_eq!(
        actions,
        [
            "client_connect",
            "client_connack",
            "client_connected",
            "client_subscribe",
            "session_subscribed",
            "message_publish",
            "message_delivered",
            "message_acked",
            "message_publish",
            "message_dropped",
            "client_unsubscribe",
            "session_unsubscribed",
            "client_disconnected",
            "session_terminated",
        ]
    );
    let expected = expected_flow(flow);
    for (g, e) in got.iter().zip(&expected) {
        check_body(&g.json, e, t0, t1);
        assert_eq!(g.method, "POST");
        assert_eq!(g.path, flow.path);
        assert_eq!(g.header("content-type"), "application/json");
    }
    // Times that must agree across events.
    let at = |i: usize, k: &str| got[i].json[k].clone();
    assert_eq!(
        at(6, "ts"),
        at(5, "ts"),
        "delivered carries the publish time"
    );
    assert_eq!(at(7, "ts"), at(5, "ts"), "acked carries the publish time");
    if flow.profile == Profile::V44 {
        assert_eq!(at(1, "connected_at"), at(2, "connected_at"));
        assert_eq!(at(12, "connected_at"), at(2, "connected_at"));
        assert!(at(12, "disconnected_at").as_u64() >= at(12, "connected_at").as_u64());
    }
    // Every request has its own event id.
    let ids: BTreeSet<&str> = got.iter().map(|g| g.header("x-herald-event-id")).collect();
    assert_eq!(ids.len(), got.len(), "event ids are unique: {ids:?}");
    assert!(!ids.contains(""), "every request has an event id");
    got
}

/// The fourteen bodies of [`full_flow`], as §3 describes them.
pub fn expected_flow(flow: &Flow) -> Vec<Value> {
    let v44 = flow.profile == Profile::V44;
    let user = match (flow.username, v44) {
        (Some(u), _) => json!(u),
        (None, false) => json!("undefined"),
        (None, true) => Value::Null,
    };
    let ip = flow.ip;
    let conn = |action: &str| {
        json!({"action": action, "clientid": "c1", "username": user, "ipaddress": ip,
               "keepalive": 60, "proto_ver": 5})
    };
    let who = |action: &str| json!({"action": action, "clientid": "c1", "username": user});
    let msg = |action: &str, topic: &str, qos: u8, payload: &str| {
        json!({"action": action, "from_client_id": "c1", "from_username": user,
               "topic": topic, "qos": qos, "retain": false, "payload": payload, "ts": "<ms>"})
    };
    let set = |mut v: Value, pairs: &[(&str, Value)]| {
        for (k, x) in pairs {
            v[*k] = x.clone();
        }
        v
    };
    let opts = json!({"qos": 2, "nl": 0, "rap": 0, "rh": 0});
    let connected_at = if v44 { "<ms>" } else { "<s>" };
    let mut bodies = vec![
        conn("client_connect"),
        set(conn("client_connack"), &[("conn_ack", json!("success"))]),
        set(
            conn("client_connected"),
            &[("connected_at", json!(connected_at))],
        ),
        set(
            who("client_subscribe"),
            &[("topic", json!("TopicA")), ("opts", opts.clone())],
        ),
        set(
            who("session_subscribed"),
            &[("topic", json!("TopicA")), ("opts", opts)],
        ),
        msg("message_publish", "TopicA", 1, "Payload..."),
        set(
            msg("message_delivered", "TopicA", 1, "Payload..."),
            &[("clientid", json!("c1")), ("username", user.clone())],
        ),
        set(
            msg("message_acked", "TopicA", 1, "Payload..."),
            &[("clientid", json!("c1"))],
        ),
        msg("message_publish", "Nobody", 0, "x"),
        set(
            msg("message_dropped", "Nobody", 0, "x"),
            &[("reason", json!("no_subscribers"))],
        ),
        set(who("client_unsubscribe"), &[("topic", json!("TopicA"))]),
        set(who("session_unsubscribed"), &[("topic", json!("TopicA"))]),
        set(who("client_disconnected"), &[("reason", json!("normal"))]),
        set(who("session_terminated"), &[("reason", json!("normal"))]),
    ];
    if v44 {
        let node = json!("herald@127.0.0.1");
        for b in &mut bodies {
            b["node"] = node.clone();
        }
        bodies[1]["connected_at"] = json!("<ms>");
        bodies[4]["opts"]["is_new"] = json!(true);
        bodies[7]["username"] = user.clone();
        bodies[10]["opts"] = json!({});
        bodies[12]["connected_at"] = json!("<ms>");
        bodies[12]["disconnected_at"] = json!("<ms>");
    }
    bodies
}
