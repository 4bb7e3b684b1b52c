//! The dead-letter file: events the WebHook gave up on (answered with a
//! status that is not retried, or older than `web.hook.max_event_age`) are
//! kept here instead of being dropped, one JSON object per line:
//!
//! ```json
//! {"id":"<event id>","action":"message_publish","client_id":"dev-1","body":{...},
//!  "status":400,"response":"first bytes of the answer","reason":"HTTP 400","time":1733250000000}
//! ```
//!
//! `status` is `null` for an event that was too old; `time` is when it was
//! given up on, ms since the epoch. The file is
//! `<data_dir>/webhook-dead-letters.jsonl`, readable by its owner only.
//! [`replay`] sends its events again (with their original event ids) and
//! keeps only those that fail again.
//!
//! The lanes append (rarely: a dead letter is an event that failed); the
//! `herald webhook` commands read and replay. Appending opens the file each
//! time, so a replay may move it aside while the broker runs.

use crate::conf::WebhookConfig;
use crate::service::{StartError, settings_of};
use bytes::Bytes;
use herald_broker::support::lock;
use serde_json::{Value, json};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "webhook-dead-letters.jsonl";

/// Most bytes of an answer's body kept with a dead letter.
pub const RESPONSE_BYTES: usize = 256;

/// The dead-letter file of `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Where a replay keeps the letters it is sending (moved aside from the
/// file, so the broker's new letters go to a new file meanwhile).
fn replaying(file: &Path) -> PathBuf {
    file.with_extension("jsonl.replaying")
}

/// One event given up on.
#[derive(Debug, Clone)]
pub struct Letter {
    /// Its event id (the header's value).
    pub id: String,
    /// The request body.
    pub body: Bytes,
    /// The last status it was answered with (`None`: never sent, too old).
    pub status: Option<u16>,
    /// The first bytes of that answer's body.
    pub response: Bytes,
    /// Why it was given up on.
    pub reason: String,
}

/// The appender the lanes share.
#[derive(Debug)]
pub struct DeadLetters {
    path: PathBuf,
    /// Serialises appends (lines never interleave).
    appending: Mutex<()>,
}

impl DeadLetters {
    /// Appends to `path` (created, mode 0600, on the first letter).
    pub fn new(path: PathBuf) -> DeadLetters {
        DeadLetters {
            path,
            appending: Mutex::new(()),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `letters` and fsyncs: they are the events' last copy once
    /// the spool lets them go.
    pub fn keep(&self, letters: &[Letter], now_ms: u64) -> io::Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut text = Vec::new();
        for letter in letters {
            text.extend_from_slice(&line(letter, now_ms));
            text.push(b'\n');
        }
        let _appending = lock(&self.appending);
        append(&self.path, &text)
    }
}

/// Appends `text` to `path`, creating it readable and writable by its
/// owner only, and fsyncs it.
fn append(path: &Path, text: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text)?;
    file.sync_data()
}

/// One letter as its JSON line (without the newline).
fn line(letter: &Letter, now_ms: u64) -> Vec<u8> {
    let body: Value = serde_json::from_slice(&letter.body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&letter.body).into_owned()));
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let response = letter
        .response
        .get(..letter.response.len().min(RESPONSE_BYTES))
        .unwrap_or_default();
    let value = json!({
        "id": letter.id,
        "action": text("action"),
        "client_id": text("clientid").or_else(|| text("from_client_id")),
        "body": body,
        "status": letter.status,
        "response": String::from_utf8_lossy(response),
        "reason": letter.reason,
        "time": now_ms,
    });
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Every dead letter of `file` (those a replay left aside first), as
/// the JSON lines they are.
pub fn list(file: &Path) -> io::Result<Vec<String>> {
    let mut out = list_one(&replaying(file))?;
    out.extend(list_one(file)?);
    Ok(out)
}

/// The non-empty lines of `path` (none if it does not exist).
fn list_one(path: &Path) -> io::Result<Vec<String>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for line in BufReader::new(f).lines() {
        let line = line?;
        if !line.trim().is_empty() {
            out.push(line);
        }
    }
    Ok(out)
}

