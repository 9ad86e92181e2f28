//! `dubchain-perf profile`: where the time and the memory go, on baselines and with the
//! configured plugins, and which plugins would take the hotspots away.
//!
//! For each side the workload runs under pprof's sampling profiler (SIGPROF at
//! `frequency` Hz, stacks unwound in the signal handler). Outputs per side: a flamegraph
//! SVG and a pprof protobuf (`go tool pprof`, speedscope, ...). The samples are then
//! folded into a hotspot report: functions by self samples (the innermost frame) and total
//! samples (anywhere on the stack), and groups (ed25519 verification, JSON records,
//! RocksDB, BLS votes, ...) tied to the subsystem and, where one exists, the slot that a
//! plugin can fill. Recommendations come from the manifests' performance contracts:
//! a group holding a share `f` of CPU on the baselines, with a plugin promising `s`x on
//! its slot, is worth at most `1 / ((1 - f) + f / s)` overall (Amdahl), and the
//! recommendations are ordered by that bound.
//!
//! Memory: the counting global allocator gives allocations, bytes and the peak of the
//! host's heap per workload and, for the chain, per stage; `--heap` adds a valgrind massif
//! heap profile of each side (which also sees plugins and RocksDB).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    time::Instant,
};

use serde::Serialize;

use dubchain_host::{
    alloc_count::{self, AllocStats},
    host::HostOptions,
    session::Session,
    Host,
};
use dubchain_node::{
    gen::WorkloadConfig,
    run::{run_chain, ChainConfig, NodeHosts, StageAllocs},
};
use dubchain_plugin_api::slots;

use crate::{
    fingerprint::Fingerprint,
    micro::{self, MicroOptions, Side},
    report, suite,
};

/// What to profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    /// The node's chain workload (`run`'s, with its flags).
    Chain,
    /// Micro workloads of one slot, the cases `bench` times ([`micro::cases`]), repeated:
    /// all of the slot's, or the one named.
    Cases {
        slot: &'static str,
        case: Option<&'static str>,
    },
}

impl Workload {
    /// `chain`; a slot, by its id or the stem after the dot (`crypto.merkle`, `merkle`):
    /// all its cases; or one case, by the name `bench` gives it (`sig_verify_cold`). A slot
    /// wins over a case of the same name (`sig_verify` is both).
    pub fn parse(s: &str, o: &MicroOptions) -> Result<Workload, String> {
        if s == "chain" {
            return Ok(Workload::Chain);
        }
        let stem = |id: &'static str| id.split_once('.').map_or(id, |(_, stem)| stem);
        let with_cases = || {
            slots::ALL
                .iter()
                .map(|slot| (slot.id, micro::cases(slot.id, o)))
                .filter(|(_, cases)| !cases.is_empty())
        };
        if let Some((slot, _)) = with_cases().find(|(id, _)| s == *id || s == stem(id)) {
            return Ok(Workload::Cases { slot, case: None });
        }
        let named = with_cases()
            .find_map(|(slot, cases)| cases.iter().find(|c| c.name == s).map(|c| (slot, c.name)));
        if let Some((slot, case)) = named {
            return Ok(Workload::Cases {
                slot,
                case: Some(case),
            });
        }
        let slots: Vec<&str> = with_cases().map(|(id, _)| stem(id)).collect();
        Err(format!(
            "unknown workload `{s}`: give `chain`, a slot ({}) or one of its cases by the name `bench` prints after the plugin's (`sig_verify_cold`)",
            slots.join(", ")
        ))
    }

    /// The workload's name, as `--workload` takes it back.
    pub fn name(&self) -> String {
        match self {
            Workload::Chain => "chain".to_owned(),
            Workload::Cases { case: Some(c), .. } => (*c).to_owned(),
            Workload::Cases { slot, case: None } => (*slot).to_owned(),
        }
    }
}

/// Profiling options.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    pub workload: Workload,
    pub frequency: i32,
    pub chain: WorkloadConfig,
    pub blocks: u64,
    pub micro: MicroOptions,
    /// Repetitions of a micro workload; `None`: as many as make [`CPU_BUDGET_S`] of CPU on
    /// the sampled run (enough samples to say something), and as many on the counted run.
    pub repeat: Option<usize>,
    /// Profile the baselines, the plugins, or both.
    pub sides: Vec<ProfileSide>,
    /// Whether to sample the CPU (off in the massif child).
    pub cpu: bool,
    /// A group needs at least this share of CPU to be recommended on.
    pub min_share: f64,
    pub out: PathBuf,
}

/// Which implementation set a profile is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileSide {
    Baseline,
    Plugins,
}

impl ProfileSide {
    pub fn name(self) -> &'static str {
        match self {
            ProfileSide::Baseline => "baseline",
            ProfileSide::Plugins => "plugins",
        }
    }
}

/// One function's samples.
#[derive(Debug, Clone, Serialize)]
pub struct FnStat {
    pub name: String,
    pub group: String,
    pub self_samples: u64,
    pub total_samples: u64,
}

/// One group's samples.
#[derive(Debug, Clone, Serialize)]
pub struct GroupStat {
    pub group: String,
    pub subsystem: String,
    pub slot: Option<String>,
    pub self_samples: u64,
    /// Samples with a function of this group anywhere on the stack.
    pub total_samples: u64,
    /// total_samples / all samples.
    pub share: f64,
}

