//! A test harness for plugins and for the host: a running host on a temporary plugin
//! directory, with hot reload on, that a test can drop plugins into, replace their libraries
//! in, and remove them from, while it keeps calling slots.
//!
//! ```no_run
//! use dubchain_host::testing::TestHost;
//! # fn main() -> Result<(), String> {
//! # let (manifest, library) = (String::new(), std::path::PathBuf::new());
//! let t = TestHost::start(&["my_plugin"]);
//! t.install("my_plugin", &manifest, &library);
//! t.wait_for(std::time::Duration::from_secs(10), |t| t.active("crypto.sig_verify").starts_with("my_plugin@"))?;
//! // ... call t.host().slots.sig_verify while replacing the library:
//! t.replace_library("my_plugin", &library);
//! # Ok(()) }
//! ```

use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::{
    host::{HostOptions, PluginState},
    manifest::library_file_name,
    session::SessionOptions,
    slot::BreakerConfig,
    watch::{self, ReloadEvent, Reloader, Watcher},
    Host,
};

/// A host with hot reload on a temporary plugin directory. Dropping it stops the watch and
/// deletes the directory.
pub struct TestHost {
    root: PathBuf,
    reloader: Arc<Reloader>,
    events: Mutex<mpsc::Receiver<ReloadEvent>>,
    _watcher: Watcher,
}

impl TestHost {
    /// Starts a host whose configuration enables `enable`; the plugin directory is empty.
    pub fn start(enable: &[&str]) -> TestHost {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "dubchain-testhost-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let plugin_dir = root.join("plugins");
        std::fs::create_dir_all(&plugin_dir).expect("create plugin dir");
        let host = Arc::new(Host::new(HostOptions {
            // Long enough for a plugin that panics in init to have its backtrace printed
            // (slow to symbolise on a loaded machine) before the deadline.
            init_timeout: Duration::from_secs(20),
            breaker: BreakerConfig {
                failure_threshold: 3,
                backoff_ms: 100,
                max_backoff_ms: 1_000,
            },
            runtime_dir: root.join("mapped"),
            ..HostOptions::default()
        }));
        let options = SessionOptions {
            plugin_dir: plugin_dir.clone(),
            config: None,
            profile: "development".into(),
            state_dir: root.join("state"),
            enable: enable.iter().map(|s| (*s).to_owned()).collect(),
            disable: Vec::new(),
            monitor: Vec::new(),
        };
        let reloader = Arc::new(Reloader::new(host, options));
        let (tx, rx) = mpsc::channel();
        let watcher = watch::watch(&plugin_dir, reloader.clone(), move |e| {
            let _ = tx.send(e);
        })
        .expect("watch the plugin directory");
        TestHost {
            root,
            reloader,
            events: Mutex::new(rx),
            _watcher: watcher,
        }
    }

    pub fn host(&self) -> &Arc<Host> {
        self.reloader.host()
    }

    /// What reloads this host (the admin API of a monitor changes the host through it).
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    pub fn plugin_dir(&self) -> PathBuf {
        self.root.join("plugins")
    }

    /// Adds or changes the plugins the configuration enables, and reloads.
    pub fn enable(&self, names: &[&str]) -> ReloadEvent {
        self.reloader
            .update_options(|o| o.enable = names.iter().map(|s| (*s).to_owned()).collect());
        self.reloader.reload(Vec::new())
    }

    /// Drops a plugin package in: the library first, then the manifest, each written to a
    /// hidden temporary file and renamed, as a deployment tool would.
    pub fn install(&self, name: &str, manifest: &str, library: &Path) {
        self.replace_library(name, library);
        atomic_write(
            &self.plugin_dir().join(format!("{name}.toml")),
            manifest.as_bytes(),
        );
    }

    /// Replaces the library of plugin `name` (atomically, by rename).
    pub fn replace_library(&self, name: &str, library: &Path) {
        let bytes = std::fs::read(library).expect("read library");
        self.replace_library_bytes(name, &bytes);
    }

