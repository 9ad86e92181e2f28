//! The DubChain node, real enough to optimize: ed25519-signed transfers and contract calls,
//! a mempool, block production and validation, account state on RocksDB with crash
//! recovery, BLS votes and finality, TCP peers, a cluster of nodes and catch-up sync.
//!
//! Every hot path goes through a slot of the host (`dubchain_host::slot::Slots`): the node
//! runs on the baselines or on plugins, and two runs with the same seed must reach the same
//! chain. Each node is given its own `Host` ([`run::NodeHosts`], [`cluster::run_cluster`]).
//!
//! Must not depend on: the instruments (measurement, reports, pprof) or the command line.
//! Depends on the plugin host (`dubchain-host`, with the contract VM) and the plugin API.

pub mod block;
pub mod chain;
pub mod cluster;
pub mod commit_race;
pub mod consensus;
pub mod execute;
pub mod gen;
pub mod launch;
pub mod ledger;
pub mod mempool;
pub mod net;
pub mod process;
pub mod run;
pub mod state;
/// The contract VM, which the node runs; it lives in the host, under the `vm.*` slots.
pub use dubchain_host::vm;
