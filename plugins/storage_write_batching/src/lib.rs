//! `storage_write_batching`: a block's writes are held in memory, last write per key, and
//! handed to the host once, in key order, when the block commits; the host writes them,
//! the block's record and the new head as one atomic RocksDB `WriteBatch`
//! (`storage.block_commit`).
//!
//! The baseline (and a set that forwards every write to the host's write-through
//! primitive, which is what `plugin new` scaffolds) writes every key through at once:
//! before a key is first written in a block, its old value is read and put under an undo
//! key; then the value is put; the commit puts the record and head, syncs, and deletes the
//! undo entries. This set passes nothing through: it holds every write, which is the whole
//! of the speed-up, and the host's atomic batch takes what it drains. On a block of
//! transfers that is a read and three puts for the first write of an account, a put for
//! every later one (the proposer's account, credited with every fee, is written once per
//! transaction), and a delete per account at the end, each a RocksDB write. Held here, a
//! hot key costs a hash-map update per write and one batch entry per block, and a crash
//! can leave all of a block or none of it, never part.
//!
//! Reads of the block (the host asks before it reads the store) are hash-map lookups; the
//! sorted views (`held` for the state root's scans, `drain` for the batch) sort only the
//! keys under the prefix asked for.

use std::collections::HashMap;

use abi_stable::std_types::RVec;
use dubchain_plugin_api::{
    export_plugin,
    slots::{BlockCommit, BlockWrites, Held, KvWrite, WriteThroughRef},
    PluginError,
};

/// The factory: stateless; every block gets a set of its own.
pub struct Batching;

/// One block's writes: key to its last write (`None`: deleted).
#[derive(Debug, Default)]
pub struct BlockSet {
    writes: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl BlockSet {
    /// The held writes whose keys start with `prefix`, in key order.
    fn sorted<'a>(
        writes: impl Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)>, prefix: &[u8],
    ) -> Vec<KvWrite> {
        let mut out: Vec<KvWrite> = writes
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| KvWrite {
                key: RVec::from_slice(k),
                value: v.as_deref().map(RVec::from_slice).into(),
            })
            .collect();
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

impl BlockWrites for BlockSet {
    /// Every write is held (none goes through): the block reaches the store in the host's
    /// one atomic batch, with no undo entries, at the commit.
    fn write(
        &mut self, key: &[u8], value: Option<&[u8]>, _through: &WriteThroughRef<'_>,
    ) -> Result<(), PluginError> {
        let value = value.map(<[u8]>::to_vec);
        match self.writes.get_mut(key) {
            Some(held) => *held = value,
            None => {
                self.writes.insert(key.to_vec(), value);
            }
        }
        Ok(())
    }

    fn read(&self, key: &[u8]) -> Result<Held, PluginError> {
        Ok(match self.writes.get(key) {
            None => Held::NotHeld,
            Some(None) => Held::Deleted,
            Some(Some(v)) => Held::Value(RVec::from_slice(v)),
        })
    }

    fn held(&self, prefix: &[u8]) -> Result<Vec<KvWrite>, PluginError> {
        Ok(Self::sorted(self.writes.iter(), prefix))
    }

    fn drain(&mut self) -> Result<Vec<KvWrite>, PluginError> {
        let mut out: Vec<KvWrite> = self
            .writes
            .drain()
            .map(|(k, v)| KvWrite {
                key: k.into(),
                value: v.map(RVec::from).into(),
            })
            .collect();
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

impl BlockCommit for Batching {
    type Writes = BlockSet;

    fn begin(&self, _height: u64) -> Result<BlockSet, PluginError> {
        Ok(BlockSet::default())
    }
}

export_plugin! {
    name: "storage_write_batching",
    init: dubchain_plugin_api::settings::none,
    block_commit: |_: &str| Ok(Batching),
}
