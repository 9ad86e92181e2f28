//! `crypto_hardware_acceleration`: RFC 6962 Merkle roots with the CPU's SHA-256
//! instructions, chosen at run time.
//!
//! # Dispatch
//!
//! At construction the plugin asks the CPU (`is_x86_feature_detected!`) and picks, in
//! order: **SHA-NI** (the `sha256rnds2`/`sha256msg1`/`sha256msg2` instructions), with two
//! independent messages in flight so the two-cycle latency of each round instruction is
//! hidden (multi-buffer); **AVX2**, eight messages in the eight 32-bit lanes of a 256-bit
//! register; or the **portable** code (the `sha2` crate built with `force-soft`, which is
//! what the host's baseline runs). `engine = "sha_ni" | "avx2" | "portable" | "auto"` in the
//! plugin's configuration forces one (an engine the CPU lacks is an init error).
//!
//! # Why the baseline stays portable
//!
//! `sha2` on x86 selects SHA-NI by itself at run time. Left alone, the host's "portable"
//! baseline would silently use the same instructions, and this plugin would measure
//! against itself. The workspace therefore builds `sha2` with `force-soft` (see the root
//! `Cargo.toml`), and the accelerated kernels live here, behind `#[target_feature]`, where
//! feature unification cannot reach them.
//!
//! # The tree
//!
//! Level by level: leaves are `SHA-256(0x00 || leaf)` (one 64-byte block), nodes
//! `SHA-256(0x01 || left || right)` (two blocks); an odd node at the end of a level moves
//! up unchanged. That is RFC 6962's tree: its split at the largest power of two below `n`
//! makes every left subtree perfect, which is exactly the left-filled tree built bottom-up.
//! Levels with many nodes are split across cores with rayon.

use abi_stable::std_types::RSlice;
use dubchain_plugin_api::{export_plugin, settings, slots::Merkle, types::Bytes32, PluginError};
use rayon::prelude::*;
use serde::Deserialize;

mod avx2;
mod shani;

/// The SHA-256 initial state.
pub(crate) const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// The SHA-256 round constants.
pub(crate) const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// Which SHA-256 implementation hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    ShaNi,
    Avx2,
    Portable,
}

impl Engine {
    /// The best engine this CPU has.
    pub fn detect() -> Engine {
        #[cfg(target_arch = "x86_64")]
        {
            if shani::available() {
                return Engine::ShaNi;
            }
            if avx2::available() {
                return Engine::Avx2;
            }
        }
        Engine::Portable
    }

    fn available(self) -> bool {
        match self {
            Engine::ShaNi => shani::available(),
            Engine::Avx2 => avx2::available(),
            Engine::Portable => true,
        }
    }
}

/// One 64-byte message block.
pub(crate) type Block = [u8; 64];

/// The padded blocks of `0x00 || leaf` (33 bytes: one block).
fn leaf_block(leaf: &[u8; 32]) -> Block {
    let mut b = [0u8; 64];
    b[1..33].copy_from_slice(leaf);
    b[33] = 0x80;
    b[56..].copy_from_slice(&(33u64 * 8).to_be_bytes());
    b
}

/// The padded blocks of `0x01 || left || right` (65 bytes: two blocks).
fn node_blocks(left: &[u8; 32], right: &[u8; 32]) -> [Block; 2] {
    let mut a = [0u8; 64];
    let mut b = [0u8; 64];
    a[0] = 1;
    a[1..33].copy_from_slice(left);
    a[33..64].copy_from_slice(&right[..31]);
    b[0] = right[31];
    b[1] = 0x80;
    b[56..].copy_from_slice(&(65u64 * 8).to_be_bytes());
    [a, b]
}