    /// Like [`TestHost::replace_library`], with the library's bytes.
    pub fn replace_library_bytes(&self, name: &str, bytes: &[u8]) {
        atomic_write(&self.library_path(name), bytes);
    }

    /// Writes the library of `name` in place, in two halves `pause` apart: what a slow copy
    /// looks like to the watcher.
    pub fn write_library_slowly(&self, name: &str, bytes: &[u8], pause: Duration) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.library_path(name)).expect("create library");
        let half = bytes.len() / 2;
        f.write_all(&bytes[..half]).expect("write");
        f.sync_all().expect("sync");
        std::thread::sleep(pause);
        f.write_all(&bytes[half..]).expect("write");
        f.sync_all().expect("sync");
    }

    /// Removes plugin `name`'s manifest and library.
    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.plugin_dir().join(format!("{name}.toml")));
        let _ = std::fs::remove_file(self.library_path(name));
    }

    /// Where the manifest `library = "<name>"` points.
    pub fn library_path(&self, name: &str) -> PathBuf {
        self.plugin_dir().join(library_file_name(name))
    }

    /// The next reload event, waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<ReloadEvent> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(timeout)
            .ok()
    }

    /// Waits, reload after reload, until `pred` holds; `Err` with the events seen if it
    /// does not within `timeout`.
    pub fn wait_for(
        &self, timeout: Duration, pred: impl Fn(&TestHost) -> bool,
    ) -> Result<Vec<ReloadEvent>, String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while !pred(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let log: Vec<String> = seen.iter().map(ToString::to_string).collect();
                return Err(format!(
                    "condition not reached within {timeout:?}; reloads seen:\n{}",
                    log.join("\n")
                ));
            }
            if let Some(e) = self.next_event(left.min(Duration::from_millis(200))) {
                seen.push(e);
            }
        }
        Ok(seen)
    }

    /// The label of what answers `slot` now (`baseline` or `name@version#generation`).
    pub fn active(&self, slot: &str) -> String {
        self.host()
            .slot_status()
            .into_iter()
            .find(|s| s.slot == slot)
            .map(|s| s.active)
            .unwrap_or_default()
    }

    pub fn state(&self, name: &str) -> PluginState {
        self.host().plugin_state(name)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn atomic_write(path: &Path, bytes: &[u8]) {
    crate::files::write_atomic(path, bytes).expect("write a file atomically");
}

/// The reference `net.transport` implementation (the baseline's threads behind the slot's
/// interface), defined in the plugin API so that providers can start from it.
pub use dubchain_plugin_api::transport::{ThreadConnections, ThreadTransport};

/// A reference `storage.account_read` implementation for tests and plugin authors: an account read
/// cache per store, kept coherent by the writes and rollbacks the host announces.
/// [`AccountReadCache::ignoring_writes`] makes the stale variant the self-test exists to
/// refuse.
#[derive(Debug, Default)]
pub struct AccountReadCache {
    ignore_writes: bool,
    seen: Mutex<
        std::collections::HashMap<
            (u64, dubchain_plugin_api::types::Bytes32),
            dubchain_plugin_api::exec::AccountState,
        >,
    >,
    hits: Arc<AtomicU64>,
}

impl AccountReadCache {
    /// A coherent cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache that ignores the writes it is told of, and so serves stale accounts.
    pub fn ignoring_writes() -> Self {
        AccountReadCache {
            ignore_writes: true,
            ..Self::default()
        }
    }

    /// The count of reads answered from the cache, shared (it outlives the cache's move
    /// into a slot).
    pub fn hit_counter(&self) -> Arc<AtomicU64> {
        self.hits.clone()
    }
}

impl dubchain_plugin_api::slots::AccountRead for AccountReadCache {
    fn get(
        &self, store: u64, accounts: &[dubchain_plugin_api::types::Bytes32],
        out: &mut [dubchain_plugin_api::exec::AccountState],
        below: &dubchain_plugin_api::slots::AccountSourceRef<'_>,
    ) -> Result<(), dubchain_plugin_api::PluginError> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for (a, o) in accounts.iter().zip(out) {
            *o = match seen.get(&(store, *a)) {
                Some(s) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    *s
                }
                None => {
                    let mut s = [dubchain_plugin_api::exec::AccountState::default()];
                    below
                        .get(std::slice::from_ref(a).into(), s.as_mut_slice().into())
                        .into_result()?;
                    seen.insert((store, *a), s[0]);
                    s[0]
                }
            };
        }
        Ok(())
    }

    fn written(
        &self, store: u64, writes: &[dubchain_plugin_api::exec::AccountEntry],
    ) -> Result<(), dubchain_plugin_api::PluginError> {
        if !self.ignore_writes {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            for w in writes {
                seen.insert((store, w.account), w.state);
            }
        }
        Ok(())
    }

    fn reset(&self, store: u64) -> Result<(), dubchain_plugin_api::PluginError> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| k.0 != store);
        Ok(())
    }
}

