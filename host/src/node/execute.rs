//! Validity rules and execution of transactions (transfers), and of whole blocks.

use dubchain_plugin_api::{
    exec::{apply_transfer, AccountEntry, AccountState, State, TxFailure},
    types::{Bytes32, Receipt, SigItem, Transaction},
};

use super::{
    chain,
    state::{Account, BlockWriter, StateError},
};
use crate::slot::{BlockExecutionSlot, SigVerifySlot};

pub use dubchain_plugin_api::exec::TRANSFER_GAS;

/// Why a transaction is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("bad signature")]
    BadSignature,
    #[error("fee must be at least 1")]
    ZeroFee,
    #[error("gas limit {0} is below the {TRANSFER_GAS} a transfer costs")]
    GasLimit(u64),
    #[error("the access list does not declare {0}")]
    UndeclaredAccess(&'static str),
    #[error("contract transactions need the VM, which this node does not have yet")]
    ContractsUnsupported,
    #[error("nonce {got}, expected {expected}")]
    BadNonce { expected: u64, got: u64 },
    #[error("balance {balance} is less than amount plus fee {needed}")]
    InsufficientBalance { balance: u64, needed: u64 },
    #[error("amount overflows the recipient's balance")]
    Overflow,
}

/// Checks that need no state: kind, fee, gas, access list
/// ([`dubchain_plugin_api::exec::check_stateless`]). Signatures are checked in batches by
/// [`verify_signatures`].
pub fn check_stateless(tx: &Transaction) -> Result<(), TxError> {
    dubchain_plugin_api::exec::check_stateless(tx).map_err(TxError::from)
}

/// Signature verdicts for `txs`, through the `crypto.sig_verify` slot in one batch.
pub fn verify_signatures(slot: &SigVerifySlot, txs: &[Transaction]) -> Vec<bool> {
    let messages: Vec<Vec<u8>> = txs.iter().map(chain::signing_bytes).collect();
    let items: Vec<SigItem<'_>> = txs
        .iter()
        .zip(&messages)
        .map(|(tx, m)| SigItem {
            public_key: tx.from.0,
            signature: tx.signature.0,
            message: m.as_slice().into(),
        })
        .collect();
    slot.verify_batch(&items)
}

/// The host's view of a block in progress as execution state: reads and writes go to the
/// store at once (the baseline write path).
struct WriteThrough<'w, 'a>(&'w mut BlockWriter<'a>);

impl State for WriteThrough<'_, '_> {
    type Error = StateError;
    fn get(&mut self, a: &Bytes32) -> Result<AccountState, StateError> {
        let acc = self.0.account(a)?;
        Ok(AccountState {
            balance: acc.balance,
            nonce: acc.nonce,
        })
    }
    fn put(&mut self, a: &Bytes32, s: AccountState) -> Result<(), StateError> {
        self.0.put(
            a,
            Account {
                balance: s.balance,
                nonce: s.nonce,
            },
        )
    }
}

impl From<TxFailure> for TxError {
    fn from(f: TxFailure) -> TxError {
        match f {
            TxFailure::UndeclaredSender => TxError::UndeclaredAccess("the sender"),
            TxFailure::UndeclaredRecipient => TxError::UndeclaredAccess("the recipient"),
            TxFailure::NotATransfer => TxError::ContractsUnsupported,
            TxFailure::ZeroFee => TxError::ZeroFee,
            TxFailure::GasLimit { limit } => TxError::GasLimit(limit),
            TxFailure::BadNonce { expected, got } => TxError::BadNonce { expected, got },
            TxFailure::InsufficientBalance { balance, needed } => {
                TxError::InsufficientBalance { balance, needed }
            }
            TxFailure::Overflow => TxError::Overflow,
        }
    }
}

/// The receipt of an applied transfer.
pub fn success_receipt() -> Receipt {
    Receipt {
        success: true,
        gas_used: TRANSFER_GAS,
        error: "".into(),
    }
}

/// Checks `tx` against the state and applies it, writing through to the store at once:
/// [`dubchain_plugin_api::exec::apply_transfer`] (debit sender amount + fee, bump its
/// nonce, credit recipient, pay the fee to `proposer`).
pub fn execute(
    w: &mut BlockWriter<'_>,
    tx: &Transaction,
    proposer: &Bytes32,
) -> Result<Result<Receipt, TxError>, StateError> {
    Ok(apply_transfer(&mut WriteThrough(w), tx, proposer)?
        .map(|()| success_receipt())
        .map_err(TxError::from))
}

/// Executes `txs` in order for `proposer`, through the `exec.block_execution` slot: a
/// plugin gets the state before the block of every account the block may touch (read
/// once each) and answers the outcomes and the final write set, which is then written
/// once per account in key order. Without a plugin (or when it fails), the baseline
/// executes each transaction with its writes going to the store at once.
///
/// A failed transaction has no effect; execution goes on with the next.
pub fn execute_block(
    slot: &BlockExecutionSlot,
    w: &mut BlockWriter<'_>,
    txs: &[Transaction],
    proposer: &Bytes32,
) -> Result<Vec<Result<Receipt, TxError>>, StateError> {
    if slot.has_provider() {
        let mut accounts: Vec<Bytes32> = txs
            .iter()
            .flat_map(|t| t.access_list.iter().copied())
            .chain([*proposer])
            .collect();
        accounts.sort_unstable();
        accounts.dedup();
        let mut pre = Vec::with_capacity(accounts.len());
        let mut stored = std::collections::HashMap::with_capacity(accounts.len());
        for a in accounts {
            let (acc, bytes) = w.account_record(&a)?;
            stored.insert(a, bytes);
            pre.push(AccountEntry {
                account: a,
                state: AccountState {
                    balance: acc.balance,
                    nonce: acc.nonce,
                },
            });
        }
        if let Some(outcome) = slot.execute_block(&pre, txs, proposer) {
            for e in outcome.writes.iter() {
                // A write set names only declared accounts, all read above; anything else
                // is written the ordinary way.
                let new = Account {
                    balance: e.state.balance,
                    nonce: e.state.nonce,
                };
                match stored.get(&e.account) {
                    Some(old) => w.put_with_old(&e.account, old, new)?,
                    None => w.put(&e.account, new)?,
                }
            }
            return Ok(outcome
                .results
                .into_iter()
                .map(|r| {
                    r.into_result()
                        .map(|()| success_receipt())
                        .map_err(TxError::from)
                })
                .collect());
        }
    }
    txs.iter().map(|tx| execute(w, tx, proposer)).collect()
}
