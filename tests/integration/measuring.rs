//! `dubchain-perf bench` and `dubchain-perf profile`, run as a user runs them, on first-party
//! plugins and small workloads. Nothing here asserts a time: only that the instruments
//! measure, decide and report what they must.

use std::{
    path::Path,
    process::{Command, Output},
};

use dubchain_tests::{assert_mentions, dubchain_perf, succeeded, PluginDir};

fn perf(plugins: &Path, work: &Path, args: &[&str]) -> Output {
    Command::new(dubchain_perf())
        .current_dir(work)
        .env_remove("DUBCHAIN_PROFILE")
        .env_remove("DUBCHAIN_CONFIG")
        .env_remove("DUBCHAIN_PLUGIN_DIR")
        .arg("--plugin-dir")
        .arg(plugins)
        .args(["--state-dir", "state"])
        .args(args)
        .output()
        .expect("run dubchain-perf")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Small sizes: the point is the machinery, not the figures.
const SMALL: &[&str] = &[
    "--rounds",
    "3",
    "--signatures",
    "48",
    "--record-blocks",
    "2",
    "--blocks",
    "3",
    "--txs-per-block",
    "24",
    "--accounts",
    "60",
    "--runs",
    "1",
    "--out",
    "bench",
];

/// The smallest bench of `storage_binary_formats` alone: its micro cases only, two rounds
/// of one block's records, reports under `bench`.
const CODEC_BENCH: &[&str] = &[
    "--enable=storage_binary_formats",
    "bench",
    "--no-system",
    "--rounds",
    "2",
    "--record-blocks",
    "1",
    "--out",
    "bench",
];

fn plugins() -> PluginDir {
    let dir = PluginDir::new();
    for p in [
        "crypto_parallel_verification",
        "crypto_verification_caching",
        "storage_binary_formats",
    ] {
        dir.add_first_party(p);
    }
    dir
}

#[test]
fn bench_reports_saves_compares_and_refuses_other_fingerprints() {
    let dir = plugins();
    let work = tempfile::tempdir().unwrap();
    let on = [
        "--enable",
        "crypto_parallel_verification",
        "--enable",
        "storage_binary_formats",
    ];
    let budgets = work.path().join("budgets.toml");
    std::fs::write(
        &budgets,
        "[[budget]]\nname = \"impossible throughput\"\nmetric = \"system.plugins.throughput\"\nthreshold = 1e12\nunit = \"tx/s\"\nseverity = \"error\"\n\n\
         [[budget]]\nname = \"latency, generous\"\nmetric = \"system.plugins.block_latency_p99\"\nthreshold = 1e9\nunit = \"ms\"\nseverity = \"warning\"\n",
    )
    .unwrap();

    // First run: saved as `first`, with a budget that must be violated.
    let out = perf(
        dir.path(),
        work.path(),
        &[
            &on[..],
            &[
                "bench",
                "--save-baseline",
                "first",
                "--budgets",
                "budgets.toml",
            ],
            SMALL,
        ]
        .concat(),
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error budget is violated\n{stdout}\n{stderr}"
    );
    assert_mentions(&stderr, &["FAIL: budget: impossible throughput"]);
    assert!(!stderr.contains("latency, generous"), "{stderr}");
    assert_mentions(
        &stdout,
        &[
            "crypto_parallel_verification.sig_verify",
            "storage_binary_formats.record_encode",
            "storage_binary_formats.record_decode",
        ],
    );
    assert!(
        stdout.contains(">= 1.8x") && stdout.contains(">= 5x"),
        "promises shown\n{stdout}"
    );
    // So few rounds and runs are said to be worth less than a 95% interval: the rounds'
    // intervals with their real confidence, one run per side with no verdict at all.
    assert_mentions(&stdout, &["with 3 rounds each interval is the smallest and largest round's ratio, which holds the median with 75.0% confidence", "one run: no verdict"]);
    let bench = work.path().join("bench");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bench.join("bench.json")).unwrap()).unwrap();
    assert_eq!(json["schema"], "dubchain-bench/1");
    assert_eq!(
        json["system"]["identical"], true,
        "same chain on both sides"
    );
    assert!(json["micro"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["identical"] == true));
    // Every case's allocations per run of each side, counted (untimed) by the binary's
    // counting allocator, plugins' heaps included.
    for m in json["micro"].as_array().unwrap() {
        let counts = m["allocations"].as_array().map(Vec::as_slice);
        assert!(
            matches!(counts, Some([b, p]) if b.is_u64() && p.is_u64()),
            "{m}"
        );
    }
    assert_mentions(&stdout, &["allocations, baseline / plugin"]);
    assert!(json["fingerprint"]["id"].as_str().unwrap().len() == 12);
    // The build's optimisation is said, not only cargo's profile name (`debug`).
    assert_mentions(&stdout, &["host opt-level 3, debug assertions off"]);
    assert!(bench.join("baselines/first.json").is_file());

    // Second run against `first`: same fingerprint, so it is compared. A huge threshold
    // keeps machine noise from deciding this test; the decision itself is unit-tested.
    let out = perf(
        dir.path(),
        work.path(),
        &[
            &on[..],
            &["bench", "--baseline", "first", "--threshold", "100"],
            SMALL,
        ]
        .concat(),
    );
    let stdout = succeeded(&out, "dubchain-perf");
    assert_mentions(&stdout, &["Against saved run `first`"]);
    assert_mentions(
        &stdout,
        &["micro.crypto_parallel_verification.sig_verify.plugin"],
    );
    let html = std::fs::read_to_string(bench.join("bench.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    for plot in [
        "speed-up ratios",
        "block latency distribution",
        "history of ratios",
    ] {
        assert!(
            html.contains(&format!("aria-label=\"{plot}\"")),
            "{plot} plot missing"
        );
    }
    assert!(
        !html.contains("<script") && !html.contains("src=\"http"),
        "self-contained"
    );

    // Another workload is refused before anything is measured, each differing series
    // named: a regression gate must not compare 64 signatures with 48, nor pass having
    // compared nothing.
    let more: Vec<&str> = SMALL
        .iter()
        .map(|a| if *a == "48" { "64" } else { a })
        .collect();
    for (args, named) in [
        (
            [
                &on[..],
                &["bench", "--baseline", "first", "--no-system"],
                &more,
            ]
            .concat(),
            "micro.crypto_parallel_verification.sig_verify: saved `",
        ),
        (
            [
                &on[..],
                &["bench", "--baseline", "first", "--no-micro", "--zipf", "0"],
                SMALL,
            ]
            .concat(),
            "system: saved `",
        ),
        (
            [
                &on[..],
                &["bench", "--baseline", "first", "--no-micro", "--no-system"],
                SMALL,
            ]
            .concat(),
            "it has nothing this run measures",
        ),
    ] {
        let out = perf(dir.path(), work.path(), &args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}\n{stderr}");
        assert!(
            stderr.contains("refusing to compare with saved run `first`") && stderr.contains(named),
            "{stderr}"
        );
        assert!(!text(&out.stdout).contains("micro"), "nothing measured");
    }

    // A different plugin set is a different fingerprint: refused, then allowed on request.
    let other = [&on[..], &["--enable", "crypto_verification_caching"]].concat();
    let out = perf(
        dir.path(),
        work.path(),
        &[
            &other[..],
            &["bench", "--baseline", "first", "--no-system"],
            SMALL,
        ]
        .concat(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_mentions(
        &stderr,
        &["refusing to compare with saved run `first`", "plugin set:"],
    );
    let out = perf(
        dir.path(),
        work.path(),
        &[
            &other[..],
            &[
                "bench",
                "--baseline",
                "first",
                "--no-system",
                "--allow-fingerprint-mismatch",
                "--threshold",
                "100",
            ],
            SMALL,
        ]
        .concat(),
    );
    let stdout = succeeded(&out, "dubchain-perf");
    assert_mentions(
        &stdout,
        &[
            "fingerprint differs (compared on request): plugin set",
            // What only one run measured is said, not silently dropped.
            "Not compared",
            "micro.crypto_verification_caching.sig_verify: this run only",
            // A layered stack is measured as a whole too.
            "stack.crypto.sig_verify.sig_verify",
        ],
    );
}

#[test]
fn bench_refuses_bad_budgets_and_unknown_baselines_before_measuring() {
    let dir = plugins();
    let work = tempfile::tempdir().unwrap();
    // `bench ARGS`, which must be refused as bad input (exit 2): what it says on stderr.
    let refused = |args: &[&str]| {
        let out = perf(dir.path(), work.path(), &[&["bench"], args].concat());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        stderr
    };
    let budgets = |text: &str| std::fs::write(work.path().join("budgets.toml"), text).unwrap();
    let latency = |threshold: &str, unit: &str| {
        format!(
            "[[budget]]\nname = \"latency\"\nmetric = \"system.plugins.block_latency_p99\"\nthreshold = {threshold}\nunit = \"{unit}\"\nseverity = \"error\"\n"
        )
    };
    budgets(&latency("0.1", "s"));
    assert_mentions(
        &refused(&["--budgets", "budgets.toml"]),
        &["budgets.toml: budget `latency`: metric `system.plugins.block_latency_p99` is in ms, the budget says s"],
    );

    // Budgets on nothing this run measures: a gate that checks nothing is refused, not passed.
    budgets(&latency("100", "ms"));
    assert_mentions(
        &refused(&["--no-system", "--budgets", "budgets.toml"]),
        &["budgets.toml: none of its 1 budget(s) is on a metric this run measures"],
    );

    budgets("[[budget]]\nname = 3\n");
    assert_mentions(
        &refused(&["--budgets", "budgets.toml"]),
        &["budgets.toml:2"],
    );

    // --require-promises where no promise is measured would pass having checked nothing.
    for (args, why) in [
        ("--no-micro", "the microbenchmarks are skipped"),
        ("--no-system", "no enabled plugin's manifest promises one"),
    ] {
        assert_mentions(
            &refused(&["--require-promises", args]),
            &["--require-promises", why],
        );
    }

    assert_mentions(
        &refused(&["--baseline", "never-saved"]),
        &["never-saved.json", "--save-baseline"],
    );

    // A saved run cut short (a full disk, an editor): named, and what to do, before measuring.
    let saved = work.path().join("target/dubchain/bench/baselines");
    std::fs::create_dir_all(&saved).unwrap();
    std::fs::write(saved.join("cut.json"), "{\"schema\": ").unwrap();
    assert_mentions(
        &refused(&["--baseline", "cut"]),
        &["cut.json: not a saved benchmark run", "--save-baseline cut"],
    );
}

#[test]
fn profile_writes_flamegraphs_pprof_hotspots_and_recommendations() {
    let dir = plugins();
    let work = tempfile::tempdir().unwrap();
    // Signature verification's workload, 256 signatures a run.
    const SIG_PROFILE: &[&str] = &["profile", "--workload", "sig_verify", "--signatures", "256"];
    // Each profile: the arguments, and the report it writes to `out`.
    let hotspots = |args: &[&str], out: &str| {
        let run = perf(dir.path(), work.path(), &[args, &["--out", out]].concat());
        assert!(run.status.success(), "{}", text(&run.stderr));
        std::fs::read_to_string(work.path().join(out).join("hotspots.md")).unwrap()
    };
    // Nothing enabled: the profile of signature verification must recommend the plugins
    // that provide crypto.sig_verify, with their promises.
    let md = hotspots(&[SIG_PROFILE, &["--repeat", "15"]].concat(), "prof");
    let prof = work.path().join("prof");
    for side in ["baseline", "plugins"] {
        let svg = std::fs::read_to_string(prof.join(format!("flamegraph-{side}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "flamegraph is an SVG");
        assert!(
            std::fs::metadata(prof.join(format!("profile-{side}.pb")))
                .unwrap()
                .len()
                > 100
        );
    }
    assert_mentions(&md, &["ed25519 verification"]);
    assert_mentions(
        &md,
        &["enable crypto_parallel_verification, promised >= 1.8x"],
    );
    assert_mentions(&md, &["top by self samples", "top by total samples"]);
    assert!(md.contains("allocations"), "heap counted\n{md}");
    assert!(
        md.contains(
            "No plugin is enabled (profile `development`): this side ran the baselines too"
        ),
        "a plugins side with no plugin says so\n{md}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(prof.join("hotspots.json")).unwrap()).unwrap();
    assert!(json["sides"][0]["samples"].as_u64().unwrap() > 0);
    // Stamped with the fingerprint of the plugins side's set, as a benchmark result is.
    assert_eq!(json["fingerprint"]["id"].as_str().unwrap().len(), 12);
    assert!(
        md.contains(&format!(
            "feature set `{}`",
            json["fingerprint"]["plugins"]["feature_set_id"]
                .as_str()
                .unwrap()
        )),
        "{md}"
    );

    // The chain workload: memory per stage, and a plugin's own frames attributed to it.
    let md = hotspots(
        &[
            "--enable",
            "crypto_parallel_verification",
            "profile",
            "--workload",
            "chain",
            "--blocks",
            "2",
            "--txs-per-block",
            "24",
            "--accounts",
            "60",
        ],
        "prof-chain",
    );
    assert!(!md.contains("No plugin is enabled"), "{md}");
    assert_mentions(
        &md,
        &[
            "| admission |",
            "| production |",
            "| validation |",
            "| consensus |",
        ],
    );
    assert_mentions(&md, &["## baseline:", "## plugins:"]);

    // A plugin whose library's name starts `libc` is sampled, not taken for libc and
    // dropped: its own frames are its group's.
    let md = hotspots(
        &[
            &[
                "--profile",
                "baseline",
                "--enable",
                "crypto_parallel_verification",
            ],
            SIG_PROFILE,
            &["--repeat", "100", "--side", "plugins"],
        ]
        .concat(),
        "prof-libc",
    );
    assert_mentions(&md, &["| plugin crypto_parallel_verification |"]);

    // One case of any slot, by the name bench gives it: its inputs (gossiped transactions,
    // signed) are made before the profiler starts, so no signing is sampled.
    let md = hotspots(
        &[
            "--profile",
            "baseline",
            "--enable",
            "memory_buffer_reuse",
            "profile",
            "--workload",
            "framing",
        ],
        "prof-framing",
    );
    // Without --repeat, the cases repeat until the sampled run has used 2 s of CPU.
    assert_mentions(&md, &[", the cases ", "`framing` workload", "## plugins:"]);
    assert!(
        !md.contains("ed25519"),
        "input generation was sampled\n{md}"
    );
}

/// `bench --processes 3`: every micro case runs in this process and two fresh ones, and
/// its figure pools their rounds: three times the rounds, the median of all of them, an
/// interval around it; the children's scratch reports are gone afterwards. A count of 0,
/// or processes without microbenchmarks, is refused before anything runs.
#[test]
fn bench_pools_the_rounds_of_fresh_processes() {
    let work = tempfile::tempdir().unwrap();
    let dir = plugins();
    let out = perf(
        dir.path(),
        work.path(),
        &[CODEC_BENCH, &["--processes", "3"]].concat(),
    );
    let stdout = succeeded(&out, "dubchain-perf");
    assert_mentions(&stdout, &["interleaved, in each of 3 fresh processes"]);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("bench/bench.json")).unwrap())
            .unwrap();
    let micro = json["micro"].as_array().unwrap();
    assert!(micro
        .iter()
        .any(|m| m["id"] == "storage_binary_formats.record_encode"));
    for m in micro {
        let series = |k: &str| -> Vec<f64> {
            m[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let (b, p) = (series("baseline_s"), series("plugin_s"));
        assert_eq!(m["processes"], 3, "{m}");
        assert_eq!(m["rounds"].as_u64().unwrap() as usize, b.len(), "{m}");
        assert!(
            b.len() >= 6 && b.len() % 3 == 0 && p.len() == b.len(),
            "{m}"
        );
        let median =
            dubchain_host::measure::median(&mut dubchain_host::measure::round_ratios(&b, &p));
        let r = &m["ratio"];
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
        assert!(close(r["median"].as_f64().unwrap(), median), "{m}");
        assert!(
            r["low"].as_f64().unwrap() <= median && median <= r["high"].as_f64().unwrap(),
            "{m}"
        );
    }
    assert!(!work.path().join("bench/processes").exists());

    for (bad, says) in [
        (&["bench", "--processes", "0"][..], "--processes"),
        (
            &["bench", "--processes", "2", "--no-micro"][..],
            "--no-micro",
        ),
    ] {
        let out = perf(dir.path(), work.path(), bad);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains(says), "{bad:?}: {stderr}");
    }
}

#[test]
fn instruction_counts_come_from_callgrind() {
    // Not skipped where valgrind is missing: a test that passes without running proves
    // nothing, and `.ci/install-deps` (which `cargo xtask test` runs first) installs it.
    assert!(
        dubchain_instruments::callgrind::available(),
        "valgrind is not installed: `.ci/install-deps` installs it (cargo xtask test runs it)"
    );
    let dir = plugins();
    let work = tempfile::tempdir().unwrap();
    let args = ["--instructions", "--instr-iterations", "1"];
    let out = perf(dir.path(), work.path(), &[CODEC_BENCH, &args].concat());
    let stdout = succeeded(&out, "dubchain-perf");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("bench/bench.json")).unwrap())
            .unwrap();
    let instr = json["instructions"].as_array().unwrap();
    assert_eq!(instr.len(), 2, "{instr:?}");
    for i in instr {
        assert!(i["baseline_ir"].as_u64().unwrap() > 1_000, "{i}");
        assert!(i["plugin_ir"].as_u64().unwrap() > 100, "{i}");
    }
    assert_mentions(&stdout, &["Instructions (callgrind"]);
}

/// `bench --module-restart`: fresh hosts with `vm_jit_caching`, modules compiled after the
/// restart on one side and loaded from the artifacts a first host wrote on the other; every
/// first call checked against the baseline, and the table printed (no time asserted).
#[test]
fn module_restart_loads_artifacts_on_fresh_hosts_with_the_baselines_answers() {
    let dir = PluginDir::new();
    dir.add_first_party("vm_jit_caching");
    let work = tempfile::tempdir().unwrap();
    let out = perf(
        dir.path(),
        work.path(),
        &["bench", "--module-restart", "2", "--out", "out"],
    );
    let stdout = succeeded(&out, "dubchain-perf");
    assert_mentions(
        &stdout,
        &[
            "restarted 2 times per side",
            "first call of each of 20 contracts",
            "Every answer the baseline's: yes.",
        ],
    );
    let artifacts = std::fs::read_dir(work.path().join("out/restart-artifacts"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count();
    assert!(artifacts >= 20, "{artifacts} artifacts written");

    // Without the plugin there is nothing to measure: refused input.
    let none = PluginDir::new();
    let out = perf(
        none.path(),
        work.path(),
        &["bench", "--module-restart", "2", "--out", "out"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no plugin `vm_jit_caching`"));
}

/// A plugin's allocations are counted with the host's: its heap counts them, and the host
/// turns those counters on and reads them with its own, so the counts `bench` and `profile`
/// take include them. Each fixture takes 10,000 blocks per call; the same call on the
/// baselines takes far fewer. A plugin with `allocator: own` loads and is not counted.
#[test]
fn a_plugins_allocations_are_counted_with_the_hosts() {
    use dubchain_host::{alloc_count, workload, Host};
    let loaded = |name: &str| {
        let dir = PluginDir::new();
        dir.add_fixture(name, dubchain_plugin_api::slots::SIG_VERIFY.id, "");
        let host = dubchain_tests::test_host();
        let report = dubchain_tests::load(&host, &dir, &[name], "boxes = 10000\n");
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        (host, dir)
    };
    let (host, _dir) = loaded("fixture_allocates");
    let (own, _own_dir) = loaded("fixture_own_allocator");
    let set = workload::signature_set(3, 8, true);
    let items = set.items();
    let counted = |host: &Host| {
        let before = alloc_count::snapshot();
        let counting = alloc_count::counting();
        let verdicts = host.slots.sig_verify.verify_batch(&items);
        drop(counting);
        assert_eq!(verdicts, dubchain_host::baseline::sig_verify(&items));
        alloc_count::snapshot().since(&before).allocations
    };
    assert!(
        alloc_count::installed(),
        "the test binary counts allocations"
    );
    let with_plugin = counted(&host);
    let baselines = counted(&dubchain_tests::test_host());
    let with_own = counted(&own);
    assert!(
        with_plugin >= 10_000,
        "the plugin's blocks counted: {with_plugin}"
    );
    assert!(baselines < 10_000, "the baselines take fewer: {baselines}");
    assert!(
        with_own < 10_000,
        "an allocator of the plugin's own is not counted: {with_own}"
    );
    assert!(own
        .slots
        .sig_verify
        .status()
        .active
        .starts_with("fixture_own_allocator@"));
}

/// The host's baselines hash with the portable SHA-2 code (`sha2` 0.10 with `force-soft`,
/// docs/ARCHITECTURE.md, "Baselines are portable"). `sha2` 0.11 picks SHA-NI at run time
/// and is for plugins' own code only: no host crate and not the plugin API may depend on
/// it, or a baseline could run the instructions `crypto_hardware_acceleration` is measured
/// for. Read from the resolved graph in `Cargo.lock`.
#[test]
fn no_host_crate_hashes_with_the_run_time_detected_sha2() {
    let lock = std::fs::read_to_string(dubchain_tests::checkout().join("Cargo.lock"))
        .expect("the workspace's Cargo.lock");
    let host = [
        "dubchain-plugin-api",
        "dubchain-host",
        "dubchain-node",
        "dubchain-instruments",
        "dubchain-monitor",
        "dubchain-perf",
    ];
    let mut seen = 0;
    for package in lock.split("[[package]]") {
        let Some(name) = package
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|n| n.strip_suffix('"'))
        else {
            continue;
        };
        if !host.contains(&name) {
            continue;
        }
        seen += 1;
        let sha2: Vec<&str> = package
            .lines()
            .map(|l| l.trim().trim_matches(|c| c == '"' || c == ','))
            .filter(|d| *d == "sha2" || d.starts_with("sha2 "))
            .collect();
        assert!(
            sha2.iter()
                .all(|d| *d == "sha2" || d.starts_with("sha2 0.10.")),
            "{name} depends on {sha2:?}"
        );
    }
    assert_eq!(seen, host.len(), "every host crate is in Cargo.lock");
}
