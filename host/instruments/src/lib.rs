//! The measuring instruments: the comparison harness and the benchmark suite behind
//! `dubchain-perf bench`, the main job behind `run`, the profiler behind `profile`, and
//! `plugin verify`.
//!
//! * [`micro`]: each enabled plugin's slot workloads, baseline and plugin interleaved, the
//!   ratio with its interval against the manifest's promise and the catalogue's goal.
//! * [`system`]: the chain workload on baselines and with the configured plugins,
//!   interleaved run by run, every node on its own freshly loaded host: per-stage rows.
//! * [`main_job`]: `run` (the chain, the cluster, catch-up and the per-slot table);
//!   [`live`]: `run --watch`, the node kept running while plugins are hot-reloaded.
//! * [`callgrind`]: the same micro workloads counted in instructions under valgrind, a
//!   repeatable figure for gates on noisy machines.
//! * [`budget`], [`regress`], [`fingerprint`]: limits, saved runs and the statistical
//!   regression decision, and what makes two runs comparable.
//! * [`restart`]: `vm_jit_caching`'s restart figure, precompiled artifacts against
//!   compiling after a restart.
//! * [`report`]: JSON (schema [`SCHEMA`]), Markdown and a self-contained HTML page.
//! * [`profile`]: pprof CPU profiles, allocation counts, hotspots grouped by subsystem and
//!   slot, and recommendations from the manifests' performance contracts.
//! * [`verify`]: `plugin verify`, a plugin's conformance suite and quick ratio in a child
//!   process.
//!
//! Must not depend on: the command line. Results are returned, not printed (progress goes
//! to stderr; `plugin verify`'s child writes its protocol lines to stdout).

pub mod budget;
pub mod callgrind;
pub mod fingerprint;
pub mod live;
pub mod main_job;
pub mod micro;
pub mod profile;
pub mod regress;
pub mod report;
pub mod restart;
pub mod suite;
pub mod system;
pub mod verify;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use dubchain_host::{
    alloc_count::AllocStats,
    measure::{log_t_interval, Estimate},
};

/// The version tag of the results file. Fields are only ever added within one version.
pub const SCHEMA: &str = "dubchain-bench/1";

/// Whether lower or higher values of a metric are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    Lower,
    Higher,
}

/// One named figure of a run, as budgets see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub value: f64,
    pub unit: String,
    pub better: Better,
}

impl Metric {
    pub fn new(value: f64, unit: &str, better: Better) -> Metric {
        Metric {
            value,
            unit: unit.to_owned(),
            better,
        }
    }
}

/// One plugin (or a layered stack) against the baseline on one slot workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MicroResult {
    /// `<plugin>.<case>`, for example `crypto_parallel_verification.sig_verify`.
    pub id: String,
    /// The plugin (or `a+b` for a stack) and the slot it serves.
    pub plugin: String,
    pub slot: String,
    /// What was run, in words.
    pub workload: String,
    /// Interleaved rounds per side (over every process, with `bench --processes`).
    pub rounds: usize,
    /// Fresh processes whose rounds were pooled into `ratio` (`bench --processes`).
    #[serde(default = "one_process")]
    pub processes: usize,
    /// Seconds per run of each side, one per round (process after process).
    pub baseline_s: Vec<f64>,
    pub plugin_s: Vec<f64>,
    /// Baseline time / plugin time.
    pub ratio: Estimate,
    /// The catalogue's goal (`host/core/catalogue.toml`), where this case is the one the
    /// plugin's catalogue row is judged on.
    #[serde(default)]
    pub goal: Option<f64>,
    /// The manifest's promised minimum speed-up, where this case is its contract workload.
    pub promise: Option<f64>,
    /// Whether the whole interval is at or above the promise.
    pub met: Option<bool>,
    /// Whether the plugin's answers equalled the baseline's on this workload.
    pub identical: bool,
    /// Allocations of one run of each side, `[baseline, plugin]` (the plugin's heap
    /// included: its counters are read with the host's), counted in a run of its own after
    /// the timed rounds; `None` where the counting allocator is not installed.
    #[serde(default)]
    pub allocations: Option<[u64; 2]>,
    /// A figure of the case's own besides time, for the cases that have one: the most
    /// threads the process ran during a run (`net.transport`: a thread per peer against a
    /// reactor's few), the most frames a queue held (`net.send_queue` under a slow peer).
    #[serde(default)]
    pub extra: Option<ExtraFigure>,
}