/// A reference `storage.block_commit` implementation for tests and plugin authors: each block's
/// writes in a `BTreeMap` (the last write of a key replaces the earlier ones), handed over
/// in key order. [`BatchedWrites::failing`] makes one that fails a given call at a given
/// height, to exercise the host's fallback.
#[derive(Debug, Default)]
pub struct BatchedWrites {
    /// The height whose set fails (`None`: every height), and the call that fails.
    fail: Option<(Option<u64>, &'static str)>,
    begun: Arc<AtomicU64>,
}

impl BatchedWrites {
    /// A correct write-set factory.
    pub fn new() -> Self {
        Self::default()
    }

    /// One whose write set for block `height` fails its first `call` (`"write"`, `"read"`,
    /// `"held"` or `"drain"`).
    pub fn failing(height: u64, call: &'static str) -> Self {
        BatchedWrites {
            fail: Some((Some(height), call)),
            ..Self::default()
        }
    }

    /// One whose write set for every block fails its first `call`.
    pub fn always_failing(call: &'static str) -> Self {
        BatchedWrites {
            fail: Some((None, call)),
            ..Self::default()
        }
    }

    /// The count of write sets made, shared (it outlives the factory's move into a slot).
    pub fn begun_counter(&self) -> Arc<AtomicU64> {
        self.begun.clone()
    }
}

/// One block's writes held by [`BatchedWrites`].
#[derive(Debug, Default)]
pub struct HeldWrites {
    writes: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    fail: Option<&'static str>,
}

impl HeldWrites {
    fn injected(&self, call: &str) -> Result<(), dubchain_plugin_api::PluginError> {
        match self.fail {
            Some(f) if f == call => Err(dubchain_plugin_api::PluginError::failed(format!(
                "injected failure of {call}"
            ))),
            _ => Ok(()),
        }
    }

    fn entries<'a>(
        pairs: impl Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)>,
    ) -> Vec<dubchain_plugin_api::slots::KvWrite> {
        pairs
            .map(|(k, v)| dubchain_plugin_api::slots::KvWrite {
                key: k.clone().into(),
                value: v.clone().map(Into::into).into(),
            })
            .collect()
    }
}

impl dubchain_plugin_api::slots::BlockWrites for HeldWrites {
    fn write(
        &mut self, key: &[u8], value: Option<&[u8]>,
        _through: &dubchain_plugin_api::slots::WriteThroughRef<'_>,
    ) -> Result<(), dubchain_plugin_api::PluginError> {
        self.injected("write")?;
        self.writes.insert(key.to_vec(), value.map(<[u8]>::to_vec));
        Ok(())
    }

