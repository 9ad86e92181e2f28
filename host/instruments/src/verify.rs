//! `dubchain-perf plugin verify`: the conformance suite of a plugin's slot, run against its
//! library in a child process, so that a plugin that crashes (abort, segfault) cannot take
//! the verifier down: the parent reports the crash as a failure.
//!
//! The child prints one JSON [`Check`] per line as it goes; the parent prints them as they
//! come and knows which check was running if the child dies.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use dubchain_plugin_api::slots::*;
use serde::{Deserialize, Serialize};

use dubchain_host::{
    compare, conformance,
    host::{Host, HostOptions},
    manifest::{self, Manifest},
    measure,
    resolve::{self, Request, Source},
    session::host_api_version,
    workload,
};

/// One line of the child's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub check: String,
    pub passed: bool,
    pub detail: String,
}

/// Finds the manifest and library of the plugin at `path`: a manifest file, or a directory
/// holding one plugin manifest (a plugin package, or a plugin crate whose library is in
/// `target/release/`). `library` overrides where the library is.
pub fn locate(path: &Path, library: Option<&Path>) -> Result<(PathBuf, PathBuf), String> {
    let manifest_path = if path.is_dir() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && !p.ends_with("Cargo.toml"))
            .collect();
        found.sort();
        match found.len() {
            1 => found.remove(0),
            0 => {
                return Err(format!(
                    "{}: no plugin manifest (*.toml other than Cargo.toml)",
                    path.display()
                ))
            }
            _ => return Err(format!("{}: several manifests; name one", path.display())),
        }
    } else {
        path.to_owned()
    };
    let m = manifest::read(&manifest_path).map_err(|e| e.to_string())?;
    let lib = match library {
        Some(l) => l.to_owned(),
        None => {
            let file = m
                .library
                .file_name()
                .expect("library has a file name")
                .to_owned();
            let dir = manifest_path.parent().unwrap_or(Path::new("."));
            let mut candidates = vec![m.library.clone(), dir.join("target/release").join(&file)];
            if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
                candidates.push(PathBuf::from(t).join("release").join(&file));
            }
            candidates.iter().find(|c| c.is_file()).cloned().ok_or_else(|| {
                format!(
                    "no library for `{}` at {}; build it (cargo build --release) or pass --library",
                    m.name,
                    candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" or ")
                )
            })?
        }
    };
    Ok((manifest_path, lib))
}

/// Parent side: runs `exe plugin verify-child` on the plugin and prints each check.
/// Returns whether every check passed and the child exited cleanly.
pub fn run_parent(
    exe: &Path,
    manifest_path: &Path,
    library: &Path,
    out: &mut impl Write,
) -> std::io::Result<bool> {
    let mut child = Command::new(exe)
        .args(["plugin", "verify-child"])
        .arg(manifest_path)
        .arg("--library")
        .arg(library)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    // Drain stderr concurrently so a chatty child cannot block on a full pipe.
    let mut stderr_pipe = child.stderr.take().expect("piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut text);
        text
    });
    let mut all_passed = true;
    let mut checks = 0;
    let mut last = String::from("starting");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let Ok(check) = serde_json::from_str::<Check>(&line) else {
            continue;
        };
        checks += 1;
        all_passed &= check.passed;
        let mark = if check.passed { "PASS" } else { "FAIL" };
        if check.detail.is_empty() {
            writeln!(out, "{mark}  {}", check.check)?;
        } else {
            writeln!(out, "{mark}  {}: {}", check.check, check.detail)?;
        }
        last = check.check;
    }
    let status = child.wait()?;
    let stderr = stderr_reader.join().unwrap_or_default();
    if !status.success() {
        all_passed = false;
        let how = exit_description(&status);
        writeln!(
            out,
            "FAIL  the plugin crashed the verifier's child process ({how}) after `{last}`"
        )?;
        for l in stderr.lines().filter(|l| !l.trim().is_empty()).take(5) {
            writeln!(out, "      {l}")?;
        }
    }
    if checks == 0 {
        all_passed = false;
    }
    writeln!(
        out,
        "\nverdict: {}",
        if all_passed { "PASS" } else { "FAIL" }
    )?;
    Ok(all_passed)
}

fn exit_description(status: &std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    format!("{status}")
}

