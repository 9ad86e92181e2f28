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
    sabi_types::RRef,
    std_types::{RBox, ROption, RResult, RSlice, RSliceMut, RString, RVec},
    StableAbi,
};

use crate::{
    exec::{AccountEntry, AccountState, TxFailure},
    state_tree::{LeafChange, StateLeaf},
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

/// Loading a contract's code for a call: read, decode, validate.
pub const CODE_LOADER: SlotInfo = SlotInfo {
    id: "vm.code_loader",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "a contract's stored code, decoded and validated, for a call (or why it is invalid or missing)",
};

/// Gas metering: the rewrite of a contract's code that charges the gas schedule.
pub const METERING: SlotInfo = SlotInfo {
    id: "vm.metering",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "contract code rewritten to charge exactly the gas schedule (host call or wasm global counter)",
};

/// Compiling and running metered contract code.
pub const MODULE_CACHE: SlotInfo = SlotInfo {
    id: "vm.module_cache",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "one contract call on metered code: compile (or reuse), instantiate, run; result, writes and gas",
};

/// Contract storage reads.
pub const CONTRACT_STATE: SlotInfo = SlotInfo {
    id: "vm.contract_state",
    version: 1,
    kind: SlotKind::Exclusive,
    summary:
        "contract storage reads, told of every write and rollback; must answer what the store holds",
};

/// Reclaiming the node's per-block structures once it is done with them.
pub const BLOCK_RECLAIM: SlotInfo = SlotInfo {
    id: "mem.block_reclaim",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "takes ownership of blocks the node is done with and frees them, promptly returning",
};

/// Buffers for encoding network frames.
pub const BUFFER_POOL: SlotInfo = SlotInfo {
    id: "mem.buffer_pool",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "empty byte buffers of at least a given capacity, and their return after use",
};

/// Writing a peer's outgoing frames to its connection.
pub const FRAME_SEND: SlotInfo = SlotInfo {
    id: "net.frame_send",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "a peer's queued frames written to its connection: exactly their bytes, in order",
};

/// The mempool's index of pending transactions.
pub const TX_POOL: SlotInfo = SlotInfo {
    id: "mempool.tx_pool",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "per-mempool index of pending transactions: dedupe, fee-ordered selection in nonce order, removal",
};

/// The consensus state: vote tallies and finality.
pub const VOTE_TALLY: SlotInfo = SlotInfo {
    id: "consensus.vote_tally",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "vote tallies and the finalized height, shared by the threads that record votes",
};

/// Decoding transactions received from peers.
pub const TX_DECODE: SlotInfo = SlotInfo {
    id: "mem.tx_decode",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "transactions decoded from their wire form (JSON), with exactly serde_json's verdicts",
};

/// Account reads of the state store.
pub const ACCOUNT_READ: SlotInfo = SlotInfo {
    id: "storage.account_read",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "account reads of a state store, told of every write and rollback; must answer what the store holds",
};

/// Making commits durable.
pub const DURABILITY: SlotInfo = SlotInfo {
    id: "storage.durability",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "returns once everything written to a store before the call is on disk (an fsync of its log that began after the call)",
};

/// The frames of a broadcast.
pub const BROADCAST: SlotInfo = SlotInfo {
    id: "net.broadcast",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "the frames of a broadcast to n peers, byte for byte the wire format, shared between peers or not",
};

/// Per-peer queues of outgoing frames.
pub const SEND_QUEUE: SlotInfo = SlotInfo {
    id: "net.send_queue",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "each peer's queue of outgoing frames: what waits, what is dropped (gossip only), what goes first",
};

/// The I/O of a node's peer connections.
pub const TRANSPORT: SlotInfo = SlotInfo {
    id: "net.transport",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "a node's peer sockets driven by the provider: frames cut and delivered in order, sends written in order",
};

/// Holding a block's writes until its commit.
pub const BLOCK_COMMIT: SlotInfo = SlotInfo {
    id: "storage.block_commit",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "holds a block's writes (reads see them) and hands them over once, last write per key, in key order, for one atomic write with the block",
};

/// The state root of each block.
pub const STATE_ROOT: SlotInfo = SlotInfo {
    id: "storage.state_root",
    version: 1,
    kind: SlotKind::Exclusive,
    summary: "the state root after a block, from the root before it and the block's leaf changes: exactly the sparse Merkle root of every leaf",
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
    CODE_LOADER,
    METERING,
    MODULE_CACHE,
    CONTRACT_STATE,
    BLOCK_RECLAIM,
    BUFFER_POOL,
    FRAME_SEND,
    TX_POOL,
    VOTE_TALLY,
    TX_DECODE,
    ACCOUNT_READ,
    DURABILITY,
    BROADCAST,
    SEND_QUEUE,
    TRANSPORT,
    BLOCK_COMMIT,
    STATE_ROOT,
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
        &self, items: &[SigItem<'_>], next: &Next<'_>,
    ) -> Result<Vec<bool>, PluginError>;
}

/// FFI form of [`SigVerify`]; hosts call it through [`SigVerifyBox`].
#[sabi_trait]
pub trait SigVerifyFfi: Send + Sync {
    /// See [`SigVerify::verify_batch`].
    #[sabi(last_prefix_field)]
    fn verify_batch(
        &self, items: RSlice<'_, SigItem<'_>>, next: LowerLayerRef<'_>,
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

/// A [`SigVerify`] from a function of the batch and the layer below: for layers that are a
/// few lines (a pass-through, a filter), without a type of their own.
///
/// ```
/// use dubchain_plugin_api::slots::SigVerifyFn;
/// // A layer that asks the layers below for everything.
/// let pass_through = SigVerifyFn::new(|items, next| next.verify_batch(items));
/// # let _ = pass_through;
/// ```
pub struct SigVerifyFn<F>(F);

impl<F> SigVerifyFn<F>
where
    F: Fn(&[SigItem<'_>], &Next<'_>) -> Result<Vec<bool>, PluginError> + Send + Sync + 'static,
{
    /// The layer that answers with `f`.
    pub fn new(f: F) -> Self {
        SigVerifyFn(f)
    }
}

impl<F> SigVerify for SigVerifyFn<F>
where
    F: Fn(&[SigItem<'_>], &Next<'_>) -> Result<Vec<bool>, PluginError> + Send + Sync + 'static,
{
    fn verify_batch(
        &self, items: &[SigItem<'_>], next: &Next<'_>,
    ) -> Result<Vec<bool>, PluginError> {
        (self.0)(items, next)
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
        &self, values: &[RSlice<'_, u8>],
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
        &self, values: RSlice<'_, RSlice<'_, u8>>,
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
pub trait Merkle: Send + Sync + 'static {
    /// The root of each tree, in order.
    fn roots(&self, trees: &[RSlice<'_, Bytes32>]) -> Result<Vec<Bytes32>, PluginError>;
}

/// FFI form of [`Merkle`].
#[sabi_trait]
pub trait MerkleFfi: Send + Sync {
    /// See [`Merkle::roots`].
    #[sabi(last_prefix_field)]
    fn roots(&self, trees: RSlice<'_, RSlice<'_, Bytes32>>) -> RResult<RVec<Bytes32>, PluginError>;
}

/// An owned `crypto.merkle` implementation.
pub type MerkleBox = MerkleFfi_TO<'static, RBox<()>>;

// ---------------------------------------------------------------------------------------------
// exec.block_execution

/// A run of transfers' verdicts: one per transaction, in block order, `ROk(())` if it
/// applied, or why not (a failed transaction has no effect).
pub type TxResults = RVec<RResult<(), TxFailure>>;

/// The block's accounts as the host hands them to `exec.block_execution`: the block in
/// progress, read and written at once. These are the baseline's own primitives: its
/// execution reads the sender, recipient and proposer of each transfer and writes each
/// back, one account at a time, each write reaching the block's store at once (a put per
/// write, after an undo entry on an account's first write in the block). Calls take
/// batches, so a plugin may read every account it needs in one call and write each once.
#[sabi_trait]
pub trait AccountStore: Sync {
    /// The state of each account (default when it does not exist), as the block sees it.
    fn get(&self, accounts: RSlice<'_, Bytes32>) -> RResult<RVec<AccountState>, PluginError>;
    /// Writes each entry, in the order given, to the block at once.
    #[sabi(last_prefix_field)]
    fn put(&self, writes: RSlice<'_, AccountEntry>) -> RResult<(), PluginError>;
}

/// A borrowed [`AccountStore`].
pub type AccountStoreRef<'a> = AccountStore_TO<'a, RRef<'a, ()>>;

/// Host side: presents two Rust closures (read a batch, write a batch) as an
/// [`AccountStoreRef`].
pub struct HostAccountStore<G, P>(pub G, pub P);

impl<G, P> AccountStore for HostAccountStore<G, P>
where
    G: Fn(&[Bytes32]) -> Result<Vec<AccountState>, PluginError> + Sync,
    P: Fn(&[AccountEntry]) -> Result<(), PluginError> + Sync,
{
    fn get(&self, accounts: RSlice<'_, Bytes32>) -> RResult<RVec<AccountState>, PluginError> {
        guard(|| check_len(accounts.len(), (self.0)(accounts.as_slice())?).map(RVec::from))
    }
    fn put(&self, writes: RSlice<'_, AccountEntry>) -> RResult<(), PluginError> {
        guard(|| (self.1)(writes.as_slice()))
    }
}

impl<G, P> HostAccountStore<G, P>
where
    G: Fn(&[Bytes32]) -> Result<Vec<AccountState>, PluginError> + Sync,
    P: Fn(&[AccountEntry]) -> Result<(), PluginError> + Sync,
{
    /// Borrows these closures as an [`AccountStoreRef`].
    pub fn as_store(&self) -> AccountStoreRef<'_> {
        AccountStore_TO::from_ptr(RRef::new(self), abi_stable::sabi_trait::TD_Opaque)
    }
}

/// Contract of `exec.block_execution`: execute a run of transfers for `proposer` over the
/// block's accounts (`state`). The verdicts, and the state the block is left in, must equal
/// executing `txs` one after another with [`crate::exec::apply_transfer`] (a failed
/// transaction has no effect and execution goes on); that is the baseline, composed from
/// `state`'s primitives one account at a time ([`crate::exec::execute_through`], which is
/// also what `plugin new` scaffolds). An implementation may read ahead, hold writes,
/// order, group and parallelise as it likes: the speed-up is its own code. If it fails, the
/// host restores every account it wrote through `state` and runs the baseline.
pub trait BlockExecution: Send + Sync + 'static {
    /// Executes `txs` for `proposer` over `state`.
    fn execute_block(
        &self, txs: &[Transaction], proposer: &Bytes32, state: &AccountStoreRef<'_>,
    ) -> Result<Vec<RResult<(), TxFailure>>, PluginError>;
}

/// FFI form of [`BlockExecution`].
#[sabi_trait]
pub trait BlockExecutionFfi: Send + Sync {
    /// See [`BlockExecution::execute_block`].
    #[sabi(last_prefix_field)]
    fn execute_block(
        &self, txs: RSlice<'_, Transaction>, proposer: &Bytes32, state: AccountStoreRef<'_>,
    ) -> RResult<TxResults, PluginError>;
}

/// An owned `exec.block_execution` implementation.
pub type BlockExecutionBox = BlockExecutionFfi_TO<'static, RBox<()>>;

// ---------------------------------------------------------------------------------------------
// consensus.block_validation

/// The verdict of the stateless checks on one block.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
        &self, head_height: u64, head_hash: &Bytes32, blocks: &[Block],
    ) -> Result<Vec<BlockCheck>, PluginError>;
}

/// FFI form of [`BlockValidation`].
#[sabi_trait]
pub trait BlockValidationFfi: Send + Sync {
    /// See [`BlockValidation::check_run`].
    #[sabi(last_prefix_field)]
    fn check_run(
        &self, head_height: u64, head_hash: &Bytes32, blocks: RSlice<'_, Block>,
    ) -> RResult<RVec<BlockCheck>, PluginError>;
}

/// An owned `consensus.block_validation` implementation.
pub type BlockValidationBox = BlockValidationFfi_TO<'static, RBox<()>>;

// ---------------------------------------------------------------------------------------------
// exec.tx_validation

/// The verdict of the checks that need no state on one transaction.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
        &self, items: RSlice<'_, SigItem<'_>>, next: LowerLayerRef<'_>,
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
        &self, values: RSlice<'_, RSlice<'_, u8>>,
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

impl<T: Merkle> MerkleFfi for Guarded<T> {
    fn roots(&self, trees: RSlice<'_, RSlice<'_, Bytes32>>) -> RResult<RVec<Bytes32>, PluginError> {
        guard(|| check_len(trees.len(), self.0.roots(trees.as_slice())?).map(RVec::from))
    }
}

impl<T: BlockExecution> BlockExecutionFfi for Guarded<T> {
    fn execute_block(
        &self, txs: RSlice<'_, Transaction>, proposer: &Bytes32, state: AccountStoreRef<'_>,
    ) -> RResult<TxResults, PluginError> {
        guard(|| {
            let out = self.0.execute_block(txs.as_slice(), proposer, &state)?;
            check_len(txs.len(), out).map(RVec::from)
        })
    }
}

impl<T: BlockValidation> BlockValidationFfi for Guarded<T> {
    fn check_run(
        &self, head_height: u64, head_hash: &Bytes32, blocks: RSlice<'_, Block>,
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

// ---------------------------------------------------------------------------------------------
// The contract VM: vm.code_loader, vm.metering, vm.module_cache, vm.contract_state
//
// One call, as the host runs it: `vm.code_loader` gives the contract's validated code,
// `vm.metering` rewrites it to charge gas, `vm.module_cache` compiles and runs it, and the
// call's storage reads go through `vm.contract_state`. Each has the host's baseline underneath (read
// and validate on every call; a host call per basic block; compile on every call; every read
// to the store). What a contract may be and what everything costs is `crate::vm` (feature
// `vm`).

/// Where contracts' code is stored, as the host hands it to a `vm.code_loader` provider.
#[sabi_trait]
pub trait CodeSource: Sync {
    /// The code stored for `contract`, if any.
    #[sabi(last_prefix_field)]
    fn code(&self, contract: &Bytes32) -> RResult<ROption<RVec<u8>>, PluginError>;
}

/// A borrowed [`CodeSource`].
pub type CodeSourceRef<'a> = CodeSource_TO<'a, RRef<'a, ()>>;

/// A contract's code, ready to be metered.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum LoadedCode {
    /// The code, which passed `crate::vm::validate_code`.
    Valid(RVec<u8>),
    /// What `crate::vm::validate_code` says is wrong with it.
    Invalid(RString),
    /// Nothing is deployed at the address.
    Missing,
}

/// Contract of `vm.code_loader`: for `contract`, whose stored code hashes (SHA-256) to
/// `code_hash`, the answer the baseline gives: `source.code(contract)`; `Missing` when there
/// is none, else `Valid(code)` if `crate::vm::validate_code` accepts it and
/// `Invalid(its message)` if not. An implementation may answer from a cache keyed by
/// `code_hash` (code at an address can change only by a rollback, and then so does its
/// hash).
pub trait CodeLoader: Send + Sync + 'static {
    /// The code of `contract`, loaded and validated.
    fn load(
        &self, contract: &Bytes32, code_hash: &Bytes32, source: &CodeSourceRef<'_>,
    ) -> Result<LoadedCode, PluginError>;
}

/// FFI form of [`CodeLoader`].
#[sabi_trait]
pub trait CodeLoaderFfi: Send + Sync {
    /// See [`CodeLoader::load`].
    #[sabi(last_prefix_field)]
    fn load(
        &self, contract: &Bytes32, code_hash: &Bytes32, source: CodeSourceRef<'_>,
    ) -> RResult<LoadedCode, PluginError>;
}

/// An owned `vm.code_loader` implementation.
pub type CodeLoaderBox = CodeLoaderFfi_TO<'static, RBox<()>>;

impl<T: CodeLoader> CodeLoaderFfi for Guarded<T> {
    fn load(
        &self, contract: &Bytes32, code_hash: &Bytes32, source: CodeSourceRef<'_>,
    ) -> RResult<LoadedCode, PluginError> {
        guard(|| self.0.load(contract, code_hash, &source))
    }
}

/// How metered code counts gas.
#[repr(u8)]
#[derive(
    StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum GasCounter {
    /// The code imports `env.gas: (i64) -> ()` and calls it with each segment's cost; the
    /// host deducts it, and traps when less is left.
    HostCall,
    /// The code exports a mutable `i64` global named `crate::vm::GAS_GLOBAL` holding the gas
    /// left: the host sets it before the call and reads it after, and its storage functions
    /// charge it. When a segment costs more than is left, the code sets it to -1 and traps
    /// (`unreachable`); a trap with the global at -1 is running out of gas.
    Global,
}

/// Code rewritten by `vm.metering`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Metered {
    /// The rewritten module.
    pub wasm: RVec<u8>,
    /// How it counts gas.
    pub counter: GasCounter,
}

/// Contract of `vm.metering`: rewrite valid contract code so that, run by the host, every
/// call uses exactly the gas the schedule in `crate::vm` says (segment costs charged at
/// segment starts, storage costs at the host calls) and runs out of gas at exactly the
/// same point, with the same results and writes, as the baseline's host-call rewrite.
pub trait Metering: Send + Sync + 'static {
    /// `code` (valid), metered.
    fn instrument(&self, code: &[u8]) -> Result<Metered, PluginError>;
}

/// FFI form of [`Metering`].
#[sabi_trait]
pub trait MeteringFfi: Send + Sync {
    /// See [`Metering::instrument`].
    #[sabi(last_prefix_field)]
    fn instrument(&self, code: RSlice<'_, u8>) -> RResult<Metered, PluginError>;
}

/// An owned `vm.metering` implementation.
pub type MeteringBox = MeteringFfi_TO<'static, RBox<()>>;

impl<T: Metering> MeteringFfi for Guarded<T> {
    fn instrument(&self, code: RSlice<'_, u8>) -> RResult<Metered, PluginError> {
        guard(|| self.0.instrument(code.as_slice()))
    }
}

/// Contract storage as a call sees it (the host's store, through `vm.contract_state`).
#[sabi_trait]
pub trait ContractStore: Sync {
    /// The value under `key` in `contract`'s storage; 0 when absent.
    #[sabi(last_prefix_field)]
    fn get(&self, contract: &Bytes32, key: i64) -> RResult<i64, PluginError>;
}

/// A borrowed [`ContractStore`].
pub type ContractStoreRef<'a> = ContractStore_TO<'a, RRef<'a, ()>>;

/// One contract call on metered code.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct CallRequest<'a> {
    /// SHA-256 of `wasm`: the key of whatever is compiled from it.
    pub key: Bytes32,
    /// The metered module.
    pub wasm: RSlice<'a, u8>,
    /// How `wasm` counts gas.
    pub counter: GasCounter,
    /// The contract called (whose storage it sees).
    pub contract: Bytes32,
    /// The argument of `call`.
    pub input: i64,
    /// Gas the call may use.
    pub gas: u64,
}

/// A storage write of a call.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageWrite {
    /// The key.
    pub key: i64,
    /// The value written last (0 deletes).
    pub value: i64,
}

/// How a call ended.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum CallEnd {
    /// `call` returned `value`; `writes` are the last value written per key, in key order.
    Returned {
        /// `call`'s result.
        value: i64,
        /// The writes to apply.
        writes: RVec<StorageWrite>,
    },
    /// The gas ran out (all of it is used).
    OutOfGas,
    /// A trap; the text is wasmtime's trap message (part of receipts).
    Trap(RString),
    /// The code did not compile or instantiate.
    Invalid(RString),
}

/// What a call did.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// Gas used, at most the request's.
    pub gas_used: u64,
    /// How it ended.
    pub end: CallEnd,
}

/// Contract of `vm.module_cache`: run `request` as the host's baseline does (compile the
/// module under the engine settings of `crate::vm`, instantiate it with the storage
/// functions of `crate::vm` over `storage`, charge gas as `request.counter` says, run
/// `call(input)`), with the same result, writes, gas used and trap texts. An
/// implementation may reuse what it compiled for `request.key` and keep instances pooled.
/// A failing `storage` read must fail the call (an error, not a trap): the host then runs
/// it itself.
pub trait ModuleCache: Send + Sync + 'static {
    /// Runs one call.
    fn run(
        &self, request: &CallRequest<'_>, storage: &ContractStoreRef<'_>,
    ) -> Result<CallResult, PluginError>;
}

/// FFI form of [`ModuleCache`].
#[sabi_trait]
pub trait ModuleCacheFfi: Send + Sync {
    /// See [`ModuleCache::run`].
    #[sabi(last_prefix_field)]
    fn run(
        &self, request: &CallRequest<'_>, storage: ContractStoreRef<'_>,
    ) -> RResult<CallResult, PluginError>;
}

/// An owned `vm.module_cache` implementation.
pub type ModuleCacheBox = ModuleCacheFfi_TO<'static, RBox<()>>;

impl<T: ModuleCache> ModuleCacheFfi for Guarded<T> {
    fn run(
        &self, request: &CallRequest<'_>, storage: ContractStoreRef<'_>,
    ) -> RResult<CallResult, PluginError> {
        guard(|| {
            let out = self.0.run(request, &storage)?;
            if out.gas_used > request.gas {
                return Err(PluginError::failed(format!(
                    "plugin used {} gas of the {} given",
                    out.gas_used, request.gas
                )));
            }
            Ok(out)
        })
    }
}

/// A contract storage value the host wrote (`vm.contract_state` notifications).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContractWrite {
    /// The contract.
    pub contract: Bytes32,
    /// The key.
    pub key: i64,
    /// The new value (0: deleted).
    pub value: i64,
}

impl ContractWrite {
    /// The writes of one call of `contract`, given as `(key, value)`.
    pub fn of(contract: Bytes32, writes: &[(i64, i64)]) -> Vec<ContractWrite> {
        writes
            .iter()
            .map(|&(key, value)| ContractWrite {
                contract,
                key,
                value,
            })
            .collect()
    }
}

/// Contract of `vm.contract_state`: `get` answers what `below` (the store) holds for the key of
/// state store `store` at that moment. The host tells it of everything that changes a
/// store: every contract storage write as it is applied (`written`), and every rollback
/// (`reset`: forget what is known of `store`). An implementation may answer from a cache
/// kept coherent by these; stores are told apart by `store` (several nodes may share a
/// process).
pub trait ContractState: Send + Sync + 'static {
    /// The value under `key` in `contract`'s storage in state store `store`.
    fn get(
        &self, store: u64, contract: &Bytes32, key: i64, below: &ContractStoreRef<'_>,
    ) -> Result<i64, PluginError>;
    /// `writes` were applied to state store `store`.
    fn written(&self, store: u64, writes: &[ContractWrite]) -> Result<(), PluginError>;
    /// State store `store` was rolled back (or closed): nothing known of it holds.
    fn reset(&self, store: u64) -> Result<(), PluginError>;
}

