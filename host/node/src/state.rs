//! Account state on an embedded RocksDB, with a commit protocol that survives `kill -9`.
//!
//! Layout (one key space, prefixes):
//!
//! | key | value |
//! |---|---|
//! | `a/` + account (32 bytes) | the account, serde_json (the baseline record format) |
//! | `c/` + contract (32 bytes) | the contract's wasm code, as deployed |
//! | `k/` + contract | SHA-256 of its code (read without the code by `vm.code_loader`) |
//! | `s/` + contract + key (8 bytes, big-endian, sign bit flipped) | a storage value, serde_json |
//! | `b/` + height (8 bytes, big-endian) | the block, encoded by `storage.record_codec` |
//! | `h` | the head: height, block hash, state root (JSON) |
//! | `m/codecs` | the names of the codecs the stored blocks were written by (JSON array; `json` is the baseline's) |
//! | `u/` + height + key | undo: the value of `key` (an `a/`, `c/` or `s/` key) before block `height` first wrote it |
//!
//! **Baseline write path**, as the catalogue describes it: each transaction's writes go to
//! the store at once, one put per key; a block is committed by writing its record and then
//! the head with `sync` (an fsync per commit). Before a key is first written in a block, its
//! old value is put under `u/`. RocksDB recovers a prefix of its write-ahead log, so after a
//! crash either the head moved (the block's writes are all there) or it did not, and the
//! undo entries of the unfinished block restore what it overwrote. [`StateStore::open`] runs
//! that recovery; no committed block is ever lost or half-applied.
//!
//! **With a `storage.block_commit` provider** (`storage_write_batching`), a block's writes stay in
//! the provider's write set, and every read of the block ([`BlockWriter`]'s reads, the VM's
//! storage reads, the state-root scans) sees them laid over the store. Nothing reaches
//! RocksDB until the commit, which writes the set, the block's record and the head as one
//! atomic `WriteBatch`: no undo entries, and a crash leaves all of the block or none. If the
//! provider fails, nothing of the block is in the store; the caller runs the block again on
//! the baseline ([`StateError::WriteSet`]).

use std::{
    collections::{BTreeSet, HashSet},
    path::{Path, PathBuf},
    sync::Arc,
};

use abi_stable::std_types::{ROption, RSlice};
use dubchain_plugin_api::{
    exec::{AccountEntry, AccountState},
    slots::{BlockWritesBox, Held, HostWriteThrough, KvWrite},
    state_tree::{self, LeafChange, StateLeaf},
    types::Bytes32,
    PluginError,
};
use rocksdb::{Direction, IteratorMode, Options, WriteBatch, DB};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use dubchain_host::slot::{
    AccountReadSlot, BlockCommitSlot, DurabilitySlot, RecordCodecSlot, Slots, StateRootSlot,
};

/// An account.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub balance: u64,
    pub nonce: u64,
}

/// The last committed block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub height: u64,
    pub hash: Bytes32,
    pub state_root: Bytes32,
}

/// A state store problem: RocksDB's error, or a record that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state store {path}: {source}")]
    Db {
        path: PathBuf,
        source: rocksdb::Error,
    },
    /// RocksDB would not open the directory; `advice` says what to do, by the reason.
    #[error("state store {path}: cannot open it: {source}; {advice}")]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
        advice: &'static str,
    },
    #[error("state store {path}: corrupt {what}: {detail}")]
    Corrupt {
        path: PathBuf,
        what: String,
        detail: String,
    },
    /// A read-only command was pointed at a directory that holds no store.
    #[error("state store {path}: no store there ({why}); check the path, or create one with `dubchain-perf chain produce --data-dir {path}`")]
    Missing { path: PathBuf, why: String },
    /// A store without a chain head that holds keys no chain writes: another kind of store
    /// (`chain commit-race`'s), which a chain must not be written into or read from.
    #[error("state store {path}: holds key {key:02x?}, which no chain writes, and no chain head: it is another kind of store (a `chain commit-race` store?); give the chain a directory of its own")]
    NotAChain { path: PathBuf, key: Vec<u8> },
    /// A data directory that holds no store but other files: a store made there would
    /// scatter its files among them (a mistyped path, a home directory).
    #[error("state store {path}: the directory holds no store but other files ({}), and a store's files would be scattered among them; give an empty or new --data-dir (it is created if missing)", found.join(", "))]
    NotAStore { path: PathBuf, found: Vec<String> },
    /// The directory holds a store's files but not `CURRENT`, which names its manifest:
    /// RocksDB would start a new, empty store over them and strand every block they hold.
    #[error("{}", no_current(.path, .manifest))]
    NoCurrent {
        path: PathBuf,
        /// The newest `MANIFEST-*` file there, if any.
        manifest: Option<String>,
    },
    /// The `storage.block_commit` provider failed during a block: nothing of the block reached the
    /// store, and the block must be run again on the baseline write path.
    #[error("state store {path}: the storage.block_commit provider failed ({detail}); block {height}'s writes were dropped")]
    WriteSet {
        path: PathBuf,
        height: u64,
        detail: String,
    },
    /// The store holds blocks written by a codec plugin the host has not loaded: going on
    /// would strand them.
    #[error("{}", codec_missing(.path, .missing))]
    CodecMissing { path: PathBuf, missing: Vec<String> },
}

/// The stored form of a codec list (`m/codecs`).
fn codec_list(codecs: &BTreeSet<String>) -> Vec<u8> {
    serde_json::to_vec(codecs).expect("a list of names serialises")
}

/// What [`StateError::CodecMissing`] says: which codecs, and the two ways on.
fn codec_missing(path: &Path, missing: &[String]) -> String {
    let names = missing
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let (s, them) = if missing.len() > 1 {
        ("s", "them")
    } else {
        ("", "it")
    };
    format!(
        "state store {}: its blocks were written with codec plugin{s} {names}, which this host has not loaded; enable {them} (for example `--enable {}`), or, with {them} enabled, rewrite the blocks as JSON with `dubchain-perf chain migrate --data-dir {} --codec json`",
        path.display(),
        missing.join(","),
        path.display()
    )
}

/// What a node keeps in its data directory beside its store: its monitor's admin token and
/// the evidence of shadow checks (the monitor names its files by these).
pub const MONITOR_TOKEN: &str = "monitor.token";
pub const SHADOW_EVIDENCE: &str = "shadow-evidence";
/// The file a running node holds locked ([`lock_data_dir`]).
pub const NODE_LOCK: &str = "node.lock";

/// What a data directory may hold beside a store, or before one is made there.
const KEPT_BESIDE_A_STORE: [&str; 4] = [
    MONITOR_TOKEN,
    SHADOW_EVIDENCE,
    NODE_LOCK,
    crate::launch::SCRATCH_MARK,
];

