//! `dubchain-perf`: the command line of the DubChain optimization host.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use dubchain_host::{
    config::GatesFile,
    host::PluginState,
    resolve::Reason,
    session::{Session, SessionOptions},
    Host,
};

/// Counts the host's heap allocations for `bench` and `profile`.
#[global_allocator]
static ALLOC: dubchain_host::alloc_count::CountingAlloc = dubchain_host::alloc_count::CountingAlloc;

/// The DubChain optimization host: discovers optimization plugins in a directory, resolves
/// which are on (dependencies, conflicts, versions), loads them behind slots with the host's
/// baseline underneath, and runs workloads through them.
#[derive(Parser)]
#[command(name = "dubchain-perf", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// Directory of plugin packages (manifests `*.toml` next to their libraries).
    #[arg(
        long,
        global = true,
        env = "DUBCHAIN_PLUGIN_DIR",
        default_value = "target/dubchain/plugins"
    )]
    plugin_dir: PathBuf,
    /// Configuration file (TOML with `[profiles.NAME]`); the built-in one when absent.
    #[arg(long, global = true, env = "DUBCHAIN_CONFIG")]
    config: Option<PathBuf>,
    /// Configuration profile to use.
    #[arg(
        long,
        global = true,
        env = "DUBCHAIN_PROFILE",
        default_value = "development"
    )]
    profile: String,
    /// Directory of host state: gates imported with `gates import` live here.
    #[arg(
        long,
        global = true,
        env = "DUBCHAIN_STATE_DIR",
        default_value = "target/dubchain/state"
    )]
    state_dir: PathBuf,
    /// Enable a plugin, whatever the profile says (repeatable).
    #[arg(long = "enable", global = true, value_name = "NAME")]
    enable: Vec<String>,
    /// Disable a plugin, whatever the profile says (repeatable).
    #[arg(long = "disable", global = true, value_name = "NAME")]
    disable: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the plugins in the plugin directory.
    #[command(subcommand)]
    Plugins(PluginsCmd),
    /// Export or import the effective gate settings as JSON.
    #[command(subcommand)]
    Gates(GatesCmd),
    /// Write, check and package plugins.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// The main job: produce a chain with the node twice from the same seed, once on the
    /// baselines and once with the configured plugins; check both reach the same block
    /// hashes and state root; print per-stage and per-slot tables; write
    /// `run.json` and `run.md`.
    Run(RunArgs),
    /// Run one node on a persistent data directory, or check one.
    #[command(subcommand)]
    Chain(ChainCmd),
    /// The benchmark suite: each enabled plugin against its baseline (interleaved, ratio
    /// with a 95% interval, promise met or not), the node's chain workload on baselines
    /// and plugins, budgets, saved runs with statistical regression detection, and
    /// instruction counts under callgrind. Writes bench.{json,md,html} under --out.
    /// Exit status: 0 clean, 1 a failure (differing answers, error budget violated,
    /// regression, unmet promise with --require-promises), 2 refused to run.
    Bench(BenchArgs),
    /// The profiling harness: CPU (pprof flamegraph SVG and protobuf) and heap of a
    /// workload on baselines and with plugins, hotspots by subsystem and slot, and
    /// recommendations from the manifests' performance contracts.
    Profile(ProfileArgs),
    /// The child side of `bench --instructions` (internal).
    #[command(hide = true)]
    BenchChild(BenchChildArgs),
}

#[derive(Args, Clone)]
struct MicroArgs {
    /// Signatures per `crypto.sig_verify` batch.
    #[arg(long, default_value_t = 2048)]
    signatures: usize,
    /// Blocks of 64 transactions per `storage.record_codec` batch.
    #[arg(long, default_value_t = 32)]
    record_blocks: usize,
    /// Votes per `consensus.vote_verify` batch (validators voting on one block).
    #[arg(long, default_value_t = 100)]
    votes: usize,
    /// Leaves of the `crypto.merkle` tree.
    #[arg(long, default_value_t = 4096)]
    leaves: usize,
    /// Transfers per `exec.block_execution` block.
    #[arg(long, default_value_t = 256)]
    block_txs: usize,
    /// Blocks of the `consensus.block_validation` run.
    #[arg(long, default_value_t = 64)]
    run_blocks: usize,
    /// Transfers per block of the `consensus.block_validation` run.
    #[arg(long, default_value_t = 256)]
    run_txs: usize,
    /// Seed of the micro workloads.
    #[arg(long = "micro-seed", default_value_t = 7)]
    micro_seed: u64,
}

