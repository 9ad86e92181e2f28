//! The DubChain optimization host.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view. In short: [`manifest`] reads plugin
//! manifests, [`resolve`] turns them and the configuration into a plan, [`loader`] loads and
//! checks plugin libraries, [`slot`] holds the swappable implementations with the
//! [`baseline`] underneath, and [`host::Host`] ties these together.

pub mod alloc_count;
pub mod baseline;
pub mod catalogue;
pub mod config;
pub mod conformance;
pub mod host;
pub mod loader;
pub mod manifest;
pub mod measure;
#[cfg(feature = "node")]
pub mod node;
pub mod perf;
pub mod resolve;
pub mod scaffold;
pub mod selftest;
pub mod session;
pub mod slot;
pub mod testing;
pub mod verify;
#[cfg(feature = "vm")]
pub mod vm;
pub mod watch;
pub mod workload;

pub use host::Host;
