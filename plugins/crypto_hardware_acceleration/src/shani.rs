//! SHA-256 compression with the SHA extensions (SHA-NI), one or two messages at a time.
//!
//! The state is kept in the instructions' layout: `ABEF` and `CDGH`. Each `sha256rnds2`
//! does two rounds and has a latency of a few cycles, so a single message keeps the unit
//! mostly idle; [`compress2`] runs two independent messages through the same rounds so one
//! fills the other's gaps.

#[cfg(target_arch = "x86_64")]
pub use imp::{compress1, compress2};

/// Whether the CPU has SHA-NI (and the SSE4.1/SSSE3 the kernel also uses).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
            && std::arch::is_x86_feature_detected!("sse4.1")
            && std::arch::is_x86_feature_detected!("ssse3")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use std::arch::x86_64::*;

    use crate::{Block, K};

    /// Loads `state` (a..h) into (ABEF, CDGH).
    #[inline(always)]
    unsafe fn load(state: &[u32; 8]) -> (__m128i, __m128i) {
        // SAFETY: (the whole fn) `state` is 8 readable u32s; unaligned loads.
        unsafe {
            let dcba = _mm_loadu_si128(state.as_ptr().cast());
            let hgfe = _mm_loadu_si128(state.as_ptr().add(4).cast());
            let cdab = _mm_shuffle_epi32(dcba, 0xb1);
            let efgh = _mm_shuffle_epi32(hgfe, 0x1b);
            (
                _mm_alignr_epi8(cdab, efgh, 8),
                _mm_blend_epi16(efgh, cdab, 0xf0),
            )
        }
    }

    /// Stores (ABEF, CDGH) back as a..h.
    #[inline(always)]
    unsafe fn store(state: &mut [u32; 8], abef: __m128i, cdgh: __m128i) {
        // SAFETY: (the whole fn) `state` is 8 writable u32s; unaligned stores.
        unsafe {
            let feba = _mm_shuffle_epi32(abef, 0x1b);
            let dchg = _mm_shuffle_epi32(cdgh, 0xb1);
            let dcba = _mm_blend_epi16(feba, dchg, 0xf0);
            let hgfe = _mm_alignr_epi8(dchg, feba, 8);
            _mm_storeu_si128(state.as_mut_ptr().cast(), dcba);
            _mm_storeu_si128(state.as_mut_ptr().add(4).cast(), hgfe);
        }
    }

    /// Compresses one block into each of `L` states, in lockstep.
    #[inline(always)]
    unsafe fn compress_lanes<const L: usize>(states: &mut [[u32; 8]; L], blocks: [&Block; L]) {
        // SAFETY: (the whole fn) the caller guarantees SHA-NI, SSE4.1 and SSSE3; every load
        // reads 16 bytes inside a 64-byte block or the 64-entry constant table.
        unsafe {
            let mask = _mm_set_epi64x(0x0c0d_0e0f_0809_0a0b, 0x0405_0607_0001_0203);
            let mut abef = [_mm_setzero_si128(); L];
            let mut cdgh = [_mm_setzero_si128(); L];
            let mut w = [[_mm_setzero_si128(); 4]; L];
            for l in 0..L {
                (abef[l], cdgh[l]) = load(&states[l]);
                for (j, wj) in w[l].iter_mut().enumerate() {
                    *wj = _mm_shuffle_epi8(
                        _mm_loadu_si128(blocks[l].as_ptr().add(16 * j).cast()),
                        mask,
                    );
                }
            }
            let (save_abef, save_cdgh) = (abef, cdgh);
            for i in 0..16 {
                let k = _mm_loadu_si128(K.as_ptr().add(4 * i).cast());
                for l in 0..L {
                    let msg = _mm_add_epi32(w[l][i % 4], k);
                    cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], msg);
                    abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], _mm_shuffle_epi32(msg, 0x0e));
                    if i < 12 {
                        // W[4i+16..4i+20] from W[4i..], W[4i+4..], W[4i+8..], W[4i+12..].
                        let t = _mm_add_epi32(
                            _mm_sha256msg1_epu32(w[l][i % 4], w[l][(i + 1) % 4]),
                            _mm_alignr_epi8(w[l][(i + 3) % 4], w[l][(i + 2) % 4], 4),
                        );
                        w[l][i % 4] = _mm_sha256msg2_epu32(t, w[l][(i + 3) % 4]);
                    }
                }
            }
            for l in 0..L {
                store(
                    &mut states[l],
                    _mm_add_epi32(abef[l], save_abef[l]),
                    _mm_add_epi32(cdgh[l], save_cdgh[l]),
                );
            }
        }
    }

    /// One block into one state.
    ///
    /// # Safety
    /// The CPU must have SHA-NI, SSE4.1 and SSSE3 ([`super::available`]).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn compress1(state: &mut [u32; 8], block: &Block) {
        let mut s = [*state];
        // SAFETY: this function's own contract.
        unsafe { compress_lanes(&mut s, [block]) };
        *state = s[0];
    }

    /// One block into each of two states, interleaved.
    ///
    /// # Safety
    /// The CPU must have SHA-NI, SSE4.1 and SSSE3 ([`super::available`]).
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    pub unsafe fn compress2(states: &mut [[u32; 8]; 2], blocks: [&Block; 2]) {
        // SAFETY: this function's own contract.
        unsafe { compress_lanes(states, blocks) };
    }
}
