//! The reference semantics of executing a transfer, and the stateless rules of every kind of
//! transaction, shared by the host's baseline and by
//! plugins that schedule execution differently (`exec.block_execution`).
//!
//! Sharing the one function is deliberate: a plugin that batches writes or runs groups of
//! transactions in parallel changes *when* and *where* state is read and written, never
//! *what* a transaction does. The differential tests then check the scheduling.

use abi_stable::StableAbi;

use crate::types::{Bytes32, Transaction, TxKind};

/// Gas charged for a transfer.
pub const TRANSFER_GAS: u64 = 21_000;

/// Gas charged for a contract call before the contract runs (the call's own cost).
pub const CALL_BASE_GAS: u64 = 21_000;

/// Gas charged for deploying a contract of `len` bytes of code: a base plus a cost per byte
/// (validation and storage grow with the code).
pub fn deploy_gas(len: usize) -> u64 {
    const BASE: u64 = 32_000;
    const PER_BYTE: u64 = 16;
    BASE.saturating_add(PER_BYTE.saturating_mul(len as u64))
}

/// The largest contract code a deploy may carry.
pub const MAX_CODE_BYTES: usize = 64 * 1024;

/// The length of a call's input: one little-endian `i64`, the argument of the contract's
/// exported `call` function.
pub const CALL_INPUT_BYTES: usize = 8;

/// The gas a transaction of this kind costs before any contract code runs; its gas limit
/// must cover it.
pub fn intrinsic_gas(tx: &Transaction) -> u64 {
    match tx.kind {
        TxKind::Transfer => TRANSFER_GAS,
        TxKind::Call => CALL_BASE_GAS,
        TxKind::Deploy => deploy_gas(tx.payload.0.len()),
    }
}

/// An account's state.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct AccountState {
    /// Spendable balance.
    pub balance: u64,
    /// Transactions sent so far; the next must carry this nonce.
    pub nonce: u64,
}

/// An account and its state.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountEntry {
    /// The account (its ed25519 public key).
    pub account: Bytes32,
    /// Its state.
    pub state: AccountState,
}

/// Why a transfer does not apply, with the figures the host's error messages show.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TxFailure {
    /// The access list does not declare the sender.
    UndeclaredSender,
    /// The access list does not declare the recipient.
    UndeclaredRecipient,
    /// Only transfers execute here (contracts need the VM).
    NotATransfer,
    /// The fee is zero.
    ZeroFee,
    /// A contract transaction moves value (its amount must be zero).
    ContractValue,
    /// A deploy without code or with more than [`MAX_CODE_BYTES`], or a call whose input
    /// is not [`CALL_INPUT_BYTES`] long, or a transfer with a payload.
    BadPayload,
    /// A deploy's `to` is not the address [`crate::chain::contract_address`] gives.
    BadContractAddress,
    /// The gas limit is below the transaction's intrinsic gas ([`intrinsic_gas`]).
    GasLimit {
        /// The transaction's gas limit.
        limit: u64,
    },
    /// The nonce is not the sender's next one.
    BadNonce {
        /// The sender's next nonce.
        expected: u64,
        /// The transaction's.
        got: u64,
    },
    /// The sender cannot pay amount plus fee.
    InsufficientBalance {
        /// The sender's balance.
        balance: u64,
        /// Amount plus fee.
        needed: u64,
    },
    /// Amount plus fee, or the recipient's new balance, overflows.
    Overflow,
}

/// The checks that need no state, in the order the chain applies them: fee, value and
/// payload of contract transactions, a deploy's address, gas limit, declared sender,
/// declared recipient (the contract, for a deploy or a call). (Signatures are checked
/// separately, and before these.)
pub fn check_stateless(tx: &Transaction) -> Result<(), TxFailure> {
    if tx.fee == 0 {
        return Err(TxFailure::ZeroFee);
    }
    match tx.kind {
        TxKind::Transfer => {
            if !tx.payload.0.is_empty() {
                return Err(TxFailure::BadPayload);
            }
        }
        TxKind::Deploy | TxKind::Call => {
            if tx.amount != 0 {
                return Err(TxFailure::ContractValue);
            }
            let len = tx.payload.0.len();
            let ok = match tx.kind {
                TxKind::Deploy => (1..=MAX_CODE_BYTES).contains(&len),
                _ => len == CALL_INPUT_BYTES,
            };
            if !ok {
                return Err(TxFailure::BadPayload);
            }
            if tx.kind == TxKind::Deploy
                && tx.to != crate::chain::contract_address(&tx.from, tx.nonce)
            {
                return Err(TxFailure::BadContractAddress);
            }
        }
    }
    if tx.gas_limit < intrinsic_gas(tx) {
        return Err(TxFailure::GasLimit {
            limit: tx.gas_limit,
        });
    }
    if !tx.access_list.contains(&tx.from) {
        return Err(TxFailure::UndeclaredSender);
    }
    if !tx.access_list.contains(&tx.to) {
        return Err(TxFailure::UndeclaredRecipient);
    }
    Ok(())
}

