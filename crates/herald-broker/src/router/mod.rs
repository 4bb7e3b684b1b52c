//! Routing: which subscriptions a published message reaches, and which
//! retained messages a new subscription receives.
//!
//! - [`topic`]: validation of topic names and filters, `$share/` parsing and
//!   [`topic::matches`], the reference matching rule the others agree with.
//! - [`trie`]: [`Trie`], subscribers indexed by topic filter.
//! - [`shared`]: [`SharedGroups`], `$share/{group}/{filter}` members picked
//!   round-robin, one per group and filter.
//! - [`retained`]: [`Retained`], the last retained message per topic.
//!
//! Everything here is a plain synchronous data structure: no tokio, no I/O,
//! no locks (the broker decides how to share them). Nothing here may panic
//! or recurse per topic level on client input.

pub mod retained;
pub mod shared;
pub mod topic;
pub mod trie;

pub use retained::Retained;
pub use shared::SharedGroups;
pub use topic::{TopicError, covers, matches, parse_shared, valid_topic_filter, valid_topic_name};
pub use trie::Trie;

#[cfg(test)]
mod strategies {
    //! Topic names and filters for the property tests of the trie and the
    //! retained store (both are checked against [`super::matches`]).
    use proptest::prelude::*;

    /// One level, wildcards and the empty level included.
    fn level() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["a", "b", "$s", "+", "#", ""])
    }

    /// One to four levels joined with `/`.
    pub fn levels() -> impl Strategy<Value = String> {
        prop::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
    }
}
