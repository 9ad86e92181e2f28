//! Per-call fallback and the circuit breaker: a failing or panicking plugin is answered by
//! the baseline at once, taken off after repeated failures, and re-admitted by a probe.

use std::time::Duration;

use dubchain_host::{baseline, host::PluginState, workload, Host};
use dubchain_plugin_api::slots::{GasCounter, SIG_VERIFY};
use dubchain_tests::{assert_mentions, load, test_host, PluginDir};

fn items() -> workload::SignatureSet {
    workload::signature_set(11, 30, true)
}

/// `host` answers a batch of valid and invalid signatures as the baseline does.
fn answers_as_the_baseline(host: &Host) {
    let set = items();
    let items = set.items();
    assert_eq!(
        host.slots.sig_verify.verify_batch(&items),
        baseline::sig_verify(&items)
    );
}

/// `host` with the fixture `name` loaded as its one `crypto.sig_verify` plugin (from a
/// directory that lives as long as the returned one).
fn with_fixture(host: Host, name: &str) -> (Host, PluginDir) {
    let dir = PluginDir::new();
    dir.add_fixture(name, SIG_VERIFY.id, "");
    load(&host, &dir, &[name], "");
    (host, dir)
}

#[test]
fn errors_are_answered_by_the_baseline_and_open_the_breaker() {
    // A long backoff, so that no probe happens during the ten calls.
    let (host, _dir) = with_fixture(
        dubchain_tests::test_host_with_backoff(600_000),
        "fixture_returns_error",
    );
    let set = items();
    let items = set.items();
    let expected = baseline::sig_verify(&items);
    for _ in 0..10 {
        assert_eq!(host.slots.sig_verify.verify_batch(&items), expected);
    }
    let status = host.slots.sig_verify.status();
    // Threshold 3: three errors, then the breaker is open and the plugin is not called.
    assert_eq!(status.counters.calls, 10);
    assert_eq!(status.counters.errors, 3);
    assert_eq!(status.counters.fallbacks, 10);
    assert_eq!(status.providers[0].1.calls, 3);
    assert_eq!(status.active, "baseline");
    assert_eq!(
        host.plugin_state("fixture_returns_error"),
        PluginState::Fallback
    );
}

#[test]
fn panics_are_contained() {
    let (host, _dir) = with_fixture(test_host(), "fixture_panics");
    let set = items();
    let items = set.items();
    assert_eq!(
        host.slots.sig_verify.verify_batch(&items),
        baseline::sig_verify(&items)
    );
    assert_eq!(host.slots.sig_verify.status().counters.errors, 1);
}

