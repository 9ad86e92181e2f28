//! The DubChain node, real enough to optimize: ed25519-signed transfers, a mempool, block
//! production and validation, account state on RocksDB with crash recovery.
//!
//! Every signature check goes through the `crypto.sig_verify` slot and every stored block
//! through `storage.record_codec`, so the node runs on the baselines or on plugins, and two
//! runs with the same seed must reach the same chain.
//!
//! Not here yet (see `docs/ARCHITECTURE.md`): contracts on wasmtime, and slots for the
//! catalogue rows beyond `crypto.sig_verify` and `storage.record_codec` (their baselines
//! are the code paths named in the seams table).

pub mod block;
pub mod chain;
pub mod cluster;
pub mod consensus;
pub mod execute;
pub mod gen;
pub mod mempool;
pub mod net;
pub mod run;
pub mod state;
/// The contract VM, which the node runs; it lives at the crate root (`crate::vm`).
pub use crate::vm;
