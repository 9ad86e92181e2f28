//! One peer's queue of outgoing frames: the `net.send_queue` provider's queue when there is
//! one, the baseline's FIFO underneath, and the host's ledger of what the provider holds.
//!
//! `net.send_queue` is the one slot whose failure could lose data in flight: a provider's
//! queue holds frames the node already handed over. So the host keeps, for every frame it
//! pushed and has not seen popped, a reference to it (an `RArc` clone: no bytes copied) and
//! its push sequence number. When the provider fails (an error, a panic, or an answer the
//! host refuses), every frame it still held goes to the baseline FIFO once, in push order,
//! and the FIFO serves the peer from then on. Gossip the provider reports dropped leaves the
//! ledger, so the ledger never holds more than the provider says it does (a bounded queue
//! stays bounded).
//!
//! What the host checks in every pop: each consensus frame is the oldest consensus frame
//! held (never dropped, never reordered within its class); each gossip frame is one the
//! host pushed and has not seen popped (older gossip skipped over was dropped). A frame
//! that is neither, or `Closed` while frames are held, fails the provider: the frames
//! popped before the bad one are written, the rest go to the FIFO.

use std::{
    collections::{HashSet, VecDeque},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
        Mutex,
    },
    time::Duration,
};

use abi_stable::std_types::RResult;
use dubchain_plugin_api::{
    slots::{Outgoing, Popped, SendQueueBox, SharedFrame, TrafficClass},
    PluginError,
};

use crate::baseline::FifoQueue;

/// How many gossip frames reported dropped the ledger remembers by address, so that the
/// provider may still pop one it reported but kept (a provider is free to drop another
/// than the oldest). Older ones are forgotten; popping one of those fails the provider.
const FORGOTTEN_GOSSIP: usize = 65_536;

/// See the module docs.
pub struct PeerQueue {
    provider: Option<SendQueueBox>,
    failed: AtomicBool,
    fifo: FifoQueue,
    ledger: Mutex<Ledger>,
    pushing: Mutex<()>,
    dropped: AtomicU64,
    handed_over: AtomicU64,
}

#[derive(Default)]
struct Ledger {
    next: u64,
    consensus: VecDeque<(u64, SharedFrame)>,
    gossip: VecDeque<(u64, SharedFrame)>,
    /// Addresses of gossip frames trimmed because the provider reported drops.
    trimmed: VecDeque<usize>,
    trimmed_set: HashSet<usize>,
}

fn address(f: &SharedFrame) -> usize {
    &**f as *const _ as usize
}

fn same(a: &SharedFrame, b: &SharedFrame) -> bool {
    address(a) == address(b) || a.as_slice() == b.as_slice()
}

impl Ledger {
    fn record(&mut self, frames: &[Outgoing]) {
        for o in frames {
            let entry = (self.next, o.frame.clone());
            self.next += 1;
            match o.class {
                TrafficClass::Consensus => self.consensus.push_back(entry),
                TrafficClass::Gossip => self.gossip.push_back(entry),
            }
        }
    }

    /// The provider reported `n` gossip frames dropped: the oldest `n` leave the ledger.
    fn trim(&mut self, n: u64) {
        for _ in 0..n {
            let Some((_, f)) = self.gossip.pop_front() else {
                return;
            };
            let a = address(&f);
            if self.trimmed_set.insert(a) {
                self.trimmed.push_back(a);
            }
            if self.trimmed.len() > FORGOTTEN_GOSSIP {
                if let Some(old) = self.trimmed.pop_front() {
                    self.trimmed_set.remove(&old);
                }
            }
        }
    }

