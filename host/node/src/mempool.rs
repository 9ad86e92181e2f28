//! The mempool: pending transactions, and an index of them behind the `mempool.tx_pool` slot
//! whose baseline is a `Vec` with linear scans, as the catalogue's `consensus_o1_structures`
//! row describes it.
//!
//! Admission checks the stateless rules and the signatures (one batch through
//! `crypto.sig_verify`), drops transactions whose nonce is already used, then duplicates,
//! and keeps the rest. Selection takes, again and again, the highest-fee transaction that is
//! next in its sender's nonce order (ties broken by hash), up to a count, so a sender's
//! transactions leave in nonce order and the block pays the most fees available.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use dubchain_plugin_api::{
    slots::{HostNonces, NonceSourceRef, PoolEntry, TxCheck, TxIndexBox},
    types::{Bytes32, Transaction},
    PluginError,
};

use crate::{
    chain::tx_hash,
    execute::{check_stateless, verify_signatures, TxError},
    state::{StateError, StateStore},
};
use dubchain_host::{
    baseline::VecIndex,
    slot::{SigVerifySlot, Slots, TxPoolSlot, TxValidationSlot},
};

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Invalid(TxError),
    Duplicate,
}

enum Index<'a> {
    Baseline(VecIndex),
    /// A provider's index, and its slot: told of the index's failure, so that the status,
    /// the monitor and the breaker count it.
    Plugin(TxIndexBox, &'a TxPoolSlot),
}

/// Pending transactions.
pub struct Mempool<'a> {
    bodies: HashMap<Bytes32, Transaction>,
    index: Index<'a>,
}

impl Default for Mempool<'_> {
    /// A mempool on the baseline index.
    fn default() -> Self {
        Mempool {
            bodies: HashMap::new(),
            index: Index::Baseline(VecIndex::default()),
        }
    }
}

impl std::fmt::Debug for Mempool<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mempool")
            .field("pending", &self.bodies.len())
            .field(
                "index",
                &match self.index {
                    Index::Baseline(_) => "baseline",
                    Index::Plugin(..) => "mempool.tx_pool provider",
                },
            )
            .finish()
    }
}

fn entry(hash: Bytes32, tx: &Transaction) -> PoolEntry {
    PoolEntry {
        hash,
        sender: tx.from,
        nonce: tx.nonce,
        fee: tx.fee,
    }
}

/// Runs `call` with a nonce source over `state`; a store error under the provider comes back
/// as the store's error, any other failure as the provider's.
fn with_nonces<T>(
    state: &StateStore, call: impl FnOnce(NonceSourceRef<'_>) -> Result<T, PluginError>,
) -> Result<(Result<T, PluginError>, HashMap<Bytes32, u64>), StateError> {
    let fault: Mutex<Option<StateError>> = Mutex::new(None);
    let read: Mutex<HashMap<Bytes32, u64>> = Mutex::new(HashMap::new());
    let source = HostNonces(|s: &Bytes32| match state.account(s) {
        Ok(a) => {
            read.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(*s, a.nonce);
            Ok(a.nonce)
        }
        Err(e) => {
            let msg = e.to_string();
            *fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            Err(PluginError::failed(msg))
        }
    });
    let out = call(source.as_source());
    match fault.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok((out, read.into_inner().unwrap_or_else(|p| p.into_inner()))),
    }
}