/// A running node's hold on its data directory: `node.lock` there, locked (`flock`) for as
/// long as this value lives; the lock goes with the process, however it ends.
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Takes the data directory `dir` for this node before it writes anything there, so that a
/// second node started on the same directory is refused before it binds a monitor or
/// replaces the running node's admin token (RocksDB's own lock comes later, with the store).
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, String> {
    use std::os::fd::AsRawFd as _;
    let path = dir.join(NODE_LOCK);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}; give a writable --data-dir", path.display()))?;
    // SAFETY: `file` is an open descriptor for the whole call; flock only reads it.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "data directory {}: another node or benchmark is running on it (it holds {NODE_LOCK}); stop it or let it finish, or give another --data-dir",
            dir.display()
        ));
    }
    Ok(DataDirLock { _file: file })
}

/// What [`StateError::NoCurrent`] says: what is wrong, and how to get the store back.
fn no_current(path: &Path, manifest: &Option<String>) -> String {
    let back = match manifest {
        Some(m) => format!(
            "if {m} is the store's newest manifest, `printf '{m}\\n' > {}` gives it back; otherwise restore the directory from a backup",
            path.join("CURRENT").display()
        ),
        None => "restore the directory from a backup".to_owned(),
    };
    format!(
        "state store {}: it holds a RocksDB store's files but no CURRENT file, which names the store's manifest; opening it would start a new, empty store over them and strand what they hold, so nothing was opened; {back}, or give another --data-dir",
        path.display()
    )
}

/// `Some` if `path` holds files of a RocksDB store (a manifest or a table file) but no
/// `CURRENT`: a damaged store, not a place for a new one.
fn without_current(path: &Path) -> Option<StateError> {
    if path.join("CURRENT").exists() {
        return None;
    }
    let names: Vec<String> = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    let number = |n: &String| n.strip_prefix("MANIFEST-")?.parse::<u64>().ok();
    let manifest = names
        .iter()
        .filter(|n| number(n).is_some())
        .max_by_key(|n| number(n));
    let tables = names.iter().any(|n| n.ends_with(".sst"));
    (manifest.is_some() || tables).then(|| StateError::NoCurrent {
        path: path.to_owned(),
        manifest: manifest.cloned(),
    })
}

/// What to do when RocksDB will not open a store, by its reason.
fn open_advice(e: &rocksdb::Error) -> &'static str {
    if e.kind() == rocksdb::ErrorKind::Corruption {
        "its files are damaged: restore the directory from a backup, or give another --data-dir"
    } else if e.to_string().to_lowercase().contains("lock") {
        "another process has it open: stop that process, or give another --data-dir"
    } else {
        "check the directory's permissions and free space, or give another --data-dir"
    }
}

/// The state store of one node.
pub struct StateStore {
    db: DB,
    path: PathBuf,
    /// Identity for `vm.contract_state` and `storage.account_read` providers' caches: unique in the
    /// process, and replaced whenever a block is rolled back (so nothing cached before can
    /// be served after).
    id: std::sync::atomic::AtomicU64,
    /// Where account reads go first, once the node has said ([`StateStore::attach`]).
    reads: std::sync::OnceLock<Arc<AccountReadSlot>>,
    /// Who makes commits durable, once the node has said.
    durability: std::sync::OnceLock<Arc<DurabilitySlot>>,
    /// Who holds a block's writes until its commit, once the node has said.
    commits: std::sync::OnceLock<Arc<BlockCommitSlot>>,
    /// Who computes a block's state root from its parent's, once the node has said
    /// (`storage.state_root`).
    roots: std::sync::OnceLock<Arc<StateRootSlot>>,
    /// The codecs the stored blocks were written by (`m/codecs`), as last written.
    codecs: std::sync::Mutex<BTreeSet<String>>,
}

/// The next store identity in this process.
fn next_store_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A stored key and value.
type Entry = (Box<[u8]>, Box<[u8]>);

const ACCOUNT: &[u8] = b"a/";
const CODE: &[u8] = b"c/";
const CODE_HASH: &[u8] = b"k/";
const STORAGE: &[u8] = b"s/";
const BLOCK: &[u8] = b"b/";
const HEAD: &[u8] = b"h";
const UNDO: &[u8] = b"u/";
const CODECS: &[u8] = b"m/codecs";
/// The prefixes whose keys are leaves of the state tree (a code hash, `k/`, is not: the
/// code's leaf covers it).
const STATE_PREFIXES: [&[u8]; 3] = [ACCOUNT, CODE, STORAGE];

fn account_key(a: &Bytes32) -> Vec<u8> {
    [ACCOUNT, &a.0].concat()
}

fn code_key(contract: &Bytes32) -> Vec<u8> {
    [CODE, &contract.0].concat()
}

fn code_hash_key(contract: &Bytes32) -> Vec<u8> {
    [CODE_HASH, &contract.0].concat()
}

/// Storage keys sort by their signed value: big-endian with the sign bit flipped.
fn storage_key(contract: &Bytes32, key: i64) -> Vec<u8> {
    let ordered = (key as u64) ^ (1 << 63);
    [STORAGE, &contract.0, &ordered.to_be_bytes()].concat()
}

fn block_key(height: u64) -> Vec<u8> {
    [BLOCK, &height.to_be_bytes()[..]].concat()
}

fn undo_prefix(height: u64) -> Vec<u8> {
    [UNDO, &height.to_be_bytes()[..]].concat()
}

/// A path under the temporary directory no other scratch store of this process has
/// (`dubchain-<what>-<pid>-<n>`), for a store the caller removes when done.
pub fn scratch_dir(what: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("dubchain-{what}-{}-{n}", std::process::id()))
}

impl StateStore {
    /// Opens (creating if needed) the store at `path` and finishes or rolls back a block
    /// interrupted by a crash.
    pub fn open(path: &Path) -> Result<StateStore, StateError> {
        Self::open_with(path, true)
    }