/// What a replay did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Delivered (2xx) and removed from the file.
    pub delivered: usize,
    /// Failed again (or could not be read): kept in the file.
    pub kept: usize,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The WebHook configuration cannot be used.
    #[error(transparent)]
    Config(#[from] StartError),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Sends every dead letter of `file` again, in order, to the URL of
/// `config` (with its headers, TLS and signing settings, and the letter's
/// original event id); those answered 2xx are removed, the others stay.
pub async fn replay(config: &WebhookConfig, file: &Path) -> Result<Replayed, ReplayError> {
    let (target, options) = settings_of(config)?;
    let aside = replaying(file);
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ReplayError::Io { path, source }
    };
    // A replay that stopped half-way left its letters aside: they go first.
    if !aside.exists() {
        match fs::rename(file, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Replayed::default()),
            Err(e) => return Err(io_err(file)(e)),
        }
    }
    let lines = list_one(&aside).map_err(io_err(&aside))?;
    let mut done = Replayed::default();
    let mut kept = Vec::new();
    let mut conn = None;
    for line in lines {
        let parsed: Option<(String, Vec<u8>)> =
            serde_json::from_str::<Value>(&line).ok().and_then(|v| {
                let id = v.get("id")?.as_str()?.to_owned();
                let body = match v.get("body")? {
                    Value::String(s) => s.clone().into_bytes(),
                    other => serde_json::to_vec(other).ok()?,
                };
                Some((id, body))
            });
        let Some((id, body)) = parsed else {
            tracing::warn!(line = %line, "not a dead letter; kept");
            kept.push(line);
            continue;
        };
        let mut c = match conn.take() {
            Some(c) => c,
            None => match target.connect().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(id = %id, error = %e, "replay failed; kept");
                    kept.push(line);
                    continue;
                }
            },
        };
        let signature = options
            .signing
            .as_ref()
            .map(|s| (&s.header, crate::deliver::sign(&s.secret, &body)));
        let mut extra = vec![(&options.event_id_header, id.as_bytes())];
        if let Some((header, value)) = &signature {
            extra.push((header, value.as_bytes()));
        }
        target.queue(&mut c, bytes::Bytes::from(body), &extra);
        let answer = match target.flush(&mut c).await {
            Ok(()) => target.answer(&mut c).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(a) if a.status.is_success() => {
                done.delivered += 1;
                if !a.close {
                    conn = Some(c);
                }
            }
            Ok(a) => {
                tracing::warn!(id = %id, status = a.status.as_u16(), "replay answered with a failure; kept");
                kept.push(line);
                if !a.close {
                    conn = Some(c);
                }
            }
            Err(e) => {
                tracing::warn!(id = %id, error = %e, "replay failed; kept");
                kept.push(line);
            }
        }
    }
    done.kept = kept.len();
    if !kept.is_empty() {
        let mut text = kept.join("\n").into_bytes();
        text.push(b'\n');
        append(file, &text).map_err(io_err(file))?;
    }
    fs::remove_file(&aside).map_err(io_err(&aside))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_is_one_json_line_with_the_fields_of_the_contract() {
        let letter = Letter {
            id: "abc-1-7".into(),
            body: Bytes::from_static(
                br#"{"action":"message_publish","from_client_id":"dev-1","payload":"x"}"#,
            ),
            status: Some(400),
            response: Bytes::from(vec![b'e'; 1000]),
            reason: "HTTP 400".into(),
        };
        let text = line(&letter, 42);
        assert!(!text.contains(&b'\n'));
        let v: Value = serde_json::from_slice(&text).unwrap_or_default();
        assert_eq!(v["id"], "abc-1-7");
        assert_eq!(v["action"], "message_publish");
        assert_eq!(v["client_id"], "dev-1");
        assert_eq!(v["body"]["payload"], "x");
        assert_eq!(v["status"], 400);
        assert_eq!(v["response"].as_str().map(str::len), Some(RESPONSE_BYTES));
        assert_eq!(v["time"], 42);
    }
}
