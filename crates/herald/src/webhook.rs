//! The WebHook's configuration as the binary assembles it: the EMQX
//! `emqx_web_hook.conf` named by `webhook_conf` (or `--webhook-conf`), with
//! the `[webhook]` table of Herald's own configuration merged over it.
//!
//! Keys of the table are the EMQX keys with or without their `web.hook.`
//! prefix (`url`, `"web.hook.url"`, `ssl.verify`, `[webhook.headers]`);
//! values are strings, integers or booleans. Both sources go through
//! [`WebhookConfig`]'s own reader and parser (the file is read once, by
//! `herald_webhook::conf::tokenizer`), so they accept the same keys and
//! values, and every error names the file (or variable), the line and the
//! key. This module decides nothing about what a key means.

use herald_webhook::conf::ConfError;
use herald_webhook::{Origin, WebHook, WebhookConfig};
use std::path::PathBuf;

use crate::config::{Flags, Loaded, WebhookValue};

/// The prefix every WebHook key has in EMQX's file.
const PREFIX: &str = "web.hook.";

/// The WebHook configuration `loaded` describes, or `None` when it names no
/// EMQX file and has no `[webhook]` keys. A returned configuration may
/// still be off (no `web.hook.url`). The table's keys apply after the
/// file's last line, so they win.
pub fn load(loaded: &Loaded) -> Result<Option<WebhookConfig>, ConfError> {
    let table = table_pairs(loaded);
    match &loaded.config.webhook_conf {
        Some(path) => WebhookConfig::load_with(path, table).map(Some),
        None if table.is_empty() => Ok(None),
        None => WebhookConfig::from_pairs(table).map(Some),
    }
}

/// Where the configuration came from, to read it again on SIGHUP.
#[derive(Debug, Clone)]
pub struct Source {
    /// The `--config` file.
    pub file: Option<PathBuf>,
    /// The command-line flags.
    pub flags: Flags,
}

/// Reads the WebHook configuration again from `source` (the files, the
/// environment of the process, the flags) and hands it to `webhook`. A
/// configuration that cannot be read or used changes nothing; the error
/// says why.
pub fn reload(webhook: &WebHook, source: &Source) -> Result<(), String> {
    let loaded = crate::config::load(source.file.as_deref(), std::env::vars_os(), &source.flags)
        .map_err(|e| format!("{e:#}"))?;
    let config = match load(&loaded) {
        Ok(Some(config)) if config.is_enabled() => config,
        Ok(_) => {
            return Err(
                "web.hook.url is no longer set (turning the WebHook off needs a restart)".into(),
            );
        }
        Err(e) => return Err(e.to_string()),
    };
    config.log_warnings();
    webhook.reload(&config).map_err(|e| e.to_string())
}

/// The `[webhook]` table as `(web.hook.<key>, value, origin)`, the origin
/// being `herald.toml:<line>` or the environment variable that set it.
fn table_pairs(loaded: &Loaded) -> Vec<(String, String, Origin)> {
    let mut pairs = Vec::new();
    for (key, value) in &loaded.config.webhook {
        flatten(loaded, key, value, &mut pairs);
    }
    pairs
}

