//! `network_adaptive_backpressure`: bounded per-peer send queues for `net.send_queue` (the
//! catalogue row of that name).
//!
//! The baseline queue is one unbounded FIFO per peer: a slow peer's queue grows without
//! limit, and a block or a vote waits behind every transaction gossiped before it. Here:
//!
//! * **Consensus first.** Blocks and votes have a queue of their own, popped before any
//!   gossip; each class leaves in the order pushed. Consensus frames are never dropped (they
//!   are few: a block and a vote per height).
//! * **Bounded gossip.** Gossip is held up to a window of bytes. A push that would pass the
//!   window drops the oldest gossip first (a transaction gossiped long ago is the least
//!   useful to a peer that is behind), and the push answers how many it dropped.
//! * **Adaptive window (AIMD).** The window starts at `initial_window_bytes`. Each time
//!   the writer reports a write (`written`) with the gossip queue at most half full, the
//!   peer keeps up: the window grows by `increase_bytes`, up to `max_window_bytes`. Each
//!   time a push has to drop, the peer does not: the window halves, down to
//!   `min_window_bytes`. Memory held for a peer is therefore at most `max_window_bytes` of
//!   gossip plus its consensus frames, however slow the peer.
//! * **Short pops for a slow peer.** A writer writes everything a pop hands it before it
//!   pops again, so a consensus frame pushed meanwhile waits for the whole group: 256
//!   gossip frames of 1 KiB are a quarter of a second to a peer reading 1 MB/s. The queue
//!   learns the peer's rate from the writer's reports (`written`: bytes and the time their
//!   write took, averaged) and hands out at most `pop_millis` worth of frames per pop:
//!   every consensus frame queued, whatever their size, then gossip while the budget lasts
//!   (a pop of gossip alone holds one frame at least), so the writer is back within about
//!   that time and a block or a vote waits no longer. Before the first report, and for a peer that keeps
//!   up, a pop is as large as asked.

use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex},
    time::Duration,
};

use dubchain_plugin_api::{
    export_plugin, settings,
    slots::{Outgoing, Popped, SendQueue, SendQueues, TrafficClass},
    PluginError,
};

dubchain_plugin_api::declare_settings! {
    /// The gossip window a queue starts with, in bytes.
    initial_window_bytes: usize = 1 << 20,
    /// The smallest the window shrinks to (at least 4 KiB).
    min_window_bytes: usize = 64 << 10,
    /// The largest it grows to (at least `min_window_bytes`).
    max_window_bytes: usize = 4 << 20,
    /// How much a write that found the queue at most half full grows it.
    increase_bytes: usize = 16 << 10,
    /// The most gossip one pop hands out, in milliseconds of the peer's measured rate
    /// (1 to 1,000).
    pop_millis: u64 = 5,
}

/// The factory: validated settings.
#[derive(Debug, Clone)]
pub struct Backpressure {
    s: Settings,
}

impl Backpressure {
    /// From validated `settings`.
    pub fn new(s: Settings) -> Result<Backpressure, PluginError> {
        let min = settings::at_least("min_window_bytes", s.min_window_bytes, 4 << 10)?;
        settings::at_least("max_window_bytes", s.max_window_bytes, min)?;
        settings::within(
            "initial_window_bytes",
            s.initial_window_bytes,
            min..=s.max_window_bytes,
        )?;
        settings::at_least("increase_bytes", s.increase_bytes, 1)?;
        settings::within("pop_millis", s.pop_millis, 1..=1_000)?;
        Ok(Backpressure { s })
    }

    /// From the plugin's configuration table.
    pub fn from_config(config: &str) -> Result<Backpressure, PluginError> {
        Backpressure::new(settings::parse(config)?)
    }
}

impl SendQueues for Backpressure {
    type Queue = PeerQueue;
    fn new_queue(&self, _peer: u32) -> Result<PeerQueue, PluginError> {
        Ok(PeerQueue {
            s: self.s.clone(),
            state: Mutex::new(State {
                window: self.s.initial_window_bytes,
                ..State::default()
            }),
            ready: Condvar::new(),
        })
    }
}

#[derive(Default)]
struct State {
    consensus: VecDeque<Outgoing>,
    gossip: VecDeque<Outgoing>,
    /// Bytes of the frames in `gossip`.
    gossip_bytes: usize,
    window: usize,
    closed: bool,
    /// The peer's drain rate, bytes a second, averaged over the writer's reports; 0 before
    /// the first.
    rate: f64,
}