    /// Opens (creating if needed) the store in a data directory the user named: as
    /// [`StateStore::open`], but a directory without a store is taken only if it holds
    /// nothing but what a node keeps beside its store ([`KEPT_BESIDE_A_STORE`]).
    pub fn open_data_dir(path: &Path) -> Result<StateStore, StateError> {
        if !path.join("CURRENT").exists() {
            if let Some(damaged) = without_current(path) {
                return Err(damaged);
            }
            let mut found: Vec<String> = std::fs::read_dir(path)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| !KEPT_BESIDE_A_STORE.contains(&n.as_str()))
                .collect();
            if !found.is_empty() {
                found.sort();
                if found.len() > 5 {
                    let more = found.len() - 4;
                    found.truncate(4);
                    found.push(format!("and {more} more"));
                }
                return Err(StateError::NotAStore {
                    path: path.to_owned(),
                    found,
                });
            }
        }
        Self::open(path)?.refusing_other_kinds()
    }

    /// `self`, unless it has no chain head and holds a key no chain writes
    /// ([`StateError::NotAChain`]). A store with a head is a chain's; one without is new or
    /// has only an interrupted genesis, so the keys read are few.
    fn refusing_other_kinds(self) -> Result<StateStore, StateError> {
        if self.head()?.is_some() {
            return Ok(self);
        }
        let chain_key = |k: &[u8]| {
            k == HEAD
                || k == CODECS
                || [ACCOUNT, CODE, CODE_HASH, STORAGE, BLOCK, UNDO]
                    .iter()
                    .any(|p| k.starts_with(p))
        };
        for item in self.db.iterator(IteratorMode::Start) {
            let (key, _) = item.map_err(|e| self.db_err(e))?;
            if !chain_key(&key) {
                return Err(StateError::NotAChain {
                    path: self.path.clone(),
                    key: key.to_vec(),
                });
            }
        }
        Ok(self)
    }

    /// Opens the store at `path`, which must exist: nothing is created where there is none
    /// (what read-only commands use, so a mistyped path is an error, not a new empty store).
    /// A block interrupted by a crash is finished or rolled back, as by [`StateStore::open`].
    pub fn open_existing(path: &Path) -> Result<StateStore, StateError> {
        let missing = |why: &str| StateError::Missing {
            path: path.to_owned(),
            why: why.to_owned(),
        };
        if !path.exists() {
            return Err(missing("the directory does not exist"));
        }
        if !path.is_dir() {
            return Err(missing("it is a file, not a directory"));
        }
        if let Some(damaged) = without_current(path) {
            return Err(damaged);
        }
        if !path.join("CURRENT").is_file() {
            return Err(missing("the directory holds no RocksDB store"));
        }
        Self::open_with(path, false)?.refusing_other_kinds()
    }

    fn open_with(path: &Path, create: bool) -> Result<StateStore, StateError> {
        if let Some(damaged) = without_current(path) {
            return Err(damaged);
        }
        let mut opts = Options::default();
        opts.create_if_missing(create);
        let db = DB::open(&opts, path).map_err(|source| StateError::Open {
            path: path.to_owned(),
            advice: open_advice(&source),
            source,
        })?;
        let store = StateStore {
            db,
            path: path.to_owned(),
            id: next_store_id().into(),
            reads: std::sync::OnceLock::new(),
            durability: std::sync::OnceLock::new(),
            commits: std::sync::OnceLock::new(),
            roots: std::sync::OnceLock::new(),
            codecs: Default::default(),
        };
        let codecs = match store.db.get(CODECS).map_err(|e| store.db_err(e))? {
            Some(v) => serde_json::from_slice(&v).map_err(|e| store.corrupt("codec list", e))?,
            None => BTreeSet::new(),
        };
        *store.codecs.lock().unwrap_or_else(|p| p.into_inner()) = codecs;
        store.recover()?;
        Ok(store)
    }

    /// The codecs the stored blocks were written by.
    pub fn codecs(&self) -> BTreeSet<String> {
        self.codecs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Refuses a store holding blocks written by a codec the host's `storage.record_codec`
    /// slot cannot read with: they would be stranded.
    pub fn check_codecs(&self, codecs: &RecordCodecSlot) -> Result<(), StateError> {
        let readable = codecs.readable_codecs();
        let missing: Vec<String> = self.codecs().difference(&readable).cloned().collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(StateError::CodecMissing {
                path: self.path.clone(),
                missing,
            })
        }
    }

    /// The codec list with `codec` added, if it is not there yet: what to store under
    /// `m/codecs` no later than the first block it writes. The store remembers it (with
    /// [`StateStore::remember_codecs`]) only once it is written.
    fn codecs_with(&self, codec: &str) -> Option<BTreeSet<String>> {
        let set = self.codecs.lock().unwrap_or_else(|p| p.into_inner());
        if set.contains(codec) {
            return None;
        }
        let mut grown = set.clone();
        grown.insert(codec.to_owned());
        Some(grown)
    }

    fn remember_codecs(&self, codecs: BTreeSet<String>) {
        *self.codecs.lock().unwrap_or_else(|p| p.into_inner()) = codecs;
    }

    /// Rewrites stored blocks `(height, bytes)` in one atomic, synced batch, and records that
    /// the blocks are now written by `codecs` only (`chain migrate`: the caller decoded and
    /// re-encoded them; `codecs` is what every stored block will then be in, so it is
    /// written with the last batch of a migration, after every block is rewritten).
    pub fn rewrite_blocks(
        &self, blocks: &[(u64, Vec<u8>)], codecs: Option<&BTreeSet<String>>,
    ) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        for (height, bytes) in blocks {
            batch.put(block_key(*height), bytes);
        }
        if let Some(codecs) = codecs {
            batch.put(CODECS, codec_list(codecs));
        }
        self.db.write(batch).map_err(|e| self.db_err(e))?;
        self.db.flush_wal(true).map_err(|e| self.db_err(e))?;
        if let Some(codecs) = codecs {
            self.remember_codecs(codecs.clone());
        }
        Ok(())
    }

    /// Adds `codec` to the stored codec list (synced) before blocks in it are written.
    pub fn note_codec(&self, codec: &str) -> Result<(), StateError> {
        if let Some(grown) = self.codecs_with(codec) {
            self.db
                .put(CODECS, codec_list(&grown))
                .map_err(|e| self.db_err(e))?;
            self.db.flush_wal(true).map_err(|e| self.db_err(e))?;
            self.remember_codecs(grown);
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn db_err(&self, source: rocksdb::Error) -> StateError {
        StateError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: impl Into<String>, detail: impl ToString) -> StateError {
        StateError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// The committed head, or `None` for an empty store.
    pub fn head(&self) -> Result<Option<Head>, StateError> {
        match self.db.get(HEAD).map_err(|e| self.db_err(e))? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| self.corrupt("head", e)),
        }
    }

    /// Puts this store behind the host's slots from now on: account reads through
    /// `storage.account_read` (told of every account write when it reaches the store, and of every
    /// rollback), a block's writes held by `storage.block_commit`, commits made durable by
    /// `storage.durability`, and each block's state root by `storage.state_root`.
    pub fn attach(&self, slots: &Slots) {
        let _ = self.reads.set(slots.account_read.clone());
        let _ = self.durability.set(slots.durability.clone());
        let _ = self.commits.set(slots.block_commit.clone());
        let _ = self.roots.set(slots.state_root.clone());
    }

    /// Reads an account: through `storage.account_read` if the node set it up, else (the baseline)
    /// from RocksDB, decoding the record.
    pub fn account(&self, a: &Bytes32) -> Result<Account, StateError> {
        if let Some(slot) = self.reads.get() {
            let fault: std::sync::Mutex<Option<StateError>> = std::sync::Mutex::new(None);
            let mut got = [AccountState::default()];
            let answered = slot.read_into(
                self.id(),
                std::slice::from_ref(a),
                &mut got,
                |accounts: &[Bytes32], out: &mut [AccountState]| {
                    for (x, o) in accounts.iter().zip(out) {
                        match self.account_record(x) {
                            Ok((acc, _)) => {
                                *o = AccountState {
                                    balance: acc.balance,
                                    nonce: acc.nonce,
                                }
                            }
                            Err(e) => {
                                let msg = e.to_string();
                                *fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                                return Err(PluginError::failed(msg));
                            }
                        }
                    }
                    Ok(())
                },
            );
            if let Some(e) = fault.into_inner().unwrap_or_else(|p| p.into_inner()) {
                return Err(e);
            }
            if answered {
                return Ok(Account {
                    balance: got[0].balance,
                    nonce: got[0].nonce,
                });
            }
        }
        Ok(self.account_record(a)?.0)
    }

    /// Tells `storage.account_read` (if set up) that these accounts now hold these values in the
    /// store.
    fn announce(&self, writes: &[AccountEntry]) {
        if let Some(slot) = self.reads.get() {
            if !writes.is_empty() {
                slot.written(self.id(), writes);
            }
        }
    }

    /// The account and its stored bytes (empty when it does not exist), which is what an
    /// undo entry records.
    pub fn account_record(&self, a: &Bytes32) -> Result<(Account, Vec<u8>), StateError> {
        match self.db.get(account_key(a)).map_err(|e| self.db_err(e))? {
            None => Ok((Account::default(), Vec::new())),
            Some(v) => serde_json::from_slice(&v)
                .map(|acc| (acc, v))
                .map_err(|e| self.corrupt(format!("account {a:?}"), e)),
        }
    }

    /// A contract's code, or `None` if nothing is deployed at `contract`.
    pub fn code(&self, contract: &Bytes32) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get(code_key(contract)).map_err(|e| self.db_err(e))
    }

    /// SHA-256 of the code deployed at `contract`.
    pub fn code_hash(&self, contract: &Bytes32) -> Result<Option<Bytes32>, StateError> {
        match self
            .db
            .get(code_hash_key(contract))
            .map_err(|e| self.db_err(e))?
        {
            None => Ok(None),
            Some(v) => v
                .as_slice()
                .try_into()
                .map(|h| Some(Bytes32(h)))
                .map_err(|_| self.corrupt(format!("code hash of {contract:?}"), "not 32 bytes")),
        }
    }

    /// The value under `key` in `contract`'s storage (0 when absent).
    pub fn storage(&self, contract: &Bytes32, key: i64) -> Result<i64, StateError> {
        match self
            .db
            .get(storage_key(contract, key))
            .map_err(|e| self.db_err(e))?
        {
            None => Ok(0),
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| self.corrupt(format!("storage of {contract:?}"), e)),
        }
    }

    /// The store's identity for `vm.contract_state` providers (see the field).
    pub fn id(&self) -> u64 {
        self.id.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The stored bytes of block `height`.
    pub fn block_bytes(&self, height: u64) -> Result<Option<Vec<u8>>, StateError> {
        self.db.get(block_key(height)).map_err(|e| self.db_err(e))
    }

    /// Every `(key, value)` whose key starts with `prefix`, in key order, as the store holds
    /// them with `held` laid over: a block's pending writes under `prefix`, in key order
    /// (a `None` value deletes its key).
    fn scan_over(&self, prefix: &[u8], held: Vec<KvWrite>) -> Result<Vec<Entry>, StateError> {
        let stored = self.scan(prefix)?;
        if held.is_empty() {
            return Ok(stored);
        }
        let mut out = Vec::with_capacity(stored.len() + held.len());
        let mut stored = stored.into_iter().peekable();
        for w in held {
            while let Some((k, _)) = stored.peek() {
                if **k >= *w.key {
                    break;
                }
                out.extend(stored.next());
            }
            if stored.peek().is_some_and(|(k, _)| **k == *w.key) {
                stored.next();
            }
            if let ROption::RSome(v) = w.value {
                out.push((w.key.into_vec().into(), v.into_vec().into()));
            }
        }
        out.extend(stored);
        Ok(out)
    }

    /// Every `(key, value)` whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<Entry>, StateError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.db_err(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            out.push((k, v));
        }
        Ok(out)
    }

    /// Every account, in key order.
    pub fn accounts(&self) -> Result<Vec<(Bytes32, Account)>, StateError> {
        self.accounts_over(Vec::new())
    }

    fn accounts_over(&self, held: Vec<KvWrite>) -> Result<Vec<(Bytes32, Account)>, StateError> {
        let mut out = Vec::new();
        for (k, v) in self.scan_over(ACCOUNT, held)? {
            out.push(self.stored_account(&k[ACCOUNT.len()..], &v)?);
        }
        Ok(out)
    }

    /// The account stored under `a/` + `rest` as `bytes`.
    fn stored_account(&self, rest: &[u8], bytes: &[u8]) -> Result<(Bytes32, Account), StateError> {
        let key = Bytes32(
            rest.try_into()
                .map_err(|_| self.corrupt("account key", "not 32 bytes"))?,
        );
        let acc: Account = serde_json::from_slice(bytes)
            .map_err(|e| self.corrupt(format!("account {key:?}"), e))?;
        Ok((key, acc))
    }

    /// The storage entry `(contract, key, value)` stored under `s/` + `rest` as `bytes`.
    fn stored_entry(&self, rest: &[u8], bytes: &[u8]) -> Result<(Bytes32, i64, i64), StateError> {
        if rest.len() != 40 {
            return Err(self.corrupt("storage key", "not 40 bytes"));
        }
        let contract = Bytes32(rest[..32].try_into().expect("32 bytes"));
        let ordered = u64::from_be_bytes(rest[32..].try_into().expect("8 bytes"));
        let value: i64 = serde_json::from_slice(bytes)
            .map_err(|e| self.corrupt(format!("storage of {contract:?}"), e))?;
        Ok((contract, (ordered ^ (1 << 63)) as i64, value))
    }

    /// Every contract's code, in address order.
    pub fn contracts(&self) -> Result<Vec<(Bytes32, Vec<u8>)>, StateError> {
        self.contracts_over(Vec::new())
    }

    fn contracts_over(&self, held: Vec<KvWrite>) -> Result<Vec<(Bytes32, Vec<u8>)>, StateError> {
        self.scan_over(CODE, held)?
            .into_iter()
            .map(|(k, v)| {
                let key = Bytes32(
                    k[CODE.len()..]
                        .try_into()
                        .map_err(|_| self.corrupt("code key", "not 32 bytes"))?,
                );
                Ok((key, v.into_vec()))
            })
            .collect()
    }

    /// Every contract storage entry as `(contract, key, value)`, in key order.
    pub fn storage_entries(&self) -> Result<Vec<(Bytes32, i64, i64)>, StateError> {
        self.storage_entries_over(Vec::new())
    }

    fn storage_entries_over(
        &self, held: Vec<KvWrite>,
    ) -> Result<Vec<(Bytes32, i64, i64)>, StateError> {
        self.scan_over(STORAGE, held)?
            .into_iter()
            .map(|(k, v)| self.stored_entry(&k[STORAGE.len()..], &v))
            .collect()
    }

    /// The state root, from scratch: the sparse Merkle root
    /// ([`dubchain_plugin_api::state_tree`]) of every leaf of the state ([`StateStore::leaf`]).
    pub fn state_root(&self) -> Result<Bytes32, StateError> {
        self.root_of(self.leaves_over(|_| Ok(Vec::new()))?)
    }

    /// The root of `leaves`, from scratch (the baseline of `storage.state_root`).
    fn root_of(&self, mut leaves: Vec<StateLeaf>) -> Result<Bytes32, StateError> {
        state_tree::root(&mut leaves).map_err(|e| self.corrupt("state", e))
    }

    /// Every leaf of the state, with a block's pending writes under each prefix
    /// (`held(prefix)`) laid over the store.
    fn leaves_over(
        &self, held: impl Fn(&[u8]) -> Result<Vec<KvWrite>, StateError>,
    ) -> Result<Vec<StateLeaf>, StateError> {
        let mut leaves = Vec::new();
        for prefix in STATE_PREFIXES {
            for (k, v) in self.scan_over(prefix, held(prefix)?)? {
                leaves.extend(self.leaf(&k, &v)?);
            }
        }
        Ok(leaves)
    }

    /// The state tree's leaf for store key `key` (an `a/`, `c/` or `s/` key) holding `bytes`,
    /// or `None` if it holds none (a deleted key, or an account with the default value). The
    /// leaf's key is `sha256(key)`; its value `sha256(account || balance || nonce)` for an
    /// account, `sha256("code" || contract || sha256(code))` for a contract's code, and
    /// `sha256("slot" || contract || key || value)` for a storage entry (integers
    /// little-endian).
    fn leaf(&self, key: &[u8], bytes: &[u8]) -> Result<Option<StateLeaf>, StateError> {
        let mut h = Sha256::new();
        if let Some(rest) = key.strip_prefix(ACCOUNT) {
            let (account, acc) = self.stored_account(rest, bytes)?;
            if acc == Account::default() {
                return Ok(None);
            }
            h.update(account.0);
            h.update(acc.balance.to_le_bytes());
            h.update(acc.nonce.to_le_bytes());
        } else if let Some(rest) = key.strip_prefix(CODE) {
            let contract: [u8; 32] = rest
                .try_into()
                .map_err(|_| self.corrupt("code key", "not 32 bytes"))?;
            h.update(b"code");
            h.update(contract);
            h.update(Sha256::digest(bytes));
        } else if let Some(rest) = key.strip_prefix(STORAGE) {
            let (contract, slot, value) = self.stored_entry(rest, bytes)?;
            h.update(b"slot");
            h.update(contract.0);
            h.update(slot.to_le_bytes());
            h.update(value.to_le_bytes());
        } else {
            return Ok(None);
        }
        Ok(Some(StateLeaf {
            key: Bytes32(Sha256::digest(key).into()),
            value: Bytes32(h.finalize().into()),
        }))
    }

    /// Starts writing block `height` (the head's height + 1): into a `storage.block_commit`
    /// provider's write set if the node set one up and it gives one, else through to the
    /// store (the baseline).
    pub fn begin_block(&self, height: u64) -> BlockWriter<'_> {
        let set = self.commits.get().and_then(|slot| slot.begin(height));
        self.writer(height, set)
    }

    /// Starts writing block `height` on the baseline write path, whatever the slots say
    /// (the second run of a block whose write set failed).
    pub fn begin_block_on_baseline(&self, height: u64) -> BlockWriter<'_> {
        self.writer(height, None)
    }

    fn writer(&self, height: u64, set: Option<BlockWritesBox>) -> BlockWriter<'_> {
        BlockWriter {
            store: self,
            height,
            writes: Writes {
                touched: HashSet::new(),
                written: BTreeSet::new(),
                set,
                accounts: Vec::new(),
            },
            failure: std::sync::OnceLock::new(),
        }
    }

    /// The host's write-through primitive (the baseline's write of one key): the key's old
    /// value (`old` if the caller read it, else read here) saved in an undo entry of block
    /// `height` the first time the block touches it, then one put or delete. `storage.account_read`
    /// is told of an account write as it reaches the store (`announce`).
    fn write_through(
        &self, height: u64, touched: &mut HashSet<Vec<u8>>, key: &[u8], value: Option<&[u8]>,
        old: Option<&[u8]>, announce: Option<AccountEntry>,
    ) -> Result<(), StateError> {
        let db = &self.db;
        if !touched.contains(key) {
            let old = match old {
                Some(old) => old.to_vec(),
                None => db.get(key).map_err(|e| self.db_err(e))?.unwrap_or_default(),
            };
            db.put([undo_prefix(height), key.to_vec()].concat(), old)
                .map_err(|e| self.db_err(e))?;
            touched.insert(key.to_vec());
        }
        match value {
            Some(v) => db.put(key, v),
            None => db.delete(key),
        }
        .map_err(|e| self.db_err(e))?;
        if let Some(entry) = announce {
            self.announce(&[entry]);
        }
        Ok(())
    }

    /// What `storage.account_read` must be told of a write a plugin passed through, if anything:
    /// the account behind an account key (decoded only when a provider listens).
    fn account_entry(&self, key: &[u8], value: Option<&[u8]>) -> Option<AccountEntry> {
        let listens = self.reads.get().is_some_and(|s| s.has_provider());
        let account: [u8; 32] = key.strip_prefix(ACCOUNT)?.try_into().ok()?;
        if !listens {
            return None;
        }
        let acc: Account = match value {
            None => Account::default(),
            Some(v) => serde_json::from_slice(v).ok()?,
        };
        Some(AccountEntry {
            account: Bytes32(account),
            state: AccountState {
                balance: acc.balance,
                nonce: acc.nonce,
            },
        })
    }

    fn recover(&self) -> Result<(), StateError> {
        let head = self.head()?.map_or(0, |h| h.height);
        // Undo entries of blocks above the head belong to a block that never committed.
        let mut stale = Vec::new();
        for (k, v) in self.scan(UNDO)? {
            // A damaged store may hold a key too short for its height: an error naming it,
            // not a panic.
            let Some(height) = k
                .get(UNDO.len()..UNDO.len() + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
            else {
                return Err(self.corrupt("undo key", "shorter than its prefix and height"));
            };
            stale.push((k.to_vec(), v.to_vec(), height > head));
        }
        for (k, v, uncommitted) in &stale {
            if *uncommitted {
                let key = undone_key(&k[UNDO.len() + 8..]);
                if v.is_empty() {
                    self.db.delete(&key).map_err(|e| self.db_err(e))?;
                } else {
                    self.db.put(&key, v).map_err(|e| self.db_err(e))?;
                }
            }
            self.db.delete(k).map_err(|e| self.db_err(e))?;
        }
        if stale.iter().any(|s| s.2) {
            tracing::warn!(path = %self.path.display(), head, "rolled back a block interrupted before its commit");
        }
        self.db.flush_wal(true).map_err(|e| self.db_err(e))?;
        Ok(())
    }
}

