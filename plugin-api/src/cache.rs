//! A bounded map for caching plugins: two generations, an approximation of
//! least-recently-used that costs one hash lookup per hit.
//!
//! Entries go into the young generation. When an insert would take the young generation
//! past its bound, it becomes the old one (the previous old one, everything not used since
//! the last ageing, is dropped) and a new young one starts. A hit in the old generation
//! moves the entry back to the young one. So what is used stays, and the map never holds
//! more than twice the bound.
//!
//! The bound is on a weight: by default each entry weighs 1 (a bound on the count), or a
//! weight of the caller's ([`Generations::weighed`], for example the bytes of a code). An
//! entry heavier than the bound is not kept. The bound is given with each insert, so a
//! caller whose share of a budget changes (a cache per store) passes its current share.
//!
//! The map is not synchronised: a plugin keeps it behind its own lock.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hash, RandomState},
};

/// See the [module documentation](self).
#[derive(Debug)]
pub struct Generations<K, V, S = RandomState> {
    young: HashMap<K, V, S>,
    old: HashMap<K, V, S>,
    /// The summed weights of each generation.
    young_weight: usize,
    old_weight: usize,
    weigh: fn(&V) -> usize,
}

impl<K, V, S: Default> Default for Generations<K, V, S> {
    fn default() -> Self {
        Self::weighed(|_| 1)
    }
}

impl<K, V, S: Default> Generations<K, V, S> {
    /// An empty map whose bound is on the summed `weigh` of its entries.
    pub fn weighed(weigh: fn(&V) -> usize) -> Self {
        Generations {
            young: HashMap::default(),
            old: HashMap::default(),
            young_weight: 0,
            old_weight: 0,
            weigh,
        }
    }
}

impl<K: Eq + Hash, V, S: BuildHasher + Default> Generations<K, V, S> {
    /// The entry of `key` without moving it, and whether it is in the old generation. For a
    /// reader under a shared lock: to keep an old entry, it [`Generations::insert`]s it again
    /// later, under the exclusive lock.
    #[inline]
    pub fn peek(&self, key: &K) -> Option<(&V, bool)> {
        if let Some(v) = self.young.get(key) {
            return Some((v, false));
        }
        self.old.get(key).map(|v| (v, true))
    }

    /// A copy of the entry of `key`, moved to the young generation if it was old (`bound`
    /// as for [`Generations::insert`]). A hit in the young generation is one lookup.
    #[inline]
    pub fn get(&mut self, key: &K, bound: usize) -> Option<V>
    where
        K: Clone,
        V: Clone,
    {
        match self.young.get(key) {
            Some(v) => Some(v.clone()),
            None => self.promote(key, bound),
        }
    }

    /// The old generation's entry of `key`, moved to the young one; a copy of it.
    #[inline(never)]
    fn promote(&mut self, key: &K, bound: usize) -> Option<V>
    where
        K: Clone,
        V: Clone,
    {
        let value = self.take_old(key)?;
        let copy = value.clone();
        self.file(key.clone(), value, bound);
        Some(copy)
    }

    /// Files `value` under `key` in the young generation, ageing it first if the young
    /// generation would weigh more than `bound`. A value heavier than `bound` is not kept
    /// (and an older value of `key` goes with it).
    pub fn insert(&mut self, key: K, value: V, bound: usize) {
        self.remove(&key);
        self.file(key, value, bound);
    }

    /// [`Generations::insert`] of a key held in neither generation.
    fn file(&mut self, key: K, value: V, bound: usize) {
        let w = (self.weigh)(&value);
        if w > bound {
            return;
        }
        if self.young_weight + w > bound {
            self.old = std::mem::take(&mut self.young);
            self.old_weight = std::mem::replace(&mut self.young_weight, 0);
        }
        self.young_weight += w;
        self.young.insert(key, value);
    }

