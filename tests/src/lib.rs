//! Support for the integration tests: where the plugin libraries built by `build.rs` are,
//! and plugin directories assembled from them in temporary folders.

use std::path::{Path, PathBuf};

use dubchain_host::{
    manifest::{self, Manifest},
    resolve::{self, Request, Resolution, Source},
    session::host_api_version,
    Host,
};

/// Asserts that `text` mentions every one of `phrases`, naming the first it lacks.
#[track_caller]
pub fn assert_mentions(text: &str, phrases: &[&str]) {
    for p in phrases {
        assert!(text.contains(p), "{p:?} is missing from:\n{text}");
    }
}

/// The standard output of a command that must have succeeded; otherwise fails with
/// `context`, its exit status and both its outputs.
#[track_caller]
pub fn succeeded(out: &std::process::Output, context: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{context}: {}\n{stdout}{stderr}",
        out.status
    );
    stdout
}

/// The library built for crate `name` (a first-party plugin or a fixture).
pub fn library(name: &str) -> PathBuf {
    PathBuf::from(match name {
        "crypto_parallel_verification" => env!("DUBCHAIN_LIB_crypto_parallel_verification"),
        "storage_binary_formats" => env!("DUBCHAIN_LIB_storage_binary_formats"),
        "fixture_returns_error" => env!("DUBCHAIN_LIB_fixture_returns_error"),
        "fixture_panics" => env!("DUBCHAIN_LIB_fixture_panics"),
        "fixture_not_a_plugin" => env!("DUBCHAIN_LIB_fixture_not_a_plugin"),
        "fixture_abi_mismatch" => env!("DUBCHAIN_LIB_fixture_abi_mismatch"),
        "fixture_api_mismatch" => env!("DUBCHAIN_LIB_fixture_api_mismatch"),
        "fixture_slow_init" => env!("DUBCHAIN_LIB_fixture_slow_init"),
        "fixture_wrong_answer" => env!("DUBCHAIN_LIB_fixture_wrong_answer"),
        "fixture_raw_shapes" => env!("DUBCHAIN_LIB_fixture_raw_shapes"),
        "fixture_reloadable" => env!("DUBCHAIN_LIB_fixture_reloadable"),
        "fixture_latent_bug" => env!("DUBCHAIN_LIB_fixture_latent_bug"),
        "crypto_verification_caching" => env!("DUBCHAIN_LIB_crypto_verification_caching"),
        "fixture_nonstrict" => env!("DUBCHAIN_LIB_fixture_nonstrict"),
        "fixture_aborts" => env!("DUBCHAIN_LIB_fixture_aborts"),
        "fixture_allocates" => env!("DUBCHAIN_LIB_fixture_allocates"),
        "fixture_own_allocator" => env!("DUBCHAIN_LIB_fixture_own_allocator"),
        "batching_signature_aggregation" => env!("DUBCHAIN_LIB_batching_signature_aggregation"),
        "crypto_hardware_acceleration" => env!("DUBCHAIN_LIB_crypto_hardware_acceleration"),
        "batching_state_writes" => env!("DUBCHAIN_LIB_batching_state_writes"),
        "batching_shard_aware" => env!("DUBCHAIN_LIB_batching_shard_aware"),
        "consensus_batching" => env!("DUBCHAIN_LIB_consensus_batching"),
        "consensus_lock_reduction" => env!("DUBCHAIN_LIB_consensus_lock_reduction"),
        "consensus_o1_structures" => env!("DUBCHAIN_LIB_consensus_o1_structures"),
        "storage_multi_tier_cache" => env!("DUBCHAIN_LIB_storage_multi_tier_cache"),
        "storage_background_fsync" => env!("DUBCHAIN_LIB_storage_background_fsync"),
        "storage_incremental_root" => env!("DUBCHAIN_LIB_storage_incremental_root"),
        "vm_bytecode_caching" => env!("DUBCHAIN_LIB_vm_bytecode_caching"),
        "vm_jit_caching" => env!("DUBCHAIN_LIB_vm_jit_caching"),
        "vm_gas_optimization" => env!("DUBCHAIN_LIB_vm_gas_optimization"),
        "vm_state_caching" => env!("DUBCHAIN_LIB_vm_state_caching"),
        "batching_tx_validation" => env!("DUBCHAIN_LIB_batching_tx_validation"),
        "storage_write_batching" => env!("DUBCHAIN_LIB_storage_write_batching"),
        "memory_buffer_reuse" => env!("DUBCHAIN_LIB_memory_buffer_reuse"),
        "memory_gc_tuning" => env!("DUBCHAIN_LIB_memory_gc_tuning"),
        "memory_allocation_reduction" => env!("DUBCHAIN_LIB_memory_allocation_reduction"),
        "network_batching" => env!("DUBCHAIN_LIB_network_batching"),
        "network_zero_copy" => env!("DUBCHAIN_LIB_network_zero_copy"),
        "network_adaptive_backpressure" => env!("DUBCHAIN_LIB_network_adaptive_backpressure"),
        "network_async_io" => env!("DUBCHAIN_LIB_network_async_io"),
        other => panic!("no library `{other}` is built for the tests"),
    })
}

