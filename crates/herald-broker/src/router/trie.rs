//! A topic-filter trie: which subscribers' filters match a published topic.
//!
//! One node per filter level; literal levels live in a hash map, `+` and `#`
//! in dedicated slots, so matching a topic costs one map lookup per level
//! plus the wildcard branches that actually exist, however many
//! subscriptions there are. Matching agrees with [`super::topic::matches`]
//! on every input, valid or not.
//!
//! It must never recurse over levels (a client controls how many levels a
//! filter or topic has, up to 65 535, and a deep recursion would overflow a
//! worker thread's stack), never allocate per level while matching, and
//! never keep empty nodes after a removal, so that subscribe/unsubscribe
//! churn does not leak memory.

use std::borrow::Borrow;
use std::collections::HashMap as StdHashMap;

/// Maps with foldhash: several times faster than SipHash on short topic
/// levels, and still seeded per process against crafted collisions.
type HashMap<K, V> = StdHashMap<K, V, foldhash::fast::RandomState>;
use std::hash::Hash;
use std::str::Split;

/// Subscribers `K` with a value `V` each (e.g. subscription options),
/// indexed by topic filter.
pub struct Trie<K, V> {
    /// The node for zero levels: holds the `#` filter and the first levels.
    root: Node<K, V>,
    /// Number of (filter, subscriber) entries, so `len` is O(1).
    len: usize,
}

/// The subscribers whose filter ends at one node (exactly, or with `/#`).
struct Leaf<K, V> {
    /// The filter as subscribed, handed to match callbacks without
    /// rebuilding it from levels.
    filter: Box<str>,
    /// Each subscriber once, with its value.
    subs: HashMap<K, V>,
}

/// One level of a filter.
struct Node<K, V> {
    /// Children for literal levels (anything but a whole `+`, and `#` only
    /// when it is not the last level).
    children: HashMap<Box<str>, Node<K, V>>,
    /// Child for a `+` level; separate so matching never has to scan.
    plus: Option<Box<Node<K, V>>>,
    /// Subscribers of the filter that ends at this node.
    exact: Option<Box<Leaf<K, V>>>,
    /// Subscribers of this node's filter followed by `/#` (or of `#` itself
    /// at the root); they match this level and everything below it.
    hash: Option<Box<Leaf<K, V>>>,
}

