//! `crypto_verification_caching`: remembers signatures that verified, so a transaction seen
//! in the mempool is not verified again when its block is validated.
//!
//! A layer of `crypto.sig_verify`: items found in the cache are answered `true`; the rest go
//! to the layer below (`next`: the parallel verifier, or the baseline), whose verdicts are
//! returned unchanged. Only items the layer below found **valid** are remembered, so the
//! cache can never turn an invalid signature into a valid one except by a SHA-256
//! collision: entries are keyed by `sha256(salt || key || signature || message)`, with a
//! random salt per instance so no one can precompute colliding inputs. The cache is bounded
//! (`capacity` entries, oldest evicted first).

use std::{
    collections::{HashSet, VecDeque},
    sync::Mutex,
};

use dubchain_plugin_api::slots::{Next, SigVerify};
use dubchain_plugin_api::{export_plugin, settings, types::SigItem, PluginError};
use sha2_detected::{Digest, Sha256};

dubchain_plugin_api::declare_settings! {
    /// Most signatures remembered.
    capacity: usize = 200_000,
}

#[derive(Default)]
struct Entries {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

/// The cache.
pub struct VerificationCache {
    salt: [u8; 32],
    capacity: usize,
    entries: Mutex<Entries>,
}

impl VerificationCache {
    pub fn new(settings: Settings) -> Result<Self, PluginError> {
        if settings.capacity == 0 {
            return Err(PluginError::invalid_input("capacity must be at least 1"));
        }
        Ok(VerificationCache {
            salt: rand::random(),
            capacity: settings.capacity,
            entries: Mutex::default(),
        })
    }

    pub fn from_config(config: &str) -> Result<Self, PluginError> {
        VerificationCache::new(settings::parse(config)?)
    }

    fn key(&self, item: &SigItem<'_>) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(item.public_key);
        h.update(item.signature);
        h.update((item.message.len() as u64).to_le_bytes());
        h.update(item.message.as_slice());
        h.finalize().into()
    }

    /// Verdicts for `items`, asking `below` only for those not remembered.
    pub fn verify(
        &self, items: &[SigItem<'_>],
        below: impl FnOnce(&[SigItem<'_>]) -> Result<Vec<bool>, PluginError>,
    ) -> Result<Vec<bool>, PluginError> {
        let keys: Vec<[u8; 32]> = items.iter().map(|i| self.key(i)).collect();
        let mut verdicts = vec![false; items.len()];
        let mut misses = Vec::new();
        {
            let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            for (i, k) in keys.iter().enumerate() {
                if entries.set.contains(k) {
                    verdicts[i] = true;
                } else {
                    misses.push(i);
                }
            }
        }
        if misses.is_empty() {
            return Ok(verdicts);
        }
        let asked: Vec<SigItem<'_>> = misses.iter().map(|&i| items[i]).collect();
        let answers = below(&asked)?;
        if answers.len() != asked.len() {
            return Err(PluginError::failed(
                "the layer below gave the wrong number of verdicts",
            ));
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        for (&i, ok) in misses.iter().zip(answers) {
            verdicts[i] = ok;
            if ok && entries.set.insert(keys[i]) {
                entries.order.push_back(keys[i]);
                while entries.order.len() > self.capacity {
                    if let Some(old) = entries.order.pop_front() {
                        entries.set.remove(&old);
                    }
                }
            }
        }
        Ok(verdicts)
    }
}

impl SigVerify for VerificationCache {
    fn verify_batch(
        &self, items: &[SigItem<'_>], next: &Next<'_>,
    ) -> Result<Vec<bool>, PluginError> {
        self.verify(items, |asked| next.verify_batch(asked))
    }
}

export_plugin! {
    name: "crypto_verification_caching",
    sig_verify: VerificationCache::from_config,
}