/// FFI form of [`ContractState`].
#[sabi_trait]
pub trait ContractStateFfi: Send + Sync {
    /// See [`ContractState::get`].
    fn get(
        &self, store: u64, contract: &Bytes32, key: i64, below: ContractStoreRef<'_>,
    ) -> RResult<i64, PluginError>;
    /// See [`ContractState::written`].
    fn written(&self, store: u64, writes: RSlice<'_, ContractWrite>) -> RResult<(), PluginError>;
    /// See [`ContractState::reset`].
    #[sabi(last_prefix_field)]
    fn reset(&self, store: u64) -> RResult<(), PluginError>;
}

/// An owned `vm.contract_state` implementation.
pub type ContractStateBox = ContractStateFfi_TO<'static, RBox<()>>;

impl<T: ContractState> ContractStateFfi for Guarded<T> {
    fn get(
        &self, store: u64, contract: &Bytes32, key: i64, below: ContractStoreRef<'_>,
    ) -> RResult<i64, PluginError> {
        guard(|| self.0.get(store, contract, key, &below))
    }
    fn written(&self, store: u64, writes: RSlice<'_, ContractWrite>) -> RResult<(), PluginError> {
        guard(|| self.0.written(store, writes.as_slice()))
    }
    fn reset(&self, store: u64) -> RResult<(), PluginError> {
        guard(|| self.0.reset(store))
    }
}

/// Host side: presents a Rust closure as a [`ContractStoreRef`] or a [`CodeSourceRef`].
pub struct HostFn<F>(pub F);

impl<F> ContractStore for HostFn<F>
where
    F: Fn(&Bytes32, i64) -> Result<i64, PluginError> + Sync,
{
    fn get(&self, contract: &Bytes32, key: i64) -> RResult<i64, PluginError> {
        guard(|| (self.0)(contract, key))
    }
}

impl<F> HostFn<F>
where
    F: Fn(&Bytes32, i64) -> Result<i64, PluginError> + Sync,
{
    /// Borrows this closure as a [`ContractStoreRef`].
    pub fn as_store(&self) -> ContractStoreRef<'_> {
        ContractStore_TO::from_ptr(RRef::new(self), abi_stable::sabi_trait::TD_Opaque)
    }
}

