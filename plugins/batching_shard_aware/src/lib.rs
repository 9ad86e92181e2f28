//! `batching_shard_aware`: a block's transfers are partitioned by their declared access
//! lists into groups that share no account, the groups run in parallel (rayon), and the
//! results are merged deterministically (`exec.block_execution`).
//!
//! # Why the result equals in-order execution
//!
//! A transfer reads and writes only its sender, its recipient (both must be in its access
//! list, or it fails before touching anything) and the proposer. Two transfers in
//! different groups share no declared account, so neither can observe the other, and
//! executing each group in block order gives every transfer the state it would see in
//! block order, except for the proposer, whom every applied transfer pays a fee.
//!
//! The proposer's account is handled as a commutative delta: each group starts it at zero
//! and adds its fees (saturating); the merge adds the groups' deltas to the balance before
//! the block (saturating). Saturating additions of non-negative amounts give
//! `min(u64::MAX, balance + sum of fees)` in any order, exactly what in-order execution
//! gives. This holds only if no transfer *reads* the proposer's balance for anything but
//! the fee, so a block in which any access list names the proposer is executed in order on
//! one thread instead.
//!
//! A transfer whose access list does not declare its sender or recipient fails with the
//! same error as in order (the check comes before any state access), wherever it lands.

use std::collections::HashMap;

use abi_stable::std_types::RResult;
use dubchain_plugin_api::{
    exec::{
        apply_transfer, read_declared, undeclared, written_or_pre, AccountEntry, AccountState,
        Overlay, State, TxFailure, Undeclared,
    },
    export_plugin,
    slots::{AccountStoreRef, BlockExecution},
    types::{Bytes32, Transaction},
    PluginError,
};
use rayon::prelude::*;

/// Below this many transactions a block runs in order on the calling thread.
const PARALLEL_MIN: usize = 64;

/// Union-find over account indices.
struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }
}

/// One group's state: its writes over the shared state before the block, and the proposer
/// as a fee delta.
struct GroupState<'a> {
    pre: &'a HashMap<Bytes32, AccountState>,
    written: HashMap<Bytes32, AccountState>,
    proposer: Bytes32,
    /// The proposer's state before the block (its nonce is read through; its balance is
    /// the delta).
    proposer_pre: AccountState,
    fees: Option<u64>,
}

impl State for GroupState<'_> {
    type Error = Undeclared;
    fn get(&mut self, a: &Bytes32) -> Result<AccountState, Undeclared> {
        if *a == self.proposer {
            Ok(AccountState {
                balance: self.fees.unwrap_or(0),
                nonce: self.proposer_pre.nonce,
            })
        } else {
            written_or_pre(&self.written, self.pre, a)
        }
    }
    fn put(&mut self, a: &Bytes32, s: AccountState) -> Result<(), Undeclared> {
        if *a == self.proposer {
            self.fees = Some(s.balance);
        } else {
            self.written.insert(*a, s);
        }
        Ok(())
    }
}

/// The plugin: stateless.
pub struct ShardAware;

/// A run's verdicts and the final state of every account it wrote, sorted by account.
type Outcome = (Vec<RResult<(), TxFailure>>, Vec<AccountEntry>);

/// The run in block order on this thread, over the accounts read before it.
fn in_order(
    pre: &[AccountEntry], txs: &[Transaction], proposer: &Bytes32,
) -> Result<Outcome, PluginError> {
    let mut overlay = Overlay::new(pre);
    let mut results = Vec::with_capacity(txs.len());
    for (i, tx) in txs.iter().enumerate() {
        let r = apply_transfer(&mut overlay, tx, proposer).map_err(|u| undeclared(i, u))?;
        results.push(r.into());
    }
    Ok((results, overlay.into_writes()))
}

