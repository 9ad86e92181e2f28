//! Validity rules and execution of transactions (transfers, contract deploys and calls),
//! and of whole blocks.

use dubchain_plugin_api::{
    exec::{
        apply_transfer, check_sender, intrinsic_gas, AccountEntry, AccountState, State, TxFailure,
    },
    slots::{ContractWrite, HostAccountStore},
    types::{Bytes32, Receipt, Transaction, TxKind},
    PluginError,
};

use crate::{
    chain,
    state::{Account, BlockWriter, StateError},
};
use dubchain_host::{
    slot::{BlockExecutionSlot, SigVerifySlot, Slots},
    vm::{self, CallFailure, ContractHost, StorageError, Vm},
};

pub use dubchain_plugin_api::exec::TRANSFER_GAS;

/// Why a transaction is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("bad signature")]
    BadSignature,
    #[error("fee must be at least 1")]
    ZeroFee,
    #[error("gas limit {0} is below the transaction's intrinsic gas")]
    GasLimit(u64),
    #[error("the access list does not declare {0}")]
    UndeclaredAccess(&'static str),
    #[error("only transfers execute here")]
    NotATransfer,
    #[error("a contract transaction must move no value")]
    ContractValue,
    #[error("the payload does not fit the kind (deploy: 1 to 64 KiB of code; call: 8 bytes of input; transfer: none)")]
    BadPayload,
    #[error("a deploy's recipient must be the address derived from its sender and nonce")]
    BadContractAddress,
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
    let txs: Vec<&Transaction> = txs.iter().collect();
    slot.verify_batch(&dubchain_plugin_api::sig::tx_items(&txs, &messages))
}

/// The host's view of a block in progress as execution state: each transfer's reads and
/// writes go to the block's writer at once (the baseline of `batching_state_writes`).
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
            TxFailure::NotATransfer => TxError::NotATransfer,
            TxFailure::ContractValue => TxError::ContractValue,
            TxFailure::BadPayload => TxError::BadPayload,
            TxFailure::BadContractAddress => TxError::BadContractAddress,
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

/// A block in progress as the VM sees it.
struct Contracts<'w, 'a>(&'w BlockWriter<'a>);

impl ContractHost for Contracts<'_, '_> {
    fn code(&self, contract: &Bytes32) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.0.code(contract)?)
    }
    fn code_hash(&self, contract: &Bytes32) -> Result<Option<Bytes32>, StorageError> {
        Ok(self.0.code_hash(contract)?)
    }
    fn storage(&self, contract: &Bytes32, key: i64) -> Result<i64, StorageError> {
        Ok(self.0.storage(contract, key)?)
    }
    fn store_id(&self) -> u64 {
        self.0.store_id()
    }
}

