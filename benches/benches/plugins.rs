//! The first-party plugins against their baselines, through the bench suite's one harness
//! (`dubchain_instruments::micro`, the same workloads and interleaved measurement as
//! `dubchain-perf bench`, `run` and `plugin verify`): each plugin alone on its own host, each
//! of its slot's workloads interleaved with the baseline, the ratio with its 95% interval
//! next to the catalogue goal (`host/core/catalogue.toml`) and the manifest's promise. Layered
//! stacks of first-party plugins are measured whole too. Writes
//! `target/dubchain/bench/plugins.{json,md}`.
//!
//! `cargo xtask bench` (which assembles the plugin directory first);
//! `DUBCHAIN_BENCH_ROUNDS` sets the rounds (default 30). Without the node (this crate builds
//! the host without RocksDB), the `exec.block_execution` and `storage.block_commit` cases are
//! measured by `dubchain-perf bench` only.

use dubchain_benches::session_with;
use dubchain_instruments::{
    micro::{self, MicroOptions},
    MicroResult,
};

fn main() {
    let rounds: usize = std::env::var("DUBCHAIN_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    let o = MicroOptions {
        rounds,
        ..MicroOptions::default()
    };
    let all = session_with(&[]);
    let mut sets: Vec<Vec<String>> = all.manifests.iter().map(|m| vec![m.name.clone()]).collect();
    // The layered stack the production profile runs.
    sets.push(vec![
        "crypto_verification_caching".into(),
        "crypto_parallel_verification".into(),
    ]);
    let mut results: Vec<MicroResult> = Vec::new();
    for set in &sets {
        let names: Vec<&str> = set.iter().map(String::as_str).collect();
        let s = session_with(&names);
        let full = s
            .loaded_host(false)
            .unwrap_or_else(|e| panic!("loading {names:?}: {e}"));
        let got = micro::run(&s, &full, &o, |i, n, id| {
            if i < n {
                eprintln!("[{}/{n}] {id}", i + 1);
            }
        })
        .unwrap_or_else(|e| panic!("measuring {names:?}: {e}"));
        // A stack's own plugins are measured alone in their own sets.
        results.extend(
            got.into_iter()
                .filter(|r| set.len() == 1 || r.id.starts_with("stack.")),
        );
    }

    let ms = |v: &[f64]| dubchain_host::measure::median(&mut v.to_vec()) * 1e3;
    let mut md = String::from(
        "| case | workload | baseline ms | plugin ms | ratio [95% CI] | catalogue goal | goal met | promise | identical |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &results {
        let x = |v: Option<f64>| v.map_or("-".to_owned(), |g| format!(">= {g}x"));
        md += &format!(
            "| {} | {} | {:.2} | {:.2} | {:.2}x [{:.2}, {:.2}] | {} | {} | {} | {} |\n",
            r.id,
            r.workload,
            ms(&r.baseline_s),
            ms(&r.plugin_s),
            r.ratio.median,
            r.ratio.low,
            r.ratio.high,
            x(r.goal),
            r.goal
                .map_or("-", |g| if r.ratio.low >= g { "yes" } else { "no" }),
            x(r.promise),
            if r.identical { "yes" } else { "NO" },
        );
    }
    println!("{md}");
    println!(
        "{rounds} interleaved rounds per row, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let out = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dubchain/bench");
    std::fs::create_dir_all(&out).expect("create output dir");
    std::fs::write(
        out.join("plugins.json"),
        serde_json::to_vec_pretty(&results).expect("serialisable"),
    )
    .expect("write plugins.json");
    std::fs::write(out.join("plugins.md"), md).expect("write plugins.md");
    assert!(
        results.iter().all(|r| r.identical),
        "a plugin answered differently from the baseline"
    );
}