fn one_process() -> usize {
    1
}

impl MicroResult {
    /// Baseline time / plugin time, round by round.
    pub fn round_ratios(&self) -> Vec<f64> {
        dubchain_host::measure::round_ratios(&self.baseline_s, &self.plugin_s)
    }
}

/// See [`MicroResult::extra`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtraFigure {
    /// What is counted, in words.
    pub name: String,
    /// The most seen on each side, `[baseline, plugin]`.
    pub values: [u64; 2],
}

/// One side (baselines or plugins) of the system benchmark.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemSide {
    /// Block creation latency of every block of every run, milliseconds.
    pub block_latency_ms: Vec<f64>,
    /// Median and 99th percentile of those.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// Transactions per second of each run.
    pub throughput_tps: Vec<f64>,
    /// CPU seconds (user + system) of each run.
    pub cpu_s: Vec<f64>,
    /// Wall seconds of each run.
    pub wall_s: Vec<f64>,
    /// Highest peak resident set over the runs (whole process: plugins and RocksDB
    /// included), where the kernel lets it be reset between runs.
    pub peak_rss_bytes: Option<u64>,
    /// The Rust heaps (the host's and the plugins', whose counters are read with the host's),
    /// from the counting allocator, where it is installed.
    pub heap: Option<AllocStats>,
    /// Each node of the runs over TCP, where there were any: what its network carried and
    /// where its time went, the median of each figure over the runs.
    #[serde(default)]
    pub cluster: Vec<ClusterNode>,
}

/// One node of the cluster runs (the network row, node by node): medians over the runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterNode {
    pub node: usize,
    /// Frames sent (each peer's copy counted) and received, per kind; bytes of whole
    /// frames.
    pub sent: dubchain_node::net::KindTraffic,
    pub received: dubchain_node::net::KindTraffic,
    /// The deepest any of its send queues got, in frames (`None` where a `net.transport`
    /// provider queues).
    pub queue_peak: Option<u64>,
    /// Threads it ran for its peers (the provider's own, if one serves `net.transport`,
    /// are not its).
    pub threads: u64,
    /// Milliseconds in each stage of its loop: proposing; peers' blocks (validation,
    /// commit, its vote); peers' votes; admitting gossip; decoding frames; waiting.
    pub propose_ms: f64,
    pub blocks_ms: f64,
    pub votes_ms: f64,
    pub admission_ms: f64,
    /// In those admissions, the CPU time of the node's thread and of its whole process, and
    /// the batches admitted (medians over the runs; 0 in runs saved before they were taken).
    #[serde(default)]
    pub admission_cpu_ms: f64,
    #[serde(default)]
    pub admission_process_cpu_ms: f64,
    #[serde(default)]
    pub admission_batches: u64,
    pub decode_ms: f64,
    pub wait_ms: f64,
}

/// One stage (or whole-run figure) on both sides: every run's value and the ratio.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRow {
    /// The stage (or figure) and the unit of its values.
    pub name: String,
    pub unit: String,
    /// Whether a higher value is better (throughput) or a lower one (times).
    pub higher_is_better: bool,
    /// One value per run, in run order.
    pub baseline: Vec<f64>,
    /// One value per run of the plugins' side, in run order.
    pub plugins: Vec<f64>,
    /// Geometric mean of the per-run speed-ups (above 1: the plugins are better).
    pub ratio: f64,
    /// Its 95% Student-t interval on the logarithms ([`dubchain_host::measure::log_t_interval`]).
    pub ci95: [f64; 2],
}

