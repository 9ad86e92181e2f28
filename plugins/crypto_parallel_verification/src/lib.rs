//! `crypto_parallel_verification`: strict ed25519 verdicts, computed across cores.
//!
//! The batch is split into chunks that rayon verifies in parallel. Within a chunk, items
//! that are provably safe to batch go through one ed25519 batch verification; if the batch
//! fails, each of them is verified on its own, so the verdicts stay exact. Every other item
//! is verified on its own with `verify_strict`, which is the baseline's definition.
//!
//! # When batching is exact
//!
//! Batch verification checks a random linear combination of the cofactorless equations
//! `[s]B = R + [k]A`. For points with a small-order component, the combination can cancel
//! that component (with probability 1/2 for an order-2 component), so a batch can accept a
//! signature that `verify_strict` rejects: a consensus split. An item is therefore batched
//! only when `s` is canonical, `A` and `R` decode from canonical encodings, and both are
//! torsion-free. Torsion-freeness of `A` is cached per key (keys repeat: they are
//! accounts); that of `R` costs a scalar multiplication per item, which is why batching is
//! off by default: on the machines we measured, plain parallel strict verification is
//! faster (see `docs/benchmarks.md`). Turn it on with `batch = true`.

use std::{collections::HashMap, sync::RwLock};

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use dubchain_plugin_api::{
    export_plugin, settings,
    slots::{Next, SigVerify},
    types::SigItem,
    PluginError,
};
use ed25519_dalek::{Signature, VerifyingKey};
use rayon::prelude::*;
use serde::Deserialize;

/// Settings, from the plugin's table in the host configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Items per parallel task.
    pub chunk: usize,
    /// Use batch verification for provably safe items.
    pub batch: bool,
    /// Most keys remembered as torsion-free.
    pub key_cache: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            chunk: 32,
            batch: false,
            key_cache: 65_536,
        }
    }
}

/// The verifier.
pub struct ParallelVerifier {
    settings: Settings,
    /// Keys known to decode canonically to a torsion-free point.
    safe_keys: RwLock<HashMap<[u8; 32], bool>>,
}

impl ParallelVerifier {
    pub fn new(settings: Settings) -> Result<Self, PluginError> {
        if settings.chunk == 0 {
            return Err(PluginError::invalid_input("chunk must be at least 1"));
        }
        Ok(ParallelVerifier {
            settings,
            safe_keys: RwLock::new(HashMap::new()),
        })
    }

    pub fn from_config(config: &str) -> Result<Self, PluginError> {
        ParallelVerifier::new(settings::parse(config)?)
    }

    /// Strict verdicts for `items`.
    pub fn verify(&self, items: &[SigItem<'_>]) -> Vec<bool> {
        let chunk = self.settings.chunk;
        if items.len() <= chunk {
            return self.verify_chunk(items);
        }
        items
            .par_chunks(chunk)
            .flat_map_iter(|c| self.verify_chunk(c))
            .collect()
    }

    fn verify_chunk(&self, items: &[SigItem<'_>]) -> Vec<bool> {
        if !self.settings.batch {
            return items.iter().map(verify_strict).collect();
        }
        let mut verdicts = vec![false; items.len()];
        let mut batched = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if self.batch_safe(item) {
                batched.push(i);
            } else {
                verdicts[i] = verify_strict(item);
            }
        }
        let messages: Vec<&[u8]> = batched
            .iter()
            .map(|&i| items[i].message.as_slice())
            .collect();
        let signatures: Vec<Signature> = batched
            .iter()
            .map(|&i| Signature::from_bytes(&items[i].signature))
            .collect();
        let keys: Option<Vec<VerifyingKey>> = batched
            .iter()
            .map(|&i| VerifyingKey::from_bytes(&items[i].public_key).ok())
            .collect();
        let all_valid = match keys {
            Some(keys) if !batched.is_empty() => {
                ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
            }
            _ => false,
        };
        for &i in &batched {
            verdicts[i] = all_valid || verify_strict(&items[i]);
        }
        verdicts
    }

    /// Whether batching `item` cannot change its verdict (see the crate docs).
    fn batch_safe(&self, item: &SigItem<'_>) -> bool {
        let s: [u8; 32] = item.signature[32..].try_into().expect("32 bytes");
        if curve25519_dalek::Scalar::from_canonical_bytes(s)
            .is_none()
            .into()
        {
            return false;
        }
        let r: [u8; 32] = item.signature[..32].try_into().expect("32 bytes");
        self.key_is_safe(&item.public_key) && decode_torsion_free(&r).is_some()
    }

    fn key_is_safe(&self, key: &[u8; 32]) -> bool {
        if let Some(&safe) = self
            .safe_keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return safe;
        }
        let safe = decode_torsion_free(key).is_some();
        let mut cache = self.safe_keys.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= self.settings.key_cache {
            cache.clear();
        }
        cache.insert(*key, safe);
        safe
    }
}

/// The point encoded by `bytes`, if the encoding is canonical and the point is
/// torsion-free and not the identity.
fn decode_torsion_free(bytes: &[u8; 32]) -> Option<EdwardsPoint> {
    let point = CompressedEdwardsY(*bytes).decompress()?;
    (point.compress().0 == *bytes && !point.is_small_order() && point.is_torsion_free())
        .then_some(point)
}

/// The slot's definition of a verdict (the API's one definition).
use dubchain_plugin_api::sig::verify_item as verify_strict;

impl SigVerify for ParallelVerifier {
    fn verify_batch(
        &self,
        items: &[SigItem<'_>],
        _next: &Next<'_>,
    ) -> Result<Vec<bool>, PluginError> {
        Ok(self.verify(items))
    }
}

export_plugin! {
    name: "crypto_parallel_verification",
    sig_verify: ParallelVerifier::from_config,
}
