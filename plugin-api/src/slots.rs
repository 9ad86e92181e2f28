//! The slots a plugin can fill, their contracts, and the adaptors that carry an
//! implementation across the boundary.
//!
//! For each slot there are three things:
//!
//! * a plain Rust trait that plugin authors implement ([`SigVerify`], [`RecordCodec`]);
//! * an FFI-safe trait object the host holds ([`SigVerifyBox`], [`RecordCodecBox`]);
//! * an adaptor, [`Guarded`], that implements the FFI trait for any implementation of the
//!   Rust trait and catches panics.
//!
//! A slot is either **exclusive** (one provider replaces the baseline) or **layered**
//! (providers stack over the baseline in a declared order, each receiving the layer below as
//! `next`). See [`SlotKind`].

#![allow(
    non_local_definitions,
    reason = "abi_stable's #[sabi_trait] expands trait impls inside a const block"
)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::{
    sabi_trait,
    std_types::{RBox, RResult, RSlice, RVec},
    StableAbi,
};

use crate::{
    exec::{AccountEntry, TxFailure},
    types::{Block, Bytes32, Record, SigItem, Transaction, VoteItem},
    PluginError,
};

/// Whether providers of a slot replace each other or stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// At most one enabled provider; it replaces the baseline.
    Exclusive,
    /// Any number of providers, stacked over the baseline in manifest order; each may
    /// answer a call itself or pass (part of) it to the layer below.
    Layered,
}

/// A slot the host knows: its identifier, contract version and kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInfo {
    /// Identifier used in manifests, for example `crypto.sig_verify`.
    pub id: &'static str,
    /// Contract version; a manifest's `provides` must name this exact version.
    pub version: u32,
    /// Exclusive or layered.
    pub kind: SlotKind,
    /// One line on what the slot computes.
    pub summary: &'static str,
}

/// ed25519 verification of a batch of signatures.
pub const SIG_VERIFY: SlotInfo = SlotInfo {
    id: "crypto.sig_verify",
    version: 1,
    kind: SlotKind::Layered,
    summary: "strict ed25519 verdicts for a batch of (key, message, signature)",
};

/// Encoding and decoding of stored blocks and transactions.
pub const RECORD_CODEC: SlotInfo = SlotInfo {
    id: "storage.record_codec",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "bytes of stored blocks and transactions; must read every older format",
};

/// BLS verification of a batch of validator votes.
pub const VOTE_VERIFY: SlotInfo = SlotInfo {
    id: "consensus.vote_verify",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "BLS (min-pk, PoP) verdicts for a batch of validator votes, as blst's verify with group checks",
};

/// RFC 6962 Merkle roots (SHA-256) of batches of leaves.
pub const MERKLE: SlotInfo = SlotInfo {
    id: "crypto.merkle",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "RFC 6962 SHA-256 Merkle roots of a batch of trees",
};

/// Executing a block's transactions against the state.
pub const BLOCK_EXECUTION: SlotInfo = SlotInfo {
    id: "exec.block_execution",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "a block's transfers executed in order's effect: per-transaction outcomes and the final write set",
};

/// The stateless checks of a run of blocks (catch-up sync).
pub const BLOCK_VALIDATION: SlotInfo = SlotInfo {
    id: "consensus.block_validation",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "per-block verdicts of the stateless checks (links, roots, signatures, rules) of a run of blocks",
};

/// The validity checks of a batch of transactions (mempool admission).
pub const TX_VALIDATION: SlotInfo = SlotInfo {
    id: "exec.tx_validation",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "per-transaction verdicts of the signature and stateless checks of a batch",
};

/// Every slot this version of the API defines.
pub const ALL: &[SlotInfo] = &[
    SIG_VERIFY,
    RECORD_CODEC,
    VOTE_VERIFY,
    MERKLE,
    BLOCK_EXECUTION,
    BLOCK_VALIDATION,
    TX_VALIDATION,
];

/// Looks a slot up by identifier.
pub fn find(id: &str) -> Option<&'static SlotInfo> {
    ALL.iter().find(|s| s.id == id)
}

// ---------------------------------------------------------------------------------------------
// crypto.sig_verify