impl StageRow {
    pub fn new(
        name: &str, unit: &str, higher_is_better: bool, b: Vec<f64>, p: Vec<f64>,
    ) -> StageRow {
        let ratios: Vec<f64> = b
            .iter()
            .zip(&p)
            .map(|(b, p)| {
                if higher_is_better {
                    p / b.max(1e-12)
                } else {
                    b / p.max(1e-12)
                }
            })
            .collect();
        let e: Estimate = log_t_interval(&ratios);
        StageRow {
            name: name.to_owned(),
            unit: unit.to_owned(),
            higher_is_better,
            baseline: b,
            plugins: p,
            ratio: e.median,
            ci95: [e.low, e.high],
        }
    }

    /// "faster", "slower" or "no change" (the interval contains 1); "one run" when there is
    /// no interval to decide by.
    pub fn verdict(&self) -> &'static str {
        if !self.has_interval() {
            "one run: no verdict"
        } else if self.ci95[0] > 1.0 {
            "faster"
        } else if self.ci95[1] < 1.0 {
            "slower"
        } else {
            "no change"
        }
    }

    /// Whether the row's runs give an interval (two or more pairs).
    fn has_interval(&self) -> bool {
        dubchain_host::measure::has_interval(self.baseline.len().min(self.plugins.len()))
    }

    /// The ratio with its interval, `2.15x [2.11, 2.19]`, or without one after a single run.
    pub fn ratio_text(&self) -> String {
        if self.has_interval() {
            format!(
                "{:.2}x [{:.2}, {:.2}]",
                self.ratio, self.ci95[0], self.ci95[1]
            )
        } else {
            format!("{:.2}x [-]", self.ratio)
        }
    }

    /// The median of one side's runs.
    pub fn median(values: &[f64]) -> f64 {
        dubchain_host::measure::median(&mut values.to_vec())
    }
}

/// What the chain of the first baseline run was (every run reached the same one, or
/// `identical` is false).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainSummary {
    pub blocks: u64,
    pub finalized: u64,
    pub transactions: u64,
    pub rejected: u64,
    pub invalid_votes: u64,
    pub last_block: dubchain_plugin_api::types::Bytes32,
    pub state_root: dubchain_plugin_api::types::Bytes32,
}

/// The chain workload on baselines and with plugins.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SystemResult {
    /// The chain workload in words ([`system::describe`]): a saved run is compared only
    /// with a run of the same (absent from runs saved before it was recorded).
    #[serde(default)]
    pub workload: Option<String>,
    pub blocks: u64,
    pub txs_per_block: usize,
    pub validators: usize,
    pub seed: u64,
    pub runs: usize,
    /// Runs per side, alternating (B P, P B, ...): what every row's interval is over.
    #[serde(default)]
    pub runs_per_side: usize,
    /// Per stage and overall: every run's value and the median ratio with its interval.
    #[serde(default)]
    pub rows: Vec<StageRow>,
    /// The chain every run reached (the first baseline run's).
    #[serde(default)]
    pub chain: Option<ChainSummary>,
    pub baseline: SystemSide,
    pub plugins: SystemSide,
    /// Both sides reached the same block hashes and state root in every run (and the same
    /// heads over TCP and after catch-up, where those ran).
    pub identical: bool,
}

/// Instruction counts of one micro case under callgrind.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstrResult {
    pub id: String,
    pub plugin: String,
    /// Instructions of one run of the workload (setup subtracted).
    pub baseline_ir: u64,
    pub plugin_ir: u64,
    /// Baseline / plugin instructions (0 when `note` says the count was not measurable).
    pub ratio: f64,
    pub promise: Option<f64>,
    /// Why the count could not be taken, if it could not.
    #[serde(default)]
    pub note: Option<String>,
}

/// The comparison with a saved run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// The saved run's name.
    pub against: String,
    pub against_fingerprint: fingerprint::Fingerprint,
    /// Differences of fingerprint (compared anyway only with an explicit flag).
    pub mismatches: Vec<String>,
    pub threshold: f64,
    pub changes: Vec<regress::Change>,
    /// What only one of the two runs measured, so was not compared (`micro.<id>: saved
    /// run only`, ...).
    #[serde(default)]
    pub not_compared: Vec<String>,
}

impl Comparison {
    pub fn regressions(&self) -> impl Iterator<Item = &regress::Change> {
        self.changes
            .iter()
            .filter(|c| c.verdict == regress::Verdict::Regression)
    }
}

