//! Shared subscriptions (`$share/{group}/{filter}`, MQTT 5.0 4.8.2): for
//! each group and filter, the members that take turns receiving messages.
//!
//! Matching is the trie's ([`super::trie::Trie`], keyed by group name); this
//! file only adds the members and the choice of one of them. The choice is
//! round-robin through an atomic cursor per (group, filter), so publishers
//! can pick concurrently behind a shared (read) reference.
//!
//! It must never deliver one message to two members of the same (group,
//! filter), never skip a (group, filter) that has members, and never block
//! or lock while picking.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::trie::Trie;

/// Members `K` with a value `V` each (e.g. subscription options), grouped by
/// share name and topic filter.
pub struct SharedGroups<K, V> {
    /// Filter → group name → that group's members on that filter.
    trie: Trie<Box<str>, Group<K, V>>,
    /// Number of (group, filter, member) entries, so `len` is O(1).
    len: usize,
}

/// The members of one group on one filter.
struct Group<K, V> {
    /// Members in the order they joined; never empty (an emptied group is
    /// removed from the trie). A `Vec` gives the round-robin a stable order.
    members: Vec<(K, V)>,
    /// How many picks have been made, give or take skips: the next pick
    /// starts at `cursor % members.len()`. Atomic so picking needs only `&self`.
    cursor: AtomicUsize,
}