/// Contract of `crypto.sig_verify`.
///
/// `verify_batch` returns one verdict per item, in order, equal to what
/// `ed25519_dalek::VerifyingKey::verify_strict` says for that item: a key that does not
/// decompress, a small-order key or `R`, a non-canonical `s`, or a failed equation is
/// `false`. It may answer items itself or pass any subset to `next` (the layer below, whose
/// bottom is the host's baseline).
pub trait SigVerify: Send + Sync + 'static {
    /// Verdicts for `items`, one per item, in order.
    fn verify_batch(
        &self,
        items: &[SigItem<'_>],
        next: &Next<'_>,
    ) -> Result<Vec<bool>, PluginError>;
}

/// FFI form of [`SigVerify`]; hosts call it through [`SigVerifyBox`].
#[sabi_trait]
pub trait SigVerifyFfi: Send + Sync {
    /// See [`SigVerify::verify_batch`].
    #[sabi(last_prefix_field)]
    fn verify_batch(
        &self,
        items: RSlice<'_, SigItem<'_>>,
        next: LowerLayerRef<'_>,
    ) -> RResult<RVec<bool>, PluginError>;
}

/// The layer below a `crypto.sig_verify` provider, as the host hands it over.
#[sabi_trait]
pub trait LowerLayer: Sync {
    /// Verdicts of the lower layers for `items`.
    #[sabi(last_prefix_field)]
    fn verify_batch(&self, items: RSlice<'_, SigItem<'_>>) -> RResult<RVec<bool>, PluginError>;
}

/// An owned `crypto.sig_verify` implementation.
pub type SigVerifyBox = SigVerifyFfi_TO<'static, RBox<()>>;
/// A borrowed view of the layer below.
pub type LowerLayerRef<'a> = LowerLayer_TO<'a, abi_stable::sabi_types::RRef<'a, ()>>;

/// The layer below, as a plugin sees it.
pub struct Next<'a>(LowerLayerRef<'a>);

impl<'a> Next<'a> {
    /// Wraps the FFI view of a lower layer; hosts and tests use it to call a [`SigVerify`]
    /// implementation directly (see [`LowerFn`]).
    pub fn new(lower: LowerLayerRef<'a>) -> Self {
        Next(lower)
    }