/// The profile of one side.
#[derive(Debug, Clone, Serialize)]
pub struct SideProfile {
    /// Baselines or plugins.
    pub side: ProfileSide,
    /// Stack samples of the node's (or the case's) work: every share is of these.
    pub samples: u64,
    /// Samples of the workload's own client work (generating, signing and gossiping the
    /// chain's transactions, untimed in `run`), left out of every share and table.
    pub client_samples: u64,
    /// Samples that could not be placed (no frame but a thread's start), left out too.
    pub unresolved_samples: u64,
    /// Repetitions of a slot's cases on each run (1 for the chain).
    pub repeats: usize,
    /// Wall and CPU seconds (user + system) of the profiled workload.
    pub wall_s: f64,
    pub cpu_s: f64,
    /// The Rust heap (host and plugins) over the workload (counting allocator), if installed.
    pub heap: Option<AllocStats>,
    /// Per stage of the chain workload.
    pub stages: Option<StageAllocs>,
    /// The functions with the most samples at the top of the stack, and anywhere on it.
    pub top_self: Vec<FnStat>,
    pub top_total: Vec<FnStat>,
    /// Samples by group of known code (`KNOWN`), largest first.
    pub groups: Vec<GroupStat>,
    /// Files written for this side.
    pub files: Vec<PathBuf>,
}

/// A recommendation from a hotspot and a manifest's contract.
#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    /// The hot group, the slot that serves it, and its share of the baseline's samples.
    pub group: String,
    pub slot: String,
    pub share: f64,
    /// The plugin that provides the slot, and its manifest's promised speed-up.
    pub plugin: String,
    pub promise: Option<f64>,
    /// Amdahl's bound on the whole workload's speed-up from this plugin alone.
    pub projected: Option<f64>,
    /// Whether the plugin is enabled in the profiled configuration.
    pub enabled: bool,
    /// The recommendation, in words.
    pub text: String,
}

/// Everything `profile` found.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileReport {
    /// What was profiled, in words.
    pub workload: String,
    /// Machine, build and the plugins side's set, as on every benchmark result: profiles
    /// of different sets are not compared by mistake.
    pub fingerprint: Fingerprint,
    /// The configuration profile.
    pub profile: String,
    /// Samples per second.
    pub frequency: i32,
    pub sides: Vec<SideProfile>,
    pub recommendations: Vec<Recommendation>,
}

/// Known Rust code, by path: (path, group, subsystem, slot). A path matches a symbol where it
/// stands as whole segments (`ed25519_dalek` in `<ed25519_dalek::Signature as …>::…`), never
/// inside a longer identifier.
const RULES: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "ed25519_dalek",
        "ed25519 verification",
        "crypto",
        Some("crypto.sig_verify"),
    ),
    (
        "curve25519_dalek",
        "ed25519 verification",
        "crypto",
        Some("crypto.sig_verify"),
    ),
    (
        "serde_json",
        "JSON records",
        "storage",
        Some("storage.record_codec"),
    ),
    (
        "blst",
        "BLS votes",
        "consensus",
        Some("consensus.vote_verify"),
    ),
    ("rocksdb", "RocksDB", "storage", None),
    (
        "sha2::sha256",
        "SHA-256 (Merkle and state roots)",
        "crypto",
        Some("crypto.merkle"),
    ),
    ("sha2", "SHA-2 hashing", "crypto", None),
    (
        "dubchain_host::vm::meter",
        "gas metering rewrite",
        "vm",
        Some("vm.metering"),
    ),
    (
        "wasm_encoder",
        "gas metering rewrite",
        "vm",
        Some("vm.metering"),
    ),
    (
        "wasmparser",
        "decoding and validating contracts",
        "vm",
        Some("vm.code_loader"),
    ),
    (
        "cranelift",
        "compiling contracts (Cranelift)",
        "vm",
        Some("vm.module_cache"),
    ),
    (
        "regalloc2",
        "compiling contracts (Cranelift)",
        "vm",
        Some("vm.module_cache"),
    ),
    (
        "wasmtime",
        "instantiating and running contracts",
        "vm",
        Some("vm.module_cache"),
    ),
    (
        "dubchain_plugin_api::pool::VecIndex",
        "mempool index (linear scans)",
        "mempool",
        Some("mempool.tx_pool"),
    ),
    (
        "dubchain_host::baseline::Tally",
        "consensus tallies",
        "consensus",
        Some("consensus.vote_tally"),
    ),
    ("dubchain_node::mempool", "mempool", "mempool", None),
    (
        "dubchain_node::execute",
        "execution",
        "execution",
        Some("exec.block_execution"),
    ),
    ("dubchain_node::state", "state store", "storage", None),
    ("dubchain_node::consensus", "consensus", "consensus", None),
    (
        "dubchain_node::block",
        "block production and validation",
        "node",
        None,
    ),
    ("dubchain_node::net", "network", "network", None),
    ("rayon", "rayon scheduling", "scheduling", None),
    // The counting global allocator's wrapper around the system allocator.
    (
        "dubchain_plugin_api::alloc",
        "memory allocation",
        "memory",
        None,
    ),
];

/// Known C symbols (no `::` in them): (name, group). A symbol matches with its leading
/// underscores dropped and any `_suffix` (`__memcpy_avx_unaligned_erms`, `_int_free`), and
/// so do Rust's allocator shims under the `__rustc::` path newer compilers give them.
const SYMBOLS: &[(&str, &str)] = &[
    ("malloc", "memory allocation"),
    ("calloc", "memory allocation"),
    ("realloc", "memory allocation"),
    ("free", "memory allocation"),
    ("cfree", "memory allocation"),
    ("int_malloc", "memory allocation"),
    ("int_free", "memory allocation"),
    ("rust_alloc", "memory allocation"),
    ("rust_dealloc", "memory allocation"),
    ("rust_realloc", "memory allocation"),
    ("memcpy", "memory copies"),
    ("memmove", "memory copies"),
];

