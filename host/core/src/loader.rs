//! Loading a plugin library: from the manifest's file to initialised slot objects.
//!
//! Steps, each with its own [`LoadError`] variant:
//! read the file and check its sha256 pin; copy it to a uniquely named file (so that a new
//! version of a plugin loads while the old one is live: reopening a path may hand back the
//! library already mapped); open it and find the root module; let abi_stable check the
//! root module's version and the layout of every type reachable from it; compare the
//! plugin's fingerprint and name with ours; run `init`; build each slot object the
//! manifest promises and self-test it against the baseline.
//!
//! Every step that runs plugin code (opening the library runs its constructors, then
//! `init`, each factory, each self-test) runs on a loading thread of its own and has a
//! deadline ([`Deadlines`]): a plugin that misses one is reported, naming the step, and
//! left out, and the host goes on (its thread finishes or not; nothing of it is installed).
//!
//! Libraries are never unmapped (abi_stable leaks them by design, and so do we): code of a
//! retired version may still be running on another thread.

use std::{
    path::{Path, PathBuf},
    sync::mpsc::{self, RecvTimeoutError},
    time::Duration,
};

use abi_stable::library::{lib_header_from_path, LibraryError};
use dubchain_plugin_api::{
    services::HostServicesBox, slots::*, Fingerprint, PluginError, PluginModRef, API_VERSION,
};
use semver::Version;
use sha2::{Digest, Sha256};

use crate::{manifest::Manifest, selftest, slot::with_slots};

