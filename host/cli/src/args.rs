//! The command line's arguments (clap), and the arguments handed on to child processes.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The DubChain optimization host: discovers optimization plugins in a directory, resolves
/// which are on (dependencies, conflicts, versions), loads them behind slots with the host's
/// baseline underneath, and runs workloads through them.
#[derive(Parser)]
#[command(
    name = "dubchain-perf",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 ok; 1 failure (a check failed, a plugin failed to load, a run could not finish); 2 refused input (arguments, configuration, profile, manifests or gates)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args)]
pub struct Global {
    /// Directory of plugin packages (manifests `*.toml` next to their libraries).
    #[arg(
        long,
        global = true,
        env = "DUBCHAIN_PLUGIN_DIR",
        default_value = "target/dubchain/plugins"
    )]
    pub plugin_dir: PathBuf,
    /// Configuration file (TOML with `[profiles.NAME]`); the built-in one when absent.
    #[arg(long, global = true, env = "DUBCHAIN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Configuration profile to use.
    #[arg(
        long,
        global = true,
        env = "DUBCHAIN_PROFILE",
        default_value = "development"
    )]
    pub profile: String,
    /// Directory of host state: gates imported with `gates import` live here.
    #[arg(
        long,
        global = true,
        env = "DUBCHAIN_STATE_DIR",
        default_value = "target/dubchain/state"
    )]
    pub state_dir: PathBuf,
    /// Enable a plugin, whatever the profile says (repeatable).
    #[arg(long = "enable", global = true, value_name = "NAME")]
    pub enable: Vec<String>,
    /// Disable a plugin, whatever the profile says (repeatable).
    #[arg(long = "disable", global = true, value_name = "NAME")]
    pub disable: Vec<String>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Inspect the plugins in the plugin directory.
    #[command(subcommand)]
    Plugins(PluginsCmd),
    /// Export or import the effective gate settings as JSON.
    #[command(subcommand)]
    Gates(GatesCmd),
    /// Write and check plugins.
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
    /// One node as a long-running process on a persistent data directory: it produces
    /// blocks every --block-time, serves its performance monitor (Prometheus metrics, the
    /// dashboard, alerts, the admin API) and reloads the plugin directory as it changes,
    /// until SIGINT or SIGTERM (then the block in progress is committed and it exits 0).
    /// Restarted on the same data directory, it goes on from its head.
    Node(NodeArgs),
    /// Start N node processes on loopback (each its own host, store and monitor), wait
    /// until each has the given height final, and report their heads.
    Cluster(ClusterArgs),
    /// The monitor's metrics, alert rules and dashboard, for Prometheus and Grafana.
    #[command(subcommand)]
    Monitor(MonitorCmd),
    /// The child side of `bench --instructions` (internal).
    #[command(hide = true)]
    BenchChild(BenchChildArgs),
}

#[derive(Args, Clone)]
pub struct MicroArgs {
    /// Signatures per `crypto.sig_verify` batch.
    #[arg(long, allow_negative_numbers = true, default_value_t = 2048, value_parser = at_least_one::<usize>)]
    pub signatures: usize,
    /// Blocks of 64 transactions per `storage.record_codec` batch.
    #[arg(long, allow_negative_numbers = true, default_value_t = 32, value_parser = at_least_one::<usize>)]
    pub record_blocks: usize,
    /// Votes per `consensus.vote_verify` batch (validators voting on one block).
    #[arg(long, allow_negative_numbers = true, default_value_t = 100, value_parser = at_least_one::<usize>)]
    pub votes: usize,
    /// Leaves of the `crypto.merkle` tree.
    #[arg(long, allow_negative_numbers = true, default_value_t = 4096, value_parser = at_least_one::<usize>)]
    pub leaves: usize,
    /// Transfers per `exec.block_execution` block.
    #[arg(long, allow_negative_numbers = true, default_value_t = 256, value_parser = at_least_one::<usize>)]
    pub block_txs: usize,
    /// Blocks of the `consensus.block_validation` run.
    #[arg(long, allow_negative_numbers = true, default_value_t = 64, value_parser = at_least_one::<usize>)]
    pub run_blocks: usize,
    /// Transfers per block of the `consensus.block_validation` run.
    #[arg(long, allow_negative_numbers = true, default_value_t = 256, value_parser = at_least_one::<usize>)]
    pub run_txs: usize,
    /// Heights of 100 votes each that the `consensus.vote_tally` case's four threads record.
    #[arg(long, allow_negative_numbers = true, default_value_t = 200, value_parser = at_least_one::<u64>)]
    pub tally_heights: u64,
    /// Pending transactions (of a tenth as many senders) the `mempool.tx_pool` case selects from.
    #[arg(long, allow_negative_numbers = true, default_value_t = 50_000, value_parser = at_least_one::<usize>)]
    pub pool_pending: usize,
    /// Account reads of the `storage.account_read` case.
    #[arg(long, allow_negative_numbers = true, default_value_t = 20_000, value_parser = at_least_one::<usize>)]
    pub reads: usize,
    /// Leaves of the state the `storage.state_root` case's blocks change.
    #[arg(long, allow_negative_numbers = true, default_value_t = 100_000, value_parser = at_least_one::<usize>)]
    pub state_leaves: usize,
    /// Frames each way per peer of the `net.transport` cases (16, 64 and 256 peers).
    #[arg(long, allow_negative_numbers = true, default_value_t = 64, value_parser = at_least_one::<usize>)]
    pub transport_frames: usize,
    /// Seed of the micro workloads.
    #[arg(
        long = "micro-seed",
        allow_negative_numbers = true,
        default_value_t = 7
    )]
    pub micro_seed: u64,
}

