//! A topic trie, one node per level, used in two directions:
//!
//! - keyed by *filters* (`+` and `#` stored as wildcard edges), queried with a topic name:
//!   [`TopicTree::for_each_match`] finds every filter that matches a published topic;
//! - keyed by *topic names*, queried with a filter: [`TopicTree::for_each_in_filter`] finds
//!   every stored topic a new subscription matches (the retained store).
//!
//! Both honour [MQTT-4.7.2-1]: a filter starting with a wildcard never matches a topic whose first
//! character is `$`. Nodes live in a slab so that a node is a few words and the trie never holds
//! pointers; empty branches are pruned on removal so the trie does not grow with churn.

use hashbrown::HashMap;
use slab::Slab;

type NodeId = u32;

struct Node<V> {
    children: HashMap<Box<str>, NodeId>,
    plus: Option<NodeId>,
    hash: Option<NodeId>,
    value: Option<V>,
}

impl<V> Node<V> {
    fn new() -> Self {
        Node {
            children: HashMap::new(),
            plus: None,
            hash: None,
            value: None,
        }
    }

    fn is_empty(&self) -> bool {
        self.value.is_none()
            && self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
    }
}

pub struct TopicTree<V> {
    nodes: Slab<Node<V>>,
    root: NodeId,
    values: usize,
}

impl<V> Default for TopicTree<V> {
    fn default() -> Self {
        Self::new()
    }
}

/// Splits `a/b/c` into `a` and `Some("b/c")`; the last level has no rest.
fn split_level(path: &str) -> (&str, Option<&str>) {
    match path.split_once('/') {
        Some((level, rest)) => (level, Some(rest)),
        None => (path, None),
    }
}

impl<V> TopicTree<V> {
    pub fn new() -> Self {
        let mut nodes = Slab::new();
        let root = nodes.insert(Node::new()) as NodeId;
        TopicTree {
            nodes,
            root,
            values: 0,
        }
    }

    /// Number of keys that hold a value.
    pub fn len(&self) -> usize {
        self.values
    }

    pub fn is_empty(&self) -> bool {
        self.values == 0
    }

    /// The first value held in a node slot at `from` or after, with its slot, `$` topics
    /// included: a walk over every value in slices (slots of values added meanwhile may be
    /// passed already; their keys are the caller's to account for).
    pub fn value_from(&self, from: usize) -> Option<(usize, &V)> {
        (from..self.nodes.capacity()).find_map(|at| Some((at, self.nodes.get(at)?.value.as_ref()?)))
    }

    fn node(&self, id: NodeId) -> &Node<V> {
        &self.nodes[id as usize]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node<V> {
        &mut self.nodes[id as usize]
    }

    fn child(&self, id: NodeId, level: &str) -> Option<NodeId> {
        let node = self.node(id);
        match level {
            "+" => node.plus,
            "#" => node.hash,
            _ => node.children.get(level).copied(),
        }
    }

    fn find(&self, key: &str) -> Option<NodeId> {
        let mut id = self.root;
        let mut rest = Some(key);
        while let Some(path) = rest {
            let (level, next) = split_level(path);
            id = self.child(id, level)?;
            rest = next;
        }
        Some(id)
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).and_then(|id| self.node(id).value.as_ref())
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let id = self.find(key)?;
        self.node_mut(id).value.as_mut()
    }

