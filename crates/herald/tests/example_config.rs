//! Keeps `etc/herald.toml` honest: it must parse, hold exactly the defaults,
//! and mention every key, so the example cannot drift from the code.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failed unwrap is a failed assertion

use herald::config::HeraldConfig;

/// The example file shipped in the repository.
const EXAMPLE: &str = include_str!("../../../etc/herald.toml");

#[test]
fn example_parses_to_the_defaults() {
    let parsed: HeraldConfig = match toml::from_str(EXAMPLE) {
        Ok(config) => config,
        Err(err) => panic!("etc/herald.toml does not parse:\n{err}"),
    };
    assert_eq!(parsed, HeraldConfig::default());
    assert_eq!(parsed.validate(), Ok(()));
}

#[test]
fn example_sets_every_key() {
    // webhook_conf is unset by default, so it cannot appear uncommented;
    // set it here so it is serialized, and check its comment instead.
    let full = HeraldConfig {
        webhook_conf: Some("x".into()),
        ..HeraldConfig::default()
    };
    assert!(
        EXAMPLE.contains("\n# webhook_conf = "),
        "etc/herald.toml must show webhook_conf in a comment"
    );
    let keys = toml::Table::try_from(&full).expect("HeraldConfig serializes");
    let example: toml::Table = toml::from_str(EXAMPLE).expect("example parses");
    let mut top = keys;
    top.remove("webhook_conf");
    every_key_shown(&top, &example, "");
    // [listener.wss] takes its TLS settings from [listener.tls] unless it
    // sets them: unset by default, they are shown in comments.
    for key in [
        "certfile",
        "keyfile",
        "cacertfile",
        "verify_peer",
        "fail_if_no_peer_cert",
        "peer_cert_as_username",
    ] {
        let wss = EXAMPLE
            .split("[listener.wss]")
            .nth(1)
            .expect("etc/herald.toml has [listener.wss]");
        assert!(
            wss.contains(&format!("\n# {key} = ")),
            "etc/herald.toml must show listener.wss.{key} in a comment"
        );
    }
}

/// Asserts every key of `keys` (a serialized default section) is in
/// `shown`, recursing into sub-sections.
fn every_key_shown(keys: &toml::Table, shown: &toml::Table, prefix: &str) {
    for (key, value) in keys {
        let path = format!("{prefix}{key}");
        match (value, shown.get(key)) {
            (toml::Value::Table(section), Some(toml::Value::Table(inner))) => {
                every_key_shown(section, inner, &format!("{path}."));
            }
            (toml::Value::Table(_), _) => panic!("etc/herald.toml lacks [{path}]"),
            (_, found) => assert!(found.is_some(), "etc/herald.toml lacks {path}"),
        }
    }
}