#[derive(Args, Clone)]
pub struct SystemArgs {
    /// Blocks per chain run.
    #[arg(long, allow_negative_numbers = true, default_value_t = 20, value_parser = at_least_one::<u64>)]
    pub blocks: u64,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Seed of the chain workload.
    #[arg(long, allow_negative_numbers = true, default_value_t = 42)]
    pub seed: u64,
}

impl SystemArgs {
    pub fn workload(&self) -> dubchain_node::gen::WorkloadConfig {
        self.workload.config(self.seed)
    }
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub micro: MicroArgs,
    #[command(flatten)]
    pub system: SystemArgs,
    /// Interleaved rounds per microbenchmark (at least 2: a ratio's interval needs two).
    #[arg(long, allow_negative_numbers = true, default_value_t = 20, value_parser = rounds)]
    pub rounds: usize,
    /// Chain runs per side in the system benchmark, alternating (at least 3 for an interval).
    #[arg(long, allow_negative_numbers = true, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub runs: u16,
    /// Run the microbenchmarks in N fresh processes (this one and N-1 more) and pool their
    /// rounds: the interval then also spans what differs between processes (memory layout,
    /// hash seeds), which the rounds of one process do not show.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1, value_parser = processes, conflicts_with = "no_micro")]
    pub processes: usize,
    /// Skip the microbenchmarks.
    #[arg(long)]
    pub no_micro: bool,
    /// Skip the system benchmark.
    #[arg(long)]
    pub no_system: bool,
    /// Also count instructions of each microbenchmark under callgrind (valgrind).
    #[arg(long)]
    pub instructions: bool,
    /// Also measure every enabled plugin that can be isolated again in a child process
    /// (`[host] isolate`), as `isolated.<plugin>.<case>` rows: the cost of isolation per call.
    #[arg(long)]
    pub isolation: bool,
    /// Only `vm_jit_caching`'s restart figure, over RUNS fresh hosts per side: the first call
    /// of each of 20 contracts after a restart, modules loaded from precompiled artifacts
    /// (under <out>/restart-artifacts) against compiled.
    #[arg(long, allow_negative_numbers = true, value_name = "RUNS", value_parser = at_least_one::<usize>)]
    pub module_restart: Option<usize>,
    /// Calls per callgrind count (the count of one call is the difference with zero calls).
    #[arg(long, allow_negative_numbers = true, default_value_t = 2, value_parser = at_least_one::<u32>)]
    pub instr_iterations: u32,
    /// Performance budgets (TOML, `[[budget]]` tables); an error-level violation fails.
    #[arg(long, value_name = "FILE")]
    pub budgets: Option<PathBuf>,
    /// Save this run as NAME under <out>/baselines/.
    #[arg(long, value_name = "NAME", value_parser = saved_run_name)]
    pub save_baseline: Option<String>,
    /// Compare with the saved run NAME; a statistically clear slowdown beyond --threshold fails.
    #[arg(long, value_name = "NAME", value_parser = saved_run_name)]
    pub baseline: Option<String>,
    /// Compare with --baseline even if machine, build configuration or plugin set differ.
    #[arg(long)]
    pub allow_fingerprint_mismatch: bool,
    /// Slowdown that counts as a regression when the whole 95% interval is beyond it.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.05, value_parser = threshold)]
    pub threshold: f64,
    /// Fail when a plugin's promised minimum speed-up is not met.
    #[arg(long)]
    pub require_promises: bool,
    /// Print the metric names budgets can use (for this plugin set) and exit.
    #[arg(long)]
    pub list_metrics: bool,
    /// Where reports, saved runs and history go.
    #[arg(long, default_value = "target/dubchain/bench")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct BenchChildArgs {
    #[arg(long)]
    pub case: String,
    #[arg(long)]
    pub side: String,
    #[arg(long, allow_negative_numbers = true)]
    pub iterations: u32,
    #[command(flatten)]
    pub micro: MicroArgs,
}