/// Everything one `dubchain-perf bench` run measured and concluded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResults {
    pub schema: String,
    /// The name it was saved under, if any.
    pub label: Option<String>,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
    pub fingerprint: fingerprint::Fingerprint,
    /// The configuration profile.
    pub profile: String,
    pub micro: Vec<MicroResult>,
    pub system: Option<SystemResult>,
    pub instructions: Vec<InstrResult>,
    pub budgets: Vec<budget::Outcome>,
    pub comparison: Option<Comparison>,
}

impl BenchResults {
    /// The named figures budgets are written against.
    pub fn metrics(&self) -> BTreeMap<String, Metric> {
        let mut m = BTreeMap::new();
        for r in &self.micro {
            m.insert(
                format!("micro.{}.ratio", r.id),
                Metric::new(r.ratio.median, "x", Better::Higher),
            );
            m.insert(
                format!("micro.{}.ratio_low", r.id),
                Metric::new(r.ratio.low, "x", Better::Higher),
            );
            let mut t = r.plugin_s.clone();
            m.insert(
                format!("micro.{}.plugin_time", r.id),
                Metric::new(
                    dubchain_host::measure::median(&mut t) * 1e3,
                    "ms",
                    Better::Lower,
                ),
            );
        }
        for r in self.instructions.iter().filter(|r| r.note.is_none()) {
            m.insert(
                format!("instructions.{}.ratio", r.id),
                Metric::new(r.ratio, "x", Better::Higher),
            );
            m.insert(
                format!("instructions.{}.plugin", r.id),
                Metric::new(r.plugin_ir as f64, "instructions", Better::Lower),
            );
        }
        if let Some(s) = &self.system {
            for (side, v) in [("baseline", &s.baseline), ("plugins", &s.plugins)] {
                system_metrics(&mut m, side, v);
            }
            m.insert(
                "system.throughput_ratio".to_owned(),
                Metric::new(
                    med(&s.plugins.throughput_tps) / med(&s.baseline.throughput_tps).max(1e-12),
                    "x",
                    Better::Higher,
                ),
            );
        }
        m
    }

    /// Every metric name `bench` can produce for the session's plugins (system metrics, and
    /// with `micro` each case's ratio, its low end, plugin time and instruction counts),
    /// sorted: what `bench --list-metrics` prints for writing budgets.
    pub fn metric_names(
        s: &dubchain_host::session::Session, micro: Option<&micro::MicroOptions>,
    ) -> Vec<String> {
        let mut names: Vec<String> = Self::system_metric_catalogue().into_keys().collect();
        if let Some(m) = micro {
            for (id, ..) in micro::plan(s, m) {
                for what in ["ratio", "ratio_low", "plugin_time"] {
                    names.push(format!("micro.{id}.{what}"));
                }
                names.push(format!("instructions.{id}.ratio"));
                names.push(format!("instructions.{id}.plugin"));
            }
        }
        names.sort();
        names
    }

    /// Every metric name a run with system benchmarks produces, besides the per-plugin ones:
    /// what budgets are validated against before anything is measured.
    pub fn system_metric_catalogue() -> BTreeMap<String, Metric> {
        let side = SystemSide {
            block_latency_ms: vec![0.0],
            latency_p50_ms: 0.0,
            latency_p99_ms: 0.0,
            throughput_tps: vec![0.0],
            cpu_s: vec![0.0],
            wall_s: vec![0.0],
            peak_rss_bytes: Some(0),
            heap: Some(AllocStats::default()),
            cluster: Vec::new(),
        };
        let mut m = BTreeMap::new();
        system_metrics(&mut m, "baseline", &side);
        system_metrics(&mut m, "plugins", &side);
        m.insert(
            "system.throughput_ratio".to_owned(),
            Metric::new(0.0, "x", Better::Higher),
        );
        m
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("results serialise")
    }
}

