//! The shipped `etc/plugins/emqx_web_hook.conf` parses, and so does every
//! setting it shows commented out.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use herald_webhook::{EventKind, WebhookConfig};
use std::path::Path;

fn example() -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../etc/plugins/emqx_web_hook.conf");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (path.display().to_string(), text)
}

#[test]
fn example_parses_with_every_event_on() {
    let (path, _) = example();
    let c = WebhookConfig::load(Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.url.as_ref().map(ToString::to_string).as_deref(),
        Some("http://127.0.0.1:9000/webhook")
    );
    assert!(EventKind::ALL.iter().all(|k| c.rules.wants(*k)));
    assert_eq!(c.rules.len(), 13);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    // Everything else at its default.
    let defaults = WebhookConfig {
        url: c.url.clone(),
        rules: c.rules.clone(),
        ..WebhookConfig::default()
    };
    assert_eq!(c, defaults);
}

#[test]
fn every_commented_setting_is_valid() {
    let (path, text) = example();
    let mut shown = Vec::new();
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("#web.hook.") {
            Some(rest) => {
                shown.push(rest.split(" =").next().unwrap_or_default().to_owned());
                format!("web.hook.{rest}\n")
            }
            None => format!("{line}\n"),
        })
        .collect();
    // Every key Herald knows appears in the example.
    for key in [
        "headers.authorization",
        "ssl.cacertfile",
        "ssl.certfile",
        "ssl.keyfile",
        "ssl.verify",
        "ssl.server_name_indication",
        "body.profile",
        "node",
        "spool.dir",
        "spool.max_bytes",
        "spool.fsync",
        "spool.mode",
        "request.connect_timeout",
        "request.request_timeout",
        "retry.initial_backoff",
        "retry.max_backoff",
        "max_event_age",
        "batch.size",
        "batch.interval",
        "sign.secret",
        "sign.header",
        "event_id_header",
    ] {
        assert!(shown.iter().any(|s| s == key), "{key} is not shown");
    }
    for key in [
        "web.hook.url",
        "web.hook.api.url",
        "web.hook.body.encoding_of_payload_field",
        "web.hook.encode_payload",
        "web.hook.ssl.cafile",
        "web.hook.pool_size",
        "web.hook.enable_pipelining",
    ] {
        assert!(text.contains(key), "{key} is not documented");
    }
    let c = WebhookConfig::parse(&uncommented, &path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.headers.len(), 2);
    assert!(c.tls.certfile.is_some() && c.tls.keyfile.is_some());
    // The two example rules overlap nothing identical: 15 distinct rules.
    assert_eq!(c.rules.len(), 15);
}