/// Calls until `pred` holds on the slot status, for at most `limit` (the breaker's backoff
/// is real time; this waits for it, it does not measure anything).
fn call_until(
    host: &dubchain_host::Host, items: &[dubchain_plugin_api::types::SigItem<'_>], limit: Duration,
    pred: impl Fn(&dubchain_host::slot::SlotStatus) -> bool,
) -> bool {
    let expected = baseline::sig_verify(items);
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        assert_eq!(host.slots.sig_verify.verify_batch(items), expected);
        if pred(&host.slots.sig_verify.status()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn breaker_readmits_a_recovered_plugin_after_a_probe() {
    let dir = PluginDir::new();
    dir.add_fixture("fixture_returns_error", SIG_VERIFY.id, "");
    let host = test_host();
    // One good call (the self-test), then three failures, then good again.
    load(
        &host,
        &dir,
        &["fixture_returns_error"],
        "good_calls = 1\nfail_count = 3\n",
    );
    let set = items();
    let items = set.items();
    assert!(
        call_until(&host, &items, Duration::from_secs(5), |s| !s
            .open
            .is_empty()),
        "breaker opens"
    );
    assert_eq!(
        host.plugin_state("fixture_returns_error"),
        PluginState::Fallback
    );
    assert!(
        call_until(&host, &items, Duration::from_secs(10), |s| s
            .open
            .is_empty()),
        "breaker closes after the probe"
    );
    assert_eq!(
        host.plugin_state("fixture_returns_error"),
        PluginState::Enabled
    );
    assert!(host
        .slots
        .sig_verify
        .status()
        .active
        .starts_with("fixture_returns_error"));
}

#[test]
fn a_failed_probe_keeps_the_breaker_open() {
    let (host, _dir) = with_fixture(test_host(), "fixture_returns_error");
    let set = items();
    let items = set.items();
    assert!(call_until(&host, &items, Duration::from_secs(5), |s| !s
        .open
        .is_empty()));
    // Wait past two backoffs: probes happen and fail, so the plugin gets more calls but stays out.
    assert!(call_until(&host, &items, Duration::from_secs(10), |s| s
        .providers[0]
        .1
        .calls
        >= 5));
    assert_eq!(
        host.plugin_state("fixture_returns_error"),
        PluginState::Fallback
    );
}

#[test]
fn layered_failure_falls_to_the_layer_below() {
    // A failing layer over the parallel verifier: the parallel verifier answers, not the baseline.
    let dir = PluginDir::new();
    dir.add_first_party("crypto_parallel_verification");
    dir.add_fixture(
        "fixture_returns_error",
        SIG_VERIFY.id,
        "[ordering]\nabove = [\"crypto_parallel_verification\"]\n",
    );
    let host = test_host();
    load(
        &host,
        &dir,
        &["crypto_parallel_verification", "fixture_returns_error"],
        "",
    );
    answers_as_the_baseline(&host);
    let status = host.slots.sig_verify.status();
    assert_eq!(status.stack.len(), 2);
    assert!(status.stack[0].starts_with("crypto_parallel_verification"));
    assert_eq!(status.providers[0].1.calls, 1, "the layer below answered");
}

/// A root module built by hand, without `export_plugin!` and so without the plugin-side
/// `Guarded` checks, that answers a batch with one answer too few: the host checks the
/// shape at its own boundary, counts the provider's failure, and answers from the layer
/// below. Nothing indexes past the short answer.
#[test]
fn wrong_shapes_from_a_raw_root_module_are_caught_at_the_host_boundary() {
    let dir = PluginDir::new();
    let name = "fixture_raw_shapes";
    dir.add(
        name,
        &format!(
            "name = \"{name}\"\nversion = \"0.1.0\"\nsubsystem = \"test\"\nlibrary = \"{name}\"\napi = \"^0.3\"\nrisk = \"low\"\nprovides = [{{ slot = \"crypto.sig_verify\", version = 1 }}, {{ slot = \"crypto.merkle\", version = 1 }}]\n"
        ),
        Some(&dubchain_tests::library(name)),
    );
    let host = test_host();
    let report = load(&host, &dir, &[name], "");
    assert!(
        report.failed.is_empty(),
        "it passes the self-tests: {:?}",
        report.failed
    );

    // Ordinary batches: the plugin answers, correctly.
    let set = workload::signature_set(3, 40, true);
    let items = set.items();
    assert_eq!(
        host.slots.sig_verify.verify_batch(&items),
        baseline::sig_verify(&items)
    );
    assert_eq!(host.slots.sig_verify.status().counters.errors, 0);

    // The magic size: one verdict short. The host refuses it and the baseline answers.
    let set = workload::signature_set(4, 1_237, true);
    let items = set.items();
    let got = host.slots.sig_verify.verify_batch(&items);
    assert_eq!(got.len(), items.len());
    assert_eq!(got, baseline::sig_verify(&items));
    let st = host.slots.sig_verify.status();
    assert_eq!(
        (st.counters.errors, st.counters.fallbacks),
        (1, 1),
        "{st:?}"
    );

    // The same for crypto.merkle: seven trees, six roots.
    let trees = workload::merkle_trees(5, &[1, 2, 3, 4, 5, 6, 7]);
    let refs: Vec<&[dubchain_plugin_api::types::Bytes32]> =
        trees.iter().map(Vec::as_slice).collect();
    let roots = host.slots.merkle.roots(&refs);
    let expected: Vec<_> = trees.iter().map(|t| baseline::merkle_root(t)).collect();
    assert_eq!(roots, expected);
    let st = host.slots.merkle.status();
    assert_eq!(st.counters.errors, 1, "{st:?}");
}

/// A host that loads `isolated` plugins each in a child process served by `dubchain-perf`,
/// each call answered within 10 s.
fn isolating_host(isolated: &[&str]) -> Host {
    isolating_host_within(isolated, Duration::from_secs(10))
}

fn isolating_host_within(isolated: &[&str], call_timeout: Duration) -> Host {
    Host::new(dubchain_host::host::HostOptions {
        isolate: isolated.iter().map(|s| s.to_string()).collect(),
        launcher: Some(dubchain_host::isolate::Launcher {
            program: dubchain_tests::dubchain_perf(),
            args: vec!["plugin".into(), "serve".into()],
            call_timeout,
            deadlines: Default::default(),
        }),
        ..Default::default()
    })
}

/// An isolated plugin whose calls hang (here: take 4 s, past a 1 s deadline) is killed at
/// the deadline, and the call is answered by the baseline.
#[test]
fn an_isolated_plugin_that_does_not_answer_is_cut_off_at_its_deadline() {
    let host = isolating_host_within(&["fixture_slow_init"], Duration::from_secs(1));
    let dir = PluginDir::new();
    dir.add_fixture("fixture_slow_init", SIG_VERIFY.id, "");
    // Its self-test (in the child, under the default 30 s step deadline) takes 4 s too.
    let report = load(
        &host,
        &dir,
        &["fixture_slow_init"],
        "init_ms = 0\nverify_ms = 4000\n",
    );
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    answers_as_the_baseline(&host);
    let status = host.slots.sig_verify.status();
    assert_eq!(status.counters.errors, 1, "{status:?}");
    let providers = &status.providers;
    assert!(
        providers.iter().all(|(_, c)| c.errors <= 1),
        "{providers:?}"
    );
    let error = host
        .slots
        .sig_verify
        .providers()
        .last()
        .and_then(|p| p.last_error.lock().unwrap().clone())
        .unwrap_or_default();
    assert_mentions(&error, &["no answer within 1s"]);
}

/// A plugin that takes its process down, isolated: the node lives on, every call is
/// answered (by the baseline, the plugin's process having died), and the plugin is
/// restarted for later calls until its breaker sets it aside.
#[test]
fn an_isolated_plugin_that_aborts_costs_calls_not_the_node() {
    let host = isolating_host(&["fixture_aborts"]);
    let (host, _dir) = with_fixture(host, "fixture_aborts");
    assert!(host
        .slots
        .sig_verify
        .status()
        .active
        .starts_with("fixture_aborts@"));
    let set = items();
    let items = set.items();
    for _ in 0..5 {
        assert_eq!(
            host.slots.sig_verify.verify_batch(&items),
            baseline::sig_verify(&items)
        );
    }
    let status = host.slots.sig_verify.status();
    assert!(status.counters.errors >= 3, "{status:?}");
    assert!(
        !status.open.is_empty(),
        "the breaker set it aside: {status:?}"
    );
}

/// Isolated first-party plugins answer exactly as in the host: signatures (layered over
/// the baseline in the child), votes, transaction and block-run verdicts, and the binary
/// codec's round trip, the metering rewrite's bytes; a plugin with a slot that cannot be isolated (its calls take host
/// callbacks) is refused, saying which.
#[test]
fn isolated_plugins_answer_as_in_the_host_and_the_rest_are_refused_isolation() {
    let plugins = [
        "crypto_parallel_verification",
        "storage_binary_formats",
        "batching_signature_aggregation",
        "batching_tx_validation",
        "consensus_batching",
        "vm_gas_optimization",
        "storage_write_batching",
    ];
    let dir = PluginDir::new();
    for name in plugins {
        dir.add_first_party(name);
    }
    let host = isolating_host(&plugins);
    let report = load(&host, &dir, &plugins, "");
    let [refused]: [dubchain_host::loader::LoadError; 1] =
        report.failed.try_into().expect("one refusal");
    let text = refused.to_string();
    assert_mentions(
        &text,
        &[
            "storage_write_batching",
            "`storage.block_commit`, which cannot be isolated",
        ],
    );
    let txs = workload::tx_batch(0x150, 120, true);
    assert_eq!(
        host.slots.tx_validation.validate(&txs),
        Some(baseline::validate_txs(&txs)),
        "the isolated transaction validator answers, as the baseline"
    );
    let (height, hash, blocks, _) = workload::block_run(0x150, 12, 5, true);
    assert_eq!(
        host.slots
            .block_validation
            .check_run(height, &hash, &blocks),
        Some(baseline::check_run(height, &hash, &blocks)),
        "the isolated block-run validator answers, as the baseline"
    );
    let set = items();
    let items = set.items();
    assert_eq!(
        host.slots.sig_verify.verify_batch(&items),
        baseline::sig_verify(&items)
    );
    let votes = workload::vote_set(5, 24, true);
    let votes = votes.items();
    assert_eq!(
        host.slots.vote_verify.verify_votes(&votes),
        baseline::verify_votes(&votes)
    );
    assert!(host
        .slots
        .vote_verify
        .status()
        .active
        .starts_with("batching_signature_aggregation@"));
    let records = workload::records(3, 2, 4);
    let written = host.slots.record_codec.encode(&records);
    assert!(
        written.iter().all(|w| w.starts_with(b"DCB1")),
        "the plugin encoded them"
    );
    let refs: Vec<&[u8]> = written.iter().map(Vec::as_slice).collect();
    let read: Vec<_> = host
        .slots
        .record_codec
        .decode(&refs)
        .into_iter()
        .map(|r| r.expect("reads back"))
        .collect();
    assert_eq!(read, records);
    // The isolated metering rewrite gives the bytes the plugin gives in the host's process.
    let (in_process, _dir) = dubchain_tests::host_with_first_party(&["vm_gas_optimization"], "");
    let modules = dubchain_host::vm::contracts::test_modules();
    for (name, code, _) in &modules {
        let isolated = host.slots.metering.instrument(code);
        let metered = isolated.as_ref().expect("the isolated plugin answered");
        assert_eq!(metered.counter, GasCounter::Global, "{name}");
        assert_eq!(
            isolated,
            in_process.slots.metering.instrument(code),
            "{name}"
        );
    }
    for s in host.slot_status() {
        assert_eq!(s.counters.errors, 0, "{s:?}");
    }
}
