//! Shadow checking: a sample of the calls of the stateless slots is answered again by the
//! baseline, off the hot path, and the two answers compared.
//!
//! On a sampled call the slot copies the inputs and the provider's answer, with the time
//! the provider took, into a bounded queue ([`Shadow::offer`]; a full queue drops the
//! sample and counts it: the node never waits for the checker). A thread of its own runs the
//! baseline on the copy, timing it, and compares:
//!
//! - **a different answer** demotes the provider at once (its breaker stays open until
//!   the plugin is loaded again, so its slot answers from below), writes the evidence
//!   (inputs, both answers) as JSON under the evidence directory, and is recorded;
//! - **the same answer** adds the pair of times to the provider's window, from which the
//!   monitor estimates its live speed-up against the baseline ([`Shadow::windows`]).
//!
//! Which slots: those whose calls are plain data in and out, with one right answer
//! ([`REPLAYED`]). The others are listed with the reason in [`NOT_REPLAYED`].

use std::{
    collections::{BTreeMap, VecDeque},
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use dubchain_plugin_api::{
    abi_stable::std_types::RSlice,
    slots::{MERKLE, SIG_VERIFY, TX_DECODE, VOTE_VERIFY},
    types::{hex_encode, Bytes32, SigItem, Transaction, VoteItem},
};
use serde::Serialize;

use crate::baseline;

/// The slots whose calls are shadow-checked.
pub const REPLAYED: [&str; 4] = [SIG_VERIFY.id, VOTE_VERIFY.id, MERKLE.id, TX_DECODE.id];

/// The slots whose calls are not, and why.
pub const NOT_REPLAYED: &[(&str, &str)] = &[
    ("storage.record_codec", "a codec's bytes are its own format, not the baseline's; stored records are checked by decoding them"),
    ("exec.block_execution", "runs on the block's state through host callbacks; replaying needs a copy of the state"),
    ("exec.tx_validation", "reads account state that later blocks change"),
    ("consensus.block_validation", "replays blocks on a store; a second replay needs a second store"),
    ("consensus.vote_tally", "an object that lives across calls; its answers depend on every earlier vote"),
    ("mempool.tx_pool", "an object that lives across calls"),
    ("mem.buffer_pool", "hands out buffers; nothing to compare"),
    ("mem.block_reclaim", "frees blocks; nothing to compare"),
    ("net.broadcast", "writes frames for peers; checked by the peers' decoding"),
    ("net.send_queue", "an object that lives across calls"),
    ("net.frame_send", "writes to a socket"),
    ("net.transport", "owns the node's connections"),
    ("storage.account_read", "a cache over the store; its answers depend on every earlier write"),
    ("storage.block_commit", "holds a block's writes until its commit"),
    ("storage.durability", "syncs the store's log"),
    ("storage.state_root", "keeps the state tree across blocks"),
    ("vm.module_cache", "runs contracts against state"),
    ("vm.metering", "a provider's rewrite is its own bytes (another counter); what must agree is the gas of every run, which comparing the rewritten code cannot show"),
    ("vm.code_loader", "reads contract code from the store"),
    ("vm.contract_state", "a cache over the store"),
];

/// Settings of shadow checking.
#[derive(Debug, Clone)]
pub struct ShadowConfig {
    /// One call in this many (on average, drawn at random) is checked; 0 turns it off.
    pub every: u32,
    /// Samples waiting for the checker at most; more are dropped (counted).
    pub queue: usize,
    /// Where evidence of a differing answer is written.
    pub evidence_dir: PathBuf,
    /// How many speed-up samples of each provider are kept (the newest).
    pub window: usize,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            every: 100,
            queue: 64,
            evidence_dir: PathBuf::from("shadow-evidence"),
            window: 200,
        }
    }
}

/// A provider as the checker knows it: enough to name it and to demote it.
pub trait Checked: Send + Sync {
    fn plugin(&self) -> &str;
    fn version(&self) -> &str;
    /// Takes the provider out of its slot until it is loaded again, saying why.
    fn demote(&self, why: String);
}

/// What a sampled call asked, and what the provider answered.
pub(crate) enum Call {
    Sig(Signed<32, 64>),
    Votes(Signed<48, 96>),
    Merkle {
        trees: Vec<Vec<Bytes32>>,
        answer: Vec<Bytes32>,
    },
    TxDecode {
        payloads: Vec<Vec<u8>>,
        answer: Vec<Result<Transaction, String>>,
    },
}