    /// Asks the layers below (ultimately the baseline) for verdicts on `items`.
    pub fn verify_batch(&self, items: &[SigItem<'_>]) -> Result<Vec<bool>, PluginError> {
        self.0
            .verify_batch(items.into())
            .into_result()
            .map(RVec::into_vec)
    }
}

// ---------------------------------------------------------------------------------------------
// storage.record_codec

/// Contract of `storage.record_codec`.
///
/// `decode(encode(r)) == r` for every record; `decode` must also read every format written
/// by earlier codecs of this slot, including the baseline's JSON, and give exactly the
/// baseline's records for them. A record that cannot be decoded is an error for that item
/// only.
pub trait RecordCodec: Send + Sync + 'static {
    /// The stored bytes of each record, in order.
    fn encode(&self, records: &[Record]) -> Result<Vec<Vec<u8>>, PluginError>;
    /// The record behind each stored value, or why it cannot be read.
    fn decode(
        &self,
        values: &[RSlice<'_, u8>],
    ) -> Result<Vec<Result<Record, PluginError>>, PluginError>;
}

/// FFI form of [`RecordCodec`]; hosts call it through [`RecordCodecBox`].
#[sabi_trait]
pub trait RecordCodecFfi: Send + Sync {
    /// See [`RecordCodec::encode`].
    fn encode(&self, records: RSlice<'_, Record>) -> RResult<RVec<RVec<u8>>, PluginError>;
    /// See [`RecordCodec::decode`].
    #[sabi(last_prefix_field)]
    fn decode(
        &self,
        values: RSlice<'_, RSlice<'_, u8>>,
    ) -> RResult<RVec<RResult<Record, PluginError>>, PluginError>;
}

/// An owned `storage.record_codec` implementation.
pub type RecordCodecBox = RecordCodecFfi_TO<'static, RBox<()>>;

// ---------------------------------------------------------------------------------------------
// consensus.vote_verify

/// Contract of `consensus.vote_verify`.
///
/// One verdict per vote, in order, equal to blst's
/// `min_pk::Signature::verify(true, message, DST, &[], public_key, true)` being
/// `BLST_SUCCESS` with the DubChain vote DST
/// (`BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_`): a signature that does not decompress or
/// is not in the G2 subgroup, a key that does not validate, or a failed pairing check is
/// `false`. An implementation that batches must still give exact per-vote verdicts.
pub trait VoteVerify: Send + Sync + 'static {
    /// Verdicts for `votes`, one per vote, in order.
    fn verify_votes(&self, votes: &[VoteItem<'_>]) -> Result<Vec<bool>, PluginError>;
}

/// FFI form of [`VoteVerify`].
#[sabi_trait]
pub trait VoteVerifyFfi: Send + Sync {
    /// See [`VoteVerify::verify_votes`].
    #[sabi(last_prefix_field)]
    fn verify_votes(&self, votes: RSlice<'_, VoteItem<'_>>) -> RResult<RVec<bool>, PluginError>;
}

/// An owned `consensus.vote_verify` implementation.
pub type VoteVerifyBox = VoteVerifyFfi_TO<'static, RBox<()>>;

/// The DST of DubChain votes (proof-of-possession ciphersuite).
pub const VOTE_DST: &[u8] = b"BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

// ---------------------------------------------------------------------------------------------
// crypto.merkle

/// Contract of `crypto.merkle`.
///
/// For each tree, the RFC 6962 Merkle tree hash with SHA-256 of its leaves: the empty tree
/// is `SHA-256()`, a leaf is `SHA-256(0x00 || leaf)`, a node `SHA-256(0x01 || left ||
/// right)`, and a tree of `n > 1` leaves splits at the largest power of two below `n`.
pub trait MerkleRoots: Send + Sync + 'static {
    /// The root of each tree, in order.
    fn roots(&self, trees: &[RSlice<'_, Bytes32>]) -> Result<Vec<Bytes32>, PluginError>;
}

/// FFI form of [`MerkleRoots`].
#[sabi_trait]
pub trait MerkleRootsFfi: Send + Sync {
    /// See [`MerkleRoots::roots`].
    #[sabi(last_prefix_field)]
    fn roots(&self, trees: RSlice<'_, RSlice<'_, Bytes32>>) -> RResult<RVec<Bytes32>, PluginError>;
}

/// An owned `crypto.merkle` implementation.
pub type MerkleRootsBox = MerkleRootsFfi_TO<'static, RBox<()>>;

// ---------------------------------------------------------------------------------------------
// exec.block_execution

/// What executing a block produced.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct BlockOutcome {
    /// One per transaction, in block order: `ROk(())` if it applied, or why not.
    pub results: RVec<RResult<(), TxFailure>>,
    /// The final state of every account any applied transaction wrote, each once, sorted
    /// by account.
    pub writes: RVec<AccountEntry>,
}

/// Contract of `exec.block_execution`.
///
/// Given the state before the block of every account the block may touch (`pre`: the
/// union of the transactions' access lists and the proposer, sorted by account, each
/// once), the outcome must equal executing `txs` one after another with
/// [`crate::exec::apply_transfer`] (a failed transaction has no effect and execution goes
/// on): the same per-transaction results and the same final state. An implementation may
/// order, group and parallelise the work as it likes, and must not read an account
/// outside `pre` (it answers an error instead, and the host executes the block itself).
pub trait BlockExecution: Send + Sync + 'static {
    /// Executes `txs` for `proposer` over `pre`.
    fn execute_block(
        &self,
        pre: &[AccountEntry],
        txs: &[Transaction],
        proposer: &Bytes32,
    ) -> Result<BlockOutcome, PluginError>;
}

/// FFI form of [`BlockExecution`].
#[sabi_trait]
pub trait BlockExecutionFfi: Send + Sync {
    /// See [`BlockExecution::execute_block`].
    #[sabi(last_prefix_field)]
    fn execute_block(
        &self,
        pre: RSlice<'_, AccountEntry>,
        txs: RSlice<'_, Transaction>,
        proposer: &Bytes32,
    ) -> RResult<BlockOutcome, PluginError>;
}

/// An owned `exec.block_execution` implementation.
pub type BlockExecutionBox = BlockExecutionFfi_TO<'static, RBox<()>>;

// ---------------------------------------------------------------------------------------------
// consensus.block_validation

/// The verdict of the stateless checks on one block.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockCheck {
    /// Every stateless check passed (execution may still refuse the block).
    Valid,
    /// The height is not the previous block's + 1.
    Height {
        /// The previous block's height + 1.
        expected: u64,
        /// The block's.
        got: u64,
    },
    /// The parent is not the previous block's hash.
    Parent {
        /// The previous block's hash.
        expected: Bytes32,
        /// The block's parent.
        got: Bytes32,
    },
    /// The transaction root is not the Merkle root of the transactions.
    TxRoot,
    /// The receipts are not one per transaction.
    ReceiptCount {
        /// Receipts.
        count: u64,
        /// Transactions.
        txs: u64,
    },
    /// Transaction `index` has a signature that does not verify (strictly).
    BadSignature {
        /// Its index in the block.
        index: u64,
    },
    /// Transaction `index` breaks a stateless rule.
    Tx {
        /// Its index in the block.
        index: u64,
        /// Which rule.
        failure: TxFailure,
    },
}

/// Contract of `consensus.block_validation`.
///
/// For a run of blocks meant to extend the head (`head_height`, `head_hash`), one verdict
/// per block, equal to checking the blocks one at a time in this order: height is the
/// previous block's + 1; parent is the previous block's hash
/// ([`crate::chain::block_hash`] of its header; the head's for the first); the header's
/// transaction root is [`crate::chain::merkle_root`] of the transactions'
/// [`crate::chain::tx_hash`]es; one receipt per transaction; then for each transaction in
/// order, its ed25519 signature over [`crate::chain::signing_bytes`] (strict, as
/// `crypto.sig_verify` defines it) and [`crate::exec::check_stateless`]. The first failing
/// check is the block's verdict. Each block is checked as if the ones before it were valid;
/// the host stops at the first block that is not.
pub trait BlockValidation: Send + Sync + 'static {
    /// Verdicts for `blocks`, one per block, in order.
    fn check_run(
        &self,
        head_height: u64,
        head_hash: &Bytes32,
        blocks: &[Block],
    ) -> Result<Vec<BlockCheck>, PluginError>;
}

