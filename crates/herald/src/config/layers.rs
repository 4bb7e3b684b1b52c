//! The layering engine: builds a configuration document of any type from
//! its sources, each overriding the one before it: built-in defaults ← the
//! TOML file given with `--config` ← `HERALD_<SECTION>__<KEY>` environment
//! variables. (Command-line flags, the last layer, are applied by the caller
//! on the typed result, recording their source with [`Loaded::set_by`].)
//!
//! Environment overrides are generic: each variable becomes a key path merged
//! into the file's `toml::Table` before the whole is deserialized, so a new
//! setting needs no code here. Every error names where the bad input came
//! from (file and line, or variable). This module knows no setting and
//! decides nothing about what values mean; that is the document's
//! `validate` (see `config/mod.rs`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use herald_broker::config_path;
use serde::Serialize;
use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

/// Environment variables starting with this are configuration overrides.
pub const ENV_PREFIX: &str = "HERALD_";

/// Names the config file (like `--config`); the one `HERALD_` variable that
/// is not a setting.
pub const CONFIG_FILE_ENV: &str = "HERALD_CONFIG";

/// Separates a section from a key in an environment variable name.
const ENV_SEPARATOR: &str = "__";

/// A configuration together with where each explicitly set key came from.
#[derive(Clone, Debug)]
pub struct Loaded<T> {
    /// The merged configuration, not yet validated.
    pub config: T,
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

impl<T> Loaded<T> {
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

    /// Records that `source` (a flag such as `--listen`) set `key` last,
    /// after the caller changed it in [`Loaded::config`].
    pub fn set_by(&mut self, key: &str, source: &str) {
        self.sources.insert(key.to_owned(), source.to_owned());
    }
}

/// What the engine needs of a configuration document: defaults, TOML in,
/// TOML out (the defaults, serialized, tell which keys hold lists).
pub trait Document: Default + Serialize + DeserializeOwned {}

impl<T: Default + Serialize + DeserializeOwned> Document for T {}

/// Loads a document: defaults ← `file` ← `HERALD_*` variables in `env`.
/// `env` is normally `std::env::vars_os()`.
pub fn load<T: Document>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> anyhow::Result<Loaded<T>> {
    let text = match file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?,
        ),
        None => None,
    };
    let file = file.zip(text.as_deref());
    load_from(file, env)
}

/// [`load`] with the file's contents already read.
pub fn load_from<T: Document>(
    file: Option<(&Path, &str)>,
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> anyhow::Result<Loaded<T>> {
    let mut sources = BTreeMap::new();
    let mut lines = BTreeMap::new();
    let mut table = match file {
        Some((path, text)) => {
            let table = parse_file::<T>(path, text)?;
            record_leaves(&table, "", &file_source(path), &mut sources);
            if let Ok(doc) = DeTable::parse(text) {
                record_lines(doc.get_ref(), text, "", &mut lines);
            }
            table
        }
        None => Table::new(),
    };
    apply_env::<T>(&mut table, env, &mut sources)?;
    let config: T = table
        .try_into()
        .map_err(|err: toml::de::Error| anyhow!("configuration: {}", err.message()))?;
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
/// into a `T` so errors carry the file's line, column and key. Path
/// settings (`ConfigPath`) written relative are made relative to the
/// file's folder: the file is read as a `T` with that folder as their
/// base, written back, and every string that changed (only a path
/// setting's does) replaces the file's text. Environment variables and
/// flags, merged later, stay relative to the working directory.
fn parse_file<T: Document>(path: &Path, text: &str) -> anyhow::Result<Table> {
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
    let folder = std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .ok()
        .and_then(|path| path.parent().map(Path::to_owned))
        .unwrap_or_default();
    let typed =
        config_path::relative_to(&folder, || toml::from_str::<T>(text)).map_err(describe)?;
    let mut table = toml::from_str::<Table>(text).map_err(describe)?;
    let written = Table::try_from(&typed).context("writing back the config file's settings")?;
    take_changed_strings(&mut table, &written);
    Ok(table)
}

/// Replaces every string in `table` whose counterpart in `written` differs.
fn take_changed_strings(table: &mut Table, written: &Table) {
    for (key, value) in table.iter_mut() {
        if let Some(new) = written.get(key) {
            take_changed(value, new);
        }
    }
}

fn take_changed(value: &mut Value, new: &Value) {
    match (value, new) {
        (Value::String(old), Value::String(new)) if old != new => old.clone_from(new),
        (Value::Table(old), Value::Table(new)) => take_changed_strings(old, new),
        (Value::Array(old), Value::Array(new)) if old.len() == new.len() => {
            for (old, new) in old.iter_mut().zip(new) {
                take_changed(old, new);
            }
        }
        _ => {}
    }
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
fn apply_env<T: Document>(
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
    let defaults = Table::try_from(T::default()).context("serializing the defaults")?;
    for (name, value) in vars {
        if names_no_section::<T>(&name) {
            // Kubernetes injects HERALD_PORT=tcp://... and the like for a
            // Service named herald: not ours, and no reason to refuse to start.
            tracing::warn!(
                variable = %name,
                "ignoring environment variable {name}: {ENV_PREFIX} followed by no section or key of herald.toml"
            );
            continue;
        }
        let key = apply_env_var::<T>(table, &defaults, &name, &value)?;
        sources.insert(key, format!("environment variable {name}"));
    }
    Ok(())
}

/// Whether the variable's first segment (`PORT` of `HERALD_PORT`, `MQTT` of
/// `HERALD_MQTT__X`) is no top-level key of `T`. A known section with an
/// unknown key is not this case: that stays an error.
fn names_no_section<T: Document>(name: &str) -> bool {
    let first = name
        .get(ENV_PREFIX.len()..)
        .unwrap_or_default()
        .split(ENV_SEPARATOR)
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if first.is_empty() {
        return false;
    }
    let mut probe = Table::new();
    probe.insert(first.clone(), Value::Table(Table::new()));
    probe
        .try_into::<T>()
        .is_err_and(|err| err.message().contains(&format!("unknown field `{first}`")))
}

/// Merges one override into `table` and returns its dotted key path. The
/// value is tried as TOML first and as a plain string second; the first form
/// that yields a valid `T` wins.
fn apply_env_var<T: Document>(
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
        match trial.clone().try_into::<T>() {
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