/// The first-party manifests directory.
pub fn manifests_dir() -> PathBuf {
    PathBuf::from(env!("DUBCHAIN_MANIFESTS"))
}

/// A minimal manifest for plugin `name` providing `slot`, with `extra` TOML appended.
pub fn manifest_text(name: &str, slot: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"0.1.0\"\nsubsystem = \"test\"\nlibrary = \"{name}\"\napi = \"^0.3\"\nrisk = \"low\"\nprovides = [{{ slot = \"{slot}\", version = 1 }}]\n{extra}"
    )
}

/// A plugin directory in a temporary folder.
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl Default for PluginDir {
    fn default() -> Self {
        PluginDir::new()
    }
}

impl PluginDir {
    pub fn new() -> PluginDir {
        PluginDir {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `manifest` as `<name>.toml` and, if `library` is given, copies that library
    /// next to it under the name the manifest's `library = "<name>"` maps to.
    pub fn add(&self, name: &str, manifest: &str, library: Option<&Path>) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, manifest).expect("write manifest");
        if let Some(lib) = library {
            self.put_library(name, lib);
        }
        path
    }

    /// Copies `library` to where plugin `name`'s manifest looks for it.
    pub fn put_library(&self, name: &str, library: &Path) {
        let dest = self.dir.path().join(manifest::library_file_name(name));
        std::fs::copy(library, dest).expect("copy library");
    }

    /// Adds a first-party plugin: its manifest from `manifests/` and its built library.
    pub fn add_first_party(&self, name: &str) -> PathBuf {
        self.add_built(name, &first_party_manifest(name))
    }

    /// Adds `manifest` and the library this workspace built for `name` (a first-party
    /// plugin or a fixture), e.g. under a manifest a test edited.
    pub fn add_built(&self, name: &str, manifest: &str) -> PathBuf {
        self.add(name, manifest, Some(&library(name)))
    }

    /// Adds fixture `name` as a plugin of `slot`, with `extra` manifest TOML.
    pub fn add_fixture(&self, name: &str, slot: &str, extra: &str) -> PathBuf {
        self.add_built(name, &manifest_text(name, slot, extra))
    }

    /// Every manifest in the directory; panics if any is broken.
    pub fn manifests(&self) -> Vec<Manifest> {
        let d = manifest::discover(self.path());
        assert!(d.errors.is_empty(), "broken manifests: {:?}", d.errors);
        d.manifests
    }
}

/// Requests enabling `names` from the command line.
pub fn enable(names: &[&str]) -> Vec<Request> {
    names
        .iter()
        .map(|n| Request {
            name: (*n).to_owned(),
            enable: true,
            source: Source::CommandLine,
        })
        .collect()
}

/// Resolves `requests` over `manifests` with this host's API version.
pub fn resolve(manifests: &[Manifest], requests: &[Request]) -> Resolution {
    resolve::resolve(manifests, requests, &host_api_version())
}

/// A host with a short init deadline and a fast breaker (3 failures, 50 ms backoff).
pub fn test_host() -> Host {
    test_host_with_backoff(50)
}

/// Like [`test_host`], with the breaker's first backoff set to `backoff_ms`.
pub fn test_host_with_backoff(backoff_ms: u64) -> Host {
    Host::new(dubchain_host::host::HostOptions {
        init_timeout: std::time::Duration::from_millis(1_500),
        breaker: dubchain_host::slot::BreakerConfig {
            failure_threshold: 3,
            backoff_ms,
            max_backoff_ms: backoff_ms * 8,
        },
        ..Default::default()
    })
}

