//! A plugin's heap, counted: the plugin's global allocator is the system allocator with
//! counters of its own, which the host turns on and reads through the root module, so that
//! the host's allocation counts (`dubchain_host::alloc_count`: `bench`, `profile`) include
//! what plugins allocate.
//!
//! A plugin is a `cdylib` with a Rust allocator of its own, which the host's counting
//! allocator does not see. [`export_plugin!`](crate::export_plugin) installs [`Counted`] as
//! the plugin's global allocator and exports its [`PluginHeap`] entry points. Counting is off
//! unless the host turns it on (it does so only for untimed runs), and while it is off an
//! allocation costs one relaxed load more than the system allocator's, as in the host, so a
//! plugin and a baseline pay the same. Nothing crosses between heaps: every block a plugin
//! takes it gives back to the system allocator it came from.
//!
//! A plugin that wants an allocator of its own says `allocator: own` in
//! [`export_plugin!`](crate::export_plugin) and installs it with `#[global_allocator]`; its
//! allocations are then not counted.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
};

use abi_stable::StableAbi;

/// A heap's counters at one moment.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapCounts {
    /// Allocations while counting (a `realloc` counts as one).
    pub allocations: u64,
    /// Bytes requested by those allocations.
    pub bytes: u64,
    /// Live bytes allocated while counting, less what was freed while counting.
    pub live_bytes: u64,
    /// Highest `live_bytes` since the last peak reset.
    pub peak_bytes: u64,
}

/// The entry points through which the host counts a plugin's heap.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct PluginHeap {
    /// Turns counting on or off.
    pub set_counting: extern "C" fn(on: bool),
    /// The counters now.
    pub counts: extern "C" fn() -> HeapCounts,
    /// Starts a new peak from the live bytes now.
    pub reset_peak: extern "C" fn(),
}

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

extern "C" fn set_counting(on: bool) {
    COUNTING.store(on, Relaxed);
}

extern "C" fn counts() -> HeapCounts {
    HeapCounts {
        allocations: ALLOCATIONS.load(Relaxed),
        bytes: BYTES.load(Relaxed),
        live_bytes: LIVE.load(Relaxed),
        peak_bytes: PEAK.load(Relaxed),
    }
}

extern "C" fn reset_peak() {
    PEAK.store(LIVE.load(Relaxed), Relaxed);
}

/// This library's heap entry points (what `export_plugin!`'s root module exports).
pub static HEAP: PluginHeap = PluginHeap {
    set_counting,
    counts,
    reset_peak,
};

fn on_alloc(size: usize) {
    if !COUNTING.load(Relaxed) {
        return;
    }
    ALLOCATIONS.fetch_add(1, Relaxed);
    BYTES.fetch_add(size as u64, Relaxed);
    let live = LIVE.fetch_add(size as u64, Relaxed) + size as u64;
    PEAK.fetch_max(live, Relaxed);
}

fn on_free(size: usize) {
    if !COUNTING.load(Relaxed) {
        return;
    }
    // Saturating: a block freed here may have been taken while counting was off.
    let _ = LIVE.fetch_update(Relaxed, Relaxed, |l| Some(l.saturating_sub(size as u64)));
}

/// A plugin's global allocator: the system allocator, with counters the host reads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counted;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only
// adds counter updates, which neither allocate nor touch the returned memory.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        on_free(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            on_free(layout.size());
            on_alloc(new_size);
        }
        p
    }
}
