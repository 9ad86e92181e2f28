//! `dubchain-perf plugin new`: a standalone plugin crate for one slot, with a manifest, a
//! working implementation equal to the baseline, a differential test and a benchmark.

use std::path::{Path, PathBuf};

use dubchain_plugin_api::slots::{self, RECORD_CODEC, SIG_VERIFY};

/// Where this host's sources are, for the new crate's path dependencies.
pub fn default_source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is in the repository root")
        .to_owned()
}

/// Writes the crate `dir/name`. `source_root` holds `plugin-api/` and `host/`.
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
    let host = source_root.join("host");
    if !api.join("Cargo.toml").is_file() || !host.join("Cargo.toml").is_file() {
        return Err(format!(
            "{} does not hold plugin-api/ and host/; pass --source-root with the DubChain checkout",
            source_root.display()
        ));
    }
    let root = dir.join(name);
    if root.exists() {
        return Err(format!("{} already exists", root.display()));
    }
    let (deps, lib, test, bench) = if info.id == SIG_VERIFY.id {
        ("ed25519-dalek = \"2\"\n", SIG_LIB, SIG_TEST, SIG_BENCH)
    } else if info.id == RECORD_CODEC.id {
        ("serde_json = \"1\"\n", CODEC_LIB, CODEC_TEST, CODEC_BENCH)
    } else {
        return Err(format!("no template for slot `{slot}` yet"));
    };
    let fill = |t: &str| {
        t.replace("{name}", name)
            .replace("{slot}", info.id)
            .replace("{api}", &api.display().to_string())
            .replace("{host}", &host.display().to_string())
            .replace("{deps}", deps)
            .replace("{api_version}", dubchain_plugin_api::API_VERSION)
            .replace("{slot_version}", &info.version.to_string())
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
dubchain-plugin-api = { path = "{api}" }
# export_plugin! expands to code that names ::abi_stable.
abi_stable = "0.11"
{deps}
[dev-dependencies]
# The baseline, the conformance suite and the measuring harness (without the node, so
# RocksDB is not built).
dubchain-host = { path = "{host}", default-features = false }

[[bench]]
name = "ratio"
harness = false

[profile.dev.package."*"]
opt-level = 2

# Not part of any enclosing workspace.
[workspace]
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
    slots::{Next, SigVerify},
    types::SigItem,
    PluginError,
};
use ed25519_dalek::{Signature, VerifyingKey};

/// The implementation. Configuration (the plugin's table in the host configuration) arrives
/// as TOML text in the constructor passed to `export_plugin!`.
#[derive(Debug, Default)]
pub struct Plugin;

impl SigVerify for Plugin {
    fn verify_batch(&self, items: &[SigItem<'_>], _next: &Next<'_>) -> Result<Vec<bool>, PluginError> {
        Ok(items
            .iter()
            .map(|item| {
                let Ok(key) = VerifyingKey::from_bytes(&item.public_key) else { return false };
                key.verify_strict(item.message.as_slice(), &Signature::from_bytes(&item.signature)).is_ok()
            })
            .collect())
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

const SIG_BENCH: &str = r#"//! Baseline against this plugin, interleaved in one process; prints the ratio with its
//! 95% interval.

use std::hint::black_box;

use dubchain_host::{baseline, measure, workload};
use dubchain_plugin_api::{
    slots::{LowerFn, Next, SigVerify},
    types::SigItem,
};

fn main() {
    let set = workload::signature_set(1, 2048, false);
    let items = set.items();
    let lower = LowerFn(|items: &[SigItem<'_>]| Ok(baseline::sig_verify(items)));
    let next = Next::new(lower.as_ffi());
    let plugin = {name}::Plugin;
    let c = measure::compare(
        "{slot}: 2048 valid signatures",
        20,
        || { black_box(baseline::sig_verify(black_box(&items))); },
        || { black_box(plugin.verify_batch(black_box(&items), &next).unwrap()); },
    );
    println!("{}: {:.2}x ({:.2}-{:.2}) over {} rounds", c.name, c.ratio.median, c.ratio.low, c.ratio.high, c.rounds);
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

const CODEC_BENCH: &str = r#"//! Baseline against this plugin, interleaved in one process.

use std::hint::black_box;

use dubchain_host::{baseline, measure, workload};
use dubchain_plugin_api::slots::RecordCodec;

fn main() {
    let records = workload::records(1, 32, 64);
    let plugin = {name}::Plugin;
    let c = measure::compare(
        "{slot}: encode 2080 records",
        20,
        || { black_box(baseline::encode_records(black_box(&records))); },
        || { black_box(plugin.encode(black_box(&records)).unwrap()); },
    );
    println!("{}: {:.2}x ({:.2}-{:.2}) over {} rounds", c.name, c.ratio.median, c.ratio.low, c.ratio.high, c.rounds);
}
"#;
