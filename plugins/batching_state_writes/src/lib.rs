//! `batching_state_writes`: a run of transfers executed against a per-block write set in
//! the plugin's memory, last writer wins, then written to the block once per account, in
//! key order (`exec.block_execution`).
//!
//! The host hands every provider the same primitives the baseline uses: read a batch of
//! accounts from the block in progress, write a batch to it, each at once. The baseline
//! (and `plugin new`'s forwarding scaffold, `exec::execute_through`) applies each transfer
//! reading and writing one account at a time: three reads and three writes per transfer
//! (sender, recipient, proposer), each a RocksDB access with a JSON record, and an undo
//! record on an account's first write in the block. This plugin reads every declared
//! account once, in one call, executes the run in its own map, and writes the final value
//! of each account it wrote once, in one call. On a block with hot keys (and the
//! proposer's account is hot in every block: it collects every fee) most of the store
//! traffic disappears; that saving is this crate's code, nothing in the host.
//!
//! What a transfer does is not this plugin's business: it calls the same
//! `dubchain_plugin_api::exec::apply_transfer` the host's baseline calls, in block order.

use dubchain_plugin_api::{
    abi_stable::std_types::RResult,
    exec::{apply_transfer, read_declared, undeclared, Overlay, TxFailure},
    export_plugin,
    slots::{AccountStoreRef, BlockExecution},
    types::{Bytes32, Transaction},
    PluginError,
};

/// The plugin: stateless; each run gets a write set of its own.
pub struct WriteSet;

impl BlockExecution for WriteSet {
    fn execute_block(
        &self, txs: &[Transaction], proposer: &Bytes32, state: &AccountStoreRef<'_>,
    ) -> Result<Vec<RResult<(), TxFailure>>, PluginError> {
        // Every account the run may touch, read once in one call; the run executes in this
        // plugin's memory (`Overlay`: what was read, and what the run wrote).
        let mut set = Overlay::new(&read_declared(state, txs, proposer)?);
        let mut results = Vec::with_capacity(txs.len());
        for (i, tx) in txs.iter().enumerate() {
            let r = apply_transfer(&mut set, tx, proposer).map_err(|u| undeclared(i, u))?;
            results.push(r.into());
        }
        // Each written account once (its last write), in key order, in one call: the same
        // keys the baseline writes, so the store ends byte for byte the same.
        state
            .put(set.into_writes().as_slice().into())
            .into_result()?;
        Ok(results)
    }
}

export_plugin! {
    name: "batching_state_writes",
    init: dubchain_plugin_api::settings::none,
    block_execution: |_: &str| Ok(WriteSet),
}