/// Host side: presents a Rust closure as a [`CodeSourceRef`].
pub struct HostCode<F>(pub F);

impl<F> CodeSource for HostCode<F>
where
    F: Fn(&Bytes32) -> Result<Option<Vec<u8>>, PluginError> + Sync,
{
    fn code(&self, contract: &Bytes32) -> RResult<ROption<RVec<u8>>, PluginError> {
        guard(|| (self.0)(contract).map(|c| c.map(RVec::from).into()))
    }
}

impl<F> HostCode<F>
where
    F: Fn(&Bytes32) -> Result<Option<Vec<u8>>, PluginError> + Sync,
{
    /// Borrows this closure as a [`CodeSourceRef`].
    pub fn as_source(&self) -> CodeSourceRef<'_> {
        CodeSource_TO::from_ptr(RRef::new(self), abi_stable::sabi_trait::TD_Opaque)
    }
}

// ---------------------------------------------------------------------------------------------
// mem.block_reclaim

/// Contract of `mem.block_reclaim`: take ownership of `blocks`, which the node will not
/// touch again, free them (now or later, on any thread), and return promptly. The
/// baseline drops them on the spot, on the node's hot path.
pub trait BlockReclaim: Send + Sync + 'static {
    /// Takes `blocks`.
    fn reclaim(&self, blocks: RVec<Block>) -> Result<(), PluginError>;
}

/// FFI form of [`BlockReclaim`].
#[sabi_trait]
pub trait BlockReclaimFfi: Send + Sync {
    /// See [`BlockReclaim::reclaim`].
    #[sabi(last_prefix_field)]
    fn reclaim(&self, blocks: RVec<Block>) -> RResult<(), PluginError>;
}

/// An owned `mem.block_reclaim` implementation.
pub type BlockReclaimBox = BlockReclaimFfi_TO<'static, RBox<()>>;

impl<T: BlockReclaim> BlockReclaimFfi for Guarded<T> {
    fn reclaim(&self, blocks: RVec<Block>) -> RResult<(), PluginError> {
        guard(|| self.0.reclaim(blocks))
    }
}

// ---------------------------------------------------------------------------------------------
// mem.buffer_pool

