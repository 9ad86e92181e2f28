//! A plugin's heap, counted: the plugin's global allocator is the system allocator with
//! counters of its own, which the host turns on and reads through the root module, so that
//! the host's allocation counts (`dubchain_host::alloc_count`: `bench`, `profile`) include
//! what plugins allocate.
//!
//! A plugin is a `cdylib` with a Rust allocator of its own, which the host's counting
//! allocator does not see. [`export_plugin!`](crate::export_plugin) installs
//! [`PLUGIN_ALLOCATOR`] (a [`Counted`] system allocator) as the plugin's global allocator and
//! exports its [`PluginHeap`] entry points. The host's own counting allocator is the same
//! [`Counted`] over a [`HeapCounter`] of its own. Counting is off unless the host turns it on
//! (it does so only for untimed runs), and while it is off an allocation costs two relaxed
//! loads more than the system allocator's, in a plugin as in the host, so a plugin and a
//! baseline pay the same. Nothing crosses between heaps: every block a plugin
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

/// One heap's counters: what [`Counted`] counts into. The host keeps one for its own heap,
/// and every plugin library one for its own.
#[derive(Debug)]
pub struct HeapCounter {
    /// Whether any allocation went through an allocator counting into this (it is
    /// installed).
    seen: AtomicBool,
    counting: AtomicBool,
    allocations: AtomicU64,
    bytes: AtomicU64,
    live: AtomicU64,
    peak: AtomicU64,
}

impl HeapCounter {
    /// Counters at zero, counting off.
    pub const fn new() -> Self {
        HeapCounter {
            seen: AtomicBool::new(false),
            counting: AtomicBool::new(false),
            allocations: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            live: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    /// Turns counting on or off; returns whether it was on.
    pub fn swap_counting(&self, on: bool) -> bool {
        self.counting.swap(on, Relaxed)
    }

    /// Whether allocations are being counted now.
    pub fn is_counting(&self) -> bool {
        self.counting.load(Relaxed)
    }

    /// Whether an allocator counting into this has allocated anything (so it is installed).
    pub fn seen_any(&self) -> bool {
        self.seen.load(Relaxed)
    }

    /// The counters now.
    pub fn counts(&self) -> HeapCounts {
        HeapCounts {
            allocations: self.allocations.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            live_bytes: self.live.load(Relaxed),
            peak_bytes: self.peak.load(Relaxed),
        }
    }

    /// Starts a new peak from the live bytes now.
    pub fn reset_peak(&self) {
        self.peak.store(self.live.load(Relaxed), Relaxed);
    }

    fn on_alloc(&self, size: usize) {
        if !self.seen.load(Relaxed) {
            self.seen.store(true, Relaxed);
        }
        if !self.counting.load(Relaxed) {
            return;
        }
        self.allocations.fetch_add(1, Relaxed);
        self.bytes.fetch_add(size as u64, Relaxed);
        let live = self.live.fetch_add(size as u64, Relaxed) + size as u64;
        self.peak.fetch_max(live, Relaxed);
    }

    fn on_free(&self, size: usize) {
        if !self.counting.load(Relaxed) {
            return;
        }
        // Saturating: a block freed here may have been taken while counting was off, so the
        // live figure is the growth of what was allocated while counting (which is what the
        // peak is read as: growth over the live heap at the start of a counted run).
        let _ = self
            .live
            .fetch_update(Relaxed, Relaxed, |l| Some(l.saturating_sub(size as u64)));
    }
}

impl Default for HeapCounter {
    fn default() -> Self {
        HeapCounter::new()
    }
}

/// This plugin library's heap (a library has its own copy of this crate's statics).
static PLUGIN: HeapCounter = HeapCounter::new();

/// The global allocator `export_plugin!` installs: the system allocator, counting into this
/// library's heap.
pub const PLUGIN_ALLOCATOR: Counted = Counted(&PLUGIN);

extern "C" fn set_counting(on: bool) {
    PLUGIN.swap_counting(on);
}

extern "C" fn counts() -> HeapCounts {
    PLUGIN.counts()
}

extern "C" fn reset_peak() {
    PLUGIN.reset_peak();
}

/// This library's heap entry points (what `export_plugin!`'s root module exports).
pub static HEAP: PluginHeap = PluginHeap {
    set_counting,
    counts,
    reset_peak,
};

/// The system allocator, counting into a [`HeapCounter`]: a plugin's global allocator
/// ([`PLUGIN_ALLOCATOR`]) and the host's (`dubchain_host::alloc_count`).
#[derive(Debug, Clone, Copy)]
pub struct Counted(pub &'static HeapCounter);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only
// adds counter updates, which neither allocate nor touch the returned memory.
unsafe impl GlobalAlloc for Counted {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            self.0.on_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            self.0.on_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) };
        self.0.on_free(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            self.0.on_free(layout.size());
            self.0.on_alloc(new_size);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counting off, nothing is counted; on, every allocation, its bytes, the live bytes and
    /// their peak; a `realloc` is one allocation; a free taken while off never underflows.
    #[test]
    fn counts_only_while_counting() {
        static HEAP: HeapCounter = HeapCounter::new();
        let a = Counted(&HEAP);
        let layout = Layout::from_size_align(100, 8).unwrap();
        // SAFETY: a valid, non-zero layout; every block is freed with the layout it has.
        unsafe {
            let early = a.alloc(layout);
            assert!(HEAP.seen_any() && !HEAP.is_counting());
            assert_eq!(HEAP.counts(), HeapCounts::default());
            assert!(!HEAP.swap_counting(true));
            let p = a.alloc(layout);
            let p = a.realloc(p, layout, 300);
            let big = Layout::from_size_align(300, 8).unwrap();
            let z = a.alloc_zeroed(layout);
            assert_eq!(
                HEAP.counts(),
                HeapCounts {
                    allocations: 3,
                    bytes: 500,
                    live_bytes: 400,
                    peak_bytes: 400,
                }
            );
            a.dealloc(p, big);
            a.dealloc(z, layout);
            a.dealloc(early, layout);
            let c = HEAP.counts();
            assert_eq!((c.live_bytes, c.peak_bytes), (0, 400));
            HEAP.reset_peak();
            assert_eq!(HEAP.counts().peak_bytes, 0);
            assert!(HEAP.swap_counting(false));
            let q = a.alloc(layout);
            a.dealloc(q, layout);
            assert_eq!(HEAP.counts().allocations, 3);
        }
    }
}
