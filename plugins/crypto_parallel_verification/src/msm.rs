//! Multi-scalar multiplication on `crrl`'s ed25519 points, by Pippenger's bucket method:
//! the `R` terms of a large batch equation, on the points the subgroup test has already
//! decoded, so that no `R` is decoded twice.

use crrl::ed25519::Point;

/// `sum [s_i] P_i` over `terms` `(P_i, s_i)`, each scalar as 32 little-endian bytes below
/// `2^bits`.
pub fn msm(terms: &[(Point, [u8; 32])], bits: usize) -> Point {
    let width = window(terms.len());
    // Bucket `d - 1` collects the points whose current digit is `d`.
    let mut buckets = vec![Point::NEUTRAL; (1 << width) - 1];
    let mut total = Point::NEUTRAL;
    for w in (0..bits.div_ceil(width)).rev() {
        total.set_xdouble(width as u32);
        buckets.fill(Point::NEUTRAL);
        for (p, s) in terms {
            let d = digit(s, w * width, width);
            if d != 0 {
                buckets[d - 1] += p;
            }
        }
        // sum_d [d] bucket_d, as running sums from the top bucket down.
        let mut running = Point::NEUTRAL;
        let mut window_sum = Point::NEUTRAL;
        for b in buckets.iter().rev() {
            running += b;
            window_sum += &running;
        }
        total += &window_sum;
    }
    total
}

/// Bits per digit for `n` points (measured on this workload's sizes: 4 bits at 32 points,
/// 5 at 128-256, 7 at 1,024).
fn window(n: usize) -> usize {
    match n {
        0..64 => 4,
        64..384 => 5,
        384..768 => 6,
        _ => 7,
    }
}

/// The `width` bits of `s` from bit `at` (`width` at most 8, so three bytes hold them).
fn digit(s: &[u8; 32], at: usize, width: usize) -> usize {
    let v = s
        .iter()
        .skip(at / 8)
        .take(3)
        .enumerate()
        .fold(0u32, |v, (i, b)| v | u32::from(*b) << (8 * i));
    (v >> (at % 8)) as usize & ((1 << width) - 1)
}

#[cfg(test)]
mod tests {
    use crrl::ed25519::Scalar;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Against the sum of plain scalar multiplications, at every size that picks another
    /// window, with 128-bit and full-width scalars (zero and all-ones digits
    /// included).
    #[test]
    fn equals_the_sum_of_scalar_multiplications() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        for n in [0, 1, 4, 5, 31, 63, 64, 200, 383, 384, 700, 800] {
            for bits in [128, 253] {
                let terms: Vec<(Point, [u8; 32])> = (0..n)
                    .map(|i| {
                        let p = Point::mulgen(&Scalar::from_u64(rng.gen()));
                        let mut s = [0u8; 32];
                        match i % 5 {
                            0 => {}
                            1 => s[..bits / 8].fill(0xff),
                            _ => rng.fill(&mut s[..bits / 8]),
                        }
                        if bits == 253 {
                            s = Scalar::decode_reduce(&s).encode32();
                        }
                        (p, s)
                    })
                    .collect();
                let expected = terms.iter().fold(Point::NEUTRAL, |sum, (p, s)| {
                    sum + *p * Scalar::decode_reduce(s)
                });
                assert!(
                    msm(&terms, bits).equals(expected) != 0,
                    "{n} points, {bits} bits"
                );
            }
        }
    }
}
