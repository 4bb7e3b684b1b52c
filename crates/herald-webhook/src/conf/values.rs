//! Parsers of the value types configuration keys share: booleans,
//! bounded integers, paths, header names, durations (`500ms`, `1m30s`)
//! and sizes (`512MB`).
//!
//! Each takes the value as written and returns it parsed or a [`Problem`]
//! saying what was expected; none knows which key it serves, and none
//! allocates except for its error.

use super::Problem;
use std::path::PathBuf;
use std::time::Duration;

/// A [`Problem::BadValue`]: `value` is not `expected`.
pub(super) fn bad(value: &str, expected: &str) -> Problem {
    Problem::BadValue {
        value: value.to_owned(),
        expected: expected.to_owned(),
    }
}

/// A path; empty means unset.
pub(super) fn path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

/// `true` or `false`.
pub(super) fn boolean(value: &str) -> Result<bool, Problem> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(bad(value, "true or false")),
    }
}

/// A decimal integer from `min` to `max`.
pub(super) fn integer(value: &str, min: u64, max: u64) -> Result<u64, Problem> {
    let expected = || bad(value, &format!("an integer from {min} to {max}"));
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    match value.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(expected()),
    }
}

/// A header name: lower-cased, `_` → `-`, an HTTP token.
pub(super) fn header_name(name: &str) -> Option<String> {
    let name: String = name
        .chars()
        .map(|c| {
            if c == '_' {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    (!name.is_empty() && name.bytes().all(token)).then_some(name)
}

/// A positive duration: one or more `<integer><unit>` with units `ms`,
/// `s`, `m`, `h`, `d` (`500ms`, `5s`, `1m30s`).
pub(super) fn duration(value: &str) -> Result<Duration, Problem> {
    let expected = || bad(value, "a positive duration such as 500ms, 5s, 2m or 1h");
    let mut total = Duration::ZERO;
    let mut rest = value;
    if rest.is_empty() {
        return Err(expected());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        let n: u64 = number.parse().map_err(|_| expected())?;
        let part = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "d" => n.checked_mul(86_400).map(Duration::from_secs),
            _ => None,
        }
        .ok_or_else(expected)?;
        total = total.checked_add(part).ok_or_else(expected)?;
        rest = tail;
    }
    if total.is_zero() {
        return Err(expected());
    }
    Ok(total)
}

/// A positive size in bytes: an integer with an optional unit `B`, `KB`,
/// `MB`, `GB` (also `K`, `KiB`, ...; all 1024-based, case-insensitive).
pub(super) fn size(value: &str) -> Result<u64, Problem> {
    let expected = || bad(value, "a positive size such as 1048576, 512MB or 1GB");
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = value.split_at(digits);
    let n: u64 = number.parse().map_err(|_| expected())?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(expected()),
    };
    match n.checked_mul(factor) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(expected()),
    }
}