/// Child side: loads the plugin into a host and runs the suite, printing checks as JSON lines.
pub fn run_child(manifest_path: &Path, library: &Path) -> bool {
    let emit = |check: &str, passed: bool, detail: String| {
        let line = serde_json::to_string(&Check {
            check: check.to_owned(),
            passed,
            detail,
        })
        .expect("serialisable");
        println!("{line}");
        let _ = std::io::stdout().flush();
        passed
    };
    let mut m: Manifest = match manifest::read(manifest_path) {
        Ok(m) => m,
        Err(e) => return emit("manifest", false, e.to_string()),
    };
    m.library = library.to_owned();
    emit(
        "manifest",
        true,
        format!("{} {} provides {}", m.name, m.version, provided(&m)),
    );

    let manifests = vec![m.clone()];
    let requests = vec![Request {
        name: m.name.clone(),
        enable: true,
        source: Source::CommandLine,
    }];
    let resolution = resolve::resolve(&manifests, &requests, &host_api_version());
    if !resolution.is_ok() {
        let problems: Vec<String> = resolution
            .problems
            .iter()
            .map(ToString::to_string)
            .collect();
        return emit("manifest against this host", false, problems.join("; "));
    }
    let host = Host::new(HostOptions::default());
    let report = host
        .apply(&manifests, &resolution, |_| String::new())
        .expect("resolution checked");
    if let Some(e) = report.failed.first() {
        return emit(
            "load: library, ABI layout, fingerprint, sha256 pin, init, self-test",
            false,
            e.to_string(),
        );
    }
    emit(
        "load: library, ABI layout, fingerprint, sha256 pin, init, self-test",
        true,
        String::new(),
    );

    let mut ok = true;
    for p in &m.provides {
        let results = conformance::run_on(&host, &p.slot);
        for r in results {
            // The host hides a plugin failure behind the baseline's answer; here it counts.
            let failure = host.slots.last_error(&p.slot);
            let (passed, detail) = match failure {
                Some(e) if r.passed => (
                    false,
                    format!("the plugin failed and the baseline answered: {e}"),
                ),
                _ => (r.passed, r.detail),
            };
            ok &= emit(&format!("{}: {}", p.slot, r.case), passed, detail);
            host.slots.clear_errors(&p.slot);
        }
        // Not a containment test (that is the host's, tested in its own suite): whether
        // the plugin answered every call of the suite itself, none failing or panicking.
        // Only where the suite's calls went through the slot: a suite that calls the
        // provider's objects directly (the self-test suites) reports failures in its cases.
        let (calls, failed) = call_counts(&host, &p.slot);
        if calls > 0 {
            ok &= emit(
                &format!("{}: every call answered by the plugin", p.slot),
                failed == 0,
                format!("{calls} calls, {failed} failed or panicked and were answered below it"),
            );
        }
        emit(
            &format!("{}: quick ratio", p.slot),
            true,
            quick_ratio(&host, &p.slot, &m),
        );
    }
    ok
}

fn provided(m: &Manifest) -> String {
    m.provides
        .iter()
        .map(|p| format!("{}@{}", p.slot, p.version))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Calls made through `slot` so far, and how many of them the provider failed.
fn call_counts(host: &Host, slot: &str) -> (u64, u64) {
    host.slot_status()
        .into_iter()
        .find(|s| s.slot == slot)
        .map_or((0, 0), |s| (s.counters.calls, s.counters.errors))
}

/// Four nodes on loopback; one broadcasts a block's worth of transaction gossip and the
/// other three receive all of it: with the host's threads, and with the provider's I/O.
fn transport_ratio(host: &Host, slot: &str) -> measure::Comparison {
    use dubchain_node::net::{self, Message};
    let msgs: Vec<Message> = workload::transactions(1, 1, 256)
        .into_iter()
        .map(Message::Tx)
        .collect();
    let run = |slots: &dubchain_host::slot::Slots| {
        let nodes = net::mesh(&[slots; 4]).expect("loopback connections");
        nodes[0].0.broadcast(slots, &msgs);
        for (_, inbox) in &nodes[1..] {
            for _ in 0..msgs.len() {
                inbox
                    .recv_timeout(std::time::Duration::from_secs(10))
                    .expect("every frame arrives");
            }
        }
        for (network, _) in nodes {
            network.shutdown();
        }
    };
    let none = dubchain_host::slot::Slots::default();
    measure::compare(slot, 5, || run(&none), || run(&host.slots))
}

/// The bench suite's contract case of `slot` (`micro::CASES`: the very workload and
/// interleaved measurement `bench` and `run` report, at [`MicroOptions::quick`] sizes), store
/// cases rolled
/// back outside the timed region; `None` for a slot the suite has no case for.
fn micro_case_ratio(host: &Host, slot: &str) -> Option<measure::Comparison> {
    use crate::micro::{self, MicroOptions};
    let o = MicroOptions::quick();
    let case = micro::cases(slot, &o).into_iter().find(|c| c.contract)?;
    let r = micro::measure_case(slot, slot, &case, host, None, None, &o);
    Some(measure::Comparison {
        name: slot.to_owned(),
        rounds: r.rounds,
        baseline_s: r.baseline_s,
        optimized_s: r.plugin_s,
        ratio: r.ratio,
    })
}

fn quick_ratio(host: &Host, slot: &str, m: &Manifest) -> String {
    let Some(c) = slot_ratio(host, slot) else {
        return "no quick-ratio workload for this slot".to_owned();
    };
    let promise = m.contract.as_ref().map_or(String::new(), |c| {
        format!("; the manifest promises >= {}x", c.min_speedup)
    });
    format!(
        "{:.2}x ({:.2}-{:.2}) against the baseline{promise}",
        c.ratio.median, c.ratio.low, c.ratio.high
    )
}

/// The quick ratios that run on the node and that the bench suite has no case for, by slot.
const NODE_RATIOS: &[(SlotInfo, fn(&Host, &str) -> measure::Comparison)] =
    &[(TRANSPORT, transport_ratio)];

/// `plugin verify`'s quick ratio of `slot`: the bench suite's contract case where it has one
/// (so `verify`, `bench` and `run` report the same workload), else the slot's quick-ratio
/// workload (on the node where it needs one, else the host's [`compare::slot_ratio`]);
/// `None` for a slot without a workload.
pub fn slot_ratio(host: &Host, slot: &str) -> Option<measure::Comparison> {
    if let Some(c) = micro_case_ratio(host, slot) {
        return Some(c);
    }
    match NODE_RATIOS.iter().find(|(info, _)| info.id == slot) {
        Some((_, ratio)) => Some(ratio(host, slot)),
        None => compare::slot_ratio(host, slot),
    }
}