impl Call {
    pub(crate) fn sig(items: &[SigItem<'_>], answer: &[bool]) -> Call {
        let parts = items
            .iter()
            .map(|i| (i.public_key, i.signature, &i.message[..]));
        Call::Sig(Signed::copy(parts, answer))
    }

    pub(crate) fn votes(items: &[VoteItem<'_>], answer: &[bool]) -> Call {
        let parts = items
            .iter()
            .map(|i| (i.public_key, i.signature, &i.message[..]));
        Call::Votes(Signed::copy(parts, answer))
    }

    pub(crate) fn merkle(trees: &[&[Bytes32]], answer: &[Bytes32]) -> Call {
        Call::Merkle {
            trees: trees.iter().map(|t| t.to_vec()).collect(),
            answer: answer.to_vec(),
        }
    }

    pub(crate) fn tx_decode(payloads: &[&[u8]], answer: &[Result<Transaction, String>]) -> Call {
        Call::TxDecode {
            payloads: payloads.iter().map(|p| p.to_vec()).collect(),
            answer: answer.to_vec(),
        }
    }

    /// The slot the call was made to.
    fn slot(&self) -> &'static str {
        match self {
            Call::Sig(_) => SIG_VERIFY.id,
            Call::Votes(_) => VOTE_VERIFY.id,
            Call::Merkle { .. } => MERKLE.id,
            Call::TxDecode { .. } => TX_DECODE.id,
        }
    }
}

struct Job {
    provider: Arc<dyn Checked>,
    took: Duration,
    call: Call,
}

/// A differing answer, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub slot: String,
    pub plugin: String,
    pub version: String,
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// The evidence file (`None` if it could not be written; the message says why).
    pub evidence: Option<PathBuf>,
    pub detail: String,
}

/// One provider's checks and its newest pairs of times.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Window {
    pub slot: String,
    pub plugin: String,
    pub version: String,
    pub checked: u64,
    pub mismatches: u64,
    /// Baseline time / provider time of each of the newest agreeing samples.
    pub speedups: Vec<f64>,
}

#[derive(Default)]
struct Tally {
    checked: u64,
    mismatches: u64,
    speedups: VecDeque<f64>,
}

/// Counts of the whole checker.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ShadowCounts {
    pub sampled: u64,
    pub dropped: u64,
    pub checked: u64,
    pub mismatches: u64,
}

struct Shared {
    config: ShadowConfig,
    sampled: AtomicU64,
    dropped: AtomicU64,
    checked: AtomicU64,
    mismatches: AtomicU64,
    tallies: Mutex<BTreeMap<(String, String, String), Tally>>,
    recorded: Mutex<Vec<Mismatch>>,
}

/// The checker: the queue, its thread and what it found.
pub struct Shadow {
    tx: Mutex<Option<mpsc::SyncSender<Job>>>,
    shared: Arc<Shared>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
}

thread_local! {
    static RNG: std::cell::Cell<u64> = std::cell::Cell::new({
        // A per-thread seed; the draw needs no quality beyond not aliasing call patterns.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (t.as_nanos() as u64) ^ (&t as *const _ as u64) | 1
    });
}

/// Whether this call is one of the one-in-`every` sampled (xorshift draw, per thread).
#[inline]
pub(crate) fn draw(every: u32) -> bool {
    every != 0
        && RNG.with(|r| {
            let mut x = r.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            r.set(x);
            x % u64::from(every) == 0
        })
}