impl<'a> Mempool<'a> {
    /// A mempool on the `mempool.tx_pool` provider's index if there is one, else on the
    /// baseline's.
    pub fn new(slots: &'a Slots) -> Mempool<'a> {
        Mempool {
            bodies: HashMap::new(),
            index: match slots.tx_pool.new_index() {
                Some(ix) => Index::Plugin(ix, &slots.tx_pool),
                None => Index::Baseline(VecIndex::default()),
            },
        }
    }

    pub fn len(&self) -> usize {
        self.bodies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bodies.is_empty()
    }

    /// Whether the index is a provider's (it falls back to the baseline's for good after a
    /// failed call).
    pub fn on_provider(&self) -> bool {
        matches!(self.index, Index::Plugin(..))
    }

    /// After a provider's failure: the baseline index, rebuilt from the pending bodies.
    fn fall_back(&mut self, what: &str, e: &PluginError) -> &mut VecIndex {
        if let Index::Plugin(_, slot) = self.index {
            // Counted and logged there; this mempool continues on the baseline for good.
            slot.object_failed(what, e);
            let mut rebuilt = VecIndex::default();
            let mut entries: Vec<PoolEntry> =
                self.bodies.iter().map(|(h, tx)| entry(*h, tx)).collect();
            entries.sort_unstable_by_key(|e| e.hash);
            rebuilt.insert(&entries);
            self.index = Index::Baseline(rebuilt);
        }
        match &mut self.index {
            Index::Baseline(v) => v,
            Index::Plugin(..) => unreachable!("replaced above"),
        }
    }

    /// Inserts `entries` into the index: one "kept" verdict per entry.
    fn insert(&mut self, entries: &[PoolEntry]) -> Vec<bool> {
        match &mut self.index {
            Index::Baseline(v) => v.insert(entries),
            Index::Plugin(ix, _) => match ix
                .insert(entries.into())
                .into_result()
                .and_then(|v| check_insert(v.into_vec(), entries, &self.bodies))
            {
                Ok(v) => v,
                Err(err) => self.fall_back("insert", &err).insert(entries),
            },
        }
    }

    /// Admits `txs`; returns, per transaction, `None` if admitted or why not.
    pub fn admit(
        &mut self, txs: Vec<Transaction>, sig: &SigVerifySlot, state: &StateStore,
    ) -> Result<Vec<Option<Rejection>>, StateError> {
        self.admit_with(txs, sig, None, state)
    }

    /// [`Self::admit`], with the checks that need no state done by an `exec.tx_validation`
    /// plugin when `txv` has one (else: signatures through `sig`, then the rules).
    pub fn admit_with(
        &mut self, txs: Vec<Transaction>, sig: &SigVerifySlot, txv: Option<&TxValidationSlot>,
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
        let mut verdicts: Vec<Option<Rejection>> = Vec::with_capacity(txs.len());
        let mut fresh: Vec<(usize, Bytes32, Transaction)> = Vec::new();
        for (i, (tx, checked)) in txs.into_iter().zip(checks).enumerate() {
            if let Err(e) = checked {
                verdicts.push(Some(Rejection::Invalid(e)));
                continue;
            }
            let account = state.account(&tx.from)?;
            if tx.nonce < account.nonce {
                verdicts.push(Some(Rejection::Invalid(TxError::BadNonce {
                    expected: account.nonce,
                    got: tx.nonce,
                })));
                continue;
            }
            verdicts.push(None);
            fresh.push((i, tx_hash(&tx), tx));
        }
        let entries: Vec<PoolEntry> = fresh.iter().map(|(_, h, tx)| entry(*h, tx)).collect();
        let kept = self.insert(&entries);
        for ((i, hash, tx), kept) in fresh.into_iter().zip(kept) {
            if kept {
                self.bodies.insert(hash, tx);
            } else {
                verdicts[i] = Some(Rejection::Duplicate);
            }
        }
        Ok(verdicts)
    }

    /// Up to `max` transactions in fee order that respects each sender's nonce sequence
    /// starting at its state nonce. Selected transactions stay pending until [`Self::remove`].
    pub fn select(
        &mut self, max: usize, state: &StateStore,
    ) -> Result<Vec<Transaction>, StateError> {
        let hashes = match &mut self.index {
            Index::Baseline(v) => v.select(max, &|s: &Bytes32| Ok(state.account(s)?.nonce))?,
            Index::Plugin(ix, _) => {
                let (answer, read) = with_nonces(state, |n| {
                    ix.select(max as u64, n).into_result().map(|v| v.into_vec())
                })?;
                let checked = match answer.and_then(|v| check_selection(v, max, &self.bodies)) {
                    Ok(v) => {
                        check_nonce_order(&v, &self.bodies, nonce_of(&read, state))?.map(|()| v)
                    }
                    Err(e) => Err(e),
                };
                match checked {
                    Ok(v) => v,
                    Err(err) => self
                        .fall_back("select", &err)
                        .select(max, &|s: &Bytes32| Ok(state.account(s)?.nonce))?,
                }
            }
        };
        hashes
            .iter()
            .map(|h| {
                self.bodies
                    .get(h)
                    .cloned()
                    .ok_or_else(|| StateError::Corrupt {
                        path: state.path().to_owned(),
                        what: "mempool".into(),
                        detail: format!("the index selected {h:?}, which is not pending"),
                    })
            })
            .collect()
    }

    /// Removes included transactions and any whose nonce the state has passed.
    pub fn remove(
        &mut self, included: &[Transaction], state: &StateStore,
    ) -> Result<(), StateError> {
        let included: Vec<Bytes32> = included.iter().map(tx_hash).collect();
        let nonce = |s: &Bytes32| -> Result<u64, StateError> { Ok(state.account(s)?.nonce) };
        let gone = match &mut self.index {
            Index::Baseline(v) => v.remove(&included, &nonce)?,
            Index::Plugin(ix, _) => {
                let (answer, read) = with_nonces(state, |n| {
                    ix.remove(included.as_slice().into(), n)
                        .into_result()
                        .map(|v| v.into_vec())
                })?;
                let checked = match answer {
                    Ok(v) => check_removed(v, &included, &self.bodies, nonce_of(&read, state))?,
                    Err(e) => Err(e),
                };
                match checked {
                    Ok(v) => v,
                    Err(err) => self.fall_back("remove", &err).remove(&included, &nonce)?,
                }
            }
        };
        for h in gone {
            self.bodies.remove(&h);
        }
        Ok(())
    }
}

/// A sender's state nonce: the one the provider read (not read again), or read now.
fn nonce_of<'s>(
    read: &'s HashMap<Bytes32, u64>, state: &'s StateStore,
) -> impl Fn(&Bytes32) -> Result<u64, StateError> + 's {
    move |s| match read.get(s) {
        Some(n) => Ok(*n),
        None => Ok(state.account(s)?.nonce),
    }
}

