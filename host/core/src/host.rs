//! The host: discovered manifests, loaded plugins, and the slots they fill.
//!
//! [`Host::apply`] is the one way the running set changes. It takes a resolution; if the
//! resolution has problems, nothing changes. Otherwise it loads what is new (each plugin
//! from a fresh copy of its library, checked and initialised before anything is swapped),
//! keeps what is unchanged, and installs each slot's new stack with one atomic swap. A plugin
//! that fails to load is reported; if an earlier version of it is live, that version keeps
//! serving (a failed reload never downgrades a slot); otherwise its dependents stay off and
//! its slots keep whatever is below them, ultimately the baseline.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::Duration,
};

use dubchain_plugin_api::slots::*;
use serde::Serialize;

use crate::{
    loader::{self, LoadError, LoadedPlugin},
    manifest::Manifest,
    resolve::{Problem, Resolution},
    services::PluginServices,
    slot::{with_slots, BreakerConfig, Provider, SlotStatus, Slots},
};

/// State of a plugin, as `plugins list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "detail")]
pub enum PluginState {
    /// Not enabled by the plan.
    Disabled,
    /// Loaded and serving its slots.
    Enabled,
    /// Enabled by the plan, but could not be loaded; the message says why.
    Failed(String),
    /// Loaded, but its circuit breaker is open: the slot answers from below.
    Fallback,
}

impl std::fmt::Display for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PluginState::Disabled => "disabled",
            PluginState::Enabled => "enabled",
            PluginState::Failed(_) => "failed",
            PluginState::Fallback => "fallback",
        })
    }
}

/// Host settings.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Where unique copies of plugin libraries are written before they are mapped.
    pub runtime_dir: PathBuf,
    /// How long a plugin's `init` may take.
    pub init_timeout: Duration,
    /// How long any other step of a load that runs plugin code may take (opening the
    /// library, each factory, each self-test).
    pub step_timeout: Duration,
    /// Refuse a plugin whose manifest pins no sha256 (`[host] require_sha256`).
    pub require_sha256: bool,
    /// Plugins loaded in a child process each ([`crate::isolate`], `[host] isolate`).
    pub isolate: std::collections::BTreeSet<String>,
    /// The program that serves an isolated plugin (`dubchain-perf plugin serve`); without
    /// one, an isolated plugin fails to load.
    pub launcher: Option<crate::isolate::Launcher>,
    pub breaker: BreakerConfig,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            runtime_dir: unique_runtime_dir(),
            init_timeout: loader::Deadlines::default().init,
            step_timeout: loader::Deadlines::default().step,
            require_sha256: false,
            isolate: Default::default(),
            launcher: None,
            breaker: BreakerConfig::default(),
        }
    }
}

/// What [`Host::apply`] did.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Plugins loaded by this call (new or changed).
    pub loaded: Vec<String>,
    /// Plugins kept from before, unchanged.
    pub kept: Vec<String>,
    /// Plugins that were live before and are not any more.
    pub retired: Vec<String>,
    /// Plugins the plan enabled that could not be loaded.
    pub failed: Vec<LoadError>,
    /// Of those, the ones whose earlier live version keeps serving.
    pub kept_after_failure: Vec<String>,
}

macro_rules! live {
    ([] $($field:ident: $info:ident => $boxed:ident, $test:ident;)*) => {
        /// A loaded plugin and its providers, one per slot it fills.
        #[derive(Clone)]
        struct Live {
            plugin: Arc<LoadedPlugin>,
            $($field: Option<Arc<Provider<$boxed>>>,)*
        }

        impl Live {
            /// Wraps each slot object of `loaded` in a provider (counters, breaker).
            fn new(mut loaded: LoadedPlugin, breaker: BreakerConfig) -> Live {
                let (name, version) = (loaded.name.clone(), loaded.version.to_string());
                let generation = loaded.generation;
                $(
                    let $field = loaded
                        .$field
                        .take()
                        .map(|imp| provider(&name, &version, generation, breaker, imp));
                )*
                Live {
                    plugin: Arc::new(loaded),
                    $($field,)*
                }
            }

            /// Whether any of this plugin's providers has its breaker open.
            fn any_open(&self) -> bool {
                fn open<I>(p: &Option<Arc<Provider<I>>>) -> bool {
                    p.as_ref().is_some_and(|p| p.breaker.is_open())
                }
                false $(|| open(&self.$field))*
            }
        }

        /// Installs in every slot the stack `stack_of` names, bottom to top.
        fn install_stacks<'a>(slots: &Slots, stack_of: impl Fn(&str) -> Vec<&'a Live>) {
            $(
                slots.$field.install(
                    stack_of($info.id)
                        .into_iter()
                        .filter_map(|l| l.$field.clone())
                        .collect(),
                );
            )*
        }
    };
}
with_slots!(live);

