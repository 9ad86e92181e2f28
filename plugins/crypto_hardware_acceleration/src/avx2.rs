//! SHA-256 compression of eight independent messages at once, one per 32-bit lane of the
//! AVX2 registers (multi-buffer): for CPUs with AVX2 but without SHA-NI.

#[cfg(target_arch = "x86_64")]
pub use imp::compress8;

/// Whether the CPU has AVX2.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
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

    #[inline(always)]
    unsafe fn rotr<const R: i32, const L: i32>(x: __m256i) -> __m256i {
        // SAFETY: AVX2 is guaranteed by the caller of `compress8`.
        unsafe { _mm256_or_si256(_mm256_srli_epi32::<R>(x), _mm256_slli_epi32::<L>(x)) }
    }

    /// One block into each of eight states.
    ///
    /// # Safety
    /// The CPU must have AVX2 ([`super::available`]).
    #[target_feature(enable = "avx2")]
    pub unsafe fn compress8(states: &mut [[u32; 8]; 8], blocks: [&Block; 8]) {
        // SAFETY: (the whole fn) AVX2 is this function's contract; every memory access is to
        // the arrays above, in bounds.
        unsafe {
            let word = |b: &Block, t: usize| -> i32 {
                u32::from_be_bytes([b[4 * t], b[4 * t + 1], b[4 * t + 2], b[4 * t + 3]]) as i32
            };
            let mut w = [_mm256_setzero_si256(); 64];
            for (t, wt) in w.iter_mut().enumerate().take(16) {
                *wt = _mm256_setr_epi32(
                    word(blocks[0], t),
                    word(blocks[1], t),
                    word(blocks[2], t),
                    word(blocks[3], t),
                    word(blocks[4], t),
                    word(blocks[5], t),
                    word(blocks[6], t),
                    word(blocks[7], t),
                );
            }
            for t in 16..64 {
                let x = w[t - 15];
                let s0 = _mm256_xor_si256(
                    _mm256_xor_si256(rotr::<7, 25>(x), rotr::<18, 14>(x)),
                    _mm256_srli_epi32::<3>(x),
                );
                let y = w[t - 2];
                let s1 = _mm256_xor_si256(
                    _mm256_xor_si256(rotr::<17, 15>(y), rotr::<19, 13>(y)),
                    _mm256_srli_epi32::<10>(y),
                );
                w[t] = _mm256_add_epi32(
                    _mm256_add_epi32(w[t - 16], s0),
                    _mm256_add_epi32(w[t - 7], s1),
                );
            }
            let lane = |i: usize| {
                _mm256_setr_epi32(
                    states[0][i] as i32,
                    states[1][i] as i32,
                    states[2][i] as i32,
                    states[3][i] as i32,
                    states[4][i] as i32,
                    states[5][i] as i32,
                    states[6][i] as i32,
                    states[7][i] as i32,
                )
            };
            let init: [__m256i; 8] = std::array::from_fn(lane);
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = init;
            for t in 0..64 {
                let s1 = _mm256_xor_si256(
                    _mm256_xor_si256(rotr::<6, 26>(e), rotr::<11, 21>(e)),
                    rotr::<25, 7>(e),
                );
                let ch = _mm256_xor_si256(_mm256_and_si256(e, f), _mm256_andnot_si256(e, g));
                let t1 = _mm256_add_epi32(
                    _mm256_add_epi32(_mm256_add_epi32(h, s1), _mm256_add_epi32(ch, w[t])),
                    _mm256_set1_epi32(K[t] as i32),
                );
                let s0 = _mm256_xor_si256(
                    _mm256_xor_si256(rotr::<2, 30>(a), rotr::<13, 19>(a)),
                    rotr::<22, 10>(a),
                );
                let maj = _mm256_xor_si256(
                    _mm256_xor_si256(_mm256_and_si256(a, b), _mm256_and_si256(a, c)),
                    _mm256_and_si256(b, c),
                );
                let t2 = _mm256_add_epi32(s0, maj);
                h = g;
                g = f;
                f = e;
                e = _mm256_add_epi32(d, t1);
                d = c;
                c = b;
                b = a;
                a = _mm256_add_epi32(t1, t2);
            }
            let out = [a, b, c, d, e, f, g, h];
            for (i, (v, v0)) in out.iter().zip(&init).enumerate() {
                let mut lanes = [0u32; 8];
                _mm256_storeu_si256(lanes.as_mut_ptr().cast(), _mm256_add_epi32(*v, *v0));
                for (l, s) in states.iter_mut().enumerate() {
                    s[i] = lanes[l];
                }
            }
        }
    }
}
