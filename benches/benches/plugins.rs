//! The first-party plugins against their baselines: interleaved rounds in one process, the
//! ratio with a 95% bootstrap interval, next to the catalogue goal and the manifest's
//! promise. Writes `target/dubchain/bench/plugins.{json,md}`.
//!
//! `cargo xtask bench` (which assembles the plugin directory first);
//! `DUBCHAIN_BENCH_ROUNDS` sets the rounds (default 30).

use dubchain_benches::host_with;
use dubchain_host::{
    baseline,
    measure::{compare, Comparison},
    workload,
};
use std::hint::black_box;

struct Row {
    comparison: Comparison,
    goal: f64,
    promise: f64,
    note: String,
}

/// `crypto.sig_verify` through `host` against the baseline on `set`, after checking the
/// answers agree.
fn compare_sig_verify(
    name: &str,
    rounds: usize,
    host: &dubchain_host::Host,
    set: &workload::SignatureSet,
) -> Comparison {
    let items = set.items();
    assert_eq!(
        host.slots.sig_verify.verify_batch(&items),
        baseline::sig_verify(&items)
    );
    compare(
        name,
        rounds,
        || {
            black_box(baseline::sig_verify(black_box(&items)));
        },
        || {
            black_box(host.slots.sig_verify.verify_batch(black_box(&items)));
        },
    )
}

