//! `dubchain-perf plugin new`: a standalone plugin crate for one slot, with a manifest, a
//! working implementation equal to the baseline, a differential test and a benchmark.

use std::path::{Path, PathBuf};

use dubchain_plugin_api::slots::{
    self, SlotInfo, ACCOUNT_READ, BLOCK_COMMIT, BLOCK_EXECUTION, BLOCK_RECLAIM, BLOCK_VALIDATION,
    BROADCAST, BUFFER_POOL, CODE_LOADER, CONTRACT_STATE, DURABILITY, FRAME_SEND, MERKLE, METERING,
    MODULE_CACHE, RECORD_CODEC, SEND_QUEUE, SIG_VERIFY, STATE_ROOT, TRANSPORT, TX_DECODE, TX_POOL,
    TX_VALIDATION, VOTE_TALLY, VOTE_VERIFY,
};

/// A template file, by its path under `host/core/templates/`.
macro_rules! template {
    ($path:literal) => {
        include_str!(concat!("../templates/", $path))
    };
}

/// A forwarding library: the head every one shares, then the slot's own part
/// (`templates/lib/{field}.rs.tmpl`).
macro_rules! forwarding {
    ($field:literal) => {
        concat!(
            template!("lib/forwarding_head.rs.tmpl"),
            include_str!(concat!("../templates/lib/", $field, ".rs.tmpl"))
        )
    };
}

/// A slot's template: extra dependencies, `src/lib.rs` (an implementation equal to the
/// baseline: it forwards to the baseline through the slot's primitives, so it measures
/// about 1x), `tests/differential.rs` and `benches/ratio.rs`. The slots without a test and
/// bench of their own use `test/checked.rs.tmpl` (the host's check of the slot against the
/// baseline, the one it runs at load) and `bench/slot.rs.tmpl` (`plugin verify`'s quick ratio),
/// filled with the slot's FFI object (`{ffi}`), its field (`{field}`: the slot's stem, which
/// names its `Slots` field and its check in `dubchain_host::selftest`) and its check.
struct Template {
    slot: SlotInfo,
    deps: &'static str,
    lib: &'static str,
    test: &'static str,
    bench: &'static str,
    /// For `test/checked.rs.tmpl` and `bench/slot.rs.tmpl`: the FFI object (`..._TO`).
    ffi: &'static str,
    /// A `vm.*` slot: the crate builds the plugin API's contract rules (feature `vm`), and
    /// tests against a host with the contract VM.
    vm: bool,
}

impl Template {
    /// The slot's stem (`crypto.sig_verify` -> `sig_verify`).
    fn field(&self) -> &'static str {
        self.slot
            .id
            .split_once('.')
            .map_or(self.slot.id, |(_, stem)| stem)
    }
}

/// A template whose test is the host's check of the slot and whose bench is the quick
/// ratio; `ffi` the slot's FFI trait object.
const fn checked(
    slot: SlotInfo, deps: &'static str, lib: &'static str, ffi: &'static str,
) -> Template {
    Template {
        slot,
        deps,
        lib,
        test: template!("test/checked.rs.tmpl"),
        bench: template!("bench/slot.rs.tmpl"),
        ffi,
        vm: false,
    }
}

/// `t`, for a `vm.*` slot.
const fn vm(t: Template) -> Template {
    Template { vm: true, ..t }
}

