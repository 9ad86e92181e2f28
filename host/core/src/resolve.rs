//! The gate graph: which plugins are on, in which order, and every reason why not.
//!
//! Resolution is a pure function of the manifests, the requests (configuration profile,
//! imported gates, command line) and the host's API version. It works like a package
//! manager's solver, without backtracking over versions (a directory holds one version of
//! each plugin):
//!
//! 1. Requests are applied in priority order: manifest default, profile, imported gates,
//!    command line; the last word on a plugin wins.
//! 2. Dependencies of enabled plugins are **enabled automatically**, transitively, and
//!    recorded as the reason (`required by X`), unless a request disabled them explicitly,
//!    which is a problem.
//! 3. The enabled set is then checked: missing or wrong-version dependencies, conflicts,
//!    dependency cycles, unknown slots or slot versions, two providers of an exclusive slot,
//!    API ranges the host does not satisfy, host slots used through services (`[[uses]]`: a
//!    slot the host offers, not one the plugin provides), and the stacking order of layered
//!    slots.
//! 4. Recommendations (`[[recommends]]`) of enabled plugins whose recommended plugin is off
//!    or absent become suggestions: never problems, never enabled automatically.
//!
//! Every problem is collected; a resolution with problems must not be applied. A request for
//! a plugin that is not in the directory is a *warning*, not a problem: the rest of the plan
//! is applied and that plugin's slots keep the baseline (so removing a plugin package from a
//! running host returns its slots to the baseline).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    fmt,
};

use dubchain_plugin_api::slots::{self, SlotKind};
use semver::{Version, VersionReq};
use sha2::{Digest, Sha256};

use crate::manifest::Manifest;

/// Who asked for a plugin to be on or off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `default_enabled` in the plugin's manifest.
    ManifestDefault,
    /// A profile of the configuration file.
    Profile { profile: String, file: String },
    /// A gates file imported with `gates import`.
    Imported { file: String },
    /// `--enable` / `--disable` on the command line.
    CommandLine,
    /// The running node's monitor: its admin API, or a rollback of a broken contract.
    Monitor,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::ManifestDefault => f.write_str("default_enabled in its manifest"),
            Source::Profile { profile, file } => write!(f, "profile `{profile}` of {file}"),
            Source::Imported { file } => write!(f, "gates imported from {file}"),
            Source::CommandLine => f.write_str("the command line"),
            Source::Monitor => f.write_str("the node's monitor (its admin API or a rollback)"),
        }
    }
}

/// One request to switch a plugin on or off.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub enable: bool,
    pub source: Source,
}

/// Why a plugin ended up on or off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Requested(Source),
    Disabled(Source),
    NotRequested,
    RequiredBy {
        plugin: String,
        requirement: VersionReq,
        reason: String,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Requested(s) => write!(f, "enabled by {s}"),
            Reason::Disabled(s) => write!(f, "disabled by {s}"),
            Reason::NotRequested => {
                f.write_str("not requested (default_enabled = false and no profile enables it)")
            }
            Reason::RequiredBy {
                plugin,
                requirement,
                reason,
            } => {
                write!(
                    f,
                    "required by `{plugin}` (depends {requirement}: {reason})"
                )
            }
        }
    }
}

/// The decision for one plugin.
#[derive(Debug, Clone)]
pub struct Decision {
    pub enabled: bool,
    pub reasons: Vec<Reason>,
}

/// Something that prevents a set of requests from being applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    UnknownPlugin {
        name: String,
        source: Source,
        /// The name in the directory it is likely a typo of.
        closest: Option<String>,
    },
    MissingDependency {
        plugin: String,
        dependency: String,
        requirement: VersionReq,
        reason: String,
    },
    WrongDependencyVersion {
        plugin: String,
        dependency: String,
        requirement: VersionReq,
        found: Version,
    },
    DependencyDisabled {
        plugin: String,
        dependency: String,
        source: Source,
    },
    Conflict {
        a: String,
        b: String,
        reason: String,
        why_a: String,
        why_b: String,
    },
    Cycle {
        cycle: Vec<String>,
    },
    UnknownSlot {
        plugin: String,
        slot: String,
    },
    SlotVersion {
        plugin: String,
        slot: String,
        expected: u32,
        found: u32,
    },
    ExclusiveSlot {
        slot: String,
        providers: Vec<(String, String)>,
    },
    ApiIncompatible {
        plugin: String,
        requirement: VersionReq,
        host: Version,
    },
    OrderingCycle {
        slot: String,
        layers: Vec<String>,
    },
    /// A `[[uses]]` entry naming a slot the host does not offer to plugins.
    UsesUnoffered {
        plugin: String,
        slot: String,
    },
    /// A plugin that calls, through host services, a slot it provides itself: its calls
    /// would come back to it (its own layer below is `next`).
    UsesOwnSlot {
        plugin: String,
        slot: String,
    },
}