#[derive(Args)]
pub struct ProfileArgs {
    /// What to profile: `chain` (the node's chain workload); a slot, by id or by the stem
    /// after its dot (`crypto.merkle`, `merkle`), for all the micro cases `bench` times on
    /// it; or one of those cases by the name `bench` prints after the plugin's
    /// (`sig_verify_cold`, `framing`).
    #[arg(long, default_value = "chain")]
    pub workload: String,
    /// Sampling frequency, Hz (1 to 1000: the kernel's timer tick bounds the rate a
    /// profiling timer gives, and above 1 MHz pprof's timer would not run at all).
    #[arg(long, allow_negative_numbers = true, default_value_t = 997, value_parser = sampling_rate)]
    pub frequency: i32,
    #[command(flatten)]
    pub system: SystemArgs,
    #[command(flatten)]
    pub micro: MicroArgs,
    /// Repetitions of a slot's cases (default: as many as take 2 s of CPU on the sampled
    /// run, for a few hundred samples; the counted run repeats as many).
    #[arg(long, allow_negative_numbers = true, value_parser = at_least_one::<usize>)]
    pub repeat: Option<usize>,
    /// Which side to profile: baseline, plugins or both.
    #[arg(long, default_value = "both")]
    pub side: String,
    /// Do not sample the CPU (heap only).
    #[arg(long, hide = true)]
    pub no_cpu: bool,
    /// Also write a valgrind massif heap profile of each side (slow: runs the workload
    /// under valgrind).
    #[arg(long)]
    pub heap: bool,
    /// Recommend only on groups with at least this share of CPU (0..1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.05, value_parser = share)]
    pub min_share: f64,
    /// Where the flamegraphs, profiles and hotspot reports go.
    #[arg(long, default_value = "target/dubchain/profile")]
    pub out: PathBuf,
}

#[derive(Subcommand)]
pub enum PluginsCmd {
    /// Every plugin found: version, subsystem, slots, relations, and its state in the plan
    /// (enabled, disabled). Runs no plugin code; with --load, the state after loading the
    /// plan (disabled, enabled, failed, fallback). Exits 1 if a manifest in the directory
    /// could not be read or, with --load, a plugin failed to load
    List {
        /// Load the plan (each enabled plugin's library, init and self-tests) and show the
        /// states loading gives.
        #[arg(long)]
        load: bool,
        /// With --load: also show the mapped library, its sha256 and who built it.
        #[arg(long, requires = "load")]
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
pub enum PluginCmd {
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
        /// The DubChain checkout holding plugin-api/ and host/ (default: the nearest one at or
        /// above the current directory, else the one this binary was built from).
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
        /// Only this slot's quick ratio, after the load.
        #[arg(long)]
        quick_ratio: Option<String>,
    },
    /// The child side of an isolated plugin (internal): loads the plugin of --manifest
    /// (configuration in DUBCHAIN_PLUGIN_CONFIG) and answers the host's calls on standard
    /// input and output.
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        manifest: PathBuf,
        /// The host's deadline for the plugin's init.
        #[arg(long, allow_negative_numbers = true, default_value_t = 5_000)]
        init_timeout_ms: u64,
        /// The host's deadline for every other load step.
        #[arg(long, allow_negative_numbers = true, default_value_t = 30_000)]
        step_timeout_ms: u64,
    },
}