/// Reads and writes of account state during execution.
pub trait State {
    /// What a read or write can fail with (a store error; `Infallible` in memory).
    type Error;
    /// The account's state (default when it does not exist).
    fn get(&mut self, account: &Bytes32) -> Result<AccountState, Self::Error>;
    /// Sets the account's state.
    fn put(&mut self, account: &Bytes32, state: AccountState) -> Result<(), Self::Error>;
}

/// The checks of a transaction's sender, in the order every transaction kind makes them:
/// the nonce is the sender's next, the cost (`None`: it overflowed) is computable, and the
/// balance covers it. Returns the cost.
pub fn check_sender(
    sender: AccountState, tx: &Transaction, cost: Option<u64>,
) -> Result<u64, TxFailure> {
    if tx.nonce != sender.nonce {
        return Err(TxFailure::BadNonce {
            expected: sender.nonce,
            got: tx.nonce,
        });
    }
    let needed = cost.ok_or(TxFailure::Overflow)?;
    if sender.balance < needed {
        return Err(TxFailure::InsufficientBalance {
            balance: sender.balance,
            needed,
        });
    }
    Ok(needed)
}

/// Applies `tx` to `state`: checks the declared accesses, the nonce and the balance, then
/// debits the sender (amount + fee), bumps its nonce, credits the recipient, and pays the
/// fee to `proposer`. Every check happens before the first write: a failed transfer
/// changes nothing. Reads and writes only the sender, the recipient and the proposer.
pub fn apply_transfer<S: State>(
    state: &mut S, tx: &Transaction, proposer: &Bytes32,
) -> Result<Result<(), TxFailure>, S::Error> {
    if tx.kind != TxKind::Transfer {
        return Ok(Err(TxFailure::NotATransfer));
    }
    if !tx.access_list.contains(&tx.from) {
        return Ok(Err(TxFailure::UndeclaredSender));
    }
    if !tx.access_list.contains(&tx.to) {
        return Ok(Err(TxFailure::UndeclaredRecipient));
    }
    let sender = state.get(&tx.from)?;
    let needed = match check_sender(sender, tx, tx.amount.checked_add(tx.fee)) {
        Ok(needed) => needed,
        Err(f) => return Ok(Err(f)),
    };
    let debited = AccountState {
        balance: sender.balance - needed,
        nonce: sender.nonce + 1,
    };
    let recipient = if tx.to == tx.from {
        debited
    } else {
        state.get(&tx.to)?
    };
    let Some(credited) = recipient.balance.checked_add(tx.amount) else {
        return Ok(Err(TxFailure::Overflow));
    };
    state.put(&tx.from, debited)?;
    state.put(
        &tx.to,
        AccountState {
            balance: credited,
            ..recipient
        },
    )?;
    // Re-read: the proposer may be the sender or the recipient.
    let p = state.get(proposer)?;
    state.put(
        proposer,
        AccountState {
            balance: p.balance.saturating_add(tx.fee),
            ..p
        },
    )?;
    Ok(Ok(()))
}

/// In-memory execution state over the accounts a block declared: reads fall through to
/// the state before the block, writes stay here until [`Overlay::into_writes`]. Reading an
/// account that was not declared is an error naming it.
#[derive(Debug, Clone, Default)]
pub struct Overlay {
    pre: std::collections::HashMap<Bytes32, AccountState>,
    written: std::collections::HashMap<Bytes32, AccountState>,
}

impl Overlay {
    /// An overlay over `pre`.
    pub fn new(pre: &[AccountEntry]) -> Overlay {
        Overlay {
            pre: pre.iter().map(|e| (e.account, e.state)).collect(),
            written: Default::default(),
        }
    }