#[derive(Default)]
struct State {
    live: BTreeMap<String, Live>,
    failed: BTreeMap<String, String>,
    /// The performance contract of each live plugin whose manifest states one.
    contracts: BTreeMap<String, crate::manifest::Contract>,
    /// Every library ever mapped. Never shrinks: libraries are never unmapped, and their
    /// objects may outlive the plugin's removal from a slot.
    retired: Vec<Arc<LoadedPlugin>>,
}

/// The plugin host.
pub struct Host {
    pub slots: Slots,
    options: HostOptions,
    state: Mutex<State>,
    generation: AtomicU64,
}

impl Host {
    pub fn new(options: HostOptions) -> Host {
        Host {
            slots: Slots::default(),
            options,
            state: Mutex::default(),
            generation: AtomicU64::new(0),
        }
    }

    /// Applies `resolution` for `manifests`, handing each plugin `config(name)` at init.
    /// A resolution with problems changes nothing and comes back as `Err`.
    pub fn apply(
        &self, manifests: &[Manifest], resolution: &Resolution, config: impl Fn(&str) -> String,
    ) -> Result<ApplyReport, Vec<Problem>> {
        self.apply_with(manifests, resolution, config, |_| None)
    }

    /// [`Host::apply`], with `settings_at(name)` saying where a plugin's settings table is
    /// (`[profiles.P.plugins.X] in FILE`), for the errors of the load steps that read it.
    pub fn apply_with(
        &self, manifests: &[Manifest], resolution: &Resolution, config: impl Fn(&str) -> String,
        settings_at: impl Fn(&str) -> Option<String>,
    ) -> Result<ApplyReport, Vec<Problem>> {
        if !resolution.is_ok() {
            return Err(resolution.problems.clone());
        }
        let by_name: BTreeMap<&str, &Manifest> =
            manifests.iter().map(|m| (m.name.as_str(), m)).collect();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = ApplyReport::default();
        let mut next: BTreeMap<String, Live> = BTreeMap::new();
        let mut failed: BTreeMap<String, String> = BTreeMap::new();

        // Load in dependency order so that a failed dependency is known before its dependents.
        for name in dependency_order(&by_name, resolution) {
            let manifest = by_name[name.as_str()];
            if let Some(dep) = manifest
                .depends
                .iter()
                .find(|d| failed.contains_key(&d.name))
            {
                let e = LoadError::DependencyFailed {
                    plugin: name.clone(),
                    dependency: dep.name.clone(),
                };
                failed.insert(name.clone(), e.to_string());
                report.failed.push(e);
                continue;
            }
            let plugin_config = config(&name);
            if let Some(live) = state
                .live
                .get(&name)
                .filter(|l| unchanged(l, manifest, &plugin_config))
            {
                next.insert(name.clone(), live.clone());
                report.kept.push(name);
                continue;
            }
            let generation = self.generation.fetch_add(1, Relaxed) + 1;
            let loaded = if self.options.isolate.contains(&name) {
                match &self.options.launcher {
                    Some(launcher) => {
                        crate::isolate::load(manifest, &plugin_config, generation, launcher)
                    }
                    None => Err(LoadError::IsolatedLoadFailed {
                        plugin: name.clone(),
                        detail: "this host has no program to run isolated plugins with (run it as dubchain-perf)".into(),
                    }),
                }
            } else {
                loader::load(
                    manifest,
                    &plugin_config,
                    &self.options.runtime_dir,
                    generation,
                    loader::Deadlines {
                        init: self.options.init_timeout,
                        step: self.options.step_timeout,
                    },
                    self.options.require_sha256,
                    Some(
                        Arc::new(PluginServices::new(manifest, self.slots.sig_verify.clone()))
                            .into_ffi(),
                    ),
                )
            };
            match loaded {
                Ok(loaded) => {
                    tracing::info!(plugin = %name, version = %loaded.version, generation, library = %loaded.source.display(), "plugin loaded");
                    next.insert(name.clone(), Live::new(loaded, self.options.breaker));
                    report.loaded.push(name);
                }
                Err(mut e) => {
                    if let Some(at) = settings_at(&name) {
                        e.with_settings(at);
                    }
                    // Logged at info: the failure is in the report, which every caller
                    // prints (a warning here printed it twice).
                    if let Some(live) = state.live.get(&name) {
                        tracing::info!(plugin = %name, error = %e, generation = live.plugin.generation, "reload failed; the live version keeps serving");
                        next.insert(name.clone(), live.clone());
                        report.kept_after_failure.push(name);
                    } else {
                        tracing::info!(plugin = %name, error = %e, "plugin failed to load; its slots keep what is below it");
                        failed.insert(name.clone(), e.to_string());
                    }
                    report.failed.push(e);
                }
            }
        }

        // Swap each slot to its new stack, bottom to top, skipping plugins that failed.
        let stack_of = |slot: &str| -> Vec<&Live> {
            resolution
                .stacks
                .get(slot)
                .into_iter()
                .flatten()
                .filter_map(|n| next.get(n))
                .collect()
        };
        install_stacks(&self.slots, stack_of);

        let old = std::mem::take(&mut state.live);
        for (name, live) in old {
            let replaced = next
                .get(&name)
                .is_some_and(|n| !Arc::ptr_eq(&n.plugin, &live.plugin));
            if replaced || !next.contains_key(&name) {
                if !next.contains_key(&name) {
                    report.retired.push(name);
                }
                state.retired.push(live.plugin);
            }
        }
        state.contracts = next
            .keys()
            .filter_map(|n| {
                let c = by_name.get(n.as_str())?.contract.clone()?;
                Some((n.clone(), c))
            })
            .collect();
        state.live = next;
        state.failed = failed;
        Ok(report)
    }

