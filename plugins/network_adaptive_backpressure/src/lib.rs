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
use serde::Deserialize;

/// Settings, from the plugin's table in the host configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The gossip window a queue starts with, in bytes.
    pub initial_window_bytes: usize,
    /// The smallest the window shrinks to (at least 4 KiB).
    pub min_window_bytes: usize,
    /// The largest it grows to (at least `min_window_bytes`).
    pub max_window_bytes: usize,
    /// How much a write that found the queue at most half full grows it.
    pub increase_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            initial_window_bytes: 1 << 20,
            min_window_bytes: 64 << 10,
            max_window_bytes: 4 << 20,
            increase_bytes: 16 << 10,
        }
    }
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
        let mut out = Vec::with_capacity(max.min(s.consensus.len() + s.gossip.len()));
        while out.len() < max {
            if let Some(c) = s.consensus.pop_front() {
                out.push(c);
            } else if let Some(g) = s.gossip.pop_front() {
                s.gossip_bytes -= g.frame.len();
                out.push(g);
            } else {
                break;
            }
        }
        Ok(if !out.is_empty() {
            Popped::Frames(out.into())
        } else if s.closed {
            Popped::Closed
        } else {
            Popped::Idle
        })
    }

    fn written(&self, _bytes: u64, _micros: u64) -> Result<(), PluginError> {
        let mut s = self.state();
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
        ] {
            let e = Backpressure::from_config(text).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
