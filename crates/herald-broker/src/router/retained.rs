//! The retained-message store: the last retained message per topic name, and
//! which of them a new subscription's filter matches.
//!
//! Topics are kept in a tree of levels, so a filter with a literal prefix
//! only walks the subtree under that prefix. Matching agrees with
//! [`super::topic::matches`], including the `$` rule (`#` does not return
//! `$SYS/...`).
//!
//! It decides nothing about MQTT semantics: an empty payload meaning
//! "delete" and message expiry are the caller's business. It must never
//! recurse over levels (a client controls how many levels a topic has) and
//! never keep empty nodes after a removal.

use std::collections::HashMap as StdHashMap;

/// Maps with foldhash: several times faster than SipHash on short topic
/// levels, and still seeded per process against crafted collisions.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;
use std::str::Split;

/// The retained message `M` of each topic.
pub struct Retained<M> {
    /// The node for zero levels; its children are the first topic levels.
    root: Node<M>,
    /// Number of stored messages, so `len` is O(1).
    len: usize,
}

/// A message and the topic it was retained on.
struct Stored<M> {
    /// The full topic, handed to callbacks without rebuilding it from levels.
    topic: Box<str>,
    /// What the caller stored.
    message: M,
}

/// One topic level.
struct Node<M> {
    /// Next levels by name.
    children: HashMap<Box<str>, Node<M>>,
    /// The message retained on the topic that ends here, if any.
    stored: Option<Stored<M>>,
}

impl<M> Node<M> {
    fn new() -> Self {
        Node {
            children: HashMap::default(),
            stored: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.stored.is_none()
    }
}

impl<M> Drop for Node<M> {
    /// Drops the subtree with a heap stack instead of the default recursion,
    /// which a topic with tens of thousands of levels would overflow.
    fn drop(&mut self) {
        let mut stack: Vec<Node<M>> = self.children.drain().map(|(_, n)| n).collect();
        while let Some(mut node) = stack.pop() {
            stack.extend(node.children.drain().map(|(_, n)| n));
        }
    }
}

/// Work left while matching a filter against the tree.
enum Step<'a, M> {
    /// Match the filter levels still in the iterator against this node's
    /// subtree; `root` says whether this is the root (for the `$` rule).
    Match(&'a Node<M>, Split<'a, char>, bool),
    /// Report this node and everything under it (a `#` reached it).
    All(&'a Node<M>),
}

impl<M> Default for Retained<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M> Retained<M> {
    /// An empty store.
    pub fn new() -> Self {
        Retained {
            root: Node::new(),
            len: 0,
        }
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Retains `message` on `topic`; returns the message it replaces.
    pub fn set(&mut self, topic: &str, message: M) -> Option<M> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node
                .children
                .entry(Box::from(level))
                .or_insert_with(Node::new);
        }
        let old = node.stored.replace(Stored {
            topic: Box::from(topic),
            message,
        });
        if old.is_none() {
            self.len += 1;
        }
        old.map(|s| s.message)
    }