/// The host's check of an index's insert verdicts: one per entry, each what the pending
/// transactions say (kept, unless its hash is pending or earlier in the batch). A verdict
/// taken on trust could report a transaction admitted that no index holds, or refuse a new
/// one as a duplicate.
fn check_insert(
    kept: Vec<bool>, entries: &[PoolEntry], bodies: &HashMap<Bytes32, Transaction>,
) -> Result<Vec<bool>, PluginError> {
    if kept.len() != entries.len() {
        return Err(PluginError::failed(format!(
            "index answered {} verdicts for {} entries",
            kept.len(),
            entries.len()
        )));
    }
    let mut batch = HashSet::with_capacity(entries.len());
    for (e, k) in entries.iter().zip(&kept) {
        let new = !bodies.contains_key(&e.hash) && batch.insert(e.hash);
        if *k != new {
            return Err(PluginError::failed(format!(
                "index answered {} for {:?}, which is {}",
                if *k { "kept" } else { "a duplicate" },
                e.hash,
                if new { "new" } else { "pending already" }
            )));
        }
    }
    Ok(kept)
}

/// The host's check of what an index says it dropped: each pending, once, and either
/// included in the block or below its sender's state nonce (`nonce`); and every included
/// one that is pending among them. A transaction dropped on the index's word alone would be
/// lost. One whose nonce has passed and that the index keeps is not looked for (that is a
/// scan of every pending transaction); a selection of it later is refused
/// ([`check_nonce_order`]).
fn check_removed(
    gone: Vec<Bytes32>, included: &[Bytes32], bodies: &HashMap<Bytes32, Transaction>,
    nonce: impl Fn(&Bytes32) -> Result<u64, StateError>,
) -> Result<Result<Vec<Bytes32>, PluginError>, StateError> {
    let included_set: HashSet<&Bytes32> = included.iter().collect();
    let mut seen = HashSet::with_capacity(gone.len());
    for h in &gone {
        let Some(tx) = bodies.get(h) else {
            return Ok(Err(PluginError::failed(format!(
                "index dropped {h:?}, which is not pending"
            ))));
        };
        if !seen.insert(*h) {
            return Ok(Err(PluginError::failed(format!(
                "index dropped {h:?} twice"
            ))));
        }
        if !included_set.contains(h) {
            let next = nonce(&tx.from)?;
            if tx.nonce >= next {
                return Ok(Err(PluginError::failed(format!(
                    "index dropped {h:?}, which the block did not include and whose nonce {} is not below its sender's {next}",
                    tx.nonce
                ))));
            }
        }
    }
    if let Some(h) = included
        .iter()
        .find(|h| bodies.contains_key(h) && !seen.contains(h))
    {
        return Ok(Err(PluginError::failed(format!(
            "index kept {h:?}, which the block included"
        ))));
    }
    Ok(Ok(gone))
}

