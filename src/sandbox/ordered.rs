//! An insertion-ordered map with O(log n) removal: what every level of the emulated state uses,
//! so snapshots and list answers come out in creation order.

use std::collections::{BTreeMap, HashMap};

pub(crate) struct Ordered<V> {
    next: u64,
    items: BTreeMap<u64, V>,
    index: HashMap<String, u64>,
}

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered {
            next: 0,
            items: BTreeMap::new(),
            index: HashMap::new(),
        }
    }
}

impl<V> Ordered<V> {
    pub fn get(&self, key: &str) -> Option<&V> {
        self.index.get(key).and_then(|seq| self.items.get(seq))
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.index.get(key).and_then(|seq| self.items.get_mut(seq))
    }

    /// The value under `key`, inserted at the end by `make` if absent.
    pub fn get_or_insert_with(&mut self, key: &str, make: impl FnOnce() -> V) -> &mut V {
        let seq = match self.index.get(key) {
            Some(&seq) => seq,
            None => {
                let seq = self.next;
                self.next += 1;
                self.index.insert(key.to_string(), seq);
                self.items.insert(seq, make());
                seq
            }
        };
        self.items.get_mut(&seq).expect("index and items agree")
    }

    /// Appends a new entry; `key` must not be present.
    pub fn push(&mut self, key: &str, value: V) {
        debug_assert!(!self.index.contains_key(key));
        self.get_or_insert_with(key, || value);
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let seq = self.index.remove(key)?;
        self.items.remove(&seq)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> {
        self.items.values()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.index.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_out_in_insertion_order_after_removals() {
        let mut map = Ordered::default();
        for key in ["c", "a", "b"] {
            map.push(key, key.to_uppercase());
        }
        assert_eq!(map.remove("a").as_deref(), Some("A"));
        map.push("a", "A2".to_string());
        *map.get_or_insert_with("c", || unreachable!()) += "!";
        let all: Vec<&str> = map.values().map(String::as_str).collect();
        assert_eq!(all, ["C!", "B", "A2"]);
        map.clear();
        assert!(map.is_empty() && map.get("b").is_none());
    }
}