/// Something worth doing that is never a problem: a plugin that works better with another
/// (its manifest's `[[recommends]]`) that is not on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub plugin: String,
    pub recommends: String,
    pub reason: String,
    /// Whether the recommended plugin is in the plugin directory, at a version the
    /// recommendation accepts.
    pub present: bool,
}

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Suggestion {
            plugin,
            recommends,
            reason,
            present,
        } = self;
        if *present {
            write!(f, "`{plugin}` recommends `{recommends}` ({reason}); it is off: `--enable {recommends}` or a profile turns it on")
        } else {
            write!(f, "`{plugin}` recommends `{recommends}` ({reason}), which the plugin directory does not have at a version it accepts")
        }
    }
}

impl Problem {
    /// The plugins this problem is about.
    pub fn plugins(&self) -> Vec<&str> {
        match self {
            Problem::UnknownPlugin { name, .. } => vec![name],
            Problem::MissingDependency {
                plugin, dependency, ..
            }
            | Problem::WrongDependencyVersion {
                plugin, dependency, ..
            }
            | Problem::DependencyDisabled {
                plugin, dependency, ..
            } => vec![plugin, dependency],
            Problem::Conflict { a, b, .. } => vec![a, b],
            Problem::Cycle { cycle } => cycle.iter().map(String::as_str).collect(),
            Problem::UnknownSlot { plugin, .. }
            | Problem::SlotVersion { plugin, .. }
            | Problem::ApiIncompatible { plugin, .. }
            | Problem::UsesUnoffered { plugin, .. }
            | Problem::UsesOwnSlot { plugin, .. } => vec![plugin],
            Problem::ExclusiveSlot { providers, .. } => {
                providers.iter().map(|(p, _)| p.as_str()).collect()
            }
            Problem::OrderingCycle { layers, .. } => layers.iter().map(String::as_str).collect(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::UnknownPlugin { name, source, closest } => {
                let hint = closest.as_ref().map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default();
                write!(f, "`{name}` is requested by {source}, but no manifest in the plugin directory has that name{hint}; its slots keep the baseline")
            }
            Problem::MissingDependency { plugin, dependency, requirement, reason } => write!(
                f,
                "`{plugin}` depends on `{dependency}` {requirement} ({reason}), which is not in the plugin directory"
            ),
            Problem::WrongDependencyVersion { plugin, dependency, requirement, found } => write!(
                f,
                "`{plugin}` depends on `{dependency}` {requirement}, but the plugin directory has version {found}"
            ),
            Problem::DependencyDisabled { plugin, dependency, source } => {
                write!(f, "`{plugin}` depends on `{dependency}`, which is disabled by {source}")
            }
            Problem::Conflict { a, b, reason, why_a, why_b } => write!(
                f,
                "`{a}` conflicts with `{b}`: {reason}; `{a}` is {why_a}, `{b}` is {why_b}; disable one of them"
            ),
            Problem::Cycle { cycle } => {
                let mut path = cycle.clone();
                path.push(cycle[0].clone());
                write!(f, "dependency cycle: {}", path.join(" -> "))
            }
            Problem::UnknownSlot { plugin, slot } => {
                let known: Vec<_> = slots::ALL.iter().map(|s| s.id).collect();
                write!(f, "`{plugin}` provides slot `{slot}`, which this host does not have (known: {})", known.join(", "))
            }
            Problem::SlotVersion { plugin, slot, expected, found } => write!(
                f,
                "`{plugin}` provides `{slot}` version {found}, but this host's `{slot}` contract is version {expected}"
            ),
            Problem::ExclusiveSlot { slot, providers } => {
                let list: Vec<_> = providers.iter().map(|(p, why)| format!("`{p}` ({why})")).collect();
                write!(f, "slot `{slot}` is exclusive but several enabled plugins provide it: {}", list.join(", "))
            }
            Problem::ApiIncompatible { plugin, requirement, host } => write!(
                f,
                "`{plugin}` requires dubchain-plugin-api {requirement}, but this host implements {host}"
            ),
            Problem::OrderingCycle { slot, layers } => write!(
                f,
                "the layers of `{slot}` cannot be ordered: their above/below constraints form a cycle among {}",
                layers.join(", ")
            ),
            Problem::UsesUnoffered { plugin, slot } => write!(
                f,
                "`{plugin}` uses slot `{slot}`, which this host does not offer to plugins (offered: {}); remove the [[uses]] entry or rebuild against a host that offers it",
                crate::services::OFFERED.join(", ")
            ),
            Problem::UsesOwnSlot { plugin, slot } => write!(
                f,
                "`{plugin}` uses slot `{slot}`, which it also provides: its calls would come back to itself; call the layer below through `next` instead, and drop the [[uses]] entry"
            ),
        }
    }
}

/// The outcome of resolution.
#[derive(Debug, Clone)]
pub struct Resolution {
    /// A decision for every discovered plugin, by name.
    pub decisions: BTreeMap<String, Decision>,
    /// For every slot with enabled providers: providers from the bottom (next to the
    /// baseline) to the top (called first).
    pub stacks: BTreeMap<String, Vec<String>>,
    /// Everything that prevents this resolution from being applied.
    pub problems: Vec<Problem>,
    /// Things worth telling that do not prevent it (requests for absent plugins).
    pub warnings: Vec<Problem>,
    /// Recommended plugins that are off or absent.
    pub suggestions: Vec<Suggestion>,
    /// A short hash of the enabled set, its versions and stacking order.
    pub feature_set_id: String,
}

impl Resolution {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn enabled(&self) -> impl Iterator<Item = &str> {
        self.decisions
            .iter()
            .filter(|(_, d)| d.enabled)
            .map(|(n, _)| n.as_str())
    }
}

/// Resolves `requests` against `manifests`. `requests` are in increasing priority.
pub fn resolve(manifests: &[Manifest], requests: &[Request], host_api: &Version) -> Resolution {
    let index: HashMap<&str, usize> = manifests
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let n = manifests.len();

    // 1. Requests, lowest priority first.
    let mut explicit: Vec<Option<(bool, Source)>> = manifests
        .iter()
        .map(|m| m.default_enabled.then_some((true, Source::ManifestDefault)))
        .collect();
    for r in requests {
        match index.get(r.name.as_str()) {
            Some(&i) => explicit[i] = Some((r.enable, r.source.clone())),
            None => warnings.push(Problem::UnknownPlugin {
                name: r.name.clone(),
                source: r.source.clone(),
                closest: crate::manifest::closest(&r.name, index.keys().copied())
                    .map(str::to_owned),
            }),
        }
    }

    // 2. Enabled set: roots plus their dependencies, breadth first.
    let mut enabled = vec![false; n];
    let mut reasons: Vec<Vec<Reason>> = vec![Vec::new(); n];
    let mut queue = VecDeque::new();
    for (i, e) in explicit.iter().enumerate() {
        match e {
            Some((true, source)) => {
                enabled[i] = true;
                reasons[i].push(Reason::Requested(source.clone()));
                queue.push_back(i);
            }
            Some((false, source)) => reasons[i].push(Reason::Disabled(source.clone())),
            None => {}
        }
    }
    while let Some(i) = queue.pop_front() {
        let m = &manifests[i];
        for d in &m.depends {
            let Some(&j) = index.get(d.name.as_str()) else {
                problems.push(Problem::MissingDependency {
                    plugin: m.name.clone(),
                    dependency: d.name.clone(),
                    requirement: d.version.clone(),
                    reason: d.reason.clone(),
                });
                continue;
            };
            if !d.version.matches(&manifests[j].version) {
                problems.push(Problem::WrongDependencyVersion {
                    plugin: m.name.clone(),
                    dependency: d.name.clone(),
                    requirement: d.version.clone(),
                    found: manifests[j].version.clone(),
                });
                continue;
            }
            if let Some((false, source)) = &explicit[j] {
                problems.push(Problem::DependencyDisabled {
                    plugin: m.name.clone(),
                    dependency: d.name.clone(),
                    source: source.clone(),
                });
                continue;
            }
            reasons[j].push(Reason::RequiredBy {
                plugin: m.name.clone(),
                requirement: d.version.clone(),
                reason: d.reason.clone(),
            });
            if !enabled[j] {
                enabled[j] = true;
                queue.push_back(j);
            }
        }
    }

    let why = |i: usize| -> String {
        match reasons[i].first() {
            Some(r) => r.to_string(),
            None => "enabled".to_owned(),
        }
    };

    // 3a. Conflicts, each declared pair once.
    let mut reported = BTreeSet::new();
    for i in (0..n).filter(|&i| enabled[i]) {
        for c in &manifests[i].conflicts {
            let Some(&j) = index.get(c.name.as_str()) else {
                continue;
            };
            if enabled[j]
                && c.version.matches(&manifests[j].version)
                && reported.insert((i.min(j), i.max(j)))
            {
                problems.push(Problem::Conflict {
                    a: manifests[i].name.clone(),
                    b: manifests[j].name.clone(),
                    reason: c.reason.clone(),
                    why_a: why(i),
                    why_b: why(j),
                });
            }
        }
    }

    // 3b. Dependency cycles among enabled plugins.
    problems.extend(
        find_cycles(manifests, &index, &enabled)
            .into_iter()
            .map(|cycle| Problem::Cycle { cycle }),
    );

    // 3c. Slots and API.
    let mut providers: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for i in (0..n).filter(|&i| enabled[i]) {
        let m = &manifests[i];
        if !m.api.matches(host_api) {
            problems.push(Problem::ApiIncompatible {
                plugin: m.name.clone(),
                requirement: m.api.clone(),
                host: host_api.clone(),
            });
        }
        for p in &m.provides {
            match slots::find(&p.slot) {
                None => problems.push(Problem::UnknownSlot {
                    plugin: m.name.clone(),
                    slot: p.slot.clone(),
                }),
                Some(info) if info.version != p.version => problems.push(Problem::SlotVersion {
                    plugin: m.name.clone(),
                    slot: p.slot.clone(),
                    expected: info.version,
                    found: p.version,
                }),
                Some(_) => providers.entry(p.slot.clone()).or_default().push(i),
            }
        }
    }
    // 3d. Host slots called through services.
    for i in (0..n).filter(|&i| enabled[i]) {
        let m = &manifests[i];
        for u in &m.uses {
            if !crate::services::OFFERED.contains(&u.slot.as_str()) {
                problems.push(Problem::UsesUnoffered {
                    plugin: m.name.clone(),
                    slot: u.slot.clone(),
                });
            } else if m.provides_slot(&u.slot) {
                problems.push(Problem::UsesOwnSlot {
                    plugin: m.name.clone(),
                    slot: u.slot.clone(),
                });
            }
        }
    }

    let mut stacks = BTreeMap::new();
    for (slot, provs) in providers {
        let info = slots::find(&slot).expect("only known slots are collected");
        if info.kind == SlotKind::Exclusive && provs.len() > 1 {
            // Providers that declare their conflict were reported above, with the reason:
            // once is enough.
            let declared = |a: usize, b: usize| reported.contains(&(a.min(b), a.max(b)));
            let all_declared = provs
                .iter()
                .enumerate()
                .all(|(k, &a)| provs[k + 1..].iter().all(|&b| declared(a, b)));
            if !all_declared {
                problems.push(Problem::ExclusiveSlot {
                    slot: slot.clone(),
                    providers: provs
                        .iter()
                        .map(|&i| (manifests[i].name.clone(), why(i)))
                        .collect(),
                });
            }
            continue;
        }
        match order_layers(manifests, &provs) {
            Ok(order) => {
                stacks.insert(
                    slot,
                    order
                        .into_iter()
                        .map(|i| manifests[i].name.clone())
                        .collect(),
                );
            }
            Err(layers) => problems.push(Problem::OrderingCycle { slot, layers }),
        }
    }

    let mut decisions = BTreeMap::new();
    for (i, m) in manifests.iter().enumerate() {
        let mut rs = std::mem::take(&mut reasons[i]);
        if rs.is_empty() {
            rs.push(Reason::NotRequested);
        }
        decisions.insert(
            m.name.clone(),
            Decision {
                enabled: enabled[i],
                reasons: rs,
            },
        );
    }
    let suggestions = manifests
        .iter()
        .enumerate()
        .filter(|&(i, _)| enabled[i])
        .flat_map(|(_, m)| {
            m.recommends.iter().filter_map(|r| {
                let found = index
                    .get(r.name.as_str())
                    .filter(|&&j| r.version.matches(&manifests[j].version));
                (!found.is_some_and(|&j| enabled[j])).then(|| Suggestion {
                    plugin: m.name.clone(),
                    recommends: r.name.clone(),
                    reason: r.reason.clone(),
                    present: found.is_some(),
                })
            })
        })
        .collect();
    let feature_set_id = feature_set_id(manifests, &index, &decisions, &stacks);
    Resolution {
        decisions,
        stacks,
        problems,
        warnings,
        suggestions,
        feature_set_id,
    }
}

/// Every elementary dependency cycle found by a depth-first search over enabled plugins,
/// each reported once (by its member set), starting from its smallest name.
fn find_cycles(
    manifests: &[Manifest], index: &HashMap<&str, usize>, enabled: &[bool],
) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let n = manifests.len();
    let edges: Vec<Vec<usize>> = manifests
        .iter()
        .map(|m| {
            m.depends
                .iter()
                .filter_map(|d| index.get(d.name.as_str()).copied())
                .filter(|&j| enabled[j])
                .collect()
        })
        .collect();
    let mut mark = vec![Mark::New; n];
    let mut seen_sets = BTreeSet::new();
    let mut cycles = Vec::new();
    for start in (0..n).filter(|&i| enabled[i]) {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge index); `path` mirrors the stack.
        let mut stack = vec![(start, 0usize)];
        let mut path = vec![start];
        mark[start] = Mark::OnPath;
        while let Some(&mut (node, ref mut edge)) = stack.last_mut() {
            if let Some(&next) = edges[node].get(*edge) {
                *edge += 1;
                match mark[next] {
                    Mark::New => {
                        mark[next] = Mark::OnPath;
                        stack.push((next, 0));
                        path.push(next);
                    }
                    Mark::OnPath => {
                        let at = path.iter().position(|&p| p == next).expect("on path");
                        let mut cycle: Vec<String> = path[at..]
                            .iter()
                            .map(|&p| manifests[p].name.clone())
                            .collect();
                        let key: BTreeSet<String> = cycle.iter().cloned().collect();
                        if seen_sets.insert(key) {
                            let min = (0..cycle.len())
                                .min_by_key(|&k| &cycle[k])
                                .expect("non-empty");
                            cycle.rotate_left(min);
                            cycles.push(cycle);
                        }
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
                path.pop();
            }
        }
    }
    cycles
}

/// Orders the providers of a layered slot bottom to top from their `above`/`below`
/// constraints (Kahn's algorithm, ties broken by name so the order is reproducible).
fn order_layers(manifests: &[Manifest], provs: &[usize]) -> Result<Vec<usize>, Vec<String>> {
    let pos: HashMap<&str, usize> = provs
        .iter()
        .enumerate()
        .map(|(k, &i)| (manifests[i].name.as_str(), k))
        .collect();
    let k = provs.len();
    // edge a -> b: a is below b.
    let mut out_edges = vec![Vec::new(); k];
    let mut indegree = vec![0usize; k];
    for (b, &i) in provs.iter().enumerate() {
        let o = &manifests[i].ordering;
        let below_me = o
            .above
            .iter()
            .filter_map(|n| pos.get(n.as_str()))
            .map(|&a| (a, b));
        let above_me = o
            .below
            .iter()
            .filter_map(|n| pos.get(n.as_str()))
            .map(|&a| (b, a));
        for (from, to) in below_me.chain(above_me) {
            out_edges[from].push(to);
            indegree[to] += 1;
        }
    }
    let name = |x: usize| manifests[provs[x]].name.as_str();
    let mut ready: BTreeSet<(&str, usize)> = (0..k)
        .filter(|&x| indegree[x] == 0)
        .map(|x| (name(x), x))
        .collect();
    let mut order = Vec::with_capacity(k);
    while let Some(first) = ready.pop_first() {
        let x = first.1;
        order.push(provs[x]);
        for &y in &out_edges[x] {
            indegree[y] -= 1;
            if indegree[y] == 0 {
                ready.insert((name(y), y));
            }
        }
    }
    if order.len() == k {
        Ok(order)
    } else {
        Err((0..k)
            .filter(|&x| indegree[x] > 0)
            .map(|x| name(x).to_owned())
            .collect())
    }
}

fn feature_set_id(
    manifests: &[Manifest], index: &HashMap<&str, usize>, decisions: &BTreeMap<String, Decision>,
    stacks: &BTreeMap<String, Vec<String>>,
) -> String {
    let mut h = Sha256::new();
    for (name, _) in decisions.iter().filter(|(_, d)| d.enabled) {
        h.update(name.as_bytes());
        h.update(b"@");
        h.update(
            manifests[index[name.as_str()]]
                .version
                .to_string()
                .as_bytes(),
        );
        h.update(b"\n");
    }
    for (slot, order) in stacks {
        h.update(format!("{slot}={}\n", order.join(">")).as_bytes());
    }
    let digest = h.finalize();
    dubchain_plugin_api::types::hex_encode(&digest[..8])
}