fn med(v: &[f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    dubchain_host::measure::median(&mut v.to_vec())
}

fn system_metrics(m: &mut BTreeMap<String, Metric>, side: &str, v: &SystemSide) {
    let mut put = |name: &str, value: f64, unit: &str, better| {
        m.insert(
            format!("system.{side}.{name}"),
            Metric::new(value, unit, better),
        );
    };
    put("block_latency_p50", v.latency_p50_ms, "ms", Better::Lower);
    put("block_latency_p99", v.latency_p99_ms, "ms", Better::Lower);
    put("throughput", med(&v.throughput_tps), "tx/s", Better::Higher);
    put("cpu", med(&v.cpu_s), "s", Better::Lower);
    put(
        "cpu_utilization",
        med(&v.cpu_s) / med(&v.wall_s).max(1e-9),
        "cores",
        Better::Lower,
    );
    if let Some(rss) = v.peak_rss_bytes {
        put(
            "peak_rss",
            rss as f64 / (1 << 20) as f64,
            "MiB",
            Better::Lower,
        );
    }
    if let Some(h) = v.heap {
        put(
            "heap_peak",
            h.peak_bytes as f64 / (1 << 20) as f64,
            "MiB",
            Better::Lower,
        );
        put("allocations", h.allocations as f64, "count", Better::Lower);
    }
}

/// The `q` quantile (0..=1) of `v`, nearest rank.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
}

/// Where saved runs live: `<out>/baselines/<name>.json`.
pub fn saved_path(out: &Path, name: &str) -> PathBuf {
    out.join("baselines").join(format!("{name}.json"))
}

/// Reads a saved run, with the file named in every error.
pub fn load_saved(out: &Path, name: &str) -> Result<BenchResults, String> {
    let path = saved_path(out, name);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let known = list_saved(out);
        format!(
            "{}: {e} (saved runs here: {})",
            path.display(),
            if known.is_empty() {
                "none; save one with --save-baseline NAME".to_owned()
            } else {
                known.join(", ")
            }
        )
    })?;
    let again = format!("save a run under this name again (--save-baseline {name})");
    let r: BenchResults = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: not a saved benchmark run: {}; {again}",
            path.display(),
            dubchain_host::manifest::one_line(&e.to_string())
        )
    })?;
    if r.schema != SCHEMA {
        return Err(format!(
            "{}: schema `{}`, this dubchain-perf reads `{SCHEMA}`; {again}",
            path.display(),
            r.schema
        ));
    }
    Ok(r)
}

/// Names of the saved runs under `out`.
pub fn list_saved(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join("baselines"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension()? == "json").then(|| p.file_stem()?.to_str().map(str::to_owned))?
        })
        .collect();
    names.sort();
    names
}

