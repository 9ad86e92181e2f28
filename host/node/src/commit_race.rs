//! Concurrent durable commits on one RocksDB store: what the group-commit crash test kills
//! (`dubchain-perf chain commit-race`, `cargo xtask crash --committers`, the test suite's
//! short form).
//!
//! Each of `committers` threads commits numbered records one after another, as the node
//! commits a block: a put that is not synced, then `storage.durability`'s
//! [`make_durable`](dubchain_host::slot::DurabilitySlot::make_durable) of the store's log
//! (the baseline: an fsync per commit; a group-commit provider: one fsync for every commit
//! that arrived while the previous one ran), then the acknowledgement (`on_ack`). Several
//! committers on one store is what group commit is for; one chain's blocks commit one at a
//! time.
//!
//! After a crash, [`recovered`] reopens the store: each committer's records must be
//! `0..next` with no gap (RocksDB recovers a prefix of its log), and `next` must pass every
//! record acknowledged before the crash. A new run resumes each committer at its `next`.

use std::path::Path;

use dubchain_host::Host;
use rocksdb::{Options, DB};

/// The key of committer `committer`'s record `seq`: both big-endian, so a committer's
/// records are contiguous and in order.
fn key(committer: u32, seq: u64) -> [u8; 12] {
    let mut k = [0; 12];
    k[..4].copy_from_slice(&committer.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn open(dir: &Path, create: bool) -> Result<DB, String> {
    let mut opts = Options::default();
    opts.create_if_missing(create);
    DB::open(&opts, dir).map_err(|e| format!("commit store {}: {e}", dir.display()))
}

/// Runs `committers` threads, each committing `commits` more records (resuming after what
/// the store in `dir` holds, which is created if missing), every commit made durable through
/// `host`'s `storage.durability` before `on_ack(committer, seq)` is called.
pub fn run(
    host: &Host, dir: &Path, committers: u32, commits: u64, on_ack: impl Fn(u32, u64) + Sync,
) -> Result<(), String> {
    let db = open(dir, true)?;
    let next = next_of(&db, dir, committers)?;
    // One identity for this store in this process: what a provider groups commits by.
    let store = 0x00c0_ffee_u64 ^ u64::from(std::process::id());
    let durability = &host.slots.durability;
    let (db, on_ack) = (&db, &on_ack);
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..committers)
            .map(|t| {
                let first = next[t as usize];
                scope.spawn(move || -> Result<(), String> {
                    for seq in first..first + commits {
                        db.put(key(t, seq), seq.to_be_bytes())
                            .map_err(|e| format!("commit store {}: {e}", dir.display()))?;
                        durability.make_durable(store, || {
                            db.flush_wal(true)
                                .map_err(|e| format!("commit store {}: {e}", dir.display()))
                        })?;
                        on_ack(t, seq);
                    }
                    Ok(())
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("a committer panicked".into()))
            })
            .collect::<Result<Vec<()>, String>>()
            .map(|_| ())
    })
}

/// Reopens the store in `dir` (which must exist) and answers, per committer, the number of
/// records it holds, after checking they are `0..next` with no gap and no stray key.
pub fn recovered(dir: &Path, committers: u32) -> Result<Vec<u64>, String> {
    if !dir.join("CURRENT").is_file() {
        return Err(format!(
            "commit store {}: no RocksDB store there; run `chain commit-race --data-dir {}` (without --check) to make one",
            dir.display(),
            dir.display()
        ));
    }
    let db = open(dir, false)?;
    next_of(&db, dir, committers)
}

fn next_of(db: &DB, dir: &Path, committers: u32) -> Result<Vec<u64>, String> {
    let mut next = vec![0u64; committers as usize];
    for item in db.iterator(rocksdb::IteratorMode::Start) {
        let (k, _) = item.map_err(|e| format!("commit store {}: {e}", dir.display()))?;
        let parsed = <[u8; 12]>::try_from(&*k).ok().map(|k| {
            (
                u32::from_be_bytes(k[..4].try_into().expect("4 bytes")),
                u64::from_be_bytes(k[4..].try_into().expect("8 bytes")),
            )
        });
        let Some((t, seq)) = parsed else {
            return Err(format!(
                "commit store {}: holds key {:02x?}, which `chain commit-race` never writes: it is another kind of store (a chain's?); give commit-race a directory of its own",
                dir.display(),
                &*k
            ));
        };
        if t >= committers {
            return Err(format!(
                "commit store {}: holds records of committer {t}, more than --committers {committers} counts; pass --committers {} or more, as many as wrote it",
                dir.display(),
                t + 1
            ));
        }
        let n = &mut next[t as usize];
        if seq != *n {
            return Err(format!(
                "commit store {}: committer {t} has record {seq} after {} records: a gap",
                dir.display(),
                *n
            ));
        }
        *n += 1;
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store `recovered` cannot read says which kind of mistake it is and what to do.
    #[test]
    fn a_store_of_another_kind_or_more_committers_is_named_as_such() {
        let foreign = tempfile::tempdir().unwrap();
        open(foreign.path(), true)
            .unwrap()
            .put(b"chain-head", b"x")
            .unwrap();
        let e = recovered(foreign.path(), 8).unwrap_err();
        assert!(
            e.contains("another kind of store") && e.contains("a directory of its own"),
            "{e}"
        );

        let wider = tempfile::tempdir().unwrap();
        let db = open(wider.path(), true).unwrap();
        for t in 0..3 {
            db.put(key(t, 0), 0u64.to_be_bytes()).unwrap();
        }
        drop(db);
        let e = recovered(wider.path(), 2).unwrap_err();
        assert!(
            e.contains("committer 2") && e.contains("--committers 3 or more"),
            "{e}"
        );
        assert_eq!(recovered(wider.path(), 3).unwrap(), [1, 1, 1]);
    }
}