/// Why a plugin library could not be loaded. Every message names the plugin and the file,
/// says what was expected and what was found, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("plugin `{plugin}`: library {library} does not exist (manifest {manifest}); build the plugin or fix `library` in the manifest")]
    MissingLibrary {
        plugin: String,
        library: PathBuf,
        manifest: PathBuf,
    },
    #[error("plugin `{plugin}`: cannot read or copy {library}: {source}")]
    Io {
        plugin: String,
        library: PathBuf,
        source: std::io::Error,
    },
    #[error("plugin `{plugin}`: sha256 of {library} is {found}, but the manifest pins {expected}; the library changed since it was pinned: rebuild it or update `sha256` in {manifest}")]
    HashMismatch {
        plugin: String,
        library: PathBuf,
        manifest: PathBuf,
        expected: String,
        found: String,
    },
    #[error("plugin `{plugin}`: the manifest {manifest} pins no sha256, and [host] require_sha256 is on; if {library} is the build you trust, add `sha256 = \"{found}\"` to the manifest")]
    Unpinned {
        plugin: String,
        library: PathBuf,
        manifest: PathBuf,
        found: String,
    },
    #[error("plugin `{plugin}`: {library} is not a loadable library: {detail}")]
    NotALibrary {
        plugin: String,
        library: PathBuf,
        detail: String,
    },
    #[error("plugin `{plugin}`: {library} is not a DubChain plugin: it does not export the root module symbol; build it with dubchain_plugin_api::export_plugin!")]
    NotAPlugin { plugin: String, library: PathBuf },
    #[error("plugin `{plugin}`: {library} has an incompatible ABI: the layout of its root module differs from this host's dubchain-plugin-api {host_api}; rebuild it against dubchain-plugin-api {host_api}\n{detail}")]
    AbiMismatch {
        plugin: String,
        library: PathBuf,
        host_api: &'static str,
        detail: String,
    },
    #[error("plugin `{plugin}`: {library} was compiled for dubchain-plugin-api {found}, which is not compatible with this host's {expected}; rebuild it against dubchain-plugin-api {expected}")]
    ApiMismatch {
        plugin: String,
        library: PathBuf,
        expected: String,
        found: String,
    },
    #[error("plugin `{plugin}`: {library} was built for target {found}, but this host runs on {expected}; build it for {expected}")]
    TargetMismatch {
        plugin: String,
        library: PathBuf,
        expected: String,
        found: String,
    },
    #[error("plugin `{plugin}`: {library} says it is plugin `{found}`; the manifest {manifest} and the library disagree")]
    NameMismatch {
        plugin: String,
        library: PathBuf,
        manifest: PathBuf,
        found: String,
    },
    #[error("plugin `{plugin}`: init failed: {error}{}", settings_note(settings))]
    InitFailed {
        plugin: String,
        error: PluginError,
        /// Where the plugin's settings table is, when it has one ([`LoadError::with_settings`]).
        settings: Option<String>,
    },
    #[error("plugin `{plugin}`: init did not finish within {timeout:?}; the plugin stays off (raise init_timeout_ms if it is legitimately slow)")]
    InitTimeout { plugin: String, timeout: Duration },
    #[error("plugin `{plugin}`: {step} did not finish within {timeout:?}; the plugin stays off (raise [host] step_timeout_ms if it is legitimately slow)")]
    StepTimeout {
        plugin: String,
        step: Step,
        timeout: Duration,
    },
    #[error("plugin `{plugin}`: loading stopped during {step} (a panic outside the plugin's own guard); the plugin stays off")]
    LoadAborted { plugin: String, step: Step },
    #[error("plugin `{plugin}`: isolated in a child process ([host] isolate), but it provides `{slot}`, which cannot be isolated yet (only {}); take it out of `isolate` to load it in the host", crate::isolate::ISOLATABLE.join(", "))]
    NotIsolatable { plugin: String, slot: String },
    #[error("plugin `{plugin}`: its isolated process did not load it: {detail}")]
    IsolatedLoadFailed { plugin: String, detail: String },
    #[error("plugin `{plugin}`: the manifest says it provides `{slot}`, but {library} does not export that slot")]
    MissingSlot {
        plugin: String,
        library: PathBuf,
        slot: String,
    },
    #[error(
        "plugin `{plugin}`: creating its `{slot}` implementation failed: {error}{}",
        settings_note(settings)
    )]
    SlotInitFailed {
        plugin: String,
        slot: String,
        error: PluginError,
        /// See [`LoadError::InitFailed`].
        settings: Option<String>,
    },
    #[error("plugin `{plugin}`: self-test of `{slot}` against the baseline failed: {detail}")]
    SelfTestFailed {
        plugin: String,
        slot: String,
        detail: String,
    },
    #[error("plugin `{plugin}`: depends on `{dependency}`, which failed to load")]
    DependencyFailed { plugin: String, dependency: String },
}

/// Where the settings a failed `init` or factory was given came from, for its error.
fn settings_note(settings: &Option<String>) -> String {
    settings
        .as_ref()
        .map(|at| format!(" (its settings: {at})"))
        .unwrap_or_default()
}

impl LoadError {
    /// Names where the plugin's settings table is (`[profiles.P.plugins.X] in FILE`) on
    /// the errors of the steps that read it (`init`, the factories): the plugin only sees
    /// the table's text, so its refusal cannot say which file to open.
    pub fn with_settings(&mut self, at: String) {
        if let LoadError::InitFailed { settings, .. } | LoadError::SlotInitFailed { settings, .. } =
            self
        {
            *settings = Some(at);
        }
    }

    pub fn plugin(&self) -> &str {
        match self {
            LoadError::MissingLibrary { plugin, .. }
            | LoadError::Io { plugin, .. }
            | LoadError::HashMismatch { plugin, .. }
            | LoadError::Unpinned { plugin, .. }
            | LoadError::NotALibrary { plugin, .. }
            | LoadError::NotAPlugin { plugin, .. }
            | LoadError::AbiMismatch { plugin, .. }
            | LoadError::ApiMismatch { plugin, .. }
            | LoadError::TargetMismatch { plugin, .. }
            | LoadError::NameMismatch { plugin, .. }
            | LoadError::InitFailed { plugin, .. }
            | LoadError::InitTimeout { plugin, .. }
            | LoadError::StepTimeout { plugin, .. }
            | LoadError::LoadAborted { plugin, .. }
            | LoadError::NotIsolatable { plugin, .. }
            | LoadError::IsolatedLoadFailed { plugin, .. }
            | LoadError::MissingSlot { plugin, .. }
            | LoadError::SlotInitFailed { plugin, .. }
            | LoadError::SelfTestFailed { plugin, .. }
            | LoadError::DependencyFailed { plugin, .. } => plugin,
        }
    }
}