/// The node's error back from under the VM.
fn state_error(e: StorageError) -> StateError {
    match e.downcast::<StateError>() {
        Ok(e) => *e,
        Err(other) => StateError::Corrupt {
            path: Default::default(),
            what: "contract storage".into(),
            detail: other.to_string(),
        },
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

/// Checks `tx` against the state and applies it, writing through to the store at once. A
/// transfer is [`dubchain_plugin_api::exec::apply_transfer`] (debit sender amount + fee,
/// bump its nonce, credit recipient, pay the fee to `proposer`); a deploy or a call is
/// [`execute_contract`].
pub fn execute(
    w: &mut BlockWriter<'_>, slots: &Slots, tx: &Transaction, proposer: &Bytes32,
) -> Result<Result<Receipt, TxError>, StateError> {
    if tx.kind != TxKind::Transfer {
        return execute_contract(w, slots, tx, proposer);
    }
    Ok(apply_transfer(&mut WriteThrough(w), tx, proposer)?
        .map(|()| success_receipt())
        .map_err(TxError::from))
}

/// Applies a deploy or a call. The checks that reject it (no effect at all) are the
/// declared sender and contract, the nonce, and a balance that covers the fee plus the
/// whole gas limit. Past them, the transaction is included whatever the contract does: the
/// sender's nonce moves, and the sender pays the fee plus the gas used to `proposer`. A
/// deploy stores the code if it validates; a call runs it through the `vm.*` slots
/// ([`vm::call_contract`]) and applies its storage writes only if it returns (a trap, or
/// running out of gas, reverts them and is a failed receipt with the gas charged: all of it
/// when it ran out).
pub fn execute_contract(
    w: &mut BlockWriter<'_>, slots: &Slots, tx: &Transaction, proposer: &Bytes32,
) -> Result<Result<Receipt, TxError>, StateError> {
    if !tx.access_list.contains(&tx.from) {
        return Ok(Err(TxError::UndeclaredAccess("the sender")));
    }
    if !tx.access_list.contains(&tx.to) {
        return Ok(Err(TxError::UndeclaredAccess("the recipient")));
    }
    let intrinsic = intrinsic_gas(tx);
    if tx.gas_limit < intrinsic {
        return Ok(Err(TxError::GasLimit(tx.gas_limit)));
    }
    let sender = w.account(&tx.from)?;
    let funds = AccountState {
        balance: sender.balance,
        nonce: sender.nonce,
    };
    if let Err(f) = check_sender(funds, tx, tx.fee.checked_add(tx.gas_limit)) {
        return Ok(Err(f.into()));
    }
    let (gas_used, failure) = match tx.kind {
        TxKind::Deploy => match vm::validate_code(&tx.payload.0) {
            Ok(()) if w.code(&tx.to)?.is_some() => (
                intrinsic,
                Some(format!("a contract is already deployed at {:?}", tx.to)),
            ),
            Ok(()) => {
                w.put_code(&tx.to, &tx.payload.0)?;
                (intrinsic, None)
            }
            Err(e) => (intrinsic, Some(CallFailure::Invalid(e).to_string())),
        },
        _ => {
            let input = i64::from_le_bytes(tx.payload.0.as_slice().try_into().map_err(|_| {
                // check_stateless guarantees 8 bytes; a block that skipped it fails here.
                StateError::Corrupt {
                    path: Default::default(),
                    what: "call input".into(),
                    detail: "not 8 bytes".into(),
                }
            })?);
            let out = vm::call_contract(
                slots,
                Vm::shared(),
                &Contracts(w),
                &tx.to,
                input,
                tx.gas_limit - intrinsic,
            )
            .map_err(state_error)?;
            let vm_gas = out.gas_used;
            match out.result {
                Ok((_, writes)) => {
                    for &(k, v) in &writes {
                        w.put_storage(&tx.to, k, v)?;
                    }
                    let applied = ContractWrite::of(tx.to, &writes);
                    slots.contract_state.written(w.store_id(), &applied);
                    (intrinsic + vm_gas, None)
                }
                Err(f) => (intrinsic + vm_gas, Some(f.to_string())),
            }
        }
    };
    let charge = tx.fee + gas_used;
    w.put(
        &tx.from,
        Account {
            balance: sender.balance - charge,
            nonce: sender.nonce + 1,
        },
    )?;
    // Re-read: the proposer may be the sender.
    let p = w.account(proposer)?;
    w.put(
        proposer,
        Account {
            balance: p.balance.saturating_add(charge),
            ..p
        },
    )?;
    Ok(Ok(Receipt {
        success: failure.is_none(),
        gas_used,
        error: failure.unwrap_or_default().into(),
    }))
}

/// Executes `txs` in order for `proposer`. Contract transactions run in the VM; each maximal
/// run of transfers between them goes through the `exec.block_execution` slot: a plugin
/// gets the block's accounts (the host's primitives: read a batch of accounts, write a
/// batch, each at once to the block in progress) and answers the verdicts. Without a
/// plugin (or when it fails, after what it wrote is undone), the baseline executes each
/// transfer reading and writing one account at a time.
///
/// A rejected transaction has no effect; execution goes on with the next.
pub fn execute_block(
    slots: &Slots, w: &mut BlockWriter<'_>, txs: &[Transaction], proposer: &Bytes32,
) -> Result<Vec<Result<Receipt, TxError>>, StateError> {
    let mut out = Vec::with_capacity(txs.len());
    let mut rest = txs;
    while !rest.is_empty() {
        let run = rest
            .iter()
            .position(|t| t.kind != TxKind::Transfer)
            .unwrap_or(rest.len());
        if run == 0 {
            out.push(execute_contract(w, slots, &rest[0], proposer)?);
            rest = &rest[1..];
        } else {
            out.extend(execute_transfers(
                &slots.block_execution,
                w,
                &rest[..run],
                proposer,
            )?);
            rest = &rest[run..];
        }
    }
    Ok(out)
}

/// Executes a run of transfers, through the `exec.block_execution` slot when it has a
/// provider (see [`execute_block`]).
fn execute_transfers(
    slot: &BlockExecutionSlot, w: &mut BlockWriter<'_>, txs: &[Transaction], proposer: &Bytes32,
) -> Result<Vec<Result<Receipt, TxError>>, StateError> {
    if !slot.on_baseline() {
        if let Some(results) = provider_transfers(slot, w, txs, proposer)? {
            return Ok(results
                .into_iter()
                .map(|r| {
                    r.into_result()
                        .map(|()| success_receipt())
                        .map_err(TxError::from)
                })
                .collect());
        }
    }
    txs.iter()
        .map(|tx| {
            Ok(apply_transfer(&mut WriteThrough(w), tx, proposer)?
                .map(|()| success_receipt())
                .map_err(TxError::from))
        })
        .collect()
}

/// The provider's run over the block's accounts; `None` if it failed, with every account
/// it wrote put back as it was (so the baseline runs on the state before the run).
fn provider_transfers(
    slot: &BlockExecutionSlot, w: &mut BlockWriter<'_>, txs: &[Transaction], proposer: &Bytes32,
) -> Result<Option<Vec<abi_stable::std_types::RResult<(), TxFailure>>>, StateError> {
    use std::sync::Mutex;
    let writer = Mutex::new(&mut *w);
    // Each account's stored bytes before the provider first wrote it.
    let saved: Mutex<std::collections::HashMap<Bytes32, Vec<u8>>> = Mutex::default();
    // A store error under the provider is the store's, not the provider's.
    let fault: Mutex<Option<StateError>> = Mutex::new(None);
    let keep = |e: StateError| {
        let msg = e.to_string();
        *fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        PluginError::failed(msg)
    };
    let store = HostAccountStore(
        |accounts: &[Bytes32]| {
            let w = writer.lock().unwrap_or_else(|p| p.into_inner());
            accounts
                .iter()
                .map(|a| {
                    w.account(a).map(|acc| AccountState {
                        balance: acc.balance,
                        nonce: acc.nonce,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(keep)
        },
        |writes: &[AccountEntry]| {
            let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
            let mut saved = saved.lock().unwrap_or_else(|p| p.into_inner());
            for e in writes {
                let new = Account {
                    balance: e.state.balance,
                    nonce: e.state.nonce,
                };
                // The first write of an account in this run: its bytes are kept to put back
                // if the provider fails, and serve as its undo entry (one read, as on the
                // baseline path).
                match saved.entry(e.account) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        w.put(&e.account, new).map_err(keep)?;
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        let (_, old) = w.account_record(&e.account).map_err(keep)?;
                        w.put_with_old(&e.account, &old, new).map_err(keep)?;
                        slot.insert(old);
                    }
                }
            }
            Ok(())
        },
    );
    let answer = slot.execute_block(txs, proposer, store.as_store());
    if let Some(e) = fault.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    if answer.is_none() {
        let w = writer.into_inner().unwrap_or_else(|p| p.into_inner());
        for (a, old) in saved.into_inner().unwrap_or_else(|p| p.into_inner()) {
            w.restore_account(&a, &old)?;
        }
    }
    Ok(answer)
}