/// The host's check that a selection keeps each sender's nonce sequence: a sender's
/// selected transactions carry its state nonce (`nonce`), then the next, and so on, in the
/// order selected, as the baseline's does and as a block needs to execute them. Run after
/// [`check_selection`] (every hash pending). A state read that fails is the store's error.
fn check_nonce_order(
    selected: &[Bytes32], bodies: &HashMap<Bytes32, Transaction>,
    nonce: impl Fn(&Bytes32) -> Result<u64, StateError>,
) -> Result<Result<(), PluginError>, StateError> {
    let mut next: HashMap<Bytes32, u64> = HashMap::new();
    for h in selected {
        let Some(tx) = bodies.get(h) else {
            return Ok(Err(PluginError::failed(format!(
                "index selected {h:?}, which is not pending"
            ))));
        };
        let expected = match next.get(&tx.from) {
            Some(n) => *n,
            None => nonce(&tx.from)?,
        };
        if tx.nonce != expected {
            return Ok(Err(PluginError::failed(format!(
                "index selected {h:?} with nonce {} where its sender's next is {expected}",
                tx.nonce
            ))));
        }
        next.insert(tx.from, expected + 1);
    }
    Ok(Ok(()))
}

/// The host's check of an index's selection: at most `max`, each pending, none twice. A
/// wrong answer is the provider's failure (the mempool falls back), never a corrupt store.
fn check_selection(
    selected: Vec<Bytes32>, max: usize, bodies: &HashMap<Bytes32, Transaction>,
) -> Result<Vec<Bytes32>, PluginError> {
    if selected.len() > max {
        return Err(PluginError::failed(format!(
            "index selected {} for a maximum of {max}",
            selected.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(selected.len());
    for h in &selected {
        if !bodies.contains_key(h) {
            return Err(PluginError::failed(format!(
                "index selected {h:?}, which is not pending"
            )));
        }
        if !seen.insert(*h) {
            return Err(PluginError::failed(format!("index selected {h:?} twice")));
        }
    }
    Ok(selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(from: u8, nonce: u64) -> (Bytes32, Transaction) {
        let tx = Transaction {
            from: Bytes32([from; 32]),
            to: Bytes32([0; 32]),
            amount: 1,
            fee: 1,
            nonce,
            gas_limit: 0,
            kind: dubchain_plugin_api::types::TxKind::Transfer,
            payload: dubchain_plugin_api::types::Blob(Vec::new().into()),
            access_list: Vec::new().into(),
            signature: dubchain_plugin_api::types::Bytes64([0; 64]),
        };
        (tx_hash(&tx), tx)
    }

    /// An index whose every insert fails.
    struct Failing;

    impl dubchain_plugin_api::slots::TxIndex for Failing {
        fn insert(&mut self, _: &[PoolEntry]) -> Result<Vec<bool>, PluginError> {
            Err(PluginError::failed("no room"))
        }
        fn select(
            &mut self, _: u64, _: &dubchain_plugin_api::slots::NonceSourceRef<'_>,
        ) -> Result<Vec<Bytes32>, PluginError> {
            Ok(Vec::new())
        }
        fn remove(
            &mut self, _: &[Bytes32], _: &dubchain_plugin_api::slots::NonceSourceRef<'_>,
        ) -> Result<Vec<Bytes32>, PluginError> {
            Ok(Vec::new())
        }
        fn len(&self) -> Result<u64, PluginError> {
            Ok(0)
        }
    }

    struct Failings;

    impl dubchain_plugin_api::slots::TxPool for Failings {
        type Index = Failing;
        fn new_index(&self) -> Result<Failing, PluginError> {
            Ok(Failing)
        }
    }

    /// A provider's index that fails is reported to its slot (counted, as the status and
    /// the monitor show it), and the mempool goes on with the baseline's index, the entry
    /// kept.
    #[test]
    fn a_failing_index_is_reported_to_its_slot_and_the_mempool_falls_back() {
        use dubchain_plugin_api::{
            abi_stable::sabi_trait::TD_Opaque,
            slots::{Guarded, TxPoolFfi_TO},
        };
        let slots = Slots::default();
        dubchain_host::testing::install_one(
            &slots.tx_pool,
            "failing_pool",
            TxPoolFfi_TO::from_value(Guarded(Failings), TD_Opaque),
        );
        let mut pool = Mempool::new(&slots);
        assert!(pool.on_provider());
        let (h, t) = tx(1, 5);
        assert_eq!(pool.insert(&[entry(h, &t)]), vec![true]);
        assert!(!pool.on_provider());
        dubchain_host::testing::assert_failed_once(&slots.tx_pool);
    }

    /// Insert verdicts must be one per entry and say kept exactly for the new hashes.
    #[test]
    fn insert_verdicts_must_match_the_pending_transactions() {
        let (a, b, c) = (tx(1, 5), tx(1, 6), tx(2, 0));
        let bodies: HashMap<Bytes32, Transaction> = [a.clone()].into_iter().collect();
        let entries = [
            entry(a.0, &a.1),
            entry(b.0, &b.1),
            entry(b.0, &b.1),
            entry(c.0, &c.1),
        ];
        let right = vec![false, true, false, true];
        assert_eq!(check_insert(right.clone(), &entries, &bodies), Ok(right));
        for (wrong, says) in [
            (vec![false, true, false], "3 verdicts for 4 entries"),
            (vec![true, true, false, true], "kept for"),
            (vec![false, true, true, true], "which is pending already"),
            (vec![false, true, false, false], "a duplicate for"),
        ] {
            let err = check_insert(wrong.clone(), &entries, &bodies).expect_err("refused");
            assert!(err.to_string().contains(says), "{wrong:?}: {err}");
        }
    }

    /// What an index says it dropped must be pending, once, included or past its sender's
    /// nonce, and take in every included pending one.
    #[test]
    fn dropped_transactions_must_be_included_or_past_their_nonce() {
        let pending = [tx(1, 5), tx(1, 6), tx(2, 0), tx(3, 9)];
        let bodies: HashMap<Bytes32, Transaction> = pending.iter().cloned().collect();
        let h = |i: usize| pending[i].0;
        // Sender 1's block moved it to nonce 7; sender 3 is at 2.
        let state = |s: &Bytes32| Ok(if s.0[0] == 1 { 7 } else { 0 });
        let included = [h(0), tx(9, 0).0];
        let check = |gone: &[usize]| {
            let gone: Vec<Bytes32> = gone.iter().map(|&i| h(i)).collect();
            check_removed(gone, &included, &bodies, state).expect("no store error")
        };
        assert!(check(&[0, 1]).is_ok(), "included, and below the nonce");
        assert!(check(&[0]).is_ok(), "a passed one kept is not looked for");
        for (wrong, says) in [
            (&[1][..], "kept"),
            (
                &[0, 2][..],
                "did not include and whose nonce 0 is not below its sender's 0",
            ),
            (&[0, 0][..], "twice"),
        ] {
            let err = check(wrong).expect_err("refused");
            assert!(err.to_string().contains(says), "{wrong:?}: {err}");
        }
        let err = check_removed(vec![tx(8, 1).0], &[], &bodies, state)
            .expect("no store error")
            .expect_err("refused");
        assert!(err.to_string().contains("not pending"), "{err}");
    }

    /// A selection that skips a sender's nonce, goes back, or starts past its state nonce is
    /// the provider's failure; one that keeps every sender's sequence passes.
    #[test]
    fn a_selection_must_keep_each_senders_nonce_sequence() {
        let pending = [tx(1, 5), tx(1, 6), tx(1, 7), tx(2, 0), tx(2, 1)];
        let bodies: HashMap<Bytes32, Transaction> = pending.iter().cloned().collect();
        let h = |i: usize| pending[i].0;
        let state = |s: &Bytes32| Ok(if s.0[0] == 1 { 5 } else { 0 });
        let check = |order: &[usize]| {
            let selected: Vec<Bytes32> = order.iter().map(|&i| h(i)).collect();
            check_nonce_order(&selected, &bodies, state).expect("no store error")
        };
        assert!(check(&[0, 3, 1, 4, 2]).is_ok());
        assert!(check(&[3]).is_ok());
        for (wrong, says) in [
            (&[1][..], "nonce 6 where its sender's next is 5"),
            (&[0, 2][..], "nonce 7 where its sender's next is 6"),
            (&[0, 1, 0][..], "nonce 5 where its sender's next is 7"),
            (&[4, 3][..], "nonce 1 where its sender's next is 0"),
        ] {
            let err = check(wrong).expect_err("refused");
            assert!(err.to_string().contains(says), "{wrong:?}: {err}");
        }
    }
}