/// Contract of `mem.buffer_pool`: `take(n)` gives an empty buffer (length 0) with capacity
/// at least `n`; `give(b)` hands back a buffer the host is done with (any length, any
/// contents: the pool decides what to keep, and must bound what it keeps). The baseline
/// allocates a fresh buffer every time and frees it after use.
pub trait BufferPool: Send + Sync + 'static {
    /// An empty buffer with room for `capacity` bytes.
    fn take(&self, capacity: usize) -> Result<RVec<u8>, PluginError>;
    /// A buffer back.
    fn give(&self, buffer: RVec<u8>) -> Result<(), PluginError>;
}

/// FFI form of [`BufferPool`].
#[sabi_trait]
pub trait BufferPoolFfi: Send + Sync {
    /// See [`BufferPool::take`].
    fn take(&self, capacity: u64) -> RResult<RVec<u8>, PluginError>;
    /// See [`BufferPool::give`].
    #[sabi(last_prefix_field)]
    fn give(&self, buffer: RVec<u8>) -> RResult<(), PluginError>;
}

/// An owned `mem.buffer_pool` implementation.
pub type BufferPoolBox = BufferPoolFfi_TO<'static, RBox<()>>;

impl<T: BufferPool> BufferPoolFfi for Guarded<T> {
    fn take(&self, capacity: u64) -> RResult<RVec<u8>, PluginError> {
        guard(|| {
            let capacity = usize::try_from(capacity)
                .map_err(|_| PluginError::failed("capacity beyond the address space"))?;
            check_buffer(self.0.take(capacity)?, capacity)
        })
    }
    fn give(&self, buffer: RVec<u8>) -> RResult<(), PluginError> {
        guard(|| self.0.give(buffer))
    }
}

// ---------------------------------------------------------------------------------------------
// net.frame_send

/// A peer's connection, as the host hands it to a `net.frame_send` provider. Each call writes
/// all of its bytes or fails; the host counts what was written.
#[sabi_trait]
pub trait FrameSink: Sync {
    /// Writes `bytes` (one write system call where the socket allows).
    fn write(&self, bytes: RSlice<'_, u8>) -> RResult<(), PluginError>;
    /// Writes `parts` back to back (vectored).
    #[sabi(last_prefix_field)]
    fn write_vectored(&self, parts: RSlice<'_, RSlice<'_, u8>>) -> RResult<(), PluginError>;
}

/// A borrowed [`FrameSink`].
pub type FrameSinkRef<'a> = FrameSink_TO<'a, RRef<'a, ()>>;

/// Contract of `net.frame_send`: write `frames` to `sink` so that the peer reads exactly their
/// bytes, in order (how many writes, and how they are grouped, is the provider's choice).
/// On an error the host finishes the stream itself from what the sink took. The baseline
/// makes one write per frame.
pub trait FrameSend: Send + Sync + 'static {
    /// Writes `frames`.
    fn send(&self, frames: &[RSlice<'_, u8>], sink: &FrameSinkRef<'_>) -> Result<(), PluginError>;
}

/// FFI form of [`FrameSend`].
#[sabi_trait]
pub trait FrameSendFfi: Send + Sync {
    /// See [`FrameSend::send`].
    #[sabi(last_prefix_field)]
    fn send(
        &self, frames: RSlice<'_, RSlice<'_, u8>>, sink: FrameSinkRef<'_>,
    ) -> RResult<(), PluginError>;
}

/// An owned `net.frame_send` implementation.
pub type FrameSendBox = FrameSendFfi_TO<'static, RBox<()>>;

impl<T: FrameSend> FrameSendFfi for Guarded<T> {
    fn send(
        &self, frames: RSlice<'_, RSlice<'_, u8>>, sink: FrameSinkRef<'_>,
    ) -> RResult<(), PluginError> {
        guard(|| self.0.send(frames.as_slice(), &sink))
    }
}

// ---------------------------------------------------------------------------------------------
// mempool.tx_pool

/// A pending transaction, as the pool index sees it.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolEntry {
    /// The transaction's hash ([`crate::chain::tx_hash`]): its identity.
    pub hash: Bytes32,
    /// Its sender.
    pub sender: Bytes32,
    /// Its nonce.
    pub nonce: u64,
    /// Its fee.
    pub fee: u64,
}

/// Each sender's next nonce in the committed state, as the host hands it to an index.
#[sabi_trait]
pub trait NonceSource: Sync {
    /// The nonce `sender`'s next transaction must carry.
    #[sabi(last_prefix_field)]
    fn next_nonce(&self, sender: &Bytes32) -> RResult<u64, PluginError>;
}

/// A borrowed [`NonceSource`].
pub type NonceSourceRef<'a> = NonceSource_TO<'a, RRef<'a, ()>>;

/// One mempool's index of pending transactions (see [`TxPool`]).
///
/// * `insert`: one verdict per entry, in order: `true` if kept, `false` if an entry with
///   the same hash is pending (including one earlier in the same batch).
/// * `select(max)`: up to `max` hashes, chosen again and again as the pending entry with
///   the highest fee (ties: the smallest hash) among those whose nonce is the next of their
///   sender, starting from `nonces` and counting the ones already chosen. Selected entries
///   stay pending.
/// * `remove(included)`: drops those hashes, and every entry whose nonce is below its
///   sender's next nonce in `nonces`; answers every hash it dropped (any order).
/// * `len`: how many are pending.
pub trait TxIndex: Send + 'static {
    /// See the trait docs.
    fn insert(&mut self, entries: &[PoolEntry]) -> Result<Vec<bool>, PluginError>;
    /// See the trait docs.
    fn select(
        &mut self, max: u64, nonces: &NonceSourceRef<'_>,
    ) -> Result<Vec<Bytes32>, PluginError>;
    /// See the trait docs.
    fn remove(
        &mut self, included: &[Bytes32], nonces: &NonceSourceRef<'_>,
    ) -> Result<Vec<Bytes32>, PluginError>;
    /// See the trait docs.
    fn len(&self) -> Result<u64, PluginError>;
    /// Whether nothing is pending.
    fn is_empty(&self) -> Result<bool, PluginError> {
        Ok(self.len()? == 0)
    }
}

/// FFI form of [`TxIndex`].
#[sabi_trait]
pub trait TxIndexFfi: Send {
    /// See [`TxIndex`].
    fn insert(&mut self, entries: RSlice<'_, PoolEntry>) -> RResult<RVec<bool>, PluginError>;
    /// See [`TxIndex`].
    fn select(
        &mut self, max: u64, nonces: NonceSourceRef<'_>,
    ) -> RResult<RVec<Bytes32>, PluginError>;
    /// See [`TxIndex`].
    fn remove(
        &mut self, included: RSlice<'_, Bytes32>, nonces: NonceSourceRef<'_>,
    ) -> RResult<RVec<Bytes32>, PluginError>;
    /// See [`TxIndex`].
    #[sabi(last_prefix_field)]
    fn len(&self) -> RResult<u64, PluginError>;
}

/// An owned index.
pub type TxIndexBox = TxIndexFfi_TO<'static, RBox<()>>;

impl<T: TxIndex> TxIndexFfi for Guarded<T> {
    fn insert(&mut self, entries: RSlice<'_, PoolEntry>) -> RResult<RVec<bool>, PluginError> {
        guard(|| check_len(entries.len(), self.0.insert(entries.as_slice())?).map(RVec::from))
    }
    fn select(
        &mut self, max: u64, nonces: NonceSourceRef<'_>,
    ) -> RResult<RVec<Bytes32>, PluginError> {
        guard(|| {
            let out = self.0.select(max, &nonces)?;
            if out.len() as u64 > max {
                return Err(PluginError::failed(format!(
                    "index selected {} for a maximum of {max}",
                    out.len()
                )));
            }
            Ok(out.into())
        })
    }
    fn remove(
        &mut self, included: RSlice<'_, Bytes32>, nonces: NonceSourceRef<'_>,
    ) -> RResult<RVec<Bytes32>, PluginError> {
        guard(|| self.0.remove(included.as_slice(), &nonces).map(RVec::from))
    }
    fn len(&self) -> RResult<u64, PluginError> {
        guard(|| self.0.len())
    }
}

/// Contract of `mempool.tx_pool`: a factory of [`TxIndex`]es, one per mempool, each behaving
/// exactly as the baseline's `Vec` with linear scans (the same verdicts, selections and
/// removals for the same calls).
pub trait TxPool: Send + Sync + 'static {
    /// The index type.
    type Index: TxIndex;
    /// A new, empty index.
    fn new_index(&self) -> Result<Self::Index, PluginError>;
}

/// FFI form of [`TxPool`].
#[sabi_trait]
pub trait TxPoolFfi: Send + Sync {
    /// See [`TxPool::new_index`].
    #[sabi(last_prefix_field)]
    fn new_index(&self) -> RResult<TxIndexBox, PluginError>;
}

/// An owned `mempool.tx_pool` implementation.
pub type TxPoolBox = TxPoolFfi_TO<'static, RBox<()>>;

impl<T: TxPool> TxPoolFfi for Guarded<T> {
    fn new_index(&self) -> RResult<TxIndexBox, PluginError> {
        guard(|| {
            Ok(TxIndexFfi_TO::from_value(
                Guarded(self.0.new_index()?),
                abi_stable::sabi_trait::TD_Opaque,
            ))
        })
    }
}