/// The key an undo entry restores: the entry's key after `u/` + height. (Undo entries
/// written before contracts existed name a bare 32-byte account.)
fn undone_key(rest: &[u8]) -> Vec<u8> {
    if rest.len() == 32 {
        [ACCOUNT, rest].concat()
    } else {
        rest.to_vec()
    }
}

/// Where a block's writes go: through to the store at once (the baseline, and the
/// primitive a write set is handed), or into a `storage.block_commit` provider's write set, which
/// holds what it chooses until the commit.
struct Writes {
    /// The keys (`a/`, `c/`, `k/`, `s/`) written through so far, each with an undo entry.
    touched: HashSet<Vec<u8>>,
    /// Every key the block wrote, held or passed through: what its state-root changes are
    /// made from.
    written: BTreeSet<Vec<u8>>,
    /// The provider's write set for this block, if it gave one.
    set: Option<BlockWritesBox>,
    /// With a set: every account write in order, to tell `storage.account_read` at the commit of
    /// what the set held (what it passed through was told at once).
    accounts: Vec<AccountEntry>,
}

/// The writes of one block in progress; commit or abort it.
pub struct BlockWriter<'a> {
    store: &'a StateStore,
    height: u64,
    writes: Writes,
    /// Set when the write set failed: every call from then on answers
    /// [`StateError::WriteSet`], and the block must be aborted and run again.
    failure: std::sync::OnceLock<String>,
}

