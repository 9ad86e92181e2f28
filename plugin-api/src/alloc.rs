//! A plugin's heap, routed to the host's allocator, so that the host's allocation counts
//! (`dubchain_host::alloc_count`: `bench`, `profile`) include what plugins allocate.
//!
//! A plugin is a `cdylib` with a Rust allocator of its own, which the host's counting
//! allocator does not see. [`export_plugin!`](crate::export_plugin) installs [`Routed`] as
//! the plugin's global allocator: until the host hands it a [`HostAllocator`] (the loader
//! does so right after the fingerprint check, before `init`), it is the system allocator;
//! from then on every allocation of the plugin is the host's. A host that never hands one
//! over (an older host) leaves the plugin on the system allocator.
//!
//! Memory may be freed by the other allocator than the one that gave it (a block taken
//! before the hand-over and freed after it), so a host that hands over its allocator must
//! allocate from the system allocator underneath (the host's counting allocator does: it
//! adds counters to `std::alloc::System`).
//!
//! A plugin that wants an allocator of its own says `allocator: own` in
//! [`export_plugin!`](crate::export_plugin) and installs it with `#[global_allocator]`; its
//! allocations are then not counted by the host.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicPtr, Ordering},
};

use abi_stable::StableAbi;

/// The host's allocator, as entry points a plugin calls (sizes and alignments as in
/// [`Layout`]; a null pointer is a failed allocation).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct HostAllocator {
    /// `GlobalAlloc::alloc` of the host's global allocator.
    pub alloc: unsafe extern "C" fn(size: usize, align: usize) -> *mut u8,
    /// `GlobalAlloc::alloc_zeroed`.
    pub alloc_zeroed: unsafe extern "C" fn(size: usize, align: usize) -> *mut u8,
    /// `GlobalAlloc::dealloc`.
    pub dealloc: unsafe extern "C" fn(ptr: *mut u8, size: usize, align: usize),
    /// `GlobalAlloc::realloc`.
    pub realloc:
        unsafe extern "C" fn(ptr: *mut u8, size: usize, align: usize, new_size: usize) -> *mut u8,
}

/// The host's allocator once handed over; null before.
static HOST: AtomicPtr<HostAllocator> = AtomicPtr::new(std::ptr::null_mut());

/// Routes this library's allocations to `host` from now on (called by the root module's
/// `use_allocator` entry point).
pub fn route_to(host: &'static HostAllocator) {
    HOST.store(std::ptr::from_ref(host).cast_mut(), Ordering::Release);
}

/// Whether this library's allocations go to the host's allocator.
pub fn routed() -> bool {
    !HOST.load(Ordering::Acquire).is_null()
}

fn host() -> Option<&'static HostAllocator> {
    // SAFETY: the pointer is null or was made from a `&'static HostAllocator` (`route_to`).
    unsafe { HOST.load(Ordering::Acquire).as_ref() }
}

/// A plugin's global allocator: the host's once handed over, the system's before.
#[derive(Debug, Clone, Copy, Default)]
pub struct Routed;

// SAFETY: each method forwards the caller's arguments unchanged either to the host's
// allocator (whose entry points are `GlobalAlloc` methods of the host's global allocator,
// which sits on `System`) or to `System`; a block from either may be freed by the other,
// since the host's allocates from `System` (module docs).
unsafe impl GlobalAlloc for Routed {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match host() {
            // SAFETY: forwarded with the caller's guarantees.
            Some(h) => unsafe { (h.alloc)(layout.size(), layout.align()) },
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.alloc(layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match host() {
            // SAFETY: forwarded with the caller's guarantees.
            Some(h) => unsafe { (h.alloc_zeroed)(layout.size(), layout.align()) },
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.alloc_zeroed(layout) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match host() {
            // SAFETY: forwarded with the caller's guarantees.
            Some(h) => unsafe { (h.dealloc)(ptr, layout.size(), layout.align()) },
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match host() {
            // SAFETY: forwarded with the caller's guarantees.
            Some(h) => unsafe { (h.realloc)(ptr, layout.size(), layout.align(), new_size) },
            // SAFETY: forwarded with the caller's guarantees.
            None => unsafe { System.realloc(ptr, layout, new_size) },
        }
    }
}