/// Host side: presents a Rust closure as a [`NonceSourceRef`].
pub struct HostNonces<F>(pub F);

impl<F> NonceSource for HostNonces<F>
where
    F: Fn(&Bytes32) -> Result<u64, PluginError> + Sync,
{
    fn next_nonce(&self, sender: &Bytes32) -> RResult<u64, PluginError> {
        guard(|| (self.0)(sender))
    }
}

impl<F> HostNonces<F>
where
    F: Fn(&Bytes32) -> Result<u64, PluginError> + Sync,
{
    /// Borrows this closure as a [`NonceSourceRef`].
    pub fn as_source(&self) -> NonceSourceRef<'_> {
        NonceSource_TO::from_ptr(RRef::new(self), abi_stable::sabi_trait::TD_Opaque)
    }
}

// ---------------------------------------------------------------------------------------------
// consensus.vote_tally

/// One consensus state (see [`VoteTallies`]): called from any number of threads at once.
///
/// * `record(height, block, validator)`: counts a verified vote. Only a validator's first
///   vote at a height counts (later ones, for any block, change nothing). The vote adds
///   the validator's stake to `(height, block)`; if that reaches two thirds of the total
///   stake (`3 * tally >= 2 * total`) and `height` is above the finalized height, `height`
///   becomes the finalized height and is returned; otherwise `None`.
/// * `finalized()`: the finalized height (0 at first).
///
/// Concurrent calls must be linearizable: their results are those of the baseline (one
/// `Mutex` around the whole state) for some order of the same calls.
pub trait VoteTally: Send + Sync + 'static {
    /// See the trait docs.
    fn record(
        &self, height: u64, block: &Bytes32, validator: u32,
    ) -> Result<Option<u64>, PluginError>;
    /// See the trait docs.
    fn finalized(&self) -> Result<u64, PluginError>;
}

/// FFI form of [`VoteTally`].
#[sabi_trait]
pub trait VoteTallyFfi: Send + Sync {
    /// See [`VoteTally`].
    fn record(
        &self, height: u64, block: &Bytes32, validator: u32,
    ) -> RResult<ROption<u64>, PluginError>;
    /// See [`VoteTally`].
    #[sabi(last_prefix_field)]
    fn finalized(&self) -> RResult<u64, PluginError>;
}

/// An owned consensus state.
pub type VoteTallyBox = VoteTallyFfi_TO<'static, RBox<()>>;

impl<T: VoteTally> VoteTallyFfi for Guarded<T> {
    fn record(
        &self, height: u64, block: &Bytes32, validator: u32,
    ) -> RResult<ROption<u64>, PluginError> {
        guard(|| self.0.record(height, block, validator).map(ROption::from))
    }
    fn finalized(&self) -> RResult<u64, PluginError> {
        guard(|| self.0.finalized())
    }
}

/// Contract of `consensus.vote_tally`: a factory of [`VoteTally`]s, one per node, for a
/// validator set whose stakes are `stakes` (validator `i` has `stakes[i]`; a vote names
/// its validator by index and is only recorded for a known one).
pub trait VoteTallies: Send + Sync + 'static {
    /// The state type.
    type Tally: VoteTally;
    /// A new state, nothing recorded.
    fn new_tally(&self, stakes: &[u64]) -> Result<Self::Tally, PluginError>;
}

