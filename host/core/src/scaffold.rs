//! `dubchain-perf plugin new`: a standalone plugin crate for one slot, with a manifest, a
//! working implementation equal to the baseline, a differential test and a benchmark.

use std::path::{Path, PathBuf};

use dubchain_plugin_api::slots::{
    self, SlotInfo, ACCOUNT_READ, BLOCK_COMMIT, BLOCK_EXECUTION, BLOCK_RECLAIM, BLOCK_VALIDATION,
    BROADCAST, BUFFER_POOL, CODE_LOADER, CONTRACT_STATE, DURABILITY, FRAME_SEND, MERKLE, METERING,
    MODULE_CACHE, RECORD_CODEC, SEND_QUEUE, SIG_VERIFY, STATE_ROOT, TRANSPORT, TX_DECODE, TX_POOL,
    TX_VALIDATION, VOTE_TALLY, VOTE_VERIFY,
};

/// A slot's template: extra dependencies, `src/lib.rs` (an implementation equal to the
/// baseline: it forwards to the baseline through the slot's primitives, so it measures
/// about 1x), `tests/differential.rs` and `benches/ratio.rs`. The slots without a test and
/// bench of their own use [`CHECKED_TEST`] (the host's check of the slot against the
/// baseline, the one it runs at load) and [`SLOT_BENCH`] (`plugin verify`'s quick ratio),
/// filled with the slot's FFI object (`{ffi}`), its field (`{field}`) and its check.
struct Template {
    slot: SlotInfo,
    deps: &'static str,
    lib: &'static str,
    test: &'static str,
    bench: &'static str,
    /// For [`CHECKED_TEST`] and [`SLOT_BENCH`]: the FFI object and the slot's field.
    ffi: &'static str,
    field: &'static str,
    /// A `vm.*` slot: the crate builds the plugin API's contract rules (feature `vm`), and
    /// tests against a host with the contract VM.
    vm: bool,
}

/// A template whose test is the host's check of the slot and whose bench is the quick
/// ratio: `ffi` the slot's FFI trait object (`..._TO`), `field` its name in `Slots` (and of
/// its check in `dubchain_host::selftest`).
const fn checked(
    slot: SlotInfo,
    deps: &'static str,
    lib: &'static str,
    ffi: &'static str,
    field: &'static str,
) -> Template {
    Template {
        slot,
        deps,
        lib,
        test: CHECKED_TEST,
        bench: SLOT_BENCH,
        ffi,
        field,
        vm: false,
    }
}

/// [`checked`], for a `vm.*` slot.
const fn checked_vm(
    slot: SlotInfo,
    deps: &'static str,
    lib: &'static str,
    ffi: &'static str,
    field: &'static str,
) -> Template {
    Template {
        vm: true,
        ..checked(slot, deps, lib, ffi, field)
    }
}

/// The slots `plugin new` can scaffold, looked up by slot.
const TEMPLATES: &[Template] = &[
    Template {
        slot: SIG_VERIFY,
        deps: "",
        lib: SIG_LIB,
        test: SIG_TEST,
        bench: SLOT_BENCH,
        ffi: "SigVerifyFfi_TO",
        field: "sig_verify",
        vm: false,
    },
    Template {
        slot: RECORD_CODEC,
        deps: "serde_json = \"1\"\n",
        lib: CODEC_LIB,
        test: CODEC_TEST,
        bench: SLOT_BENCH,
        ffi: "RecordCodecFfi_TO",
        field: "record_codec",
        vm: false,
    },
    Template {
        slot: MERKLE,
        deps: "",
        lib: MERKLE_LIB,
        test: MERKLE_TEST,
        bench: SLOT_BENCH,
        ffi: "MerkleFfi_TO",
        field: "merkle",
        vm: false,
    },
    Template {
        slot: TX_VALIDATION,
        deps: "",
        lib: TXV_LIB,
        test: TXV_TEST,
        bench: SLOT_BENCH,
        ffi: "TxValidationFfi_TO",
        field: "tx_validation",
        vm: false,
    },
    Template {
        slot: BLOCK_EXECUTION,
        deps: "",
        lib: EXEC_LIB,
        test: EXEC_TEST,
        bench: EXEC_BENCH,
        ffi: "",
        field: "",
        vm: false,
    },
    Template {
        slot: BLOCK_COMMIT,
        deps: "",
        lib: COMMIT_LIB,
        test: COMMIT_TEST,
        bench: COMMIT_BENCH,
        ffi: "",
        field: "",
        vm: false,
    },
    checked(
        VOTE_VERIFY,
        "blst = \"0.3\"\n",
        VOTES_LIB,
        "VoteVerifyFfi_TO",
        "vote_verify",
    ),
    checked(
        BLOCK_RECLAIM,
        "",
        RECLAIM_LIB,
        "BlockReclaimFfi_TO",
        "block_reclaim",
    ),
    checked(BUFFER_POOL, "", POOL_LIB, "BufferPoolFfi_TO", "buffer_pool"),
    checked(FRAME_SEND, "", SEND_LIB, "FrameSendFfi_TO", "frame_send"),
    checked(
        TX_DECODE,
        "serde_json = \"1\"\n",
        DECODE_LIB,
        "TxDecodeFfi_TO",
        "tx_decode",
    ),
    checked(
        ACCOUNT_READ,
        "",
        READ_LIB,
        "AccountReadFfi_TO",
        "account_read",
    ),
    checked(DURABILITY, "", SYNC_LIB, "DurabilityFfi_TO", "durability"),
    checked(BROADCAST, "", BROADCAST_LIB, "BroadcastFfi_TO", "broadcast"),
    checked(TX_POOL, "", POOL_INDEX_LIB, "TxPoolFfi_TO", "tx_pool"),
    checked(VOTE_TALLY, "", TALLY_LIB, "VoteTalliesFfi_TO", "vote_tally"),
    checked(SEND_QUEUE, "", QUEUE_LIB, "SendQueuesFfi_TO", "send_queue"),
    checked(
        BLOCK_VALIDATION,
        "",
        RUN_LIB,
        "BlockValidationFfi_TO",
        "block_validation",
    ),
    checked(TRANSPORT, "", TRANSPORT_LIB, "TransportFfi_TO", "transport"),
    checked(
        STATE_ROOT,
        "",
        STATE_ROOT_LIB,
        "StateRootFfi_TO",
        "state_root",
    ),
    checked_vm(
        CODE_LOADER,
        "",
        CODE_LOADER_LIB,
        "CodeLoaderFfi_TO",
        "code_loader",
    ),
    checked_vm(METERING, "", METERING_LIB, "MeteringFfi_TO", "metering"),
    checked_vm(
        MODULE_CACHE,
        // The host's VM, which the forwarding implementation runs contracts on.
        "dubchain-host = { path = \"{host}\", default-features = false, features = [\"vm\"] }\n",
        MODULE_CACHE_LIB,
        "ModuleCacheFfi_TO",
        "module_cache",
    ),
    checked_vm(
        CONTRACT_STATE,
        "",
        CONTRACT_STATE_LIB,
        "ContractStateFfi_TO",
        "contract_state",
    ),
];