impl Shadow {
    /// Starts the checker's thread.
    pub fn start(config: ShadowConfig) -> std::io::Result<Arc<Shadow>> {
        let (tx, rx) = mpsc::sync_channel::<Job>(config.queue.max(1));
        let shared = Arc::new(Shared {
            config,
            sampled: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            checked: AtomicU64::new(0),
            mismatches: AtomicU64::new(0),
            tallies: Mutex::new(BTreeMap::new()),
            recorded: Mutex::new(Vec::new()),
        });
        let worker = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("shadow-check".into())
                .spawn(move || {
                    for job in rx {
                        shared.check(job);
                    }
                })?
        };
        Ok(Arc::new(Shadow {
            tx: Mutex::new(Some(tx)),
            shared,
            worker: Mutex::new(Some(worker)),
        }))
    }

    /// One call in how many is sampled.
    pub fn every(&self) -> u32 {
        self.shared.config.every
    }

    /// Queues a sampled call for the checker: what `provider` was asked and answered, and
    /// how long it took.
    pub(crate) fn offer(&self, provider: Arc<dyn Checked>, took: Duration, call: Call) {
        let job = Job {
            provider,
            took,
            call,
        };
        self.shared.sampled.fetch_add(1, Relaxed);
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let sent = tx.as_ref().is_some_and(|tx| tx.try_send(job).is_ok());
        if !sent {
            self.shared.dropped.fetch_add(1, Relaxed);
        }
    }

    pub fn counts(&self) -> ShadowCounts {
        let s = &self.shared;
        ShadowCounts {
            sampled: s.sampled.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            checked: s.checked.load(Relaxed),
            mismatches: s.mismatches.load(Relaxed),
        }
    }

    /// Every provider checked so far, with its newest speed-ups.
    pub fn windows(&self) -> Vec<Window> {
        let tallies = self
            .shared
            .tallies
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        tallies
            .iter()
            .map(|((slot, plugin, version), t)| Window {
                slot: slot.clone(),
                plugin: plugin.clone(),
                version: version.clone(),
                checked: t.checked,
                mismatches: t.mismatches,
                speedups: t.speedups.iter().copied().collect(),
            })
            .collect()
    }

    /// Forgets the speed-ups of `plugin` (after it was rolled back or reloaded).
    pub fn forget(&self, plugin: &str) {
        let mut tallies = self
            .shared
            .tallies
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for ((_, p, _), t) in tallies.iter_mut() {
            if p == plugin {
                t.speedups.clear();
            }
        }
    }

    /// Every differing answer found so far.
    pub fn mismatches(&self) -> Vec<Mismatch> {
        self.shared
            .recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until every sample queued so far has been checked, a mismatch's provider
    /// demoted and its evidence written (for tests and shutdown).
    pub fn drain(&self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let c = self.counts();
            if c.checked + c.dropped >= c.sampled {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = w.join();
        }
    }
}

impl Shared {
    fn check(&self, job: Job) {
        let began = Instant::now();
        // `None` if the answers agree, else the evidence.
        let mismatch = match &job.call {
            Call::Sig(call) => call.replay(SigItem::new, |v| baseline::sig_verify(v)),
            Call::Votes(call) => call.replay(VoteItem::new, |v| baseline::verify_votes(v)),
            Call::Merkle { trees, answer } => {
                let expected: Vec<Bytes32> =
                    trees.iter().map(|t| baseline::merkle_root(t)).collect();
                // Hashes serialise as hex.
                let differ = differ_at(&expected, answer, |a, b| a == b);
                (!differ.is_empty()).then(|| {
                    serde_json::json!({
                        "trees": trees,
                        "baseline": expected,
                        "provider": answer,
                        "differ_at": differ,
                    })
                })
            }
            Call::TxDecode { payloads, answer } => {
                let views: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                let expected = baseline::decode_txs(&views);
                // The same transaction, or both refusing (the reasons' words are the
                // provider's own).
                let differ = differ_at(&expected, answer, |a, b| match (a, b) {
                    (Ok(x), Ok(y)) => x == y,
                    (Err(_), Err(_)) => true,
                    _ => false,
                });
                let show = |v: &[Result<Transaction, String>]| {
                    v.iter()
                        .map(|r| match r {
                            Ok(tx) => format!("tx {:?}", dubchain_plugin_api::chain::tx_hash(tx)),
                            Err(e) => format!("refused: {e}"),
                        })
                        .collect::<Vec<_>>()
                };
                (!differ.is_empty()).then(|| {
                    serde_json::json!({
                        "payloads": payloads.iter().map(|p| hex_encode(p)).collect::<Vec<_>>(),
                        "baseline": show(&expected),
                        "provider": show(answer),
                        "differ_at": differ,
                    })
                })
            }
        };
        let baseline_took = began.elapsed();
        let key = (
            job.call.slot().to_owned(),
            job.provider.plugin().to_owned(),
            job.provider.version().to_owned(),
        );
        let mut tallies = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let tally = tallies.entry(key).or_default();
        tally.checked += 1;
        let Some(evidence) = mismatch else {
            if !job.took.is_zero() {
                if tally.speedups.len() == self.config.window.max(1) {
                    tally.speedups.pop_front();
                }
                tally
                    .speedups
                    .push_back(baseline_took.as_secs_f64() / job.took.as_secs_f64());
            }
            drop(tallies);
            self.checked.fetch_add(1, Relaxed);
            return;
        };
        tally.mismatches += 1;
        drop(tallies);
        self.mismatches.fetch_add(1, Relaxed);
        self.record(&job, evidence);
        // Counted last, so that `drain` returns only once a mismatch's provider is demoted
        // and its evidence written.
        self.checked.fetch_add(1, Relaxed);
    }