#[derive(Args)]
pub struct NodeArgs {
    /// The node's data directory (its RocksDB store and its admin token).
    #[arg(long, default_value = "target/dubchain/node")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Seed of the generated workload (the same seed on a restart gives the same chain).
    #[arg(long, allow_negative_numbers = true, default_value_t = 42)]
    pub seed: u64,
    /// Where the monitor listens (loopback unless given otherwise; port 0: any free port).
    #[arg(long, default_value = dubchain_monitor::DEFAULT_ADDR)]
    pub monitor: std::net::SocketAddr,
    /// The monitor's configuration (TOML: alert rules, shadow checks, live contracts); the
    /// built-in one when absent (`host/monitor/monitor.toml` documents every key).
    #[arg(long, value_name = "FILE")]
    pub monitor_config: Option<PathBuf>,
    /// A block every this many milliseconds (0: as fast as the node can).
    #[arg(long, allow_negative_numbers = true, default_value_t = 500)]
    pub block_time_ms: u64,
    /// Stop once the head reaches this height (default: run until interrupted); with
    /// peers, once this height is final.
    #[arg(long, allow_negative_numbers = true)]
    pub until_height: Option<u64>,
    /// Another validator, as INDEX@ADDR (repeatable; one per other validator, so
    /// --validators is one more than their number). Without peers the node runs alone.
    #[arg(long = "peer", value_name = "INDEX@ADDR", value_parser = peer)]
    pub peers: Vec<(usize, std::net::SocketAddr)>,
    /// This node's validator index (with peers; alone it would be ignored).
    #[arg(
        long,
        allow_negative_numbers = true,
        default_value_t = 0,
        requires = "peers"
    )]
    pub index: usize,
    /// Where the node listens for its peers (with peers; alone it would be ignored).
    #[arg(long, default_value = "127.0.0.1:7400", requires = "peers")]
    pub listen: std::net::SocketAddr,
    /// With --launched: listen on the socket the launcher bound and handed down as this
    /// descriptor, instead of binding --listen (no moment in which the port is free).
    #[arg(long, hide = true, requires = "launched")]
    pub listen_fd: Option<i32>,
    /// Run on the baselines only: load no plugin and watch no directory (the admin API can
    /// still enable one).
    #[arg(long)]
    pub baselines: bool,
    /// Started by a launcher (`cluster`, the main job's network stage): connect to every
    /// peer before running, print `report <JSON>` when --until-height is final, and close
    /// the connections only when standard input closes.
    #[arg(long, hide = true)]
    pub launched: bool,
}

fn peer(s: &str) -> Result<(usize, std::net::SocketAddr), String> {
    let (i, a) = s
        .split_once('@')
        .ok_or_else(|| format!("`{s}` is not INDEX@ADDR (for example 1@127.0.0.1:7401)"))?;
    let i = i
        .parse()
        .map_err(|_| format!("`{i}` in `{s}` is not a validator index"))?;
    let a = a
        .parse()
        .map_err(|_| format!("`{a}` in `{s}` is not an address (IP:PORT)"))?;
    Ok((i, a))
}