    /// The state of `name` now.
    pub fn plugin_state(&self, name: &str) -> PluginState {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(msg) = state.failed.get(name) {
            return PluginState::Failed(msg.clone());
        }
        match state.live.get(name) {
            None => PluginState::Disabled,
            Some(live) => {
                if live.any_open() {
                    PluginState::Fallback
                } else {
                    PluginState::Enabled
                }
            }
        }
    }

    /// Every plugin the host has live or failed to load, by name, with its state (a plugin
    /// it never heard of is [`PluginState::Disabled`]).
    pub fn plugin_states(&self) -> BTreeMap<String, PluginState> {
        let names: Vec<String> = {
            let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            state
                .live
                .keys()
                .chain(state.failed.keys())
                .cloned()
                .collect()
        };
        names
            .into_iter()
            .map(|n| {
                let s = self.plugin_state(&n);
                (n, s)
            })
            .collect()
    }

    /// The performance contract of live plugin `name`, if its manifest states one.
    pub fn contract(&self, name: &str) -> Option<crate::manifest::Contract> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.contracts.get(name).cloned()
    }

    /// The loaded version and generation of `name`, if live.
    pub fn live_version(&self, name: &str) -> Option<(String, u64)> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .live
            .get(name)
            .map(|l| (l.plugin.version.to_string(), l.plugin.generation))
    }

    /// Details of a live plugin's library, for `plugins list --verbose`.
    pub fn live_library(&self, name: &str) -> Option<(PathBuf, String, String)> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.live.get(name).map(|l| {
            let fp = &l.plugin.fingerprint;
            (
                l.plugin.mapped.clone(),
                l.plugin.sha256.clone(),
                format!("{} {} {}", fp.rustc, fp.target, fp.profile),
            )
        })
    }

    pub fn slot_status(&self) -> Vec<SlotStatus> {
        self.slots.status()
    }

    pub fn runtime_dir(&self) -> &Path {
        &self.options.runtime_dir
    }
}

fn provider<I>(
    name: &str, version: &str, generation: u64, breaker: BreakerConfig, imp: I,
) -> Arc<Provider<I>> {
    Arc::new(Provider::new(
        name.to_owned(),
        version.to_owned(),
        generation,
        imp,
        breaker,
    ))
}

/// A fresh directory name per host, so hosts in one process never share copies. The first
/// one of a process also removes the copies left by processes that died without dropping
/// their host (killed, or aborted by a plugin): nothing else would, and each is a copy of
/// every loaded library.
fn unique_runtime_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let temp = std::env::temp_dir();
    SWEEP.call_once(|| sweep_dead_copies(&temp));
    let n = NEXT.fetch_add(1, Relaxed);
    temp.join(format!("{RUNTIME_PREFIX}{}-{n}", std::process::id()))
}

