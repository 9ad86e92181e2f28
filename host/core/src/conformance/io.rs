//! Suites of the memory and framing slots. The host repairs these slots' answers (a buffer
//! that is not empty is replaced, a send that stopped short is finished the baseline way),
//! so repaired answers would pass through the slot: `mem.buffer_pool` and `net.frame_send`
//! are checked on the top provider itself. `mem.block_reclaim` goes through the slot.

use dubchain_plugin_api::slots::BufferPoolBox;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::{outcome, CaseResult};
use crate::{workload, Host};

/// `mem.buffer_pool`, on the top provider: for each seed, 3,000 random takes and gives of
/// sizes from 0 to 1 MiB (bursts of up to 64 held at once); every buffer taken must be
/// empty, at least the size asked, and not one already held; what is written into a held
/// buffer must still be there when it is given back.
pub fn check_buffer_pool(host: &Host) -> Vec<CaseResult> {
    let providers = host.slots.buffer_pool.providers();
    let Some(top) = providers.last() else {
        return Vec::new();
    };
    [0xb0u64, 0xb1, 0xb2]
        .iter()
        .map(|&seed| {
            outcome(
                format!("3,000 takes and gives, bursts of up to 64 held, seed {seed:#x}"),
                pool_script(&top.imp, seed),
            )
        })
        .collect()
}

fn pool_script(imp: &BufferPoolBox, seed: u64) -> Result<(), String> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let sizes = [0usize, 1, 64, 200, 4_096, 65_536, 1 << 20];
    let mut held: Vec<(u8, abi_stable::std_types::RVec<u8>)> = Vec::new();
    for step in 0..3_000u32 {
        if held.len() < 64 && (held.is_empty() || rng.gen_bool(0.55)) {
            let n = match rng.gen_range(0..4) {
                0 => rng.gen_range(0..70_000),
                _ => sizes[rng.gen_range(0..sizes.len())],
            };
            let mut b = crate::selftest::take_fresh(imp, n, &format!("step {step}, "))?;
            if b.capacity() > 0 && held.iter().any(|(_, h)| h.as_ptr() == b.as_ptr()) {
                return Err(format!(
                    "step {step}, take({n}): a buffer that is still held"
                ));
            }
            let tag = (step % 251) as u8;
            b.extend(std::iter::repeat_n(tag, n.min(4_096)));
            held.push((tag, b));
        } else {
            let (tag, b) = held.swap_remove(rng.gen_range(0..held.len()));
            if b.iter().any(|&x| x != tag) {
                return Err(format!(
                    "step {step}: a held buffer's contents changed before it was given back"
                ));
            }
            imp.give(b)
                .into_result()
                .map_err(|e| format!("step {step}, give: {e}"))?;
        }
    }
    for (_, b) in held {
        imp.give(b)
            .into_result()
            .map_err(|e| format!("give: {e}"))?;
    }
    Ok(())
}

/// `net.frame_send`, on the top provider: the self-test's frame sets, then generated sets
/// (up to 400 frames, sizes from empty to 256 KiB); the connection must get exactly the
/// frames' bytes, in order, and the provider must not return before writing them all.
pub fn check_frame_send(host: &Host) -> Vec<CaseResult> {
    let providers = host.slots.frame_send.providers();
    let Some(top) = providers.last() else {
        return Vec::new();
    };
    let mut sets = crate::selftest::frame_sets();
    let mut rng = ChaCha20Rng::seed_from_u64(0xf5);
    for i in 0..6 {
        let frames = (0..rng.gen_range(0..400))
            .map(|_| {
                let n = match rng.gen_range(0..10) {
                    0 => rng.gen_range(0..256 * 1024),
                    1 => 0,
                    _ => rng.gen_range(1..400),
                };
                let mut f = (n as u32).to_be_bytes().to_vec();
                f.extend((0..n).map(|_| rng.gen::<u8>()));
                f
            })
            .collect();
        sets.push((format!("generated set {i}"), frames));
    }
    sets.into_iter()
        .map(|(name, frames)| {
            let r = crate::selftest::frames_arrive_exactly(&top.imp, &frames);
            outcome(format!("{name}: every byte, in order"), r)
        })
        .collect()
}

/// `mem.block_reclaim`, through the slot: runs of every shape (none, one empty block, a
/// long run of small blocks, a few full ones), handed over one after another; a provider
/// that fails any is reported by the slot's errors.
pub fn check_block_reclaim(host: &Host) -> Vec<CaseResult> {
    let shapes: [(&str, usize, usize); 4] = [
        ("no blocks", 0, 0),
        ("one empty block", 1, 0),
        ("64 blocks of 4 transactions", 64, 4),
        ("4 blocks of 512 transactions", 4, 512),
    ];
    shapes
        .iter()
        .map(|&(name, blocks, txs)| {
            let run = match blocks {
                0 => Vec::new(),
                n => workload::block_run(0x5ec + txs as u64, n, txs, false).2,
            };
            for _ in 0..3 {
                host.slots.block_reclaim.reclaim(run.clone());
            }
            let detail = host
                .slots
                .last_error(dubchain_plugin_api::slots::BLOCK_RECLAIM.id)
                .unwrap_or_default();
            CaseResult {
                case: format!("{name}, three times"),
                passed: detail.is_empty(),
                detail,
            }
        })
        .collect()
}