/// FFI form of [`BlockValidation`].
#[sabi_trait]
pub trait BlockValidationFfi: Send + Sync {
    /// See [`BlockValidation::check_run`].
    #[sabi(last_prefix_field)]
    fn check_run(
        &self,
        head_height: u64,
        head_hash: &Bytes32,
        blocks: RSlice<'_, Block>,
    ) -> RResult<RVec<BlockCheck>, PluginError>;
}

/// An owned `consensus.block_validation` implementation.
pub type BlockValidationBox = BlockValidationFfi_TO<'static, RBox<()>>;

// ---------------------------------------------------------------------------------------------
// exec.tx_validation

/// The verdict of the checks that need no state on one transaction.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxCheck {
    /// The signature verifies and every stateless rule holds.
    Valid,
    /// The ed25519 signature over [`crate::chain::signing_bytes`] does not verify
    /// (strictly, as `crypto.sig_verify` defines it). Checked first.
    BadSignature,
    /// A rule of [`crate::exec::check_stateless`] is broken (checked after the signature).
    Invalid(TxFailure),
}

/// Contract of `exec.tx_validation`: for each transaction, its signature first (strict),
/// then [`crate::exec::check_stateless`]; the first failure is the verdict.
pub trait TxValidation: Send + Sync + 'static {
    /// Verdicts for `txs`, one per transaction, in order.
    fn validate(&self, txs: &[Transaction]) -> Result<Vec<TxCheck>, PluginError>;
}

/// FFI form of [`TxValidation`].
#[sabi_trait]
pub trait TxValidationFfi: Send + Sync {
    /// See [`TxValidation::validate`].
    #[sabi(last_prefix_field)]
    fn validate(&self, txs: RSlice<'_, Transaction>) -> RResult<RVec<TxCheck>, PluginError>;
}

/// An owned `exec.tx_validation` implementation.
pub type TxValidationBox = TxValidationFfi_TO<'static, RBox<()>>;

// ---------------------------------------------------------------------------------------------
// Adaptors

/// Wraps a plugin's implementation of a slot trait so that it can cross the boundary:
/// every call runs under `catch_unwind`, and a panic comes back as an error.
#[repr(transparent)]
#[derive(StableAbi)]
pub struct Guarded<T>(pub T);

/// Runs `f`, turning a panic into a [`PluginError`] of kind `Panicked`.
pub fn guard<R>(f: impl FnOnce() -> Result<R, PluginError>) -> RResult<R, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result.into(),
        Err(payload) => RResult::RErr(PluginError::panicked(&*payload)),
    }
}

impl<T: SigVerify> SigVerifyFfi for Guarded<T> {
    fn verify_batch(
        &self,
        items: RSlice<'_, SigItem<'_>>,
        next: LowerLayerRef<'_>,
    ) -> RResult<RVec<bool>, PluginError> {
        let next = Next(next);
        guard(|| {
            check_len(items.len(), self.0.verify_batch(items.as_slice(), &next)?).map(RVec::from)
        })
    }
}