macro_rules! loaded_plugin {
    ([] $($field:ident: $info:ident => $boxed:ident, $test:ident;)*) => {
        /// A plugin library that loaded, passed every check, and was initialised.
        pub struct LoadedPlugin {
            pub name: String,
            pub version: Version,
            /// The library file named by the manifest.
            pub source: PathBuf,
            /// The unique copy that was actually mapped.
            pub mapped: PathBuf,
            pub sha256: String,
            /// The configuration `init` and the factories received.
            pub config: String,
            pub fingerprint: Fingerprint,
            pub generation: u64,
            $(
                /// The plugin's implementation of this slot, if its manifest provides it.
                pub $field: Option<$boxed>,
            )*
        }

        impl LoadedPlugin {
            /// A plugin of `manifest` with no slot object yet, mapped from `mapped`.
            pub(crate) fn empty(
                manifest: &Manifest,
                config: &str,
                mapped: PathBuf,
                sha256: String,
                fingerprint: Fingerprint,
                generation: u64,
            ) -> LoadedPlugin {
                LoadedPlugin {
                    name: manifest.name.clone(),
                    version: manifest.version.clone(),
                    source: manifest.library.clone(),
                    mapped,
                    sha256,
                    config: config.to_owned(),
                    fingerprint,
                    generation,
                    $($field: None,)*
                }
            }
        }

        /// Builds the slot objects `manifest` promises from `module`'s factories and
        /// self-tests each against the baseline.
        fn build_slots(
            loaded: &mut LoadedPlugin,
            manifest: &Manifest,
            module: PluginModRef,
            config: &str,
            steps: &Steps,
        ) -> Result<(), LoadError> {
            let plugin = &loaded.name;
            let library = &loaded.source;
            'provides: for provide in &manifest.provides {
                let missing = || LoadError::MissingSlot {
                    plugin: plugin.clone(),
                    library: library.clone(),
                    slot: provide.slot.clone(),
                };
                let failed = |error| LoadError::SlotInitFailed {
                    plugin: plugin.clone(),
                    slot: provide.slot.clone(),
                    error,
                    settings: None,
                };
                let self_test = |detail| LoadError::SelfTestFailed {
                    plugin: plugin.clone(),
                    slot: provide.slot.clone(),
                    detail,
                };
                $(
                    if provide.slot == $info.id {
                        // Fields appended after the first version are absent (`None`) in a
                        // library built before they existed.
                        let factory: dubchain_plugin_api::Factory<$boxed> =
                            Factories::flat(module.$field()).ok_or_else(missing)?;
                        steps.begin(Step::Factory($info.id));
                        let imp = factory(config.into()).into_result().map_err(failed)?;
                        steps.begin(Step::SelfTest($info.id));
                        selftest::$test(&imp).map_err(self_test)?;
                        loaded.$field = Some(imp);
                        continue 'provides;
                    }
                )*
                return Err(missing());
            }
            Ok(())
        }
    };
}
with_slots!(loaded_plugin);

/// Root-module accessors answer `Option<Factory>` for the fields of the first version and
/// `Option<Option<Factory>>` for appended ones; both flatten to "the factory, if any".
trait Factories<F> {
    fn flat(self) -> Option<F>;
}

impl<F> Factories<F> for Option<F> {
    fn flat(self) -> Option<F> {
        self
    }
}