/// The slots with a template.
pub fn scaffolded_slots() -> Vec<&'static str> {
    TEMPLATES.iter().map(|t| t.slot.id).collect()
}

/// Where this host's sources are, for the new crate's path dependencies: the nearest
/// directory at or above the current one that holds `plugin-api/` and `host/core/`, else the
/// checkout this host was built from. The current directory comes first because the path
/// compiled in can name another checkout: cargo reuses a build across checkouts that share
/// a target directory.
pub fn default_source_root() -> PathBuf {
    let here = std::env::current_dir().ok();
    let found = here
        .as_deref()
        .and_then(|d| d.ancestors().find(|a| holds_sources(a)));
    match found {
        Some(d) => d.to_owned(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .nth(2)
            .expect("host/core/ is two levels below the repository root")
            .to_owned(),
    }
}

/// Whether `root` is a DubChain checkout: it holds the crates `plugin-api/` and `host/core/`.
fn holds_sources(root: &Path) -> bool {
    root.join("plugin-api/Cargo.toml").is_file() && root.join("host/core/Cargo.toml").is_file()
}

/// Writes the crate `dir/name`. `source_root` holds `plugin-api/` and `host/core/`.
pub fn new_plugin(
    dir: &Path,
    name: &str,
    slot: &str,
    source_root: &Path,
) -> Result<PathBuf, String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!(
            "plugin name `{name}` must be lowercase letters, digits and `_`"
        ));
    }
    let Some(info) = slots::find(slot) else {
        let known: Vec<_> = slots::ALL.iter().map(|s| s.id).collect();
        return Err(format!("no slot `{slot}` (slots: {})", known.join(", ")));
    };
    let api = source_root.join("plugin-api");
    let host = source_root.join("host").join("core");
    if !holds_sources(source_root) {
        return Err(format!(
            "{} does not hold plugin-api/ and host/core/; pass --source-root with the DubChain checkout",
            source_root.display()
        ));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    let Some(template) = TEMPLATES.iter().find(|t| t.slot.id == info.id) else {
        return Err(format!(
            "no template for slot `{slot}` yet (templates: {}); see docs/plugin-authoring.md for its contract",
            scaffolded_slots().join(", ")
        ));
    };
    let (deps, lib, test, bench) = (template.deps, template.lib, template.test, template.bench);
    let features = if template.vm {
        ", features = [\"vm\"]"
    } else {
        ""
    };
    let fill = |t: &str| {
        t.replace("{deps}", deps)
            .replace("{features}", features)
            .replace("{name}", name)
            .replace("{slot}", info.id)
            .replace("{api}", &api.display().to_string())
            .replace("{host}", &host.display().to_string())
            .replace("{api_version}", dubchain_plugin_api::API_VERSION)
            .replace("{slot_version}", &info.version.to_string())
            .replace("{ffi}", template.ffi)
            .replace("{field}", template.field)
    };
    let write = |rel: &str, text: String| -> Result<(), String> {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("inside root"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("Cargo.toml", fill(CARGO_TOML))?;
    write(&format!("{name}.toml"), fill(MANIFEST))?;
    write("src/lib.rs", fill(lib))?;
    write("tests/differential.rs", fill(test))?;
    write("benches/ratio.rs", fill(bench))?;
    write("README.md", fill(README))?;
    write(".gitignore", "target/\n".to_owned())?;
    // Same dependency versions as the host was built with.
    let lock = source_root.join("Cargo.lock");
    if lock.is_file() {
        std::fs::copy(&lock, root.join("Cargo.lock"))
            .map_err(|e| format!("copying Cargo.lock: {e}"))?;
    }
    Ok(root)
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
dubchain-plugin-api = { version = "{api_version}"{features} }
# export_plugin! expands to code that names ::abi_stable.
abi_stable = "0.11"
{deps}
[dev-dependencies]
# The baseline, the conformance suite and the measuring harness (without the node, so
# RocksDB is not built).
dubchain-host = { path = "{host}", default-features = false{features} }

[[bench]]
name = "ratio"
harness = false

[profile.dev.package."*"]
opt-level = 2

# Not part of any enclosing workspace.
[workspace]

# The plugin API by version, as from a registry; until `dubchain-plugin-api` is published
# there, it comes from the DubChain checkout. Delete this section to build against the
# published crate.
[patch.crates-io]
dubchain-plugin-api = { path = "{api}" }
"#;

const MANIFEST: &str = r#"name = "{name}"
version = "0.1.0"
description = "TODO: what this optimization does"
subsystem = "TODO"
library = "{name}"
api = "^{api_version}"
risk = "medium"
default_enabled = false

[[provides]]
slot = "{slot}"
version = {slot_version}

[contract]
min_speedup = 1.0
workload = "TODO: the workload the promise is about"
"#;

const README: &str = r#"# {name}

A DubChain optimization plugin for the `{slot}` slot.

```sh
cargo test                                   # differential test against the host's baseline
cargo bench                                  # ratio against the baseline, interleaved
cargo build --release                        # the plugin library
dubchain-perf plugin verify .                # conformance suite, in a child process
cp {name}.toml target/release/lib{name}.so PLUGIN_DIR/   # deploy (hot-reloaded by a watching host)
```

See the host's `docs/plugin-authoring.md`.
"#;

const SIG_LIB: &str = r#"//! `{name}`: an implementation of `{slot}`.
//!
//! It starts equal to the host's baseline (strict ed25519, one signature at a time). Make it
//! faster; keep `cargo test` and `dubchain-perf plugin verify .` passing.

use dubchain_plugin_api::{
    export_plugin,
    sig::verify_item,
    slots::{Next, SigVerify},
    types::SigItem,
    PluginError,
};

/// The implementation. Configuration (the plugin's table in the host configuration) arrives
/// as TOML text in the constructor passed to `export_plugin!`.
#[derive(Debug, Default)]
pub struct Plugin;

impl SigVerify for Plugin {
    fn verify_batch(&self, items: &[SigItem<'_>], _next: &Next<'_>) -> Result<Vec<bool>, PluginError> {
        // The API's one definition of a valid signature, one item at a time.
        Ok(items.iter().map(verify_item).collect())
    }
}

export_plugin! {
    name: "{name}",
    sig_verify: |_config: &str| Ok(Plugin),
}
"#;

const SIG_TEST: &str = r#"//! The slot's conformance suite, in-process: every verdict equals the baseline's on
//! generated and adversarial signatures.

use dubchain_host::{baseline, conformance};
use dubchain_plugin_api::{
    slots::{LowerFn, Next, SigVerify},
    types::SigItem,
};

#[test]
fn same_verdicts_as_the_baseline() {
    let lower = LowerFn(|items: &[SigItem<'_>]| Ok(baseline::sig_verify(items)));
    let next = Next::new(lower.as_ffi());
    let results = conformance::check_sig_verify(|items| {
        {name}::Plugin.verify_batch(items, &next).map_err(|e| e.to_string())
    });
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
"#;

const CODEC_LIB: &str = r#"//! `{name}`: an implementation of `{slot}`.
//!
//! It starts equal to the host's baseline (one JSON document per record). Make it faster or
//! smaller; decoding must keep reading the baseline's JSON. Keep `cargo test` and
//! `dubchain-perf plugin verify .` passing.

use dubchain_plugin_api::{
    abi_stable::std_types::RSlice,
    export_plugin,
    slots::RecordCodec,
    types::Record,
    PluginError,
};

/// The implementation.
#[derive(Debug, Default)]
pub struct Plugin;

impl RecordCodec for Plugin {
    fn encode(&self, records: &[Record]) -> Result<Vec<Vec<u8>>, PluginError> {
        records.iter().map(|r| serde_json::to_vec(r).map_err(|e| PluginError::failed(e.to_string()))).collect()
    }

    fn decode(&self, values: &[RSlice<'_, u8>]) -> Result<Vec<Result<Record, PluginError>>, PluginError> {
        Ok(values
            .iter()
            .map(|v| serde_json::from_slice(v.as_slice()).map_err(|e| PluginError::invalid_input(e.to_string())))
            .collect())
    }
}

export_plugin! {
    name: "{name}",
    record_codec: |_config: &str| Ok(Plugin),
}
"#;

const CODEC_TEST: &str = r#"//! The slot's conformance suite, in-process: round trips, the baseline's JSON, corrupt
//! values.

use dubchain_host::conformance;
use dubchain_plugin_api::slots::RecordCodec;

#[test]
fn same_records_as_the_baseline() {
    let p = {name}::Plugin;
    let results = conformance::check_record_codec(
        |records| p.encode(records).map_err(|e| e.to_string()),
        |values| {
            let slices: Vec<_> = values.iter().map(|v| (*v).into()).collect();
            p.decode(&slices)
                .map(|v| v.into_iter().map(|r| r.map_err(|e| e.to_string())).collect())
                .map_err(|e| e.to_string())
        },
    );
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
"#;

const EXEC_LIB: &str = r#"//! `{name}`: an implementation of `{slot}`.
//!
//! It starts equal to the host's baseline: every transfer applied in block order over the
//! host's primitives (`state`: read a batch of accounts, write a batch, each at once to the
//! block in progress), one account at a time (`exec::execute_through`). It measures about
//! 1x. Make it faster (read ahead, hold writes, group, parallelise); the verdicts and the
//! state the block is left in must stay the baseline's. Keep `cargo test` and
//! `dubchain-perf plugin verify .` passing.

use dubchain_plugin_api::{
    abi_stable::std_types::RResult,
    exec::{execute_through, TxFailure},
    export_plugin,
    slots::{AccountStoreRef, BlockExecution},
    types::{Bytes32, Transaction},
    PluginError,
};

/// The implementation.
#[derive(Debug, Default)]
pub struct Plugin;

impl BlockExecution for Plugin {
    fn execute_block(
        &self,
        txs: &[Transaction],
        proposer: &Bytes32,
        state: &AccountStoreRef<'_>,
    ) -> Result<Vec<RResult<(), TxFailure>>, PluginError> {
        execute_through(state, txs, proposer)
    }
}

export_plugin! {
    name: "{name}",
    block_execution: |_config: &str| Ok(Plugin),
}
"#;

const EXEC_TEST: &str = r#"//! The slot's conformance suite, in-process: verdicts and final state equal the baseline's
//! on empty, independent, hot-key, mixed and adversarial blocks.

use dubchain_host::{conformance, slot::execute_in_memory};
use dubchain_plugin_api::{
    abi_stable::sabi_trait::TD_Opaque,
    slots::{BlockExecutionFfi_TO, Guarded},
};

#[test]
fn same_outcome_as_the_baseline() {
    let imp = BlockExecutionFfi_TO::from_value(Guarded({name}::Plugin), TD_Opaque);
    let results = conformance::check_block_execution(|b| {
        execute_in_memory(&imp, &b.pre, &b.txs, &b.proposer).map_err(|e| e.to_string())
    });
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
"#;

const EXEC_BENCH: &str = r#"//! Baseline against this plugin, interleaved in one process, over the block's accounts in
//! memory (`dubchain-perf plugin verify` and `bench` measure it on RocksDB).

use std::hint::black_box;

use dubchain_host::{baseline, measure, slot::execute_in_memory, workload};
use dubchain_plugin_api::{
    abi_stable::sabi_trait::TD_Opaque,
    slots::{BlockExecutionFfi_TO, Guarded},
};

fn main() {
    let b = workload::transfer_block(1, 1000, 256, 0.5, false);
    let imp = BlockExecutionFfi_TO::from_value(Guarded({name}::Plugin), TD_Opaque);
    let c = measure::compare(
        "{slot}: 256 transfers, half on 4 hot accounts",
        20,
        || { black_box(baseline::execute_block(&b.pre, &b.txs, &b.proposer)); },
        || { black_box(execute_in_memory(&imp, &b.pre, &b.txs, &b.proposer).unwrap()); },
    );
    println!("{}: {:.2}x ({:.2}-{:.2}) over {} rounds", c.name, c.ratio.median, c.ratio.low, c.ratio.high, c.rounds);
}
"#;

const COMMIT_LIB: &str = r#"//! `{name}`: an implementation of `{slot}`.
//!
//! It starts equal to the host's baseline: every write of a block passed through at once
//! with the host's primitive (an undo entry, then one put), nothing held. It measures about
//! 1x. Make it faster by holding writes (reads, `held` and `drain` must then show them; the
//! host writes what `drain` answers with the block's record and head as one atomic batch).
//! Keep `cargo test` and `dubchain-perf plugin verify .` passing.

use dubchain_plugin_api::{
    export_plugin,
    slots::{BlockCommit, BlockWrites, Held, KvWrite, WriteThroughRef},
    PluginError,
};

/// The factory.
#[derive(Debug, Default)]
pub struct Plugin;

/// One block's write set.
#[derive(Debug, Default)]
pub struct Writes;

impl BlockWrites for Writes {
    fn write(&mut self, key: &[u8], value: Option<&[u8]>, through: &WriteThroughRef<'_>) -> Result<(), PluginError> {
        through.put(key.into(), value.map(Into::into).into()).into_result()
    }
    fn read(&self, _key: &[u8]) -> Result<Held, PluginError> {
        Ok(Held::NotHeld)
    }
    fn held(&self, _prefix: &[u8]) -> Result<Vec<KvWrite>, PluginError> {
        Ok(Vec::new())
    }
    fn drain(&mut self) -> Result<Vec<KvWrite>, PluginError> {
        Ok(Vec::new())
    }
}

impl BlockCommit for Plugin {
    type Writes = Writes;
    fn begin(&self, _height: u64) -> Result<Writes, PluginError> {
        Ok(Writes)
    }
}

export_plugin! {
    name: "{name}",
    block_commit: |_config: &str| Ok(Plugin),
}
"#;

const COMMIT_TEST: &str = r#"//! The slot's check, in-process: random writes and deletes over two blocks at once, every
//! read, `held` and `drain` against the block's last writes (held or passed through), a
//! dropped block leaving nothing behind.

use dubchain_host::selftest;
use dubchain_plugin_api::{
    abi_stable::sabi_trait::TD_Opaque,
    slots::{BlockCommitFfi_TO, Guarded},
};

#[test]
fn every_read_sees_the_blocks_last_write() {
    let imp = BlockCommitFfi_TO::from_value(Guarded({name}::Plugin), TD_Opaque);
    selftest::block_commit(&imp).unwrap();
}
"#;

const COMMIT_BENCH: &str = r#"//! The ratio of a write set is a property of the store under it: `dubchain-perf plugin
//! verify .` measures this plugin against the baseline on RocksDB (a block of 256
//! transfers' writes, committed and synced), interleaved. This bench times the set's own
//! work per block here: a block's writes handed to it, read back and drained, with the
//! write-through primitive writing to memory.

use std::{collections::BTreeMap, hint::black_box, sync::Mutex};

use dubchain_plugin_api::{
    slots::{BlockCommit, BlockWrites, HostWriteThrough},
};

fn main() {
    let plugin = {name}::Plugin;
    let store: Mutex<BTreeMap<Vec<u8>, Option<Vec<u8>>>> = Mutex::default();
    let through = HostWriteThrough(|k: &[u8], v: Option<&[u8]>| {
        store.lock().unwrap().insert(k.to_vec(), v.map(<[u8]>::to_vec));
        Ok(())
    });
    let keys: Vec<Vec<u8>> = (0..768u32).map(|i| format!("a/{:08}", i % 300).into_bytes()).collect();
    let start = std::time::Instant::now();
    let blocks = 200;
    for height in 0..blocks {
        let mut set = plugin.begin(height).unwrap();
        for k in &keys {
            set.write(k, Some(b"{\"balance\":1,\"nonce\":1}"), &through.as_through()).unwrap();
            black_box(set.read(k).unwrap());
        }
        black_box(set.drain().unwrap());
    }
    println!("{slot}: {:.3} ms of set work per block of {} writes", start.elapsed().as_secs_f64() * 1e3 / blocks as f64, keys.len());
}
"#;

const STATE_ROOT_LIB: &str = r#"//! `{name}`: an implementation of `{slot}`.
//!
//! It starts equal to the host's baseline: the sparse Merkle root of every leaf of the
//! state, from scratch, every block (`dubchain_plugin_api::state_tree::root` over
//! `all.leaves()`). It measures about 1x. Make it faster by keeping the trees of recent
//! states, found by their root, and applying each block's `changes` to its `parent`'s (about
//! `changes * log2(leaves)` hashes); build from `all` for a parent you do not hold. Every
//! root must stay the baseline's. Keep `cargo test` and `dubchain-perf plugin verify .`
//! passing.

use dubchain_plugin_api::{
    export_plugin,
    slots::{LeafSourceRef, StateRoot},
    state_tree::{self, LeafChange},
    types::Bytes32,
    PluginError,
};

/// The implementation.
#[derive(Debug, Default)]
pub struct Plugin;

impl StateRoot for Plugin {
    fn root(&self, _parent: &Bytes32, _changes: &[LeafChange], all: &LeafSourceRef<'_>) -> Result<Bytes32, PluginError> {
        state_tree::root(&mut all.leaves().into_result()?)
    }
}

export_plugin! {
    name: "{name}",
    state_root: |_config: &str| Ok(Plugin),
}
"#;

const MERKLE_LIB: &str = r#"//! `{name}`: an implementation of `{slot}`.
//!
//! It starts equal to the host's baseline: each tree's RFC 6962 root, recursively, one
//! portable SHA-256 at a time (`dubchain_plugin_api::chain::merkle_root`). Make it faster
//! (hardware SHA, several messages in flight, levels across cores); every root must stay
//! the baseline's. Keep `cargo test` and `dubchain-perf plugin verify .` passing.

use dubchain_plugin_api::{
    abi_stable::std_types::RSlice,
    chain::merkle_root,
    export_plugin,
    slots::Merkle,
    types::Bytes32,
    PluginError,
};

/// The implementation.
#[derive(Debug, Default)]
pub struct Plugin;

impl Merkle for Plugin {
    fn roots(&self, trees: &[RSlice<'_, Bytes32>]) -> Result<Vec<Bytes32>, PluginError> {
        Ok(trees.iter().map(|t| merkle_root(t.as_slice())).collect())
    }
}

export_plugin! {
    name: "{name}",
    merkle: |_config: &str| Ok(Plugin),
}
"#;

const MERKLE_TEST: &str = r#"//! The slot's conformance suite, in-process: every root equals the baseline's, for every
//! tree size up to 17, powers of two and their neighbours, and large trees.

use dubchain_host::conformance;
use dubchain_plugin_api::{abi_stable::std_types::RSlice, slots::Merkle, types::Bytes32};

#[test]
fn same_roots_as_the_baseline() {
    let results = conformance::check_merkle(|trees| {
        let slices: Vec<RSlice<'_, Bytes32>> = trees.iter().map(|t| (*t).into()).collect();
        {name}::Plugin.roots(&slices).map_err(|e| e.to_string())
    });
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
"#;

const TXV_LIB: &str = r#"//! `{name}`: an implementation of `{slot}`.
//!
//! It starts equal to the host's baseline: each transaction's signature over its signing
//! bytes verified strictly, then its stateless rules (`exec::check_stateless`), one at a
//! time. Make it faster over the batch; every verdict must stay the baseline's (a
//! signature the strict check refuses must be refused, whatever a batch equation says).
//! Keep `cargo test` and `dubchain-perf plugin verify .` passing.

use dubchain_plugin_api::{
    exec::check_stateless,
    export_plugin,
    sig::verify_tx,
    slots::{TxCheck, TxValidation},
    types::Transaction,
    PluginError,
};

/// The implementation.
#[derive(Debug, Default)]
pub struct Plugin;

impl TxValidation for Plugin {
    fn validate(&self, txs: &[Transaction]) -> Result<Vec<TxCheck>, PluginError> {
        Ok(txs
            .iter()
            .map(|tx| {
                if !verify_tx(tx) {
                    TxCheck::BadSignature
                } else {
                    check_stateless(tx).map_or_else(TxCheck::Invalid, |()| TxCheck::Valid)
                }
            })
            .collect())
    }
}

export_plugin! {
    name: "{name}",
    tx_validation: |_config: &str| Ok(Plugin),
}
"#;

const TXV_TEST: &str = r#"//! The slot's conformance suite, in-process: every verdict equals the baseline's on
//! generated and adversarial transactions (bad signatures, broken rules, both).

use dubchain_host::conformance;
use dubchain_plugin_api::slots::TxValidation;

#[test]
fn same_verdicts_as_the_baseline() {
    let results = conformance::check_tx_validation(|txs| {
        {name}::Plugin.validate(txs).map_err(|e| e.to_string())
    });
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}
"#;

const CHECKED_TEST: &str = r#"//! The host's check of `{slot}` against its baseline (the one it runs when it loads the
//! plugin), in-process: generated and adversarial inputs, every answer the baseline's.

use dubchain_host::selftest;
use dubchain_plugin_api::{
    abi_stable::sabi_trait::TD_Opaque,
    slots::{Guarded, {ffi}},
};

#[test]
fn same_answers_as_the_baseline() {
    let imp = {ffi}::from_value(Guarded({name}::Plugin), TD_Opaque);
    selftest::{field}(&imp).unwrap();
}
"#;

const SLOT_BENCH: &str = r#"//! Baseline against this plugin, interleaved in one process: the plugin installed on a host
//! of its own, measured on the workload `dubchain-perf plugin verify` uses for `{slot}`.

use std::sync::Arc;

use dubchain_host::{
    compare,
    slot::{BreakerConfig, Provider},
    Host,
};
use dubchain_plugin_api::{
    abi_stable::sabi_trait::TD_Opaque,
    slots::{Guarded, {ffi}},
};

fn main() {
    let host = Host::new(Default::default());
    let imp = {ffi}::from_value(Guarded({name}::Plugin), TD_Opaque);
    host.slots.{field}.install(vec![Arc::new(Provider::new(
        "{name}".into(),
        "0.1.0".into(),
        1,
        imp,
        BreakerConfig::default(),
    ))]);
    let c = compare::slot_ratio(&host, "{slot}").expect("{slot} has a quick-ratio workload");
    println!("{slot}: {:.2}x ({:.2}-{:.2}) over {} rounds", c.ratio.median, c.ratio.low, c.ratio.high, c.rounds);
}
"#;

/// The head of every forwarding library below.
macro_rules! forwarding_doc {
    () => {
        "//! `{name}`: an implementation of `{slot}`.\n//!\n//! It starts equal to the host's baseline, which it calls or re-states; it measures about\n//! 1x. Make it faster; every answer must stay the baseline's. Keep `cargo test` and\n//! `dubchain-perf plugin verify .` passing.\n"
    };
}

const VOTES_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use blst::{
    min_pk::{PublicKey, Signature},
    BLST_ERROR,
};
use dubchain_plugin_api::{
    export_plugin,
    slots::{VoteVerify, VOTE_DST},
    types::VoteItem,
    PluginError,
};

/// The implementation: each vote on its own, the signature's subgroup and the key checked.
#[derive(Debug, Default)]
pub struct Plugin;

impl VoteVerify for Plugin {
    fn verify_votes(&self, votes: &[VoteItem<'_>]) -> Result<Vec<bool>, PluginError> {
        Ok(votes
            .iter()
            .map(|v| {
                let (Ok(pk), Ok(sig)) = (PublicKey::from_bytes(&v.public_key), Signature::from_bytes(&v.signature)) else {
                    return false;
                };
                sig.verify(true, v.message.as_slice(), VOTE_DST, &[], &pk, true) == BLST_ERROR::BLST_SUCCESS
            })
            .collect())
    }
}

export_plugin! {
    name: "{name}",
    vote_verify: |_config: &str| Ok(Plugin),
}
"#
);

const RECLAIM_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    abi_stable::std_types::RVec, export_plugin, slots::BlockReclaim, types::Block, PluginError,
};

/// The implementation: the blocks are freed here and now, on the caller's thread.
#[derive(Debug, Default)]
pub struct Plugin;

impl BlockReclaim for Plugin {
    fn reclaim(&self, blocks: RVec<Block>) -> Result<(), PluginError> {
        drop(blocks);
        Ok(())
    }
}

export_plugin! {
    name: "{name}",
    block_reclaim: |_config: &str| Ok(Plugin),
}
"#
);

const POOL_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{abi_stable::std_types::RVec, export_plugin, slots::BufferPool, PluginError};

/// The implementation: a fresh buffer for every request, freed when given back.
#[derive(Debug, Default)]
pub struct Plugin;

impl BufferPool for Plugin {
    fn take(&self, capacity: usize) -> Result<RVec<u8>, PluginError> {
        Ok(RVec::with_capacity(capacity))
    }
    fn give(&self, buffer: RVec<u8>) -> Result<(), PluginError> {
        drop(buffer);
        Ok(())
    }
}

export_plugin! {
    name: "{name}",
    buffer_pool: |_config: &str| Ok(Plugin),
}
"#
);

const SEND_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    abi_stable::std_types::RSlice,
    export_plugin,
    slots::{FrameSend, FrameSinkRef},
    PluginError,
};

/// The implementation: one write per frame, in order.
#[derive(Debug, Default)]
pub struct Plugin;

impl FrameSend for Plugin {
    fn send(&self, frames: &[RSlice<'_, u8>], sink: &FrameSinkRef<'_>) -> Result<(), PluginError> {
        for f in frames {
            sink.write(*f).into_result()?;
        }
        Ok(())
    }
}

export_plugin! {
    name: "{name}",
    frame_send: |_config: &str| Ok(Plugin),
}
"#
);

const DECODE_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    abi_stable::std_types::RSlice, export_plugin, slots::TxDecode, types::Transaction, PluginError,
};

/// The implementation: one serde_json document per payload, errors in serde_json's words.
#[derive(Debug, Default)]
pub struct Plugin;

impl TxDecode for Plugin {
    fn decode(&self, payloads: &[RSlice<'_, u8>]) -> Result<Vec<Result<Transaction, String>>, PluginError> {
        Ok(payloads
            .iter()
            .map(|p| serde_json::from_slice(p.as_slice()).map_err(|e| e.to_string()))
            .collect())
    }
}

export_plugin! {
    name: "{name}",
    tx_decode: |_config: &str| Ok(Plugin),
}
"#
);

const READ_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    exec::{AccountEntry, AccountState},
    export_plugin,
    slots::{AccountRead, AccountSourceRef},
    types::Bytes32,
    PluginError,
};

/// The implementation: every read goes to the store (`below`); nothing is kept, so writes
/// and rollbacks need no action.
#[derive(Debug, Default)]
pub struct Plugin;

impl AccountRead for Plugin {
    fn get(&self, _store: u64, accounts: &[Bytes32], out: &mut [AccountState], below: &AccountSourceRef<'_>) -> Result<(), PluginError> {
        below.get(accounts.into(), out.into()).into_result()
    }
    fn written(&self, _store: u64, _writes: &[AccountEntry]) -> Result<(), PluginError> {
        Ok(())
    }
    fn reset(&self, _store: u64) -> Result<(), PluginError> {
        Ok(())
    }
}

export_plugin! {
    name: "{name}",
    account_read: |_config: &str| Ok(Plugin),
}
"#
);

const SYNC_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    export_plugin,
    slots::{Durability, WalSyncRef},
    PluginError,
};

/// The implementation: the caller's own sync, once per call (an fsync per commit).
#[derive(Debug, Default)]
pub struct Plugin;

impl Durability for Plugin {
    fn make_durable(&self, _store: u64, wal: &WalSyncRef<'_>) -> Result<(), PluginError> {
        wal.sync().into_result()
    }
}

export_plugin! {
    name: "{name}",
    durability: |_config: &str| Ok(Plugin),
}
"#
);

const BROADCAST_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    abi_stable::std_types::{RArc, RVec},
    export_plugin,
    slots::{Broadcast, SharedFrame},
    wire::{frame, Message},
    PluginError,
};

/// The implementation: every message framed once per peer, no buffer shared.
#[derive(Debug, Default)]
pub struct Plugin;

impl Broadcast for Plugin {
    fn frames(&self, msgs: &[Message], peers: u32) -> Result<Vec<Vec<SharedFrame>>, PluginError> {
        Ok((0..peers)
            .map(|_| msgs.iter().map(|m| RArc::new(RVec::from(frame(m)))).collect())
            .collect())
    }
}

export_plugin! {
    name: "{name}",
    broadcast: |_config: &str| Ok(Plugin),
}
"#
);

const POOL_INDEX_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    export_plugin,
    pool::VecIndex,
    slots::{NonceSourceRef, PoolEntry, TxIndex, TxPool},
    types::Bytes32,
    PluginError,
};

