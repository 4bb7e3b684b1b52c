//! Topic names and topic filters: validation, `$share/` parsing and the
//! reference matching rule.
//!
//! [`matches`] is the definition of "does this filter match this topic" that
//! the trie ([`super::trie`]) and the retained store ([`super::retained`]) must
//! agree with; their tests compare against it.
//!
//! This module never allocates and never panics, whatever the input: every
//! string here may have come straight off a socket.
//!
//! Matching is also total on inputs that fail validation, with one rule: a
//! `+` or `#` that is not a whole level, or a `#` that is not the last level,
//! is an ordinary character. Callers validate before subscribing or
//! publishing; this rule only keeps the three implementations in agreement.

use thiserror::Error;

/// The longest topic name or filter MQTT can carry: a UTF-8 string's length
/// is a 16-bit prefix on the wire.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// The first level of a shared subscription's filter (MQTT 5.0, 4.8.2).
pub const SHARE_PREFIX: &str = "$share";

/// Why a `$share/{group}/{filter}` could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TopicError {
    /// `$share` alone, or `$share//...`: the group name is missing.
    #[error("shared subscription without a group name")]
    EmptyShareGroup,
    /// The group name holds `+`, `#` or U+0000.
    #[error("shared subscription group name contains '+', '#' or U+0000")]
    InvalidShareGroup,
    /// `$share/{group}` with nothing after the group.
    #[error("shared subscription without a topic filter")]
    MissingShareFilter,
    /// The filter after the group is not a valid topic filter.
    #[error("shared subscription has an invalid topic filter")]
    InvalidShareFilter,
    /// The whole string is longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("topic filter longer than {MAX_TOPIC_LEN} bytes")]
    TooLong,
}

/// A topic name a client may publish to: non-empty, at most
/// [`MAX_TOPIC_LEN`] bytes, and without `+`, `#` or U+0000.
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_TOPIC_LEN && !topic.contains(['+', '#', '\0'])
}

/// A topic filter a client may subscribe to: non-empty, at most
/// [`MAX_TOPIC_LEN`] bytes, no U+0000, `+` only as a whole level and `#`
/// only as the whole last level.
///
/// `$share/{group}/{filter}` passes if it is syntactically a filter; use
/// [`parse_shared`] to check its parts.
pub fn valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "+" => {}
            "#" if last => {}
            _ if level.contains(['+', '#']) => return false,
            _ => {}
        }
    }
    true
}

/// Splits `$share/{group}/{filter}` into `(group, filter)`.
///
/// Returns `Ok(None)` when the first level is not `$share`; such filters are
/// not checked here (use [`valid_topic_filter`]). The group must be non-empty
/// without `+`, `#` or U+0000 (it cannot hold `/`: the first `/` after it
/// starts the filter), and the filter must pass [`valid_topic_filter`].
///
/// A bare `$share` is an error rather than an ordinary filter: a client
/// sending it almost certainly meant a shared subscription.
///
/// # Errors
///
/// A [`TopicError`] naming the part of a `$share` filter that is wrong.
pub fn parse_shared(filter: &str) -> Result<Option<(&str, &str)>, TopicError> {
    let rest = match filter.strip_prefix(SHARE_PREFIX) {
        Some("") => return Err(TopicError::EmptyShareGroup),
        Some(rest) => match rest.strip_prefix('/') {
            Some(rest) => rest,
            // `$shared/...`, `$sharex`: an ordinary filter.
            None => return Ok(None),
        },
        None => return Ok(None),
    };
    if filter.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    let (group, inner) = match rest.split_once('/') {
        Some(parts) => parts,
        None if rest.is_empty() => return Err(TopicError::EmptyShareGroup),
        None => return Err(TopicError::MissingShareFilter),
    };
    if group.is_empty() {
        return Err(TopicError::EmptyShareGroup);
    }
    if group.contains(['+', '#', '\0']) {
        return Err(TopicError::InvalidShareGroup);
    }
    if !valid_topic_filter(inner) {
        return Err(TopicError::InvalidShareFilter);
    }
    Ok(Some((group, inner)))
}