impl<F> Factories<F> for Option<Option<F>> {
    fn flat(self) -> Option<F> {
        self.flatten()
    }
}

/// Hex sha256 of a file's bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    dubchain_plugin_api::types::hex_encode(&Sha256::digest(bytes))
}

/// Loads the library of `manifest` as load generation `generation`, copying it into
/// `runtime_dir` first. With `require_sha256`, a manifest without a pin is refused. The
/// library is handed `services` before `init` (`None`: it gets none, and its calls to host
/// services fail).
pub fn load(
    manifest: &Manifest, config: &str, runtime_dir: &Path, generation: u64, deadlines: Deadlines,
    require_sha256: bool, services: Option<HostServicesBox>,
) -> Result<LoadedPlugin, LoadError> {
    let plugin = manifest.name.clone();
    let library = manifest.library.clone();
    if !library.is_file() {
        return Err(LoadError::MissingLibrary {
            plugin,
            library,
            manifest: manifest.path.clone(),
        });
    }
    let io = |source| LoadError::Io {
        plugin: plugin.clone(),
        library: library.clone(),
        source,
    };
    let bytes = std::fs::read(&library).map_err(io)?;
    let sha256 = sha256_hex(&bytes);
    if manifest.sha256.is_none() && require_sha256 {
        return Err(LoadError::Unpinned {
            plugin,
            library,
            manifest: manifest.path.clone(),
            found: sha256,
        });
    }
    if let Some(expected) = &manifest.sha256 {
        if *expected != sha256 {
            return Err(LoadError::HashMismatch {
                plugin,
                library,
                manifest: manifest.path.clone(),
                expected: expected.clone(),
                found: sha256,
            });
        }
    }
    check_image(&bytes).map_err(|detail| LoadError::NotALibrary {
        plugin: plugin.clone(),
        library: library.clone(),
        detail,
    })?;
    // Map exactly the bytes that were hashed: write them to a fresh, unique file.
    std::fs::create_dir_all(runtime_dir).map_err(io)?;
    let mapped = runtime_dir.join(format!(
        "{}{plugin}-{}-g{generation}-{}{}",
        std::env::consts::DLL_PREFIX,
        manifest.version,
        &sha256[..12],
        std::env::consts::DLL_SUFFIX
    ));
    std::fs::write(&mapped, &bytes).map_err(io)?;

    let (tx, rx) = mpsc::channel();
    let job = Opened {
        manifest: manifest.clone(),
        config: config.to_owned(),
        mapped,
        sha256,
        generation,
        services,
    };
    std::thread::Builder::new()
        .name(format!("load-{plugin}"))
        .spawn(move || {
            let steps = Steps(tx);
            let result = job.load(&steps);
            let _ = steps.0.send(Progress::Done(Box::new(result)));
        })
        .map_err(io)?;
    wait(&plugin, &rx, deadlines)
}

/// What must hold of a library's bytes before the dynamic loader sees them. The loader maps
/// each segment from its file offset and reads it without comparing it with the file's
/// length, so a library cut short (an interrupted copy or download) kills the whole process
/// with SIGBUS inside `dlopen`, past any error handling. Here instead: the bytes must parse
/// as an object file and every segment's bytes must lie within them.
fn check_image(bytes: &[u8]) -> Result<(), String> {
    use object::{Object as _, ObjectSegment as _};
    let file = object::File::parse(bytes).map_err(|e| {
        format!(
            "its headers do not read ({e}) in its {} bytes: it is not a library, or it is cut short; copy or build it again",
            bytes.len()
        )
    })?;
    for segment in file.segments() {
        let (offset, size) = segment.file_range();
        let end = offset.saturating_add(size);
        if end > bytes.len() as u64 {
            return Err(format!(
                "it is cut short: a segment needs its bytes {offset}..{end}, the file has {}; copy or build it again",
                bytes.len()
            ));
        }
    }
    Ok(())
}

