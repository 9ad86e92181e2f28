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

use serde::{Deserialize, Serialize};

use dubchain_host::{
    cases, compare, conformance,
    host::{Host, HostOptions},
    manifest::{self, Manifest},
    measure,
    resolve::{self, Request, Source},
    session::host_api_version,
};

/// One line of the child's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub check: String,
    pub passed: bool,
    pub detail: String,
    /// A quick ratio's rounds, for the parent to pool with those of fresh processes
    /// ([`cases::processes_for`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<QuickRounds>,
}

/// The rounds behind one quick ratio.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuickRounds {
    pub slot: String,
    /// baseline time / plugin time, one per interleaved round.
    pub ratios: Vec<f64>,
    /// The manifest's promised ratio, if it makes one.
    pub promise: Option<f64>,
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
            _ => {
                let names: Vec<String> = found
                    .iter()
                    .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
                    .collect();
                return Err(format!(
                    "{}: several manifests ({}); give the one to verify",
                    path.display(),
                    names.join(", ")
                ));
            }
        }
    } else if path.exists() {
        path.to_owned()
    } else {
        return Err(format!(
            "{}: no such file or directory; give a plugin's manifest, its package directory or its crate directory",
            path.display()
        ));
    };
    let m = manifest::read(&manifest_path)
        .map_err(|e| format!("{e} (not a plugin manifest? docs/manifest.md has the format)"))?;
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
    exe: &Path, manifest_path: &Path, library: &Path, out: &mut impl Write,
) -> std::io::Result<bool> {
    let mut all_passed = true;
    let mut checks = 0;
    // Quick ratios taken over several fresh processes: printed once their rounds are in.
    let mut pooled: Vec<(String, QuickRounds)> = Vec::new();
    let ran = run_one_child(exe, manifest_path, library, None, &mut |check| {
        checks += 1;
        all_passed &= check.passed;
        match check.rounds {
            Some(q) if cases::processes_for(&q.slot) > 1 => pooled.push((check.check, q)),
            _ => print_check(out, check.passed, &check.check, &check.detail),
        }
    })?;
    all_passed &= report_crash(out, &ran)?;
    for (name, first) in pooled {
        let mut clusters = vec![first.ratios.clone()];
        for _ in 1..cases::processes_for(&first.slot) {
            let mut rounds = None;
            let ran = run_one_child(exe, manifest_path, library, Some(&first.slot), &mut |c| {
                all_passed &= c.passed;
                if !c.passed {
                    print_check(out, false, &c.check, &c.detail);
                }
                rounds = rounds.take().or(c.rounds);
            })?;
            all_passed &= report_crash(out, &ran)?;
            clusters.extend(rounds.map(|q| q.ratios));
        }
        let estimate = measure::bootstrap_clustered(&clusters, 2_000, 0x5eed);
        let detail = ratio_detail(&estimate, first.promise, &clusters);
        print_check(out, true, &name, &detail);
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

/// How one child ended: its status, the last check it reported, and what it printed on
/// standard error.
struct ChildRun {
    status: std::process::ExitStatus,
    last: String,
    stderr: String,
}

/// Runs `exe plugin verify-child` (only the quick ratio of `quick_ratio`'s slot if given),
/// handing each check it reports to `on_check` as it comes.
fn run_one_child(
    exe: &Path, manifest_path: &Path, library: &Path, quick_ratio: Option<&str>,
    on_check: &mut dyn FnMut(Check),
) -> std::io::Result<ChildRun> {
    let mut command = Command::new(exe);
    command
        .args(["plugin", "verify-child"])
        .arg(manifest_path)
        .arg("--library")
        .arg(library);
    if let Some(slot) = quick_ratio {
        command.args(["--quick-ratio", slot]);
    }
    let mut child = command
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
    let mut last = String::from("starting");
    for line in BufReader::new(stdout).lines() {
        let Ok(check) = serde_json::from_str::<Check>(&line?) else {
            continue;
        };
        last.clone_from(&check.check);
        on_check(check);
    }
    let status = child.wait()?;
    let stderr = stderr_reader.join().unwrap_or_default();
    Ok(ChildRun {
        status,
        last,
        stderr,
    })
}

/// Reports a child that did not exit cleanly; whether it did.
fn report_crash(out: &mut impl Write, ran: &ChildRun) -> std::io::Result<bool> {
    if ran.status.success() {
        return Ok(true);
    }
    let how = exit_description(&ran.status);
    writeln!(
        out,
        "FAIL  the plugin crashed the verifier's child process ({how}) after `{}`",
        ran.last
    )?;
    for l in ran.stderr.lines().filter(|l| !l.trim().is_empty()).take(5) {
        writeln!(out, "      {l}")?;
    }
    Ok(false)
}

fn print_check(out: &mut impl Write, passed: bool, check: &str, detail: &str) {
    let mark = if passed { "PASS" } else { "FAIL" };
    // The report goes to a terminal or a pipe; a closed one is not the plugin's failure.
    let _ = if detail.is_empty() {
        writeln!(out, "{mark}  {check}")
    } else {
        writeln!(out, "{mark}  {check}: {detail}")
    };
}

/// A quick ratio as `verify` prints it: median and interval, over how many processes and
/// rounds when more than one process ran, and the manifest's promise.
fn ratio_detail(e: &measure::Estimate, promise: Option<f64>, clusters: &[Vec<f64>]) -> String {
    let over = match clusters {
        [_] => String::new(),
        _ => format!(
            " over {} fresh processes of {} rounds",
            clusters.len(),
            clusters.iter().map(Vec::len).max().unwrap_or(0)
        ),
    };
    let promise = promise.map_or(String::new(), |p| {
        format!("; the manifest promises >= {p}x")
    });
    format!(
        "{:.2}x ({:.2}-{:.2}) against the baseline{over}{promise}",
        e.median, e.low, e.high
    )
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
/// With `quick_ratio`, only that slot's quick ratio runs after the load (a fresh process
/// whose rounds the parent pools).
pub fn run_child(manifest_path: &Path, library: &Path, quick_ratio: Option<&str>) -> bool {
    let emit_with = |check: &str, passed: bool, detail: String, rounds: Option<QuickRounds>| {
        let line = serde_json::to_string(&Check {
            check: check.to_owned(),
            passed,
            detail,
            rounds,
        })
        .expect("serialisable");
        println!("{line}");
        let _ = std::io::stdout().flush();
        passed
    };
    let emit = |check: &str, passed: bool, detail: String| emit_with(check, passed, detail, None);
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

    if let Some(slot) = quick_ratio {
        let (detail, rounds) = quick_ratio_of(&host, slot, &m);
        return emit_with(&format!("{slot}: quick ratio"), true, detail, rounds);
    }
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
        let (detail, rounds) = quick_ratio_of(&host, &p.slot, &m);
        emit_with(&format!("{}: quick ratio", p.slot), true, detail, rounds);
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

/// The quick ratio of `slot` as this process measured it, and its rounds.
fn quick_ratio_of(host: &Host, slot: &str, m: &Manifest) -> (String, Option<QuickRounds>) {
    let Some(c) = slot_ratio(host, slot) else {
        return ("no quick-ratio workload for this slot".to_owned(), None);
    };
    let promise = m.contract.as_ref().map(|c| c.min_speedup);
    let ratios = c.round_ratios();
    let detail = ratio_detail(&c.ratio, promise, std::slice::from_ref(&ratios));
    let rounds = QuickRounds {
        slot: slot.to_owned(),
        ratios,
        promise,
    };
    (detail, Some(rounds))
}

/// `plugin verify`'s quick ratio of `slot`: the bench suite's contract case where it has one
/// (so `verify`, `bench` and `run` report the same workload), else the host's quick-ratio
/// workload ([`compare::slot_ratio`]); `None` for a slot without a workload.
pub fn slot_ratio(host: &Host, slot: &str) -> Option<measure::Comparison> {
    micro_case_ratio(host, slot).or_else(|| compare::slot_ratio(host, slot))
}
