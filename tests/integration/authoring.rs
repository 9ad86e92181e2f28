//! The authoring kit: `plugin verify` on good, wrong, panicking and crashing plugins, and a
//! plugin scaffolded by `plugin new`, built outside the workspace, verified and hot-loaded.

use std::{path::Path, process::Command, time::Duration};

use dubchain_host::testing::TestHost;
use dubchain_plugin_api::slots::{self, SIG_VERIFY};
use dubchain_tests::{
    assert_mentions, checkout, dubchain_perf, first_party_manifest, manifest_text, PluginDir,
};

/// Runs `dubchain-perf plugin verify` on `dir`; returns (success, stdout).
fn verify(dir: &Path) -> (bool, String) {
    let out = Command::new(dubchain_perf())
        .args(["plugin", "verify"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn package(name: &str, manifest: &str) -> PluginDir {
    let dir = PluginDir::new();
    dir.add_built(name, manifest);
    dir
}

/// The guide's table of slots (`docs/plugin-authoring.md`, "1. Scaffold") has one row for
/// every slot of the API, in the table's order: the id, the `export_plugin!` key (the id's
/// stem), a trait that `dubchain_plugin_api::slots` declares, and the kind. A slot added
/// without its row, or a row left behind, fails here.
#[test]
fn the_authoring_guide_lists_every_slot() {
    let guide = std::fs::read_to_string(checkout().join("docs/plugin-authoring.md")).unwrap();
    let api = std::fs::read_to_string(checkout().join("plugin-api/src/slots.rs")).unwrap();
    let rows: Vec<Vec<&str>> = guide
        .lines()
        .filter(|l| l.starts_with("| `") && l.matches('|').count() == 5)
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    let ids: Vec<&str> = rows.iter().map(|r| r[0].trim_matches('`')).collect();
    let all: Vec<&str> = slots::ALL.iter().map(|s| s.id).collect();
    assert_eq!(ids, all, "the guide's slot rows against slots::ALL");
    for (row, slot) in rows.iter().zip(slots::ALL) {
        let stem = slot.id.split_once('.').unwrap().1;
        assert_eq!(
            row[1],
            format!("`{stem}`"),
            "{}: export_plugin! key",
            slot.id
        );
        let name = row[2].split('`').nth(1).unwrap_or_default();
        assert!(
            api.contains(&format!("pub trait {name}:")),
            "{}: the guide names trait `{name}`, which slots.rs does not declare",
            slot.id
        );
        let kind = match slot.kind {
            slots::SlotKind::Exclusive => "exclusive",
            slots::SlotKind::Layered => "layered",
        };
        assert_eq!(row[3], kind, "{}: kind", slot.id);
    }
}

#[test]
fn verify_passes_the_first_party_plugins() {
    for name in ["crypto_parallel_verification", "storage_binary_formats"] {
        let (ok, out) = verify(package(name, &first_party_manifest(name)).path());
        assert!(ok, "{out}");
        assert_mentions(&out, &["PASS  load: library, ABI layout"]);
        assert!(
            out.contains("adversarial among valid") || out.contains("corrupt values are errors"),
            "{out}"
        );
        assert!(
            out.contains("quick ratio: ") && out.ends_with("verdict: PASS\n"),
            "{out}"
        );
    }
}

/// `plugin verify` on fixture `name` under a `crypto.sig_verify` manifest, which must fail
/// with a report that says each of `phrases`; the report.
fn verify_refuses(name: &str, phrases: &[&str]) -> String {
    let (ok, out) = verify(package(name, &manifest_text(name, SIG_VERIFY.id, "")).path());
    assert!(!ok, "{out}");
    assert_mentions(&out, phrases);
    out
}

#[test]
fn verify_rejects_a_wrong_answer_on_an_adversarial_input() {
    let out = verify_refuses(
        "fixture_nonstrict",
        &[
            "FAIL",
            "small-order key and R, s = 0",
            "baseline says false, plugin says Some(true)",
        ],
    );
    assert!(out.ends_with("verdict: FAIL\n"), "{out}");
}

#[test]
fn verify_rejects_a_plugin_that_panics() {
    verify_refuses(
        "fixture_panics",
        &["the plugin failed and the baseline answered: plugin panicked: fixture_panics panics on purpose"],
    );
}

#[test]
fn verify_survives_a_plugin_that_crashes_its_process() {
    let out = verify_refuses(
        "fixture_aborts",
        &["FAIL  the plugin crashed the verifier's child process (killed by signal 6)"],
    );
    assert!(out.ends_with("verdict: FAIL\n"), "{out}");
}

#[test]
fn verify_rejects_an_incompatible_library() {
    verify_refuses("fixture_abi_mismatch", &["has an incompatible ABI"]);
}

fn cargo(dir: &Path, target: &Path, args: &[&str]) {
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(dir)
        .args(args)
        .arg("--target-dir")
        .arg(target)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?} in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `plugin new NAME --slot SLOT` in `work`, then the crate's tests, benches (built) and
/// release build in the shared scaffold target directory, then `plugin verify` on it, which
/// must pass. Returns the crate, its library and verify's report. Everything is built in the
/// release profile, so the dependencies (wasmtime for `vm.module_cache`) compile once.
fn scaffold_and_verify(
    work: &Path, name: &str, slot: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let out = Command::new(dubchain_perf())
        .args(["plugin", "new", name, "--slot", slot, "--dir"])
        .arg(work)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let krate = work.join(name);
    // One target directory for scaffold builds, kept between runs, like the main one.
    let target = dubchain_perf()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("scaffold-build");
    // Scaffold tests run in parallel processes and share that directory: one that rebuilds
    // a dependency (after a change to plugin-api) must not replace a library another is
    // linking its doctests against, so the builds take turns (the file lock is dropped, and
    // released, before verifying).
    std::fs::create_dir_all(&target).unwrap();
    let turn = std::fs::File::create(target.join("scaffold-tests.lock")).unwrap();
    turn.lock().unwrap();
    cargo(&krate, &target, &["test", "--release", "--quiet"]);
    cargo(&krate, &target, &["bench", "--no-run", "--quiet"]);
    cargo(&krate, &target, &["build", "--release", "--quiet"]);
    drop(turn);
    let lib = target
        .join("release")
        .join(dubchain_host::manifest::library_file_name(name));
    let out = Command::new(dubchain_perf())
        .args(["plugin", "verify"])
        .arg(&krate)
        .arg("--library")
        .arg(&lib)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{slot}: {report}");
    assert!(report.ends_with("verdict: PASS\n"), "{slot}: {report}");
    (krate, lib, report)
}

#[test]
fn a_scaffolded_plugin_builds_outside_the_workspace_passes_verify_and_hot_loads() {
    let work = tempfile::tempdir().unwrap();
    let krate = work.path().join("my_verifier");
    let (_, lib, _) = scaffold_and_verify(work.path(), "my_verifier", "crypto.sig_verify");
    for f in [
        "Cargo.toml",
        "my_verifier.toml",
        "src/lib.rs",
        "tests/differential.rs",
        "benches/ratio.rs",
    ] {
        assert!(krate.join(f).is_file(), "{f} scaffolded");
    }
    // The plugin API by version, as from a registry (the checkout patched in until the
    // crate is published): the build above resolved it that way.
    let cargo_toml = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    let by_version = format!(
        "dubchain-plugin-api = {{ version = \"{}\" }}",
        dubchain_plugin_api::API_VERSION
    );
    assert!(
        cargo_toml.contains(&by_version) && cargo_toml.contains("[patch.crates-io]"),
        "{cargo_toml}"
    );

    let t = TestHost::start(&["my_verifier"]);
    t.install(
        "my_verifier",
        &std::fs::read_to_string(krate.join("my_verifier.toml")).unwrap(),
        &lib,
    );
    t.wait_for(Duration::from_secs(20), |t| {
        t.active(SIG_VERIFY.id).starts_with("my_verifier@0.1.0#")
    })
    .unwrap();
    let set = dubchain_host::workload::signature_set(5, 100, true);
    let items = set.items();
    assert_eq!(
        t.host().slots.sig_verify.verify_batch(&items),
        dubchain_host::baseline::sig_verify(&items)
    );
    assert_eq!(t.host().slot_status()[0].counters.fallbacks, 0);
}

#[test]
fn plugin_new_refuses_bad_input() {
    let work = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(dubchain_perf())
            .args(["plugin", "new"])
            .args(args)
            .arg("--dir")
            .arg(work.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(&["x", "--slot", "net.teleport"]);
    assert!(
        !ok && err.contains("no slot `net.teleport`") && err.contains("crypto.sig_verify"),
        "{err}"
    );
    let (ok, err) = run(&["Bad-Name", "--slot", "crypto.sig_verify"]);
    assert!(!ok && err.contains("lowercase"), "{err}");
    // Names cargo or rustc would refuse only once the crate is built.
    for (name, why) in [
        ("9lives", "starting with a letter"),
        ("std", "built-in crate"),
        ("fn", "Rust keyword"),
        ("serde_json", "a crate the plugin depends on"),
        ("abi_stable", "a crate the plugin depends on"),
    ] {
        let (ok, err) = run(&[name, "--slot", "storage.record_codec"]);
        assert!(!ok && err.contains(why), "{name}: {err}");
    }
    let (ok, _) = run(&["twice", "--slot", "storage.record_codec"]);
    assert!(ok);
    let (ok, err) = run(&["twice", "--slot", "storage.record_codec"]);
    assert!(!ok && err.contains("already exists"), "{err}");
    // Every refusal wrote nothing; the one crate made is whole, with no partial copy beside it.
    let mut left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["twice"]);
    assert!(work.path().join("twice/benches/ratio.rs").is_file());
    // A refusal of input exits 2, as the other commands' do.
    let out = Command::new(dubchain_perf())
        .args([
            "plugin",
            "new",
            "std",
            "--slot",
            "crypto.sig_verify",
            "--dir",
        ])
        .arg(work.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The scaffolds beyond `crypto.sig_verify` (tested above with a hot load): each builds
/// outside the workspace, its own differential test passes, and `plugin verify` passes it.
/// The quick ratio verify prints for each is the figure of a plugin equal to the baseline,
/// recorded in docs/benchmarks.md (no test asserts a time).
#[test]
fn every_other_scaffold_builds_and_passes_verify() {
    let work = tempfile::tempdir().unwrap();
    let scaffolds = [
        ("fwd_codec", "storage.record_codec"),
        ("fwd_merkle", "crypto.merkle"),
        ("fwd_tx_validation", "exec.tx_validation"),
        ("fwd_execution", "exec.block_execution"),
        ("fwd_commit", "storage.block_commit"),
        ("fwd_votes", "consensus.vote_verify"),
        ("fwd_reclaim", "mem.block_reclaim"),
        ("fwd_pool", "mem.buffer_pool"),
        ("fwd_send", "net.frame_send"),
        ("fwd_decode", "mem.tx_decode"),
        ("fwd_read", "storage.account_read"),
        ("fwd_sync", "storage.durability"),
        ("fwd_broadcast", "net.broadcast"),
        ("fwd_index", "mempool.tx_pool"),
        ("fwd_tally", "consensus.vote_tally"),
        ("fwd_queue", "net.send_queue"),
        ("fwd_run", "consensus.block_validation"),
        ("fwd_transport", "net.transport"),
        ("fwd_code_loader", "vm.code_loader"),
        ("fwd_metering", "vm.metering"),
        ("fwd_module_cache", "vm.module_cache"),
        ("fwd_contract_state", "vm.contract_state"),
        ("fwd_state_root", "storage.state_root"),
    ];
    // Every slot but `crypto.sig_verify`'s: a new slot's scaffold is built and verified too.
    let mut tested: Vec<&str> = scaffolds.iter().map(|(_, slot)| *slot).collect();
    let mut every: Vec<&str> = dubchain_plugin_api::slots::ALL
        .iter()
        .map(|s| s.id)
        .filter(|&id| id != "crypto.sig_verify")
        .collect();
    tested.sort_unstable();
    every.sort_unstable();
    assert_eq!(
        tested, every,
        "the scaffolds tested here are every other slot's"
    );
    for (name, slot) in scaffolds {
        let (_, _, report) = scaffold_and_verify(work.path(), name, slot);
        assert!(report.contains(&format!("{slot}: quick ratio")), "{report}");
        if dubchain_host::cases::processes_for(slot) > 1 {
            // A contended workload's figure pools the rounds of fresh processes.
            let pooled = format!(
                "over {} fresh processes",
                dubchain_host::cases::processes_for(slot)
            );
            assert!(report.contains(&pooled), "{report}");
        }
        eprintln!("{slot} forwarding scaffold:\n{report}");
    }
}
