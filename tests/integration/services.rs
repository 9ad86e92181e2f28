//! Host services: first-party plugins calling the host's `crypto.sig_verify` through the
//! node's own path (the current stack, the baseline underneath), the refusal of an
//! undeclared call at the boundary, and hot swaps seen by a user of the slot.

use dubchain_host::{baseline, loader::LoadError, workload, Host};
use dubchain_tests::{assert_mentions, first_party_manifest, load, test_host, PluginDir};

/// Calls the `crypto.sig_verify` provider labelled `plugin@...` has answered.
fn layer_calls(host: &Host, plugin: &str) -> u64 {
    let status = host.slots.sig_verify.status();
    status
        .providers
        .iter()
        .find(|(label, _)| label.starts_with(&format!("{plugin}@")))
        .map_or(0, |(_, c)| c.calls)
}

fn dir_with(names: &[&str]) -> PluginDir {
    let dir = PluginDir::new();
    for name in names {
        dir.add_first_party(name);
    }
    dir
}

/// `consensus_batching` over a verification cache: the run's signatures reach the cache (its
/// counters move), the verdicts on adversarial runs are the baseline's, and a second check of
/// the same valid run is answered from the cache.
#[test]
fn block_runs_verify_through_the_sig_verify_stack() {
    let names = ["consensus_batching", "crypto_verification_caching"];
    let dir = dir_with(&names);
    let host = test_host();
    let report = load(&host, &dir, &names, "");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    for seed in 0..6u64 {
        dubchain_tests::check_block_run(&host, seed, 12, 9, true);
    }
    assert!(layer_calls(&host, "crypto_verification_caching") > 0);

    let (height, hash, run, _) = workload::block_run(77, 8, 16, false);
    let check = |host: &Host| host.slots.block_validation.check_run(height, &hash, &run);
    let first = check(&host).expect("the plugin answers");
    let before = layer_calls(&host, "crypto_verification_caching");
    assert_eq!(check(&host).expect("the plugin answers"), first);
    assert!(
        layer_calls(&host, "crypto_verification_caching") > before,
        "the second check went through the cache"
    );
    assert_eq!(host.slots.block_validation.status().counters.fallbacks, 0);
}

/// `batching_tx_validation` verifies an admission batch through the stack (the cache learns
/// it), and after the cache is swapped out, the same calls are served by the baseline.
#[test]
fn admission_fills_the_cache_and_follows_a_hot_swap() {
    let names = ["batching_tx_validation", "crypto_verification_caching"];
    let dir = dir_with(&names);
    let host = test_host();
    load(&host, &dir, &names, "");
    let txs = workload::tx_batch(5, 120, true);
    let expected = baseline::validate_txs(&txs);
    assert_eq!(
        host.slots.tx_validation.validate(&txs),
        Some(expected.clone())
    );
    let cached = layer_calls(&host, "crypto_verification_caching");
    assert!(cached > 0);

    // The cache goes; the plugin stays and is served by what is below (the baseline).
    load(&host, &dir, &["batching_tx_validation"], "");
    assert!(host.slots.sig_verify.status().stack.is_empty());
    let calls = host.slots.sig_verify.status().counters.calls;
    assert_eq!(host.slots.tx_validation.validate(&txs), Some(expected));
    assert!(host.slots.sig_verify.status().counters.calls > calls);
}

/// A library that calls a host slot its manifest does not declare is refused at the
/// boundary: its self-test's call fails, so the load fails with the refusal, which names the
/// manifest entry to add; the slot keeps the baseline.
#[test]
fn an_undeclared_use_is_refused_at_the_boundary() {
    let text = first_party_manifest("consensus_batching");
    let start = text
        .find("[[uses]]")
        .expect("the manifest declares its use");
    let end = start + text[start..].find("\n\n").expect("the entry ends");
    let undeclared = format!("{}{}", &text[..start], &text[end..]);
    let dir = PluginDir::new();
    dir.add_built("consensus_batching", &undeclared);
    let host = test_host();
    let report = load(&host, &dir, &["consensus_batching"], "");
    let [LoadError::SelfTestFailed { detail, .. }] = report.failed.as_slice() else {
        panic!("expected a failed self-test: {:?}", report.failed);
    };
    assert_mentions(detail, &["plugin `consensus_batching` called `crypto.sig_verify` through host services without declaring it; add `[[uses]] slot = \"crypto.sig_verify\"`"]);
    assert!(!host.slots.block_validation.has_provider());
}

/// `plugins plan` and `plugins why` on the real manifests: the use with the stack that
/// serves it, the recommendation as a suggestion, and, for a provider switched off, which
/// user loses it and what serves that user instead. (Nothing is loaded: the asked-about
/// plugin is off.)
#[test]
fn plan_and_why_show_the_real_edges() {
    let dir = dir_with(&[
        "batching_tx_validation",
        "crypto_verification_caching",
        "crypto_parallel_verification",
    ]);
    let work = tempfile::tempdir().unwrap();
    let perf = |args: &[&str]| {
        let out = std::process::Command::new(dubchain_tests::dubchain_perf())
            .current_dir(work.path())
            .env_remove("DUBCHAIN_PROFILE")
            .env_remove("DUBCHAIN_CONFIG")
            .env_remove("DUBCHAIN_PLUGIN_DIR")
            .arg("--plugin-dir")
            .arg(dir.path())
            .arg("--state-dir")
            .arg(work.path().join("state"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let plan = perf(&[
        "--enable",
        "batching_tx_validation",
        "--enable",
        "crypto_verification_caching",
        "plugins",
        "plan",
    ]);
    assert_mentions(&plan, &["batching_tx_validation uses crypto.sig_verify (the batch's signatures in one call through the node's verification stack, so a verification cache learns them at admission); served by baseline > crypto_verification_caching", "`batching_tx_validation` recommends `crypto_parallel_verification` (the batch's signatures are then verified on every core, not on one thread); it is off", "no problems"]);
    let why = perf(&[
        "--enable",
        "batching_tx_validation",
        "--enable",
        "crypto_parallel_verification",
        "plugins",
        "why",
        "crypto_verification_caching",
    ]);
    assert!(
        why.contains("crypto_verification_caching is OFF")
            && why.contains(
                "while it is off, `batching_tx_validation` (which calls crypto.sig_verify: "
            )
            && why.contains("is served by baseline > crypto_parallel_verification"),
        "{why}"
    );
}