fn flatten(
    loaded: &Loaded,
    key: &str,
    value: &WebhookValue,
    out: &mut Vec<(String, String, Origin)>,
) {
    if let WebhookValue::Table(inner) = value {
        for (k, v) in inner {
            flatten(loaded, &format!("{key}.{k}"), v, out);
        }
        return;
    }
    let Some(text) = value.as_text() else {
        return;
    };
    let origin = match loaded.location_of(&format!("webhook.{key}")) {
        Some((file, Some(line))) => Origin::at(file, line),
        Some((source, None)) => Origin::new(source),
        None => Origin::new("[webhook]"),
    };
    let full = if key.starts_with(PREFIX) {
        key.to_owned()
    } else {
        format!("{PREFIX}{key}")
    };
    out.push((full, text, origin));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Flags, load_from};
    use std::ffi::OsString;
    use std::path::Path;

    fn loaded(toml: &str, env: &[(&str, &str)], flags: &Flags) -> Loaded {
        let env: Vec<(OsString, OsString)> = env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect();
        load_from(Some((Path::new("herald.toml"), toml)), env, flags)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn temp_conf(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!(
            "herald-bin-webhook-{}-{name}.conf",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    #[test]
    fn nothing_configured_is_none() {
        let l = loaded("", &[], &Flags::default());
        assert!(load(&l).expect("valid").is_none());
    }

    #[test]
    fn table_keys_with_and_without_prefix() {
        let l = loaded(
            "[webhook]\n\"web.hook.url\" = \"http://127.0.0.1:9000/hook\"\npool_size = 4\nssl.verify = false\nbody.encoding_of_payload_field = \"base64\"\n\n[webhook.headers]\nX_Token = \"abc\"\n\n[webhook.rule.client.connect]\n1 = '{\"action\": \"on_client_connect\"}'\n",
            &[],
            &Flags::default(),
        );
        let c = load(&l).expect("valid").expect("configured");
        assert_eq!(
            c.url.as_ref().map(ToString::to_string).as_deref(),
            Some("http://127.0.0.1:9000/hook")
        );
        assert_eq!(c.pool_size, 4);
        assert!(!c.tls.verify);
        assert_eq!(c.payload_encoding, herald_webhook::PayloadEncoding::Base64);
        assert_eq!(c.headers.len(), 1);
        assert_eq!(c.headers[0].name, "x-token");
        assert_eq!(c.rules.len(), 1);
    }

    #[test]
    fn table_errors_name_herald_toml_line_and_key() {
        let l = loaded(
            "data_dir = \"/tmp\"\n[webhook]\nurl = \"http://h/\"\npool_size = 0\n",
            &[],
            &Flags::default(),
        );
        let err = load(&l).expect_err("pool_size 0").to_string();
        assert!(
            err.starts_with("herald.toml:4: web.hook.pool_size: `0` is not"),
            "{err}"
        );
        let l = loaded(
            "[webhook]\nurl = \"http://h/\"\n",
            &[("HERALD_WEBHOOK__POOL_SIZE", "many")],
            &Flags::default(),
        );
        let err = load(&l).expect_err("pool_size many").to_string();
        assert!(
            err.starts_with("environment variable HERALD_WEBHOOK__POOL_SIZE: web.hook.pool_size:"),
            "{err}"
        );
    }

    #[test]
    fn table_is_merged_over_the_file() {
        let path = temp_conf(
            "merge",
            "web.hook.url = http://127.0.0.1:1/a\nweb.hook.pool_size = 2\nweb.hook.rule.client.connect.1 = {\"action\": \"on_client_connect\"}\n",
        );
        let flags = Flags {
            webhook_conf: Some(path.clone()),
            ..Flags::default()
        };
        let l = loaded("[webhook]\nurl = \"http://127.0.0.1:2/b\"\n", &[], &flags);
        let c = load(&l).expect("valid").expect("configured");
        assert_eq!(
            c.url.as_ref().map(ToString::to_string).as_deref(),
            Some("http://127.0.0.1:2/b"),
            "the table wins"
        );
        assert_eq!(c.pool_size, 2, "file keys stay");
        assert_eq!(c.rules.len(), 1);
        assert!(
            c.warnings
                .iter()
                .any(|w| w.key == "web.hook.url" && w.origin.to_string() == "herald.toml:2"),
            "{:?}",
            c.warnings
        );

        // The file alone.
        let l = loaded("", &[], &flags);
        let c = load(&l).expect("valid").expect("configured");
        assert_eq!(c.pool_size, 2);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn file_errors_name_the_file_line_and_key_also_when_merged() {
        let path = temp_conf(
            "bad",
            "# comment\nweb.hook.url = http://127.0.0.1:1/a\nweb.hook.pool_sise = 2\n",
        );
        let flags = Flags {
            webhook_conf: Some(path.clone()),
            ..Flags::default()
        };
        for toml in ["", "[webhook]\npool_size = 3\n"] {
            let err = load(&loaded(toml, &[], &flags))
                .expect_err("unknown key")
                .to_string();
            assert_eq!(
                err,
                format!("{}:3: web.hook.pool_sise: unknown key", path.display())
            );
        }
        std::fs::write(&path, "web.hook.url = http://127.0.0.1:1/a\nnot a pair\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let err = load(&loaded("[webhook]\npool_size = 3\n", &[], &flags))
            .expect_err("syntax")
            .to_string();
        assert!(
            err.starts_with(&format!("{}:2: expected `key = value`", path.display())),
            "{err}"
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_file_that_is_missing_is_named() {
        let flags = Flags {
            webhook_conf: Some("/nonexistent/hook.conf".into()),
            ..Flags::default()
        };
        for toml in ["", "[webhook]\npool_size = 3\n"] {
            let err = load(&loaded(toml, &[], &flags))
                .expect_err("missing")
                .to_string();
            assert!(err.contains("/nonexistent/hook.conf"), "{err}");
        }
    }
}