/// The factory: a fresh index per mempool.
#[derive(Debug, Default)]
pub struct Plugin;

/// The baseline's index (`VecIndex`: a `Vec` of entries, every operation a linear scan).
#[derive(Debug, Default)]
pub struct Index(VecIndex);

impl TxIndex for Index {
    fn insert(&mut self, entries: &[PoolEntry]) -> Result<Vec<bool>, PluginError> {
        Ok(self.0.insert(entries))
    }

    /// Up to `max` hashes in fee order respecting each sender's nonce sequence; ties go to
    /// the smaller hash.
    fn select(&mut self, max: u64, nonces: &NonceSourceRef<'_>) -> Result<Vec<Bytes32>, PluginError> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        self.0.select(max, &|sender| nonces.next_nonce(sender).into_result())
    }

    /// Drops `included` and every entry whose nonce is below its sender's next one.
    fn remove(&mut self, included: &[Bytes32], nonces: &NonceSourceRef<'_>) -> Result<Vec<Bytes32>, PluginError> {
        self.0.remove(included, &|sender| nonces.next_nonce(sender).into_result())
    }

    fn len(&self) -> Result<u64, PluginError> {
        Ok(self.0.len() as u64)
    }
}

impl TxPool for Plugin {
    type Index = Index;
    fn new_index(&self) -> Result<Index, PluginError> {
        Ok(Index::default())
    }
}