impl<T: RecordCodec> RecordCodecFfi for Guarded<T> {
    fn encode(&self, records: RSlice<'_, Record>) -> RResult<RVec<RVec<u8>>, PluginError> {
        guard(|| {
            let out = check_len(records.len(), self.0.encode(records.as_slice())?)?;
            Ok(out.into_iter().map(RVec::from).collect())
        })
    }

    fn decode(
        &self,
        values: RSlice<'_, RSlice<'_, u8>>,
    ) -> RResult<RVec<RResult<Record, PluginError>>, PluginError> {
        guard(|| {
            let out = check_len(values.len(), self.0.decode(values.as_slice())?)?;
            Ok(out.into_iter().map(RResult::from).collect())
        })
    }
}

impl<T: VoteVerify> VoteVerifyFfi for Guarded<T> {
    fn verify_votes(&self, votes: RSlice<'_, VoteItem<'_>>) -> RResult<RVec<bool>, PluginError> {
        guard(|| check_len(votes.len(), self.0.verify_votes(votes.as_slice())?).map(RVec::from))
    }
}

impl<T: MerkleRoots> MerkleRootsFfi for Guarded<T> {
    fn roots(&self, trees: RSlice<'_, RSlice<'_, Bytes32>>) -> RResult<RVec<Bytes32>, PluginError> {
        guard(|| check_len(trees.len(), self.0.roots(trees.as_slice())?).map(RVec::from))
    }
}

impl<T: BlockExecution> BlockExecutionFfi for Guarded<T> {
    fn execute_block(
        &self,
        pre: RSlice<'_, AccountEntry>,
        txs: RSlice<'_, Transaction>,
        proposer: &Bytes32,
    ) -> RResult<BlockOutcome, PluginError> {
        guard(|| {
            let out = self
                .0
                .execute_block(pre.as_slice(), txs.as_slice(), proposer)?;
            if out.results.len() != txs.len() {
                return Err(PluginError::failed(format!(
                    "plugin returned {} results for a block of {} transactions",
                    out.results.len(),
                    txs.len()
                )));
            }
            Ok(out)
        })
    }
}

impl<T: BlockValidation> BlockValidationFfi for Guarded<T> {
    fn check_run(
        &self,
        head_height: u64,
        head_hash: &Bytes32,
        blocks: RSlice<'_, Block>,
    ) -> RResult<RVec<BlockCheck>, PluginError> {
        guard(|| {
            check_len(
                blocks.len(),
                self.0
                    .check_run(head_height, head_hash, blocks.as_slice())?,
            )
            .map(RVec::from)
        })
    }
}

impl<T: TxValidation> TxValidationFfi for Guarded<T> {
    fn validate(&self, txs: RSlice<'_, Transaction>) -> RResult<RVec<TxCheck>, PluginError> {
        guard(|| check_len(txs.len(), self.0.validate(txs.as_slice())?).map(RVec::from))
    }
}

/// A batch answer must have one entry per input; anything else is a plugin bug that the
/// host must not index past.
fn check_len<T>(expected: usize, out: Vec<T>) -> Result<Vec<T>, PluginError> {
    if out.len() == expected {
        Ok(out)
    } else {
        Err(PluginError::failed(format!(
            "plugin returned {} answers for a batch of {expected}",
            out.len()
        )))
    }
}

/// Host side: presents a Rust closure as the [`LowerLayerRef`] handed to a layer.
pub struct LowerFn<F>(pub F);

impl<F> LowerLayer for LowerFn<F>
where
    F: Fn(&[SigItem<'_>]) -> Result<Vec<bool>, PluginError> + Sync,
{
    fn verify_batch(&self, items: RSlice<'_, SigItem<'_>>) -> RResult<RVec<bool>, PluginError> {
        guard(|| (self.0)(items.as_slice()).map(RVec::from))
    }
}

impl<F> LowerFn<F>
where
    F: Fn(&[SigItem<'_>]) -> Result<Vec<bool>, PluginError> + Sync,
{
    /// Borrows this closure as the FFI object a layer receives.
    pub fn as_ffi(&self) -> LowerLayerRef<'_> {
        LowerLayer_TO::from_ptr(
            abi_stable::sabi_types::RRef::new(self),
            abi_stable::sabi_trait::TD_Opaque,
        )
    }
}
