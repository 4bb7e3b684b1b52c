//! Loads the broker's [`Config`] from its sources, each overriding the one
//! before it: built-in defaults ← the TOML file given with `--config` ←
//! `HERALD_<SECTION>__<KEY>` environment variables ← command-line flags.
//!
//! Environment overrides are generic: each variable becomes a key path merged
//! into the file's `toml::Table` before the whole is deserialized, so a new
//! setting needs no code here. Every error names where the bad input came
//! from (file and line, variable, or flag). This module decides nothing about
//! what values mean; that is `Config::validate` in herald-broker.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use herald_broker::config::Config;
use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

/// Environment variables starting with this are configuration overrides.
pub const ENV_PREFIX: &str = "HERALD_";

/// Names the config file (like `--config`); the one `HERALD_` variable that
/// is not a setting.
pub const CONFIG_FILE_ENV: &str = "HERALD_CONFIG";

/// Separates a section from a key in an environment variable name.
const ENV_SEPARATOR: &str = "__";

/// The settings that have their own command-line flag; they win over the
/// file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--listen`, replacing `listener.bind` when given at least once.
    pub listen: Vec<SocketAddr>,
    /// `--data-dir`, replacing `data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `--webhook-conf`, replacing `webhook_conf`.
    pub webhook_conf: Option<PathBuf>,
}

/// A configuration together with where each explicitly set key came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The merged configuration, not yet validated.
    pub config: Config,
    /// Dotted key path (`mqtt.max_qos`) to a description of the source that
    /// set it last (`environment variable HERALD_MQTT__MAX_QOS`); keys left at
    /// their default are absent.
    sources: BTreeMap<String, String>,
    /// Dotted key path to its 1-based line in the config file, for the
    /// keys the file set.
    lines: BTreeMap<String, u32>,
    /// The config file, if one was read.
    file: Option<PathBuf>,
}

impl Loaded {
    /// Runs `Config::validate`, adding to its message which source set the
    /// offending key.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.config
            .validate()
            .map_err(|err| match self.source_of(err.key()) {
                Some(source) => anyhow!("{err} (set by {source})"),
                None => anyhow!(err),
            })
    }

    /// Where `key` (a dotted path) was set: `Some((file, Some(line)))` when
    /// the config file set it and the file is still its source, `Some((what,
    /// None))` for another source (an environment variable, a flag), `None`
    /// when it has its default.
    pub fn location_of(&self, key: &str) -> Option<(String, Option<u32>)> {
        let source = self.source_of(key)?;
        if let Some(file) = &self.file
            && source == file_source(file)
        {
            return Some((file.display().to_string(), self.lines.get(key).copied()));
        }
        Some((source.to_owned(), None))
    }

    /// Which source last set `key`, or a section containing it.
    pub fn source_of(&self, key: &str) -> Option<&str> {
        let mut key = key;
        loop {
            if let Some(source) = self.sources.get(key) {
                return Some(source);
            }
            key = key.rsplit_once('.')?.0;
        }
    }
}

/// Loads the configuration: defaults ← `file` ← `HERALD_*` variables in
/// `env` ← `flags`. `env` is normally `std::env::vars_os()`.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
    flags: &Flags,
) -> anyhow::Result<Loaded> {
    let text = match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?,
        ),
        None => None,
    };
    let file = file.zip(text.as_deref());
    load_from(file, env, flags)
}

/// [`load`] with the file's contents already read.
pub(crate) fn load_from(
    file: Option<(&Path, &str)>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
    flags: &Flags,
) -> anyhow::Result<Loaded> {
    let mut sources = BTreeMap::new();
    let mut lines = BTreeMap::new();
    let mut table = match file {
        Some((path, text)) => {
            let table = parse_file(path, text)?;
            record_leaves(&table, "", &file_source(path), &mut sources);
            if let Ok(doc) = DeTable::parse(text) {
                record_lines(doc.get_ref(), text, "", &mut lines);
            }
            table
        }
        None => Table::new(),
    };
    apply_env(&mut table, env, &mut sources)?;
    let mut config: Config = table
        .try_into()
        .map_err(|err: toml::de::Error| anyhow!("configuration: {}", err.message()))?;
    apply_flags(&mut config, flags, &mut sources);
    Ok(Loaded {
        config,
        sources,
        lines,
        file: file.map(|(path, _)| path.to_owned()),
    })
}

/// How the config file is named as a source.
fn file_source(path: &Path) -> String {
    format!("config file {}", path.display())
}

/// Records the 1-based line of every non-table value under `table`, keyed
/// by its dotted path below `prefix` (as [`record_leaves`] names them).
fn record_lines(table: &DeTable<'_>, text: &str, prefix: &str, lines: &mut BTreeMap<String, u32>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        match value.get_ref() {
            DeValue::Table(inner) => record_lines(inner, text, &path, lines),
            _ => {
                let start = key.span().start;
                let line = text
                    .get(..start)
                    .map_or(0, |before| before.matches('\n').count());
                lines.insert(path, u32::try_from(line + 1).unwrap_or(u32::MAX));
            }
        }
    }
}