/// A step of a load that runs plugin code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Opening the library, which runs its constructors, and reading its root module.
    Open,
    /// The plugin's `init`.
    Init,
    /// The factory of a slot.
    Factory(&'static str),
    /// The self-test of a slot object.
    SelfTest(&'static str),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Open => f.write_str("opening the library (its constructors run)"),
            Step::Init => f.write_str("init"),
            Step::Factory(slot) => write!(f, "the factory of `{slot}`"),
            Step::SelfTest(slot) => write!(f, "the self-test of `{slot}`"),
        }
    }
}

/// How long each step of a load that runs plugin code may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// The plugin's `init` (`[host] init_timeout_ms`).
    pub init: Duration,
    /// Every other step: opening the library, each factory, each self-test
    /// (`[host] step_timeout_ms`).
    pub step: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            init: Duration::from_secs(5),
            step: Duration::from_secs(30),
        }
    }
}

/// What the loading thread tells the host.
enum Progress {
    Began(Step),
    Done(Box<Result<LoadedPlugin, LoadError>>),
}

/// The loading thread's side: says which step it has begun.
struct Steps(mpsc::Sender<Progress>);

impl Steps {
    fn begin(&self, step: Step) {
        let _ = self.0.send(Progress::Began(step));
    }
}

/// Waits for the loading thread, each step at most its deadline.
fn wait(
    plugin: &str, rx: &mpsc::Receiver<Progress>, deadlines: Deadlines,
) -> Result<LoadedPlugin, LoadError> {
    let mut step = Step::Open;
    loop {
        let deadline = match step {
            Step::Init => deadlines.init,
            _ => deadlines.step,
        };
        match rx.recv_timeout(deadline) {
            Ok(Progress::Began(next)) => step = next,
            Ok(Progress::Done(result)) => return *result,
            Err(RecvTimeoutError::Timeout) if step == Step::Init => {
                return Err(LoadError::InitTimeout {
                    plugin: plugin.to_owned(),
                    timeout: deadline,
                })
            }
            Err(RecvTimeoutError::Timeout) => {
                return Err(LoadError::StepTimeout {
                    plugin: plugin.to_owned(),
                    step,
                    timeout: deadline,
                })
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(LoadError::LoadAborted {
                    plugin: plugin.to_owned(),
                    step,
                })
            }
        }
    }
}

/// A library copied to where it is mapped, with what its load needs: the part of a load
/// that runs plugin code, on the loading thread.
struct Opened {
    manifest: Manifest,
    config: String,
    mapped: PathBuf,
    sha256: String,
    generation: u64,
    services: Option<HostServicesBox>,
}

impl Opened {
    fn load(self, steps: &Steps) -> Result<LoadedPlugin, LoadError> {
        let Opened {
            manifest,
            config,
            mapped,
            sha256,
            generation,
            services,
        } = self;
        let plugin = manifest.name.clone();
        let library = manifest.library.clone();
        let module = open_root_module(&plugin, &library, &mapped)?;
        let fingerprint = (module.fingerprint())();
        check_fingerprint(&plugin, &library, &fingerprint)?;
        let found_name = (module.name())().as_str().to_owned();
        if found_name != plugin {
            return Err(LoadError::NameMismatch {
                plugin,
                library,
                manifest: manifest.path.clone(),
                found: found_name,
            });
        }
        // The plugin's heap is counted with the host's from here on (a plugin built before
        // API 0.3.2, or with `allocator: own`, is not counted).
        if let Some(heap) = module.heap().flatten() {
            crate::alloc_count::register_plugin_heap(heap);
        }
        // Host services before init: `init` and the self-tests may call them. A library
        // built before API 0.3.3 has no entry for them (it calls no host slot).
        if let (Some(attach), Some(services)) = (module.attach_services().flatten(), services) {
            attach(services);
        }
        steps.begin(Step::Init);
        (module.init())(config.as_str().into())
            .into_result()
            .map_err(|error| LoadError::InitFailed {
                plugin: plugin.clone(),
                error,
                settings: None,
            })?;

        let mut loaded =
            LoadedPlugin::empty(&manifest, &config, mapped, sha256, fingerprint, generation);
        build_slots(&mut loaded, &manifest, module, &config, steps)?;
        Ok(loaded)
    }
}

