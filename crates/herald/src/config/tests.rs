//! Loading `HeraldConfig` through every layer: defaults, file, environment,
//! flags, and the errors each names.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::*;

/// Builds an environment from `NAME=value` pairs.
fn env(vars: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    vars.iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect()
}

fn from_file(text: &str, vars: &[(&str, &str)], flags: &Flags) -> anyhow::Result<Loaded> {
    load_from(Some((Path::new("test.toml"), text)), env(vars), flags)
}

fn err(result: anyhow::Result<Loaded>) -> String {
    match result {
        Ok(loaded) => panic!("expected an error, got {:?}", loaded.config),
        Err(e) => format!("{e:#}"),
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

#[test]
fn nothing_given_means_defaults() {
    let loaded = load(None, env(&[]), &Flags::default()).expect("defaults");
    assert_eq!(loaded.config, HeraldConfig::default());
    assert_eq!(loaded.source_of("mqtt.max_qos"), None);
}

#[test]
fn unrelated_variables_are_ignored() {
    let loaded = load(
        None,
        env(&[("PATH", "/bin"), ("HERALDRY", "x"), ("RUST_LOG", "debug")]),
        &Flags::default(),
    )
    .expect("defaults");
    assert_eq!(loaded.config, HeraldConfig::default());
}

#[test]
fn config_file_variable_is_not_a_setting() {
    let loaded =
        load(None, env(&[(CONFIG_FILE_ENV, "x.toml")]), &Flags::default()).expect("ignored");
    assert_eq!(loaded.config, HeraldConfig::default());
}

#[test]
fn file_overrides_defaults() {
    let loaded = from_file(
        "data_dir = \"/var/lib/herald\"\n[mqtt]\nmax_inflight = 16\n",
        &[],
        &Flags::default(),
    )
    .expect("valid");
    assert_eq!(loaded.config.broker.mqtt.max_inflight, 16);
    assert_eq!(loaded.config.broker.data_dir, Path::new("/var/lib/herald"));
    assert_eq!(loaded.config.broker.mqtt.receive_maximum, 128);
    assert_eq!(
        loaded.source_of("mqtt.max_inflight"),
        Some("config file test.toml")
    );
}

#[test]
fn environment_overrides_file() {
    let loaded = from_file(
        "[mqtt]\nmax_inflight = 16\nmax_qos = 1\n",
        &[("HERALD_MQTT__MAX_INFLIGHT", "64")],
        &Flags::default(),
    )
    .expect("valid");
    assert_eq!(loaded.config.broker.mqtt.max_inflight, 64);
    assert_eq!(loaded.config.broker.mqtt.max_qos, 1, "other file keys stay");
    assert_eq!(
        loaded.source_of("mqtt.max_inflight"),
        Some("environment variable HERALD_MQTT__MAX_INFLIGHT")
    );
}

#[test]
fn flags_override_environment_and_file() {
    let flags = Flags {
        listen: vec![addr("127.0.0.1:2883")],
        data_dir: Some(PathBuf::from("/flag")),
        webhook_conf: Some("/flag/hook.conf".into()),
        ..Flags::default()
    };
    let loaded = from_file(
        "data_dir = \"/file\"\nwebhook_conf = \"/file/hook.conf\"\n[listener]\nbind = [\"127.0.0.1:1883\"]\n",
        &[
            ("HERALD_DATA_DIR", "/env"),
            ("HERALD_LISTENER__BIND", "127.0.0.1:3883"),
        ],
        &flags,
    )
    .expect("valid");
    assert_eq!(loaded.config.broker.data_dir, Path::new("/flag"));
    assert_eq!(
        loaded.config.broker.listener.bind,
        vec![addr("127.0.0.1:2883")]
    );
    assert_eq!(
        loaded.config.webhook_conf.as_deref(),
        Some(Path::new("/flag/hook.conf"))
    );
    assert_eq!(loaded.source_of("listener.bind"), Some("--listen"));
}

#[test]
fn empty_flags_leave_file_values() {
    let loaded = from_file(
        "[listener]\nbind = [\"127.0.0.1:1883\"]\n",
        &[],
        &Flags::default(),
    )
    .expect("valid");
    assert_eq!(
        loaded.config.broker.listener.bind,
        vec![addr("127.0.0.1:1883")]
    );
}

#[test]
fn env_list_is_comma_separated() {
    let loaded = load(
        None,
        env(&[("HERALD_LISTENER__BIND", "127.0.0.1:1883,[::1]:1883")]),
        &Flags::default(),
    )
    .expect("valid");
    assert_eq!(
        loaded.config.broker.listener.bind,
        vec![addr("127.0.0.1:1883"), addr("[::1]:1883")]
    );
}

#[test]
fn env_list_accepts_toml_array_and_keeps_items_as_strings() {
    let loaded = load(
        None,
        env(&[
            ("HERALD_AUTHZ__DENY_PUBLISH", "[\"a,b/#\", \"c\"]"),
            ("HERALD_AUTHZ__DENY_SUBSCRIBE", "$SYS/#, 1, true"),
        ]),
        &Flags::default(),
    )
    .expect("valid");
    assert_eq!(loaded.config.broker.authz.deny_publish, vec!["a,b/#", "c"]);
    assert_eq!(
        loaded.config.broker.authz.deny_subscribe,
        vec!["$SYS/#", "1", "true"]
    );
}

#[test]
fn env_empty_list_clears_it() {
    let loaded = from_file(
        "[authz]\ndeny_publish = [\"a\"]\n",
        &[("HERALD_AUTHZ__DENY_PUBLISH", "")],
        &Flags::default(),
    )
    .expect("valid");
    assert!(loaded.config.broker.authz.deny_publish.is_empty());
}

#[test]
fn env_scalars_of_each_type() {
    let loaded = load(
        None,
        env(&[
            ("HERALD_DATA_DIR", "/x"),
            ("HERALD_WEBHOOK_CONF", "/etc/herald/emqx_web_hook.conf"),
            ("HERALD_MQTT__QUEUE_QOS0", "false"),
            ("HERALD_SYS__INTERVAL", "0"),
            ("herald_mqtt__max_qos", "1"),
        ]),
        &Flags::default(),
    )
    .expect("valid");
    let c = &loaded.config;
    assert_eq!(c.broker.data_dir, Path::new("/x"));
    assert_eq!(
        c.webhook_conf.as_deref(),
        Some(Path::new("/etc/herald/emqx_web_hook.conf"))
    );
    assert!(!c.broker.mqtt.queue_qos0);
    assert_eq!(c.broker.sys.interval, 0);
    assert_eq!(c.broker.mqtt.max_qos, 2, "lower-case prefix is not ours");
}

#[test]
fn env_string_that_looks_like_toml_stays_a_string() {
    let loaded = load(
        None,
        env(&[("HERALD_DATA_DIR", "123"), ("HERALD_WEBHOOK_CONF", "true")]),
        &Flags::default(),
    )
    .expect("valid");
    assert_eq!(loaded.config.broker.data_dir, Path::new("123"));
    assert_eq!(
        loaded.config.webhook_conf.as_deref(),
        Some(Path::new("true"))
    );
}

#[test]
fn env_unknown_key_names_the_variable() {
    let msg = err(load(
        None,
        env(&[("HERALD_MQTT__MAX_INFLIGT", "64")]),
        &Flags::default(),
    ));
    assert!(
        msg.starts_with("environment variable HERALD_MQTT__MAX_INFLIGT (key mqtt.max_infligt): unknown field `max_infligt`"),
        "{msg}"
    );
    // A variable naming no section is not ours (Kubernetes' HERALD_PORT):
    // ignored with a warning.
    for name in ["HERALD_NOPE", "HERALD_NOPE__X"] {
        assert!(load(None, env(&[(name, "1")]), &Flags::default()).is_ok());
    }
}

#[test]
fn env_unparsable_value_names_the_variable() {
    let msg = err(load(
        None,
        env(&[("HERALD_MQTT__MAX_INFLIGHT", "lots")]),
        &Flags::default(),
    ));
    assert_eq!(
        msg,
        "environment variable HERALD_MQTT__MAX_INFLIGHT (key mqtt.max_inflight): invalid type: string \"lots\", expected u16"
    );
    let msg = err(load(
        None,
        env(&[("HERALD_MQTT__MAX_INFLIGHT", "70000")]),
        &Flags::default(),
    ));
    assert_eq!(
        msg,
        "environment variable HERALD_MQTT__MAX_INFLIGHT (key mqtt.max_inflight): invalid value: integer `70000`, expected u16"
    );
    let msg = err(load(
        None,
        env(&[("HERALD_LISTENER__BIND", "localhost:1883")]),
        &Flags::default(),
    ));
    assert!(
        msg.starts_with("environment variable HERALD_LISTENER__BIND (key listener.bind): invalid socket address syntax"),
        "{msg}"
    );
}

#[test]
fn env_malformed_names_are_rejected() {
    for name in [
        "HERALD_",
        "HERALD_MQTT__",
        "HERALD___X",
        "HERALD_MQTT____MAX_QOS",
    ] {
        let msg = err(load(None, env(&[(name, "1")]), &Flags::default()));
        assert_eq!(
            msg,
            format!(
                "environment variable {name}: expected HERALD_<SECTION>__<KEY> or HERALD_<KEY>"
            )
        );
    }
}

#[test]
fn env_cannot_descend_into_a_setting() {
    let msg = err(from_file(
        "data_dir = \"/d\"\n",
        &[("HERALD_DATA_DIR__X", "1")],
        &Flags::default(),
    ));
    assert_eq!(
        msg,
        "environment variable HERALD_DATA_DIR__X: data_dir is a setting, not a section"
    );
}

#[test]
fn env_section_given_a_scalar_is_rejected() {
    let msg = err(load(None, env(&[("HERALD_MQTT", "5")]), &Flags::default()));
    assert!(
        msg.starts_with("environment variable HERALD_MQTT (key mqtt): invalid type"),
        "{msg}"
    );
}

#[cfg(unix)]
#[test]
fn env_non_utf8_value_is_rejected() {
    use std::os::unix::ffi::OsStringExt;
    let vars = vec![(
        OsString::from("HERALD_DATA_DIR"),
        OsString::from_vec(vec![0x2f, 0xff]),
    )];
    let msg = err(load(None, vars, &Flags::default()));
    assert_eq!(
        msg,
        "environment variable HERALD_DATA_DIR: value is not valid UTF-8"
    );
}

#[test]
fn file_syntax_error_names_file_line_and_column() {
    let msg = err(from_file(
        "[mqtt]\nmax_inflight = = 3\n",
        &[],
        &Flags::default(),
    ));
    assert!(msg.starts_with("config file test.toml"), "{msg}");
    assert!(msg.contains("line 2, column"), "{msg}");
}

#[test]
fn file_unknown_key_names_file_line_and_key() {
    let msg = err(from_file(
        "# comment\n[mqtt]\nmax_infligh = 64\n",
        &[],
        &Flags::default(),
    ));
    assert!(
        msg.starts_with(
            "config file test.toml, key mqtt.max_infligh: TOML parse error at line 3, column 1"
        ),
        "{msg}"
    );
    assert!(msg.contains("unknown field `max_infligh`"), "{msg}");
}

#[test]
fn file_unknown_section_names_it() {
    let msg = err(from_file("[mqt]\nmax_qos = 1\n", &[], &Flags::default()));
    assert!(msg.starts_with("config file test.toml, key mqt"), "{msg}");
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn file_bad_value_names_file_line_and_key() {
    let msg = err(from_file(
        "[listener]\nmax_connections = 10\nbind = [\"nowhere\"]\n",
        &[],
        &Flags::default(),
    ));
    assert!(
        msg.starts_with(
            "config file test.toml, key listener.bind: TOML parse error at line 3, column"
        ),
        "{msg}"
    );
    assert!(msg.contains("invalid socket address syntax"), "{msg}");
}

#[test]
fn unreadable_file_names_it() {
    let path = std::env::temp_dir().join("herald-config-test-does-not-exist.toml");
    let msg = err(load(Some(&path), env(&[]), &Flags::default()));
    assert!(
        msg.starts_with(&format!("cannot read config file {}: ", path.display())),
        "{msg}"
    );
}

#[test]
fn validation_error_names_key_and_source() {
    let loaded = load(
        None,
        env(&[("HERALD_MQTT__MAX_QOS", "3")]),
        &Flags::default(),
    )
    .expect("deserializes");
    let msg = format!("{:#}", loaded.validate().expect_err("invalid"));
    assert_eq!(
        msg,
        "mqtt.max_qos = 3: must be 0, 1 or 2 (set by environment variable HERALD_MQTT__MAX_QOS)"
    );

    let loaded = from_file("[mqtt]\nmax_qos = 3\n", &[], &Flags::default()).expect("parses");
    let msg = format!("{:#}", loaded.validate().expect_err("invalid"));
    assert_eq!(
        msg,
        "mqtt.max_qos = 3: must be 0, 1 or 2 (set by config file test.toml)"
    );

    let flags = Flags {
        listen: vec![addr("127.0.0.1:1883"), addr("127.0.0.1:1883")],
        ..Flags::default()
    };
    let loaded = load(None, env(&[]), &flags).expect("loads");
    let msg = format!("{:#}", loaded.validate().expect_err("invalid"));
    assert_eq!(
        msg,
        "listener.bind = \"127.0.0.1:1883\": listed more than once (set by --listen)"
    );
}

#[test]
fn whole_section_from_env_is_its_keys_source() {
    let loaded = load(
        None,
        env(&[("HERALD_MQTT", "{ max_qos = 3 }")]),
        &Flags::default(),
    )
    .expect("deserializes");
    assert_eq!(
        loaded.source_of("mqtt.max_qos"),
        Some("environment variable HERALD_MQTT")
    );
}

#[test]
fn defaults_round_trip_through_toml() {
    let full = HeraldConfig {
        webhook_conf: Some("/etc/hook.conf".into()),
        ..HeraldConfig::default()
    };
    for config in [HeraldConfig::default(), full] {
        let text = toml::to_string(&config).expect("serializable");
        let parsed: HeraldConfig = toml::from_str(&text).expect("parses back");
        assert_eq!(parsed, config);
    }
    let parsed: HeraldConfig = toml::from_str("").expect("empty document");
    assert_eq!(parsed, HeraldConfig::default());
}

#[test]
fn every_top_level_key_is_serialized_once() {
    let config = HeraldConfig {
        webhook_conf: Some("x".into()),
        ..HeraldConfig::default()
    };
    let table = toml::Table::try_from(&config).expect("serializable");
    let mut serialized: Vec<&str> = table.keys().map(String::as_str).collect();
    let mut known = ALL_KEYS.clone();
    serialized.sort_unstable();
    known.sort_unstable();
    assert_eq!(serialized, known);
    for own in OWN_KEYS {
        assert!(!Config::KEYS.contains(own), "{own} is also the broker's");
    }
}

#[test]
fn unknown_top_level_key_lists_the_known_ones() {
    let err = toml::from_str::<HeraldConfig>("webhook_cnf = \"x\"\n").expect_err("unknown");
    assert_eq!(
        err.message(),
        "unknown field `webhook_cnf`, expected one of `data_dir`, `listener`, `mqtt`, \
         `sys`, `retained`, `authz`, `auth`, `acl`, `metrics`, `persistence`, `webhook_conf`, `webhook`, `log`"
    );
}

#[test]
fn webhook_table_holds_strings_integers_booleans_and_tables() {
    let parsed: HeraldConfig = toml::from_str(
        "[webhook]\n\"web.hook.url\" = \"http://h/\"\npool_size = 8\nssl.verify = false\n",
    )
    .expect("valid");
    let w = &parsed.webhook;
    assert_eq!(
        w.get("web.hook.url"),
        Some(&WebhookValue::String("http://h/".into()))
    );
    assert_eq!(w.get("pool_size"), Some(&WebhookValue::Integer(8)));
    let Some(WebhookValue::Table(ssl)) = w.get("ssl") else {
        panic!("ssl is a table: {w:?}");
    };
    assert_eq!(ssl.get("verify"), Some(&WebhookValue::Boolean(false)));
    let err = toml::from_str::<HeraldConfig>("[webhook]\npool_size = 1.5\n").expect_err("float");
    assert!(err.message().contains("a string, an integer"), "{err}");
    let text = toml::to_string(&parsed).expect("serializable");
    assert_eq!(
        toml::from_str::<HeraldConfig>(&text).expect("parses back"),
        parsed
    );
}

#[test]
fn webhook_conf_must_not_be_empty() {
    let config = HeraldConfig {
        webhook_conf: Some(Default::default()),
        ..HeraldConfig::default()
    };
    assert_eq!(
        config.validate().map_err(|e| e.to_string()),
        Err("webhook_conf = \"\": must not be empty".to_owned())
    );
    let msg = format!(
        "{:#}",
        load(None, env(&[("HERALD_WEBHOOK_CONF", "")]), &Flags::default())
            .expect("deserializes")
            .validate()
            .expect_err("invalid")
    );
    assert_eq!(
        msg,
        "webhook_conf = \"\": must not be empty (set by environment variable HERALD_WEBHOOK_CONF)"
    );
}

#[test]
fn env_reaches_listener_subsections() {
    let loaded = load(
        None,
        env(&[
            ("HERALD_LISTENER__TLS__BIND", "0.0.0.0:8883,[::]:8884"),
            ("HERALD_LISTENER__TLS__CERTFILE", "/etc/herald/cert.pem"),
            ("HERALD_LISTENER__TLS__VERIFY_PEER", "true"),
            ("HERALD_LISTENER__TLS__PEER_CERT_AS_USERNAME", "cn"),
            (
                "HERALD_LISTENER__WS__PROXY_ADDRESS_HEADER",
                "x-forwarded-for",
            ),
            ("HERALD_LISTENER__WSS__KEYFILE", "/etc/herald/wss-key.pem"),
        ]),
        &Flags::default(),
    )
    .expect("loads");
    let l = &loaded.config.broker.listener;
    assert_eq!(l.tls.bind, vec![addr("0.0.0.0:8883"), addr("[::]:8884")]);
    assert_eq!(l.tls.certfile, Path::new("/etc/herald/cert.pem"));
    assert!(l.tls.verify_peer);
    assert_eq!(
        l.tls.peer_cert_as_username,
        herald_broker::config::PeerCertAsUsername::Cn
    );
    assert_eq!(l.ws.proxy_address_header, "x-forwarded-for");
    assert_eq!(
        l.wss.keyfile.as_deref(),
        Some(Path::new("/etc/herald/wss-key.pem"))
    );
    assert_eq!(
        loaded.source_of("listener.tls.bind"),
        Some("environment variable HERALD_LISTENER__TLS__BIND")
    );
    let err = load(
        None,
        env(&[("HERALD_LISTENER__TLS__PEER_CERT_AS_USERNAME", "email")]),
        &Flags::default(),
    )
    .expect_err("not a choice");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("HERALD_LISTENER__TLS__PEER_CERT_AS_USERNAME"),
        "{msg}"
    );
}

#[test]
fn listen_flags_set_each_listener_kind() {
    let flags = Flags {
        listen_tls: vec![addr("127.0.0.1:8883")],
        listen_ws: vec![addr("127.0.0.1:8083"), addr("[::1]:8083")],
        listen_wss: vec![addr("127.0.0.1:8084")],
        ..Flags::default()
    };
    let loaded = load(
        None,
        env(&[("HERALD_LISTENER__WS__BIND", "127.0.0.1:9083")]),
        &flags,
    )
    .expect("loads");
    let l = &loaded.config.broker.listener;
    assert_eq!(l.tls.bind, vec![addr("127.0.0.1:8883")]);
    assert_eq!(l.ws.bind, vec![addr("127.0.0.1:8083"), addr("[::1]:8083")]);
    assert_eq!(l.wss.bind, vec![addr("127.0.0.1:8084")]);
    assert_eq!(l.bind, HeraldConfig::default().broker.listener.bind);
    // Without certfile the TLS listener is refused, naming the key.
    let msg = format!("{:#}", loaded.validate().expect_err("no certificate"));
    assert!(
        msg.starts_with("listener.tls.certfile = \"\": a file is required"),
        "{msg}"
    );
}

#[test]
fn env_naming_no_section_is_ignored_but_an_unknown_key_of_a_known_one_is_not() {
    // What Kubernetes injects for a Service named herald.
    let loaded = from_file(
        "",
        &[
            ("HERALD_PORT", "tcp://10.0.0.1:1883"),
            ("HERALD_PORT_1883_TCP_ADDR", "10.0.0.1"),
            ("HERALD_SERVICE_HOST", "10.0.0.1"),
            ("HERALD_MQTT__MAX_INFLIGHT", "64"),
        ],
        &Flags::default(),
    )
    .expect("unknown sections are ignored");
    assert_eq!(loaded.config.broker.mqtt.max_inflight, 64);
    let err = from_file("", &[("HERALD_MQTT__MAX_INFLGHT", "64")], &Flags::default())
        .expect_err("a known section with an unknown key");
    assert!(
        format!("{err:#}").contains("HERALD_MQTT__MAX_INFLGHT"),
        "{err:#}"
    );
}

#[test]
fn certificate_paths_in_a_file_are_relative_to_its_folder() {
    let text = "[listener.tls]\ncertfile = \"certs/server.pem\"\nkeyfile = \"./certs/server.key\"\n\
                cacertfile = \"/etc/ssl/ca.pem\"\n[listener.wss]\nkeyfile = \"wss.key\"\n";
    let loaded = load_from(
        Some((Path::new("/etc/herald/herald.toml"), text)),
        env(&[("HERALD_LISTENER__WSS__CERTFILE", "from-env.pem")]),
        &Flags::default(),
    )
    .expect("valid");
    let l = &loaded.config.broker.listener;
    assert_eq!(l.tls.certfile, Path::new("/etc/herald/certs/server.pem"));
    assert_eq!(l.tls.keyfile, Path::new("/etc/herald/certs/server.key"));
    assert_eq!(l.tls.cacertfile, Path::new("/etc/ssl/ca.pem"));
    assert_eq!(
        l.wss.keyfile.as_deref(),
        Some(Path::new("/etc/herald/wss.key"))
    );
    // The environment's are relative to the working directory.
    assert_eq!(l.wss.certfile.as_deref(), Some(Path::new("from-env.pem")));
}