impl<K, V> Node<K, V> {
    fn new() -> Self {
        Node {
            children: HashMap::default(),
            plus: None,
            exact: None,
            hash: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.exact.is_none()
            && self.hash.is_none()
    }

    /// The child for a filter level, if any.
    fn child(&self, level: &str) -> Option<&Node<K, V>> {
        if level == "+" {
            self.plus.as_deref()
        } else {
            self.children.get(level)
        }
    }

    /// The child for a filter level, if any, mutably.
    /// The node at the end of `path`'s levels below this one, if it exists.
    fn descend_mut(&mut self, path: &Path<'_>) -> Option<&mut Node<K, V>> {
        let mut node = self;
        for level in path.levels() {
            node = node.child_mut(level)?;
        }
        Some(node)
    }

    /// The leaf of subscriptions ending here: of `#` (`hash`) or exact.
    fn slot_mut(&mut self, hash: bool) -> &mut Option<Box<Leaf<K, V>>> {
        if hash {
            &mut self.hash
        } else {
            &mut self.exact
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<K, V>> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    /// The child for a filter level, created if missing.
    fn child_or_insert(&mut self, level: &str) -> &mut Node<K, V> {
        if level == "+" {
            self.plus.get_or_insert_with(|| Box::new(Node::new()))
        } else {
            self.children
                .entry(Box::from(level))
                .or_insert_with(Node::new)
        }
    }

    /// Detaches every child, so dropping `self` recurses no deeper.
    fn take_children(&mut self, into: &mut Vec<Node<K, V>>) {
        into.extend(self.children.drain().map(|(_, child)| child));
        if let Some(plus) = self.plus.take() {
            into.push(*plus);
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    /// Drops the subtree with a heap stack instead of the default recursion,
    /// which a filter with tens of thousands of levels would overflow.
    fn drop(&mut self) {
        let mut stack = Vec::new();
        self.take_children(&mut stack);
        while let Some(mut node) = stack.pop() {
            node.take_children(&mut stack);
        }
    }
}

/// A filter split into the levels that become nodes and whether it ends in
/// `#` (which lives in the last node's `hash` slot, not in a node of its
/// own).
struct Path<'a> {
    /// The levels before a trailing `#`; `None` for the filter `#` alone,
    /// which has no such level (distinct from `/#`, whose one level is "").
    prefix: Option<&'a str>,
    /// Whether the filter ends in a `#` level.
    hash: bool,
}

impl<'a> Path<'a> {
    fn new(filter: &'a str) -> Self {
        if filter == "#" {
            Path {
                prefix: None,
                hash: true,
            }
        } else if let Some(prefix) = filter.strip_suffix("/#") {
            Path {
                prefix: Some(prefix),
                hash: true,
            }
        } else {
            Path {
                prefix: Some(filter),
                hash: false,
            }
        }
    }

    fn levels(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.prefix.into_iter().flat_map(|p| p.split('/'))
    }
}

impl<K, V> Default for Trie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Trie<K, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Trie {
            root: Node::new(),
            len: 0,
        }
    }

    /// Number of (filter, subscriber) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Calls `f(filter, subscriber, value)` once for every entry whose filter
    /// matches the topic name `topic`, in no particular order.
    ///
    /// A filter whose first level is `+` or `#` does not match a topic that
    /// starts with `$`. Allocates nothing unless the topic meets both a
    /// literal and a `+` branch at the same level, and then one small stack.
    pub fn for_each_match(&self, topic: &str, mut f: impl FnMut(&str, &K, &V)) {
        let mut report = |leaf: &Option<Box<Leaf<K, V>>>| {
            if let Some(leaf) = leaf {
                for (key, value) in &leaf.subs {
                    f(&leaf.filter, key, value);
                }
            }
        };
        // Branches not yet walked: a `+` child and the topic levels after it.
        let mut pending: Vec<(&Node<K, V>, Split<'_, char>)> = Vec::new();
        let mut node = &self.root;
        let mut levels = topic.split('/');
        // Wildcards at the root are off limits to `$` topics.
        let mut wildcards = !topic.starts_with('$');
        loop {
            if wildcards {
                report(&node.hash);
            }
            let next = match levels.next() {
                None => {
                    report(&node.exact);
                    None
                }
                Some(level) => {
                    let literal = node.children.get(level);
                    let plus = if wildcards {
                        node.plus.as_deref()
                    } else {
                        None
                    };
                    match (literal, plus) {
                        (Some(literal), Some(plus)) => {
                            pending.push((plus, levels.clone()));
                            Some(literal)
                        }
                        (one, other) => one.or(other),
                    }
                }
            };
            wildcards = true;
            match next {
                Some(child) => node = child,
                None => match pending.pop() {
                    Some((branch, rest)) => {
                        node = branch;
                        levels = rest;
                    }
                    None => return,
                },
            }
        }
    }
}

impl<K: Eq + Hash, V> Trie<K, V> {
    /// Subscribes `key` to `filter` with `value`; returns the value it had on
    /// that filter before, if any.
    ///
    /// The filter is not validated (see [`super::topic::valid_topic_filter`]);
    /// an invalid one is stored and matched as [`super::topic::matches`]
    /// would treat it.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let path = Path::new(filter);
        let mut node = &mut self.root;
        for level in path.levels() {
            node = node.child_or_insert(level);
        }
        let slot = if path.hash {
            &mut node.hash
        } else {
            &mut node.exact
        };
        let leaf = slot.get_or_insert_with(|| {
            Box::new(Leaf {
                filter: Box::from(filter),
                subs: HashMap::default(),
            })
        });
        let old = leaf.subs.insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// The value `key` has on exactly `filter` (no wildcard matching).
    pub fn get<Q>(&self, filter: &str, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let path = Path::new(filter);
        let mut node = &self.root;
        for level in path.levels() {
            node = node.child(level)?;
        }
        let slot = if path.hash { &node.hash } else { &node.exact };
        slot.as_ref()?.subs.get(key)
    }

    /// The value `key` has on exactly `filter`, mutably.
    pub fn get_mut<Q>(&mut self, filter: &str, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let path = Path::new(filter);
        let node = self.root.descend_mut(&path)?;
        node.slot_mut(path.hash).as_mut()?.subs.get_mut(key)
    }

    /// Unsubscribes `key` from `filter`; returns its value if it was
    /// subscribed. Nodes left with nothing in or under them are freed.
    pub fn remove<Q>(&mut self, filter: &str, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let path = Path::new(filter);

        // 1. Take the entry out.
        let node = self.root.descend_mut(&path)?;
        let slot = node.slot_mut(path.hash);
        let leaf = slot.as_mut()?;
        let old = leaf.subs.remove(key)?;
        if leaf.subs.is_empty() {
            *slot = None;
        }
        self.len -= 1;
        if !node.is_empty() {
            return Some(old);
        }

        // 2. Find the deepest node on the path that keeps something besides
        // the path itself; everything below it on the path is now empty.
        // Its depth is at most the path length, and the root never goes.
        let mut keep_depth = 0;
        let mut node = &self.root;
        for (depth, level) in path.levels().enumerate() {
            let branches = node.children.len() + usize::from(node.plus.is_some());
            if node.exact.is_some() || node.hash.is_some() || branches > 1 {
                keep_depth = depth;
            }
            match node.child(level) {
                Some(child) => node = child,
                None => return Some(old),
            }
        }

        // 3. Cut the empty chain off below that node.
        let mut levels = path.levels();
        let mut node = &mut self.root;
        for level in levels.by_ref().take(keep_depth) {
            match node.child_mut(level) {
                Some(child) => node = child,
                None => return Some(old),
            }
        }
        if let Some(level) = levels.next() {
            if level == "+" {
                node.plus = None;
            } else {
                node.children.remove(level);
            }
        }
        Some(old)
    }
}

#[cfg(test)]
mod tests {
    use super::super::strategies::levels;
    use super::super::topic::matches;
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    impl<K, V> Trie<K, V> {
        /// Nodes below the root, to check that removals prune.
        fn node_count(&self) -> usize {
            let mut count = 0;
            let mut stack = vec![&self.root];
            while let Some(node) = stack.pop() {
                stack.extend(node.children.values());
                stack.extend(node.plus.as_deref());
                count += 1;
            }
            count - 1
        }
    }

    fn matched<V>(trie: &Trie<u32, V>, topic: &str) -> BTreeSet<(String, u32)> {
        let mut out = BTreeSet::new();
        trie.for_each_match(topic, |filter, key, _| {
            assert!(out.insert((filter.to_owned(), *key)), "reported twice");
        });
        out
    }

    fn filters_matching<V>(trie: &Trie<u32, V>, topic: &str) -> Vec<String> {
        let set: BTreeSet<String> = matched(trie, topic).into_iter().map(|(f, _)| f).collect();
        set.into_iter().collect()
    }

    const SPEC_FILTERS: [&str; 12] = [
        "sport/tennis/player1/#",
        "sport/tennis/+",
        "sport/+",
        "sport/#",
        "+/monitor/Clients",
        "$SYS/#",
        "$SYS/monitor/+",
        "#",
        "+",
        "+/+",
        "/+",
        "+/#",
    ];

    fn spec_trie() -> Trie<u32, ()> {
        let mut trie = Trie::new();
        for (i, filter) in SPEC_FILTERS.iter().enumerate() {
            trie.insert(filter, i as u32, ());
        }
        trie
    }

    #[test]
    fn spec_examples() {
        let trie = spec_trie();
        assert_eq!(
            filters_matching(&trie, "sport/tennis/player1"),
            [
                "#",
                "+/#",
                "sport/#",
                "sport/tennis/+",
                "sport/tennis/player1/#"
            ]
        );
        assert_eq!(
            filters_matching(&trie, "sport/tennis/player1/ranking"),
            ["#", "+/#", "sport/#", "sport/tennis/player1/#"]
        );
        assert_eq!(
            filters_matching(&trie, "sport/"),
            ["#", "+/#", "+/+", "sport/#", "sport/+"]
        );
        assert_eq!(
            filters_matching(&trie, "sport"),
            ["#", "+", "+/#", "sport/#"]
        );
        assert_eq!(
            filters_matching(&trie, "/finance"),
            ["#", "+/#", "+/+", "/+"]
        );
        assert_eq!(
            filters_matching(&trie, "$SYS/monitor/Clients"),
            ["$SYS/#", "$SYS/monitor/+"]
        );
        assert_eq!(filters_matching(&trie, "$SYS/x"), ["$SYS/#"]);
        assert_eq!(filters_matching(&trie, "$SYS"), ["$SYS/#"]);
        assert!(filters_matching(&trie, "$other").is_empty());
    }

    #[test]
    fn agrees_with_matches_on_spec_examples() {
        let trie = spec_trie();
        for topic in [
            "sport",
            "sport/",
            "sport/tennis",
            "sport/tennis/player1",
            "a/monitor/Clients",
            "$SYS/monitor/Clients",
            "",
            "/",
            "//",
            "$",
            "$SYS",
        ] {
            let brute: Vec<String> = SPEC_FILTERS
                .iter()
                .filter(|f| matches(f, topic))
                .map(|f| f.to_string())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            assert_eq!(filters_matching(&trie, topic), brute, "topic {topic:?}");
        }
    }

    #[test]
    fn insert_replace_get() {
        let mut trie = Trie::new();
        assert!(trie.is_empty());
        assert_eq!(trie.insert("a/+", 1, "qos0"), None);
        assert_eq!(trie.insert("a/+", 2, "qos1"), None);
        assert_eq!(trie.insert("a/#", 1, "qos2"), None);
        assert_eq!(trie.len(), 3);
        assert_eq!(trie.insert("a/+", 1, "qos1"), Some("qos0"));
        assert_eq!(trie.len(), 3);
        assert_eq!(trie.get("a/+", &1), Some(&"qos1"));
        assert_eq!(trie.get("a/#", &1), Some(&"qos2"));
        assert_eq!(trie.get("a", &1), None);
        assert_eq!(trie.get("a/+", &3), None);
        if let Some(v) = trie.get_mut("a/#", &1) {
            *v = "changed";
        }
        assert_eq!(trie.get("a/#", &1), Some(&"changed"));
        let mut seen = Vec::new();
        trie.for_each_match("a/b", |f, k, v| seen.push((f.to_owned(), *k, *v)));
        seen.sort();
        assert_eq!(
            seen,
            [
                ("a/#".to_owned(), 1, "changed"),
                ("a/+".to_owned(), 1, "qos1"),
                ("a/+".to_owned(), 2, "qos1")
            ]
        );
    }

    #[test]
    fn remove_and_prune() {
        let mut trie = Trie::new();
        trie.insert("a/b/c", 1, ());
        trie.insert("a/b/c/d/e", 2, ());
        trie.insert("a/+/#", 3, ());
        trie.insert("#", 4, ());
        trie.insert("/#", 5, ());
        let nodes = trie.node_count();
        assert_eq!(trie.remove("a/b/c", &9), None);
        assert_eq!(trie.remove("a/b/x", &1), None);
        assert_eq!(trie.remove("a/b", &1), None);
        assert_eq!(trie.node_count(), nodes);
        assert_eq!(trie.len(), 5);

        // a/b/c keeps its node: a/b/c/d/e goes through it.
        assert_eq!(trie.remove("a/b/c", &1), Some(()));
        assert_eq!(trie.node_count(), nodes);
        assert!(matched(&trie, "a/b/c").iter().all(|(_, k)| *k != 1));
        // e, d, c and b are left empty and go; a stays for `a/+/#`.
        assert_eq!(trie.remove("a/b/c/d/e", &2), Some(()));
        assert_eq!(trie.node_count(), 3); // a, a/+, "" (for /#)
        assert_eq!(trie.remove("a/+/#", &3), Some(()));
        assert_eq!(trie.node_count(), 1);
        assert_eq!(trie.remove("#", &4), Some(()));
        assert_eq!(trie.remove("/#", &5), Some(()));
        assert_eq!(trie.node_count(), 0);
        assert!(trie.is_empty());
        assert!(trie.root.is_empty());
    }

    #[test]
    fn subscriber_removal_keeps_other_subscribers() {
        let mut trie = Trie::new();
        trie.insert("x/y", 1, ());
        trie.insert("x/y", 2, ());
        assert_eq!(trie.remove("x/y", &1), Some(()));
        assert_eq!(matched(&trie, "x/y").len(), 1);
        assert_eq!(trie.remove("x/y", &1), None);
        assert_eq!(trie.remove("x/y", &2), Some(()));
        assert_eq!(trie.node_count(), 0);
    }

    #[test]
    fn borrowed_keys() {
        let mut trie: Trie<String, u8> = Trie::new();
        trie.insert("t", "client-1".to_owned(), 1);
        assert_eq!(trie.get("t", "client-1"), Some(&1));
        assert_eq!(trie.remove("t", "client-1"), Some(1));
    }

    #[test]
    fn deep_filters_do_not_overflow_the_stack() {
        // 65 535 bytes of levels: what one client may send in one SUBSCRIBE.
        let deep_plus = vec!["+"; 32_000].join("/");
        let deep_literal = vec!["a"; 32_000].join("/");
        let mut trie = Trie::new();
        trie.insert(&deep_plus, 1, ());
        trie.insert(&deep_literal, 2, ());
        trie.insert(&format!("{deep_literal}/#"), 3, ());
        assert_eq!(matched(&trie, &deep_literal).len(), 3);
        assert_eq!(trie.remove(&deep_plus, &1), Some(()));
        drop(trie);
        let mut trie = Trie::new();
        trie.insert(&deep_plus, 1, ());
        drop(trie);
    }

    #[test]
    fn many_subscriptions() {
        let mut trie = Trie::new();
        for i in 0..100_000u32 {
            trie.insert(&format!("devices/{}/telemetry", i), i, ());
        }
        trie.insert("devices/+/telemetry", 1_000_000, ());
        trie.insert("devices/#", 1_000_001, ());
        assert_eq!(trie.len(), 100_002);
        let start = std::time::Instant::now();
        let mut hits = 0;
        for i in 0..10_000u32 {
            trie.for_each_match(&format!("devices/{}/telemetry", i * 7), |_, _, _| hits += 1);
        }
        assert_eq!(hits, 30_000);
        // Generous even for an unoptimised build on a busy machine; a linear
        // scan would take minutes.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        for i in 0..100_000u32 {
            assert_eq!(
                trie.remove(&format!("devices/{}/telemetry", i), &i),
                Some(())
            );
        }
        assert_eq!(trie.node_count(), 3); // devices, devices/+, devices/+/telemetry
    }

    proptest! {
        #[test]
        fn trie_agrees_with_matches(
            filters in prop::collection::vec(levels(), 0..40),
            topics in prop::collection::vec(levels(), 1..20),
            removals in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
        ) {
            let mut trie = Trie::new();
            let mut entries: BTreeSet<(String, u32)> = BTreeSet::new();
            for (i, filter) in filters.iter().enumerate() {
                // A few keys share a filter; some filters repeat.
                let key = (i % 7) as u32;
                let fresh = entries.insert((filter.clone(), key));
                prop_assert_eq!(trie.insert(filter, key, ()).is_none(), fresh);
            }
            for index in &removals {
                if entries.is_empty() {
                    break;
                }
                let victim = entries.iter().nth(index.index(entries.len())).cloned();
                if let Some((filter, key)) = victim {
                    prop_assert!(trie.remove(&filter, &key).is_some());
                    entries.remove(&(filter, key));
                }
            }
            prop_assert_eq!(trie.len(), entries.len());
            for topic in &topics {
                let brute: BTreeSet<(String, u32)> = entries
                    .iter()
                    .filter(|(f, _)| matches(f, topic))
                    .cloned()
                    .collect();
                prop_assert_eq!(matched(&trie, topic), brute, "topic {:?}", topic);
            }
            for (filter, key) in &entries {
                prop_assert!(trie.remove(filter, key).is_some());
            }
            prop_assert_eq!(trie.node_count(), 0);
            prop_assert!(trie.is_empty());
        }
    }
}