    /// Takes `o` out of the ledger if the provider may pop it now; how many older gossip
    /// frames it skipped (dropped without being reported), or `None` if it may not.
    fn take(&mut self, o: &Outgoing) -> Option<u64> {
        match o.class {
            TrafficClass::Consensus => {
                let (_, front) = self.consensus.front()?;
                same(front, &o.frame).then(|| {
                    self.consensus.pop_front();
                    0
                })
            }
            TrafficClass::Gossip => {
                if let Some(i) = self.gossip.iter().position(|(_, f)| same(f, &o.frame)) {
                    self.gossip.drain(..=i);
                    return Some(i as u64);
                }
                let a = address(&o.frame);
                self.trimmed_set.remove(&a).then(|| {
                    self.trimmed.retain(|&t| t != a);
                    0
                })
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.consensus.is_empty() && self.gossip.is_empty()
    }

    /// Everything held, in push order, leaving the ledger empty.
    fn drain(&mut self) -> Vec<Outgoing> {
        let mut consensus = std::mem::take(&mut self.consensus).into_iter().peekable();
        let mut gossip = std::mem::take(&mut self.gossip).into_iter().peekable();
        let mut all = Vec::with_capacity(consensus.len() + gossip.len());
        loop {
            let class = match (consensus.peek(), gossip.peek()) {
                (Some((c, _)), Some((g, _))) if c < g => TrafficClass::Consensus,
                (Some(_), None) => TrafficClass::Consensus,
                (_, Some(_)) => TrafficClass::Gossip,
                (None, None) => return all,
            };
            let next = match class {
                TrafficClass::Consensus => consensus.next(),
                TrafficClass::Gossip => gossip.next(),
            };
            if let Some((_, frame)) = next {
                all.push(Outgoing { class, frame });
            }
        }
    }
}

impl PeerQueue {
    /// A queue over `provider`'s (the baseline's FIFO alone when `None`).
    pub fn new(provider: Option<SendQueueBox>) -> PeerQueue {
        PeerQueue {
            provider,
            failed: AtomicBool::new(false),
            fifo: FifoQueue::default(),
            ledger: Mutex::new(Ledger::default()),
            pushing: Mutex::new(()),
            dropped: AtomicU64::new(0),
            handed_over: AtomicU64::new(0),
        }
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The provider, while it has not failed.
    fn live(&self) -> Option<&SendQueueBox> {
        self.provider
            .as_ref()
            .filter(|_| !self.failed.load(Relaxed))
    }

    /// The provider failed (`why`): what it held goes to the FIFO, once, in push order.
    /// Called with the ledger locked, so no push or pop interleaves.
    fn fail(&self, ledger: &mut Ledger, why: &str) {
        if self.failed.swap(true, Relaxed) {
            return;
        }
        let held = ledger.drain();
        tracing::warn!(
            error = why,
            frames = held.len(),
            "net.send_queue provider failed; the frames it held and this peer's later frames go through the baseline queue"
        );
        self.handed_over.fetch_add(held.len() as u64, Relaxed);
        self.fifo.push(held);
    }

    fn answer<T>(&self, r: RResult<T, PluginError>) -> Option<T> {
        match r.into_result() {
            Ok(v) => Some(v),
            Err(e) => {
                self.fail(&mut self.ledger(), &e.to_string());
                None
            }
        }
    }

    /// Queues `frames` for the peer.
    pub fn push(&self, frames: Vec<Outgoing>) {
        let Some(q) = self.live() else {
            return self.push_baseline(frames);
        };
        // One push at a time, so that the ledger's order is the order the provider got.
        let _pushing = self.pushing.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut ledger = self.ledger();
            if self.failed.load(Relaxed) {
                drop(ledger);
                return self.push_baseline(frames);
            }
            ledger.record(&frames);
        }
        if let Some(dropped) = self.answer(q.push(frames.into())) {
            self.dropped.fetch_add(dropped, Relaxed);
            let mut ledger = self.ledger();
            if !self.failed.load(Relaxed) {
                ledger.trim(dropped);
            }
        }
    }

    /// The FIFO, in order with the hand-over (which happens under the ledger's lock).
    fn push_baseline(&self, frames: Vec<Outgoing>) {
        let _ledger = self.ledger();
        self.fifo.push(frames);
    }

    /// Up to `max` frames to write now, waiting up to `wait` for the first.
    pub fn pop(&self, max: usize, wait: Duration) -> Popped {
        let Some(q) = self.live() else {
            return self.fifo.pop(max, wait);
        };
        let popped = self.answer(q.pop(max as u64, wait.as_millis() as u64));
        let mut ledger = self.ledger();
        let Some(popped) = popped.filter(|_| !self.failed.load(Relaxed)) else {
            // Failed, now or meanwhile: what it popped was handed over with the rest.
            drop(ledger);
            return self.fifo.pop(max, Duration::ZERO);
        };
        match popped {
            Popped::Frames(frames) => {
                let mut ok = Vec::with_capacity(frames.len());
                for o in frames.into_vec() {
                    match ledger.take(&o) {
                        Some(skipped) => {
                            self.dropped.fetch_add(skipped, Relaxed);
                            ok.push(o);
                        }
                        None => {
                            self.fail(
                                &mut ledger,
                                "popped a frame it was not given, or a consensus frame out of order",
                            );
                            break;
                        }
                    }
                }
                if ok.is_empty() && self.failed.load(Relaxed) {
                    drop(ledger);
                    return self.fifo.pop(max, Duration::ZERO);
                }
                Popped::Frames(ok.into())
            }
            Popped::Closed if !ledger.is_empty() => {
                self.fail(&mut ledger, "answered Closed while it held frames");
                drop(ledger);
                self.fifo.pop(max, Duration::ZERO)
            }
            other => other,
        }
    }

    /// The writer wrote `bytes` in `took` (for adaptive windows).
    pub fn written(&self, bytes: usize, took: Duration) {
        if let Some(q) = self.live() {
            self.answer(q.written(bytes as u64, took.as_micros() as u64));
        }
    }

    /// No more pushes; pops drain what is queued, then answer `Closed`.
    pub fn close(&self) {
        if let Some(q) = self.live() {
            self.answer(q.close());
        }
        self.fifo.close();
    }

    /// Gossip frames the provider dropped: reported by its pushes, or skipped in its pops.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Frames a failed provider held, which the baseline queue took over.
    pub fn handed_over(&self) -> u64 {
        self.handed_over.load(Relaxed)
    }

    /// Frames the provider holds by the ledger's account (pushed, not yet popped, not
    /// reported dropped).
    pub fn held(&self) -> usize {
        let l = self.ledger();
        l.consensus.len() + l.gossip.len()
    }

    /// Frames queued for the peer now: what the provider holds by the ledger's account,
    /// or the baseline FIFO's length.
    pub fn depth(&self) -> usize {
        match self.live() {
            Some(_) => self.held(),
            None => self.fifo.len(),
        }
    }

    /// Whether the baseline queue serves the peer because the provider failed.
    pub fn provider_failed(&self) -> bool {
        self.failed.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use abi_stable::{
        sabi_trait::TD_Opaque,
        std_types::{RArc, RVec},
    };
    use dubchain_plugin_api::slots::{Guarded, SendQueue, SendQueueFfi_TO};

    use super::*;

    /// What a scripted provider does wrong.
    #[derive(Clone, Copy, PartialEq)]
    enum Mischief {
        None,
        /// Fails (an error) on this pop.
        FailPop(usize),
        /// Panics on this pop.
        PanicPop(usize),
        /// Fails on this push (the frames of that push are not taken).
        FailPush(usize),
        /// On this pop, answers the second consensus frame before the first.
        Reorder(usize),
        /// On this pop, answers a frame it was never given.
        Fabricate(usize),
        /// On this pop, answers `Closed` although it holds frames.
        CloseEarly(usize),
        /// Keeps at most this many gossip frames, dropping the oldest and reporting it.
        Bounded(usize),
    }

    /// A FIFO provider that misbehaves as scripted.
    struct Scripted {
        q: Mutex<VecDeque<Outgoing>>,
        pops: AtomicUsize,
        pushes: AtomicUsize,
        closed: AtomicBool,
        mischief: Mischief,
    }

    impl SendQueue for Scripted {
        fn push(&self, frames: Vec<Outgoing>) -> Result<u64, PluginError> {
            let n = self.pushes.fetch_add(1, Relaxed);
            if self.mischief == Mischief::FailPush(n) {
                return Err(PluginError::failed("scripted push failure"));
            }
            let mut q = self.q.lock().unwrap();
            q.extend(frames);
            let mut dropped = 0;
            if let Mischief::Bounded(max) = self.mischief {
                while q.iter().filter(|o| o.class == TrafficClass::Gossip).count() > max {
                    let i = q
                        .iter()
                        .position(|o| o.class == TrafficClass::Gossip)
                        .unwrap();
                    q.remove(i);
                    dropped += 1;
                }
            }
            Ok(dropped)
        }

        fn pop(&self, max: u64, _wait_ms: u64) -> Result<Popped, PluginError> {
            let n = self.pops.fetch_add(1, Relaxed);
            let mut q = self.q.lock().unwrap();
            match self.mischief {
                Mischief::FailPop(k) if k == n => {
                    return Err(PluginError::failed("scripted pop failure"))
                }
                Mischief::PanicPop(k) if k == n => panic!("scripted pop panic"),
                Mischief::CloseEarly(k) if k == n && !q.is_empty() => return Ok(Popped::Closed),
                Mischief::Fabricate(k) if k == n => {
                    let first = 1.min(q.len());
                    let mut f: Vec<Outgoing> = q.drain(..first).collect();
                    f.push(Outgoing {
                        class: TrafficClass::Gossip,
                        frame: RArc::new(RVec::from(b"forged".to_vec())),
                    });
                    return Ok(Popped::Frames(f.into()));
                }
                Mischief::Reorder(k) if k == n => {
                    let c: Vec<usize> = (0..q.len())
                        .filter(|&i| q[i].class == TrafficClass::Consensus)
                        .take(2)
                        .collect();
                    if let [a, b] = c[..] {
                        let second = q.remove(b).unwrap();
                        let first = q.remove(a).unwrap();
                        return Ok(Popped::Frames(vec![second, first].into()));
                    }
                }
                _ => {}
            }
            if q.is_empty() {
                return Ok(if self.closed.load(Relaxed) {
                    Popped::Closed
                } else {
                    Popped::Idle
                });
            }
            let n = (max as usize).min(q.len()).min(7);
            Ok(Popped::Frames(q.drain(..n).collect::<Vec<_>>().into()))
        }

        fn written(&self, _: u64, _: u64) -> Result<(), PluginError> {
            Ok(())
        }

        fn close(&self) -> Result<(), PluginError> {
            self.closed.store(true, Relaxed);
            Ok(())
        }
    }

    fn queue(mischief: Mischief) -> PeerQueue {
        let s = Scripted {
            q: Mutex::new(VecDeque::new()),
            pops: AtomicUsize::new(0),
            pushes: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            mischief,
        };
        PeerQueue::new(Some(SendQueueFfi_TO::from_value(Guarded(s), TD_Opaque)))
    }

    /// Frame `i` of a stream: its number in its bytes; every third is consensus.
    fn frame(i: u32) -> Outgoing {
        Outgoing {
            class: if i.is_multiple_of(3) {
                TrafficClass::Consensus
            } else {
                TrafficClass::Gossip
            },
            frame: RArc::new(RVec::from(i.to_be_bytes().to_vec())),
        }
    }

    fn number(o: &Outgoing) -> u32 {
        u32::from_be_bytes(o.frame.as_slice().try_into().expect("a stream frame"))
    }

    /// Pushes 40 batches of 5 frames, popping between pushes, then closes and drains:
    /// the frame numbers the writer got, in order.
    fn stream(q: &PeerQueue) -> Vec<u32> {
        let mut out = Vec::new();
        let pop = |out: &mut Vec<u32>| match q.pop(4, Duration::ZERO) {
            Popped::Frames(f) => {
                out.extend(f.iter().map(number));
                true
            }
            Popped::Idle => true,
            Popped::Closed => false,
        };
        for b in 0..40u32 {
            q.push((b * 5..b * 5 + 5).map(frame).collect());
            pop(&mut out);
        }
        q.close();
        // Bounded: a queue that never answers `Closed` fails the test, not hangs it.
        for _ in 0..1_000 {
            if !pop(&mut out) {
                return out;
            }
        }
        panic!("the queue never answered Closed after close");
    }

    /// Every frame once; each class in push order.
    fn check_lossless(got: &[u32]) {
        let mut sorted = got.to_vec();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..200).collect::<Vec<_>>(),
            "each frame once: {got:?}"
        );
        for class in [0, 1] {
            let of: Vec<u32> = got
                .iter()
                .copied()
                .filter(|i| (i % 3 == 0) as u32 == class)
                .collect();
            assert!(of.windows(2).all(|w| w[0] < w[1]), "class order: {got:?}");
        }
    }

    #[test]
    fn a_queue_failing_mid_stream_loses_no_frame_and_repeats_none() {
        for mischief in [
            Mischief::FailPop(3),
            Mischief::FailPop(25),
            Mischief::PanicPop(10),
            Mischief::FailPush(0),
            Mischief::FailPush(17),
            Mischief::Reorder(8),
            Mischief::CloseEarly(12),
        ] {
            let q = queue(mischief);
            let got = stream(&q);
            check_lossless(&got);
            assert!(q.provider_failed());
            // The FIFO provider kept the push order, and so did the hand-over.
            if !matches!(mischief, Mischief::Reorder(_)) {
                assert_eq!(got, (0..200).collect::<Vec<_>>());
            }
        }
        let q = queue(Mischief::FailPop(25));
        stream(&q);
        assert!(
            q.handed_over() > 0,
            "the provider held frames when it failed"
        );
    }

    #[test]
    fn a_frame_the_provider_was_never_given_is_not_written() {
        let q = queue(Mischief::Fabricate(5));
        let got = stream(&q);
        check_lossless(&got);
        assert!(q.provider_failed());
    }

    #[test]
    fn a_well_behaved_queue_keeps_serving_and_the_ledger_ends_empty() {
        let q = queue(Mischief::None);
        assert_eq!(stream(&q), (0..200).collect::<Vec<_>>());
        assert!(!q.provider_failed() && q.ledger().is_empty());
    }

    #[test]
    fn gossip_a_bounded_queue_drops_leaves_the_ledger_too() {
        let q = queue(Mischief::Bounded(4));
        // Nothing popped: the provider keeps 4 gossip frames, and the ledger no more.
        for b in 0..100u32 {
            q.push((b * 5..b * 5 + 5).map(frame).collect());
        }
        {
            let ledger = q.ledger();
            assert_eq!(ledger.gossip.len(), 4);
            assert_eq!(
                ledger.consensus.len(),
                (0..500).filter(|i| i % 3 == 0).count()
            );
        }
        assert_eq!(
            q.dropped(),
            (0..500).filter(|i| i % 3 != 0).count() as u64 - 4
        );
        q.close();
        let mut got = Vec::new();
        while let Popped::Frames(f) = q.pop(64, Duration::ZERO) {
            got.extend(f.iter().map(number));
        }
        assert!(!q.provider_failed(), "dropping reported gossip is allowed");
        let consensus: Vec<u32> = got.iter().copied().filter(|i| i % 3 == 0).collect();
        assert_eq!(
            consensus,
            (0..500).filter(|i| i % 3 == 0).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_failure_under_a_concurrent_writer_loses_no_frame() {
        for fail_at in [5, 40, 90] {
            let q = queue(Mischief::FailPop(fail_at));
            let got = std::thread::scope(|s| {
                let writer = s.spawn(|| {
                    let mut out = Vec::new();
                    let deadline = std::time::Instant::now() + Duration::from_secs(20);
                    while std::time::Instant::now() < deadline {
                        match q.pop(4, Duration::from_millis(1)) {
                            Popped::Frames(f) => out.extend(f.iter().map(number)),
                            Popped::Idle => {}
                            Popped::Closed => return out,
                        }
                    }
                    panic!("the queue never answered Closed after close");
                });
                for b in 0..40u32 {
                    q.push((b * 5..b * 5 + 5).map(frame).collect());
                    std::thread::yield_now();
                }
                q.close();
                writer.join().unwrap()
            });
            check_lossless(&got);
        }
    }
}