    /// Takes `key`'s entry out, from whichever generation holds it.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        if let Some(v) = self.young.remove(key) {
            self.young_weight -= (self.weigh)(&v);
            return Some(v);
        }
        self.take_old(key)
    }

    /// Keeps only the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let weigh = self.weigh;
        for (map, weight) in [
            (&mut self.young, &mut self.young_weight),
            (&mut self.old, &mut self.old_weight),
        ] {
            map.retain(|k, v| {
                let kept = keep(k, v);
                if !kept {
                    *weight -= weigh(v);
                }
                kept
            });
        }
    }

    /// Entries held, in both generations.
    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The summed weight of every entry held (at most twice the largest bound passed).
    pub fn weight(&self) -> usize {
        self.young_weight + self.old_weight
    }

    fn take_old(&mut self, key: &K) -> Option<V> {
        let v = self.old.remove(key)?;
        self.old_weight -= (self.weigh)(&v);
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_used_stays_and_the_rest_ages_out() {
        let mut g: Generations<u32, u32> = Generations::default();
        g.insert(0, 0, 3);
        for i in 1..=10 {
            g.insert(i, i, 3);
            // Entry 0 is used after every insert, so it never ages out.
            assert_eq!(g.get(&0, 3), Some(0), "after {i}");
            assert!(g.len() <= 6 && g.weight() == g.len());
        }
        assert_eq!(g.peek(&10), Some((&10, false)));
        assert_eq!(g.peek(&1), None, "unused since two agings");
    }

    #[test]
    fn an_old_hit_moves_back_and_a_peek_does_not_move_it() {
        let mut g: Generations<u32, u32> = Generations::default();
        g.insert(1, 10, 2);
        g.insert(2, 20, 2);
        g.insert(3, 30, 2); // ages: 1 and 2 are old
        assert_eq!(g.peek(&1), Some((&10, true)));
        assert_eq!(g.peek(&1), Some((&10, true)), "a peek leaves it old");
        assert_eq!(g.get(&1, 2), Some(10));
        assert_eq!(g.peek(&1), Some((&10, false)));
        g.insert(4, 40, 2); // ages: 3 and 1 are old, 2 is dropped
        assert_eq!(g.peek(&2), None);
        assert_eq!(g.peek(&3), Some((&30, true)));
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn a_key_is_held_once_whatever_generation_it_was_in() {
        let mut g: Generations<u32, u32> = Generations::default();
        g.insert(1, 10, 2);
        g.insert(2, 20, 2);
        g.insert(3, 30, 2);
        g.insert(1, 11, 2); // was old: replaced, not duplicated
        assert_eq!(g.len(), 3);
        assert_eq!(g.peek(&1), Some((&11, false)));
        g.insert(1, 12, 2); // was young: replaced in place, no ageing
        assert_eq!(g.len(), 3);
        assert_eq!(g.remove(&1), Some(12));
        assert_eq!(g.remove(&1), None);
        assert_eq!(g.weight(), 2);
    }

    #[test]
    fn a_weighed_map_holds_its_bound_and_refuses_what_is_heavier() {
        let mut g: Generations<u32, Vec<u8>> = Generations::weighed(Vec::len);
        for i in 0..20 {
            g.insert(i, vec![0; 300 + i as usize], 1000);
            assert!(g.weight() <= 2000, "{}", g.weight());
            assert_eq!(
                g.weight(),
                (0..20)
                    .filter_map(|k| g.peek(&k))
                    .map(|(v, _)| v.len())
                    .sum::<usize>()
            );
        }
        g.insert(100, vec![0; 1001], 1000);
        assert_eq!(g.peek(&100), None, "heavier than the bound");
        g.insert(19, vec![0; 1001], 1000);
        assert_eq!(g.peek(&19), None, "its older value went too");
    }

    #[test]
    fn retain_keeps_the_weights_exact() {
        let mut g: Generations<u32, Vec<u8>> = Generations::weighed(Vec::len);
        for i in 0..10 {
            g.insert(i, vec![0; 10 * (i as usize + 1)], 200);
        }
        g.retain(|k, _| k % 2 == 0);
        let held: usize = (0..10)
            .filter_map(|k| g.peek(&k))
            .map(|(v, _)| v.len())
            .sum();
        assert_eq!(g.weight(), held);
        assert!((0..10).all(|k| g.peek(&k).is_none() || k % 2 == 0));
    }
}