/// The slots `plugin new` can scaffold, looked up by slot.
#[rustfmt::skip]
const TEMPLATES: &[Template] = &[
    Template { slot: SIG_VERIFY, deps: "", lib: template!("lib/sig_verify.rs.tmpl"), test: template!("test/sig_verify.rs.tmpl"), bench: template!("bench/slot.rs.tmpl"), ffi: "SigVerifyFfi_TO", vm: false },
    Template { slot: RECORD_CODEC, deps: "serde_json = \"1\"\n", lib: template!("lib/record_codec.rs.tmpl"), test: template!("test/record_codec.rs.tmpl"), bench: template!("bench/slot.rs.tmpl"), ffi: "RecordCodecFfi_TO", vm: false },
    Template { slot: MERKLE, deps: "", lib: template!("lib/merkle.rs.tmpl"), test: template!("test/merkle.rs.tmpl"), bench: template!("bench/slot.rs.tmpl"), ffi: "MerkleFfi_TO", vm: false },
    Template { slot: TX_VALIDATION, deps: "", lib: template!("lib/tx_validation.rs.tmpl"), test: template!("test/tx_validation.rs.tmpl"), bench: template!("bench/slot.rs.tmpl"), ffi: "TxValidationFfi_TO", vm: false },
    Template { slot: BLOCK_EXECUTION, deps: "", lib: template!("lib/block_execution.rs.tmpl"), test: template!("test/block_execution.rs.tmpl"), bench: template!("bench/block_execution.rs.tmpl"), ffi: "", vm: false },
    Template { slot: BLOCK_COMMIT, deps: "", lib: template!("lib/block_commit.rs.tmpl"), test: template!("test/block_commit.rs.tmpl"), bench: template!("bench/block_commit.rs.tmpl"), ffi: "", vm: false },
    checked(VOTE_VERIFY, "blst = \"0.3\"\n", forwarding!("vote_verify"), "VoteVerifyFfi_TO"),
    checked(BLOCK_RECLAIM, "", forwarding!("block_reclaim"), "BlockReclaimFfi_TO"),
    checked(BUFFER_POOL, "", forwarding!("buffer_pool"), "BufferPoolFfi_TO"),
    checked(FRAME_SEND, "", forwarding!("frame_send"), "FrameSendFfi_TO"),
    checked(TX_DECODE, "serde_json = \"1\"\n", forwarding!("tx_decode"), "TxDecodeFfi_TO"),
    checked(ACCOUNT_READ, "", forwarding!("account_read"), "AccountReadFfi_TO"),
    checked(DURABILITY, "", forwarding!("durability"), "DurabilityFfi_TO"),
    checked(BROADCAST, "", forwarding!("broadcast"), "BroadcastFfi_TO"),
    checked(TX_POOL, "", forwarding!("tx_pool"), "TxPoolFfi_TO"),
    checked(VOTE_TALLY, "", forwarding!("vote_tally"), "VoteTalliesFfi_TO"),
    checked(SEND_QUEUE, "", forwarding!("send_queue"), "SendQueuesFfi_TO"),
    checked(BLOCK_VALIDATION, "", forwarding!("block_validation"), "BlockValidationFfi_TO"),
    checked(TRANSPORT, "", forwarding!("transport"), "TransportFfi_TO"),
    checked(STATE_ROOT, "", template!("lib/state_root.rs.tmpl"), "StateRootFfi_TO"),
    vm(checked(CODE_LOADER, "", forwarding!("code_loader"), "CodeLoaderFfi_TO")),
    vm(checked(METERING, "", forwarding!("metering"), "MeteringFfi_TO")),
    // The host's VM, which the forwarding implementation runs contracts on.
    vm(checked(MODULE_CACHE, "dubchain-host = { path = \"{host}\", default-features = false, features = [\"vm\"] }\n", forwarding!("module_cache"), "ModuleCacheFfi_TO")),
    vm(checked(CONTRACT_STATE, "", forwarding!("contract_state"), "ContractStateFfi_TO")),
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

/// Why no crate was written.
#[derive(Debug)]
pub enum ScaffoldError {
    /// What was asked for cannot be made (a name, a slot, a directory already there):
    /// nothing was written.
    Refused(String),
    /// Writing failed part way: what was written is removed again.
    Failed(String),
}

impl std::fmt::Display for ScaffoldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScaffoldError::Refused(m) | ScaffoldError::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ScaffoldError {}

/// Names a crate cannot take: Rust's keywords (strict and reserved) and the crates every
/// Rust program already has.
const RESERVED: [&str; 56] = [
    "as",
    "break",
    "const",
    "continue",
    "crate",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "async",
    "await",
    "dyn",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "macro",
    "override",
    "priv",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "try",
    "gen",
    "std",
    "core",
    "alloc",
    "proc_macro",
    "test",
];

/// Whether `name` can be the plugin's name and its crate's: the manifest's rule (lowercase
/// letters, digits, `_`), starting with a letter as cargo wants, no keyword or built-in
/// crate.
fn check_crate_name(name: &str) -> Result<(), String> {
    let rule = "a plugin's name is lowercase letters, digits and `_`, starting with a letter";
    if !crate::manifest::is_identifier(name) || !name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        return Err(format!("plugin name `{name}`: {rule}; choose another"));
    }
    if RESERVED.contains(&name) {
        return Err(format!(
            "plugin name `{name}` is a Rust keyword or built-in crate, which no crate can be named; choose another"
        ));
    }
    Ok(())
}

/// Whether `name` is none of the crate's own dependencies (`cargo_toml`'s), which it would
/// shadow.
fn check_not_a_dependency(name: &str, cargo_toml: &str) -> Result<(), String> {
    let deps: Vec<String> = toml::from_str::<toml::Table>(cargo_toml)
        .map_err(|e| format!("the crate template does not parse: {e}"))?
        .iter()
        .filter(|(k, _)| k.ends_with("dependencies"))
        .filter_map(|(_, v)| v.as_table())
        .flat_map(|t| t.keys().map(|k| k.replace('-', "_")))
        .collect();
    if deps.iter().any(|d| d == name) {
        return Err(format!(
            "plugin name `{name}` is the name of a crate the plugin depends on, which it would shadow; choose another"
        ));
    }
    Ok(())
}