#[derive(Args)]
pub struct ClusterArgs {
    /// Node processes to start, each a validator with its own host and store.
    #[arg(long, allow_negative_numbers = true, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// Stop every node once this height is final.
    #[arg(long, allow_negative_numbers = true, default_value_t = 20)]
    pub until_height: u64,
    /// A block every this many milliseconds per proposer (0: as fast as they can).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub block_time_ms: u64,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Seed of the generated workload (every node generates the same one).
    #[arg(long, allow_negative_numbers = true, default_value_t = 42)]
    pub seed: u64,
    /// The nodes' stores go in `<data-dir>/node-<i>` (emptied first).
    #[arg(long, default_value = "target/dubchain/cluster")]
    pub data_dir: PathBuf,
    /// How long the nodes may take, in seconds, before they are stopped.
    #[arg(long, allow_negative_numbers = true, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Subcommand)]
pub enum MonitorCmd {
    /// Print every metric the monitor exports: name, type, labels, meaning.
    Metrics,
    /// Print the alert rules as a Prometheus rules file.
    Rules {
        /// The monitor configuration whose rules to export; the built-in one when absent.
        #[arg(long, value_name = "FILE")]
        monitor_config: Option<PathBuf>,
    },
    /// Print a Grafana dashboard (JSON) of the monitor's metrics.
    Dashboard,
}

#[derive(Subcommand)]
pub enum ChainCmd {
    /// Produce blocks on the store in --data-dir, resuming from its head, until it reaches
    /// --blocks; prints each committed block.
    Produce {
        #[command(flatten)]
        chain: ChainArgs,
        /// Seed of the generated workload (the same seed on a resume gives the same chain).
        #[arg(long, allow_negative_numbers = true, default_value_t = 42)]
        seed: u64,
    },
    /// Reopen the store in --data-dir (finishing crash recovery), replay every stored block
    /// from genesis on a scratch store, and check that the head, the replay and the stored
    /// state agree.
    Check {
        #[command(flatten)]
        chain: ChainArgs,
        /// Seed of the generated workload (the same seed as the chain was produced with).
        #[arg(long, allow_negative_numbers = true, default_value_t = 42)]
        seed: u64,
    },
    /// Rewrite every block stored in --data-dir with --codec (`json`, the baseline's records,
    /// or the name of the enabled `storage.record_codec` plugin), crash-safely: so that a
    /// codec plugin can be turned off without stranding what it wrote. Run it with the
    /// plugin that wrote the blocks enabled.
    Migrate {
        /// The store's directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The codec to rewrite the blocks with.
        #[arg(long, default_value = "json")]
        codec: String,
    },
    /// Commit numbered records from --committers threads at once on the store in --data-dir
    /// (created if missing; each committer resumes after its last record), every commit made
    /// durable through `storage.durability` before `acknowledged COMMITTER SEQ` is printed:
    /// what the group-commit crash test kills (`cargo xtask crash --committers`).
    CommitRace {
        /// The store's directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Threads committing at once.
        #[arg(long, allow_negative_numbers = true, default_value_t = 8, value_parser = at_least_one::<u32>)]
        committers: u32,
        /// Commits per committer.
        #[arg(long, allow_negative_numbers = true, default_value_t = 1_000_000, value_parser = at_least_one::<u64>)]
        commits: u64,
        /// Reopen the store instead and print `committer N: RECORDS records` for each, after
        /// checking every committer's records are numbered 0, 1, ... with no gap.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand)]
pub enum GatesCmd {
    /// Write the effective gates (profile, imports and command line resolved) to FILE.
    Export {
        /// The JSON file to write (its directory must exist).
        file: PathBuf,
    },
    /// Check FILE against the plugin directory and, if the resulting plan has no problems,
    /// make it the imported gates of this state directory (they override the profile).
    Import {
        /// A JSON file as `gates export` writes it.
        file: PathBuf,
    },
    /// Forget the imported gates.
    Reset,
}

#[derive(Args, Clone)]
pub struct ChainArgs {
    /// Blocks to produce.
    #[arg(long, allow_negative_numbers = true, default_value_t = 60, value_parser = at_least_one::<u64>)]
    pub blocks: u64,
    #[command(flatten)]
    pub workload: WorkloadArgs,
    /// Where the nodes keep their RocksDB stores.
    #[arg(long, default_value = "target/dubchain/data")]
    pub data_dir: PathBuf,
}

impl ChainArgs {
    pub fn workload(&self, seed: u64) -> dubchain_node::gen::WorkloadConfig {
        self.workload.config(seed)
    }
}

/// The shape of the generated chain workload, shared by `run`, `chain`, `bench` and
/// `profile`.
#[derive(Args, Clone)]
pub struct WorkloadArgs {
    /// Transactions submitted per block (and the most a block takes).
    #[arg(long, allow_negative_numbers = true, default_value_t = 256, value_parser = at_least_one::<usize>)]
    pub txs_per_block: usize,
    /// Accounts in the genesis state.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1_000, value_parser = at_least_one::<usize>)]
    pub accounts: usize,
    /// Validators taking turns as proposer.
    #[arg(long, allow_negative_numbers = true, default_value_t = 4, value_parser = at_least_one::<usize>)]
    pub validators: usize,
    /// Zipf exponent of sender and recipient choice (0 = uniform; higher = hotter keys).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.1, value_parser = exponent)]
    pub zipf: f64,
    /// Share of submitted transactions that are invalid (bad signature, bad nonce,
    /// insufficient balance, undeclared access, duplicate, out of gas).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.05, value_parser = share)]
    pub invalid_share: f64,
    /// Share of valid transactions that are contract calls (one in twenty a deploy).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.05, value_parser = share)]
    pub contract_share: f64,
}

/// A share: a number from 0 to 1.
fn share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("expected a number from 0 to 1, such as 0.05".to_owned()),
    }
}

/// An exponent: a finite number, 0 or more.
fn exponent(text: &str) -> Result<f64, String> {
    finite_at_least_zero(text, "1.1")
}

/// A count or a size of at least one.
fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(text: &str) -> Result<T, String> {
    at_least(text, 1)
}

/// A sampling frequency: 1 to 1000 Hz.
fn sampling_rate(text: &str) -> Result<i32, String> {
    match text.parse::<i32>() {
        Ok(v) if (1..=1000).contains(&v) => Ok(v),
        _ => Err("expected a whole number of Hz from 1 to 1000 (the kernel's timer tick bounds the sampling rate; 997 avoids lockstep with periodic work)".to_owned()),
    }
}

/// A saved run's name, which becomes `<out>/baselines/NAME.json`: letters, digits, `-`, `_`
/// and `.`, not starting with `.`, so it names a file in that directory and nowhere else.
fn saved_run_name(text: &str) -> Result<String, String> {
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if text.is_empty() || text.starts_with('.') || !text.chars().all(fits) {
        return Err("expected a name of letters, digits, `-`, `_` and `.`, not starting with `.` (it names a file under <out>/baselines/)".to_owned());
    }
    Ok(text.to_owned())
}

/// Processes to pool: at least this one.
fn processes(text: &str) -> Result<usize, String> {
    at_least(text, 1)
}

/// Interleaved rounds: at least two, or no interval.
fn rounds(text: &str) -> Result<usize, String> {
    at_least(text, 2).map_err(|e| format!("{e} (a ratio's interval needs two rounds)"))
}

fn at_least<T: std::str::FromStr + PartialOrd + From<u8>>(
    text: &str, min: u8,
) -> Result<T, String> {
    match text.parse::<T>() {
        Ok(v) if v >= T::from(min) => Ok(v),
        _ => Err(format!("expected a whole number, {min} or more")),
    }
}

/// A regression threshold: a finite fraction, 0 or more (`NaN` would pass every run).
fn threshold(text: &str) -> Result<f64, String> {
    finite_at_least_zero(text, "0.05 for 5%")
}

fn finite_at_least_zero(text: &str, example: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "expected a finite number, 0 or more, such as {example}"
        )),
    }
}