impl<K, V> Group<K, V> {
    /// One member, round-robin, preferring members `accept` takes; if it
    /// takes none, the member whose turn it is anyway.
    fn pick(&self, accept: &mut impl FnMut(&K) -> bool) -> Option<&(K, V)> {
        let count = self.members.len();
        if count == 0 {
            return None;
        }
        let raw = self.cursor.fetch_add(1, Ordering::Relaxed);
        let start = raw % count;
        for offset in 0..count {
            let Some(member) = self.members.get((start + offset) % count) else {
                break;
            };
            if accept(&member.0) {
                if offset > 0 {
                    // Resume after this member, not after the first one that
                    // was refused; otherwise the member behind a refused one
                    // gets its turn and the refused one's. If another
                    // publisher moved the cursor meanwhile, leave it.
                    let _ = self.cursor.compare_exchange(
                        raw.wrapping_add(1),
                        raw.wrapping_add(offset + 1),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                return Some(member);
            }
        }
        self.members.get(start)
    }
}

impl<K, V> Default for SharedGroups<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> SharedGroups<K, V> {
    /// No groups.
    pub fn new() -> Self {
        SharedGroups {
            trie: Trie::new(),
            len: 0,
        }
    }

    /// Number of (group, filter, member) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no members at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// For every (group, filter) whose filter matches `topic`, calls
    /// `f(group, filter, member, value)` for exactly one member, chosen
    /// round-robin among the members `accept` takes (e.g. online sessions);
    /// if it takes none, the member whose turn it is receives the message
    /// anyway (e.g. into its offline queue).
    ///
    /// The `$` rule applies as for ordinary filters: `$share/g/#` does not
    /// match `$SYS/x`.
    pub fn for_each_match(
        &self,
        topic: &str,
        mut accept: impl FnMut(&K) -> bool,
        mut f: impl FnMut(&str, &str, &K, &V),
    ) {
        self.trie.for_each_match(topic, |filter, group, members| {
            if let Some((key, value)) = members.pick(&mut accept) {
                f(group, filter, key, value);
            }
        });
    }

    /// [`Self::for_each_match`] where every member is acceptable.
    pub fn for_each_match_any(&self, topic: &str, f: impl FnMut(&str, &str, &K, &V)) {
        self.for_each_match(topic, |_| true, f);
    }
}

impl<K: Eq, V> SharedGroups<K, V> {
    /// Adds `key` to `group` on `filter` (the filter after
    /// `$share/{group}/`, see [`super::topic::parse_shared`]); if it is
    /// already a member, replaces its value in place and returns the old one.
    pub fn insert(&mut self, group: &str, filter: &str, key: K, value: V) -> Option<V> {
        if let Some(existing) = self.trie.get_mut(filter, group) {
            if let Some(slot) = existing.members.iter_mut().find(|(k, _)| *k == key) {
                return Some(std::mem::replace(&mut slot.1, value));
            }
            existing.members.push((key, value));
        } else {
            let members = Group {
                members: vec![(key, value)],
                cursor: AtomicUsize::new(0),
            };
            self.trie.insert(filter, Box::from(group), members);
        }
        self.len += 1;
        None
    }

    /// Removes `key` from `group` on `filter`; returns its value if it was a
    /// member. The last member's departure removes the group.
    pub fn remove<Q>(&mut self, group: &str, filter: &str, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let existing = self.trie.get_mut(filter, group)?;
        let index = existing
            .members
            .iter()
            .position(|(k, _)| k.borrow() == key)?;
        let (_, value) = existing.members.remove(index);
        if existing.members.is_empty() {
            self.trie.remove(filter, group);
        }
        self.len -= 1;
        Some(value)
    }

    /// The value `key` has as a member of `group` on `filter`.
    pub fn get<Q>(&self, group: &str, filter: &str, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let existing = self.trie.get(filter, group)?;
        existing
            .members
            .iter()
            .find(|(k, _)| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// How many members `group` has on `filter`.
    pub fn member_count(&self, group: &str, filter: &str) -> usize {
        self.trie
            .get(filter, group)
            .map_or(0, |existing| existing.members.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn picks(groups: &SharedGroups<u32, ()>, topic: &str, n: usize) -> BTreeMap<u32, usize> {
        let mut counts = BTreeMap::new();
        for _ in 0..n {
            let mut this_message = 0;
            groups.for_each_match_any(topic, |_, _, key, _| {
                *counts.entry(*key).or_insert(0) += 1;
                this_message += 1;
            });
            assert_eq!(this_message, 1, "exactly one member per message");
        }
        counts
    }

    #[test]
    fn round_robin_is_fair() {
        let mut groups = SharedGroups::new();
        for key in [1, 2, 3] {
            assert_eq!(groups.insert("g", "sensors/+", key, ()), None);
        }
        assert_eq!(groups.len(), 3);
        let counts = picks(&groups, "sensors/temp", 300);
        assert_eq!(counts, BTreeMap::from([(1, 100), (2, 100), (3, 100)]));
    }

    #[test]
    fn round_robin_order() {
        let mut groups = SharedGroups::new();
        for key in [10, 20, 30] {
            groups.insert("g", "t", key, ());
        }
        let mut order = Vec::new();
        for _ in 0..6 {
            groups.for_each_match_any("t", |_, _, key, _| order.push(*key));
        }
        assert_eq!(order, [10, 20, 30, 10, 20, 30]);
    }

    #[test]
    fn round_robin_is_fair_across_threads() {
        let mut groups = SharedGroups::new();
        for key in [0u32, 1, 2] {
            groups.insert("g", "t/#", key, ());
        }
        let counts: [AtomicUsize; 3] = Default::default();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..3_000 {
                        groups.for_each_match_any("t/x", |_, _, key, _| {
                            if let Some(count) = counts.get(*key as usize) {
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                });
            }
        });
        let counts = counts.map(|c| c.into_inner());
        assert_eq!(counts, [4_000; 3]);
    }

    #[test]
    fn skips_refused_members_fairly() {
        let mut groups = SharedGroups::new();
        for key in [1, 2, 3] {
            groups.insert("g", "t", key, ());
        }
        let mut counts = BTreeMap::new();
        for _ in 0..300 {
            groups.for_each_match(
                "t",
                |k| *k != 2,
                |_, _, key, _| {
                    *counts.entry(*key).or_insert(0) += 1;
                },
            );
        }
        assert_eq!(counts, BTreeMap::from([(1, 150), (3, 150)]));

        // Only one member online: it gets everything.
        let mut counts = BTreeMap::new();
        for _ in 0..30 {
            groups.for_each_match(
                "t",
                |k| *k == 3,
                |_, _, key, _| {
                    *counts.entry(*key).or_insert(0) += 1;
                },
            );
        }
        assert_eq!(counts, BTreeMap::from([(3, 30)]));
    }

    #[test]
    fn falls_back_when_all_refused() {
        let mut groups = SharedGroups::new();
        for key in [1, 2, 3] {
            groups.insert("g", "t", key, ());
        }
        let mut counts = BTreeMap::new();
        for _ in 0..30 {
            let mut delivered = 0;
            groups.for_each_match(
                "t",
                |_| false,
                |_, _, key, _| {
                    *counts.entry(*key).or_insert(0) += 1;
                    delivered += 1;
                },
            );
            assert_eq!(delivered, 1);
        }
        assert_eq!(counts, BTreeMap::from([(1, 10), (2, 10), (3, 10)]));
    }

    #[test]
    fn one_member_per_group_and_filter() {
        let mut groups = SharedGroups::new();
        groups.insert("g1", "a/+", 1, 'x');
        groups.insert("g1", "a/+", 2, 'y');
        groups.insert("g1", "a/#", 3, 'z');
        groups.insert("g2", "a/+", 4, 'w');
        groups.insert("g2", "b", 5, 'v');
        let mut seen = BTreeSet::new();
        groups.for_each_match_any("a/b", |group, filter, key, _| {
            assert!(seen.insert((group.to_owned(), filter.to_owned())));
            assert!(match (group, filter) {
                ("g1", "a/+") => [1, 2].contains(key),
                ("g1", "a/#") => *key == 3,
                ("g2", "a/+") => *key == 4,
                _ => false,
            });
        });
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn dollar_topics() {
        let mut groups = SharedGroups::new();
        groups.insert("g", "#", 1, ());
        groups.insert("g", "$SYS/#", 2, ());
        let mut hit = Vec::new();
        groups.for_each_match_any("$SYS/x", |_, _, key, _| hit.push(*key));
        assert_eq!(hit, [2]);
    }

    #[test]
    fn insert_replace_remove() {
        let mut groups: SharedGroups<String, u8> = SharedGroups::new();
        assert_eq!(groups.insert("g", "t", "a".into(), 0), None);
        assert_eq!(groups.insert("g", "t", "b".into(), 1), None);
        assert_eq!(groups.insert("g", "t", "a".into(), 2), Some(0));
        assert_eq!(groups.len(), 2);
        assert_eq!(groups.member_count("g", "t"), 2);
        assert_eq!(groups.get("g", "t", "a"), Some(&2));
        assert_eq!(groups.get("h", "t", "a"), None);
        assert_eq!(groups.remove("g", "t", "zz"), None);
        assert_eq!(groups.remove("h", "t", "a"), None);
        assert_eq!(groups.remove("g", "u", "a"), None);
        assert_eq!(groups.remove("g", "t", "a"), Some(2));
        assert_eq!(groups.member_count("g", "t"), 1);
        let mut hit = Vec::new();
        groups.for_each_match_any("t", |_, _, key, value| hit.push((key.clone(), *value)));
        assert_eq!(hit, [("b".to_owned(), 1)]);
        assert_eq!(groups.remove("g", "t", "b"), Some(1));
        assert!(groups.is_empty());
        assert!(groups.trie.is_empty());
        let mut hit = 0;
        groups.for_each_match_any("t", |_, _, _, _| hit += 1);
        assert_eq!(hit, 0);
    }

    #[test]
    fn is_sync() {
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<SharedGroups<String, u8>>();
    }
}