fn main() {
    let rounds: usize = std::env::var("DUBCHAIN_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    let mut rows = Vec::new();

    // crypto_parallel_verification: 2048 signatures from 16 signers.
    let valid = workload::signature_set(1, 2048, false);
    let mixed = workload::signature_set(2, 2048, true);
    for (config, label) in [
        ("batch = false\n", "parallel strict"),
        ("batch = true\nchunk = 64\n", "parallel + batch"),
    ] {
        let host = host_with(&["crypto_parallel_verification"], config);
        for (set, what) in [
            (&valid, "all valid"),
            (&mixed, "1/3 invalid or adversarial"),
        ] {
            let name = format!("crypto.sig_verify: 2048 sigs, {what} ({label})");
            let c = compare_sig_verify(&name, rounds, &host, set);
            rows.push(Row {
                comparison: c,
                goal: 3.5,
                promise: 1.8,
                note: String::new(),
            });
        }
    }

    // crypto_verification_caching over crypto_parallel_verification: re-verifying signatures
    // that already verified, as when a block's transactions passed the mempool.
    let host = host_with(
        &[
            "crypto_verification_caching",
            "crypto_parallel_verification",
        ],
        "",
    );
    let c = compare_sig_verify(
        "crypto.sig_verify: 2048 sigs seen before (cache over parallel)",
        rounds,
        &host,
        &valid,
    );
    rows.push(Row {
        comparison: c,
        goal: 10.0,
        promise: 10.0,
        note: String::new(),
    });

    // storage_binary_formats: 32 blocks of 64 transactions, plus those transactions.
    let host = host_with(&["storage_binary_formats"], "");
    let records = workload::records(3, 32, 64);
    let json = baseline::encode_records(&records);
    let json_refs: Vec<&[u8]> = json.iter().map(Vec::as_slice).collect();
    let bin = host.slots.record_codec.encode(&records);
    let bin_refs: Vec<&[u8]> = bin.iter().map(Vec::as_slice).collect();
    let json_bytes: usize = json.iter().map(Vec::len).sum();
    let bin_bytes: usize = bin.iter().map(Vec::len).sum();
    let size = format!(
        "size {json_bytes} B JSON vs {bin_bytes} B binary: {:.2}x smaller (goal 1.7x)",
        json_bytes as f64 / bin_bytes as f64
    );
    let c = compare(
        "storage.record_codec: encode 2080 records",
        rounds,
        || {
            black_box(baseline::encode_records(black_box(&records)));
        },
        || {
            black_box(host.slots.record_codec.encode(black_box(&records)));
        },
    );
    rows.push(Row {
        comparison: c,
        goal: 5.0,
        promise: 5.0,
        note: size,
    });
    let c = compare(
        "storage.record_codec: decode 2080 records",
        rounds,
        || {
            black_box(baseline::decode_records(black_box(&json_refs)));
        },
        || {
            black_box(host.slots.record_codec.decode(black_box(&bin_refs)));
        },
    );
    rows.push(Row {
        comparison: c,
        goal: 2.5,
        promise: 2.5,
        note: String::new(),
    });
    let c = compare(
        "storage.record_codec: read old JSON records through the plugin",
        rounds,
        || {
            black_box(baseline::decode_records(black_box(&json_refs)));
        },
        || {
            black_box(host.slots.record_codec.decode(black_box(&json_refs)));
        },
    );
    rows.push(Row {
        comparison: c,
        goal: 0.0,
        promise: 0.0,
        note: "compatibility path: no goal, should be ~1x".into(),
    });

    // batching_signature_aggregation: the votes of 100 validators on one block.
    let host = host_with(&["batching_signature_aggregation"], "");
    let votes = workload::vote_set(5, 100, false);
    let items = votes.items();
    assert_eq!(
        host.slots.vote_verify.verify_votes(&items),
        baseline::verify_votes(&items)
    );
    let c = compare(
        "consensus.vote_verify: 100 validators' votes on one block",
        rounds,
        || {
            black_box(baseline::verify_votes(black_box(&items)));
        },
        || {
            black_box(host.slots.vote_verify.verify_votes(black_box(&items)));
        },
    );
    rows.push(Row {
        comparison: c,
        goal: 20.0,
        promise: 10.0,
        note: String::new(),
    });

    // crypto_hardware_acceleration: the Merkle root of 4096 leaves.
    let host = host_with(&["crypto_hardware_acceleration"], "");
    let tree = workload::merkle_trees(6, &[4096]).pop().expect("one tree");
    assert_eq!(host.slots.merkle.root(&tree), baseline::merkle_root(&tree));
    let c = compare(
        "crypto.merkle: root of 4096 leaves",
        rounds,
        || {
            black_box(baseline::merkle_root(black_box(&tree)));
        },
        || {
            black_box(host.slots.merkle.root(black_box(&tree)));
        },
    );
    rows.push(Row {
        comparison: c,
        goal: 2.0,
        promise: 2.0,
        note: String::new(),
    });

    let mut md = String::from("| workload | baseline ms | plugin ms | ratio (95% CI) | catalogue goal | met |\n|---|---|---|---|---|---|\n");
    for r in &rows {
        let c = &r.comparison;
        let ms = |v: &[f64]| dubchain_host::measure::median(&mut v.to_vec()) * 1e3;
        let met = if r.goal == 0.0 {
            "-".to_owned()
        } else if c.meets(r.goal) {
            "yes".into()
        } else {
            "no".into()
        };
        md += &format!(
            "| {} | {:.2} | {:.2} | {:.2}x ({:.2}-{:.2}) | {} | {met} |\n",
            c.name,
            ms(&c.baseline_s),
            ms(&c.optimized_s),
            c.ratio.median,
            c.ratio.low,
            c.ratio.high,
            if r.goal == 0.0 {
                "-".to_owned()
            } else {
                format!(">= {}x", r.goal)
            },
        );
        if !r.note.is_empty() {
            md += &format!("| {} | | | | | |\n", r.note);
        }
    }
    println!("{md}");
    println!(
        "{rounds} interleaved rounds per row, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let out = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dubchain/bench");
    std::fs::create_dir_all(&out).expect("create output dir");
    let json: Vec<_> = rows
        .iter()
        .map(|r| serde_json::json!({"comparison": r.comparison, "goal": r.goal, "promise": r.promise, "note": r.note}))
        .collect();
    std::fs::write(
        out.join("plugins.json"),
        serde_json::to_vec_pretty(&json).unwrap(),
    )
    .unwrap();
    std::fs::write(out.join("plugins.md"), md).unwrap();
}
