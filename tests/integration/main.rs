//! Integration tests of the host: one binary, one module per concern.

// The counting allocator, as `dubchain-perf` installs it: the tests of allocation counts
// (plugins' included: the host reads their counters with its own) read it. Counting is off unless a test turns it on.
#[global_allocator]
static ALLOC: dubchain_host::alloc_count::CountingAlloc =
    dubchain_host::alloc_count::COUNTING_ALLOC;

mod authoring;
mod contracts;
mod differential;
mod fallback;
mod fuzz;
mod hot_reload;
mod hot_swap;
mod loading;
mod manifests;
mod measuring;
mod monitor;
mod network;
mod node;
mod resolver;
mod services;