/// The directories of a host's library copies under the temporary directory:
/// `dubchain-plugins-{pid}-{n}`.
const RUNTIME_PREFIX: &str = "dubchain-plugins-";

/// The directory of an isolated plugin's child under the temporary directory:
/// `dubchain-isolated-{pid}`. Swept like a host's when its process is gone.
const ISOLATED_PREFIX: &str = "dubchain-isolated-";

/// Where this process, serving an isolated plugin (`dubchain-perf plugin serve`), writes
/// its library copy.
pub fn isolated_runtime_dir() -> PathBuf {
    std::env::temp_dir().join(format!("{ISOLATED_PREFIX}{}", std::process::id()))
}

/// Removes the directories of library copies under `dir` whose process is gone. Only where a
/// process's liveness can be read (`/proc`); elsewhere nothing is removed.
fn sweep_dead_copies(dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(copies_owner) else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The process id in the name of a directory of library copies, if it is one.
fn copies_owner(name: &str) -> Option<u32> {
    if let Some(rest) = name.strip_prefix(RUNTIME_PREFIX) {
        let (pid, n) = rest.split_once('-')?;
        n.parse::<u64>().ok()?;
        pid.parse().ok()
    } else {
        name.strip_prefix(ISOLATED_PREFIX)?.parse().ok()
    }
}

fn unchanged(live: &Live, manifest: &Manifest, config: &str) -> bool {
    live.plugin.version == manifest.version
        && live.plugin.config == config
        && std::fs::read(&manifest.library)
            .is_ok_and(|b| loader::sha256_hex(&b) == live.plugin.sha256)
}

/// Enabled plugins, dependencies (and the providers of used slots) before dependents (the
/// resolution has no cycles).
fn dependency_order(by_name: &BTreeMap<&str, &Manifest>, resolution: &Resolution) -> Vec<String> {
    let enabled: BTreeSet<&str> = resolution.enabled().collect();
    let mut done = BTreeSet::new();
    let mut order = Vec::new();
    fn visit<'a>(
        n: &'a str, by_name: &BTreeMap<&str, &'a Manifest>, enabled: &BTreeSet<&str>,
        stacks: &'a BTreeMap<String, Vec<String>>, done: &mut BTreeSet<&'a str>,
        order: &mut Vec<String>,
    ) {
        if !done.insert(n) {
            return;
        }
        for d in &by_name[n].depends {
            if enabled.contains(d.name.as_str()) {
                visit(&d.name, by_name, enabled, stacks, done, order);
            }
        }
        // The providers of the slots it calls through host services, before it: loading
        // follows the graph. (Its self-tests run against the slot's current stack; the new
        // stacks are installed together afterwards, `crypto.sig_verify` first.)
        for u in &by_name[n].uses {
            for p in stacks.get(&u.slot).into_iter().flatten() {
                if p != n && by_name.contains_key(p.as_str()) {
                    visit(p, by_name, enabled, stacks, done, order);
                }
            }
        }
        order.push(n.to_owned());
    }
    for n in &enabled {
        if let Some((name, _)) = by_name.get_key_value(n) {
            visit(
                name,
                by_name,
                &enabled,
                &resolution.stacks,
                &mut done,
                &mut order,
            );
        }
    }
    order
}

impl Drop for Host {
    fn drop(&mut self) {
        // The mapped copies may be deleted while mapped (the mapping keeps the inode); the
        // libraries themselves stay mapped until the process exits.
        let _ = std::fs::remove_dir_all(&self.options.runtime_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies of a process that is gone are removed; those of a live process, and anything
    /// not named as copies, stay.
    #[test]
    fn sweeps_only_dead_processes_copies() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let live = std::process::id();
        let names = [
            format!("{RUNTIME_PREFIX}{dead}-0"),
            format!("{ISOLATED_PREFIX}{dead}"),
            format!("{RUNTIME_PREFIX}{live}-3"),
            format!("{ISOLATED_PREFIX}{live}"),
            format!("{RUNTIME_PREFIX}{dead}"),
            "unrelated-1".to_owned(),
        ];
        for n in &names {
            std::fs::create_dir(dir.path().join(n)).unwrap();
            std::fs::write(dir.path().join(n).join("lib.so"), b"copy").unwrap();
        }
        sweep_dead_copies(dir.path());
        let left: BTreeSet<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        let expected: BTreeSet<String> = names[2..].iter().cloned().collect();
        assert_eq!(left, expected);
    }
}
