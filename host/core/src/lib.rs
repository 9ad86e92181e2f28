//! The DubChain optimization host: the plugin machinery, and nothing of the node.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view. In short: [`manifest`] reads plugin
//! manifests, [`resolve`] turns them and the configuration into a plan, [`loader`] loads and
//! checks plugin libraries, [`slot`] holds the swappable implementations with the
//! [`baseline`] underneath, [`selftest`] and [`conformance`] check providers against the
//! baselines, [`watch`] hot-reloads a plugin directory, and [`host::Host`] ties these
//! together. [`measure`] is the one interleaved measurement every ratio comes from;
//! [`workload`] generates the inputs the checks and the measurements share.
//!
//! Must not depend on: the node (RocksDB), the instruments (pprof) or the command line.
//! Plugin authors' tests and benches depend on this crate without default features (no
//! wasmtime, no RocksDB), so it stays quick to build.

pub mod alloc_count;
pub mod baseline;
pub mod cases;
pub mod catalogue;
pub mod compare;
pub mod config;
pub mod conformance;
pub mod count;
pub mod files;
pub mod host;
pub mod isolate;
pub mod latency;
pub mod loader;
pub mod manifest;
pub mod measure;
pub mod peer_queue;
pub mod reference;
pub mod resolve;
pub mod scaffold;
pub mod selftest;
pub mod services;
pub mod session;
pub mod shadow;
pub mod slot;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(feature = "vm")]
pub mod vm;
pub mod watch;
pub mod workload;

pub use host::Host;