/// Parses a config file into a table, first checking that it deserializes
/// into a `Config` so errors carry the file's line, column and key.
fn parse_file(path: &Path, text: &str) -> anyhow::Result<Table> {
    let describe = |mut err: toml::de::Error| {
        let key = err
            .span()
            .and_then(|span| key_at(text, span.start))
            .map(|key| format!(", key {key}"))
            .unwrap_or_default();
        err.set_input(Some(text));
        anyhow!(
            "config file {}{key}: {}",
            path.display(),
            err.to_string().trim_end()
        )
    };
    toml::from_str::<Config>(text).map_err(describe)?;
    toml::from_str::<Table>(text).map_err(describe)
}

/// The dotted path of the deepest key in `text` whose name or value covers
/// byte offset `pos`, if `text` parses.
fn key_at(text: &str, pos: usize) -> Option<String> {
    let doc = DeTable::parse(text).ok()?;
    let mut path = Vec::new();
    find_key(doc.get_ref(), pos, &mut path).then(|| path.join("."))
}

/// Depth-first search for [`key_at`]; leaves the found path in `path`.
fn find_key(table: &DeTable<'_>, pos: usize, path: &mut Vec<String>) -> bool {
    let covers =
        |span: std::ops::Range<usize>| span.start <= pos && pos < span.end.max(span.start + 1);
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if let DeValue::Table(inner) = value.get_ref()
            && find_key(inner, pos, path)
        {
            return true;
        }
        if covers(key.span()) || covers(value.span()) {
            return true;
        }
        path.pop();
    }
    false
}

/// Records `source` for every non-table value under `table`, keyed by its
/// dotted path below `prefix`.
fn record_leaves(
    table: &Table,
    prefix: &str,
    source: &str,
    sources: &mut BTreeMap<String, String>,
) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Table(inner) => record_leaves(inner, &path, source, sources),
            _ => {
                sources.insert(path, source.to_owned());
            }
        }
    }
}

/// Merges every `HERALD_*` variable in `env` (except [`CONFIG_FILE_ENV`])
/// into `table`, in name order, rejecting any that is not a valid setting.
fn apply_env(
    table: &mut Table,
    env: impl IntoIterator<Item = (OsString, OsString)>,
    sources: &mut BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let mut vars = Vec::new();
    for (name, value) in env {
        let Some(name) = name.to_str() else {
            let lossy = name.to_string_lossy();
            if lossy.starts_with(ENV_PREFIX) {
                bail!("environment variable {lossy}: name is not valid UTF-8");
            }
            continue;
        };
        if !name.starts_with(ENV_PREFIX) || name == CONFIG_FILE_ENV {
            continue;
        }
        let value = value
            .into_string()
            .map_err(|_| anyhow!("environment variable {name}: value is not valid UTF-8"))?;
        vars.push((name.to_owned(), value));
    }
    if vars.is_empty() {
        return Ok(());
    }
    vars.sort();
    let defaults = Table::try_from(Config::default()).context("serializing the defaults")?;
    for (name, value) in vars {
        let key = apply_env_var(table, &defaults, &name, &value)?;
        sources.insert(key, format!("environment variable {name}"));
    }
    Ok(())
}

/// Merges one override into `table` and returns its dotted key path. The
/// value is tried as TOML first and as a plain string second; the first form
/// that yields a valid `Config` wins.
fn apply_env_var(
    table: &mut Table,
    defaults: &Table,
    name: &str,
    value: &str,
) -> anyhow::Result<String> {
    let path: Vec<String> = name
        .get(ENV_PREFIX.len()..)
        .unwrap_or_default()
        .split(ENV_SEPARATOR)
        .map(str::to_ascii_lowercase)
        .collect();
    if path.iter().any(String::is_empty) {
        bail!(
            "environment variable {name}: expected {ENV_PREFIX}<SECTION>__<KEY> or {ENV_PREFIX}<KEY>"
        );
    }
    let key = path.join(".");
    let is_list = matches!(lookup(defaults, &path), Some(Value::Array(_)));
    let mut first_error = None;
    for candidate in env_candidates(value, is_list) {
        let mut trial = table.clone();
        insert(&mut trial, &path, candidate)
            .map_err(|why| anyhow!("environment variable {name}: {why}"))?;
        match trial.clone().try_into::<Config>() {
            Ok(_) => {
                *table = trial;
                return Ok(key);
            }
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    let why = first_error.map_or_else(String::new, |err| err.message().to_owned());
    bail!("environment variable {name} (key {key}): {why}")
}

/// The values an override may stand for, most specific first: the text as a
/// TOML value, then (for list keys) comma-separated items each as TOML or
/// string, then as plain strings.
fn env_candidates(raw: &str, is_list: bool) -> Vec<Value> {
    let parsed = raw.trim().parse::<Value>().ok();
    if !is_list {
        let mut out: Vec<Value> = parsed.into_iter().collect();
        out.push(Value::String(raw.to_owned()));
        return out;
    }
    let mut out = Vec::new();
    if let Some(array @ Value::Array(_)) = parsed {
        out.push(array);
    }
    let items: Vec<&str> = if raw.trim().is_empty() {
        Vec::new()
    } else {
        raw.split(',').map(str::trim).collect()
    };
    out.push(Value::Array(
        items
            .iter()
            .map(|item| {
                item.parse::<Value>()
                    .unwrap_or_else(|_| Value::String((*item).to_owned()))
            })
            .collect(),
    ));
    out.push(Value::Array(
        items
            .iter()
            .map(|item| Value::String((*item).to_owned()))
            .collect(),
    ));
    out
}

/// The value at `path` in `table`, if any.
fn lookup<'t>(table: &'t Table, path: &[String]) -> Option<&'t Value> {
    let (last, sections) = path.split_last()?;
    let mut table = table;
    for section in sections {
        table = table.get(section)?.as_table()?;
    }
    table.get(last)
}