    /// Demotes the provider, writes the evidence and records the mismatch.
    fn record(&self, job: &Job, body: serde_json::Value) {
        let p = &job.provider;
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let dir = &self.config.evidence_dir;
        let path = dir.join(format!(
            "{}-{}-{}-{}.json",
            job.call.slot(),
            p.plugin(),
            p.version(),
            at.as_millis()
        ));
        let document = serde_json::json!({
            "slot": job.call.slot(),
            "plugin": p.plugin(),
            "version": p.version(),
            "at_unix_s": at.as_secs_f64(),
            "call": body,
        });
        let written = std::fs::create_dir_all(dir).and_then(|()| {
            std::fs::write(
                &path,
                serde_json::to_vec_pretty(&document).unwrap_or_default(),
            )
        });
        let (evidence, detail) = match written {
            Ok(()) => (
                Some(path.clone()),
                format!("evidence in {}", path.display()),
            ),
            Err(e) => (
                None,
                format!(
                    "the evidence could not be written to {}: {e}",
                    path.display()
                ),
            ),
        };
        let why = format!(
            "answered a {} call differently from the baseline on a shadow check; {detail}",
            job.call.slot()
        );
        tracing::error!(
            slot = job.call.slot(),
            plugin = p.plugin(),
            "{why}; demoted until it is loaded again"
        );
        p.demote(why.clone());
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Mismatch {
                slot: job.call.slot().to_owned(),
                plugin: p.plugin().to_owned(),
                version: p.version().to_owned(),
                at: at.as_secs_f64(),
                evidence,
                detail: why,
            });
    }
}

/// A call of signed items (keys of `K` bytes, signatures of `S`, messages), copied, and
/// the provider's verdicts.
pub(crate) struct Signed<const K: usize, const S: usize> {
    items: Vec<([u8; K], [u8; S], Vec<u8>)>,
    answer: Vec<bool>,
}

impl<const K: usize, const S: usize> Signed<K, S> {
    fn copy<'a>(
        items: impl Iterator<Item = ([u8; K], [u8; S], &'a [u8])>, answer: &[bool],
    ) -> Self {
        Signed {
            items: items.map(|(k, s, m)| (k, s, m.to_vec())).collect(),
            answer: answer.to_vec(),
        }
    }

    /// The baseline's verdicts on the items (rebuilt by `item`) against the provider's:
    /// `None` if they agree, else the evidence (every input in hex, both answers).
    fn replay<'a, T>(
        &'a self, item: impl Fn([u8; K], [u8; S], RSlice<'a, u8>) -> T,
        baseline: impl Fn(&[T]) -> Vec<bool>,
    ) -> Option<serde_json::Value> {
        let views: Vec<T> = self
            .items
            .iter()
            .map(|(key, signature, message)| item(*key, *signature, message.as_slice().into()))
            .collect();
        let (expected, answer) = (baseline(&views), &self.answer);
        let differ = differ_at(&expected, answer, |a, b| a == b);
        (!differ.is_empty()).then(|| {
            let items: Vec<_> = self
                .items
                .iter()
                .map(|(key, signature, message)| {
                    serde_json::json!({
                        "public_key": hex_encode(key),
                        "signature": hex_encode(signature),
                        "message": hex_encode(message),
                    })
                })
                .collect();
            serde_json::json!({
                "items": items,
                "baseline": expected,
                "provider": answer,
                "differ_at": differ,
            })
        })
    }
}

/// The positions where `a` and `b` disagree (`same` says when two answers agree); answers
/// of different lengths differ from the shorter one's end.
fn differ_at<T>(a: &[T], b: &[T], same: impl Fn(&T, &T) -> bool) -> Vec<usize> {
    let mut differ: Vec<usize> = a
        .iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| !same(x, y))
        .map(|(i, _)| i)
        .collect();
    if a.len() != b.len() {
        differ.push(a.len().min(b.len()));
    }
    differ
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draw_samples_about_one_call_in_every() {
        let hits = (0..100_000).filter(|_| draw(100)).count();
        assert!((700..1300).contains(&hits), "{hits}");
        assert!(!(0..1000).any(|_| draw(0)), "0 is off");
    }

    #[test]
    fn every_slot_is_replayed_or_says_why_not() {
        for s in dubchain_plugin_api::slots::ALL {
            let replayed = REPLAYED.contains(&s.id);
            let why = NOT_REPLAYED.iter().any(|(id, _)| *id == s.id);
            assert!(
                replayed != why,
                "{}: replayed {replayed}, listed as not {why}",
                s.id
            );
        }
    }
}