/// Whether `filter` matches the topic name `topic` (MQTT 3.1.1 4.7, 5.0 4.7).
///
/// - `+` matches exactly one level, including an empty one (`sport/+`
///   matches `sport/`).
/// - `#` as the last level matches any number of levels, including none
///   (`a/#` matches `a`).
/// - A filter whose first level is `+` or `#` never matches a topic that
///   starts with `$` (`#` does not match `$SYS/x`; `$SYS/#` does).
///
/// The filter is matched as written: unwrap `$share/{group}/` first with
/// [`parse_shared`].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && starts_with_wildcard(filter) {
        return false;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            // `#` is a wildcard only as the last level; elsewhere it is a
            // literal and falls through to the comparison below.
            (Some("#"), _) if filter_levels.clone().next().is_none() => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic the filter `inner` matches is also matched by the
/// filter `outer` (`inner` ⊆ `outer`): `a/#` covers `a/+/b` and `a`, `+/b`
/// covers `x/b` but not `#`. Access rules use this for SUBSCRIBE: a rule
/// decides a subscription only if it decides every topic the subscription
/// can receive; anything else is decided per message at delivery.
pub fn covers(outer: &str, inner: &str) -> bool {
    // `outer` starting with a wildcard matches no `$` topic: it covers only
    // filters that cannot match one either.
    if starts_with_wildcard(outer) && inner.starts_with('$') {
        return false;
    }
    let mut outer_levels = outer.split('/');
    let mut inner_levels = inner.split('/');
    loop {
        match (outer_levels.next(), inner_levels.next()) {
            (Some("#"), _) if outer_levels.clone().next().is_none() => return true,
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(o), Some(i)) if o == i && i != "+" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether the first level of `filter` is exactly `+` or exactly `#` (the
/// levels the `$` rule is about).
pub(crate) fn starts_with_wildcard(filter: &str) -> bool {
    let first = filter.split('/').next().unwrap_or(filter);
    first == "+" || first == "#"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_is_subset_of_matched_topics() {
        for (outer, inner) in [
            ("#", "#"),
            ("#", "a/+/b"),
            ("a/#", "a"),
            ("a/#", "a/#"),
            ("a/#", "a/+/b"),
            ("+/b", "x/b"),
            ("+/b", "+/b"),
            ("a/b", "a/b"),
            ("$SYS/#", "$SYS/x"),
        ] {
            assert!(covers(outer, inner), "{outer:?} should cover {inner:?}");
        }
        for (outer, inner) in [
            ("secret/#", "#"),
            ("secret/#", "+/a"),
            ("secret/#", "+/#"),
            ("+/b", "#"),
            ("+/b", "x/#"),
            ("a/+", "a/+/c"),
            ("a/b", "a/+"),
            ("a", "a/#"),
            ("#", "$SYS/x"),
            ("+/x", "$SYS/x"),
        ] {
            assert!(
                !covers(outer, inner),
                "{outer:?} should not cover {inner:?}"
            );
        }
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic_name("a"));
        assert!(valid_topic_name("/"));
        assert!(valid_topic_name("a//b/"));
        assert!(valid_topic_name("$SYS/x"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name("a/+"));
        assert!(!valid_topic_name("a/#"));
        assert!(!valid_topic_name("a+b"));
        assert!(!valid_topic_name("a\0b"));
        assert!(valid_topic_name(&"a".repeat(MAX_TOPIC_LEN)));
        assert!(!valid_topic_name(&"a".repeat(MAX_TOPIC_LEN + 1)));
    }

    #[test]
    fn topic_filters() {
        for ok in [
            "#",
            "+",
            "a",
            "/",
            "a/#",
            "a/+",
            "+/+",
            "+/a/#",
            "/#",
            "//",
            "a//#",
            "$SYS/#",
            "$share/g/a",
        ] {
            assert!(valid_topic_filter(ok), "{ok:?} should be valid");
        }
        for bad in [
            "", "a#", "#a", "a/#/b", "#/", "#/#", "a+", "+a", "a/b+/c", "++", "a\0", "a/##",
        ] {
            assert!(!valid_topic_filter(bad), "{bad:?} should be invalid");
        }
        assert!(!valid_topic_filter(&"a".repeat(MAX_TOPIC_LEN + 1)));
    }

    #[test]
    fn shared_filters() {
        assert_eq!(parse_shared("a/b"), Ok(None));
        assert_eq!(parse_shared("$sharex/g/a"), Ok(None));
        assert_eq!(parse_shared("$shared"), Ok(None));
        assert_eq!(parse_shared("$SYS/#"), Ok(None));
        assert_eq!(parse_shared("$share/g/a/b"), Ok(Some(("g", "a/b"))));
        assert_eq!(parse_shared("$share/g/#"), Ok(Some(("g", "#"))));
        assert_eq!(parse_shared("$share/g/+/x"), Ok(Some(("g", "+/x"))));
        assert_eq!(parse_shared("$share/g//"), Ok(Some(("g", "/"))));
        assert_eq!(parse_shared("$share/g/$SYS/#"), Ok(Some(("g", "$SYS/#"))));
        assert_eq!(parse_shared("$share"), Err(TopicError::EmptyShareGroup));
        assert_eq!(parse_shared("$share/"), Err(TopicError::EmptyShareGroup));
        assert_eq!(parse_shared("$share//a"), Err(TopicError::EmptyShareGroup));
        assert_eq!(
            parse_shared("$share/g"),
            Err(TopicError::MissingShareFilter)
        );
        assert_eq!(
            parse_shared("$share/g/"),
            Err(TopicError::InvalidShareFilter)
        );
        assert_eq!(
            parse_shared("$share/g/a#"),
            Err(TopicError::InvalidShareFilter)
        );
        assert_eq!(
            parse_shared("$share/g/#/a"),
            Err(TopicError::InvalidShareFilter)
        );
        assert_eq!(
            parse_shared("$share/g+/a"),
            Err(TopicError::InvalidShareGroup)
        );
        assert_eq!(
            parse_shared("$share/#/a"),
            Err(TopicError::InvalidShareGroup)
        );
        assert_eq!(
            parse_shared("$share/g\0/a"),
            Err(TopicError::InvalidShareGroup)
        );
        let long = format!("$share/g/{}", "a".repeat(MAX_TOPIC_LEN));
        assert_eq!(parse_shared(&long), Err(TopicError::TooLong));
    }

    #[test]
    fn spec_examples() {
        // MQTT 3.1.1 4.7.1.2 / 5.0 4.7.1.2
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "sport/tennis"));
        assert!(matches("#", "/"));
        // 4.7.1.3
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(matches("sport/tennis/+", "sport/tennis/player2"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(!matches("sport/+", "sport/tennis/player1"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        // 4.7.2
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("#", "$SYS"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(!matches("+/#", "$SYS/x"));
    }

    #[test]
    fn literal_levels() {
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a"));
        assert!(!matches("a", "a/b"));
        assert!(!matches("a/b", "a/b/"));
        assert!(matches("a//b", "a//b"));
        assert!(matches("a/+/b", "a//b"));
        assert!(matches("/", "/"));
        assert!(!matches("a", "A"));
        assert!(matches("+", ""));
        assert!(matches("#", ""));
    }

    #[test]
    fn misplaced_wildcards_are_literal() {
        assert!(matches("#/a", "#/a"));
        assert!(!matches("#/a", "x/a"));
        assert!(matches("a+", "a+"));
        assert!(!matches("a+", "ab"));
        assert!(matches("a/#/#", "a/#/x/y"));
        assert!(!matches("a/#/#", "a/x/y"));
    }

    #[test]
    fn first_level_wildcard_detection() {
        assert!(starts_with_wildcard("#"));
        assert!(starts_with_wildcard("+"));
        assert!(starts_with_wildcard("+/a"));
        assert!(starts_with_wildcard("#/a"));
        assert!(!starts_with_wildcard("+a"));
        assert!(!starts_with_wildcard("a/+"));
        assert!(!starts_with_wildcard(""));
    }
}
