//! `storage_multi_tier_cache`: decoded accounts held in memory in front of RocksDB (the
//! `storage.account_read` row of the catalogue, `storage_multi_tier_cache`).
//!
//! The baseline reads RocksDB and decodes the JSON record on every read. Here each store
//! (told apart by the host's store identity) has a cache of decoded states:
//!
//! * **Coherent.** The host announces every write right after it (`written`): the cache
//!   takes the written state. A rollback (`reset`) drops the store's cache. A read that
//!   missed reads the store and caches what it read only if no write or rollback was
//!   announced meanwhile (an epoch, checked under the cache's lock), so a read racing a
//!   write never leaves the older state behind.
//! * **Bounded by bytes.** `max_bytes` (default 64 MiB) at about 96 bytes an entry. Two
//!   generations approximate least-recently-used ([`dubchain_plugin_api::cache`]): entries
//!   go into the young one; when it holds half the bound, it becomes the old one and the old
//!   one is dropped; a hit in the old generation moves the entry back to the young one.
//! * **The store's own tier** (RocksDB's block cache) is the host's configuration; this
//!   plugin sits in front of it.

use std::sync::RwLock;

use dubchain_plugin_api::{
    cache::Generations,
    exec::{AccountEntry, AccountState},
    export_plugin, settings,
    slots::{AccountRead, AccountSourceRef},
    types::Bytes32,
    PluginError,
};

/// Hash maps keyed by a per-process random seed (account keys are chosen by users):
/// `foldhash`, the hasher `hashbrown` uses, at a fraction of SipHash's cost on 32-byte keys.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What one cached entry is taken to cost: key, state and the map's own share.
const ENTRY_BYTES: usize = 96;

/// What a poisoned lock of this plugin held, for its error.
const HELD: &str = "the account cache";

dubchain_plugin_api::declare_settings! {
    /// The most memory the cached accounts of all stores together may take (at least 4 KiB).
    max_bytes: usize = 64 << 20,
}

/// The plugin: one cache per store, all behind one read-write lock (a host per node, so
/// the lock is one node's): a hit takes it shared; a miss's insert, a write and a rollback
/// take it exclusive.
#[derive(Debug)]
pub struct Cache {
    /// Entries each store's young generation holds before it turns old.
    generation: usize,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Moves on every write and rollback announced (of any store): a read that missed
    /// caches what it read only if this did not move meanwhile.
    epoch: u64,
    stores: HashMap<u64, StoreCache>,
}

/// One store's cached states, in two generations.
type StoreCache = Generations<Bytes32, AccountState, foldhash::fast::RandomState>;

impl Inner {
    /// `store`'s cache (made if new) and its share of the bound `generation`: the bound
    /// holds over all stores together.
    fn store(&mut self, store: u64, generation: usize) -> (&mut StoreCache, usize) {
        let n = self.stores.len() + usize::from(!self.stores.contains_key(&store));
        let limit = (generation / n).max(1);
        (self.stores.entry(store).or_default(), limit)
    }
}

impl Cache {
    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<Self, PluginError> {
        let s: Settings = settings::parse(config)?;
        let max_bytes = settings::at_least("max_bytes", s.max_bytes, 4096)?;
        Ok(Cache {
            // Two generations of this many entries each: the bound, over every store.
            generation: (max_bytes / ENTRY_BYTES / 2).max(1),
            inner: RwLock::default(),
        })
    }
}

impl AccountRead for Cache {
    fn get(
        &self, store: u64, accounts: &[Bytes32], out: &mut [AccountState],
        below: &AccountSourceRef<'_>,
    ) -> Result<(), PluginError> {
        let (mut misses, mut promote) = (Vec::new(), Vec::new());
        let epoch = {
            let inner = self.inner.read().map_err(|_| PluginError::poisoned(HELD))?;
            let c = inner.stores.get(&store);
            for (i, a) in accounts.iter().enumerate() {
                if let Some((s, old)) = c.and_then(|c| c.peek(a)) {
                    out[i] = *s;
                    if old {
                        promote.push(i);
                    }
                    continue;
                }
                misses.push(i);
            }
            inner.epoch
        };
        if misses.is_empty() && promote.is_empty() {
            return Ok(());
        }
        let missed: Vec<Bytes32> = misses.iter().map(|&i| accounts[i]).collect();
        let mut read = vec![AccountState::default(); missed.len()];
        if !missed.is_empty() {
            below
                .get(missed.as_slice().into(), read.as_mut_slice().into())
                .into_result()?;
        }
        for (&i, s) in misses.iter().zip(&read) {
            out[i] = *s;
        }
        let mut inner = self
            .inner
            .write()
            .map_err(|_| PluginError::poisoned(HELD))?;
        // Only what no announced write or rollback could have made stale since.
        if inner.epoch == epoch {
            let (c, limit) = inner.store(store, self.generation);
            for &i in misses.iter().chain(&promote) {
                c.insert(accounts[i], out[i], limit);
            }
        }
        Ok(())
    }

    fn written(&self, store: u64, writes: &[AccountEntry]) -> Result<(), PluginError> {
        let mut inner = self
            .inner
            .write()
            .map_err(|_| PluginError::poisoned(HELD))?;
        inner.epoch += 1;
        let (c, limit) = inner.store(store, self.generation);
        for w in writes {
            c.insert(w.account, w.state, limit);
        }
        Ok(())
    }

    fn reset(&self, store: u64) -> Result<(), PluginError> {
        // The store takes a new identity after a rollback: what was known of it goes.
        let mut inner = self
            .inner
            .write()
            .map_err(|_| PluginError::poisoned(HELD))?;
        inner.epoch += 1;
        inner.stores.remove(&store);
        Ok(())
    }
}

export_plugin! {
    name: "storage_multi_tier_cache",
    account_read: Cache::from_config,
}