/// FFI form of [`VoteTallies`].
#[sabi_trait]
pub trait VoteTalliesFfi: Send + Sync {
    /// See [`VoteTallies::new_tally`].
    #[sabi(last_prefix_field)]
    fn new_tally(&self, stakes: RSlice<'_, u64>) -> RResult<VoteTallyBox, PluginError>;
}

/// An owned `consensus.vote_tally` implementation.
pub type VoteTalliesBox = VoteTalliesFfi_TO<'static, RBox<()>>;

impl<T: VoteTallies> VoteTalliesFfi for Guarded<T> {
    fn new_tally(&self, stakes: RSlice<'_, u64>) -> RResult<VoteTallyBox, PluginError> {
        guard(|| {
            Ok(VoteTallyFfi_TO::from_value(
                Guarded(self.0.new_tally(stakes.as_slice())?),
                abi_stable::sabi_trait::TD_Opaque,
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// mem.tx_decode

/// Contract of `mem.tx_decode`: for each payload, the transaction
/// `serde_json::from_slice::<Transaction>` reads from it (the JSON the baseline writes:
/// hex byte strings in either case, unknown fields refused), or an error exactly when
/// serde_json gives one (the text is the provider's). The baseline decodes with serde_json,
/// every field into an allocation of its own.
pub trait TxDecode: Send + Sync + 'static {
    /// One answer per payload, in order.
    fn decode(
        &self, payloads: &[RSlice<'_, u8>],
    ) -> Result<Vec<Result<Transaction, String>>, PluginError>;
}

/// FFI form of [`TxDecode`].
#[sabi_trait]
pub trait TxDecodeFfi: Send + Sync {
    /// See [`TxDecode::decode`].
    #[sabi(last_prefix_field)]
    fn decode(
        &self, payloads: RSlice<'_, RSlice<'_, u8>>,
    ) -> RResult<RVec<RResult<Transaction, RString>>, PluginError>;
}

/// An owned `mem.tx_decode` implementation.
pub type TxDecodeBox = TxDecodeFfi_TO<'static, RBox<()>>;

impl<T: TxDecode> TxDecodeFfi for Guarded<T> {
    fn decode(
        &self, payloads: RSlice<'_, RSlice<'_, u8>>,
    ) -> RResult<RVec<RResult<Transaction, RString>>, PluginError> {
        guard(|| {
            let out = check_len(payloads.len(), self.0.decode(payloads.as_slice())?)?;
            Ok(out
                .into_iter()
                .map(|r| r.map_err(RString::from).into())
                .collect())
        })
    }
}

// ---------------------------------------------------------------------------------------------
// storage.account_read

/// A state store's accounts, as the host hands them to a `storage.account_read` provider.
#[sabi_trait]
pub trait AccountSource: Sync {
    /// Writes the stored state of `accounts[i]` (default when absent), read from the store,
    /// to `out[i]`; the two are equally long (else an error).
    #[sabi(last_prefix_field)]
    fn get(
        &self, accounts: RSlice<'_, Bytes32>, out: RSliceMut<'_, AccountState>,
    ) -> RResult<(), PluginError>;
}

/// A borrowed [`AccountSource`].
pub type AccountSourceRef<'a> = AccountSource_TO<'a, RRef<'a, ()>>;

/// Contract of `storage.account_read`: `get` writes to `out[i]`, for each of `accounts[i]`,
/// what `below` (the store) holds for it in state store `store` at that moment. The host
/// tells it of every account it writes (`written`, right after the write) and of every
/// rollback (`reset`; the store then also takes a new identity, so nothing known of the old
/// one may be served). An implementation may answer from caches kept coherent by these, told
/// apart by `store`. The baseline reads RocksDB and decodes the record every time.
///
/// The answer goes into a buffer the host lends (`out`, as long as `accounts`), so a read
/// allocates nothing at the seam: the node reads one account at a time, and a forwarding
/// provider costs two boundary crossings and nothing else.
pub trait AccountRead: Send + Sync + 'static {
    /// The state of each of `accounts` in store `store`, written to `out`.
    fn get(
        &self, store: u64, accounts: &[Bytes32], out: &mut [AccountState],
        below: &AccountSourceRef<'_>,
    ) -> Result<(), PluginError>;
    /// `writes` were applied to store `store`.
    fn written(&self, store: u64, writes: &[AccountEntry]) -> Result<(), PluginError>;
    /// Store `store` was rolled back: nothing known of it holds.
    fn reset(&self, store: u64) -> Result<(), PluginError>;
}

/// FFI form of [`AccountRead`].
#[sabi_trait]
pub trait AccountReadFfi: Send + Sync {
    /// See [`AccountRead::get`].
    fn get(
        &self, store: u64, accounts: RSlice<'_, Bytes32>, out: RSliceMut<'_, AccountState>,
        below: AccountSourceRef<'_>,
    ) -> RResult<(), PluginError>;
    /// See [`AccountRead::written`].
    fn written(&self, store: u64, writes: RSlice<'_, AccountEntry>) -> RResult<(), PluginError>;
    /// See [`AccountRead::reset`].
    #[sabi(last_prefix_field)]
    fn reset(&self, store: u64) -> RResult<(), PluginError>;
}

/// An owned `storage.account_read` implementation.
pub type AccountReadBox = AccountReadFfi_TO<'static, RBox<()>>;

/// `Ok` when an answer buffer fits its question.
fn check_out_len(accounts: usize, out: usize) -> Result<(), PluginError> {
    if accounts == out {
        Ok(())
    } else {
        Err(PluginError::failed(format!(
            "an answer buffer of {out} entries for {accounts} accounts"
        )))
    }
}

impl<T: AccountRead> AccountReadFfi for Guarded<T> {
    fn get(
        &self, store: u64, accounts: RSlice<'_, Bytes32>, mut out: RSliceMut<'_, AccountState>,
        below: AccountSourceRef<'_>,
    ) -> RResult<(), PluginError> {
        guard(|| {
            check_out_len(accounts.len(), out.len())?;
            self.0
                .get(store, accounts.as_slice(), out.as_mut_slice(), &below)
        })
    }
    fn written(&self, store: u64, writes: RSlice<'_, AccountEntry>) -> RResult<(), PluginError> {
        guard(|| self.0.written(store, writes.as_slice()))
    }
    fn reset(&self, store: u64) -> RResult<(), PluginError> {
        guard(|| self.0.reset(store))
    }
}

/// Host side: presents a Rust closure as an [`AccountSourceRef`]. A call whose two slices
/// differ in length (the plugin's mistake) is refused before the closure sees it.
pub struct HostAccounts<F>(pub F);

impl<F> AccountSource for HostAccounts<F>
where
    F: Fn(&[Bytes32], &mut [AccountState]) -> Result<(), PluginError> + Sync,
{
    fn get(
        &self, accounts: RSlice<'_, Bytes32>, mut out: RSliceMut<'_, AccountState>,
    ) -> RResult<(), PluginError> {
        guard(|| {
            check_out_len(accounts.len(), out.len())?;
            (self.0)(accounts.as_slice(), out.as_mut_slice())
        })
    }
}

impl<F> HostAccounts<F>
where
    F: Fn(&[Bytes32], &mut [AccountState]) -> Result<(), PluginError> + Sync,
{
    /// Borrows this closure as an [`AccountSourceRef`].
    pub fn as_source(&self) -> AccountSourceRef<'_> {
        AccountSource_TO::from_ptr(RRef::new(self), abi_stable::sabi_trait::TD_Opaque)
    }
}

// ---------------------------------------------------------------------------------------------
// storage.durability

/// A state store's write-ahead log, as the host hands it to a `storage.durability` provider.
#[sabi_trait]
pub trait WalSync: Sync {
    /// Writes the log out and fsyncs it: everything written before this call began is
    /// durable when it returns.
    #[sabi(last_prefix_field)]
    fn sync(&self) -> RResult<(), PluginError>;
}

/// A borrowed [`WalSync`].
pub type WalSyncRef<'a> = WalSync_TO<'a, RRef<'a, ()>>;

/// Contract of `storage.durability`: `make_durable(store, wal)` returns `Ok` only once a
/// `wal.sync()` that *began after this call began* has completed (so every write made
/// before the call is on disk), and an error if it cannot promise that. Calls come from
/// many threads at once, for stores told apart by `store` (a sync of one store's log does
/// nothing for another's); any of the callers' `wal` objects for the same store may be
/// used. The baseline syncs the log itself, once per call (an fsync per commit).
pub trait Durability: Send + Sync + 'static {
    /// See the trait docs.
    fn make_durable(&self, store: u64, wal: &WalSyncRef<'_>) -> Result<(), PluginError>;
}

/// FFI form of [`Durability`].
#[sabi_trait]
pub trait DurabilityFfi: Send + Sync {
    /// See [`Durability::make_durable`].
    #[sabi(last_prefix_field)]
    fn make_durable(&self, store: u64, wal: WalSyncRef<'_>) -> RResult<(), PluginError>;
}

/// An owned `storage.durability` implementation.
pub type DurabilityBox = DurabilityFfi_TO<'static, RBox<()>>;

impl<T: Durability> DurabilityFfi for Guarded<T> {
    fn make_durable(&self, store: u64, wal: WalSyncRef<'_>) -> RResult<(), PluginError> {
        guard(|| self.0.make_durable(store, &wal))
    }
}

/// Host side: presents a Rust closure as a [`WalSyncRef`].
pub struct HostWal<F>(pub F);

impl<F> WalSync for HostWal<F>
where
    F: Fn() -> Result<(), PluginError> + Sync,
{
    fn sync(&self) -> RResult<(), PluginError> {
        guard(|| (self.0)())
    }
}

impl<F> HostWal<F>
where
    F: Fn() -> Result<(), PluginError> + Sync,
{
    /// Borrows this closure as a [`WalSyncRef`].
    pub fn as_wal(&self) -> WalSyncRef<'_> {
        WalSync_TO::from_ptr(RRef::new(self), abi_stable::sabi_trait::TD_Opaque)
    }
}

// ---------------------------------------------------------------------------------------------
// net.broadcast

/// A frame that several peers' sends may share.
pub type SharedFrame = abi_stable::std_types::RArc<RVec<u8>>;

/// Contract of `net.broadcast`: for `msgs` going to `peers` peers, one list of frames per
/// peer, each with one frame per message, in order, each frame byte for byte
/// [`crate::wire::frame`] of its message. Lists may share frames (the host only reads
/// them). The baseline serialises and copies every message once per peer.
pub trait Broadcast: Send + Sync + 'static {
    /// See the trait docs.
    fn frames(
        &self, msgs: &[crate::wire::Message], peers: u32,
    ) -> Result<Vec<Vec<SharedFrame>>, PluginError>;
}

/// FFI form of [`Broadcast`].
#[sabi_trait]
pub trait BroadcastFfi: Send + Sync {
    /// See [`Broadcast::frames`].
    #[sabi(last_prefix_field)]
    fn frames(
        &self, msgs: RSlice<'_, crate::wire::Message>, peers: u32,
    ) -> RResult<RVec<RVec<SharedFrame>>, PluginError>;
}

/// An owned `net.broadcast` implementation.
pub type BroadcastBox = BroadcastFfi_TO<'static, RBox<()>>;

impl<T: Broadcast> BroadcastFfi for Guarded<T> {
    fn frames(
        &self, msgs: RSlice<'_, crate::wire::Message>, peers: u32,
    ) -> RResult<RVec<RVec<SharedFrame>>, PluginError> {
        guard(|| {
            let lists = check_len(peers as usize, self.0.frames(msgs.as_slice(), peers)?)?;
            lists
                .into_iter()
                .map(|l| check_len(msgs.len(), l).map(RVec::from))
                .collect::<Result<Vec<_>, _>>()
                .map(RVec::from)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// net.send_queue

/// What a frame carries, for a send queue's priorities.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrafficClass {
    /// Blocks and votes: never dropped.
    Consensus,
    /// Transaction gossip: may be dropped under pressure.
    Gossip,
}

/// A frame waiting to be sent to a peer.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct Outgoing {
    /// Its class.
    pub class: TrafficClass,
    /// Its bytes (possibly shared with other peers' queues).
    pub frame: SharedFrame,
}

/// What a pop found.
#[repr(C, u8)]
#[derive(StableAbi, Debug)]
pub enum Popped {
    /// Frames to write now, in the order to write them.
    Frames(RVec<Outgoing>),
    /// Nothing arrived within the wait.
    Idle,
    /// The queue was closed and everything in it has been popped.
    Closed,
}

impl Popped {
    /// What a pop that took `frames` answers: the frames; where there were none, `Closed` if
    /// the queue is closed and `Idle` if not.
    pub fn of(frames: Vec<Outgoing>, closed: bool) -> Popped {
        match (frames.is_empty(), closed) {
            (false, _) => Popped::Frames(frames.into()),
            (true, true) => Popped::Closed,
            (true, false) => Popped::Idle,
        }
    }
}

/// One peer's queue of outgoing frames (see [`SendQueues`]); pushed by the node, popped by
/// the peer's writer thread.
///
/// * `push(frames)` queues them; answers how many gossip frames were dropped (now or from
///   what was queued) to make room. Consensus frames are never dropped.
/// * `pop(max, wait_ms)`: up to `max` frames, waiting up to `wait_ms` for the first.
///   Frames of one class leave in the order pushed (consensus may overtake gossip).
/// * `written(bytes, micros)`: the writer wrote that much in that time (for adaptive
///   windows).
/// * `close()`: no more pushes; pops drain what is queued, then answer `Closed`.
pub trait SendQueue: Send + Sync + 'static {
    /// See the trait docs.
    fn push(&self, frames: Vec<Outgoing>) -> Result<u64, PluginError>;
    /// See the trait docs.
    fn pop(&self, max: u64, wait_ms: u64) -> Result<Popped, PluginError>;
    /// See the trait docs.
    fn written(&self, bytes: u64, micros: u64) -> Result<(), PluginError>;
    /// See the trait docs.
    fn close(&self) -> Result<(), PluginError>;
}

/// FFI form of [`SendQueue`].
#[sabi_trait]
pub trait SendQueueFfi: Send + Sync {
    /// See [`SendQueue`].
    fn push(&self, frames: RVec<Outgoing>) -> RResult<u64, PluginError>;
    /// See [`SendQueue`].
    fn pop(&self, max: u64, wait_ms: u64) -> RResult<Popped, PluginError>;
    /// See [`SendQueue`].
    fn written(&self, bytes: u64, micros: u64) -> RResult<(), PluginError>;
    /// See [`SendQueue`].
    #[sabi(last_prefix_field)]
    fn close(&self) -> RResult<(), PluginError>;
}

/// An owned send queue.
pub type SendQueueBox = SendQueueFfi_TO<'static, RBox<()>>;

impl<T: SendQueue> SendQueueFfi for Guarded<T> {
    fn push(&self, frames: RVec<Outgoing>) -> RResult<u64, PluginError> {
        guard(|| self.0.push(frames.into_vec()))
    }
    fn pop(&self, max: u64, wait_ms: u64) -> RResult<Popped, PluginError> {
        guard(|| self.0.pop(max, wait_ms))
    }
    fn written(&self, bytes: u64, micros: u64) -> RResult<(), PluginError> {
        guard(|| self.0.written(bytes, micros))
    }
    fn close(&self) -> RResult<(), PluginError> {
        guard(|| self.0.close())
    }
}

/// Contract of `net.send_queue`: a factory of [`SendQueue`]s, one per peer connection.
/// The baseline's queues are unbounded FIFOs: nothing is ever dropped, and a slow peer's
/// queue grows without limit.
pub trait SendQueues: Send + Sync + 'static {
    /// The queue type.
    type Queue: SendQueue;
    /// A new, open, empty queue for peer `peer`.
    fn new_queue(&self, peer: u32) -> Result<Self::Queue, PluginError>;
}

/// FFI form of [`SendQueues`].
#[sabi_trait]
pub trait SendQueuesFfi: Send + Sync {
    /// See [`SendQueues::new_queue`].
    #[sabi(last_prefix_field)]
    fn new_queue(&self, peer: u32) -> RResult<SendQueueBox, PluginError>;
}

/// An owned `net.send_queue` implementation.
pub type SendQueuesBox = SendQueuesFfi_TO<'static, RBox<()>>;

impl<T: SendQueues> SendQueuesFfi for Guarded<T> {
    fn new_queue(&self, peer: u32) -> RResult<SendQueueBox, PluginError> {
        guard(|| {
            Ok(SendQueueFfi_TO::from_value(
                Guarded(self.0.new_queue(peer)?),
                abi_stable::sabi_trait::TD_Opaque,
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// net.transport

/// One connected peer, as the host hands it to a `net.transport` provider: the peer's
/// index and the socket's file descriptor (a connected, blocking TCP stream; the provider
/// owns it from then on and closes it when it shuts down).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSocket {
    /// The peer's index.
    pub peer: u32,
    /// The connected socket.
    pub fd: i32,
}

/// Where a transport delivers what peers send: the host's inbox. Called from any thread.
#[sabi_trait]
pub trait InboundSink: Send + Sync {
    /// A frame's payload (without its length prefix) from `peer`. An error means the host
    /// is gone: stop reading.
    #[sabi(last_prefix_field)]
    fn deliver(&self, peer: u32, payload: RVec<u8>) -> RResult<(), PluginError>;
}

/// An owned [`InboundSink`].
pub type InboundSinkBox = InboundSink_TO<'static, RBox<()>>;

/// One node's running connections (see [`Transport`]).
///
/// * `send(peer, frames)`: queue whole frames (length prefix included) for `peer`, to be
///   written in order; never blocks on the socket.
/// * `shutdown()`: write what is queued, then close every socket and stop delivering;
///   returns when done.
pub trait Connections: Send + Sync + 'static {
    /// See the trait docs.
    fn send(&self, peer: u32, frames: Vec<SharedFrame>) -> Result<(), PluginError>;
    /// See the trait docs.
    fn shutdown(&self) -> Result<(), PluginError>;
}

/// FFI form of [`Connections`].
#[sabi_trait]
pub trait ConnectionsFfi: Send + Sync {
    /// See [`Connections`].
    fn send(&self, peer: u32, frames: RVec<SharedFrame>) -> RResult<(), PluginError>;
    /// See [`Connections`].
    #[sabi(last_prefix_field)]
    fn shutdown(&self) -> RResult<(), PluginError>;
}

/// Owned connections.
pub type ConnectionsBox = ConnectionsFfi_TO<'static, RBox<()>>;

impl<T: Connections> ConnectionsFfi for Guarded<T> {
    fn send(&self, peer: u32, frames: RVec<SharedFrame>) -> RResult<(), PluginError> {
        guard(|| self.0.send(peer, frames.into_vec()))
    }
    fn shutdown(&self) -> RResult<(), PluginError> {
        guard(|| self.0.shutdown())
    }
}

/// Contract of `net.transport`: take over a node's connected peer sockets, cut what each
/// peer sends into frames (4-byte big-endian length, payload; a frame over
/// `crate::wire::MAX_FRAME` ends that peer's connection) and deliver every payload to
/// `inbound` in the order the peer sent it, and write what the host sends, in order. How
/// many threads (or a reactor) do the I/O is the provider's choice; the baseline spends a
/// reader and a writer thread per peer, on blocking sockets.
pub trait Transport: Send + Sync + 'static {
    /// The connections type.
    type Connections: Connections;
    /// Starts the I/O on `peers`.
    fn connect(
        &self, peers: &[PeerSocket], inbound: InboundSinkBox,
    ) -> Result<Self::Connections, PluginError>;
}

/// FFI form of [`Transport`].
#[sabi_trait]
pub trait TransportFfi: Send + Sync {
    /// See [`Transport::connect`].
    #[sabi(last_prefix_field)]
    fn connect(
        &self, peers: RSlice<'_, PeerSocket>, inbound: InboundSinkBox,
    ) -> RResult<ConnectionsBox, PluginError>;
}

/// An owned `net.transport` implementation.
pub type TransportBox = TransportFfi_TO<'static, RBox<()>>;

impl<T: Transport> TransportFfi for Guarded<T> {
    fn connect(
        &self, peers: RSlice<'_, PeerSocket>, inbound: InboundSinkBox,
    ) -> RResult<ConnectionsBox, PluginError> {
        guard(|| {
            Ok(ConnectionsFfi_TO::from_value(
                Guarded(self.0.connect(peers.as_slice(), inbound)?),
                abi_stable::sabi_trait::TD_Opaque,
            ))
        })
    }
}

/// A batch answer must have one entry per input; anything else is a plugin bug that the
/// host must not index past. The `Guarded` adaptors check it on the plugin side, and the
/// host checks it again at the boundary (a root module need not be built with
/// `export_plugin!`).
pub fn check_len<T>(expected: usize, out: Vec<T>) -> Result<Vec<T>, PluginError> {
    if out.len() == expected {
        Ok(out)
    } else {
        Err(PluginError::failed(format!(
            "plugin returned {} answers for a batch of {expected}",
            out.len()
        )))
    }
}

/// The shape every `mem.buffer_pool` buffer must have: empty (no old contents visible) and
/// with room for the `capacity` asked for. Checked on the plugin side by `Guarded` and again
/// by the host at the boundary, as [`check_len`] is.
pub fn check_buffer(buffer: RVec<u8>, capacity: usize) -> Result<RVec<u8>, PluginError> {
    if buffer.is_empty() && buffer.capacity() >= capacity {
        Ok(buffer)
    } else {
        Err(PluginError::failed(format!(
            "pool gave a buffer of length {} and capacity {} for a request of {capacity}",
            buffer.len(),
            buffer.capacity()
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

// ---------------------------------------------------------------------------------------------
// storage.block_commit

/// One write of a block: `value` `None` deletes `key`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct KvWrite {
    /// The store key.
    pub key: RVec<u8>,
    /// The new value, or `None` to delete the key.
    pub value: ROption<RVec<u8>>,
}

/// What a block's write set holds for one key.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// The block has not written the key: the store's value stands.
    NotHeld,
    /// The block's last write deleted the key (whatever the store holds).
    Deleted,
    /// The block's last write of the key.
    Value(RVec<u8>),
}

/// The host's write-through primitive, handed to every [`BlockWrites::write`]: the
/// baseline's own write of one key, at once (the key's old value saved in an undo entry the
/// first time the block touches it, then one put or delete). A write passed through is in
/// the store when `put` returns; a crash before the block commits rolls it back.
#[sabi_trait]
pub trait WriteThrough: Sync {
    /// Writes `key` (`None` deletes it) to the store now.
    #[sabi(last_prefix_field)]
    fn put(&self, key: RSlice<'_, u8>, value: ROption<RSlice<'_, u8>>) -> RResult<(), PluginError>;
}

/// A borrowed [`WriteThrough`].
pub type WriteThroughRef<'a> = WriteThrough_TO<'a, RRef<'a, ()>>;

/// Host side: presents a Rust closure as a [`WriteThroughRef`].
pub struct HostWriteThrough<F>(pub F);

impl<F> WriteThrough for HostWriteThrough<F>
where
    F: Fn(&[u8], Option<&[u8]>) -> Result<(), PluginError> + Sync,
{
    fn put(&self, key: RSlice<'_, u8>, value: ROption<RSlice<'_, u8>>) -> RResult<(), PluginError> {
        guard(|| (self.0)(key.as_slice(), value.into_option().map(|v| v.as_slice())))
    }
}

impl<F> HostWriteThrough<F>
where
    F: Fn(&[u8], Option<&[u8]>) -> Result<(), PluginError> + Sync,
{
    /// Borrows this closure as a [`WriteThroughRef`].
    pub fn as_through(&self) -> WriteThroughRef<'_> {
        WriteThrough_TO::from_ptr(RRef::new(self), abi_stable::sabi_trait::TD_Opaque)
    }
}

/// One block's writes, held until the block commits or passed through at once, as the set
/// chooses (see [`BlockCommit`]).
///
/// * `write(key, value, through)`: the block writes `key` (`None` deletes it); a later write
///   of the same key replaces an earlier one. The set either holds the write, or passes it
///   to the store at once with `through.put` (the baseline's own write). A key passed
///   through must not stay held: `read`, `held` and `drain` must not answer an earlier held
///   write of it.
/// * `read(key)`: the block's last write of `key`, or [`Held::NotHeld`].
/// * `held(prefix)`: every key the block wrote that starts with `prefix`, with its last
///   write, in ascending byte order of key, each key once (deletes included).
/// * `drain()`: every key the block wrote, the same way; the set is empty afterwards.
///
/// Calls are one key at a time because the block reads its own writes at once (a
/// transfer's debit, then its credit). A set that passes every write through and holds
/// nothing is the baseline, to the byte (what `plugin new` scaffolds); holding, batching
/// and ordering are the plugin's own work.
pub trait BlockWrites: Send + Sync + 'static {
    /// See the trait docs.
    fn write(
        &mut self, key: &[u8], value: Option<&[u8]>, through: &WriteThroughRef<'_>,
    ) -> Result<(), PluginError>;
    /// See the trait docs.
    fn read(&self, key: &[u8]) -> Result<Held, PluginError>;
    /// See the trait docs.
    fn held(&self, prefix: &[u8]) -> Result<Vec<KvWrite>, PluginError>;
    /// See the trait docs.
    fn drain(&mut self) -> Result<Vec<KvWrite>, PluginError>;
}

/// FFI form of [`BlockWrites`].
#[sabi_trait]
pub trait BlockWritesFfi: Send + Sync {
    /// See [`BlockWrites`].
    fn write(
        &mut self, key: RSlice<'_, u8>, value: ROption<RSlice<'_, u8>>,
        through: WriteThroughRef<'_>,
    ) -> RResult<(), PluginError>;
    /// See [`BlockWrites`].
    fn read(&self, key: RSlice<'_, u8>) -> RResult<Held, PluginError>;
    /// See [`BlockWrites`].
    fn held(&self, prefix: RSlice<'_, u8>) -> RResult<RVec<KvWrite>, PluginError>;
    /// See [`BlockWrites`].
    #[sabi(last_prefix_field)]
    fn drain(&mut self) -> RResult<RVec<KvWrite>, PluginError>;
}

/// An owned write set.
pub type BlockWritesBox = BlockWritesFfi_TO<'static, RBox<()>>;

/// Refuses an answer of `held` or `drain` whose keys are not strictly ascending or do not
/// all start with `prefix`: the host merges it with a store scan and writes it as is.
fn check_key_order(prefix: &[u8], writes: Vec<KvWrite>) -> Result<Vec<KvWrite>, PluginError> {
    if let Some(w) = writes.iter().find(|w| !w.key.starts_with(prefix)) {
        return Err(PluginError::failed(format!(
            "write set answered key {:?} for prefix {prefix:?}",
            w.key.as_slice()
        )));
    }
    if let Some(pair) = writes.windows(2).find(|p| p[0].key >= p[1].key) {
        return Err(PluginError::failed(format!(
            "write set answered key {:?} before {:?}: not ascending, or a key twice",
            pair[0].key.as_slice(),
            pair[1].key.as_slice()
        )));
    }
    Ok(writes)
}

impl<T: BlockWrites> BlockWritesFfi for Guarded<T> {
    fn write(
        &mut self, key: RSlice<'_, u8>, value: ROption<RSlice<'_, u8>>,
        through: WriteThroughRef<'_>,
    ) -> RResult<(), PluginError> {
        guard(|| {
            self.0.write(
                key.as_slice(),
                value.into_option().map(|v| v.as_slice()),
                &through,
            )
        })
    }
    fn read(&self, key: RSlice<'_, u8>) -> RResult<Held, PluginError> {
        guard(|| self.0.read(key.as_slice()))
    }
    fn held(&self, prefix: RSlice<'_, u8>) -> RResult<RVec<KvWrite>, PluginError> {
        guard(|| {
            check_key_order(prefix.as_slice(), self.0.held(prefix.as_slice())?).map(RVec::from)
        })
    }
    fn drain(&mut self) -> RResult<RVec<KvWrite>, PluginError> {
        guard(|| check_key_order(&[], self.0.drain()?).map(RVec::from))
    }
}

/// Contract of `storage.block_commit`: a factory of [`BlockWrites`], one per block the node
/// writes. The host sends every write of the block (accounts, code, contract storage) to
/// the set, with its write-through primitive, and reads through the set first, so the
/// block sees its own writes. The host's primitives are the two ways a write can reach the
/// store: at once (`through.put`, the baseline: one put per key after an undo entry of the
/// key's old value), or at the commit, when the host drains the set and writes what it
/// answers, the block's record and the new head as **one atomic RocksDB `WriteBatch`** (a
/// held write needs no undo entry: it is there with the head or not at all). The set
/// decides which; a block that is rolled back drops its set and the host undoes what was
/// passed through.
pub trait BlockCommit: Send + Sync + 'static {
    /// The write set type.
    type Writes: BlockWrites;
    /// An empty write set for block `height`.
    fn begin(&self, height: u64) -> Result<Self::Writes, PluginError>;
}

/// FFI form of [`BlockCommit`].
#[sabi_trait]
pub trait BlockCommitFfi: Send + Sync {
    /// See [`BlockCommit::begin`].
    #[sabi(last_prefix_field)]
    fn begin(&self, height: u64) -> RResult<BlockWritesBox, PluginError>;
}

/// An owned `storage.block_commit` implementation.
pub type BlockCommitBox = BlockCommitFfi_TO<'static, RBox<()>>;

impl<T: BlockCommit> BlockCommitFfi for Guarded<T> {
    fn begin(&self, height: u64) -> RResult<BlockWritesBox, PluginError> {
        guard(|| {
            Ok(BlockWritesFfi_TO::from_value(
                Guarded(self.0.begin(height)?),
                abi_stable::sabi_trait::TD_Opaque,
            ))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// storage.state_root

/// Every leaf of the state after a block, as the host hands it to a `storage.state_root`
/// provider: a full scan of the store with the block's writes laid over it.
#[sabi_trait]
pub trait LeafSource: Sync {
    /// Every leaf of the state, in no particular order.
    #[sabi(last_prefix_field)]
    fn leaves(&self) -> RResult<RVec<StateLeaf>, PluginError>;
}

/// A borrowed [`LeafSource`].
pub type LeafSourceRef<'a> = LeafSource_TO<'a, RRef<'a, ()>>;

/// Contract of `storage.state_root`: `root(parent, changes, all)` returns the root
/// ([`crate::state_tree`]) of the state after a block, exactly
/// `state_tree::root(all.leaves())`. `parent` is the root of the state before the block
/// (the head's, [`crate::state_tree::EMPTY`] before genesis) and `changes` what the block did
/// to it: every leaf it set or removed, sorted by key, no key twice (checked before the
/// provider sees them). A provider may keep the trees of recent states, found by their root
/// (equal roots are equal states), apply `changes` to `parent`'s and answer in about
/// `changes * log2(leaves)` hashes; for a `parent` it does not hold (a restart, a rollback
/// past what it kept) it builds from `all`. The answer is for a block that may still be
/// refused or rolled back: nothing may be assumed committed. The baseline hashes every leaf
/// of `all`, every block.
pub trait StateRoot: Send + Sync + 'static {
    /// See the trait docs.
    fn root(
        &self, parent: &Bytes32, changes: &[LeafChange], all: &LeafSourceRef<'_>,
    ) -> Result<Bytes32, PluginError>;
}

/// FFI form of [`StateRoot`].
#[sabi_trait]
pub trait StateRootFfi: Send + Sync {
    /// See [`StateRoot::root`].
    #[sabi(last_prefix_field)]
    fn root(
        &self, parent: Bytes32, changes: RSlice<'_, LeafChange>, all: LeafSourceRef<'_>,
    ) -> RResult<Bytes32, PluginError>;
}

/// An owned `storage.state_root` implementation.
pub type StateRootBox = StateRootFfi_TO<'static, RBox<()>>;

impl<T: StateRoot> StateRootFfi for Guarded<T> {
    fn root(
        &self, parent: Bytes32, changes: RSlice<'_, LeafChange>, all: LeafSourceRef<'_>,
    ) -> RResult<Bytes32, PluginError> {
        guard(|| {
            crate::state_tree::check_changes(changes.as_slice())?;
            self.0.root(&parent, changes.as_slice(), &all)
        })
    }
}

/// Host side: presents a Rust closure that lists every leaf as a [`LeafSourceRef`].
pub struct HostLeaves<F>(pub F);

impl<F> LeafSource for HostLeaves<F>
where
    F: Fn() -> Result<Vec<StateLeaf>, PluginError> + Sync,
{
    fn leaves(&self) -> RResult<RVec<StateLeaf>, PluginError> {
        guard(|| (self.0)().map(RVec::from))
    }
}

impl<F> HostLeaves<F>
where
    F: Fn() -> Result<Vec<StateLeaf>, PluginError> + Sync,
{
    /// Borrows this closure as a [`LeafSourceRef`].
    pub fn as_source(&self) -> LeafSourceRef<'_> {
        LeafSource_TO::from_ptr(RRef::new(self), abi_stable::sabi_trait::TD_Opaque)
    }
}
