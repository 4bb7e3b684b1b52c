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
    for (key, value) in &keys {
        if key == "webhook_conf" {
            continue;
        }
        match (value, example.get(key)) {
            (toml::Value::Table(section), Some(toml::Value::Table(shown))) => {
                for inner in section.keys() {
                    assert!(
                        shown.contains_key(inner),
                        "etc/herald.toml lacks {key}.{inner}"
                    );
                }
            }
            (toml::Value::Table(_), _) => panic!("etc/herald.toml lacks [{key}]"),
            (_, shown) => assert!(shown.is_some(), "etc/herald.toml lacks {key}"),
        }
    }
}