/// Whether `path` stands in `name` as whole path segments.
fn has_path(name: &str, path: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    name.match_indices(path).any(|(at, _)| {
        let before = name[..at].chars().next_back();
        let after = name[at + path.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Whether `name` is an Itanium-mangled C++ symbol in RocksDB's namespace
/// (`_ZN7rocksdb14GetVarint32PtrEPKcS1_Pj`, `_ZNK7rocksdb...`): RocksDB's own code, which
/// the symboliser leaves mangled.
fn rocksdb_cpp(name: &str) -> bool {
    name.strip_prefix("_ZN")
        .map(|rest| rest.trim_start_matches(['K', 'V', 'r']))
        .is_some_and(|rest| rest.starts_with("7rocksdb"))
}

/// The group of a C symbol, if it is a known one.
fn c_symbol(name: &str) -> Option<&'static str> {
    let name = name.strip_prefix("__rustc::").unwrap_or(name);
    if name.contains("::") {
        return None;
    }
    let bare = name.trim_start_matches('_');
    SYMBOLS.iter().find_map(|(sym, group)| {
        bare.strip_prefix(sym)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
            .then_some(*group)
    })
}

/// Frames of the profiler itself, above the interrupted code.
const PROFILER: &[&str] = &[
    "pprof::",
    "backtrace::",
    "perf_signal_handler",
    "__restore_rt",
];

/// Libraries a sample is dropped in, by a substring of their path (pprof's rule): the
/// unwinder could deadlock there (glibc's loader lock). Exact file names, not `libc`:
/// pprof matches anywhere in the path, and `libc` is also the start of every
/// `libcrypto_*` and `libconsensus_*` plugin library, whose samples it dropped.
const BLOCKLIST: &[&str] = &[
    "/libc.so.",
    "/libgcc_s.so.",
    "/libpthread.so.",
    "linux-vdso.so.",
];

/// The frames a thread starts in, below any code of the program's.
const THREAD_START: &[&str] = &["start_thread", "clone3", "clone", "thread_start"];

/// Code of the workload's clients, not of the node: a sample with one of these paths on its
/// stack is counted apart (`SideProfile::client_samples`). Signing a transaction runs the
/// same `curve25519_dalek` code as verifying it, and encoding its gossip the same
/// `serde_json` as a record; counted in, they would inflate the shares the recommendations
/// rest on.
const CLIENT: &[&str] = &["dubchain_node::gen"];

/// Classifies symbols: plugins by crate name (from the manifests), then [`RULES`].
pub struct Classifier {
    plugins: Vec<(String, String)>,
}

impl Classifier {
    pub fn new(s: &Session) -> Classifier {
        Classifier {
            plugins: s
                .manifests
                .iter()
                .map(|m| {
                    (
                        m.name.clone(),
                        m.provides
                            .first()
                            .map(|p| p.slot.clone())
                            .unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }

    /// The plugin whose crate `file` (a frame's source file) is in: a path through
    /// `<plugin>/src/`, as cargo lays a crate out.
    pub fn plugin_of_source(&self, file: &Path) -> Option<&str> {
        let crate_dir = file
            .ancestors()
            .find(|dir| dir.file_name().is_some_and(|n| n == "src"))?
            .parent()?
            .file_name()?;
        self.plugins
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| crate_dir == *name)
    }

    /// (group, subsystem, slot) of a function name.
    pub fn classify(&self, name: &str) -> (String, String, Option<String>) {
        let marked = name
            .strip_suffix(']')
            .and_then(|n| n.rsplit_once(" ["))
            .map(|(_, plugin)| plugin);
        for (plugin, slot) in &self.plugins {
            // Its own functions, a generic instantiated on one of its types (compiled into
            // its library), or a frame of its sources (`[plugin]`: a plugin's release
            // build has line tables only, whose names carry no path).
            if has_path(name, plugin) || marked == Some(plugin.as_str()) {
                return (
                    format!("plugin {plugin}"),
                    "plugin".into(),
                    Some(slot.clone()),
                );
            }
        }
        for (path, group, sub, slot) in RULES {
            if has_path(name, path) {
                return ((*group).into(), (*sub).into(), slot.map(str::to_owned));
            }
        }
        if rocksdb_cpp(name) {
            return ("RocksDB".into(), "storage".into(), None);
        }
        if let Some(group) = c_symbol(name) {
            return (group.into(), "memory".into(), None);
        }
        ("other".into(), "other".into(), None)
    }
}

/// Strips the hash suffix rustc adds to legacy-mangled names.
fn clean(name: &str) -> String {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            head.to_owned()
        }
        _ => name.to_owned(),
    }
}

/// Stacks folded into function and group statistics.
#[derive(Default)]
pub struct Folded {
    pub fns: Vec<FnStat>,
    pub groups: Vec<GroupStat>,
    /// Samples of the node's work (the shares' denominator).
    pub samples: u64,
    /// Samples of the clients' work ([`CLIENT`]), left out of everything else.
    pub client_samples: u64,
    /// Samples with no frame but a thread's start ([`THREAD_START`]): the symboliser
    /// named nothing else (code in a library mapped after it listed them), so they say
    /// nothing of where.
    pub unresolved_samples: u64,
}

/// Folds stacks (innermost first) with their counts into function and group statistics.
pub fn fold(stacks: &[(Vec<String>, u64)], classifier: &Classifier) -> Folded {
    let mut fns: HashMap<String, (u64, u64)> = HashMap::new();
    let mut groups: BTreeMap<String, (String, Option<String>, u64, u64)> = BTreeMap::new();
    let mut all = 0;
    let mut client = 0;
    let mut unresolved = 0;
    for (stack, count) in stacks {
        let frames: Vec<&String> = stack
            .iter()
            .skip_while(|f| PROFILER.iter().any(|p| f.contains(p)))
            .collect();
        let Some(leaf) = frames.first() else { continue };
        if frames
            .iter()
            .any(|f| CLIENT.iter().any(|path| has_path(f, path)))
        {
            client += count;
            continue;
        }
        if frames.iter().all(|f| THREAD_START.contains(&f.as_str())) {
            unresolved += count;
            continue;
        }
        all += count;
        fns.entry((*leaf).clone()).or_default().0 += count;
        let classes: Vec<_> = frames.iter().map(|f| classifier.classify(f)).collect();
        // The sample's own group is that of its innermost known frame: an inlined
        // intrinsic (`_mm256_add_epi64`), a generic `core::` helper or a C routine of a
        // library (blst's `__mulx_384`) counts for the code that called it.
        let (g, sub, slot) = classes
            .iter()
            .find(|(g, ..)| g != "other")
            .unwrap_or(&classes[0])
            .clone();
        let other = g == "other";
        let e = groups.entry(g).or_insert((sub, slot, 0, 0));
        e.2 += count;
        if other {
            e.3 += count;
        }
        let mut seen_fn = HashSet::new();
        let mut seen_group = HashSet::new();
        for (f, (g, sub, slot)) in frames.iter().zip(classes) {
            if seen_fn.insert(*f) {
                fns.entry((*f).clone()).or_default().1 += count;
            }
            // `other` holds what no rule names (main, std, thread start): on every stack,
            // so its inclusive share says nothing; it counts only where no known frame is
            // on the stack.
            if g == "other" {
                continue;
            }
            if seen_group.insert(g.clone()) {
                groups.entry(g).or_insert((sub, slot, 0, 0)).3 += count;
            }
        }
    }
    let fn_stats: Vec<FnStat> = fns
        .into_iter()
        .map(|(name, (s, t))| FnStat {
            group: classifier.classify(&name).0,
            name,
            self_samples: s,
            total_samples: t,
        })
        .collect();
    let mut group_stats: Vec<GroupStat> = groups
        .into_iter()
        .map(|(group, (subsystem, slot, s, t))| GroupStat {
            group,
            subsystem,
            slot,
            self_samples: s,
            total_samples: t,
            share: t as f64 / all.max(1) as f64,
        })
        .collect();
    group_stats.sort_by_key(|g| std::cmp::Reverse(g.total_samples));
    Folded {
        fns: fn_stats,
        groups: group_stats,
        samples: all,
        client_samples: client,
        unresolved_samples: unresolved,
    }
}

/// Recommendations for the baseline side's groups.
pub fn recommend(s: &Session, groups: &[GroupStat], min_share: f64) -> Vec<Recommendation> {
    let enabled: HashSet<&str> = s.resolution.enabled().collect();
    let mut out = Vec::new();
    for g in groups {
        let Some(slot) = &g.slot else { continue };
        if g.share < min_share || g.group.starts_with("plugin ") {
            continue;
        }
        let providers: Vec<_> = s
            .manifests
            .iter()
            .filter(|m| m.provides_slot(slot))
            .collect();
        if providers.is_empty() {
            out.push(Recommendation {
                group: g.group.clone(),
                slot: slot.clone(),
                share: g.share,
                plugin: String::new(),
                promise: None,
                projected: None,
                enabled: false,
                text: format!(
                    "{:.0}% of CPU in {} ({slot}): no plugin in the plugin directory provides {slot}",
                    g.share * 100.0,
                    g.group
                ),
            });
        }
        for m in providers {
            let promise = m.contract.as_ref().map(|c| c.min_speedup);
            let projected = promise.map(|p| 1.0 / ((1.0 - g.share) + g.share / p));
            let is_on = enabled.contains(m.name.as_str());
            let text = format!(
                "{:.0}% of CPU in {} ({slot}): {} {}{}{}",
                g.share * 100.0,
                g.group,
                if is_on { "already enabled:" } else { "enable" },
                m.name,
                promise.map_or(String::new(), |p| format!(", promised >= {p}x")),
                projected.map_or(String::new(), |x| format!(
                    " (at most {x:.2}x on this workload by Amdahl's law)"
                )),
            );
            out.push(Recommendation {
                group: g.group.clone(),
                slot: slot.clone(),
                share: g.share,
                plugin: m.name.clone(),
                promise,
                projected,
                enabled: is_on,
                text,
            });
        }
    }
    out.sort_by(|a, b| {
        (a.enabled, -a.projected.unwrap_or(1.0))
            .partial_cmp(&(b.enabled, -b.projected.unwrap_or(1.0)))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    out
}

/// A workload ready to run: a micro case's inputs are generated (signed, encoded) before
/// the profiler starts, so that none of that work is counted as the case's.
enum Prepared {
    Chain,
    Cases(Vec<(micro::Case, micro::Input)>),
}

fn prepare(o: &ProfileOptions, host: &Host) -> Prepared {
    match &o.workload {
        Workload::Chain => Prepared::Chain,
        Workload::Cases { slot, case } => Prepared::Cases(
            micro::cases(slot, &o.micro)
                .into_iter()
                .filter(|c| case.is_none_or(|name| c.name == name))
                .map(|c| {
                    let input = micro::Input::new(&c, &o.micro).for_host(host);
                    (c, input)
                })
                .collect(),
        ),
    }
}

/// CPU seconds a slot's cases repeat for on a sampled run when `--repeat` is not given:
/// at the 140-210 samples per CPU-second the kernel's tick gives, a few hundred samples.
const CPU_BUDGET_S: f64 = 2.0;

/// Runs the prepared workload on `host`: the chain once; a slot's cases `repeat` times, or
/// (`None`) until they have used [`CPU_BUDGET_S`] of CPU. Returns the chain's allocations
/// per stage, and the repetitions made.
fn run_workload(
    prepared: &Prepared, o: &ProfileOptions, repeat: Option<usize>, (host, validator): Hosts<'_>,
    scratch: &Path,
) -> Result<(Option<StageAllocs>, usize), String> {
    match prepared {
        Prepared::Chain => {
            let report = run_chain(
                NodeHosts {
                    proposer: host,
                    validator,
                },
                &ChainConfig {
                    workload: o.chain.clone(),
                    blocks: o.blocks,
                    data_dir: scratch.to_owned(),
                },
                |_| {},
            )
            .map_err(|e| e.to_string())?;
            let _ = std::fs::remove_dir_all(scratch);
            Ok((Some(report.allocs), 1))
        }
        Prepared::Cases(cases) => {
            let began = alloc_count::cpu_seconds();
            let mut made = 0;
            while match repeat {
                Some(n) => made < n.max(1),
                None => made == 0 || alloc_count::cpu_seconds() - began < CPU_BUDGET_S,
            } {
                for (c, input) in cases {
                    micro::run_once(c, Side::Plugin, host, input).undo();
                }
                made += 1;
            }
            Ok((None, made))
        }
    }
}

/// The node's host and its validator's (each its own, as in every chain run).
type Hosts<'a> = (&'a Host, &'a Host);

/// One side: the CPU sampled on one run of the workload, the heap counted on another, each
/// on hosts of its own (no cache a plugin keeps is warm for the second run). Counting takes
/// four shared atomic operations per allocation: on the sampled run they would show as time
/// spent allocating.
fn profile_side(
    o: &ProfileOptions, side: ProfileSide, hosts: Hosts<'_>,
    fresh: &dyn Fn() -> Result<Host, String>, classifier: &Classifier,
) -> Result<SideProfile, String> {
    let scratch = o.out.join(format!("scratch-{}", side.name()));
    // Without `o.cpu` (the massif child) the counted run is the only one, on `hosts`;
    // otherwise `hosts` are sampled, and the counted run's are made only afterwards, so
    // that no load of theirs (self-tests, thread pools starting) runs while the CPU is.
    let (sampled, made) = if o.cpu {
        let sampled = sample_cpu(o, side, hosts, &scratch, classifier)?;
        (sampled, Some((fresh()?, fresh()?)))
    } else {
        let repeats = o.repeat.unwrap_or(1);
        (
            Sampled {
                repeats,
                ..Sampled::default()
            },
            None,
        )
    };
    let counted = match &made {
        Some((host, validator)) => (host, validator),
        None => hosts,
    };
    let Sampled {
        wall_s,
        cpu_s,
        folded,
        files,
        repeats,
    } = sampled;
    let (heap, stages) = if alloc_count::installed() {
        let prepared = prepare(o, counted.0);
        let counting = alloc_count::counting();
        alloc_count::reset_peak();
        let before = alloc_count::snapshot();
        let (stages, _) = run_workload(&prepared, o, Some(repeats), counted, &scratch)?;
        let heap = alloc_count::snapshot().since(&before);
        drop(counting);
        (Some(heap), stages)
    } else {
        (None, None)
    };
    let Folded {
        mut fns,
        groups,
        samples,
        client_samples,
        unresolved_samples,
    } = folded;
    fns.sort_by_key(|f| std::cmp::Reverse(f.self_samples));
    let top_self = fns.iter().take(25).cloned().collect();
    // A frame on every sample (the program's entry, the workload's loop) says nothing of
    // where the time goes.
    fns.retain(|f| f.total_samples < samples);
    fns.sort_by_key(|f| std::cmp::Reverse(f.total_samples));
    let top_total = fns.iter().take(25).cloned().collect();
    Ok(SideProfile {
        side,
        samples,
        client_samples,
        unresolved_samples,
        repeats,
        wall_s,
        cpu_s,
        heap,
        stages,
        top_self,
        top_total,
        groups,
        files,
    })
}

/// What the sampled run gave.
#[derive(Default)]
struct Sampled {
    wall_s: f64,
    cpu_s: f64,
    folded: Folded,
    /// The flamegraph and pprof files written.
    files: Vec<PathBuf>,
    /// Repetitions of a slot's cases.
    repeats: usize,
}

/// The sampled run.
fn sample_cpu(
    o: &ProfileOptions, side: ProfileSide, hosts: Hosts<'_>, scratch: &Path,
    classifier: &Classifier,
) -> Result<Sampled, String> {
    let host = hosts.0;
    let prepared = prepare(o, host);
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(o.frequency)
        .blocklist(BLOCKLIST)
        .build()
        .map_err(|e| format!("starting the CPU profiler: {e}"))?;
    let cpu = alloc_count::cpu_seconds();
    let t = Instant::now();
    let (_, repeats) = run_workload(&prepared, o, o.repeat, hosts, scratch)?;
    let wall_s = t.elapsed().as_secs_f64();
    let cpu_s = alloc_count::cpu_seconds() - cpu;
    let report = guard
        .report()
        .build()
        .map_err(|e| format!("building the CPU profile: {e}"))?;
    drop(guard);
    let svg = o.out.join(format!("flamegraph-{}.svg", side.name()));
    let f = std::fs::File::create(&svg).map_err(|e| format!("{}: {e}", svg.display()))?;
    report
        .flamegraph(f)
        .map_err(|e| format!("{}: {e}", svg.display()))?;
    let pb = o.out.join(format!("profile-{}.pb", side.name()));
    let bytes = {
        use pprof::protos::Message;
        report
            .pprof()
            .map_err(|e| format!("encoding the pprof profile: {e}"))?
            .write_to_bytes()
            .map_err(|e| format!("encoding the pprof profile: {e}"))?
    };
    std::fs::write(&pb, bytes).map_err(|e| format!("{}: {e}", pb.display()))?;
    let stacks: Vec<(Vec<String>, u64)> = report
        .data
        .iter()
        .map(|(frames, count)| {
            let names = frames
                .frames
                .iter()
                .flatten()
                .map(|sym| {
                    let name = clean(&sym.name());
                    match sym
                        .filename
                        .as_deref()
                        .and_then(|file| classifier.plugin_of_source(file))
                    {
                        Some(plugin) => format!("{name} [{plugin}]"),
                        None => name,
                    }
                })
                .collect();
            (names, u64::try_from(*count).unwrap_or(0))
        })
        .collect();
    Ok(Sampled {
        wall_s,
        cpu_s,
        folded: fold(&stacks, classifier),
        files: vec![svg, pb],
        repeats,
    })
}

/// Profiles each requested side, then folds and recommends. `plugins` is the host with
/// the configured set (sampled; the counted run has hosts of its own). Without
/// `o.cpu` (the massif child) only the counted run is made, on `plugins`.
pub fn run(s: &Session, plugins: &Host, o: &ProfileOptions) -> Result<ProfileReport, String> {
    // `--out` was checked by the command line before anything ran.
    std::fs::create_dir_all(&o.out).map_err(|e| format!("{}: {e}", o.out.display()))?;
    let classifier = Classifier::new(s);
    let baseline = Host::new(HostOptions::default());
    let host_for = |side: ProfileSide| match side {
        ProfileSide::Baseline => Ok(Host::new(HostOptions::default())),
        ProfileSide::Plugins => s.loaded_host(true),
    };
    // Every host a sampled run uses is loaded before the first profile is symbolised:
    // the symboliser lists the process's libraries once, and the frames of a library
    // mapped after that have no names (a validator loaded later lost its plugins' frames,
    // a quarter of the plugins side's samples, to bare `start_thread` stacks).
    let validators = o
        .sides
        .iter()
        .map(|side| host_for(*side))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sides = Vec::new();
    for (side, validator) in o.sides.iter().zip(&validators) {
        let host = match side {
            ProfileSide::Baseline => &baseline,
            ProfileSide::Plugins => plugins,
        };
        let fresh = || host_for(*side);
        eprintln!("profiling {} on {} ...", o.workload.name(), side.name());
        sides.push(profile_side(
            o,
            *side,
            (host, validator),
            &fresh,
            &classifier,
        )?);
    }
    let recommendations = sides
        .iter()
        .find(|p| p.side == ProfileSide::Baseline)
        .map(|p| recommend(s, &p.groups, o.min_share))
        .unwrap_or_default();
    Ok(ProfileReport {
        workload: o.workload.name(),
        fingerprint: Fingerprint::current(suite::plugin_set(s)),
        profile: s.options.profile.clone(),
        frequency: o.frequency,
        sides,
        recommendations,
    })
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / 1048576.0)
}

/// Writes `hotspots.md` (`md`) and `hotspots.json` (the report) under `out`; returns their
/// paths.
pub fn write(r: &ProfileReport, md: &str, out: &Path) -> Result<Vec<String>, String> {
    let md_path = out.join("hotspots.md");
    std::fs::write(&md_path, md).map_err(|e| format!("writing {}: {e}", md_path.display()))?;
    let json_path = out.join("hotspots.json");
    let bytes = serde_json::to_vec_pretty(r).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, bytes)
        .map_err(|e| format!("writing {}: {e}", json_path.display()))?;
    Ok(vec![
        md_path.display().to_string(),
        json_path.display().to_string(),
    ])
}

/// The hotspot report as Markdown.
pub fn markdown(r: &ProfileReport) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "# DubChain profile: `{}` workload\n\n{}\n\nCPU sampled with pprof, {} Hz asked (the kernel's timer tick bounds the rate it gives, and a sample inside libc, libgcc or the vDSO is dropped: see each side's samples per CPU-second); memory from the counting allocator (the Rust heap of the host and its plugins; RocksDB allocates outside it).\n\n",
        r.workload,
        report::fingerprint_line(&r.fingerprint, &r.profile),
        r.frequency
    );
    if !r.recommendations.is_empty() {
        out += "## Recommendations\n\n";
        for rec in &r.recommendations {
            let _ = writeln!(out, "- {}", rec.text);
        }
        out.push('\n');
    }
    // Groups side by side.
    let names: Vec<String> = {
        let mut v: Vec<String> = r
            .sides
            .iter()
            .flat_map(|s| s.groups.iter().map(|g| g.group.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    if r.sides.iter().any(|s| s.samples > 0) {
        out += "## Where the CPU goes, by group (share of samples with the group on the stack; self share in parentheses)\n\n| group | subsystem | slot |";
        for s in &r.sides {
            let _ = write!(out, " {} |", s.side.name());
        }
        out += "\n|---|---|---|";
        out += &"---|".repeat(r.sides.len());
        out.push('\n');
        let mut rows: Vec<(f64, String)> = names
            .iter()
            .map(|name| {
                let first = r
                    .sides
                    .iter()
                    .find_map(|s| s.groups.iter().find(|g| &g.group == name));
                let mut row = format!(
                    "| {name} | {} | {} |",
                    first.map_or("", |g| g.subsystem.as_str()),
                    first.and_then(|g| g.slot.as_deref()).unwrap_or("-")
                );
                let mut key = 0.0;
                for s in &r.sides {
                    match s.groups.iter().find(|g| &g.group == name) {
                        Some(g) => {
                            key = f64::max(key, g.share);
                            let _ = write!(
                                row,
                                " {:.1}% ({:.1}%) |",
                                g.share * 100.0,
                                g.self_samples as f64 * 100.0 / s.samples.max(1) as f64
                            );
                        }
                        None => row += " - |",
                    }
                }
                (key, row)
            })
            .collect();
        rows.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (_, row) in rows {
            let _ = writeln!(out, "{row}");
        }
        out.push('\n');
    }
    for s in &r.sides {
        let _ = writeln!(
            out,
            "## {}: {} samples ({:.0} per CPU-second), {:.2} s wall, {:.2} s CPU{}\n",
            s.side.name(),
            s.samples,
            (s.samples + s.client_samples + s.unresolved_samples) as f64 / s.cpu_s.max(1e-9),
            s.wall_s,
            s.cpu_s,
            if r.workload == "chain" {
                String::new()
            } else {
                format!(", the cases {} times", s.repeats)
            }
        );
        if s.side == ProfileSide::Plugins && r.fingerprint.plugins.plugins.is_empty() {
            let _ = writeln!(
                out,
                "No plugin is enabled (profile `{}`): this side ran the baselines too. Enable one (`--enable NAME`, `--profile production`) to profile it.\n",
                r.profile
            );
        }
        if s.client_samples > 0 {
            let _ = writeln!(
                out,
                "{} more samples were of the clients' work (generating, signing and gossiping the transactions, untimed in `run`): left out of every share.\n",
                s.client_samples
            );
        }
        if s.unresolved_samples > 0 {
            let _ = writeln!(
                out,
                "{} more samples had no frame but a thread's start (nothing else in them could be named): left out of every share.\n",
                s.unresolved_samples
            );
        }
        if s.samples < FEW_SAMPLES {
            let _ = writeln!(
                out,
                "Only {} samples: too few to rank functions or groups with confidence; raise `--repeat` (a slot's cases) or `--blocks` (the chain){}.\n",
                s.samples,
                if r.frequency < 997 {
                    format!(", or `--frequency` ({} Hz asked)", r.frequency)
                } else {
                    String::new()
                }
            );
        }
        match s.heap {
            Some(h) => {
                let _ = writeln!(
                    out,
                    "Heap: {} allocations, {} allocated, live heap rose by at most {}.\n",
                    h.allocations,
                    mib(h.bytes),
                    mib(h.peak_bytes)
                );
            }
            None => out +=
                "Heap: not counted (the counting allocator is not installed in this program).\n\n",
        }
        if let (Some(st), true) = (&s.stages, s.heap.is_some()) {
            out += "| stage | allocations | bytes |\n|---|---|---|\n";
            for (name, a) in [
                ("admission", st.admission),
                ("production", st.production),
                ("validation", st.validation),
                ("consensus", st.consensus),
            ] {
                let _ = writeln!(out, "| {name} | {} | {} |", a.allocations, mib(a.bytes));
            }
            out.push('\n');
        }
        if !s.top_self.is_empty() {
            top_table(&mut out, "self", &s.top_self, s.samples, |f| {
                (f.self_samples, f.total_samples)
            });
            out += "Frames on every sample (the program's entry, the workload's loop) are left out of the next table.\n\n";
            top_table(&mut out, "total", &s.top_total, s.samples, |f| {
                (f.total_samples, f.self_samples)
            });
        }
        for f in &s.files {
            let _ = writeln!(out, "- {}", f.display());
        }
        out.push('\n');
    }
    out
}

/// Fewer samples than this on a side get a warning: at 997 Hz, a group at 10% of 200 samples
/// is 20 samples, and its share is good to about a fifth of itself.
const FEW_SAMPLES: u64 = 200;

/// A markdown table of the 15 functions first in `frames` by `by` samples: name, group, the
/// `by` share and the other share (`shares` gives both counts, `by` first).
fn top_table(
    out: &mut String, by: &str, frames: &[FnStat], samples: u64, shares: fn(&FnStat) -> (u64, u64),
) {
    use std::fmt::Write as _;
    let other = if by == "self" { "total" } else { "self" };
    let _ = writeln!(
        out,
        "| top by {by} samples | group | {by} | {other} |\n|---|---|---|---|"
    );
    let pct = |n: u64| n as f64 * 100.0 / samples.max(1) as f64;
    for f in frames.iter().take(15) {
        let (first, second) = shares(f);
        let _ = writeln!(
            out,
            "| `{}` | {} | {:.1}% | {:.1}% |",
            f.name.replace('|', "\\|"),
            f.group,
            pct(first),
            pct(second)
        );
    }
    out.push('\n');
}

/// Writes a massif heap profile of `side` by running this program again under valgrind,
/// and its `ms_print` summary next to it. Returns the files written.
pub fn massif(
    exe: &Path, global_args: &[String], profile_args: &[String], side: ProfileSide, out: &Path,
) -> Result<Vec<PathBuf>, String> {
    let raw = out.join(format!("massif-{}.out", side.name()));
    let status = std::process::Command::new("valgrind")
        .arg("--tool=massif")
        .arg(format!("--massif-out-file={}", raw.display()))
        .arg("--")
        .arg(exe)
        .args(global_args)
        .arg("profile")
        .args(profile_args)
        .args(["--side", side.name(), "--no-cpu", "--out"])
        .arg(out.join(format!("massif-run-{}", side.name())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("running valgrind (is it installed?): {e}"))?;
    if !status.success() {
        return Err(format!(
            "valgrind massif on {} failed: {status}",
            side.name()
        ));
    }
    let text = std::process::Command::new("ms_print")
        .arg(&raw)
        .output()
        .map_err(|e| format!("running ms_print: {e}"))?;
    let txt = out.join(format!("massif-{}.txt", side.name()));
    std::fs::write(&txt, &text.stdout).map_err(|e| format!("{}: {e}", txt.display()))?;
    Ok(vec![raw, txt])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier() -> Classifier {
        Classifier {
            plugins: vec![(
                "crypto_parallel_verification".into(),
                "crypto.sig_verify".into(),
            )],
        }
    }

    #[test]
    fn folds_self_and_total_samples_and_groups() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        let stacks = vec![
            (
                s(&[
                    "perf_signal_handler",
                    "curve25519_dalek::scalar::mul",
                    "ed25519_dalek::verifying::VerifyingKey::verify_strict",
                    "dubchain_host::baseline::sig_verify",
                    "main",
                ]),
                30,
            ),
            (
                s(&[
                    "serde_json::ser::to_vec",
                    "dubchain_host::baseline::encode_records",
                    "main",
                ]),
                10,
            ),
            // An intrinsic inlined into the curve code: its own name is no group's, the
            // sample is the curve code's.
            (
                s(&[
                    "core::core_arch::x86::avx2::_mm256_add_epi64",
                    "curve25519_dalek::backend::vector::avx2::field::mul",
                    "dubchain_host::baseline::sig_verify",
                    "main",
                ]),
                5,
            ),
            // A client signing the workload's transactions: the same curve code as a
            // verification, but not the node's work.
            (
                s(&[
                    "curve25519_dalek::scalar::mul",
                    "ed25519_dalek::signing::SigningKey::sign",
                    "dubchain_node::gen::Workload::txs_for_block",
                    "main",
                ]),
                20,
            ),
            // Nothing but the thread's start: the code it was in has no symbols.
            (s(&["start_thread", "clone3"]), 7),
        ];
        let Folded {
            fns,
            groups,
            samples: all,
            client_samples,
            unresolved_samples,
        } = fold(&stacks, &classifier());
        assert_eq!(
            all, 45,
            "the profiler's own frames are skipped, samples kept"
        );
        assert_eq!(client_samples, 20, "the clients' samples are counted apart");
        assert_eq!(
            unresolved_samples, 7,
            "so are the ones with nowhere to place"
        );
        let ed = groups
            .iter()
            .find(|g| g.group == "ed25519 verification")
            .unwrap();
        assert_eq!((ed.self_samples, ed.total_samples), (35, 35));
        assert!((ed.share - 35.0 / 45.0).abs() < 1e-9);
        assert!(
            groups.iter().all(|g| g.group != "other"),
            "every sample has a known frame"
        );
        assert_eq!(ed.slot.as_deref(), Some("crypto.sig_verify"));
        let main = fns.iter().find(|f| f.name == "main").unwrap();
        assert_eq!((main.self_samples, main.total_samples), (0, 45));
        assert!(fns.iter().all(|f| !f.name.contains("perf_signal_handler")));
    }

    #[test]
    fn rules_match_whole_path_segments_and_c_symbols_only() {
        let c = classifier();
        let group = |name: &str| c.classify(name).0;
        // `free` is a C symbol, not a substring of every name that holds it.
        assert_eq!(
            group("curve25519_dalek::edwards::EdwardsPoint::is_torsion_free"),
            "ed25519 verification"
        );
        assert_eq!(group("my_crate::freeze"), "other");
        assert_eq!(group("free"), "memory allocation");
        assert_eq!(group("_int_free"), "memory allocation");
        assert_eq!(group("__memcpy_avx_unaligned_erms"), "memory copies");
        assert_eq!(group("freeaddrinfo"), "other");
        // Rust's allocator shims, under the path newer compilers give them.
        assert_eq!(group("__rustc::__rust_alloc"), "memory allocation");
        assert_eq!(group("__rustc::__rust_dealloc"), "memory allocation");
        assert_eq!(group("__rustc::something_else"), "other");
        // RocksDB's C++, left mangled by the symboliser.
        assert_eq!(group("_ZN7rocksdb14GetVarint32PtrEPKcS1_Pj"), "RocksDB");
        assert_eq!(
            group("_ZNK7rocksdb21UserComparatorWrapper23CompareWithoutTimestampERKNS_5SliceES3_"),
            "RocksDB"
        );
        assert_eq!(group("_ZN9notrocksdb3getEv"), "other");
        // A crate path inside a generic or a trait impl, not inside a longer name.
        assert_eq!(
            group("<ed25519_dalek::Signature as core::fmt::Debug>::fmt"),
            "ed25519 verification"
        );
        assert_eq!(group("not_blst::verify"), "other");
        assert_eq!(
            group("dubchain_node::mempool::Mempool::admit_with"),
            "mempool"
        );
        assert_eq!(
            group("sha2::sha256::compress256"),
            "SHA-256 (Merkle and state roots)"
        );
        assert_eq!(group("sha2::sha512::compress512"), "SHA-2 hashing");
    }

    #[test]
    fn only_the_system_libraries_are_blocklisted_not_plugins_named_lib_c() {
        // pprof drops a sample whose library path contains an entry.
        let dropped = |path: &str| BLOCKLIST.iter().any(|b| path.contains(b));
        for system in [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "linux-vdso.so.1",
        ] {
            assert!(dropped(system), "{system}");
        }
        for plugin in [
            "/tmp/dubchain-runtime/libcrypto_parallel_verification-0.1.0-g1-0123456789ab.so",
            "/tmp/dubchain-runtime/libconsensus_batching-0.1.0-g2-0123456789ab.so",
            "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
        ] {
            assert!(!dropped(plugin), "{plugin}");
        }
    }

    #[test]
    fn plugin_frames_are_attributed_to_the_plugin() {
        let (g, _, slot) = classifier().classify("crypto_parallel_verification::verify_chunk");
        assert_eq!(g, "plugin crypto_parallel_verification");
        assert_eq!(slot.as_deref(), Some("crypto.sig_verify"));
        assert_eq!(clean("foo::bar::h0123456789abcdef"), "foo::bar");
        assert_eq!(clean("foo::bar"), "foo::bar");
        // A generic instantiated on the plugin's type is compiled into its library.
        let c = classifier();
        let group = |name: &str| c.classify(name).0;
        assert_eq!(
            group("call_mut<(&[u8]), crypto_parallel_verification::{impl#1}::verify::{closure_env#0}>"),
            "plugin crypto_parallel_verification"
        );
        assert_eq!(group("not_crypto_parallel_verification::f"), "other");
        // A release build's line tables name a function without its path: its source file
        // says whose it is, and the frame is marked so.
        assert_eq!(
            c.plugin_of_source(Path::new(
                "/src/plugins/crypto_parallel_verification/src/lib.rs"
            )),
            Some("crypto_parallel_verification")
        );
        assert_eq!(
            c.plugin_of_source(Path::new("/registry/crrl-0.9.0/src/ed25519.rs")),
            None
        );
        assert_eq!(
            group("subgroup_point [crypto_parallel_verification]"),
            "plugin crypto_parallel_verification"
        );
    }
}
