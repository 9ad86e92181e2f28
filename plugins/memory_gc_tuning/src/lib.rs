//! `memory_gc_tuning`: deferred reclamation for `mem.block_reclaim` (the catalogue row of
//! that name).
//!
//! The baseline frees a committed block (its transactions, their payloads and access
//! lists: thousands of allocations) on the committing thread, between one commit and the
//! next. Here the block goes into a bounded queue and a reclaimer thread of the plugin's
//! own frees it, off the commit path.
//!
//! * **Never frees what is referenced**: the host gives up ownership of a block when it
//!   hands it over (it is moved), so nothing else can still refer to it.
//! * **Bounded**: the queue holds at most `queue_blocks` hand-overs. When blocks arrive
//!   faster than the reclaimer frees them and the queue is full, the caller frees its
//!   blocks inline, as the baseline does: memory waiting to be freed never grows past the
//!   bound.
//! * **Shutdown**: dropping the plugin (unload, hot swap) closes the queue; the reclaimer
//!   frees what is left and the drop waits for it.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    thread::JoinHandle,
};

use abi_stable::std_types::RVec;
use crossbeam_channel::{Sender, TrySendError};
use dubchain_plugin_api::{
    export_plugin, settings, slots::BlockReclaim, types::Block, PluginError,
};

dubchain_plugin_api::declare_settings! {
    /// Hand-overs the queue holds before callers free inline (1 to 1024).
    queue_blocks: usize = 16,
}

/// The plugin: the queue's sending end and the reclaimer thread.
#[derive(Debug)]
pub struct Reclaimer {
    queue: Option<Sender<RVec<Block>>>,
    thread: Option<JoinHandle<()>>,
    /// Hand-overs freed inline because the queue was full.
    inline: AtomicU64,
}

impl Reclaimer {
    /// A reclaimer with `settings`, its thread started.
    pub fn new(s: &Settings) -> Result<Reclaimer, PluginError> {
        let capacity = settings::within("queue_blocks", s.queue_blocks, 1..=1024)?;
        let (queue, freed) = crossbeam_channel::bounded::<RVec<Block>>(capacity);
        let thread = std::thread::Builder::new()
            .name("memory_gc_tuning reclaimer".into())
            .spawn(move || {
                for blocks in freed {
                    drop(blocks);
                }
            })
            .map_err(|e| PluginError::failed(format!("starting the reclaimer thread: {e}")))?;
        Ok(Reclaimer {
            queue: Some(queue),
            thread: Some(thread),
            inline: AtomicU64::new(0),
        })
    }

    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<Reclaimer, PluginError> {
        Reclaimer::new(&settings::parse(config)?)
    }

    /// Hand-overs freed on the caller's thread so far (the queue was full).
    pub fn freed_inline(&self) -> u64 {
        self.inline.load(Ordering::Relaxed)
    }
}

impl BlockReclaim for Reclaimer {
    fn reclaim(&self, blocks: RVec<Block>) -> Result<(), PluginError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let queue = self.queue.as_ref().expect("open until dropped");
        match queue.try_send(blocks) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(blocks)) => {
                self.inline.fetch_add(1, Ordering::Relaxed);
                drop(blocks);
                Ok(())
            }
            Err(TrySendError::Disconnected(blocks)) => {
                drop(blocks);
                Err(PluginError::failed(
                    "the reclaimer thread has stopped; the blocks were freed inline",
                ))
            }
        }
    }
}

impl Drop for Reclaimer {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

export_plugin! {
    name: "memory_gc_tuning",
    block_reclaim: Reclaimer::from_config,
}

#[cfg(test)]
mod tests {
    use super::*;
    use dubchain_plugin_api::types::{Blob, BlockHeader, Bytes32, Bytes64, Transaction, TxKind};

    /// A block of `txs` transactions, each with a payload and an access list of its own
    /// (three allocations a transaction to free).
    fn block(txs: usize) -> Block {
        let tx = Transaction {
            from: Bytes32::default(),
            to: Bytes32::default(),
            amount: 1,
            fee: 1,
            nonce: 0,
            gas_limit: 0,
            kind: TxKind::Call,
            payload: Blob(vec![7; 64].into()),
            access_list: vec![Bytes32::default(); 2].into(),
            signature: Bytes64::default(),
        };
        Block {
            header: BlockHeader {
                parent: Bytes32::default(),
                height: 1,
                proposer: Bytes32::default(),
                tx_root: Bytes32::default(),
                state_root: Bytes32::default(),
                timestamp_ms: 0,
            },
            transactions: vec![tx; txs].into(),
            receipts: RVec::new(),
        }
    }

    #[test]
    fn hand_overs_are_taken_and_the_drop_waits_for_the_reclaimer() {
        let r = Reclaimer::new(&Settings { queue_blocks: 4 }).unwrap();
        for _ in 0..100 {
            r.reclaim(vec![block(50); 3].into()).unwrap();
        }
        r.reclaim(RVec::new()).unwrap();
        // Returns once the reclaimer freed what was queued and stopped.
        drop(r);
    }

    #[test]
    fn a_full_queue_frees_inline_instead_of_growing() {
        let r = Reclaimer::new(&Settings { queue_blocks: 1 }).unwrap();
        // Made before: each takes the reclaimer about a millisecond to free, and the
        // hand-overs below take microseconds, so the one-place queue fills.
        let blocks: Vec<Block> = (0..50).map(|_| block(20_000)).collect();
        for b in blocks {
            r.reclaim(vec![b].into()).unwrap();
        }
        assert!(r.freed_inline() > 0);
    }

    #[test]
    fn settings_out_of_range_are_refused_naming_the_key() {
        let e = Reclaimer::from_config("queue_blocks = 0\n").unwrap_err();
        assert!(e.to_string().contains("queue_blocks"), "{e}");
    }
}
