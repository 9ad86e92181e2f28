//! Hot reload through the watched plugin directory, with `dubchain_host::testing`: plugins
//! dropped in, rebuilt, broken and removed while calls keep running.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use dubchain_host::{baseline, testing::TestHost, workload};
use dubchain_plugin_api::slots::SIG_VERIFY;
use dubchain_tests::{assert_mentions, first_party_manifest, library, manifest_text, rebuilt};

const PLUGIN: &str = "crypto_parallel_verification";
const WAIT: Duration = Duration::from_secs(20);

/// Threads calling `crypto.sig_verify` without pause, checking every answer.
struct Callers {
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

impl Callers {
    fn start(t: &TestHost) -> Callers {
        let stop = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU64::new(0));
        let threads = (0..2)
            .map(|seed| {
                let (host, stop, calls) = (t.host().clone(), stop.clone(), calls.clone());
                std::thread::spawn(move || {
                    let set = workload::signature_set(seed, 40, true);
                    let items = set.items();
                    let expected = baseline::sig_verify(&items);
                    while !stop.load(Ordering::Relaxed) {
                        assert_eq!(host.slots.sig_verify.verify_batch(&items), expected);
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Callers {
            stop,
            calls,
            threads,
        }
    }

    /// Stops the callers; panics if any answer was wrong. Returns the number of calls.
    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("every answer equalled the baseline's");
        }
        self.calls.load(Ordering::Relaxed)
    }

    /// [`Callers::finish`], then: some calls were made, and none failed or fell back.
    fn finish_without_a_miss(self, t: &TestHost) {
        assert!(self.finish() > 0);
        let s = &t.host().slot_status()[0];
        assert_eq!(
            (s.counters.errors, s.counters.fallbacks),
            (0, 0),
            "no call lost or failed: {s:?}"
        );
    }
}

fn started_with(name: &str, manifest: &str) -> (TestHost, String) {
    let t = TestHost::start(&[name]);
    t.install(name, manifest, &library(name));
    t.wait_for(WAIT, |t| {
        t.active(SIG_VERIFY.id).starts_with(&format!("{name}@"))
    })
    .unwrap();
    let label = t.active(SIG_VERIFY.id);
    (t, label)
}

#[test]
fn a_dropped_in_plugin_is_picked_up_and_removal_returns_to_the_baseline() {
    let t = TestHost::start(&[PLUGIN]);
    assert_eq!(t.active(SIG_VERIFY.id), "baseline");
    let callers = Callers::start(&t);
    t.install(PLUGIN, &first_party_manifest(PLUGIN), &library(PLUGIN));
    t.wait_for(WAIT, |t| {
        t.active(SIG_VERIFY.id)
            .starts_with("crypto_parallel_verification@0.1.0#")
    })
    .unwrap();
    t.remove(PLUGIN);
    t.wait_for(WAIT, |t| t.active(SIG_VERIFY.id) == "baseline")
        .unwrap();
    callers.finish_without_a_miss(&t);
}

#[test]
fn a_rebuilt_library_is_swapped_in_under_continuous_calls() {
    let (t, first) = started_with(PLUGIN, &first_party_manifest(PLUGIN));
    let callers = Callers::start(&t);
    for tag in 1..=3 {
        let before = t.active(SIG_VERIFY.id);
        t.replace_library_bytes(PLUGIN, &rebuilt(&library(PLUGIN), tag));
        t.wait_for(WAIT, |t| t.active(SIG_VERIFY.id) != before)
            .unwrap();
    }
    assert_ne!(t.active(SIG_VERIFY.id), first);
    callers.finish_without_a_miss(&t);
}

/// Replaces the library with `bytes` and waits for the reload that fails; the version that
/// was live must still be serving.
fn assert_broken_reload_keeps_serving(
    t: &TestHost, name: &str, bytes: &[u8], expected_error: &str,
) {
    let before = t.active(SIG_VERIFY.id);
    let callers = Callers::start(t);
    t.replace_library_bytes(name, bytes);
    let deadline = std::time::Instant::now() + WAIT;
    let event = loop {
        let e = t.next_event(Duration::from_millis(500));
        if let Some(e) = e.filter(|e| !e.failed.is_empty()) {
            break e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed reload reported"
        );
    };
    assert!(event.failed[0].contains(expected_error), "{event}");
    assert!(
        event.failed[0].contains("the live version keeps serving"),
        "{event}"
    );
    assert_eq!(t.active(SIG_VERIFY.id), before, "{event}");
    assert!(callers.finish() > 0);
}

#[test]
fn a_library_failing_the_abi_check_leaves_the_old_version_serving() {
    let (t, _) = started_with(PLUGIN, &first_party_manifest(PLUGIN));
    let bad = std::fs::read(library("fixture_abi_mismatch")).unwrap();
    assert_broken_reload_keeps_serving(&t, PLUGIN, &bad, "has an incompatible ABI");
}

#[test]
fn a_library_with_the_wrong_hash_leaves_the_old_version_serving() {
    let pin = dubchain_host::loader::sha256_hex(&std::fs::read(library(PLUGIN)).unwrap());
    let manifest = first_party_manifest(PLUGIN).replace(
        "risk = \"low\"",
        &format!("risk = \"low\"\nsha256 = \"{pin}\""),
    );
    let (t, _) = started_with(PLUGIN, &manifest);
    assert_broken_reload_keeps_serving(
        &t,
        PLUGIN,
        &rebuilt(&library(PLUGIN), 9),
        "but the manifest pins",
    );
}

#[test]
fn a_library_panicking_in_init_leaves_the_old_version_serving() {
    let name = "fixture_reloadable";
    let (t, _) = started_with(name, &manifest_text(name, SIG_VERIFY.id, ""));
    // This test runs in its own process (nextest); the variable breaks the next init only.
    std::env::set_var("DUBCHAIN_FIXTURE_PANIC_IN_INIT", "1");
    assert_broken_reload_keeps_serving(
        &t,
        name,
        &rebuilt(&library(name), 1),
        "panics in init on purpose",
    );
}

#[test]
fn a_half_written_library_is_never_loaded_half_written() {
    let (t, first) = started_with(PLUGIN, &first_party_manifest(PLUGIN));
    let callers = Callers::start(&t);
    // The copy pauses longer than the watcher's quiet period halfway through.
    t.write_library_slowly(
        PLUGIN,
        &rebuilt(&library(PLUGIN), 7),
        Duration::from_millis(800),
    );
    t.wait_for(WAIT, |t| t.active(SIG_VERIFY.id) != first)
        .unwrap();
    callers.finish_without_a_miss(&t);
}

#[test]
fn run_watch_keeps_the_node_running_and_prints_each_swap() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let work = tempfile::tempdir().unwrap();
    let plugins = work.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let mut child = Command::new(dubchain_tests::dubchain_perf())
        .arg("--plugin-dir")
        .arg(&plugins)
        .arg("--state-dir")
        .arg(work.path().join("state"))
        .args([
            "--enable",
            "storage_binary_formats",
            "run",
            "--blocks",
            "2",
            "--txs-per-block",
            "16",
            "--accounts",
            "40",
        ])
        .args([
            "--signatures",
            "32",
            "--record-blocks",
            "1",
            "--rounds",
            "2",
            "--watch",
            "--duration",
            "10",
            "--data-dir",
        ])
        .arg(work.path().join("data"))
        .arg("--out")
        .arg(work.path().join("out"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok);
    assert!(
        lines
            .by_ref()
            .any(|l| l.starts_with("the node keeps running")),
        "watch mode started"
    );
    // Drop the package in as a deployment would: library, then manifest, each renamed into place.
    let lib = plugins.join(dubchain_host::manifest::library_file_name(
        "storage_binary_formats",
    ));
    std::fs::copy(library("storage_binary_formats"), plugins.join(".lib.tmp")).unwrap();
    std::fs::rename(plugins.join(".lib.tmp"), &lib).unwrap();
    std::fs::write(
        plugins.join(".m.tmp"),
        first_party_manifest("storage_binary_formats"),
    )
    .unwrap();
    std::fs::rename(
        plugins.join(".m.tmp"),
        plugins.join("storage_binary_formats.toml"),
    )
    .unwrap();
    let rest: Vec<String> = lines.collect();
    let status = child.wait().unwrap();
    let text = rest.join("\n");
    assert!(status.success(), "{text}");
    assert_mentions(
        &text,
        &[
            "swapped in storage_binary_formats@0.1.0#",
            "stopped at block",
        ],
    );
}