/// One peer's queue (see the crate docs).
pub struct PeerQueue {
    s: Settings,
    state: Mutex<State>,
    ready: Condvar,
}

impl PeerQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The gossip window now, in bytes.
    pub fn window(&self) -> usize {
        self.state().window
    }

    /// Bytes of gossip held now.
    pub fn gossip_bytes(&self) -> usize {
        self.state().gossip_bytes
    }
}

impl SendQueue for PeerQueue {
    fn push(&self, frames: Vec<Outgoing>) -> Result<u64, PluginError> {
        let mut s = self.state();
        if s.closed {
            return Err(PluginError::invalid_input("push on a closed queue"));
        }
        for o in frames {
            match o.class {
                TrafficClass::Consensus => s.consensus.push_back(o),
                TrafficClass::Gossip => {
                    s.gossip_bytes += o.frame.len();
                    s.gossip.push_back(o);
                }
            }
        }
        let mut dropped = 0u64;
        if s.gossip_bytes > s.window {
            // The peer is not keeping up: halve the window, then drop the oldest gossip
            // until what is held fits it.
            s.window = (s.window / 2).max(self.s.min_window_bytes);
            while s.gossip_bytes > s.window {
                let Some(old) = s.gossip.pop_front() else {
                    break;
                };
                s.gossip_bytes -= old.frame.len();
                dropped += 1;
            }
        }
        drop(s);
        self.ready.notify_one();
        Ok(dropped)
    }

    fn pop(&self, max: u64, wait_ms: u64) -> Result<Popped, PluginError> {
        let mut s = self.state();
        if s.consensus.is_empty() && s.gossip.is_empty() && !s.closed {
            s = self
                .ready
                .wait_timeout(s, Duration::from_millis(wait_ms))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        let max = (max as usize).max(1);
        // Gossip bytes this pop may hand out: `pop_millis` of the peer's rate, once known.
        let mut budget = if s.rate > 0.0 {
            (s.rate * self.s.pop_millis as f64 / 1_000.0) as usize
        } else {
            usize::MAX
        };
        let mut out = Vec::with_capacity(max.min(s.consensus.len() + s.gossip.len()));
        while out.len() < max {
            if let Some(c) = s.consensus.pop_front() {
                // Handed out whatever the budget; what it spends delays the next pop too.
                budget = budget.saturating_sub(c.frame.len());
                out.push(c);
            } else if s.gossip.front().is_some_and(|g| {
                // At least one frame a pop, so gossip always moves.
                g.frame.len() <= budget || out.is_empty()
            }) {
                let g = s.gossip.pop_front().expect("a front frame");
                s.gossip_bytes -= g.frame.len();
                budget = budget.saturating_sub(g.frame.len());
                out.push(g);
            } else {
                break;
            }
        }
        Ok(Popped::of(out, s.closed))
    }

    fn written(&self, bytes: u64, micros: u64) -> Result<(), PluginError> {
        let mut s = self.state();
        if bytes > 0 {
            // A write under a microsecond counts as one: a peer that keeps up shows a
            // rate whose budget is far above any pop.
            let now = bytes as f64 * 1e6 / micros.max(1) as f64;
            s.rate = if s.rate > 0.0 {
                0.75 * s.rate + 0.25 * now
            } else {
                now
            };
        }
        if s.gossip_bytes <= s.window / 2 {
            s.window = (s.window + self.s.increase_bytes).min(self.s.max_window_bytes);
        }
        Ok(())
    }

    fn close(&self) -> Result<(), PluginError> {
        self.state().closed = true;
        self.ready.notify_all();
        Ok(())
    }
}

export_plugin! {
    name: "network_adaptive_backpressure",
    send_queue: Backpressure::from_config,
}

#[cfg(test)]
mod tests {
    use abi_stable::std_types::{RArc, RVec};

    use super::*;

    fn frame(class: TrafficClass, n: usize, tag: u8) -> Outgoing {
        Outgoing {
            class,
            frame: RArc::new(RVec::from(vec![tag; n])),
        }
    }