/// Sets `path` in `table` to `value`, creating sections as needed.
fn insert(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, sections)) = path.split_last() else {
        return Err(String::from("empty key"));
    };
    let mut table = table;
    for (depth, section) in sections.iter().enumerate() {
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        table = entry.as_table_mut().ok_or_else(|| {
            format!(
                "{} is a setting, not a section",
                path.get(..=depth).unwrap_or_default().join(".")
            )
        })?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

/// Applies the command-line flags, the last and strongest source.
fn apply_flags(config: &mut Config, flags: &Flags, sources: &mut BTreeMap<String, String>) {
    if !flags.listen.is_empty() {
        config.listener.bind = flags.listen.clone();
        sources.insert("listener.bind".into(), "--listen".into());
    }
    if let Some(dir) = &flags.data_dir {
        config.data_dir = dir.clone();
        sources.insert("data_dir".into(), "--data-dir".into());
    }
    if let Some(conf) = &flags.webhook_conf {
        config.webhook_conf = Some(conf.clone());
        sources.insert("webhook_conf".into(), "--webhook-conf".into());
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(loaded.config, Config::default());
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
        assert_eq!(loaded.config, Config::default());
    }

    #[test]
    fn config_file_variable_is_not_a_setting() {
        let loaded =
            load(None, env(&[(CONFIG_FILE_ENV, "x.toml")]), &Flags::default()).expect("ignored");
        assert_eq!(loaded.config, Config::default());
    }

    #[test]
    fn file_overrides_defaults() {
        let loaded = from_file(
            "data_dir = \"/var/lib/herald\"\n[mqtt]\nmax_inflight = 16\n",
            &[],
            &Flags::default(),
        )
        .expect("valid");
        assert_eq!(loaded.config.mqtt.max_inflight, 16);
        assert_eq!(loaded.config.data_dir, Path::new("/var/lib/herald"));
        assert_eq!(loaded.config.mqtt.receive_maximum, 128);
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
        assert_eq!(loaded.config.mqtt.max_inflight, 64);
        assert_eq!(loaded.config.mqtt.max_qos, 1, "other file keys stay");
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
            webhook_conf: Some(PathBuf::from("/flag/hook.conf")),
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
        assert_eq!(loaded.config.data_dir, Path::new("/flag"));
        assert_eq!(loaded.config.listener.bind, vec![addr("127.0.0.1:2883")]);
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
        assert_eq!(loaded.config.listener.bind, vec![addr("127.0.0.1:1883")]);
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
            loaded.config.listener.bind,
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
        assert_eq!(loaded.config.authz.deny_publish, vec!["a,b/#", "c"]);
        assert_eq!(
            loaded.config.authz.deny_subscribe,
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
        assert!(loaded.config.authz.deny_publish.is_empty());
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
        assert_eq!(c.data_dir, Path::new("/x"));
        assert_eq!(
            c.webhook_conf.as_deref(),
            Some(Path::new("/etc/herald/emqx_web_hook.conf"))
        );
        assert!(!c.mqtt.queue_qos0);
        assert_eq!(c.sys.interval, 0);
        assert_eq!(c.mqtt.max_qos, 2, "lower-case prefix is not ours");
    }

    #[test]
    fn env_string_that_looks_like_toml_stays_a_string() {
        let loaded = load(
            None,
            env(&[("HERALD_DATA_DIR", "123"), ("HERALD_WEBHOOK_CONF", "true")]),
            &Flags::default(),
        )
        .expect("valid");
        assert_eq!(loaded.config.data_dir, Path::new("123"));
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
        let msg = err(load(None, env(&[("HERALD_NOPE", "1")]), &Flags::default()));
        assert!(
            msg.starts_with("environment variable HERALD_NOPE (key nope): unknown field `nope`"),
            "{msg}"
        );
        let msg = err(load(
            None,
            env(&[("HERALD_NOPE__X", "1")]),
            &Flags::default(),
        ));
        assert!(msg.contains("HERALD_NOPE__X"), "{msg}");
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
}
