//! `emqx_web_hook.conf` parsing (`docs/webhook.md` §1): every key, the old
//! names, normalisation, defaults, and errors that name file, line and key.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use herald_webhook::conf::{
    ConfError, FsyncPolicy, Header, Problem, ServerName, SpoolMode, WebhookConfig,
};
use herald_webhook::endpoint::Host;
use herald_webhook::{EventKind, Origin, PayloadEncoding, Profile};
use std::path::PathBuf;
use std::time::Duration;

fn parse(text: &str) -> WebhookConfig {
    WebhookConfig::parse(text, "emqx_web_hook.conf").unwrap_or_else(|e| panic!("{e}"))
}

/// Parses `url` plus `lines`.
fn with_url(lines: &str) -> WebhookConfig {
    parse(&format!("web.hook.url = http://127.0.0.1:9000\n{lines}"))
}

/// The error for `text`, as its message.
fn error(text: &str) -> String {
    match WebhookConfig::parse(text, "emqx_web_hook.conf") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn problem(text: &str) -> Problem {
    match WebhookConfig::parse(text, "emqx_web_hook.conf") {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e
            .problem()
            .cloned()
            .unwrap_or_else(|| panic!("not a key error: {e}")),
    }
}

fn warnings(c: &WebhookConfig) -> Vec<String> {
    c.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn emqx_4_3_file_loads_unchanged() {
    let text = "\
##====================================================================
## WebHook
##====================================================================

## Webhook URL
web.hook.url = http://127.0.0.1:80

web.hook.headers.content-type = application/json
web.hook.body.encoding_of_payload_field = plain
## web.hook.ssl.cacertfile  = <PEM format file of CA's>
## web.hook.ssl.verify = false
web.hook.pool_size = 32
web.hook.enable_pipelining = true

web.hook.rule.client.connect.1       = {\"action\": \"on_client_connect\"}
web.hook.rule.client.connack.1       = {\"action\": \"on_client_connack\"}
web.hook.rule.client.connected.1     = {\"action\": \"on_client_connected\"}
web.hook.rule.client.disconnected.1  = {\"action\": \"on_client_disconnected\"}
web.hook.rule.client.subscribe.1     = {\"action\": \"on_client_subscribe\"}
web.hook.rule.client.unsubscribe.1   = {\"action\": \"on_client_unsubscribe\"}
web.hook.rule.session.subscribed.1   = {\"action\": \"on_session_subscribed\"}
web.hook.rule.session.unsubscribed.1 = {\"action\": \"on_session_unsubscribed\"}
web.hook.rule.session.terminated.1   = {\"action\": \"on_session_terminated\"}
web.hook.rule.message.publish.1      = {\"action\": \"on_message_publish\"}
web.hook.rule.message.delivered.1    = {\"action\": \"on_message_delivered\"}
web.hook.rule.message.acked.1        = {\"action\": \"on_message_acked\"}
web.hook.rule.message.dropped.1      = {\"action\": \"on_message_dropped\"}
";
    let c = parse(text);
    assert!(c.is_enabled());
    assert_eq!(
        c.url.as_ref().map(ToString::to_string).as_deref(),
        Some("http://127.0.0.1/")
    );
    assert!(c.headers.is_empty(), "content-type is never configurable");
    assert_eq!(c.payload_encoding, PayloadEncoding::Plain);
    assert_eq!(c.pool_size, 32);
    assert!(c.enable_pipelining);
    assert_eq!(c.rules.len(), 13);
    assert!(EventKind::ALL.iter().all(|k| c.rules.wants(*k)));
    assert_eq!(
        warnings(&c),
        [
            "emqx_web_hook.conf:8: web.hook.headers.content-type: ignored: content-type is always application/json"
        ]
    );
}

#[test]
fn emqx_4_2_old_names() {
    let c = parse(
        "web.hook.api.url = http://127.0.0.1:8080\n\
         web.hook.encode_payload = base64\n\
         web.hook.ssl.cafile = /etc/ca.pem\n\
         web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\"}\n",
    );
    assert_eq!(
        c.url.as_ref().map(ToString::to_string).as_deref(),
        Some("http://127.0.0.1:8080/")
    );
    assert_eq!(c.payload_encoding, PayloadEncoding::Base64);
    assert_eq!(c.tls.cacertfile, Some(PathBuf::from("/etc/ca.pem")));
    // An old name and its new name are one key: the last wins.
    let c = parse(
        "web.hook.api.url = http://old\nweb.hook.url = http://new\nweb.hook.encode_payload = base62\n",
    );
    assert_eq!(c.url.map(|u| u.to_string()).as_deref(), Some("http://new/"));
    assert_eq!(c.payload_encoding, PayloadEncoding::Base62);
    assert!(
        warnings(&parse("web.hook.api.url = http://old\nweb.hook.url = http://new\n"))
            .iter()
            .any(|w| w.starts_with("emqx_web_hook.conf:2: web.hook.url: replaces web.hook.api.url set at emqx_web_hook.conf:1")),
    );
}

#[test]
fn no_url_means_off() {
    let c = parse("");
    assert!(!c.is_enabled());
    assert_eq!(c, WebhookConfig::default());
    let c = parse("# only comments\n\n   \nweb.hook.pool_size = 4\n");
    assert!(!c.is_enabled());
    assert_eq!(c.pool_size, 4);
    // Rules without a URL: the operator meant it on.
    let e = error(
        "web.hook.pool_size = 4\nweb.hook.rule.client.connected.1 = {\"action\": \"on_client_connected\"}\n",
    );
    assert!(
        e.starts_with("emqx_web_hook.conf:2: web.hook.rule.client.connected.1: a rule is configured but web.hook.url is not set"),
        "{e}"
    );
    // A URL without rules sends nothing, and says so.
    let c = parse("web.hook.url = http://h\n");
    assert!(c.is_enabled());
    assert!(warnings(&c)[0].contains("no event will be sent"));
}

#[test]
fn lines_comments_and_whitespace() {
    let c = parse(
        "\u{FEFF}# comment\r\n\
         \t web.hook.url\t=\thttp://h/p?a=b#frag   \r\n\
         ## another\n\
         web.hook.headers.Authorization = Bearer a=b # not a comment\n\
         web.hook.rule.message.publish.1={\"action\":\"on_message_publish\",\"topic\":\"a/#\"}\n",
    );
    assert_eq!(
        c.url.map(|u| u.to_string()).as_deref(),
        Some("http://h/p?a=b")
    );
    assert_eq!(
        c.headers,
        [Header {
            name: "authorization".into(),
            value: "Bearer a=b # not a comment".into()
        }]
    );
    assert_eq!(c.rules.len(), 1);
    assert_eq!(
        error("web.hook.url = http://h\nweb.hook.pool_size 4\n"),
        "emqx_web_hook.conf:2: expected `key = value`, found `web.hook.pool_size 4`"
    );
    assert_eq!(
        error("= 4\n"),
        "emqx_web_hook.conf:1: expected `key = value`, found `= 4`"
    );
    assert_eq!(
        error("web hook = 4\n"),
        "emqx_web_hook.conf:1: expected `key = value`, found `web hook = 4`"
    );
}

#[test]
fn url_normalisation() {
    let url = |v: &str| {
        parse(&format!("web.hook.url = {v}\n"))
            .url
            .map(|u| u.to_string())
            .unwrap_or_default()
    };
    assert_eq!(url("127.0.0.1:9000"), "http://127.0.0.1:9000/");
    assert_eq!(url("http://hooks.local"), "http://hooks.local/");
    assert_eq!(url("https://h:8443/x?y=1"), "https://h:8443/x?y=1");
    assert_eq!(url("http://[::1]:9000/hook"), "http://[::1]:9000/hook");
    let c = parse("web.hook.url = http://[::1]:9000\n");
    let u = c.url.unwrap_or_else(|| panic!("no url"));
    assert_eq!(u.host(), &Host::Ipv6(std::net::Ipv6Addr::LOCALHOST));
    assert_eq!(u.path_and_query(), "/");
    let e = error("\nweb.hook.url = ftp://h/\n");
    assert_eq!(
        e,
        "emqx_web_hook.conf:2: web.hook.url: invalid URL `ftp://h/`: scheme `ftp` is not supported (use http or https)"
    );
    assert!(error("web.hook.url =\n").contains("the URL is empty"));
    assert!(error("web.hook.url = http://u:p@h/\n").contains("web.hook.headers.authorization"));
}

#[test]
fn headers() {
    let c = with_url(
        "web.hook.headers.X_Api_Key = k1\n\
         web.hook.headers.Accept = *\n\
         web.hook.headers.Content-Type = text/plain\n\
         web.hook.headers.x-api-key = k2\n",
    );
    assert_eq!(
        c.headers,
        [
            Header {
                name: "accept".into(),
                value: "*".into()
            },
            Header {
                name: "x-api-key".into(),
                value: "k2".into()
            },
        ]
    );
    let w = warnings(&c);
    assert!(
        w.iter()
            .any(|w| w.contains("web.hook.headers.Content-Type: ignored"))
    );
    assert!(w.iter().any(|w| w.contains(
        "emqx_web_hook.conf:5: web.hook.headers.x-api-key: replaces header web.hook.headers.X_Api_Key set at emqx_web_hook.conf:2"
    )));
    assert!(error("web.hook.headers.a(b) = x\n").starts_with(
        "emqx_web_hook.conf:1: web.hook.headers.a(b): `a(b)` is not a valid header name"
    ));
    assert!(error("web.hook.headers. = x\n").contains("not a valid header name"));
    assert!(error("web.hook.headers.content-length = 3\n").contains("set by Herald"));
    assert!(
        error("web.hook.url = http://h\nweb.hook.headers.x-herald-event-id = 3\n")
            .contains("set by Herald")
    );
    assert!(error("web.hook.headers.a = x\u{7}y\n").contains("control characters"));
}

#[test]
fn tls() {
    let c = with_url("");
    assert!(c.tls.verify, "verify is on unless told otherwise");
    assert_eq!(c.tls.server_name, ServerName::UrlHost);
    assert_eq!(c.tls.cacertfile, None);
    let c = parse(
        "web.hook.url = https://hooks.example.com\n\
         web.hook.ssl.cacertfile = etc/certs/ca.pem\n\
         web.hook.ssl.certfile = etc/certs/client.pem\n\
         web.hook.ssl.keyfile = etc/certs/client.key\n\
         web.hook.ssl.verify = false\n\
         web.hook.ssl.server_name_indication = Internal.Example.com\n",
    );
    assert_eq!(c.tls.cacertfile, Some(PathBuf::from("etc/certs/ca.pem")));
    assert_eq!(c.tls.certfile, Some(PathBuf::from("etc/certs/client.pem")));
    assert_eq!(c.tls.keyfile, Some(PathBuf::from("etc/certs/client.key")));
    assert!(!c.tls.verify);
    assert_eq!(
        c.tls.server_name,
        ServerName::Name("internal.example.com".into())
    );
    assert_eq!(
        warnings(&c)[0],
        "emqx_web_hook.conf:5: web.hook.ssl.verify: the web server's certificate is not verified"
    );
    let c = parse(
        "web.hook.url = https://h\nweb.hook.ssl.server_name_indication = disable\nweb.hook.ssl.cacertfile =\n",
    );
    assert_eq!(c.tls.server_name, ServerName::Disable);
    assert_eq!(c.tls.cacertfile, None, "empty means unset");
    assert!(
        error("web.hook.ssl.verify = yes\n")
            .ends_with("web.hook.ssl.verify: `yes` is not true or false")
    );
    assert!(
        error("web.hook.ssl.server_name_indication = a b\n").contains("a host name or `disable`")
    );
    assert!(
        error("web.hook.url = https://h\nweb.hook.ssl.certfile = c.pem\n")
            .starts_with("emqx_web_hook.conf:2: web.hook.ssl.certfile: a client certificate needs web.hook.ssl.keyfile too")
    );
    assert!(
        error("web.hook.url = https://h\nweb.hook.ssl.keyfile = k.pem\nweb.hook.ssl.certfile =\n")
            .starts_with("emqx_web_hook.conf:2: web.hook.ssl.keyfile: a client key needs")
    );
    // TLS keys on an http URL do nothing; say so.
    let c = parse("web.hook.url = http://h\nweb.hook.ssl.cacertfile = ca.pem\n");
    assert!(
        warnings(&c)
            .iter()
            .any(|w| w.contains("ignored: web.hook.url is not https"))
    );
}

#[test]
fn pool_and_pipelining() {
    let c = with_url("");
    assert_eq!(c.pool_size, 32);
    assert!(c.enable_pipelining);
    let c = with_url("web.hook.pool_size = 1\nweb.hook.enable_pipelining = false\n");
    assert_eq!(c.pool_size, 1);
    assert!(!c.enable_pipelining);
    assert_eq!(
        error("web.hook.pool_size = 0\n"),
        "emqx_web_hook.conf:1: web.hook.pool_size: `0` is not an integer from 1 to 4096"
    );
    assert!(error("web.hook.pool_size = eight\n").contains("`eight` is not an integer"));
    assert!(error("web.hook.pool_size = -1\n").contains("`-1` is not an integer"));
    assert!(error("web.hook.pool_size = 99999999999999999999\n").contains("is not an integer"));
    assert!(error("web.hook.enable_pipelining = 1\n").contains("`1` is not true or false"));
}

#[test]
fn delivery_threads() {
    assert_eq!(with_url("").delivery_threads, 1);
    assert_eq!(
        with_url("web.hook.delivery_threads = 4\n").delivery_threads,
        4
    );
    assert_eq!(
        error("web.hook.delivery_threads = 0\n"),
        "emqx_web_hook.conf:1: web.hook.delivery_threads: `0` is not an integer from 1 to 256"
    );
    assert!(error("web.hook.delivery_threads = 257\n").contains("not an integer from 1 to 256"));
    assert_eq!(with_url("").delivery_nice, 10);
    assert_eq!(with_url("web.hook.delivery_nice = 0\n").delivery_nice, 0);
    assert_eq!(
        error("web.hook.delivery_nice = 20\n"),
        "emqx_web_hook.conf:1: web.hook.delivery_nice: `20` is not an integer from 0 to 19"
    );
}

#[test]
fn body_profile_and_node() {
    let c = with_url("");
    assert_eq!(c.body_profile, Profile::V4_0);
    assert_eq!(c.node_name, "herald@127.0.0.1");
    let c = with_url("web.hook.body.profile = v4.4\nweb.hook.node = herald@10.0.0.1\n");
    assert_eq!(c.body_profile, Profile::V4_4);
    assert_eq!(c.node_name, "herald@10.0.0.1");
    assert!(error("web.hook.body.profile = 4.4\n").contains("`4.4` is not v4.0 or v4.4"));
    assert!(error("web.hook.node =\n").contains("is not a node name"));
    assert!(
        error("web.hook.body.encoding_of_payload_field = hex\n")
            .contains("plain, base64 or base62")
    );
}

#[test]
fn delivery_keys_defaults() {
    let c = with_url("");
    assert_eq!(c.spool.dir, None);
    assert_eq!(c.spool.max_bytes, 1 << 30);
    assert_eq!(c.spool.fsync, FsyncPolicy::Interval);
    assert_eq!(c.spool.mode, SpoolMode::Disk);
    assert_eq!(c.request.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.request.request_timeout, Duration::from_secs(5));
    assert_eq!(c.retry.initial_backoff, Duration::from_secs(1));
    assert_eq!(c.retry.max_backoff, Duration::from_secs(60));
    assert_eq!(c.max_event_age, None);
    assert_eq!(c.batch.size, 1);
    assert_eq!(c.batch.interval, Duration::from_millis(100));
    assert_eq!(c.sign.secret, None);
    assert_eq!(c.sign.header, "x-herald-signature");
    assert_eq!(c.event_id_header, "x-herald-event-id");
}

#[test]
fn delivery_keys_set() {
    let c = with_url(
        "web.hook.spool.dir = /var/lib/herald/hooks\n\
         web.hook.spool.max_bytes = 512MB\n\
         web.hook.spool.fsync = always\n\
         web.hook.spool.mode = disk\n\
         web.hook.request.connect_timeout = 500ms\n\
         web.hook.request.request_timeout = 1m30s\n\
         web.hook.retry.initial_backoff = 200ms\n\
         web.hook.retry.max_backoff = 2m\n\
         web.hook.max_event_age = 1h\n\
         web.hook.batch.size = 100\n\
         web.hook.batch.interval = 50ms\n\
         web.hook.sign.secret = s3cret\n\
         web.hook.sign.header = X_Signature\n\
         web.hook.event_id_header = X-Event-Id\n",
    );
    assert_eq!(c.spool.dir, Some(PathBuf::from("/var/lib/herald/hooks")));
    assert_eq!(c.spool.max_bytes, 512 << 20);
    assert_eq!(c.spool.fsync, FsyncPolicy::Always);
    assert_eq!(c.request.connect_timeout, Duration::from_millis(500));
    assert_eq!(c.request.request_timeout, Duration::from_secs(90));
    assert_eq!(c.retry.initial_backoff, Duration::from_millis(200));
    assert_eq!(c.retry.max_backoff, Duration::from_secs(120));
    assert_eq!(c.max_event_age, Some(Duration::from_secs(3600)));
    assert_eq!(c.batch.size, 100);
    assert_eq!(c.batch.interval, Duration::from_millis(50));
    assert_eq!(c.sign.secret.as_ref().map(|s| s.expose()), Some("s3cret"));
    assert!(
        !format!("{c:?}").contains("s3cret"),
        "Debug hides the secret"
    );
    assert_eq!(c.sign.header, "x-signature");
    assert_eq!(c.event_id_header, "x-event-id");

    let c = with_url(
        "web.hook.spool.mode = memory\nweb.hook.spool.fsync = never\nweb.hook.spool.max_bytes = 1048576\n\
         web.hook.max_event_age = infinity\nweb.hook.sign.secret =\nweb.hook.spool.max_bytes = 2kb\n",
    );
    assert_eq!(c.spool.mode, SpoolMode::Memory);
    assert_eq!(c.spool.fsync, FsyncPolicy::Never);
    assert_eq!(c.spool.max_bytes, 2048);
    assert_eq!(c.max_event_age, None);
    assert_eq!(c.sign.secret, None);
    let c = with_url("web.hook.spool.mode = memory\nweb.hook.spool.dir = /x\n");
    assert!(
        warnings(&c)
            .iter()
            .any(|w| w.contains("web.hook.spool.dir: ignored"))
    );
}

#[test]
fn delivery_keys_errors() {
    for (line, expected) in [
        ("web.hook.spool.max_bytes = 0", "`0` is not a positive size"),
        (
            "web.hook.spool.max_bytes = 1TB",
            "`1TB` is not a positive size",
        ),
        (
            "web.hook.spool.max_bytes = 99999999999GB",
            "is not a positive size",
        ),
        ("web.hook.spool.max_bytes = GB", "is not a positive size"),
        (
            "web.hook.spool.fsync = sometimes",
            "always, interval or never",
        ),
        ("web.hook.spool.mode = tape", "disk or memory"),
        (
            "web.hook.request.connect_timeout = 5",
            "`5` is not a positive duration",
        ),
        (
            "web.hook.request.request_timeout = 0s",
            "`0s` is not a positive duration",
        ),
        (
            "web.hook.retry.initial_backoff = 1.5s",
            "is not a positive duration",
        ),
        (
            "web.hook.retry.max_backoff = s",
            "is not a positive duration",
        ),
        (
            "web.hook.retry.max_backoff = 5 s",
            "is not a positive duration",
        ),
        ("web.hook.max_event_age = forever", "or `infinity`"),
        ("web.hook.batch.size = 0", "an integer from 1 to 10000"),
        ("web.hook.batch.interval = 1w", "is not a positive duration"),
        ("web.hook.sign.header = bad header", "is not a header name"),
        ("web.hook.event_id_header =", "is not a header name"),
    ] {
        let e = error(&format!("# first\n{line}\n"));
        let key = line.split(" =").next().unwrap_or_default();
        assert!(
            e.starts_with(&format!("emqx_web_hook.conf:2: {key}: ")) && e.contains(expected),
            "{line}: {e}"
        );
    }
    assert_eq!(
        error("web.hook.retry.max_backoff = 1s\nweb.hook.retry.initial_backoff = 2s\n"),
        "emqx_web_hook.conf:2: web.hook.retry.initial_backoff: web.hook.retry.initial_backoff (2s) is longer than web.hook.retry.max_backoff (1s)"
    );
    assert!(
        error("web.hook.retry.initial_backoff = 2m\n")
            .starts_with("emqx_web_hook.conf:1: web.hook.retry.initial_backoff:")
    );
    assert!(
        error("web.hook.sign.header = x-a\nweb.hook.event_id_header = X_A\n")
            .contains("must differ")
    );
}

#[test]
fn unknown_keys() {
    assert_eq!(
        error("web.hook.url = http://h\n\nweb.hook.pool = 3\n"),
        "emqx_web_hook.conf:3: web.hook.pool: unknown key"
    );
    assert_eq!(problem("webhook.url = http://h\n"), Problem::UnknownKey);
    assert_eq!(
        problem("web.hook.ssl.tls_versions = tlsv1.2\n"),
        Problem::UnknownKey
    );
    assert_eq!(problem("web.hook.URL = http://h\n"), Problem::UnknownKey);
}

#[test]
fn rule_errors() {
    let line2 = |rule: &str| error(&format!("web.hook.url = http://h\n{rule}\n"));
    assert!(
        line2("web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\"").starts_with(
            "emqx_web_hook.conf:2: web.hook.rule.message.publish.1: rule is not valid JSON: "
        )
    );
    assert!(
        line2("web.hook.rule.message.publish.1 = on_message_publish")
            .contains("rule is not valid JSON")
    );
    assert!(
        line2("web.hook.rule.message.deliver.1 = {\"action\": \"on_message_deliver\"}")
            .starts_with("emqx_web_hook.conf:2: web.hook.rule.message.deliver.1: rule on unknown event `message.deliver` (events: client.connect, ")
    );
    assert_eq!(
        problem(
            "web.hook.url = http://h\nweb.hook.rule.session.created.1 = {\"action\": \"on_session_created\"}"
        ),
        Problem::UnknownEvent("session.created".into())
    );
    assert_eq!(
        line2("web.hook.rule.client.connected.1 = {\"action\": \"on_client_connect\"}"),
        "emqx_web_hook.conf:2: web.hook.rule.client.connected.1: action `on_client_connect` does not belong to event `client.connected`; expected `on_client_connected`"
    );
    for (rule, expected) in [
        (
            "web.hook.rule.message.publish.1 = []",
            "expected a JSON object",
        ),
        (
            "web.hook.rule.message.publish.1 = {}",
            "missing `action` (expected \"on_message_publish\")",
        ),
        (
            "web.hook.rule.message.publish.1 = {\"action\": 1}",
            "`action` must be a string",
        ),
        (
            "web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\", \"topic\": [\"a\"]}",
            "`topic` must be a string",
        ),
        (
            "web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\", \"topics\": \"a\"}",
            "unknown field `topics`",
        ),
        (
            "web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\", \"topic\": \"a/#/b\"}",
            "`a/#/b` is not a valid topic filter",
        ),
        (
            "web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\", \"topic\": \"\"}",
            "`` is not a valid topic filter",
        ),
        (
            "web.hook.rule.client.subscribe.1 = {\"action\": \"on_client_subscribe\", \"topic\": \"$share/g/a\"}",
            "without the $share/<group>/ prefix",
        ),
        (
            "web.hook.rule.message.publish. = {\"action\": \"on_message_publish\"}",
            "is not a rule number",
        ),
        (
            "web.hook.rule.message.publish.a.b = {\"action\": \"on_message_publish\"}",
            "unknown event `message.publish.a`",
        ),
    ] {
        let e = line2(rule);
        let key = rule.split(" =").next().unwrap_or_default();
        assert!(
            e.starts_with(&format!("emqx_web_hook.conf:2: {key}: ")) && e.contains(expected),
            "{rule}: {e}"
        );
    }
    // A later rule with the same key replaces the earlier one.
    let c = with_url(
        "web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\", \"topic\": \"a\"}\n\
         web.hook.rule.message.publish.1 = {\"action\": \"on_message_publish\", \"topic\": \"b\"}\n",
    );
    assert_eq!(c.rules.len(), 1);
    assert_eq!(
        c.rules.of(EventKind::MessagePublish)[0].topic.as_deref(),
        Some("b")
    );
    // Any rule name after the event works, as in EMQX.
    let c =
        with_url("web.hook.rule.message.publish.first = {\"action\": \"on_message_publish\"}\n");
    assert_eq!(c.rules.len(), 1);
    // `topic` on a connection event is ignored, with a warning.
    let c = with_url(
        "web.hook.rule.client.connected.1 = {\"action\": \"on_client_connected\", \"topic\": \"a\"}\n",
    );
    assert_eq!(c.rules.of(EventKind::ClientConnected)[0].topic, None);
    assert!(
        warnings(&c)
            .iter()
            .any(|w| w.contains("`topic` is ignored for client.connected rules"))
    );
}

#[test]
fn from_pairs_names_its_origins() {
    let env = Origin::new("environment variable HERALD_WEBHOOK__POOL_SIZE");
    let toml = |line| Origin::at("herald.toml", line);
    let c = WebhookConfig::from_pairs([
        ("web.hook.url", " http://[::1]:9000/hook ", toml(12)),
        (
            "web.hook.rule.message.publish.1",
            "{\"action\": \"on_message_publish\"}",
            toml(13),
        ),
        ("web.hook.pool_size", "8", env.clone()),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pool_size, 8);
    assert_eq!(c.rules.len(), 1);
    let e = WebhookConfig::from_pairs([("web.hook.pool_size", "zero", env)])
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some(
            "environment variable HERALD_WEBHOOK__POOL_SIZE: web.hook.pool_size: `zero` is not an integer from 1 to 4096"
        )
    );
    let e =
        WebhookConfig::from_pairs([(String::from("web.hook.nope"), String::from("1"), toml(3))])
            .err();
    assert_eq!(e.as_ref().and_then(|e| e.origin()), Some(&toml(3)));
    assert_eq!(
        e.map(|e| e.to_string()).as_deref(),
        Some("herald.toml:3: web.hook.nope: unknown key")
    );
}

#[test]
fn load_names_the_file() {
    let missing = std::env::temp_dir().join("herald-webhook-test-no-such-file.conf");
    match WebhookConfig::load(&missing) {
        Err(e @ ConfError::Read { .. }) => {
            assert!(
                e.to_string()
                    .contains("herald-webhook-test-no-such-file.conf"),
                "{e}"
            )
        }
        other => panic!("{other:?}"),
    }
    let path =
        std::env::temp_dir().join(format!("herald-webhook-test-{}.conf", std::process::id()));
    let written = std::fs::write(&path, "web.hook.url = http://h\nweb.hook.bogus = 1\n");
    assert!(written.is_ok());
    let e = WebhookConfig::load(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    assert_eq!(
        e,
        format!("{}:2: web.hook.bogus: unknown key", path.display())
    );
}