impl BlockExecution for ShardAware {
    fn execute_block(
        &self, txs: &[Transaction], proposer: &Bytes32, state: &AccountStoreRef<'_>,
    ) -> Result<Vec<RResult<(), TxFailure>>, PluginError> {
        // Every account the run may touch, read once in one call; the final state of each
        // written account written once, in key order, in one call.
        let pre = read_declared(state, txs, proposer)?;
        let (results, writes) = self.run(&pre, txs, proposer)?;
        state.put(writes.as_slice().into()).into_result()?;
        Ok(results)
    }
}

impl ShardAware {
    /// The run over `pre` (the state before it of every account it may touch).
    fn run(
        &self, pre: &[AccountEntry], txs: &[Transaction], proposer: &Bytes32,
    ) -> Result<Outcome, PluginError> {
        let touches_proposer = txs.iter().any(|t| t.access_list.contains(proposer));
        if txs.len() < PARALLEL_MIN || touches_proposer {
            return in_order(pre, txs, proposer);
        }
        // Accounts to indices; union the accounts of each access list.
        let mut index: HashMap<Bytes32, usize> = HashMap::new();
        for t in txs {
            for a in t.access_list.iter() {
                let n = index.len();
                index.entry(*a).or_insert(n);
            }
        }
        let mut groups = Groups {
            parent: (0..index.len()).collect(),
        };
        for t in txs {
            let mut accounts = t.access_list.iter().map(|a| index[a]);
            if let Some(first) = accounts.next() {
                for other in accounts {
                    groups.union(first, other);
                }
            }
        }
        // Transactions per group, in block order. A transaction with an empty access list
        // fails before touching state; it goes to a group of its own.
        let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, t) in txs.iter().enumerate() {
            let root = match t.access_list.first() {
                Some(a) => groups.find(index[a]),
                None => usize::MAX - i,
            };
            members.entry(root).or_default().push(i);
        }
        let mut members: Vec<Vec<usize>> = members.into_values().collect();
        members.sort_unstable_by_key(|m| m[0]);
        if members.len() == 1 {
            return in_order(pre, txs, proposer);
        }
        let pre_map: HashMap<Bytes32, AccountState> =
            pre.iter().map(|e| (e.account, e.state)).collect();
        let proposer_pre = *pre_map
            .get(proposer)
            .ok_or_else(|| PluginError::failed("the proposer is not in the block's state"))?;
        type GroupOut = (
            Vec<(usize, RResult<(), TxFailure>)>,
            Vec<AccountEntry>,
            Option<u64>,
        );
        let outs: Vec<GroupOut> = members
            .par_iter()
            .map(|m| -> Result<GroupOut, PluginError> {
                let mut st = GroupState {
                    pre: &pre_map,
                    written: HashMap::new(),
                    proposer: *proposer,
                    proposer_pre,
                    fees: None,
                };
                let mut results = Vec::with_capacity(m.len());
                for &i in m {
                    let r =
                        apply_transfer(&mut st, &txs[i], proposer).map_err(|u| undeclared(i, u))?;
                    results.push((i, r.into()));
                }
                let writes = st
                    .written
                    .into_iter()
                    .map(|(account, state)| AccountEntry { account, state })
                    .collect();
                Ok((results, writes, st.fees))
            })
            .collect::<Result<_, _>>()?;
        // Merge: results by index; writes of disjoint groups; the proposer's fees summed.
        let mut results = vec![RResult::ROk(()); txs.len()];
        let mut writes = Vec::new();
        let mut fees: Option<u64> = None;
        for (r, w, f) in outs {
            for (i, x) in r {
                results[i] = x;
            }
            writes.extend(w);
            if let Some(f) = f {
                fees = Some(fees.unwrap_or(0).saturating_add(f));
            }
        }
        if let Some(f) = fees {
            writes.push(AccountEntry {
                account: *proposer,
                state: AccountState {
                    balance: proposer_pre.balance.saturating_add(f),
                    nonce: proposer_pre.nonce,
                },
            });
        }
        writes.sort_unstable_by_key(|e| e.account);
        Ok((results, writes))
    }
}

export_plugin! {
    name: "batching_shard_aware",
    init: dubchain_plugin_api::settings::none,
    block_execution: |_: &str| Ok(ShardAware),
}