impl BlockWriter<'_> {
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Whether this block's writes go to a `storage.block_commit` provider's write set.
    pub fn is_held(&self) -> bool {
        self.writes.set.is_some()
    }

    fn write_set_failed(&self) -> StateError {
        StateError::WriteSet {
            path: self.store.path.clone(),
            height: self.height,
            detail: self.failure.get().cloned().unwrap_or_default(),
        }
    }

    /// Records the write set's failure (once, counted on the slot) and answers the error.
    fn fail(&self, call: &str, e: PluginError) -> StateError {
        if self.failure.set(format!("{call}: {e}")).is_ok() {
            if let Some(slot) = self.store.commits.get() {
                slot.object_failed(call, &e);
            }
        }
        self.write_set_failed()
    }

    fn check(&self) -> Result<(), StateError> {
        match self.failure.get() {
            Some(_) => Err(self.write_set_failed()),
            None => Ok(()),
        }
    }

    /// What this block wrote to `key` and still holds: `None` if the store's value stands
    /// (always, on the baseline path), `Some(None)` if the block deleted it.
    fn pending(&self, key: &[u8]) -> Result<Option<Option<Vec<u8>>>, StateError> {
        self.check()?;
        let Some(set) = &self.writes.set else {
            return Ok(None);
        };
        match set.read(RSlice::from_slice(key)).into_result() {
            Ok(Held::NotHeld) => Ok(None),
            Ok(Held::Deleted) => Ok(Some(None)),
            Ok(Held::Value(v)) => Ok(Some(Some(v.into_vec()))),
            Err(e) => Err(self.fail("read", e)),
        }
    }

    pub fn account(&self, a: &Bytes32) -> Result<Account, StateError> {
        match self.pending(&account_key(a))? {
            None => self.store.account(a),
            Some(bytes) => Ok(self.decode_account(a, bytes)?.0),
        }
    }

    /// The account and its stored bytes (see [`StateStore::account_record`]), as this block
    /// sees it.
    pub fn account_record(&self, a: &Bytes32) -> Result<(Account, Vec<u8>), StateError> {
        match self.pending(&account_key(a))? {
            None => self.store.account_record(a),
            Some(bytes) => self.decode_account(a, bytes),
        }
    }

    fn decode_account(
        &self, a: &Bytes32, bytes: Option<Vec<u8>>,
    ) -> Result<(Account, Vec<u8>), StateError> {
        match bytes {
            None => Ok((Account::default(), Vec::new())),
            Some(v) => serde_json::from_slice(&v)
                .map(|acc| (acc, v))
                .map_err(|e| self.store.corrupt(format!("held account {a:?}"), e)),
        }
    }

    /// Writes `account`, when the caller already read its stored bytes `old` in this block
    /// (before any write to it): the undo entry, if the write goes through, is made from
    /// them instead of reading the store again.
    pub fn put_with_old(
        &mut self, a: &Bytes32, old: &[u8], account: Account,
    ) -> Result<(), StateError> {
        let value = serde_json::to_vec(&account).expect("accounts serialise");
        self.put_raw(
            account_key(a),
            Some(value),
            Some(old),
            Some(entry(a, account)),
        )
    }

    /// Puts an account's stored bytes back as they were (`old` empty: it did not exist):
    /// undoes what a failed `exec.block_execution` provider wrote.
    pub fn restore_account(&mut self, a: &Bytes32, old: &[u8]) -> Result<(), StateError> {
        let (account, value) = if old.is_empty() {
            (Account::default(), None)
        } else {
            let acc = serde_json::from_slice(old)
                .map_err(|e| self.store.corrupt(format!("saved account {a:?}"), e))?;
            (acc, Some(old.to_vec()))
        };
        self.put_raw(account_key(a), value, None, Some(entry(a, account)))
    }

    /// Writes `account` (see [`BlockWriter::put_raw`]).
    pub fn put(&mut self, a: &Bytes32, account: Account) -> Result<(), StateError> {
        let value = serde_json::to_vec(&account).expect("accounts serialise");
        self.put_raw(account_key(a), Some(value), None, Some(entry(a, account)))
    }

    /// Deploys `code` at `contract` (and its hash).
    pub fn put_code(&mut self, contract: &Bytes32, code: &[u8]) -> Result<(), StateError> {
        self.put_raw(code_key(contract), Some(code.to_vec()), None, None)?;
        let hash: [u8; 32] = Sha256::digest(code).into();
        self.put_raw(code_hash_key(contract), Some(hash.to_vec()), None, None)
    }

    /// SHA-256 of a contract's code, as this block sees it.
    pub fn code_hash(&self, contract: &Bytes32) -> Result<Option<Bytes32>, StateError> {
        match self.pending(&code_hash_key(contract))? {
            None => self.store.code_hash(contract),
            Some(None) => Ok(None),
            Some(Some(v)) => v
                .as_slice()
                .try_into()
                .map(|h| Some(Bytes32(h)))
                .map_err(|_| {
                    self.store
                        .corrupt(format!("held code hash of {contract:?}"), "not 32 bytes")
                }),
        }
    }

    /// The store's identity (see [`StateStore::id`]).
    pub fn store_id(&self) -> u64 {
        self.store.id()
    }

    /// Sets `key` of `contract`'s storage to `value` (0 deletes it).
    pub fn put_storage(
        &mut self, contract: &Bytes32, key: i64, value: i64,
    ) -> Result<(), StateError> {
        let bytes = (value != 0).then(|| serde_json::to_vec(&value).expect("integers serialise"));
        self.put_raw(storage_key(contract, key), bytes, None, None)
    }

    /// A contract's code, as this block sees it.
    pub fn code(&self, contract: &Bytes32) -> Result<Option<Vec<u8>>, StateError> {
        match self.pending(&code_key(contract))? {
            None => self.store.code(contract),
            Some(code) => Ok(code),
        }
    }

    /// The value under `key` in `contract`'s storage (0 when absent), as this block sees it.
    pub fn storage(&self, contract: &Bytes32, key: i64) -> Result<i64, StateError> {
        match self.pending(&storage_key(contract, key))? {
            None => self.store.storage(contract, key),
            Some(None) => Ok(0),
            Some(Some(v)) => serde_json::from_slice(&v).map_err(|e| {
                self.store
                    .corrupt(format!("held storage of {contract:?}"), e)
            }),
        }
    }

    /// Writes (or with `None` deletes) `key`: to the provider's write set if the block has
    /// one (which holds it, or passes it through with the host's primitive), else through
    /// to the store now (the baseline). `account` is the account behind an account key, for
    /// `storage.account_read`.
    fn put_raw(
        &mut self, key: Vec<u8>, value: Option<Vec<u8>>, old: Option<&[u8]>,
        account: Option<AccountEntry>,
    ) -> Result<(), StateError> {
        self.check()?;
        let (store, height) = (self.store, self.height);
        let Writes {
            touched,
            written,
            set,
            accounts,
        } = &mut self.writes;
        written.insert(key.clone());
        let Some(set) = set else {
            return store.write_through(height, touched, &key, value.as_deref(), old, account);
        };
        if let Some(entry) = account {
            accounts.push(entry);
        }
        // The write-through primitive the set may use, with the store's error kept whole.
        let touched = std::sync::Mutex::new(touched);
        let fault: std::sync::Mutex<Option<StateError>> = std::sync::Mutex::new(None);
        let through = HostWriteThrough(|k: &[u8], v: Option<&[u8]>| {
            let mut touched = touched.lock().unwrap_or_else(|p| p.into_inner());
            store
                .write_through(height, &mut touched, k, v, None, store.account_entry(k, v))
                .map_err(|e| {
                    let msg = e.to_string();
                    *fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    PluginError::failed(msg)
                })
        });
        let value = value.as_deref().map(RSlice::from_slice);
        let answer = set
            .write(RSlice::from_slice(&key), value.into(), through.as_through())
            .into_result();
        // A store error under the set is the store's, not the set's.
        if let Some(e) = fault.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        answer.map_err(|e| self.fail("write", e))
    }

    /// The state root of the store with this block's writes: by `storage.state_root` from
    /// the head's root and the block's changes if the node set it up and it answers, else
    /// from scratch over every leaf (the baseline).
    pub fn state_root(&self) -> Result<Bytes32, StateError> {
        self.check()?;
        let store = self.store;
        let Some(slot) = store.roots.get().filter(|s| s.has_provider()) else {
            return store.root_of(self.leaves()?);
        };
        let parent = store.head()?.map_or(state_tree::EMPTY, |h| h.state_root);
        let changes = self.changes()?;
        // Every leaf, for a provider that asks, with the store's error kept whole.
        let fault: std::sync::Mutex<Option<StateError>> = std::sync::Mutex::new(None);
        let all = || {
            self.leaves().map_err(|e| {
                let msg = e.to_string();
                *fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                PluginError::failed(msg)
            })
        };
        let answer = slot.root(&parent, &changes, &all);
        if let Some(e) = fault.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        match answer {
            Some(root) => Ok(root),
            None => store.root_of(self.leaves()?),
        }
    }

    /// Every leaf of the state as this block leaves it.
    fn leaves(&self) -> Result<Vec<StateLeaf>, StateError> {
        match &self.writes.set {
            None => self.store.leaves_over(|_| Ok(Vec::new())),
            Some(set) => self.store.leaves_over(|prefix| {
                set.held(RSlice::from_slice(prefix))
                    .into_result()
                    .map(|v| v.into_vec())
                    .and_then(|v| check_writes(v, Some(prefix)))
                    .map_err(|e| self.fail("held", e))
            }),
        }
    }

    /// What this block did to the state tree: the leaf of every state key it wrote, as it
    /// stands now (`RNone`: removed), sorted by leaf key.
    fn changes(&self) -> Result<Vec<LeafChange>, StateError> {
        let mut changes = Vec::new();
        for key in &self.writes.written {
            if !STATE_PREFIXES.iter().any(|p| key.starts_with(p)) {
                continue;
            }
            let bytes = match self.pending(key)? {
                Some(held) => held,
                None => self.store.db.get(key).map_err(|e| self.store.db_err(e))?,
            };
            let leaf = match bytes {
                Some(bytes) => self.store.leaf(key, &bytes)?,
                None => None,
            };
            changes.push(match leaf {
                Some(leaf) => LeafChange {
                    key: leaf.key,
                    value: ROption::RSome(leaf.value),
                },
                None => LeafChange {
                    key: Bytes32(Sha256::digest(key).into()),
                    value: ROption::RNone,
                },
            });
        }
        changes.sort_unstable_by_key(|c| c.key);
        Ok(changes)
    }

    /// Makes the block durable: its writes (if held), its record (written by `codec`, which
    /// joins the store's codec list first if it is new there) and the head, then the log
    /// synced (by `storage.durability` if the node set it up).
    pub fn commit(mut self, block: &[u8], codec: &str, head: Head) -> Result<(), StateError> {
        if let Err(e) = self.check() {
            self.abort()?;
            return Err(e);
        }
        let store = self.store;
        let db = &store.db;
        let err = |e| store.db_err(e);
        let head_bytes = serde_json::to_vec(&head).expect("serialisable");
        // Account writes still to tell `storage.account_read` of (what went through was told as it
        // was written).
        let grown = store.codecs_with(codec);
        let held_accounts = match &mut self.writes.set {
            None => {
                if let Some(grown) = &grown {
                    db.put(CODECS, codec_list(grown)).map_err(err)?;
                }
                db.put(block_key(self.height), block).map_err(err)?;
                db.put(HEAD, head_bytes).map_err(err)?;
                Vec::new()
            }
            Some(set) => {
                let writes = match set
                    .drain()
                    .into_result()
                    .and_then(|w| check_writes(w.into_vec(), None))
                {
                    Ok(w) => w,
                    Err(e) => {
                        let e = self.fail("drain", e);
                        self.abort()?;
                        return Err(e);
                    }
                };
                // What the set held, the record and the head: one atomic batch.
                let mut batch = WriteBatch::default();
                for w in &writes {
                    match &w.value {
                        ROption::RSome(v) => batch.put(w.key.as_slice(), v.as_slice()),
                        ROption::RNone => batch.delete(w.key.as_slice()),
                    }
                }
                if let Some(grown) = &grown {
                    batch.put(CODECS, codec_list(grown));
                }
                batch.put(block_key(self.height), block);
                batch.put(HEAD, head_bytes);
                db.write(batch).map_err(err)?;
                if let Some(slot) = store.commits.get() {
                    slot.object_done();
                }
                std::mem::take(&mut self.writes.accounts)
            }
        };
        if let Some(grown) = grown {
            store.remember_codecs(grown);
        }
        // The commit is acknowledged only once the head is on disk: the log synced here
        // (the baseline, an fsync per commit) or by `storage.durability`.
        let sync = || db.flush_wal(true).map_err(err);
        match store.durability.get() {
            Some(slot) => slot.make_durable(store.id(), sync)?,
            None => sync()?,
        }
        // The undo entries of what went through are done with once the head is durable.
        for key in &self.writes.touched {
            db.delete([undo_prefix(self.height), key.clone()].concat())
                .map_err(err)?;
        }
        store.announce(&held_accounts);
        Ok(())
    }

    /// Undoes every write of this block: what went through is restored from its undo
    /// entries, and a write set is dropped (nothing it held reached the store). The store
    /// takes a new identity: whatever was cached of it (`storage.account_read`, `vm.contract_state`) no
    /// longer applies.
    pub fn abort(self) -> Result<(), StateError> {
        let old = self
            .store
            .id
            .swap(next_store_id(), std::sync::atomic::Ordering::Relaxed);
        if let Some(slot) = self.store.reads.get() {
            slot.reset(old);
        }
        let touched = &self.writes.touched;
        let db = &self.store.db;
        let err = |e| self.store.db_err(e);
        for key in touched {
            let undo = [undo_prefix(self.height), key.clone()].concat();
            let old = db.get(&undo).map_err(err)?.unwrap_or_default();
            if old.is_empty() {
                db.delete(key).map_err(err)?;
            } else {
                db.put(key, old).map_err(err)?;
            }
            db.delete(undo).map_err(err)?;
        }
        Ok(())
    }
}
/// An account write as `storage.account_read` is told of it.
fn entry(a: &Bytes32, account: Account) -> AccountEntry {
    AccountEntry {
        account: *a,
        state: AccountState {
            balance: account.balance,
            nonce: account.nonce,
        },
    }
}

