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

use std::collections::HashMap;

use dubchain_plugin_api::{
    abi_stable::std_types::RResult,
    exec::{apply_transfer, read_declared, AccountEntry, AccountState, State, TxFailure},
    export_plugin,
    slots::{AccountStoreRef, BlockExecution},
    types::{Bytes32, Transaction},
    PluginError,
};

/// The plugin: stateless; each run gets a write set of its own.
pub struct WriteSet;

/// One run's accounts: what was read before it, and what it wrote.
struct Accounts {
    read: HashMap<Bytes32, AccountState>,
    written: HashMap<Bytes32, AccountState>,
}

impl State for Accounts {
    type Error = Undeclared;
    fn get(&mut self, a: &Bytes32) -> Result<AccountState, Undeclared> {
        self.written
            .get(a)
            .or_else(|| self.read.get(a))
            .copied()
            .ok_or(Undeclared(*a))
    }
    fn put(&mut self, a: &Bytes32, s: AccountState) -> Result<(), Undeclared> {
        self.written.insert(*a, s);
        Ok(())
    }
}

/// An account a transfer touched that the run did not declare (a transfer only touches its
/// sender, recipient and the proposer, all read ahead: this is a bug, and the host runs the
/// baseline instead).
struct Undeclared(Bytes32);

impl BlockExecution for WriteSet {
    fn execute_block(
        &self,
        txs: &[Transaction],
        proposer: &Bytes32,
        state: &AccountStoreRef<'_>,
    ) -> Result<Vec<RResult<(), TxFailure>>, PluginError> {
        // Every account the run may touch, read once in one call.
        let mut set = Accounts {
            read: read_declared(state, txs, proposer)?
                .into_iter()
                .map(|e| (e.account, e.state))
                .collect(),
            written: HashMap::new(),
        };
        let mut results = Vec::with_capacity(txs.len());
        for (i, tx) in txs.iter().enumerate() {
            let r = apply_transfer(&mut set, tx, proposer).map_err(|Undeclared(a)| {
                PluginError::failed(format!(
                    "transaction {i} touched {a:?}, which it did not declare"
                ))
            })?;
            results.push(r.into());
        }
        // Each written account once (its last write), in key order, in one call: the same
        // keys the baseline writes, so the store ends byte for byte the same.
        let mut writes: Vec<AccountEntry> = set
            .written
            .into_iter()
            .map(|(account, state)| AccountEntry { account, state })
            .collect();
        writes.sort_unstable_by_key(|e| e.account);
        state.put(writes.as_slice().into()).into_result()?;
        Ok(results)
    }
}

export_plugin! {
    name: "batching_state_writes",
    block_execution: |_config: &str| Ok(WriteSet),
}