    /// The final state of every written account, each once, sorted by account.
    pub fn into_writes(self) -> Vec<AccountEntry> {
        let mut w: Vec<AccountEntry> = self
            .written
            .into_iter()
            .map(|(account, state)| AccountEntry { account, state })
            .collect();
        w.sort_unstable_by_key(|e| e.account);
        w
    }
}

/// An account a transaction read without the block declaring it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Undeclared(pub Bytes32);

impl State for Overlay {
    type Error = Undeclared;
    fn get(&mut self, account: &Bytes32) -> Result<AccountState, Undeclared> {
        written_or_pre(&self.written, &self.pre, account)
    }
    fn put(&mut self, account: &Bytes32, state: AccountState) -> Result<(), Undeclared> {
        self.written.insert(*account, state);
        Ok(())
    }
}

/// `account`'s state as `written` over `pre`: written, else as it was, else
/// [`Undeclared`].
pub fn written_or_pre(
    written: &std::collections::HashMap<Bytes32, AccountState>,
    pre: &std::collections::HashMap<Bytes32, AccountState>, account: &Bytes32,
) -> Result<AccountState, Undeclared> {
    written
        .get(account)
        .or_else(|| pre.get(account))
        .copied()
        .ok_or(Undeclared(*account))
}

/// Every account a run of transfers may touch: the union of the transactions' access lists
/// and the proposer, sorted, each once (a transfer touches only its sender, its recipient,
/// both of which it must declare, and the proposer).
pub fn declared_accounts(txs: &[Transaction], proposer: &Bytes32) -> Vec<Bytes32> {
    let mut accounts: Vec<Bytes32> = txs
        .iter()
        .flat_map(|t| t.access_list.iter().copied())
        .chain([*proposer])
        .collect();
    accounts.sort_unstable();
    accounts.dedup();
    accounts
}

/// The state before a run of every account it may touch ([`declared_accounts`]), read from
/// `state` in one call: what a plugin that reads ahead starts from.
pub fn read_declared(
    state: &crate::slots::AccountStoreRef<'_>, txs: &[Transaction], proposer: &Bytes32,
) -> Result<Vec<AccountEntry>, crate::PluginError> {
    let accounts = declared_accounts(txs, proposer);
    let before = state.get(accounts.as_slice().into()).into_result()?;
    if before.len() != accounts.len() {
        return Err(crate::PluginError::failed(
            "the host read a different number of accounts",
        ));
    }
    Ok(accounts
        .into_iter()
        .zip(before)
        .map(|(account, state)| AccountEntry { account, state })
        .collect())
}

/// The baseline of `exec.block_execution`, composed from the host's primitives: each
/// transfer applied with [`apply_transfer`] over `state`, every read and write one account
/// at a time, at once. A provider that calls this forwards to the baseline (and measures
/// about 1x against it): it is what `plugin new --slot exec.block_execution` scaffolds.
pub fn execute_through(
    state: &crate::slots::AccountStoreRef<'_>, txs: &[Transaction], proposer: &Bytes32,
) -> Result<Vec<abi_stable::std_types::RResult<(), TxFailure>>, crate::PluginError> {
    struct Through<'s, 'a>(&'s crate::slots::AccountStoreRef<'a>);
    impl State for Through<'_, '_> {
        type Error = crate::PluginError;
        fn get(&mut self, a: &Bytes32) -> Result<AccountState, crate::PluginError> {
            let mut got = self.0.get(std::slice::from_ref(a).into()).into_result()?;
            got.pop()
                .ok_or_else(|| crate::PluginError::failed("the host read no account"))
        }
        fn put(&mut self, a: &Bytes32, s: AccountState) -> Result<(), crate::PluginError> {
            self.0
                .put(
                    [AccountEntry {
                        account: *a,
                        state: s,
                    }]
                    .as_slice()
                    .into(),
                )
                .into_result()
        }
    }
    let mut through = Through(state);
    txs.iter()
        .map(|tx| Ok(apply_transfer(&mut through, tx, proposer)?.into()))
        .collect()
}

/// The error for transaction `index` reading an account the block did not declare.
pub fn undeclared(index: usize, u: Undeclared) -> crate::PluginError {
    crate::PluginError::failed(format!(
        "transaction {index} reads account {:?}, which the block did not declare",
        u.0
    ))
}