/// Compares `new` with `old`: every timing series both have, and every instruction count.
pub fn compare(
    old: &BenchResults, new: &BenchResults, against: &str, threshold: f64,
) -> Comparison {
    let mut changes = Vec::new();
    let mut not_compared = Vec::new();
    for o in &old.micro {
        if !new.micro.iter().any(|n| n.id == o.id) {
            not_compared.push(format!("micro.{}: saved run only", o.id));
        }
    }
    for n in &new.micro {
        let Some(o) = old.micro.iter().find(|o| o.id == n.id) else {
            not_compared.push(format!("micro.{}: this run only", n.id));
            continue;
        };
        if o.workload != n.workload {
            not_compared.push(format!(
                "micro.{}: other workload (saved: {}; now: {})",
                n.id, o.workload, n.workload
            ));
        } else {
            changes.push(regress::compare_series(
                &format!("micro.{}.plugin", n.id),
                "s",
                &o.plugin_s,
                &n.plugin_s,
                threshold,
            ));
            changes.push(regress::compare_series(
                &format!("micro.{}.baseline", n.id),
                "s",
                &o.baseline_s,
                &n.baseline_s,
                threshold,
            ));
        }
    }
    // A count is of one call of the case's workload: compared where that is the same.
    let same_workload = |id: &str| {
        let workload = |r: &BenchResults| {
            r.micro
                .iter()
                .find(|m| m.id == id)
                .map(|m| m.workload.clone())
        };
        workload(old) == workload(new)
    };
    for n in new.instructions.iter().filter(|n| n.note.is_none()) {
        let old_count = old
            .instructions
            .iter()
            .find(|o| o.id == n.id && o.note.is_none());
        match (old_count, same_workload(&n.id)) {
            (Some(o), true) => changes.push(regress::compare_counts(
                &format!("instructions.{}.plugin", n.id),
                o.plugin_ir,
                n.plugin_ir,
                threshold,
            )),
            (Some(_), false) => not_compared.push(format!("instructions.{}: other workload", n.id)),
            (None, _) => {
                not_compared.push(format!("instructions.{}: no count in the saved run", n.id))
            }
        }
    }
    match (&old.system, &new.system) {
        (Some(o), Some(n)) if !o.ran(&n.workload_text(), n.key()) => {
            not_compared.push(format!(
                "system: other workload (saved: {}; now: {})",
                o.workload_text(),
                n.workload_text()
            ));
        }
        (Some(o), Some(n)) => {
            for (side, os, ns) in [
                ("baseline", &o.baseline, &n.baseline),
                ("plugins", &o.plugins, &n.plugins),
            ] {
                changes.push(regress::compare_series(
                    &format!("system.{side}.block_latency"),
                    "ms",
                    &os.block_latency_ms,
                    &ns.block_latency_ms,
                    threshold,
                ));
            }
        }
        (Some(_), None) => not_compared.push("system: saved run only".into()),
        (None, Some(_)) => not_compared.push("system: this run only".into()),
        (None, None) => {}
    }
    Comparison {
        against: against.to_owned(),
        against_fingerprint: old.fingerprint.clone(),
        mismatches: old.fingerprint.mismatches(&new.fingerprint),
        threshold,
        changes,
        not_compared,
    }
}

/// What a run saved before the whole chain workload was recorded kept of it: blocks,
/// transactions per block, validators, seed.
pub type SystemKey = (u64, usize, usize, u64);

impl SystemResult {
    /// See [`SystemKey`].
    pub fn key(&self) -> SystemKey {
        (self.blocks, self.txs_per_block, self.validators, self.seed)
    }

    /// The chain workload in words; for a run saved before it was recorded whole, the part
    /// it kept.
    pub fn workload_text(&self) -> String {
        self.workload.clone().unwrap_or_else(|| {
            format!(
                "seed {}, {} validators, {} blocks of up to {} transactions",
                self.seed, self.validators, self.blocks, self.txs_per_block
            )
        })
    }

    /// Whether this result ran the chain workload `workload` (in words, [`system::describe`])
    /// whose key is `key`: on the words where this result recorded them, else on the key.
    pub fn ran(&self, workload: &str, key: SystemKey) -> bool {
        match &self.workload {
            Some(w) => w == workload,
            None => self.key() == key,
        }
    }
}

/// One line of `<out>/history.jsonl`: what the history plot draws.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub created_unix: u64,
    pub label: Option<String>,
    pub fingerprint: String,
    /// Micro case id to median ratio.
    pub ratios: BTreeMap<String, f64>,
    pub latency_p50_ms: Option<f64>,
}

impl HistoryEntry {
    pub fn of(r: &BenchResults) -> HistoryEntry {
        HistoryEntry {
            created_unix: r.created_unix,
            label: r.label.clone(),
            fingerprint: r.fingerprint.id.clone(),
            ratios: r
                .micro
                .iter()
                .map(|m| (m.id.clone(), m.ratio.median))
                .collect(),
            latency_p50_ms: r.system.as_ref().map(|s| s.plugins.latency_p50_ms),
        }
    }
}

/// Reads `<out>/history.jsonl`, skipping lines it cannot read (a truncated last line after a
/// crash must not hide the rest).
pub fn read_history(out: &Path) -> Vec<HistoryEntry> {
    std::fs::read_to_string(out.join("history.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Appends a run to `<out>/history.jsonl`.
pub fn append_history(out: &Path, r: &BenchResults) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(out)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out.join("history.jsonl"))?;
    writeln!(
        f,
        "{}",
        serde_json::to_string(&HistoryEntry::of(r)).expect("history serialises")
    )
}