export_plugin! {
    name: "{name}",
    tx_pool: |_config: &str| Ok(Plugin),
}
"#
);

const TALLY_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use std::{collections::BTreeMap, sync::Mutex};

use dubchain_plugin_api::{
    export_plugin,
    slots::{VoteTallies, VoteTally},
    types::Bytes32,
    PluginError,
};

/// The factory: a fresh state per node.
#[derive(Debug, Default)]
pub struct Plugin;

/// The baseline's tallies, behind one `Mutex` on cache lines of its own.
#[derive(Debug)]
pub struct Tally {
    stakes: Vec<u64>,
    state: OwnLines,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct OwnLines(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    finalized: u64,
    /// Stake behind each (height, block).
    tallies: BTreeMap<(u64, Bytes32), u64>,
    /// Validators that already voted at a height.
    voted: BTreeMap<u64, Vec<u32>>,
}

impl VoteTally for Tally {
    /// Only a validator's first vote at a height counts; a block with two thirds of the
    /// stake finalizes its height if it is above the finalized one.
    fn record(&self, height: u64, block: &Bytes32, validator: u32) -> Result<Option<u64>, PluginError> {
        let mut s = self.state.0.lock().map_err(|_| PluginError::poisoned("the tally"))?;
        let Some(&stake) = self.stakes.get(validator as usize) else {
            return Ok(None);
        };
        let voted = s.voted.entry(height).or_default();
        if voted.contains(&validator) {
            return Ok(None);
        }
        voted.push(validator);
        let tally = s.tallies.entry((height, *block)).or_default();
        *tally += stake;
        let reached = *tally * 3 >= self.stakes.iter().sum::<u64>() * 2;
        if reached && height > s.finalized {
            s.finalized = height;
            s.tallies = s.tallies.split_off(&(height, Bytes32::default()));
            return Ok(Some(height));
        }
        Ok(None)
    }

