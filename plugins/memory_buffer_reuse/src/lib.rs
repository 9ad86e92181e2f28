//! `memory_buffer_reuse`: a pool of frame buffers for `mem.buffer_pool` (the catalogue row
//! of that name).
//!
//! The baseline allocates a buffer for every frame the node encodes and frees it after the
//! write. Here buffers come back: each returned buffer is cleared and kept in the queue of
//! its size class, and a later `take` of that class pops it instead of allocating.
//!
//! * **Size classes**: powers of two from 64 B to 1 MiB. `take(n)` serves the smallest
//!   class of at least `n` bytes, so every buffer of a class fits every request of it; a
//!   buffer given back goes to the largest class its capacity covers. Requests above the
//!   largest class are allocated as asked and never kept.
//! * **Lock-free**: each class is a bounded `crossbeam_queue::ArrayQueue`; takes and gives
//!   from any number of threads never block each other.
//! * **Bounded retention**: the bytes the pool keeps (the capacities of the buffers in its
//!   queues) never exceed `max_retained_bytes`; a buffer that would pass the bound is freed
//!   instead. Each class also keeps at most `max_per_class` buffers.
//! * **No old contents**: a buffer is cleared (length 0) when given back; the host checks
//!   every buffer it takes (`check_buffer`). A buffer is moved in and out, so one still in
//!   use cannot be in the pool.

use std::sync::atomic::{AtomicUsize, Ordering};

use abi_stable::std_types::RVec;
use crossbeam_queue::ArrayQueue;
use dubchain_plugin_api::{export_plugin, settings, slots::BufferPool, PluginError};

/// The smallest and largest size classes, as powers of two.
const MIN_CLASS: u32 = 6;
const MAX_CLASS: u32 = 20;
const CLASSES: usize = (MAX_CLASS - MIN_CLASS + 1) as usize;

dubchain_plugin_api::declare_settings! {
    /// The most bytes of buffer capacity the pool keeps, all classes together (at least
    /// 1 MiB, so that the largest class can hold one).
    max_retained_bytes: usize = 8 << 20,
    /// The most buffers one class keeps (at least 1).
    max_per_class: usize = 1024,
}

/// The plugin: a queue per size class and the bytes they hold.
#[derive(Debug)]
pub struct Pool {
    classes: Vec<ArrayQueue<RVec<u8>>>,
    /// Capacity, in bytes, of the buffers in the queues.
    retained: AtomicUsize,
    max_retained: usize,
}

impl Pool {
    /// A pool with `settings`.
    pub fn new(s: &Settings) -> Result<Pool, PluginError> {
        let max_retained =
            settings::at_least("max_retained_bytes", s.max_retained_bytes, 1 << MAX_CLASS)?;
        let per_class = settings::at_least("max_per_class", s.max_per_class, 1)?;
        Ok(Pool {
            classes: (0..CLASSES).map(|_| ArrayQueue::new(per_class)).collect(),
            retained: AtomicUsize::new(0),
            max_retained,
        })
    }

    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<Pool, PluginError> {
        Pool::new(&settings::parse(config)?)
    }

    /// Bytes of capacity the pool holds now.
    pub fn retained_bytes(&self) -> usize {
        self.retained.load(Ordering::Relaxed)
    }

    /// Reserves `bytes` of the retention bound, or refuses if they would pass it.
    fn reserve(&self, bytes: usize) -> bool {
        self.retained
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(bytes).filter(|&t| t <= self.max_retained)
            })
            .is_ok()
    }
}

/// The class serving a request of `n` bytes: the smallest of at least `n`; `None` above
/// the largest.
fn class_for_request(n: usize) -> Option<usize> {
    let bits = n.max(1).next_power_of_two().trailing_zeros().max(MIN_CLASS);
    (bits <= MAX_CLASS).then(|| (bits - MIN_CLASS) as usize)
}

/// The class a buffer of `capacity` bytes can serve: the largest at most `capacity`;
/// `None` below the smallest.
fn class_for_buffer(capacity: usize) -> Option<usize> {
    if capacity < 1 << MIN_CLASS {
        return None;
    }
    let bits = (usize::BITS - 1 - capacity.leading_zeros()).min(MAX_CLASS);
    Some((bits - MIN_CLASS) as usize)
}

impl BufferPool for Pool {
    fn take(&self, capacity: usize) -> Result<RVec<u8>, PluginError> {
        let Some(class) = class_for_request(capacity) else {
            return Ok(RVec::with_capacity(capacity));
        };
        match self.classes[class].pop() {
            Some(buffer) => {
                self.retained.fetch_sub(buffer.capacity(), Ordering::AcqRel);
                Ok(buffer)
            }
            None => Ok(RVec::with_capacity(1 << (class as u32 + MIN_CLASS))),
        }
    }

    fn give(&self, mut buffer: RVec<u8>) -> Result<(), PluginError> {
        buffer.clear();
        let Some(class) = class_for_buffer(buffer.capacity()) else {
            return Ok(());
        };
        let bytes = buffer.capacity();
        if !self.reserve(bytes) {
            return Ok(());
        }
        if self.classes[class].push(buffer).is_err() {
            // The class is full: the buffer is freed (dropped with the error).
            self.retained.fetch_sub(bytes, Ordering::AcqRel);
        }
        Ok(())
    }
}

export_plugin! {
    name: "memory_buffer_reuse",
    buffer_pool: Pool::from_config,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_serve_every_request_they_are_picked_for() {
        for n in [0usize, 1, 63, 64, 65, 1000, 4096, 4097, 1 << 20] {
            let c = class_for_request(n).expect("within the classes");
            assert!(1usize << (c as u32 + MIN_CLASS) >= n, "{n}");
        }
        assert_eq!(class_for_request((1 << 20) + 1), None);
        for cap in [64usize, 100, 128, 5000, 1 << 20, 1 << 24] {
            let c = class_for_buffer(cap).expect("a class");
            assert!(1usize << (c as u32 + MIN_CLASS) <= cap, "{cap}");
        }
        assert_eq!(class_for_buffer(63), None);
    }

    #[test]
    fn a_returned_buffer_is_reused_empty_and_retention_stays_under_its_bound() {
        let pool = Pool::new(&Settings {
            max_retained_bytes: 1 << 20,
            max_per_class: 4,
        })
        .unwrap();
        let mut b = pool.take(100).unwrap();
        assert!(b.is_empty() && b.capacity() >= 100);
        b.extend_from_slice(&[0xab; 100]);
        let ptr = b.as_ptr();
        pool.give(b).unwrap();
        let again = pool.take(90).unwrap();
        assert_eq!((again.as_ptr(), again.len()), (ptr, 0));
        // A burst: far more buffers than the bound holds, all given back.
        let burst: Vec<_> = (0..64).map(|_| pool.take(64 << 10).unwrap()).collect();
        for b in burst {
            pool.give(b).unwrap();
            assert!(pool.retained_bytes() <= 1 << 20);
        }
        assert!(pool.retained_bytes() <= 4 * (64 << 10));
    }

    #[test]
    fn settings_out_of_range_are_refused_naming_the_key() {
        let e = Pool::from_config("max_retained_bytes = 10\n").unwrap_err();
        assert!(e.to_string().contains("max_retained_bytes"), "{e}");
        let e = Pool::from_config("max_per_class = 0\n").unwrap_err();
        assert!(e.to_string().contains("max_per_class"), "{e}");
    }
}