/// Resolves and applies `enable` over `dir` on `host`, with `config` for every plugin.
pub fn load(
    host: &Host, dir: &PluginDir, names: &[&str], config: &str,
) -> dubchain_host::host::ApplyReport {
    let manifests = dir.manifests();
    let resolution = resolve(&manifests, &enable(names));
    host.apply(&manifests, &resolution, |_| config.to_owned())
        .unwrap_or_else(|p| panic!("plan problems: {p:?}"))
}

/// The bytes of `library` with a trailer appended: the same code, but a different file, as a
/// rebuild looks to the host (different sha256, so it is reloaded).
pub fn rebuilt(library: &Path, tag: u8) -> Vec<u8> {
    let mut bytes = std::fs::read(library).expect("read library");
    bytes.extend_from_slice(b"\0dubchain-test-rebuild");
    bytes.push(tag);
    bytes
}

/// The first-party manifest of `name`, as text.
pub fn first_party_manifest(name: &str) -> String {
    std::fs::read_to_string(manifests_dir().join(format!("{name}.toml")))
        .expect("first-party manifest")
}

/// The root of the checkout the tests run in. From `CARGO_MANIFEST_DIR` as cargo and nextest
/// set it for the running test, not as it was when the test was built: a target directory
/// shared by two checkouts (CI's fresh clone, a working tree) may hold a build from either.
pub fn checkout() -> PathBuf {
    let tests = std::env::var_os("CARGO_MANIFEST_DIR").expect("tests are run by cargo");
    PathBuf::from(tests).join("..")
}

/// The `dubchain-perf` binary of this build (cargo builds the workspace's binaries next to
/// the test executables' `deps/` directory).
pub fn dubchain_perf() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let bin = dir.join(format!("dubchain-perf{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// The first-party plugins, in the order they are usually enabled.
pub const FIRST_PARTY: [&str; 2] = ["crypto_parallel_verification", "storage_binary_formats"];

/// A test host with every first-party plugin of [`FIRST_PARTY`] loaded, the verifier given
/// `config` (the codec has no settings). Keep the returned directory alive as long as the
/// host.
pub fn first_party_host(config: &str) -> (Host, PluginDir) {
    host_with_settings(&[(FIRST_PARTY[0], config), (FIRST_PARTY[1], "")])
}

/// A test host with the first-party plugins `plugins` loaded, each given its settings;
/// panics if one fails to load. Keep the returned directory alive as long as the host.
pub fn host_with_settings(plugins: &[(&str, &str)]) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    for (name, _) in plugins {
        dir.add_first_party(name);
    }
    let names: Vec<&str> = plugins.iter().map(|(n, _)| *n).collect();
    let manifests = dir.manifests();
    let resolution = resolve(&manifests, &enable(&names));
    let host = test_host();
    let report = host
        .apply(&manifests, &resolution, |name| {
            plugins
                .iter()
                .find(|(n, _)| *n == name)
                .map_or_else(String::new, |(_, c)| (*c).to_owned())
        })
        .unwrap_or_else(|p| panic!("plan problems: {p:?}"));
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    (host, dir)
}

/// A test host with the first-party plugins `names` loaded, each given `config`; panics if
/// one fails to load. Keep the returned directory alive as long as the host.
pub fn host_with_first_party(names: &[&str], config: &str) -> (Host, PluginDir) {
    let plugins: Vec<(&str, &str)> = names.iter().map(|n| (*n, config)).collect();
    host_with_settings(&plugins)
}

/// Checks `host`'s `consensus.block_validation` verdicts on the seeded run of `blocks`
/// blocks of `txs` transactions (faulty ones if `adversarial`) against the baseline's, block
/// by block; returns the blocks' labels.
pub fn check_block_run(
    host: &Host, seed: u64, blocks: usize, txs: usize, adversarial: bool,
) -> Vec<&'static str> {
    let (height, hash, run, labels) =
        dubchain_host::workload::block_run(seed, blocks, txs, adversarial);
    let expected = dubchain_host::baseline::check_run(height, &hash, &run);
    let got = host
        .slots
        .block_validation
        .check_run(height, &hash, &run)
        .expect("the plugin answers");
    assert_eq!(expected.len(), got.len(), "seed {seed}");
    for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
        assert_eq!(e, g, "seed {seed}, block {i} ({})", labels[i]);
    }
    labels
}
