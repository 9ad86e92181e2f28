//! `batching_state_writes`: a block's transfers are executed against an in-memory write
//! set over the block's declared accounts; the host then writes each touched account once,
//! in key order (`exec.block_execution`).
//!
//! The baseline executes each transfer with its reads and writes going to the state store
//! at once: three reads and three writes per transfer (sender, recipient, proposer), each a
//! RocksDB access with a JSON record, and an undo record on first touch. Here the host
//! reads every declared account once before the block, the plugin executes in memory
//! (last writer wins), and the host writes the final value of each account once. On a
//! block with hot keys, and the proposer's account is hot in every block (it collects
//! every fee), most of the store traffic disappears.
//!
//! What a transfer does is not this plugin's business: it calls the same
//! `dubchain_plugin_api::exec::apply_transfer` the host's baseline calls, in block order.

use dubchain_plugin_api::{
    exec::{execute_in_order, AccountEntry},
    export_plugin,
    slots::{BlockExecution, BlockOutcome},
    types::{Bytes32, Transaction},
    PluginError,
};

/// The plugin: stateless.
pub struct WriteSet;

impl BlockExecution for WriteSet {
    fn execute_block(
        &self,
        pre: &[AccountEntry],
        txs: &[Transaction],
        proposer: &Bytes32,
    ) -> Result<BlockOutcome, PluginError> {
        execute_in_order(pre, txs, proposer)
    }
}

export_plugin! {
    name: "batching_state_writes",
    block_execution: |_config: &str| Ok(WriteSet),
}