    fn finalized(&self) -> Result<u64, PluginError> {
        Ok(self.state.0.lock().map_err(|_| PluginError::poisoned("the tally"))?.finalized)
    }
}

impl VoteTallies for Plugin {
    type Tally = Tally;
    fn new_tally(&self, stakes: &[u64]) -> Result<Tally, PluginError> {
        Ok(Tally {
            stakes: stakes.to_vec(),
            state: OwnLines::default(),
        })
    }
}

export_plugin! {
    name: "{name}",
    vote_tally: |_config: &str| Ok(Plugin),
}
"#
);

const QUEUE_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex},
    time::Duration,
};

use dubchain_plugin_api::{
    export_plugin,
    slots::{Outgoing, Popped, SendQueue, SendQueues},
    PluginError,
};

/// The factory: one queue per peer.
#[derive(Debug, Default)]
pub struct Plugin;

/// The baseline's queue: one unbounded FIFO, nothing ever dropped.
#[derive(Debug, Default)]
pub struct Queue {
    /// The frames, and whether the queue is closed.
    state: Mutex<(VecDeque<Outgoing>, bool)>,
    ready: Condvar,
}

impl SendQueue for Queue {
    fn push(&self, frames: Vec<Outgoing>) -> Result<u64, PluginError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0.extend(frames);
        self.ready.notify_all();
        Ok(0)
    }
    fn pop(&self, max: u64, wait_ms: u64) -> Result<Popped, PluginError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.0.is_empty() && !s.1 {
            s = self
                .ready
                .wait_timeout(s, Duration::from_millis(wait_ms))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if !s.0.is_empty() {
            let n = (max.max(1) as usize).min(s.0.len());
            return Ok(Popped::Frames(s.0.drain(..n).collect()));
        }
        Ok(if s.1 { Popped::Closed } else { Popped::Idle })
    }
    fn written(&self, _bytes: u64, _micros: u64) -> Result<(), PluginError> {
        Ok(())
    }
    fn close(&self) -> Result<(), PluginError> {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
        self.ready.notify_all();
        Ok(())
    }
}