    /// The message retained on exactly `topic`.
    pub fn get(&self, topic: &str) -> Option<&M> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.stored.as_ref().map(|s| &s.message)
    }

    /// Forgets the message retained on `topic` and returns it. Nodes left
    /// with nothing in or under them are freed.
    pub fn remove(&mut self, topic: &str) -> Option<M> {
        // 1. Take the message out.
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_mut(level)?;
        }
        let old = node.stored.take()?.message;
        self.len -= 1;
        if !node.is_empty() {
            return Some(old);
        }

        // 2. Find the deepest node on the path that keeps something besides
        // the path itself (the root at least).
        let mut keep_depth = 0;
        let mut node = &self.root;
        for (depth, level) in topic.split('/').enumerate() {
            if node.stored.is_some() || node.children.len() > 1 {
                keep_depth = depth;
            }
            match node.children.get(level) {
                Some(child) => node = child,
                None => return Some(old),
            }
        }

        // 3. Cut the empty chain off below it.
        let mut levels = topic.split('/');
        let mut node = &mut self.root;
        for level in levels.by_ref().take(keep_depth) {
            match node.children.get_mut(level) {
                Some(child) => node = child,
                None => return Some(old),
            }
        }
        if let Some(level) = levels.next() {
            node.children.remove(level);
        }
        Some(old)
    }

    /// Calls `f(topic, message)` for every retained message whose topic the
    /// topic filter `filter` matches, in no particular order.
    ///
    /// Only the subtrees the filter can reach are visited: `a/b/+` looks at
    /// the children of `a/b`, never at `c/...`. A filter whose first level is
    /// `+` or `#` skips topics starting with `$`.
    pub fn for_each_matching(&self, filter: &str, mut f: impl FnMut(&str, &M)) {
        let mut report = |node: &Node<M>| {
            if let Some(stored) = &node.stored {
                f(&stored.topic, &stored.message);
            }
        };
        // Children a wildcard may descend into: at the root, not `$` ones.
        let reachable = |root: bool, name: &str| -> bool { !(root && name.starts_with('$')) };
        let mut steps = vec![Step::Match(&self.root, filter.split('/'), true)];
        while let Some(step) = steps.pop() {
            match step {
                Step::All(node) => {
                    report(node);
                    steps.extend(node.children.values().map(Step::All));
                }
                Step::Match(node, mut levels, root) => match levels.next() {
                    None => report(node),
                    Some("#") if levels.clone().next().is_none() => {
                        // `a/#` matches `a` itself too.
                        report(node);
                        steps.extend(
                            node.children
                                .iter()
                                .filter(|(name, _)| reachable(root, name))
                                .map(|(_, child)| Step::All(child)),
                        );
                    }
                    Some("+") => steps.extend(
                        node.children
                            .iter()
                            .filter(|(name, _)| reachable(root, name))
                            .map(|(_, child)| Step::Match(child, levels.clone(), false)),
                    ),
                    Some(level) => {
                        if let Some(child) = node.children.get(level) {
                            steps.push(Step::Match(child, levels, false));
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::strategies::levels;
    use super::super::topic::matches;
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    impl<M> Retained<M> {
        /// Nodes below the root, to check that removals prune.
        fn node_count(&self) -> usize {
            let mut count = 0;
            let mut stack = vec![&self.root];
            while let Some(node) = stack.pop() {
                stack.extend(node.children.values());
                count += 1;
            }
            count - 1
        }
    }

    fn found<M>(store: &Retained<M>, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        store.for_each_matching(filter, |topic, _| out.push(topic.to_owned()));
        out.sort();
        let unique: BTreeSet<&String> = out.iter().collect();
        assert_eq!(unique.len(), out.len(), "reported twice");
        out
    }

    fn sample() -> Retained<u32> {
        let mut store = Retained::new();
        for (i, topic) in [
            "sport",
            "sport/",
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player2",
            "sport/golf",
            "/finance",
            "$SYS/monitor/Clients",
            "$SYS",
            "news",
        ]
        .iter()
        .enumerate()
        {
            store.set(topic, i as u32);
        }
        store
    }

    #[test]
    fn set_get_replace() {
        let mut store = Retained::new();
        assert_eq!(store.set("a/b", 1), None);
        assert_eq!(store.set("a/b", 2), Some(1));
        assert_eq!(store.set("a", 3), None);
        assert_eq!(store.len(), 2);
        assert_eq!(store.get("a/b"), Some(&2));
        assert_eq!(store.get("a"), Some(&3));
        assert_eq!(store.get("a/"), None);
        assert_eq!(store.get("b"), None);
    }

    #[test]
    fn wildcard_lookups() {
        let store = sample();
        assert_eq!(
            found(&store, "sport/tennis/player1/#"),
            ["sport/tennis/player1", "sport/tennis/player1/ranking"]
        );
        assert_eq!(found(&store, "sport/+"), ["sport/", "sport/golf"]);
        assert_eq!(
            found(&store, "sport/tennis/+"),
            ["sport/tennis/player1", "sport/tennis/player2"]
        );
        assert_eq!(
            found(&store, "sport/#"),
            [
                "sport",
                "sport/",
                "sport/golf",
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player2"
            ]
        );
        assert_eq!(found(&store, "+"), ["news", "sport"]);
        assert_eq!(found(&store, "+/+"), ["/finance", "sport/", "sport/golf"]);
        assert_eq!(found(&store, "/+"), ["/finance"]);
        assert_eq!(found(&store, "+/tennis/#").len(), 3);
        assert_eq!(
            found(&store, "sport/tennis/player1"),
            ["sport/tennis/player1"]
        );
        assert!(found(&store, "sport/tennis").is_empty());
        assert!(found(&store, "nothing/#").is_empty());
    }

    #[test]
    fn dollar_topics() {
        let store = sample();
        assert!(!found(&store, "#").iter().any(|t| t.starts_with('$')));
        assert_eq!(found(&store, "#").len(), 8);
        assert!(found(&store, "+/monitor/Clients").is_empty());
        assert_eq!(found(&store, "$SYS/#"), ["$SYS", "$SYS/monitor/Clients"]);
        assert_eq!(found(&store, "$SYS/+/Clients"), ["$SYS/monitor/Clients"]);
    }

    #[test]
    fn remove_and_prune() {
        let mut store = sample();
        let all: Vec<String> = {
            let mut t = found(&store, "#");
            t.extend(found(&store, "$SYS/#"));
            t
        };
        assert_eq!(store.remove("sport/tennis"), None);
        assert_eq!(store.remove("nope/x"), None);
        assert_eq!(store.remove("sport/tennis/player1"), Some(2));
        assert_eq!(store.get("sport/tennis/player1/ranking"), Some(&3));
        assert_eq!(store.remove("sport/tennis/player1"), None);
        for topic in &all {
            store.remove(topic);
        }
        assert!(store.is_empty());
        assert_eq!(store.node_count(), 0);
    }

    #[test]
    fn deep_topics_do_not_overflow_the_stack() {
        let deep = vec!["x"; 32_000].join("/");
        let mut store = Retained::new();
        store.set(&deep, ());
        assert_eq!(found(&store, &deep).len(), 1);
        assert_eq!(found(&store, "#").len(), 1);
        assert_eq!(store.remove(&deep), Some(()));
        assert_eq!(store.node_count(), 0);
        store.set(&deep, ());
        drop(store);
    }

    proptest! {
        #[test]
        fn store_agrees_with_matches(
            topics in prop::collection::vec(levels(), 0..40),
            filters in prop::collection::vec(levels(), 1..20),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let mut store = Retained::new();
            let mut kept = BTreeSet::new();
            for topic in &topics {
                store.set(topic, ());
                kept.insert(topic.clone());
            }
            for index in &removals {
                if kept.is_empty() {
                    break;
                }
                let victim = kept.iter().nth(index.index(kept.len())).cloned();
                if let Some(topic) = victim {
                    prop_assert!(store.remove(&topic).is_some());
                    kept.remove(&topic);
                }
            }
            prop_assert_eq!(store.len(), kept.len());
            for filter in &filters {
                let brute: Vec<String> =
                    kept.iter().filter(|t| matches(filter, t)).cloned().collect();
                prop_assert_eq!(found(&store, filter), brute, "filter {:?}", filter);
            }
            for topic in &kept {
                prop_assert!(store.remove(topic).is_some());
            }
            prop_assert_eq!(store.node_count(), 0);
        }
    }
}
