//! EMQX's configuration line format: `key = value` lines, blank lines and
//! `#` comments, an optional byte-order mark. This is the one reader of
//! that format in Herald; the binary uses it too when it merges a file
//! with its own `[webhook]` table.
//!
//! It splits lines and records where each came from ([`Origin`]), nothing
//! more: it never interprets a key or a value (that is `keys`), never
//! touches the file system beyond [`read`], and never logs.

use super::{ConfError, Origin};
use std::path::Path;
use std::sync::Arc;

/// One `key = value` line: key and value trimmed, with its file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The key, a word without whitespace.
    pub key: &'a str,
    /// Everything after the first `=`, trimmed; may be empty.
    pub value: &'a str,
    /// The source and 1-based line.
    pub origin: Origin,
}

/// Reads a configuration file as text.
pub fn read(path: &Path) -> Result<String, ConfError> {
    std::fs::read_to_string(path).map_err(|source| ConfError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The `key = value` lines of `text`, in order; `source` (usually the
/// file's path) is what each [`Origin`] names. A line that is neither blank,
/// a comment nor `key = value` (with a non-empty key without whitespace) is
/// a [`ConfError::Syntax`]; callers stop at the first error.
pub fn entries<'a>(
    text: &'a str,
    source: &str,
) -> impl Iterator<Item = Result<Entry<'a>, ConfError>> + 'a {
    let source: Arc<str> = source.into();
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    text.lines().enumerate().filter_map(move |(n, line)| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let origin = Origin::at(source.clone(), u32::try_from(n + 1).unwrap_or(u32::MAX));
        Some(match line.split_once('=') {
            Some((key, value))
                if !key.trim().is_empty() && !key.trim().contains(char::is_whitespace) =>
            {
                Ok(Entry {
                    key: key.trim(),
                    value: value.trim(),
                    origin,
                })
            }
            _ => Err(ConfError::Syntax {
                origin,
                text: line.to_owned(),
            }),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<Result<(String, String, String), String>> {
        entries(text, "f.conf")
            .map(|e| {
                e.map(|e| (e.key.to_owned(), e.value.to_owned(), e.origin.to_string()))
                    .map_err(|e| e.to_string())
            })
            .collect()
    }

    fn ok(key: &str, value: &str, origin: &str) -> Result<(String, String, String), String> {
        Ok((key.to_owned(), value.to_owned(), origin.to_owned()))
    }

    #[test]
    fn comments_blanks_and_bom_are_skipped_and_lines_counted() {
        let text = "\u{FEFF}# head\n\n  a.b = 1 \r\n\t# indented comment\nc=x = y\nd =\n";
        assert_eq!(
            lines(text),
            vec![
                ok("a.b", "1", "f.conf:3"),
                ok("c", "x = y", "f.conf:5"),
                ok("d", "", "f.conf:6"),
            ]
        );
    }

    #[test]
    fn a_line_without_a_usable_key_is_a_syntax_error_at_its_line() {
        for bad in ["no equals sign", "= value", "two words = v"] {
            let got = lines(&format!("a = 1\n{bad}\nb = 2\n"));
            assert_eq!(got[0], ok("a", "1", "f.conf:1"));
            assert_eq!(
                got[1],
                Err(format!("f.conf:2: expected `key = value`, found `{bad}`"))
            );
        }
    }
}
