//! Validity rules and execution of transactions (transfers), and of whole blocks.

use dubchain_plugin_api::types::{Receipt, SigItem, Transaction, TxKind};

use super::{
    chain,
    state::{Account, BlockWriter, StateError},
};
use crate::slot::SigVerifySlot;

/// Gas charged for a transfer.
pub const TRANSFER_GAS: u64 = 21_000;

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

/// Checks that need no state: fee, gas, access list, kind. Signatures are checked in
/// batches by [`verify_signatures`].
pub fn check_stateless(tx: &Transaction) -> Result<(), TxError> {
    if tx.kind != TxKind::Transfer {
        return Err(TxError::ContractsUnsupported);
    }
    if tx.fee == 0 {
        return Err(TxError::ZeroFee);
    }
    if tx.gas_limit < TRANSFER_GAS {
        return Err(TxError::GasLimit(tx.gas_limit));
    }
    if !tx.access_list.contains(&tx.from) {
        return Err(TxError::UndeclaredAccess("the sender"));
    }
    if !tx.access_list.contains(&tx.to) {
        return Err(TxError::UndeclaredAccess("the recipient"));
    }
    Ok(())
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

/// Checks `tx` against the state and applies it: debit sender (amount + fee), bump its
/// nonce, credit recipient, pay the fee to `proposer`.
pub fn execute(
    w: &mut BlockWriter<'_>,
    tx: &Transaction,
    proposer: &dubchain_plugin_api::types::Bytes32,
) -> Result<Result<Receipt, TxError>, StateError> {
    let sender = w.account(&tx.from)?;
    if tx.nonce != sender.nonce {
        return Ok(Err(TxError::BadNonce {
            expected: sender.nonce,
            got: tx.nonce,
        }));
    }
    let needed = tx.amount.checked_add(tx.fee).ok_or(TxError::Overflow);
    let needed = match needed {
        Ok(n) => n,
        Err(e) => return Ok(Err(e)),
    };
    if sender.balance < needed {
        return Ok(Err(TxError::InsufficientBalance {
            balance: sender.balance,
            needed,
        }));
    }
    // Every check happens before the first write: a rejected transaction changes nothing.
    let debited = Account {
        balance: sender.balance - needed,
        nonce: sender.nonce + 1,
    };
    let recipient = if tx.to == tx.from {
        debited
    } else {
        w.account(&tx.to)?
    };
    let Some(credited) = recipient.balance.checked_add(tx.amount) else {
        return Ok(Err(TxError::Overflow));
    };
    w.put(&tx.from, debited)?;
    w.put(
        &tx.to,
        Account {
            balance: credited,
            ..recipient
        },
    )?;
    // Re-read: the proposer may be the sender or the recipient.
    let p = w.account(proposer)?;
    w.put(
        proposer,
        Account {
            balance: p.balance.saturating_add(tx.fee),
            ..p
        },
    )?;
    Ok(Ok(Receipt {
        success: true,
        gas_used: TRANSFER_GAS,
        error: "".into(),
    }))
}