    /// The value at `key`, inserted with `make` if absent.
    pub fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        let mut id = self.root;
        let mut rest = Some(key);
        while let Some(path) = rest {
            let (level, next) = split_level(path);
            id = match self.child(id, level) {
                Some(child) => child,
                None => {
                    let child = self.nodes.insert(Node::new()) as NodeId;
                    let node = self.node_mut(id);
                    match level {
                        "+" => node.plus = Some(child),
                        "#" => node.hash = Some(child),
                        _ => {
                            node.children.insert(level.into(), child);
                        }
                    }
                    child
                }
            };
            rest = next;
        }
        let node = self.node_mut(id);
        if node.value.is_none() {
            node.value = Some(make());
            self.values += 1;
        }
        self.nodes[id as usize]
            .value
            .as_mut()
            .expect("value was just set")
    }

    /// Removes and returns the value at `key`, pruning branches left empty.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let removed = self.remove_below(self.root, key);
        if removed.is_some() {
            self.values -= 1;
        }
        removed
    }

    fn remove_below(&mut self, id: NodeId, path: &str) -> Option<V> {
        let (level, rest) = split_level(path);
        let child = self.child(id, level)?;
        let removed = match rest {
            Some(rest) => self.remove_below(child, rest),
            None => self.node_mut(child).value.take(),
        };
        if removed.is_some() && self.node(child).is_empty() {
            self.nodes.remove(child as usize);
            let node = self.node_mut(id);
            match level {
                "+" => node.plus = None,
                "#" => node.hash = None,
                _ => {
                    node.children.remove(level);
                }
            }
        }
        removed
    }

    /// Removes the value at `key` when `is_empty` says it holds nothing any more.
    pub fn remove_if(&mut self, key: &str, is_empty: impl FnOnce(&V) -> bool) {
        if self.get(key).is_some_and(is_empty) {
            self.remove(key);
        }
    }

    /// Calls `visit` with the value of every stored *filter* that matches the topic name `topic`.
    pub fn for_each_match<'s>(&'s self, topic: &str, visit: &mut impl FnMut(&'s V)) {
        let dollar = topic.starts_with('$');
        self.match_level(self.root, Some(topic), dollar, visit);
    }

    fn match_level<'s>(
        &'s self,
        id: NodeId,
        rest: Option<&str>,
        skip_wildcards: bool,
        visit: &mut impl FnMut(&'s V),
    ) {
        let node = self.node(id);
        let Some(path) = rest else {
            // The topic ends here: the filter ending here matches, and so does `here/#`.
            if let Some(value) = &node.value {
                visit(value);
            }
            if let Some(value) = node.hash.and_then(|h| self.node(h).value.as_ref()) {
                visit(value);
            }
            return;
        };
        let (level, next) = split_level(path);
        if !skip_wildcards {
            if let Some(value) = node.hash.and_then(|h| self.node(h).value.as_ref()) {
                visit(value);
            }
            if let Some(plus) = node.plus {
                self.match_level(plus, next, false, visit);
            }
        }
        if let Some(&child) = node.children.get(level) {
            self.match_level(child, next, false, visit);
        }
    }

    /// Calls `visit` with the key and value of every stored *topic name* matched by `filter`.
    /// The key is rebuilt in `scratch`, so a caller that needs it longer must copy it.
    pub fn for_each_in_filter(&self, filter: &str, visit: &mut impl FnMut(&str, &V)) {
        let mut key = String::new();
        self.filter_level(self.root, Some(filter), true, &mut key, visit);
    }

    fn filter_level(
        &self,
        id: NodeId,
        rest: Option<&str>,
        at_root: bool,
        key: &mut String,
        visit: &mut impl FnMut(&str, &V),
    ) {
        let node = self.node(id);
        let Some(path) = rest else {
            if let Some(value) = &node.value {
                visit(key, value);
            }
            return;
        };
        let (level, next) = split_level(path);
        match level {
            "#" => {
                // `a/#` matches `a` itself and everything below it.
                if !at_root {
                    if let Some(value) = &node.value {
                        visit(key, value);
                    }
                }
                self.for_each_below(id, at_root, key, visit);
            }
            "+" => {
                for (name, &child) in &node.children {
                    if at_root && name.starts_with('$') {
                        continue;
                    }
                    self.descend(child, name, next, at_root, key, visit);
                }
            }
            _ => {
                if let Some(&child) = node.children.get(level) {
                    self.descend(child, level, next, at_root, key, visit);
                }
            }
        }
    }

    fn descend(
        &self,
        child: NodeId,
        name: &str,
        next: Option<&str>,
        at_root: bool,
        key: &mut String,
        visit: &mut impl FnMut(&str, &V),
    ) {
        let mark = key.len();
        if !at_root {
            key.push('/');
        }
        key.push_str(name);
        self.filter_level(child, next, false, key, visit);
        key.truncate(mark);
    }

    fn for_each_below(
        &self,
        id: NodeId,
        at_root: bool,
        key: &mut String,
        visit: &mut impl FnMut(&str, &V),
    ) {
        for (name, &child) in &self.node(id).children {
            if at_root && name.starts_with('$') {
                continue;
            }
            let mark = key.len();
            if !at_root {
                key.push('/');
            }
            key.push_str(name);
            if let Some(value) = &self.node(child).value {
                visit(key, value);
            }
            self.for_each_below(child, false, key, visit);
            key.truncate(mark);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(list: &[&str]) -> TopicTree<String> {
        let mut tree = TopicTree::new();
        for f in list {
            tree.get_or_insert_with(f, || f.to_string());
        }
        tree
    }

    fn matches(tree: &TopicTree<String>, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        tree.for_each_match(topic, &mut |v| out.push(v.clone()));
        out.sort();
        out
    }

    #[test]
    fn wildcards_match_by_level() {
        let tree = filters(&["a/b", "a/+", "a/#", "#", "+/b", "+/+", "a/b/c", "a"]);
        assert_eq!(
            matches(&tree, "a/b"),
            ["#", "+/+", "+/b", "a/#", "a/+", "a/b"]
        );
        assert_eq!(
            matches(&tree, "a"),
            ["#", "a", "a/#"],
            "a/# matches its parent level"
        );
        assert_eq!(matches(&tree, "a/b/c"), ["#", "a/#", "a/b/c"]);
        assert_eq!(matches(&tree, "x/y/z"), ["#"]);
    }

    #[test]
    fn empty_levels_are_levels() {
        let tree = filters(&["+/+", "/a", "a//b", "+"]);
        assert_eq!(matches(&tree, "/a"), ["+/+", "/a"]);
        assert_eq!(matches(&tree, "a//b"), ["a//b"]);
        assert_eq!(matches(&tree, "a/"), ["+/+"]);
    }

    #[test]
    fn dollar_topics_skip_leading_wildcards() {
        let tree = filters(&["#", "+/x", "$SYS/#", "$SYS/+", "$SYS/x"]);
        assert_eq!(matches(&tree, "$SYS/x"), ["$SYS/#", "$SYS/+", "$SYS/x"]);
        assert_eq!(matches(&tree, "SYS/x"), ["#", "+/x"]);
    }

    #[test]
    fn remove_prunes_empty_branches() {
        let mut tree = filters(&["a/b/c", "a/+"]);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.remove("a/b/c").as_deref(), Some("a/b/c"));
        assert_eq!(tree.remove("a/b/c"), None);
        assert_eq!(matches(&tree, "a/b"), ["a/+"]);
        assert_eq!(tree.remove("a/+").as_deref(), Some("a/+"));
        assert!(tree.is_empty());
        assert_eq!(tree.nodes.len(), 1, "only the root is left");
    }

    fn topics(list: &[&str]) -> TopicTree<String> {
        filters(list)
    }

    fn in_filter(tree: &TopicTree<String>, filter: &str) -> Vec<String> {
        let mut out = Vec::new();
        tree.for_each_in_filter(filter, &mut |key, v| {
            assert_eq!(key, v, "the rebuilt key is the stored topic");
            out.push(v.clone());
        });
        out.sort();
        out
    }

    #[test]
    fn filters_find_stored_topics() {
        let tree = topics(&["a", "a/b", "a/b/c", "a/c", "b", "$SYS/x", "/a", "a//b"]);
        assert_eq!(in_filter(&tree, "a/b"), ["a/b"]);
        assert_eq!(in_filter(&tree, "a/+"), ["a/b", "a/c"]);
        assert_eq!(
            in_filter(&tree, "a/#"),
            ["a", "a//b", "a/b", "a/b/c", "a/c"]
        );
        assert_eq!(
            in_filter(&tree, "#"),
            ["/a", "a", "a//b", "a/b", "a/b/c", "a/c", "b"]
        );
        assert_eq!(in_filter(&tree, "+"), ["a", "b"]);
        assert_eq!(in_filter(&tree, "+/+"), ["/a", "a/b", "a/c"]);
        assert_eq!(in_filter(&tree, "$SYS/#"), ["$SYS/x"]);
        assert_eq!(in_filter(&tree, "+/x"), Vec::<String>::new());
        assert_eq!(in_filter(&tree, "a/+/b"), ["a//b"]);
    }
}