fn digest_of(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// Hashes messages of `n` padded blocks each (all the same length), writing digests.
fn hash_many<const N: usize>(engine: Engine, messages: &[[Block; N]], out: &mut [[u8; 32]]) {
    match engine {
        #[cfg(target_arch = "x86_64")]
        Engine::ShaNi => {
            let mut pairs = messages.chunks_exact(2);
            let mut outs = out.chunks_exact_mut(2);
            for (m, o) in (&mut pairs).zip(&mut outs) {
                let mut s = [H0, H0];
                #[allow(clippy::needless_range_loop)] // block i of both messages
                for i in 0..N {
                    // SAFETY: `shani::available()` was checked when the engine was chosen.
                    unsafe { shani::compress2(&mut s, [&m[0][i], &m[1][i]]) };
                }
                o[0] = digest_of(&s[0]);
                o[1] = digest_of(&s[1]);
            }
            for (m, o) in pairs.remainder().iter().zip(outs.into_remainder()) {
                let mut s = H0;
                for b in m {
                    // SAFETY: as above.
                    unsafe { shani::compress1(&mut s, b) };
                }
                *o = digest_of(&s);
            }
        }
        #[cfg(target_arch = "x86_64")]
        Engine::Avx2 => {
            let mut groups = messages.chunks_exact(8);
            let mut outs = out.chunks_exact_mut(8);
            for (m, o) in (&mut groups).zip(&mut outs) {
                let mut s = [H0; 8];
                #[allow(clippy::needless_range_loop)] // block i of all eight messages
                for i in 0..N {
                    let blocks: [&Block; 8] = std::array::from_fn(|l| &m[l][i]);
                    // SAFETY: `avx2::available()` was checked when the engine was chosen.
                    unsafe { avx2::compress8(&mut s, blocks) };
                }
                for (d, st) in o.iter_mut().zip(&s) {
                    *d = digest_of(st);
                }
            }
            portable_many(groups.remainder(), outs.into_remainder());
        }
        _ => portable_many(messages, out),
    }
}

fn portable_many<const N: usize>(messages: &[[Block; N]], out: &mut [[u8; 32]]) {
    for (m, o) in messages.iter().zip(out) {
        let mut s = H0;
        sha2::compress256(
            &mut s,
            m.map(sha2::digest::generic_array::GenericArray::from)
                .as_slice(),
        );
        *o = digest_of(&s);
    }
}

/// Below this many hashes in a level, one core does it.
const PARALLEL_MIN: usize = 512;
/// Hashes per rayon task.
const CHUNK: usize = 256;

/// The Merkle tree over level-by-level hashing.
pub struct Accelerated {
    engine: Engine,
}

impl Accelerated {
    pub fn new(engine: Engine) -> Self {
        Accelerated { engine }
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    fn hash_level<const N: usize>(&self, messages: Vec<[Block; N]>) -> Vec<[u8; 32]> {
        let mut out = vec![[0u8; 32]; messages.len()];
        if messages.len() >= PARALLEL_MIN {
            out.par_chunks_mut(CHUNK)
                .zip(messages.par_chunks(CHUNK))
                .for_each(|(o, m)| hash_many(self.engine, m, o));
        } else {
            hash_many(self.engine, &messages, &mut out);
        }
        out
    }

    /// The RFC 6962 root of `leaves`.
    pub fn root(&self, leaves: &[Bytes32]) -> Bytes32 {
        if leaves.is_empty() {
            use sha2::Digest;
            return Bytes32(sha2::Sha256::digest([]).into());
        }
        let mut level = self.hash_level(leaves.iter().map(|l| [leaf_block(&l.0)]).collect());
        while level.len() > 1 {
            let pairs: Vec<[Block; 2]> = level
                .chunks_exact(2)
                .map(|p| node_blocks(&p[0], &p[1]))
                .collect();
            let odd = (level.len() % 2 == 1).then(|| level[level.len() - 1]);
            level = self.hash_level(pairs);
            level.extend(odd);
        }
        Bytes32(level[0])
    }
}

impl Merkle for Accelerated {
    fn roots(&self, trees: &[RSlice<'_, Bytes32>]) -> Result<Vec<Bytes32>, PluginError> {
        Ok(trees.iter().map(|t| self.root(t.as_slice())).collect())
    }
}

dubchain_plugin_api::declare_settings! {
    /// `auto` (default: the best the CPU has), or one engine to force.
    engine: Option<String> = None,
}

/// Builds the plugin from its configuration.
pub fn from_config(config: &str) -> Result<Accelerated, PluginError> {
    let s: Settings = settings::parse(config)?;
    let engine = match s.engine.as_deref() {
        None | Some("auto") => Engine::detect(),
        Some(name) => {
            let e: Engine = toml::Value::String(name.to_owned())
                .try_into()
                .map_err(|_| {
                    PluginError::failed(format!(
                        "configuration: engine `{name}` (auto, sha_ni, avx2, portable)"
                    ))
                })?;
            if !e.available() {
                return Err(PluginError::failed(format!(
                    "configuration: engine `{name}` is not supported by this CPU"
                )));
            }
            e
        }
    };
    Ok(Accelerated::new(engine))
}

export_plugin! {
    name: "crypto_hardware_acceleration",
    merkle: from_config,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn reference(leaves: &[Bytes32]) -> Bytes32 {
        fn root(l: &[Bytes32]) -> [u8; 32] {
            match l.len() {
                0 => Sha256::digest([]).into(),
                1 => Sha256::digest([&[0u8][..], &l[0].0].concat()).into(),
                n => {
                    let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                    Sha256::digest([&[1u8][..], &root(&l[..k]), &root(&l[k..])].concat()).into()
                }
            }
        }
        Bytes32(root(leaves))
    }

    #[test]
    fn every_engine_gives_the_rfc6962_root() {
        let leaves: Vec<Bytes32> = (0..1100u32)
            .map(|i| {
                let mut b = [0u8; 32];
                b[..4].copy_from_slice(&i.to_le_bytes());
                b[31] = (i * 7) as u8;
                Bytes32(b)
            })
            .collect();
        for engine in [Engine::ShaNi, Engine::Avx2, Engine::Portable] {
            if !engine.available() {
                eprintln!("{engine:?} not available on this CPU; not tested here");
                continue;
            }
            let a = Accelerated::new(engine);
            for n in (0..=40).chain([511, 512, 513, 1024, 1025, 1100]) {
                assert_eq!(
                    a.root(&leaves[..n]),
                    reference(&leaves[..n]),
                    "{engine:?}, {n} leaves"
                );
            }
        }
    }
}