impl SendQueues for Plugin {
    type Queue = Queue;
    fn new_queue(&self, _peer: u32) -> Result<Queue, PluginError> {
        Ok(Queue::default())
    }
}

export_plugin! {
    name: "{name}",
    send_queue: |_config: &str| Ok(Plugin),
}
"#
);

const RUN_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    chain::{block_hash, merkle_root, tx_hash},
    exec::check_stateless,
    export_plugin,
    sig::verify_tx,
    slots::{BlockCheck, BlockValidation},
    types::{Block, Bytes32},
    PluginError,
};

/// The implementation: one block at a time, in the contract's order of checks: height,
/// parent, transaction root, receipt count, then each transaction's signature (strict) and
/// stateless rules.
#[derive(Debug, Default)]
pub struct Plugin;

impl BlockValidation for Plugin {
    fn check_run(&self, head_height: u64, head_hash: &Bytes32, blocks: &[Block]) -> Result<Vec<BlockCheck>, PluginError> {
        let (mut height, mut parent) = (head_height, *head_hash);
        Ok(blocks
            .iter()
            .map(|b| {
                let h = &b.header;
                let verdict = (|| {
                    if h.height != height + 1 {
                        return BlockCheck::Height { expected: height + 1, got: h.height };
                    }
                    if h.parent != parent {
                        return BlockCheck::Parent { expected: parent, got: h.parent };
                    }
                    let hashes: Vec<Bytes32> = b.transactions.iter().map(tx_hash).collect();
                    if h.tx_root != merkle_root(&hashes) {
                        return BlockCheck::TxRoot;
                    }
                    if b.receipts.len() != b.transactions.len() {
                        return BlockCheck::ReceiptCount { count: b.receipts.len() as u64, txs: b.transactions.len() as u64 };
                    }
                    for (i, tx) in b.transactions.iter().enumerate() {
                        if !verify_tx(tx) {
                            return BlockCheck::BadSignature { index: i as u64 };
                        }
                        if let Err(failure) = check_stateless(tx) {
                            return BlockCheck::Tx { index: i as u64, failure };
                        }
                    }
                    BlockCheck::Valid
                })();
                height = h.height;
                parent = block_hash(h);
                verdict
            })
            .collect())
    }
}

