//! The mempool's baseline: a `Vec` of pending transactions with linear scans, as the
//! catalogue's `consensus_o1_structures` row describes it.
//!
//! Admission checks the stateless rules and the signatures (one batch through
//! `crypto.sig_verify`), drops duplicates and transactions whose nonce is already used, and
//! keeps the rest. Selection takes, again and again, the highest-fee transaction that is
//! next in its sender's nonce order (ties broken by hash), up to a count, so a sender's
//! transactions leave in nonce order and the block pays the most fees available.

use std::collections::HashMap;

use dubchain_plugin_api::{
    slots::TxCheck,
    types::{Bytes32, Transaction},
};

use super::{
    chain::tx_hash,
    execute::{check_stateless, verify_signatures, TxError},
    state::{StateError, StateStore},
};
use crate::slot::{SigVerifySlot, TxValidationSlot};

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Invalid(TxError),
    Duplicate,
}

/// Pending transactions.
#[derive(Debug, Default)]
pub struct Mempool {
    pending: Vec<(Bytes32, Transaction)>,
}

impl Mempool {
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Admits `txs`; returns, per transaction, `None` if admitted or why not.
    pub fn admit(
        &mut self,
        txs: Vec<Transaction>,
        sig: &SigVerifySlot,
        state: &StateStore,
    ) -> Result<Vec<Option<Rejection>>, StateError> {
        self.admit_with(txs, sig, None, state)
    }

    /// [`Self::admit`], with the checks that need no state done by an `exec.tx_validation`
    /// plugin when `txv` has one (else: signatures through `sig`, then the rules).
    pub fn admit_with(
        &mut self,
        txs: Vec<Transaction>,
        sig: &SigVerifySlot,
        txv: Option<&TxValidationSlot>,
        state: &StateStore,
    ) -> Result<Vec<Option<Rejection>>, StateError> {
        let checks: Vec<Result<(), TxError>> = match txv.and_then(|s| s.validate(&txs)) {
            Some(checks) => checks
                .into_iter()
                .map(|c| match c {
                    TxCheck::Valid => Ok(()),
                    TxCheck::BadSignature => Err(TxError::BadSignature),
                    TxCheck::Invalid(f) => Err(TxError::from(f)),
                })
                .collect(),
            None => verify_signatures(sig, &txs)
                .into_iter()
                .zip(&txs)
                .map(|(ok, tx)| {
                    if ok {
                        check_stateless(tx)
                    } else {
                        Err(TxError::BadSignature)
                    }
                })
                .collect(),
        };
        let mut out = Vec::with_capacity(txs.len());
        for (tx, checked) in txs.into_iter().zip(checks) {
            let verdict = if let Err(e) = checked {
                Some(Rejection::Invalid(e))
            } else {
                let hash = tx_hash(&tx);
                let account = state.account(&tx.from)?;
                if self.pending.iter().any(|(h, _)| *h == hash) {
                    Some(Rejection::Duplicate)
                } else if tx.nonce < account.nonce {
                    Some(Rejection::Invalid(TxError::BadNonce {
                        expected: account.nonce,
                        got: tx.nonce,
                    }))
                } else {
                    self.pending.push((hash, tx));
                    None
                }
            };
            out.push(verdict);
        }
        Ok(out)
    }

    /// Up to `max` transactions in fee order that respects each sender's nonce sequence
    /// starting at its state nonce. Selected transactions stay pending until [`Self::remove`].
    pub fn select(&self, max: usize, state: &StateStore) -> Result<Vec<Transaction>, StateError> {
        // Each sender's next nonce, read from the state once.
        let mut next_nonce: HashMap<Bytes32, u64> = HashMap::new();
        for (_, tx) in &self.pending {
            if !next_nonce.contains_key(&tx.from) {
                next_nonce.insert(tx.from, state.account(&tx.from)?.nonce);
            }
        }
        let mut taken = vec![false; self.pending.len()];
        let mut out = Vec::new();
        while out.len() < max {
            let mut best: Option<usize> = None;
            for (i, (hash, tx)) in self.pending.iter().enumerate() {
                if taken[i] {
                    continue;
                }
                if tx.nonce != next_nonce[&tx.from] {
                    continue;
                }
                let better = best.is_none_or(|b| {
                    let (bh, bt) = &self.pending[b];
                    (tx.fee, std::cmp::Reverse(hash)) > (bt.fee, std::cmp::Reverse(bh))
                });
                if better {
                    best = Some(i);
                }
            }
            let Some(b) = best else { break };
            taken[b] = true;
            let tx = &self.pending[b].1;
            next_nonce.insert(tx.from, tx.nonce + 1);
            out.push(tx.clone());
        }
        Ok(out)
    }

    /// Removes included transactions and any whose nonce the state has passed.
    pub fn remove(
        &mut self,
        included: &[Transaction],
        state: &StateStore,
    ) -> Result<(), StateError> {
        let gone: Vec<Bytes32> = included.iter().map(tx_hash).collect();
        let mut nonces: HashMap<Bytes32, u64> = HashMap::new();
        let mut keep = Vec::with_capacity(self.pending.len());
        for (h, tx) in std::mem::take(&mut self.pending) {
            let nonce = match nonces.get(&tx.from) {
                Some(n) => *n,
                None => *nonces
                    .entry(tx.from)
                    .or_insert(state.account(&tx.from)?.nonce),
            };
            if !gone.contains(&h) && tx.nonce >= nonce {
                keep.push((h, tx));
            }
        }
        self.pending = keep;
        Ok(())
    }
}
