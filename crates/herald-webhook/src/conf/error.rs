//! Where a key was set ([`Origin`]), what can be wrong with a
//! configuration ([`ConfError`], [`Problem`]) and what is worth a remark
//! without stopping start-up ([`ConfWarning`]).
//!
//! Only types and their messages live here: the messages are an interface
//! (`file:line: key: problem`, asserted by tests and read by operators), so
//! they never change wording casually, and nothing here parses or logs.

use crate::endpoint::UrlError;
use crate::event::EventKind;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use thiserror::Error;

/// Where a key came from: a file and line, or a description such as
/// `environment variable HERALD_WEBHOOK__...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File path or other description; shared by every line of a file.
    source: Arc<str>,
    /// 1-based line number, when the source has lines.
    line: Option<u32>,
}

impl Origin {
    /// A source without lines.
    pub fn new(source: impl Into<Arc<str>>) -> Origin {
        Origin {
            source: source.into(),
            line: None,
        }
    }

    /// Line `line` (1-based) of `source`.
    pub fn at(source: impl Into<Arc<str>>, line: u32) -> Origin {
        Origin {
            source: source.into(),
            line: Some(line),
        }
    }

    /// The file or description.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The 1-based line, if any.
    pub fn line(&self) -> Option<u32> {
        self.line
    }
}

impl fmt::Display for Origin {
    /// `file:line` or the description.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.source, line),
            None => f.write_str(&self.source),
        }
    }
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read WebHook configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line that is neither blank, a comment, nor `key = value`.
    #[error("{origin}: expected `key = value`, found `{text}`")]
    Syntax {
        /// File and line.
        origin: Origin,
        /// The line, trimmed.
        text: String,
    },
    /// A key that is unknown or whose value is wrong.
    #[error("{origin}: {key}: {problem}")]
    Key {
        /// File and line (or other source) of the key.
        origin: Origin,
        /// The key as written.
        key: String,
        /// What is wrong.
        problem: Problem,
    },
}

impl ConfError {
    /// A [`ConfError::Key`] at `origin`.
    pub(super) fn key(origin: &Origin, key: &str, problem: Problem) -> ConfError {
        ConfError::Key {
            origin: origin.clone(),
            key: key.to_owned(),
            problem,
        }
    }

    /// Where the error is, when it is in the configuration's text.
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            ConfError::Read { .. } => None,
            ConfError::Syntax { origin, .. } | ConfError::Key { origin, .. } => Some(origin),
        }
    }

    /// What is wrong with a key, for [`ConfError::Key`].
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ConfError::Key { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// What is wrong with one key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Problem {
    /// Not a key of §1 nor one of Herald's.
    #[error("unknown key")]
    UnknownKey,
    /// The value has the wrong type or is out of range.
    #[error("`{value}` is not {expected}")]
    BadValue {
        /// The value as written.
        value: String,
        /// What was expected, e.g. `true or false`.
        expected: String,
    },
    /// `web.hook.url` is not a usable URL.
    #[error("invalid URL `{shown}`: {error}", shown = crate::endpoint::redacted(value))]
    BadUrl {
        /// The value as written.
        value: String,
        /// Why.
        error: UrlError,
    },
    /// A rule whose value does not parse as JSON.
    #[error("rule is not valid JSON: {0}")]
    RuleJson(String),
    /// `web.hook.rule.<event>.<N>` with an event that is not one of §2's.
    #[error("rule on unknown event `{0}` (events: {events})", events = event_names())]
    UnknownEvent(String),
    /// A rule whose `action` is not the one of its event.
    #[error("action `{found}` does not belong to event `{event}`; expected `{expected}`")]
    WrongAction {
        /// The rule's event.
        event: EventKind,
        /// The action written.
        found: String,
        /// The action of `event`.
        expected: &'static str,
    },
    /// A rule that parses as JSON but is not a valid rule.
    #[error("invalid rule: {0}")]
    BadRule(String),
    /// Rules are configured but no URL.
    #[error(
        "a rule is configured but web.hook.url is not set; set the URL, or remove the rules to turn the WebHook off"
    )]
    MissingUrl,
    /// Keys that do not fit together.
    #[error("{0}")]
    Conflict(String),
}

/// Something worth an operator's attention that does not stop start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfWarning {
    /// Where the key was set.
    pub origin: Origin,
    /// The key.
    pub key: String,
    /// What to know.
    pub message: String,
}

impl fmt::Display for ConfWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.key, self.message)
    }
}

/// The names of the thirteen events, for error messages.
fn event_names() -> String {
    EventKind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}