export_plugin! {
    name: "{name}",
    block_validation: |_config: &str| Ok(Plugin),
}
"#
);

const CODE_LOADER_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    export_plugin,
    slots::{CodeLoader, CodeSourceRef, LoadedCode},
    types::Bytes32,
    vm::validate_code,
    PluginError,
};

/// The implementation: the stored code read and validated on every call (nothing is kept).
#[derive(Debug, Default)]
pub struct Plugin;

impl CodeLoader for Plugin {
    fn load(&self, contract: &Bytes32, _code_hash: &Bytes32, source: &CodeSourceRef<'_>) -> Result<LoadedCode, PluginError> {
        Ok(match source.code(contract).into_result()?.into_option() {
            None => LoadedCode::Missing,
            Some(code) => match validate_code(&code) {
                Ok(()) => LoadedCode::Valid(code),
                Err(e) => LoadedCode::Invalid(e.into()),
            },
        })
    }
}

export_plugin! {
    name: "{name}",
    code_loader: |_config: &str| Ok(Plugin),
}
"#
);

const METERING_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    export_plugin,
    slots::{GasCounter, Metered, Metering},
    vm::meter,
    PluginError,
};

/// The implementation: the baseline's rewrite (a host call charging each segment's cost).
#[derive(Debug, Default)]
pub struct Plugin;