impl WorkloadArgs {
    pub fn config(&self, seed: u64) -> dubchain_node::gen::WorkloadConfig {
        dubchain_node::gen::WorkloadConfig {
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
pub struct RunArgs {
    #[command(flatten)]
    pub chain: ChainArgs,
    /// Signatures per verification batch.
    #[arg(long, allow_negative_numbers = true, default_value_t = 2048, value_parser = at_least_one::<usize>)]
    pub signatures: usize,
    /// Blocks per record-codec batch in the slot table (each with 64 transactions, all
    /// stored as records).
    #[arg(long, allow_negative_numbers = true, default_value_t = 32, value_parser = at_least_one::<usize>)]
    pub record_blocks: usize,
    /// Interleaved rounds per slot workload (baseline, plugins, plugins, baseline, ...; at
    /// least 2).
    #[arg(long, allow_negative_numbers = true, default_value_t = 5, value_parser = rounds)]
    pub rounds: usize,
    /// Chain runs per side, alternating (B P, P B, ...); every row's interval is over them.
    #[arg(long, allow_negative_numbers = true, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub runs: u16,
    /// Go on when the plan has problems or a plugin fails to load: the missing plugins'
    /// slots run on baselines, and the tables say which plugins were missing.
    #[arg(long)]
    pub allow_missing: bool,
    /// Seed of the generated workload.
    #[arg(long, allow_negative_numbers = true, default_value_t = 42)]
    pub seed: u64,
    /// Where to write `run.json`.
    #[arg(long, default_value = "target/dubchain")]
    pub out: PathBuf,
    /// After the table, keep the workload running and watch the plugin directory: plugins
    /// dropped in, rebuilt or removed are reloaded live and each swap is printed.
    #[arg(long)]
    pub watch: bool,
    /// With `--watch`: stop after this many seconds (default: run until interrupted).
    #[arg(long, allow_negative_numbers = true, value_name = "SECONDS")]
    pub duration: Option<u64>,
    /// With `--watch`: serve the performance monitor (metrics, dashboard, alerts, admin
    /// API) of the watched node on this address, e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", requires = "watch")]
    pub monitor: Option<std::net::SocketAddr>,
}

impl Global {
    /// The same plugin selection again, for child processes (callgrind, massif).
    pub fn child_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--plugin-dir".into(),
            self.plugin_dir.display().to_string(),
            "--profile".into(),
            self.profile.clone(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
        ];
        if let Some(c) = &self.config {
            args.extend(["--config".into(), c.display().to_string()]);
        }
        for e in &self.enable {
            args.extend(["--enable".into(), e.clone()]);
        }
        for d in &self.disable {
            args.extend(["--disable".into(), d.clone()]);
        }
        args
    }

    pub fn session_options(self) -> dubchain_host::session::SessionOptions {
        dubchain_host::session::SessionOptions {
            plugin_dir: self.plugin_dir,
            config: self.config,
            profile: self.profile,
            state_dir: self.state_dir,
            enable: self.enable,
            disable: self.disable,
            monitor: Vec::new(),
        }
    }
}

impl MicroArgs {
    pub fn options(&self, rounds: usize) -> dubchain_instruments::micro::MicroOptions {
        dubchain_instruments::micro::MicroOptions {
            rounds,
            signatures: self.signatures,
            record_blocks: self.record_blocks,
            votes: self.votes,
            leaves: self.leaves,
            block_txs: self.block_txs,
            run_blocks: self.run_blocks,
            run_txs: self.run_txs,
            tally_heights: self.tally_heights,
            pool_pending: self.pool_pending,
            reads: self.reads,
            state_leaves: self.state_leaves,
            transport_frames: self.transport_frames,
            seed: self.micro_seed,
        }
    }

    /// These sizes again, for a `bench-child`.
    pub fn child_args(&self) -> Vec<String> {
        dubchain_node::flags!(self;
            signatures, record_blocks, votes, leaves, block_txs, run_blocks, run_txs,
            tally_heights, pool_pending, reads, state_leaves, transport_frames, micro_seed)
        .collect()
    }
}

impl ProfileArgs {
    /// This workload again, for the massif child of `profile --heap`, with the repetitions
    /// the side's sampled run made.
    pub fn child_args(&self, repeat: usize) -> Vec<String> {
        use dubchain_node::flags;
        flags!(self; workload)
            .chain(flags!(self.system; blocks, seed))
            .chain(flags!(self.system.workload; txs_per_block, accounts, validators))
            .chain(["--repeat".to_owned(), repeat.to_string()])
            .chain(self.micro.child_args())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The arguments a profile hands its massif child parse, in the child, to the same
    /// workload, sizes, seeds and repetitions.
    #[test]
    fn a_profile_child_is_given_the_same_workload() {
        use clap::Parser;
        let parse = |args: &[String]| match super::Cli::try_parse_from(args).unwrap().command {
            super::Command::Profile(p) => p,
            _ => unreachable!("a profile command"),
        };
        let line = "dubchain-perf profile --workload merkle --blocks 3 --txs-per-block 7 \
                    --accounts 9 --validators 5 --seed 11 --signatures 13 --votes 17 \
                    --reads 19 --micro-seed 23";
        let given = parse(&line.split(' ').map(String::from).collect::<Vec<_>>());
        let child_line = [
            vec!["dubchain-perf".into(), "profile".into()],
            given.child_args(29),
        ];
        let child = parse(&child_line.concat());
        let w = &child.system.workload;
        assert_eq!(
            (
                child.workload.as_str(),
                child.system.blocks,
                child.system.seed,
                child.repeat
            ),
            ("merkle", 3, 11, Some(29))
        );
        assert_eq!((w.txs_per_block, w.accounts, w.validators), (7, 9, 5));
        let micro = |p: &super::ProfileArgs| (p.micro.signatures, p.micro.votes, p.micro.reads);
        assert_eq!(micro(&child), (13, 17, 19));
        assert_eq!(child.micro.micro_seed, 23);
    }

    /// Every argument of every command says in `--help` what it is for (hidden ones, which
    /// only the host's own children pass, aside).
    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.is_hide_set() || id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{path}: {}", a.get_long().unwrap_or(id)));
                }
            }
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "dubchain-perf", &mut missing);
        assert!(missing.is_empty(), "arguments without help: {missing:#?}");
    }
}