#[derive(Args, Clone)]
struct SystemArgs {
    /// Blocks per chain run.
    #[arg(long, default_value_t = 20)]
    blocks: u64,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Seed of the chain workload.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

impl SystemArgs {
    fn workload(&self) -> dubchain_host::node::gen::WorkloadConfig {
        self.workload.config(self.seed)
    }
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    micro: MicroArgs,
    #[command(flatten)]
    system: SystemArgs,
    /// Interleaved rounds per microbenchmark.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Chain runs per side in the system benchmark, alternating (at least 3 for an interval).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,
    /// Skip the microbenchmarks.
    #[arg(long)]
    no_micro: bool,
    /// Skip the system benchmark.
    #[arg(long)]
    no_system: bool,
    /// Also count instructions of each microbenchmark under callgrind (valgrind).
    #[arg(long)]
    instructions: bool,
    /// Calls per callgrind count (the count of one call is the difference with zero calls).
    #[arg(long, default_value_t = 2)]
    instr_iterations: u32,
    /// Performance budgets (TOML, `[[budget]]` tables); an error-level violation fails.
    #[arg(long, value_name = "FILE")]
    budgets: Option<PathBuf>,
    /// Save this run as NAME under <out>/baselines/.
    #[arg(long, value_name = "NAME")]
    save_baseline: Option<String>,
    /// Compare with the saved run NAME; a statistically clear slowdown beyond --threshold fails.
    #[arg(long, value_name = "NAME")]
    baseline: Option<String>,
    /// Compare with --baseline even if machine, build configuration or plugin set differ.
    #[arg(long)]
    allow_fingerprint_mismatch: bool,
    /// Slowdown that counts as a regression when the whole 95% interval is beyond it.
    #[arg(long, default_value_t = 0.05)]
    threshold: f64,
    /// Fail when a plugin's promised minimum speed-up is not met.
    #[arg(long)]
    require_promises: bool,
    /// Print the metric names budgets can use (for this plugin set) and exit.
    #[arg(long)]
    list_metrics: bool,
    /// Where reports, saved runs and history go.
    #[arg(long, default_value = "target/dubchain/bench")]
    out: PathBuf,
}

#[derive(Args)]
struct BenchChildArgs {
    #[arg(long)]
    case: String,
    #[arg(long)]
    side: String,
    #[arg(long)]
    iterations: u32,
    #[command(flatten)]
    micro: MicroArgs,
}

#[derive(Args)]
struct ProfileArgs {
    /// What to profile: chain, sig_verify, record_codec.
    #[arg(long, default_value = "chain")]
    workload: String,
    /// Sampling frequency, Hz.
    #[arg(long, default_value_t = 997)]
    frequency: i32,
    #[command(flatten)]
    system: SystemArgs,
    #[command(flatten)]
    micro: MicroArgs,
    /// Repetitions of a micro workload.
    #[arg(long, default_value_t = 20)]
    repeat: usize,
    /// Which side to profile: baseline, plugins or both.
    #[arg(long, default_value = "both")]
    side: String,
    /// Do not sample the CPU (heap only).
    #[arg(long, hide = true)]
    no_cpu: bool,
    /// Also write a valgrind massif heap profile of each side (slow: runs the workload
    /// under valgrind).
    #[arg(long)]
    heap: bool,
    /// Recommend only on groups with at least this share of CPU (0..1).
    #[arg(long, default_value_t = 0.05)]
    min_share: f64,
    #[arg(long, default_value = "target/dubchain/profile")]
    out: PathBuf,
}

#[derive(Subcommand)]
enum PluginsCmd {
    /// Every plugin found: version, subsystem, slots, relations, and its state after loading
    /// the plan (disabled, enabled, failed, fallback).
    List {
        /// Also show the mapped library, its sha256 and who built it.
        #[arg(long)]
        verbose: bool,
    },
    /// The resolved plan: what is on, each layered slot's stack, and every problem. Exits
    /// non-zero if the plan cannot be applied.
    Plan,
    /// Why a plugin is on or off: the chain of reasons, and any problem it is part of.
    Why {
        /// Plugin name.
        name: String,
    },
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Scaffold a standalone plugin crate for SLOT: manifest, an implementation equal to the
    /// baseline, a differential test and a benchmark.
    New {
        /// Plugin (and crate) name: lowercase letters, digits, `_`.
        name: String,
        /// The slot it implements, e.g. `crypto.sig_verify`.
        #[arg(long)]
        slot: String,
        /// Directory to create the crate in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The DubChain checkout holding plugin-api/ and host/ (default: the one this binary
        /// was built from).
        #[arg(long)]
        source_root: Option<PathBuf>,
    },
    /// Run the conformance suite of the plugin's slot against its library, in a child
    /// process: ABI and load checks, identical answers on generated and adversarial inputs,
    /// error and panic containment, a quick ratio. Exits non-zero on any failure.
    Verify {
        /// A manifest, a plugin package directory, or a plugin crate directory.
        path: PathBuf,
        /// The library to verify (default: next to the manifest, or in target/release/).
        #[arg(long)]
        library: Option<PathBuf>,
    },
    /// The child side of `verify` (internal).
    #[command(hide = true)]
    VerifyChild {
        manifest: PathBuf,
        #[arg(long)]
        library: PathBuf,
    },
}

#[derive(Subcommand)]
enum ChainCmd {
    /// Produce blocks on the store in --data-dir, resuming from its head, until it reaches
    /// --blocks; prints each committed block.
    Produce {
        #[command(flatten)]
        chain: ChainArgs,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Reopen the store in --data-dir (finishing crash recovery), replay every stored block
    /// from genesis on a scratch store, and check that the head, the replay and the stored
    /// state agree.
    Check {
        #[command(flatten)]
        chain: ChainArgs,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum GatesCmd {
    /// Write the effective gates (profile, imports and command line resolved) to FILE.
    Export { file: PathBuf },
    /// Check FILE against the plugin directory and, if the resulting plan has no problems,
    /// make it the imported gates of this state directory (they override the profile).
    Import { file: PathBuf },
    /// Forget the imported gates.
    Reset,
}

#[derive(Args, Clone)]
struct ChainArgs {
    /// Blocks to produce.
    #[arg(long, default_value_t = 60)]
    blocks: u64,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Where the nodes keep their RocksDB stores.
    #[arg(long, default_value = "target/dubchain/data")]
    data_dir: PathBuf,
}

impl ChainArgs {
    fn workload(&self, seed: u64) -> dubchain_host::node::gen::WorkloadConfig {
        self.workload.config(seed)
    }
}

/// The shape of the generated chain workload, shared by `run`, `chain`, `bench` and
/// `profile`.
#[derive(Args, Clone)]
struct WorkloadArgs {
    /// Transactions submitted per block (and the most a block takes).
    #[arg(long, default_value_t = 256)]
    txs_per_block: usize,
    /// Accounts in the genesis state.
    #[arg(long, default_value_t = 1_000)]
    accounts: usize,
    /// Validators taking turns as proposer.
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Zipf exponent of sender and recipient choice (0 = uniform; higher = hotter keys).
    #[arg(long, default_value_t = 1.1)]
    zipf: f64,
    /// Share of submitted transactions that are invalid (bad signature, bad nonce,
    /// insufficient balance, undeclared access, duplicate, out of gas).
    #[arg(long, default_value_t = 0.05)]
    invalid_share: f64,
    /// Share of valid transactions that are contract calls (one in twenty a deploy).
    #[arg(long, default_value_t = 0.05)]
    contract_share: f64,
}

impl WorkloadArgs {
    fn config(&self, seed: u64) -> dubchain_host::node::gen::WorkloadConfig {
        dubchain_host::node::gen::WorkloadConfig {
            seed,
            accounts: self.accounts,
            validators: self.validators,
            txs_per_block: self.txs_per_block,
            zipf: self.zipf,
            invalid_share: self.invalid_share,
            contract_share: self.contract_share,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    chain: ChainArgs,
    /// Signatures per verification batch.
    #[arg(long, default_value_t = 2048)]
    signatures: usize,
    /// Blocks per record-codec batch in the slot table (each with 64 transactions, all
    /// stored as records).
    #[arg(long, default_value_t = 32)]
    record_blocks: usize,
    /// Interleaved rounds per slot workload (baseline, plugins, plugins, baseline, ...).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Chain runs per side, alternating (B P, P B, ...); every row's interval is over them.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    runs: u16,
    /// Go on when the plan has problems or a plugin fails to load: the missing plugins'
    /// slots run on baselines, and the tables say which plugins were missing.
    #[arg(long)]
    allow_missing: bool,
    /// Seed of the generated workload.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where to write `run.json`.
    #[arg(long, default_value = "target/dubchain")]
    out: PathBuf,
    /// After the table, keep the workload running and watch the plugin directory: plugins
    /// dropped in, rebuilt or removed are reloaded live and each swap is printed.
    #[arg(long)]
    watch: bool,
    /// With `--watch`: stop after this many seconds (default: run until interrupted).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<u64>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DUBCHAIN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let g = cli.global;
    // The same selection again, for child processes (callgrind, massif).
    let mut global_args: Vec<String> = vec![
        "--plugin-dir".into(),
        g.plugin_dir.display().to_string(),
        "--profile".into(),
        g.profile.clone(),
        "--state-dir".into(),
        g.state_dir.display().to_string(),
    ];
    if let Some(c) = &g.config {
        global_args.extend(["--config".into(), c.display().to_string()]);
    }
    for e in &g.enable {
        global_args.extend(["--enable".into(), e.clone()]);
    }
    for d in &g.disable {
        global_args.extend(["--disable".into(), d.clone()]);
    }
    let options = SessionOptions {
        plugin_dir: g.plugin_dir,
        config: g.config,
        profile: g.profile,
        state_dir: g.state_dir,
        enable: g.enable,
        disable: g.disable,
    };
    match cli.command {
        Command::Plugins(PluginsCmd::List { verbose }) => list(&Session::open(options)?, verbose),
        Command::Plugins(PluginsCmd::Plan) => plan(&Session::open(options)?),
        Command::Plugins(PluginsCmd::Why { name }) => why(&Session::open(options)?, &name),
        Command::Gates(GatesCmd::Export { file }) => gates_export(&Session::open(options)?, &file),
        Command::Gates(GatesCmd::Import { file }) => gates_import(options, &file),
        Command::Gates(GatesCmd::Reset) => {
            let path = options.state_dir.join("gates.json");
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
                println!("removed imported gates {}", path.display());
            } else {
                println!("no imported gates at {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run_workload(&Session::open(options)?, &args),
        Command::Chain(ChainCmd::Produce { chain, seed }) => {
            chain_produce(&Session::open(options)?, &chain, seed)
        }
        Command::Chain(ChainCmd::Check { chain, seed }) => {
            chain_check(&Session::open(options)?, &chain, seed)
        }
        Command::Plugin(PluginCmd::New {
            name,
            slot,
            dir,
            source_root,
        }) => {
            let root = source_root.unwrap_or_else(dubchain_host::scaffold::default_source_root);
            let created = dubchain_host::scaffold::new_plugin(&dir, &name, &slot, &root)
                .map_err(anyhow::Error::msg)?;
            println!("created {} ({slot})", created.display());
            println!("next: cd {} && cargo test && cargo build --release && dubchain-perf plugin verify .", created.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCmd::Verify { path, library }) => {
            let (manifest, library) = dubchain_host::verify::locate(&path, library.as_deref())
                .map_err(anyhow::Error::msg)?;
            println!(
                "verifying {} with {}",
                manifest.display(),
                library.display()
            );
            let exe = std::env::current_exe().context("locating dubchain-perf")?;
            let ok = dubchain_host::verify::run_parent(
                &exe,
                &manifest,
                &library,
                &mut std::io::stdout(),
            )?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench(args) => bench(&Session::open(options)?, &args, global_args),
        Command::Profile(args) => profile(&Session::open(options)?, &args, global_args),
        Command::BenchChild(args) => {
            let s = Session::open(options)?;
            let host = loaded_host(&s);
            let side = match args.side.as_str() {
                "baseline" => dubchain_host::perf::micro::Side::Baseline,
                _ => dubchain_host::perf::micro::Side::Plugin,
            };
            dubchain_host::perf::suite::child(
                &s,
                &host,
                &micro_options(&args.micro, 1),
                &args.case,
                side,
                args.iterations,
            )
            .map_err(anyhow::Error::msg)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin(PluginCmd::VerifyChild { manifest, library }) => {
            // The verdict travels in the checks; a non-zero exit means the child crashed.
            dubchain_host::verify::run_child(&manifest, &library);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_manifest_errors(s: &Session) {
    for e in &s.manifest_errors {
        eprintln!("error: {e} (skipped; the other plugins are unaffected)");
    }
    for w in &s.resolution.warnings {
        eprintln!("warning: {w}");
    }
}

fn print_table(rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for (i, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
        if i == 0 {
            println!(
                "{}",
                widths
                    .iter()
                    .map(|w| "-".repeat(*w))
                    .collect::<Vec<_>>()
                    .join("  ")
            );
        }
    }
}

/// Applies the session's plan to a fresh host; problems are printed, not fatal.
fn loaded_host(s: &Session) -> Host {
    let host = s.host();
    match s.apply(&host) {
        Ok(report) => {
            for e in &report.failed {
                eprintln!("error: {e}");
            }
        }
        Err(problems) => {
            eprintln!(
                "the plan has {} problem(s); nothing was loaded:",
                problems.len()
            );
            for p in &problems {
                eprintln!("  - {p}");
            }
        }
    }
    host
}

fn list(s: &Session, verbose: bool) -> Result<ExitCode> {
    print_manifest_errors(s);
    let host = loaded_host(s);
    println!("plugin directory: {}", s.options.plugin_dir.display());
    println!(
        "profile: {} ({})  feature set: {}",
        s.options.profile, s.config.source, s.resolution.feature_set_id
    );
    if s.manifests.is_empty() {
        println!("no plugins found; build them with `cargo xtask plugins`");
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "name",
        "version",
        "subsystem",
        "provides",
        "depends",
        "conflicts",
        "state",
    ]
    .map(String::from)
    .to_vec()];
    for m in &s.manifests {
        let provides: Vec<String> = m
            .provides
            .iter()
            .map(|p| format!("{}@{}", p.slot, p.version))
            .collect();
        let depends: Vec<String> = m
            .depends
            .iter()
            .map(|d| format!("{} {}", d.name, d.version))
            .collect();
        let conflicts: Vec<String> = m.conflicts.iter().map(|c| c.name.clone()).collect();
        let dash = |v: Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        rows.push(vec![
            m.name.clone(),
            m.version.to_string(),
            m.subsystem.clone(),
            dash(provides),
            dash(depends),
            dash(conflicts),
            host.plugin_state(&m.name).to_string(),
        ]);
    }
    print_table(&rows);
    for m in &s.manifests {
        if let PluginState::Failed(why) = host.plugin_state(&m.name) {
            println!("\n{}: failed: {why}", m.name);
        }
        if verbose {
            if let Some((mapped, sha, built)) = host.live_library(&m.name) {
                println!(
                    "\n{}: {}\n  mapped from {}\n  sha256 {sha}\n  built by {built}",
                    m.name,
                    m.library.display(),
                    mapped.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn plan(s: &Session) -> Result<ExitCode> {
    print_manifest_errors(s);
    let r = &s.resolution;
    println!("profile: {} ({})", s.options.profile, s.config.source);
    if let Some((path, _)) = &s.imported {
        println!("imported gates: {}", path.display());
    }
    println!("feature set: {}", r.feature_set_id);
    println!("\nenabled:");
    for name in r.enabled() {
        println!(
            "  {name}: {}",
            r.decisions[name]
                .reasons
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    println!("\nslots (bottom to top, over the baseline):");
    for info in dubchain_plugin_api::slots::ALL {
        let stack = r
            .stacks
            .get(info.id)
            .map(|v| v.join(" > "))
            .unwrap_or_default();
        let kind = format!("{:?}", info.kind).to_lowercase();
        let stack = if stack.is_empty() {
            "baseline".to_owned()
        } else {
            format!("baseline > {stack}")
        };
        println!("  {} ({kind}): {stack}", info.id);
    }
    if r.problems.is_empty() && s.manifest_errors.is_empty() {
        println!("\nno problems");
        return Ok(ExitCode::SUCCESS);
    }
    if !r.problems.is_empty() {
        println!(
            "\n{} problem(s); this plan cannot be applied and the running set would stay as it is:",
            r.problems.len()
        );
        for p in &r.problems {
            println!("  - {p}");
        }
    }
    Ok(ExitCode::FAILURE)
}

fn why(s: &Session, name: &str) -> Result<ExitCode> {
    let Some(decision) = s.resolution.decisions.get(name) else {
        let known: Vec<&str> = s.manifests.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "no plugin named `{name}` in {} (found: {})",
            s.options.plugin_dir.display(),
            known.join(", ")
        );
    };
    println!("{name} is {}", if decision.enabled { "ON" } else { "OFF" });
    explain(s, name, 1, &mut Vec::new());
    let problems: Vec<_> = s
        .resolution
        .problems
        .iter()
        .filter(|p| p.plugins().contains(&name))
        .collect();
    if !problems.is_empty() {
        println!("problems involving {name} (the plan cannot be applied until they are fixed):");
        for p in problems {
            println!("  - {p}");
        }
    }
    if decision.enabled && s.resolution.is_ok() {
        let host = loaded_host(s);
        match host.plugin_state(name) {
            PluginState::Failed(e) => {
                println!("but loading it failed, so its slots answer from the baseline: {e}")
            }
            state => println!("after loading: {state}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(s: &Session, name: &str, depth: usize, seen: &mut Vec<String>) {
    if seen.iter().any(|n| n == name) {
        return;
    }
    seen.push(name.to_owned());
    let indent = "  ".repeat(depth);
    for reason in &s.resolution.decisions[name].reasons {
        println!("{indent}- {reason}");
        if let Reason::RequiredBy { plugin, .. } = reason {
            explain(s, plugin, depth + 1, seen);
        }
    }
}

fn versions(s: &Session) -> BTreeMap<String, String> {
    s.manifests
        .iter()
        .map(|m| (m.name.clone(), m.version.to_string()))
        .collect()
}

fn gates_export(s: &Session, file: &PathBuf) -> Result<ExitCode> {
    print_manifest_errors(s);
    if !s.resolution.is_ok() {
        for p in &s.resolution.problems {
            eprintln!("  - {p}");
        }
        bail!(
            "the plan has {} problem(s); fix them before exporting",
            s.resolution.problems.len()
        );
    }
    let gates = GatesFile::from_resolution(&s.options.profile, &s.resolution, &versions(s));
    gates
        .write(file)
        .with_context(|| format!("writing {}", file.display()))?;
    let on = gates.gates.values().filter(|g| g.enabled).count();
    println!(
        "wrote {} ({} gates, {on} on, feature set {})",
        file.display(),
        gates.gates.len(),
        gates.feature_set_id
    );
    Ok(ExitCode::SUCCESS)
}

fn gates_import(options: SessionOptions, file: &PathBuf) -> Result<ExitCode> {
    let s = Session::open_with_gates(options, Some(file))?;
    print_manifest_errors(&s);
    let (_, gates) = s.imported.as_ref().expect("opened with gates");
    for (name, gate) in &gates.gates {
        if let Some(m) = s.manifest(name) {
            if m.version.to_string() != gate.version {
                eprintln!(
                    "warning: {}: `{name}` was exported at version {}, the plugin directory has {}",
                    file.display(),
                    gate.version,
                    m.version
                );
            }
        }
    }
    if !s.resolution.is_ok() {
        eprintln!(
            "{}: importing these gates gives a plan with {} problem(s):",
            file.display(),
            s.resolution.problems.len()
        );
        for p in &s.resolution.problems {
            eprintln!("  - {p}");
        }
        eprintln!("nothing was imported");
        return Ok(ExitCode::FAILURE);
    }
    let target = s.options.state_dir.join("gates.json");
    gates
        .write(&target)
        .with_context(|| format!("writing {}", target.display()))?;
    println!(
        "imported {} into {} (feature set {})",
        file.display(),
        target.display(),
        s.resolution.feature_set_id
    );
    Ok(ExitCode::SUCCESS)
}

/// Per-slot outcome of `run`.
fn run_workload(s: &Session, args: &RunArgs) -> Result<ExitCode> {
    use dubchain_host::perf::{micro, system};
    print_manifest_errors(s);
    // Refused before anything runs: a plan with problems, or a plugin that fails to load,
    // unless --allow-missing (then the tables say which plugins are missing).
    let host = s.host();
    let missing: Vec<String> = match s.apply(&host) {
        Ok(report) => {
            for e in &report.failed {
                eprintln!("error: {e}");
            }
            report
                .failed
                .iter()
                .map(|e| e.plugin().to_owned())
                .collect()
        }
        Err(problems) => {
            eprintln!("error: the plan has {} problem(s):", problems.len());
            for p in &problems {
                eprintln!("  - {p}");
            }
            if !args.allow_missing {
                eprintln!("nothing was run; fix the plan (`dubchain-perf plugins plan`) or pass --allow-missing to run without the plugins it leaves out");
                return Ok(ExitCode::from(2));
            }
            s.resolution.enabled().map(str::to_owned).collect()
        }
    };
    if !missing.is_empty() && !args.allow_missing {
        eprintln!("nothing was run: {} failed to load; fix it or pass --allow-missing to compare without it", missing.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    let c = &args.chain;
    eprintln!(
        "chain: {} blocks of up to {} transactions, {} accounts (zipf {}), {} validators, {:.0}% invalid, {:.0}% contract calls, seed {}; {} runs per side, alternating, every node on a freshly loaded host",
        c.blocks,
        c.workload.txs_per_block,
        c.workload.accounts,
        c.workload.zipf,
        c.workload.validators,
        c.workload.invalid_share * 100.0,
        c.workload.contract_share * 100.0,
        args.seed,
        args.runs
    );
    let plan_ok = s.resolution.is_ok();
    let fresh = || -> Result<Host, String> {
        if plan_ok {
            s.loaded_host(args.allow_missing)
        } else {
            Ok(s.host())
        }
    };
    let options = system::SystemOptions {
        workload: c.workload(args.seed),
        blocks: c.blocks,
        runs: args.runs.into(),
        data_dir: c.data_dir.clone(),
        network: true,
        catch_up: true,
        count_allocations: false,
    };
    let mut bar = progress("chain runs", u64::from(args.runs) * 2);
    let chains = system::run(&|| Ok(s.host()), &fresh, &options, |i, _| bar(i as u64))
        .map_err(|e| anyhow::anyhow!(e))?;

    let micro_options = dubchain_host::perf::micro::MicroOptions {
        rounds: args.rounds,
        signatures: args.signatures,
        record_blocks: args.record_blocks,
        seed: args.seed,
        ..Default::default()
    };
    let slots = if plan_ok {
        micro::run_except(s, &host, &micro_options, &missing, |_, _, _| {})
            .map_err(|e| anyhow::anyhow!(e))?
    } else {
        Vec::new()
    };

    println!(
        "feature set {} (profile {})",
        s.resolution.feature_set_id, s.options.profile
    );
    if !missing.is_empty() {
        println!(
            "MISSING (not loaded, their slots ran on baselines): {}",
            missing.join(", ")
        );
    }
    let markdown = print_chain_table(s, &chains, &missing, args.seed);
    print_slot_table(&slots, args.rounds);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = args.out.join("run.json");
    let json = serde_json::json!({
        "feature_set_id": s.resolution.feature_set_id,
        "profile": s.options.profile,
        "seed": args.seed,
        "fingerprint": dubchain_host::perf::fingerprint::Fingerprint::current(
            dubchain_host::perf::suite::plugin_set(s),
        ),
        "missing": missing,
        "runs_per_side": chains.runs_per_side,
        "rows": chains.rows,
        "chain": chains.chain,
        "identical": chains.identical,
        "slots": slots,
    });
    std::fs::write(args.out.join("run.md"), &markdown)
        .with_context(|| format!("writing {}", args.out.display()))?;
    std::fs::write(&out, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    if !chains.identical {
        eprintln!("error: the runs with plugins did not reach the same chain as the baselines");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(r) = slots.iter().find(|r| !r.identical) {
        eprintln!(
            "error: {} answered differently from the baseline on `{}`",
            r.plugin, r.id
        );
        return Ok(ExitCode::FAILURE);
    }
    if args.watch {
        return watch_loop(
            s,
            std::sync::Arc::new(host),
            &c.workload(args.seed),
            &c.data_dir,
            args.duration.map(Duration::from_secs),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the stage table of the main job; returns it as Markdown.
fn print_chain_table(
    s: &Session,
    r: &dubchain_host::perf::SystemResult,
    missing: &[String],
    seed: u64,
) -> String {
    use dubchain_host::perf::StageRow;
    let header = [
        "stage",
        "baselines",
        "plugins",
        "speed-up [95% interval]",
        "verdict",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for row in &r.rows {
        rows.push(vec![
            row.name.clone(),
            format!("{:.2} {}", StageRow::median(&row.baseline), row.unit),
            format!("{:.2} {}", StageRow::median(&row.plugins), row.unit),
            format!("{:.2}x [{:.2}, {:.2}]", row.ratio, row.ci95[0], row.ci95[1]),
            row.verdict().to_owned(),
        ]);
    }
    if let Some(ch) = &r.chain {
        println!(
            "chain of {} blocks ({} final), {} transactions included, {} rejected at admission, {} invalid votes refused",
            ch.blocks, ch.finalized, ch.transactions, ch.rejected, ch.invalid_votes
        );
    }
    print_table(&rows);
    let verdict = match (&r.chain, r.identical) {
        (Some(ch), true) => format!(
            "same chain in all {} runs: block {:?}, state root {:?}, on the proposer, the validator, every TCP node and the catch-up node",
            r.runs_per_side * 2,
            ch.last_block,
            ch.state_root
        ),
        _ => "DIFFERENT CHAINS: some run did not reach the baselines' chain".to_owned(),
    };
    println!("{verdict}");
    println!(
        "(medians of {} runs per side, alternating B P, P B, ...; each ratio is the median of the per-run ratios with a 95% bootstrap interval, \"no change\" when it contains 1; host and plugins are built with the same optimisation settings, see the fingerprint in run.json)\n",
        r.runs_per_side
    );
    let mut md = format!(
        "# DubChain run\n\nfeature set `{}` (profile `{}`), seed {seed}, {} runs per side\n\n{verdict}\n\n",
        s.resolution.feature_set_id, s.options.profile, r.runs_per_side
    );
    if !missing.is_empty() {
        md += &format!("Missing (ran on baselines): {}\n\n", missing.join(", "));
    }
    md += &format!("| {} |\n|---|---|---|---|---|\n", rows[0].join(" | "));
    for row in &rows[1..] {
        md += &format!("| {} |\n", row.join(" | "));
    }
    md
}

/// Prints each plugin's slot workloads against the baseline (the bench suite's micro cases).
fn print_slot_table(slots: &[dubchain_host::perf::MicroResult], rounds: usize) {
    if slots.is_empty() {
        return;
    }
    let head = [
        "case",
        "plugin",
        "speed-up [95% interval]",
        "catalogue goal",
        "promise",
        "identical",
    ];
    let mut rows = vec![head.map(String::from).to_vec()];
    for r in slots {
        rows.push(vec![
            r.id.clone(),
            r.plugin.clone(),
            format!(
                "{:.2}x [{:.2}, {:.2}]",
                r.ratio.median, r.ratio.low, r.ratio.high
            ),
            r.goal.map_or("-".into(), |g| format!(">= {g}x")),
            r.promise.map_or("-".into(), |p| format!(">= {p}x")),
            if r.identical { "yes" } else { "NO" }.to_owned(),
        ]);
    }
    println!("each plugin alone on its own host, on its slot's workloads ({rounds} interleaved rounds; the same cases as `bench`):");
    print_table(&rows);
}

/// A progress line on stderr while a chain runs (only on a terminal).
fn progress(label: &'static str, total: u64) -> impl FnMut(u64) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    move |height| {
        if tty {
            let filled = (height * 30 / total.max(1)) as usize;
            eprint!(
                "\r{label:>10} [{}{}] {height}/{total}",
                "#".repeat(filled),
                " ".repeat(30 - filled)
            );
            if height == total {
                eprintln!();
            }
        }
    }
}

fn chain_produce(s: &Session, args: &ChainArgs, seed: u64) -> Result<ExitCode> {
    use dubchain_host::node::{block, gen::Workload, mempool::Mempool, state::StateStore};
    use std::io::Write;
    print_manifest_errors(s);
    let host = loaded_host(s);
    let workload = Workload::new(args.workload(seed));
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let store = StateStore::open(&args.data_dir)?;
    store.attach(&host.slots);
    if store.head()?.is_none() {
        block::commit_genesis(&host, &store, &workload.genesis())?;
    }
    let mut mempool = Mempool::new(&host.slots);
    let mut out = std::io::stdout();
    loop {
        let head = store.head()?.expect("genesis committed");
        if head.height >= args.blocks {
            writeln!(
                out,
                "head {} {:?} root {:?}",
                head.height, head.hash, head.state_root
            )?;
            return Ok(ExitCode::SUCCESS);
        }
        let txs = workload.txs_for_block(head.height + 1, &store)?;
        mempool.admit_with(
            txs,
            &host.slots.sig_verify,
            Some(&host.slots.tx_validation),
            &store,
        )?;
        let (b, _) = block::produce(
            &host,
            &store,
            &mut mempool,
            workload.proposer(head.height + 1),
            args.workload.txs_per_block,
        )?;
        writeln!(
            out,
            "committed block {} with {} transactions, root {:?}",
            b.header.height,
            b.transactions.len(),
            b.header.state_root
        )?;
        out.flush()?;
    }
}

fn chain_check(s: &Session, args: &ChainArgs, seed: u64) -> Result<ExitCode> {
    use dubchain_host::node::{block, gen::Workload, state::StateStore};
    print_manifest_errors(s);
    let host = loaded_host(s);
    let store = StateStore::open(&args.data_dir)?;
    let Some(head) = store.head()? else {
        bail!(
            "{}: no chain (the store has no head)",
            args.data_dir.display()
        );
    };
    let stored_root = store.state_root()?;
    let scratch = std::env::temp_dir().join(format!("dubchain-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let replay = StateStore::open(&scratch)?;
    replay.attach(&host.slots);
    let workload = Workload::new(args.workload(seed));
    let genesis = block::commit_genesis(&host, &replay, &workload.genesis())?;
    // Catch-up sync: stored blocks replayed in runs of 64 (validated together by a
    // consensus.block_validation plugin if one is enabled).
    let mut replayed = genesis;
    let mut next = 1;
    while next <= head.height {
        let last = (next + 63).min(head.height);
        let run = (next..=last)
            .map(|h| block::stored_block(&host, &store, h))
            .collect::<Result<Vec<_>, _>>()?;
        let (heads, refused) = block::validate_run(&host, &replay, &run)?;
        if let Some((i, e)) = refused {
            bail!("replaying block {}: {e}", run[i].header.height);
        }
        replayed = *heads.last().expect("a run of at least one block");
        next = last + 1;
    }
    drop(replay);
    let _ = std::fs::remove_dir_all(&scratch);
    println!("head {} {:?}", head.height, head.hash);
    let ok = replayed == head && stored_root == head.state_root;
    if ok {
        println!("consistent: replaying {} blocks from genesis gives the head, and the stored state has its root", head.height);
        Ok(ExitCode::SUCCESS)
    } else {
        println!("INCONSISTENT: replay ends at {replayed:?}, stored state root {stored_root:?}, head {head:?}");
        Ok(ExitCode::FAILURE)
    }
}

/// Keeps the node running while the plugin directory is watched: a proposer and a validator
/// (stores under `<data-dir>/watch/`) produce and validate block after block, and every slot
/// is checked against its baseline between blocks. Prints each reload and, every few
/// seconds, the height and what is active. Stops at the first disagreement.
fn watch_loop(
    s: &Session,
    host: std::sync::Arc<Host>,
    workload: &dubchain_host::node::gen::WorkloadConfig,
    data_dir: &std::path::Path,
    duration: Option<Duration>,
) -> Result<ExitCode> {
    use dubchain_host::{
        node::{block, gen::Workload, mempool::Mempool, state::StateStore},
        perf::micro::{check_slots, MicroOptions},
        watch::{watch, Reloader},
    };
    let reloader = std::sync::Arc::new(Reloader::new(host.clone(), s.options.clone()));
    let _watcher = watch(&s.options.plugin_dir, reloader, |event| println!("{event}"))
        .with_context(|| format!("watching {}", s.options.plugin_dir.display()))?;
    let workload = Workload::new(workload.clone());
    let dirs = [
        data_dir.join("watch/proposer"),
        data_dir.join("watch/validator"),
    ];
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    // Not a measurement: both nodes run on the one host being reloaded, so every swap is
    // exercised by production and validation alike.
    let (proposer, validator) = (StateStore::open(&dirs[0])?, StateStore::open(&dirs[1])?);
    proposer.attach(&host.slots);
    validator.attach(&host.slots);
    block::commit_genesis(&host, &proposer, &workload.genesis())?;
    block::commit_genesis(&host, &validator, &workload.genesis())?;
    let mut mempool = Mempool::new(&host.slots);
    println!(
        "\nthe node keeps running; watching {} for plugin changes{}",
        s.options.plugin_dir.display(),
        match duration {
            Some(d) => format!(" for {}s", d.as_secs()),
            None => " (Ctrl-C to stop)".to_owned(),
        }
    );
    // Small workloads: the differential checks run every few seconds beside the node.
    let checks = MicroOptions {
        signatures: 256,
        record_blocks: 4,
        votes: 32,
        leaves: 300,
        block_txs: 64,
        run_blocks: 4,
        run_txs: 16,
        ..MicroOptions::default()
    };
    // Every slot with a provider against the baseline; the line says which were compared.
    let check = |height: u64| -> Result<String> {
        let results = check_slots(&host, &checks);
        if let Some(bad) = results.iter().find(|c| c.identical == Some(false)) {
            bail!(
                "block {height}: {} ({}) answered differently from the baseline",
                bad.slot,
                bad.stack.join(" > ")
            );
        }
        let (compared, unchecked): (Vec<_>, Vec<_>) =
            results.iter().partition(|c| c.identical.is_some());
        let names = |v: &[&dubchain_host::perf::micro::SlotCheck]| {
            v.iter().map(|c| c.slot).collect::<Vec<_>>().join(", ")
        };
        let mut line = format!("identical to the baselines: {}", names(&compared));
        if compared.is_empty() {
            line = "no slot with a provider has a differential check here".to_owned();
        }
        if !unchecked.is_empty() {
            line += &format!(
                "; not compared (no differential check in the watch loop): {}",
                names(&unchecked)
            );
        }
        Ok(line)
    };
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut height = 0;
    while duration.is_none_or(|d| start.elapsed() < d) {
        height += 1;
        let txs = workload.txs_for_block(height, &proposer)?;
        mempool.admit_with(
            txs,
            &host.slots.sig_verify,
            Some(&host.slots.tx_validation),
            &proposer,
        )?;
        let (b, _) = block::produce(
            &host,
            &proposer,
            &mut mempool,
            workload.proposer(height),
            workload.config.txs_per_block,
        )?;
        let head = block::validate_and_commit(&host, &validator, &b)
            .with_context(|| format!("the validator refused block {height}"))?;
        if Some(head) != proposer.head()? {
            bail!("proposer and validator disagree at block {height}");
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let active: Vec<String> = host
                .slot_status()
                .iter()
                .filter(|st| st.active != "baseline")
                .map(|st| format!("{}={}", st.slot, st.active))
                .collect();
            println!(
                "block {height}, validated; {}; active: {}",
                check(height)?,
                active.join(", ")
            );
        }
    }
    println!(
        "stopped at block {height}; every block validated; {}",
        check(height)?
    );
    Ok(ExitCode::SUCCESS)
}

fn micro_options(m: &MicroArgs, rounds: usize) -> dubchain_host::perf::micro::MicroOptions {
    dubchain_host::perf::micro::MicroOptions {
        rounds,
        signatures: m.signatures,
        record_blocks: m.record_blocks,
        votes: m.votes,
        leaves: m.leaves,
        block_txs: m.block_txs,
        run_blocks: m.run_blocks,
        run_txs: m.run_txs,
        seed: m.micro_seed,
    }
}

fn bench(s: &Session, args: &BenchArgs, global_args: Vec<String>) -> Result<ExitCode> {
    use dubchain_host::perf::{callgrind, suite, system::SystemOptions, BenchResults};
    print_manifest_errors(s);
    let micro = (!args.no_micro).then(|| micro_options(&args.micro, args.rounds));
    if args.list_metrics {
        let mut names: Vec<String> = BenchResults::system_metric_catalogue()
            .into_keys()
            .collect();
        if let Some(m) = &micro {
            for (id, ..) in dubchain_host::perf::micro::plan(s, m) {
                for what in ["ratio", "ratio_low", "plugin_time"] {
                    names.push(format!("micro.{id}.{what}"));
                }
                names.push(format!("instructions.{id}.ratio"));
                names.push(format!("instructions.{id}.plugin"));
            }
        }
        names.sort();
        for n in names {
            println!("{n}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let host = loaded_host(s);
    let options = suite::BenchOptions {
        micro,
        system: (!args.no_system).then(|| SystemOptions {
            workload: args.system.workload(),
            blocks: args.system.blocks,
            runs: args.runs.into(),
            data_dir: args.out.join("scratch"),
            network: false,
            catch_up: false,
            count_allocations: true,
        }),
        instructions: args.instructions.then(|| {
            let workload_args = vec![
                "--signatures".to_owned(),
                args.micro.signatures.to_string(),
                "--record-blocks".to_owned(),
                args.micro.record_blocks.to_string(),
                "--votes".to_owned(),
                args.micro.votes.to_string(),
                "--leaves".to_owned(),
                args.micro.leaves.to_string(),
                "--block-txs".to_owned(),
                args.micro.block_txs.to_string(),
                "--run-blocks".to_owned(),
                args.micro.run_blocks.to_string(),
                "--run-txs".to_owned(),
                args.micro.run_txs.to_string(),
                "--micro-seed".to_owned(),
                args.micro.micro_seed.to_string(),
            ];
            (
                callgrind::Child {
                    exe: std::env::current_exe().unwrap_or_else(|_| "dubchain-perf".into()),
                    global_args: global_args.clone(),
                    workload_args,
                    scratch: callgrind::scratch(&args.out),
                },
                args.instr_iterations,
            )
        }),
        budgets: args.budgets.clone(),
        save_baseline: args.save_baseline.clone(),
        baseline: args.baseline.clone(),
        allow_fingerprint_mismatch: args.allow_fingerprint_mismatch,
        threshold: args.threshold,
        require_promises: args.require_promises,
        out: args.out.clone(),
    };
    let outcome = match suite::run(s, &host, &options) {
        Ok(o) => o,
        Err(refused) => {
            eprintln!("error: {refused}");
            return Ok(ExitCode::from(2));
        }
    };
    print!(
        "{}",
        dubchain_host::perf::report::markdown(&outcome.results)
    );
    for w in &outcome.written {
        println!("wrote {}", w.display());
    }
    if outcome.failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for f in &outcome.failures {
            eprintln!("FAIL: {f}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn profile(s: &Session, args: &ProfileArgs, global_args: Vec<String>) -> Result<ExitCode> {
    use dubchain_host::perf::profile::{self as prof, ProfileOptions, ProfileSide};
    print_manifest_errors(s);
    let workload: prof::Workload = args.workload.parse().map_err(anyhow::Error::msg)?;
    let sides = match args.side.as_str() {
        "both" => vec![ProfileSide::Baseline, ProfileSide::Plugins],
        "baseline" => vec![ProfileSide::Baseline],
        "plugins" => vec![ProfileSide::Plugins],
        other => bail!("--side {other}: expected baseline, plugins or both"),
    };
    let host = loaded_host(s);
    let o = ProfileOptions {
        workload,
        frequency: args.frequency,
        chain: args.system.workload(),
        blocks: args.system.blocks,
        micro: micro_options(&args.micro, 1),
        repeat: args.repeat,
        sides: sides.clone(),
        cpu: !args.no_cpu,
        min_share: args.min_share,
        out: args.out.clone(),
    };
    let report = prof::run(s, &host, &o).map_err(anyhow::Error::msg)?;
    if args.no_cpu {
        // The massif child: the heap profile is the product, written by valgrind.
        return Ok(ExitCode::SUCCESS);
    }
    let mut md = prof::markdown(&report);
    if args.heap {
        let exe = std::env::current_exe().context("locating dubchain-perf")?;
        let profile_args: Vec<String> = vec![
            "--workload".into(),
            args.workload.clone(),
            "--blocks".into(),
            args.system.blocks.to_string(),
            "--txs-per-block".into(),
            args.system.workload.txs_per_block.to_string(),
            "--accounts".into(),
            args.system.workload.accounts.to_string(),
            "--validators".into(),
            args.system.workload.validators.to_string(),
            "--seed".into(),
            args.system.seed.to_string(),
            "--signatures".into(),
            args.micro.signatures.to_string(),
            "--record-blocks".into(),
            args.micro.record_blocks.to_string(),
            "--repeat".into(),
            args.repeat.to_string(),
        ];
        md += "## Heap profiles (valgrind massif)\n\n";
        for side in &sides {
            eprintln!("heap profile of {} under valgrind massif ...", side.name());
            let files = prof::massif(&exe, &global_args, &profile_args, *side, &args.out)
                .map_err(anyhow::Error::msg)?;
            for f in files {
                md += &format!("- {}\n", f.display());
            }
        }
    }
    let md_path = args.out.join("hotspots.md");
    std::fs::write(&md_path, &md).with_context(|| format!("writing {}", md_path.display()))?;
    let json_path = args.out.join("hotspots.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    print!("{md}");
    println!("wrote {} and {}", md_path.display(), json_path.display());
    Ok(ExitCode::SUCCESS)
}