/// The host's check of a write set's answer: strictly increasing keys (so each key once, in
/// key order) and, for `held(prefix)`, every key under the prefix. Checked here as well as in
/// the plugin's `Guarded` adaptor: a root module need not be built with `export_plugin!`.
fn check_writes(writes: Vec<KvWrite>, prefix: Option<&[u8]>) -> Result<Vec<KvWrite>, PluginError> {
    for pair in writes.windows(2) {
        if pair[0].key.as_slice() >= pair[1].key.as_slice() {
            return Err(PluginError::failed(
                "write set answered keys out of order or twice",
            ));
        }
    }
    if let Some(prefix) = prefix {
        if let Some(w) = writes.iter().find(|w| !w.key.starts_with(prefix)) {
            return Err(PluginError::failed(format!(
                "write set answered key {:02x?} outside the prefix {prefix:02x?}",
                w.key.as_slice()
            )));
        }
    }
    Ok(writes)
}

#[cfg(test)]
mod damaged_store {
    use super::*;

    /// An undo key too short to hold its height (a damaged store) is an error naming the
    /// store when it is opened, not a panic.
    #[test]
    fn a_truncated_undo_key_is_an_error() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        {
            let store = StateStore::open(dir.path()).expect("a new store");
            store
                .db
                .put([UNDO, &[1, 2, 3][..]].concat(), b"x")
                .expect("a raw write");
        }
        let err = StateStore::open(dir.path())
            .err()
            .expect("the damaged store is refused");
        let text = err.to_string();
        assert!(text.contains("corrupt undo key"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
    }

    /// A read-only open of a directory without a store creates nothing.
    #[test]
    fn opening_an_existing_store_creates_nothing() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let typo = dir.path().join("no-such-store");
        let err = StateStore::open_existing(&typo).err().expect("refused");
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(!typo.exists(), "nothing was created");
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).expect("a directory");
        let err = StateStore::open_existing(&empty).err().expect("refused");
        assert!(err.to_string().contains("holds no RocksDB store"), "{err}");
        assert_eq!(std::fs::read_dir(&empty).expect("readable").count(), 0);
    }

    /// A data directory with files of its own but no store is refused, and left as it was;
    /// an empty one, or one holding only what a node keeps there, is taken.
    #[test]
    fn a_data_dir_holding_other_files_gets_no_store() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("notes.txt"), "mine").expect("a file");
        let err = StateStore::open_data_dir(dir.path())
            .err()
            .expect("refused");
        assert!(err.to_string().contains("(notes.txt)"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("readable").count(), 1);

        let node = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(node.path().join(MONITOR_TOKEN), "t").expect("a token");
        drop(StateStore::open_data_dir(node.path()).expect("a node's own files are fine"));
        let held = lock_data_dir(node.path()).expect("the first node takes the directory");
        let err = lock_data_dir(node.path())
            .err()
            .expect("a second is refused");
        assert!(
            err.contains("another node or benchmark is running on it"),
            "{err}"
        );
        drop(held);
        drop(lock_data_dir(node.path()).expect("free again once the first is gone"));
        drop(StateStore::open_data_dir(node.path()).expect("and so is its store, reopened"));
    }

    /// Another kind of store (keys no chain writes, no head) is refused by the openers of a
    /// chain, and nothing is written into it.
    #[test]
    fn another_kind_of_store_is_not_taken_for_a_chain() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        {
            let db = DB::open_default(dir.path()).expect("a bare RocksDB store");
            db.put([0u8; 12], 7u64.to_be_bytes())
                .expect("a commit-race record");
        }
        for err in [
            StateStore::open_data_dir(dir.path())
                .err()
                .expect("refused"),
            StateStore::open_existing(dir.path())
                .err()
                .expect("refused"),
        ] {
            assert!(err.to_string().contains("another kind of store"), "{err}");
        }
        let db = DB::open_default(dir.path()).expect("reopened");
        assert_eq!(
            db.iterator(IteratorMode::Start).count(),
            1,
            "nothing written"
        );
    }

    /// A store that lost its `CURRENT` file is refused by every opener, and left as it was:
    /// RocksDB would otherwise start an empty store over its files.
    #[test]
    fn a_store_without_current_is_refused_and_left_as_it_was() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        {
            let store = StateStore::open(dir.path()).expect("a new store");
            store.db.put(b"a/kept", b"1").expect("a raw write");
            store.db.flush().expect("flushed to a table file");
        }
        let current = dir.path().join("CURRENT");
        let named = std::fs::read_to_string(&current).expect("CURRENT");
        std::fs::remove_file(&current).expect("CURRENT removed");
        let listing = || {
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .expect("readable")
                .map(|e| e.expect("an entry").file_name())
                .collect();
            names.sort();
            names
        };
        let before = listing();
        for err in [
            StateStore::open(dir.path()).err().expect("refused"),
            StateStore::open_existing(dir.path())
                .err()
                .expect("refused"),
        ] {
            let text = err.to_string();
            assert!(
                text.contains("no CURRENT file") && text.contains(named.trim()),
                "{text}"
            );
        }
        assert_eq!(listing(), before, "nothing was written");
        std::fs::write(&current, &named).expect("CURRENT given back");
        let store = StateStore::open_existing(dir.path()).expect("the store opens again");
        assert_eq!(
            store.db.get(b"a/kept").expect("a read"),
            Some(b"1".to_vec())
        );
    }
}