/// Writes the crate `dir/name`. `source_root` holds `plugin-api/` and `host/core/`. The crate
/// is written beside its place under a hidden name and renamed into it once whole, so a
/// failure leaves nothing behind (and a second try is not refused as "already exists").
pub fn new_plugin(
    dir: &Path, name: &str, slot: &str, source_root: &Path,
) -> Result<PathBuf, ScaffoldError> {
    check_crate_name(name).map_err(ScaffoldError::Refused)?;
    let Some(info) = slots::find(slot) else {
        let known: Vec<_> = slots::ALL.iter().map(|s| s.id).collect();
        return Err(ScaffoldError::Refused(format!(
            "no slot `{slot}` (slots: {})",
            known.join(", ")
        )));
    };
    let api = source_root.join("plugin-api");
    let host = source_root.join("host").join("core");
    if !holds_sources(source_root) {
        return Err(ScaffoldError::Refused(format!(
            "{} does not hold plugin-api/ and host/core/; pass --source-root with the DubChain checkout",
            source_root.display()
        )));
    }
    let Some(template) = TEMPLATES.iter().find(|t| t.slot.id == info.id) else {
        return Err(ScaffoldError::Refused(format!(
            "no template for slot `{slot}` yet (templates: {}); see docs/plugin-authoring.md for its contract",
            scaffolded_slots().join(", ")
        )));
    };
    let deps = template.deps;
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
            .replace("{field}", template.field())
    };
    let cargo_toml = fill(template!("Cargo.toml.tmpl"));
    check_not_a_dependency(name, &cargo_toml).map_err(ScaffoldError::Refused)?;
    let root = dir.join(name);
    if root.exists() {
        return Err(ScaffoldError::Refused(format!(
            "{} already exists; choose another name or --dir",
            root.display()
        )));
    }
    let partial = dir.join(format!(".{name}.partial-{}", std::process::id()));
    let written =
        write_crate(&partial, name, cargo_toml, &fill, template, source_root).and_then(|()| {
            std::fs::rename(&partial, &root)
                .map_err(|e| format!("moving {} to {}: {e}", partial.display(), root.display()))
        });
    match written {
        Ok(()) => Ok(root),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&partial);
            Err(ScaffoldError::Failed(format!(
                "{e}; nothing was left in {}",
                dir.display()
            )))
        }
    }
}

/// The crate's files, in `root`.
fn write_crate(
    root: &Path, name: &str, cargo_toml: String, fill: &dyn Fn(&str) -> String,
    template: &Template, source_root: &Path,
) -> Result<(), String> {
    let (lib, test, bench) = (template.lib, template.test, template.bench);
    let write = |rel: &str, text: String| -> Result<(), String> {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("inside root"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    write("Cargo.toml", cargo_toml)?;
    write(
        &format!("{name}.toml"),
        fill(template!("manifest.toml.tmpl")),
    )?;
    write("src/lib.rs", fill(lib))?;
    write("tests/differential.rs", fill(test))?;
    write("benches/ratio.rs", fill(bench))?;
    write("README.md", fill(template!("README.md.tmpl")))?;
    write(".gitignore", "target/\n".to_owned())?;
    // Same dependency versions as the host was built with.
    let lock = source_root.join("Cargo.lock");
    if lock.exists() {
        std::fs::copy(&lock, root.join("Cargo.lock"))
            .map_err(|e| format!("copying {}: {e}", lock.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that fails part way (here the last step, copying `Cargo.lock`, which is a
    /// directory) removes what it wrote: the same command works once the cause is gone.
    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let source = tempfile::tempdir().expect("a temporary directory");
        for crate_dir in ["plugin-api", "host/core"] {
            std::fs::create_dir_all(source.path().join(crate_dir)).expect("a directory");
            std::fs::write(source.path().join(crate_dir).join("Cargo.toml"), "").expect("a file");
        }
        std::fs::create_dir(source.path().join("Cargo.lock")).expect("a directory");
        let work = tempfile::tempdir().expect("a temporary directory");
        let err = new_plugin(work.path(), "late", "crypto.sig_verify", source.path())
            .expect_err("the copy fails");
        assert!(matches!(err, ScaffoldError::Failed(_)), "{err}");
        assert!(err.to_string().contains("Cargo.lock"), "{err}");
        assert_eq!(std::fs::read_dir(work.path()).expect("readable").count(), 0);

        std::fs::remove_dir(source.path().join("Cargo.lock")).expect("removed");
        let made = new_plugin(work.path(), "late", "crypto.sig_verify", source.path())
            .expect("written once the cause is gone");
        assert!(made.join("src/lib.rs").is_file() && made.join("late.toml").is_file());
    }
}