impl Metering for Plugin {
    fn instrument(&self, code: &[u8]) -> Result<Metered, PluginError> {
        let wasm = meter::instrument(code).map_err(PluginError::failed)?;
        Ok(Metered { wasm: wasm.into(), counter: GasCounter::HostCall })
    }
}

export_plugin! {
    name: "{name}",
    metering: |_config: &str| Ok(Plugin),
}
"#
);

const MODULE_CACHE_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_host::vm::{ContractStorage, StorageError, Vm};
use dubchain_plugin_api::{
    export_plugin,
    slots::{CallRequest, CallResult, ContractStoreRef, ModuleCache},
    types::Bytes32,
    PluginError,
};

/// The implementation: the host's VM (its own copy, compiled into this library) compiling
/// and instantiating the module on every call.
#[derive(Debug, Default)]
pub struct Plugin;

/// The call's storage reads, to the host.
struct Below<'a, 'b>(&'a ContractStoreRef<'b>);

impl ContractStorage for Below<'_, '_> {
    fn get(&self, contract: &Bytes32, key: i64) -> Result<i64, StorageError> {
        self.0.get(contract, key).into_result().map_err(|e| e.to_string().into())
    }
}

impl ModuleCache for Plugin {
    fn run(&self, r: &CallRequest<'_>, storage: &ContractStoreRef<'_>) -> Result<CallResult, PluginError> {
        let out = Vm::shared()
            .run(&r.wasm, r.counter, r.contract, r.input, r.gas, &Below(storage))
            .map_err(|e| PluginError::failed(e.to_string()))?;
        Ok(CallResult::from(&out))
    }
}

export_plugin! {
    name: "{name}",
    module_cache: |_config: &str| Ok(Plugin),
}
"#
);

const CONTRACT_STATE_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    export_plugin,
    slots::{ContractState, ContractStoreRef, ContractWrite},
    types::Bytes32,
    PluginError,
};

/// The implementation: every read goes to the store (`below`); nothing is kept, so writes
/// and rollbacks need no action.
#[derive(Debug, Default)]
pub struct Plugin;

impl ContractState for Plugin {
    fn get(&self, _store: u64, contract: &Bytes32, key: i64, below: &ContractStoreRef<'_>) -> Result<i64, PluginError> {
        below.get(contract, key).into_result()
    }
    fn written(&self, _store: u64, _writes: &[ContractWrite]) -> Result<(), PluginError> {
        Ok(())
    }
    fn reset(&self, _store: u64) -> Result<(), PluginError> {
        Ok(())
    }
}

export_plugin! {
    name: "{name}",
    contract_state: |_config: &str| Ok(Plugin),
}
"#
);

const TRANSPORT_LIB: &str = concat!(
    forwarding_doc!(),
    r#"
use dubchain_plugin_api::{
    export_plugin,
    slots::{InboundSinkBox, PeerSocket, Transport},
    transport::{ThreadConnections, ThreadTransport},
    PluginError,
};

/// The implementation: the host's own I/O model, a reader thread per peer on its blocking
/// socket and writes on the sender's thread (`dubchain_plugin_api::transport`).
#[derive(Debug, Default)]
pub struct Plugin;

impl Transport for Plugin {
    type Connections = ThreadConnections;
    fn connect(&self, peers: &[PeerSocket], inbound: InboundSinkBox) -> Result<ThreadConnections, PluginError> {
        ThreadTransport.connect(peers, inbound)
    }
}

export_plugin! {
    name: "{name}",
    transport: |_config: &str| Ok(Plugin),
}
"#
);