    fn read(
        &self, key: &[u8],
    ) -> Result<dubchain_plugin_api::slots::Held, dubchain_plugin_api::PluginError> {
        use dubchain_plugin_api::slots::Held;
        self.injected("read")?;
        Ok(match self.writes.get(key) {
            None => Held::NotHeld,
            Some(None) => Held::Deleted,
            Some(Some(v)) => Held::Value(v.clone().into()),
        })
    }

    fn held(
        &self, prefix: &[u8],
    ) -> Result<Vec<dubchain_plugin_api::slots::KvWrite>, dubchain_plugin_api::PluginError> {
        self.injected("held")?;
        Ok(Self::entries(
            self.writes
                .range(prefix.to_vec()..)
                .take_while(|(k, _)| k.starts_with(prefix)),
        ))
    }

    fn drain(
        &mut self,
    ) -> Result<Vec<dubchain_plugin_api::slots::KvWrite>, dubchain_plugin_api::PluginError> {
        self.injected("drain")?;
        let out = Self::entries(self.writes.iter());
        self.writes.clear();
        Ok(out)
    }
}

impl dubchain_plugin_api::slots::BlockCommit for BatchedWrites {
    type Writes = HeldWrites;

    fn begin(&self, height: u64) -> Result<HeldWrites, dubchain_plugin_api::PluginError> {
        self.begun.fetch_add(1, Ordering::Relaxed);
        Ok(HeldWrites {
            writes: Default::default(),
            fail: self
                .fail
                .filter(|f| f.0.is_none_or(|h| h == height))
                .map(|f| f.1),
        })
    }
}

/// A reference `mem.buffer_pool` implementation for tests: keeps up to 8 of the buffers it
/// is given and hands them out again. [`KeepingPool::dirty`] hands them out with their old
/// contents, the mistake the pool's checks exist to refuse.
#[derive(Debug, Default)]
pub struct KeepingPool {
    clear: bool,
    kept: Mutex<Vec<abi_stable::std_types::RVec<u8>>>,
}

impl KeepingPool {
    /// A pool that empties buffers before reuse.
    pub fn clearing() -> Self {
        KeepingPool {
            clear: true,
            kept: Mutex::default(),
        }
    }

    /// A pool that does not.
    pub fn dirty() -> Self {
        KeepingPool::default()
    }
}

impl dubchain_plugin_api::slots::BufferPool for KeepingPool {
    fn take(
        &self, capacity: usize,
    ) -> Result<abi_stable::std_types::RVec<u8>, dubchain_plugin_api::PluginError> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        match kept.iter().position(|b| b.capacity() >= capacity) {
            Some(i) => {
                let mut b = kept.swap_remove(i);
                if self.clear {
                    b.clear();
                }
                Ok(b)
            }
            None => Ok(abi_stable::std_types::RVec::with_capacity(capacity)),
        }
    }

    fn give(
        &self, buffer: abi_stable::std_types::RVec<u8>,
    ) -> Result<(), dubchain_plugin_api::PluginError> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < 8 {
            kept.push(buffer);
        }
        Ok(())
    }
}

/// Asserts that `slot` was told of exactly one failure, answered below the provider: what
/// [`crate::slot::Slot::object_failed`] records once, and what the status and the monitor
/// show.
pub fn assert_failed_once<I>(slot: &crate::slot::Slot<I>) {
    let status = slot.status();
    assert_eq!(
        (status.counters.errors, status.counters.fallbacks),
        (1, 1),
        "{status:?}"
    );
}

/// Installs `imp` as the only provider of `slot`, as plugin `name` 0.1.0 of generation 1
/// with the default breaker: an in-process provider for a unit test.
pub fn install_one<I>(slot: &crate::slot::Slot<I>, name: &str, imp: I) {
    slot.install(vec![Arc::new(crate::slot::Provider::new(
        name.into(),
        "0.1.0".into(),
        1,
        imp,
        BreakerConfig::default(),
    ))]);
}
