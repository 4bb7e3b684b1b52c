//! Trigger rules (`docs/webhook.md` §2): for each event kind, the rules
//! configured with `web.hook.rule.<event>.<N>`, and how many requests an
//! event sends.
//!
//! - A rule without `topic` matches every event of its kind; with one, the
//!   event's topic must match it as an MQTT filter (`+`, `#`, and a leading
//!   wildcard never matches a `$` topic).
//! - Each matching rule is one request; identical rules count once. For
//!   kinds where `topic` does not apply (the client connection events and
//!   `session.terminated`) it is ignored, so such rules differ in nothing
//!   and count once.
//! - Message events on `$SYS/` topics never match.
//!
//! Matching runs inline on the broker's connection tasks: it must not
//! allocate or block. This module never builds bodies or sends anything.

use crate::event::{self, EventKind};
use herald_broker::hooks::Event;
use herald_broker::router::matches;

/// One compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The topic filter, `None` for "every event"; always `None` for kinds
    /// without a topic.
    pub topic: Option<String>,
}

impl Rule {
    /// Whether this rule matches an event whose topic is `topic`.
    fn matches(&self, topic: Option<&str>) -> bool {
        match (&self.topic, topic) {
            (None, _) => true,
            (Some(filter), Some(topic)) => matches(filter, topic),
            (Some(_), None) => false,
        }
    }
}

/// The rules of every event kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// Indexed by [`EventKind::index`]; no two rules of one kind are equal.
    by_kind: [Vec<Rule>; EventKind::COUNT],
}

impl Rules {
    /// No rules: nothing is sent.
    pub fn new() -> Rules {
        Rules::default()
    }

    /// Adds a rule on `kind`; `topic` is dropped when the kind has none.
    /// Returns `false` (and adds nothing) when an identical rule exists.
    pub fn add(&mut self, kind: EventKind, topic: Option<String>) -> bool {
        let rule = Rule {
            topic: topic.filter(|_| kind.has_topic()),
        };
        let rules = &mut self.by_kind[kind.index()];
        if rules.contains(&rule) {
            return false;
        }
        rules.push(rule);
        true
    }

    /// How many requests `event` sends: the number of its kind's rules that
    /// match it. 0 for broker events outside the contract and for message
    /// events on `$SYS/` topics.
    pub fn matching(&self, event: &Event<'_>) -> usize {
        match EventKind::of(event) {
            Some(kind) => self.matching_topic(kind, event::topic(event)),
            None => 0,
        }
    }

    /// [`Rules::matching`] for an event of `kind` on `topic` (the message
    /// topic, or the subscribe filter without `$share/<group>/`).
    pub fn matching_topic(&self, kind: EventKind, topic: Option<&str>) -> usize {
        if kind.is_message() && topic.is_some_and(|t| t.starts_with("$SYS/")) {
            return 0;
        }
        self.by_kind[kind.index()]
            .iter()
            .filter(|rule| rule.matches(topic))
            .count()
    }

    /// Whether any rule exists for `kind` (lets a handler skip work early).
    pub fn wants(&self, kind: EventKind) -> bool {
        !self.by_kind[kind.index()].is_empty()
    }

    /// The rules of `kind`, in the order they were added.
    pub fn of(&self, kind: EventKind) -> &[Rule] {
        &self.by_kind[kind.index()]
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.by_kind.iter().all(Vec::is_empty)
    }

    /// The number of distinct rules over all kinds.
    pub fn len(&self) -> usize {
        self.by_kind.iter().map(Vec::len).sum()
    }
}
