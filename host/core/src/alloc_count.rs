//! A counting global allocator: allocations, bytes and peak live bytes of the process's
//! Rust heaps (the host's and every loaded plugin's), read by the benchmark suite and the
//! profiler around each workload and stage.
//!
//! `dubchain-perf` installs it:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: dubchain_host::alloc_count::CountingAlloc = dubchain_host::alloc_count::COUNTING_ALLOC;
//! ```
//!
//! A program that does not install it reads zeros and [`installed`] is `false`; reports then
//! say "not counted" instead of a wrong zero.
//!
//! Counting is off unless a caller asks for it with [`counting`]: timed sections run with
//! it off, so neither side pays counter updates while it is timed. What remains while it is
//! off is two relaxed loads of read-mostly flags per allocation, in the host's heap and in
//! each plugin's alike. The benchmark suite and the profiler count allocations in runs of
//! their own that are not timed.
//!
//! Plugins are counted too: a plugin is a separate `cdylib` with a Rust allocator of its
//! own, which `export_plugin!` makes this same allocator over a counter of the plugin's
//! own (`dubchain_plugin_api::alloc`, off unless turned on); the loader registers
//! each plugin's heap ([`register_plugin_heap`]) before its `init`, and [`counting`] and
//! [`snapshot`] turn on and sum every registered heap with the host's. A plugin that declares
//! `allocator: own` is not counted. What it cannot see: RocksDB allocates in
//! C++, not through this allocator. The peak resident set ([`peak_rss_bytes`], reset with
//! [`reset_peak_rss`]) covers everything, process-wide.

use dubchain_plugin_api::alloc::{Counted, HeapCounter, PluginHeap};
use std::sync::Mutex;

/// The host's heap.
static HOST: HeapCounter = HeapCounter::new();

/// The system allocator, counting into the host's heap: what a binary installs.
pub const COUNTING_ALLOC: CountingAlloc = Counted(&HOST);

/// The type of [`COUNTING_ALLOC`] (the one counting allocator, shared with plugins).
pub type CountingAlloc = Counted;

/// The heaps of the plugins loaded so far, failed loads included (libraries are never
/// unmapped, see `loader`, so the entry points stay valid): counted with the host's,
/// turned on and off with it.
static PLUGIN_HEAPS: Mutex<Vec<&'static PluginHeap>> = Mutex::new(Vec::new());

fn plugin_heaps() -> std::sync::MutexGuard<'static, Vec<&'static PluginHeap>> {
    // The list is only pushed to and read: a panic elsewhere cannot leave it half-written.
    PLUGIN_HEAPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Counts a loaded plugin's heap with the host's from now on (the loader calls it for every
/// plugin whose root module exports its heap, before `init`).
pub fn register_plugin_heap(heap: &'static PluginHeap) {
    let mut heaps = plugin_heaps();
    (heap.set_counting)(HOST.is_counting());
    heaps.push(heap);
}

fn set_plugins_counting(on: bool) {
    for h in plugin_heaps().iter() {
        (h.set_counting)(on);
    }
}

/// Whether the counting allocator is this process's global allocator.
pub fn installed() -> bool {
    HOST.seen_any()
}

/// Counters at one moment; subtract two with [`AllocStats::since`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AllocStats {
    /// Allocations (a `realloc` counts as one).
    pub allocations: u64,
    /// Bytes requested by those allocations.
    pub bytes: u64,
    /// Highest live heap since the last [`reset_peak`], in bytes; in a difference
    /// ([`AllocStats::since`]), how far it rose above the live heap at the start.
    pub peak_bytes: u64,
    /// Live heap at the moment of the snapshot, in bytes.
    #[serde(default)]
    pub live_bytes: u64,
}

impl AllocStats {
    /// What happened between `earlier` and `self`: allocations and bytes in between, and
    /// the peak as growth over what was live at `earlier` (so memory held before, such as a
    /// profiler's buffers, does not count).
    pub fn since(&self, earlier: &AllocStats) -> AllocStats {
        AllocStats {
            allocations: self.allocations - earlier.allocations,
            bytes: self.bytes - earlier.bytes,
            peak_bytes: self.peak_bytes.saturating_sub(earlier.live_bytes),
            live_bytes: self.live_bytes,
        }
    }
}

/// Counts allocations while the guard lives (process-wide: every thread's allocations
/// count). Guards nest; counting stops when the last one is dropped.
pub fn counting() -> Counting {
    let previous = HOST.swap_counting(true);
    if !previous {
        set_plugins_counting(true);
    }
    Counting { previous }
}

/// Keeps allocation counting on; see [`counting`].
#[derive(Debug)]
#[must_use = "counting stops when the guard is dropped"]
pub struct Counting {
    previous: bool,
}

impl Drop for Counting {
    fn drop(&mut self) {
        HOST.swap_counting(self.previous);
        if !self.previous {
            set_plugins_counting(false);
        }
    }
}

/// Whether allocations are being counted now.
pub fn is_counting() -> bool {
    HOST.is_counting()
}

/// The counters now: the host's heap and every loaded plugin's, summed. The peak is the sum
/// of each heap's own peak, so an upper bound of the peak of their sum (they need not peak
/// at the same moment).
pub fn snapshot() -> AllocStats {
    let mut stats = AllocStats::default();
    for c in std::iter::once(HOST.counts()).chain(plugin_heaps().iter().map(|h| (h.counts)())) {
        stats.allocations += c.allocations;
        stats.bytes += c.bytes;
        stats.peak_bytes += c.peak_bytes;
        stats.live_bytes += c.live_bytes;
    }
    stats
}

/// Starts a new peak measurement from the current live heap (the host's and each plugin's).
pub fn reset_peak() {
    HOST.reset_peak();
    for h in plugin_heaps().iter() {
        (h.reset_peak)();
    }
}

/// Peak resident set of the process since start or the last [`reset_peak_rss`], in bytes
/// (`VmHWM`); `None` where `/proc` does not have it.
pub fn peak_rss_bytes() -> Option<u64> {
    proc_status_bytes("VmHWM:")
}

/// The resident set of the process now, in bytes (`VmRSS`); `None` where `/proc` does not
/// have it.
pub fn rss_bytes() -> Option<u64> {
    proc_status_bytes("VmRSS:")
}

/// A `/proc/self/status` field given in kB, in bytes.
fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Resets the peak resident set to the current one (Linux: `5` to `/proc/self/clear_refs`).
/// Returns whether the kernel took it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU time (user + system) used by the calling thread so far, in seconds (0 where the
/// clock cannot be read). Unlike a wall-clock timer, it does not count the time the thread
/// waited for a core, nor the work it handed to other threads.
pub fn thread_cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec; clock_gettime only writes to it.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return 0.0;
    }
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// CPU time (user + system) used by the process so far, in seconds.
pub fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable rusage; getrusage only writes to it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: getrusage returned 0, so it filled the struct (and it was zeroed before).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