fn open_root_module(
    plugin: &str, library: &Path, mapped: &Path,
) -> Result<PluginModRef, LoadError> {
    let plugin = plugin.to_owned();
    let library = library.to_owned();
    let header = lib_header_from_path(mapped).map_err(|e| match e {
        LibraryError::GetSymbolError { .. } => LoadError::NotAPlugin {
            plugin: plugin.clone(),
            library: library.clone(),
        },
        other => LoadError::NotALibrary {
            plugin: plugin.clone(),
            library: library.clone(),
            detail: first_line(&other.to_string()),
        },
    })?;
    header
        .init_root_module::<PluginModRef>()
        .map_err(|e| match e {
            LibraryError::IncompatibleVersionNumber {
                actual_version,
                expected_version,
                ..
            } => LoadError::ApiMismatch {
                plugin,
                library,
                expected: expected_version.to_string(),
                found: actual_version.to_string(),
            },
            LibraryError::AbiInstability(detail) => LoadError::AbiMismatch {
                plugin,
                library,
                host_api: API_VERSION,
                detail: summarize_layout_error(&detail.to_string()),
            },
            other => LoadError::NotALibrary {
                plugin,
                library,
                detail: first_line(&other.to_string()),
            },
        })
}

/// abi_stable's layout errors are long dumps; keep the lines that say what differs.
fn summarize_layout_error(dump: &str) -> String {
    // abi_stable's report is a dump of both layouts with the verdicts in between, as
    // `Error:<what>` followed by `Expected:` and `Found:` blocks. Keep the verdicts.
    let lines: Vec<&str> = dump
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut verdicts = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(what) = l.strip_prefix("Error:") {
            let value = |label: &str| {
                lines[i + 1..]
                    .iter()
                    .position(|x| *x == label)
                    .and_then(|k| lines.get(i + 2 + k))
                    .copied()
                    .unwrap_or("?")
            };
            verdicts.push(format!(
                "{what}: the host expects {}, the library has {}",
                value("Expected:"),
                value("Found:")
            ));
        }
    }
    if verdicts.is_empty() {
        lines.iter().take(8).copied().collect::<Vec<_>>().join("\n")
    } else {
        verdicts.dedup();
        verdicts.join("\n")
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_owned()
}

/// The plugin's API version must be semver-compatible with ours and not newer; its target
/// must be ours. A different rustc or profile is fine: that is what the stable ABI is for.
fn check_fingerprint(plugin: &str, library: &Path, fp: &Fingerprint) -> Result<(), LoadError> {
    let ours = Fingerprint::current();
    let host = Version::parse(API_VERSION).expect("crate version is semver");
    let compatible = Version::parse(fp.api_version.as_str()).is_ok_and(|theirs| {
        let same_line = if host.major == 0 {
            theirs.major == 0 && theirs.minor == host.minor
        } else {
            theirs.major == host.major
        };
        same_line && theirs <= host
    });
    if !compatible {
        return Err(LoadError::ApiMismatch {
            plugin: plugin.to_owned(),
            library: library.to_owned(),
            expected: API_VERSION.to_owned(),
            found: fp.api_version.as_str().to_owned(),
        });
    }
    if fp.target != ours.target {
        return Err(LoadError::TargetMismatch {
            plugin: plugin.to_owned(),
            library: library.to_owned(),
            expected: ours.target.as_str().to_owned(),
            found: fp.target.as_str().to_owned(),
        });
    }
    Ok(())
}
