//! `vm_state_caching`: the `vm.contract_state` slot, with a read cache.
//!
//! The baseline answers every `storage_get` of a contract call from the block's view of the
//! store: the block's held writes, then a RocksDB read and a JSON decode. This plugin keeps
//! the values it has read or been told of, per state store, so that a contract reading the
//! same keys call after call (a counter, a balance table) reads memory.
//!
//! * **Coherent by the host's announcements.** Every write the host applies is announced
//!   (`written`, with the new values: the cache takes them), and every rollback (`reset`:
//!   the store's entries are dropped). A read that missed fetches from `below` and is kept
//!   only if no write or rollback of that store was announced while it was fetched (a
//!   store's epoch), so a value read before a write can never be kept after it.
//! * **Stores apart.** Entries are keyed by the store's identity as well; a store replaced
//!   (a new identity) starts empty.
//! * **Bounded by count.** Two generations of at most `max_entries / 2`
//!   ([`dubchain_plugin_api::cache`]): when the young one is full it becomes the old one
//!   (the previous old one is dropped); a hit in the old one moves the entry back.

use std::{collections::HashMap, sync::Mutex};

use dubchain_plugin_api::{
    cache::Generations,
    export_plugin, settings,
    slots::{ContractState, ContractStoreRef, ContractWrite},
    types::Bytes32,
    PluginError,
};

dubchain_plugin_api::declare_settings! {
    /// The most values kept, over every store (at least 2).
    max_entries: usize = 1 << 18,
}

/// A value's place: the store, the contract, the key.
type Slot = (u64, Bytes32, i64);
type Values = Generations<Slot, i64, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
struct Inner {
    values: Values,
    /// Per store: bumped by every write and rollback announced.
    epochs: HashMap<u64, u64>,
}

impl Inner {
    fn epoch(&self, store: u64) -> u64 {
        self.epochs.get(&store).copied().unwrap_or(0)
    }

    fn bump(&mut self, store: u64) {
        *self.epochs.entry(store).or_insert(0) += 1;
    }
}

/// The plugin.
#[derive(Debug)]
pub struct StateCache {
    /// Entries a generation holds before it ages (half the bound).
    generation: usize,
    inner: Mutex<Inner>,
}

impl StateCache {
    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<Self, PluginError> {
        let s: Settings = settings::parse(config)?;
        Ok(StateCache {
            generation: settings::at_least("max_entries", s.max_entries, 2)? / 2,
            inner: Mutex::default(),
        })
    }

    fn inner(&self) -> Result<std::sync::MutexGuard<'_, Inner>, PluginError> {
        self.inner
            .lock()
            .map_err(|_| PluginError::poisoned("the contract state cache"))
    }

    /// Files `value` in the young generation, aging it first if it is full.
    fn keep(&self, inner: &mut Inner, slot: Slot, value: i64) {
        inner.values.insert(slot, value, self.generation);
    }
}

impl ContractState for StateCache {
    fn get(
        &self, store: u64, contract: &Bytes32, key: i64, below: &ContractStoreRef<'_>,
    ) -> Result<i64, PluginError> {
        let slot = (store, *contract, key);
        let epoch = {
            let mut inner = self.inner()?;
            if let Some(v) = inner.values.get(&slot, self.generation) {
                return Ok(v);
            }
            inner.epoch(store)
        };
        let value = below.get(contract, key).into_result()?;
        let mut inner = self.inner()?;
        if inner.epoch(store) == epoch {
            self.keep(&mut inner, slot, value);
        }
        Ok(value)
    }

    fn written(&self, store: u64, writes: &[ContractWrite]) -> Result<(), PluginError> {
        let mut inner = self.inner()?;
        inner.bump(store);
        for w in writes {
            self.keep(&mut inner, (store, w.contract, w.key), w.value);
        }
        Ok(())
    }

    fn reset(&self, store: u64) -> Result<(), PluginError> {
        let mut inner = self.inner()?;
        inner.bump(store);
        inner.values.retain(|s, _| s.0 != store);
        Ok(())
    }
}

export_plugin! {
    name: "vm_state_caching",
    contract_state: StateCache::from_config,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dubchain_plugin_api::slots::HostFn;

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let cache = StateCache::from_config("max_entries = 8").unwrap();
        let c = Bytes32([1; 32]);
        // The read's fetch from below announces a write of the key (as a racing block
        // would) and answers the value from before it.
        let below = HostFn(|_: &Bytes32, _: i64| {
            cache
                .written(
                    9,
                    &[ContractWrite {
                        contract: c,
                        key: 4,
                        value: 77,
                    }],
                )
                .unwrap();
            Ok(5)
        });
        assert_eq!(cache.get(9, &c, 4, &below.as_store()).unwrap(), 5);
        let never = HostFn(|_: &Bytes32, _: i64| -> Result<i64, PluginError> {
            unreachable!("the announced value is cached")
        });
        assert_eq!(cache.get(9, &c, 4, &never.as_store()).unwrap(), 77);
        cache.reset(9).unwrap();
        let after = HostFn(|_: &Bytes32, _: i64| Ok(6));
        assert_eq!(cache.get(9, &c, 4, &after.as_store()).unwrap(), 6);
        assert!(StateCache::from_config("max_entries = 1").is_err());
    }
}