    fn small() -> PeerQueue {
        Backpressure::new(Settings {
            initial_window_bytes: 8 << 10,
            min_window_bytes: 4 << 10,
            max_window_bytes: 16 << 10,
            increase_bytes: 1 << 10,
            pop_millis: 5,
        })
        .unwrap()
        .new_queue(0)
        .unwrap()
    }

    #[test]
    fn gossip_is_held_within_the_window_and_consensus_is_never_dropped() {
        let q = small();
        let mut dropped = 0;
        for i in 0..1_000u32 {
            dropped += q
                .push(vec![
                    frame(TrafficClass::Gossip, 200, i as u8),
                    frame(TrafficClass::Consensus, 100, i as u8),
                ])
                .unwrap();
            assert!(q.gossip_bytes() <= 16 << 10);
        }
        assert_eq!(
            q.window(),
            4 << 10,
            "a peer that never drains: the window at its floor"
        );
        assert!(dropped > 900);
        q.close().unwrap();
        let mut consensus = 0;
        let mut seen_gossip = false;
        while let Popped::Frames(f) = q.pop(64, 0).unwrap() {
            for o in f.iter() {
                match o.class {
                    TrafficClass::Consensus => {
                        assert!(!seen_gossip, "consensus first");
                        assert_eq!(o.frame[0], consensus as u8, "in order");
                        consensus += 1;
                    }
                    TrafficClass::Gossip => seen_gossip = true,
                }
            }
        }
        assert_eq!(consensus, 1_000);
    }

    #[test]
    fn a_peer_that_keeps_up_grows_the_window_to_its_ceiling() {
        let q = small();
        for _ in 0..100 {
            q.push(vec![frame(TrafficClass::Gossip, 100, 0)]).unwrap();
            let _ = q.pop(16, 0).unwrap();
            q.written(100, 10).unwrap();
        }
        assert_eq!(q.window(), 16 << 10);
    }

    /// A peer measured at 100 KB/s gets 500 bytes a pop (5 ms of it), one frame at least;
    /// consensus frames are all handed out whatever the budget, and spend it; a fast peer's
    /// pops are as large as asked.
    #[test]
    fn a_slow_peers_pops_hold_a_few_milliseconds_of_gossip() {
        let q = small();
        let gossip = |n| {
            (0..n)
                .map(|i| frame(TrafficClass::Gossip, 200, i))
                .collect()
        };
        q.push(gossip(20)).unwrap();
        assert!(
            matches!(q.pop(256, 0).unwrap(), Popped::Frames(f) if f.len() == 20),
            "no report yet: as asked"
        );
        q.written(100_000, 1_000_000).unwrap();
        q.push(gossip(20)).unwrap();
        let Popped::Frames(f) = q.pop(256, 0).unwrap() else {
            panic!("frames were queued")
        };
        assert_eq!(f.len(), 2, "500 bytes of 200-byte frames");
        q.push(vec![
            frame(TrafficClass::Consensus, 5_000, 1),
            frame(TrafficClass::Consensus, 5_000, 2),
        ])
        .unwrap();
        let Popped::Frames(f) = q.pop(256, 0).unwrap() else {
            panic!("frames were queued")
        };
        let classes: Vec<_> = f.iter().map(|o| o.class).collect();
        assert_eq!(
            classes,
            [TrafficClass::Consensus, TrafficClass::Consensus,],
            "every consensus frame, and no gossip past the budget they spent"
        );
        // The peer speeds up (writes of 64 KiB in 10 us): the average recovers and the
        // budget passes what is queued.
        for _ in 0..20 {
            q.written(64 << 10, 10).unwrap();
        }
        let Popped::Frames(f) = q.pop(256, 0).unwrap() else {
            panic!("frames were queued")
        };
        assert_eq!(f.len(), 18, "the rest at once");
    }

    #[test]
    fn settings_out_of_bounds_are_refused_naming_the_key() {
        for (text, key) in [
            ("min_window_bytes = 10\n", "min_window_bytes"),
            (
                "max_window_bytes = 70000\nmin_window_bytes = 80000\n",
                "max_window_bytes",
            ),
            ("initial_window_bytes = 1\n", "initial_window_bytes"),
            ("increase_bytes = 0\n", "increase_bytes"),
            ("pop_millis = 0\n", "pop_millis"),
        ] {
            let e = Backpressure::from_config(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
