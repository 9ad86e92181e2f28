//! Project automation, run as `cargo xtask <task>`:
//!
//! * `plugins`: build the first-party plugins (release, their own target directory) and
//!   assemble the drop-in directory `target/dubchain/plugins/`.
//! * `run [ARGS]`: the main job: `plugins`, then the host (the tests' build), then
//!   `dubchain-perf plugins list` and `dubchain-perf run` with the `production` profile
//!   (ARGS go to `run`).
//! * `test`: the whole test suite (nextest when installed, else `cargo test`).
//! * `lint`: `cargo fmt --check` and `cargo clippy --workspace --all-targets -D warnings`
//!   (what `.ci/run` runs before `test`).
//! * `fuzz [CASES]`: the property-based fuzz suite (`tests/integration/fuzz.rs`) with CASES
//!   cases per property (default 200,000), its result written to `docs/fuzzing.md`.
//! * `crash [KILLS]`: KILLS (default 100) SIGKILLs of `chain produce` with group commit, each
//!   followed by `chain check`, then KILLS of `chain commit-race` (8 committers on one store,
//!   group commit), each followed by a check that every acknowledged commit is there; the
//!   outcome written to `docs/benchmarks.md`.
//! * `growth [ACCOUNTS...]`: the state-growth curve: the system benchmark at each genesis
//!   size (default 10,000, 30,000 and 100,000 accounts), baselines against
//!   `storage_incremental_root`, written to `docs/benchmarks.md`.
//! * `bench [ARGS]`: the criterion benchmarks (ARGS go to criterion).
//! * `perf ARGS`: `plugins`, the host build, then `dubchain-perf --plugin-dir
//!   target/dubchain/plugins ARGS` from the root (for example
//!   `cargo xtask perf --profile production bench`, `cargo xtask perf profile`).
//!
//! Each first runs `.ci/install-deps`, so a fresh Debian machine gets the system packages
//! the build needs (libclang for RocksDB's bindings) without a manual step.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

/// What `cargo xtask` with no task, an unknown one or `--help` prints.
const USAGE: &str = "usage: cargo xtask <task> [ARGS]

tasks:
  run [ARGS]           the main job: build the plugins and the host, list the plugins, run
                       the node on the baselines and with the production plugins (ARGS go to
                       `dubchain-perf run`)
  test [ARGS]          the test suite (nextest when installed)
  lint                 cargo fmt --check, clippy -D warnings, the plugin API's docs and package
  plugins              build the first-party plugins into target/dubchain/plugins/
  perf ARGS            dubchain-perf ARGS over target/dubchain/plugins/
  bench [ARGS]         the criterion benchmarks
  fuzz [CASES]         the property-based fuzz suite, written to docs/fuzzing.md
  crash [KILLS]        SIGKILL crash tests of chain produce and commit-race
  growth [ACCOUNTS...] the state-growth curve, written to docs/benchmarks.md";

fn main() -> std::process::ExitCode {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    if matches!(task.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return std::process::ExitCode::SUCCESS;
    }
    match task_main(&task, &rest) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line per cause, no backtrace: the failing command has said what it had to.
            eprintln!("error: {e:#}");
            if e.downcast_ref::<UnknownTask>().is_some() {
                eprintln!("\n{USAGE}");
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}

/// A task `cargo xtask` does not have.
#[derive(Debug)]
struct UnknownTask(String);

impl std::fmt::Display for UnknownTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("no task given")
        } else {
            write!(f, "unknown task `{}`", self.0)
        }
    }
}

impl std::error::Error for UnknownTask {}

fn task_main(task: &str, rest: &[String]) -> Result<()> {
    let root = project_root();
    if !matches!(
        task,
        "plugins" | "run" | "test" | "bench" | "perf" | "lint" | "fuzz" | "crash" | "growth"
    ) {
        return Err(UnknownTask(task.to_owned()).into());
    }
    install_system_deps(&root)?;
    match task {
        "plugins" => assemble_plugins(&root).map(|_| ()),
        "run" => main_job(&root, rest),
        "perf" => perf(&root, rest),
        "test" => test(&root, rest),
        "lint" => lint(&root),
        "fuzz" => fuzz(&root, rest.first().map(String::as_str)),
        "crash" => crash(&root, rest.first().map(String::as_str)),
        "growth" => growth(&root, rest),
        "bench" => {
            assemble_plugins(&root)?;
            run(Command::new(cargo())
                .current_dir(&root)
                .args(["bench", "-p", "dubchain-benches"])
                .args(rest))
        }
        _ => unreachable!("checked above"),
    }
}

/// The habits CI holds the tree to, before the tests: formatted, and no clippy warning in
/// any crate or target of the workspace.
fn lint(root: &Path) -> Result<()> {
    run(Command::new(cargo())
        .current_dir(root)
        .args(["fmt", "--all", "--check"]))?;
    run(Command::new(cargo()).current_dir(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ]))?;
    plugin_api_as_a_crate(root)
}

/// The plugin API is the crate third parties build against: its docs build without a
/// warning, and it packages as a standalone crate that builds from the package alone.
/// (`-p` is safe here: the plugin API depends on nothing of the node, so no RocksDB.)
fn plugin_api_as_a_crate(root: &Path) -> Result<()> {
    run(Command::new(cargo())
        .current_dir(root)
        .env("RUSTDOCFLAGS", "-D warnings")
        .args([
            "doc",
            "-p",
            "dubchain-plugin-api",
            "--no-deps",
            "--all-features",
            "--quiet",
        ]))?;
    run(Command::new(cargo()).current_dir(root).args([
        "package",
        "-p",
        "dubchain-plugin-api",
        "--allow-dirty",
        "--quiet",
    ]))
}

/// The fuzz suite's properties at `cases` cases each (the test suite runs 256), and the
/// outcome recorded under "Last run" in `docs/fuzzing.md`.
fn fuzz(root: &Path, cases: Option<&str>) -> Result<()> {
    let cases = count_arg(cases, 200_000, "cases")?;
    let started = std::time::Instant::now();
    let status = Command::new(cargo())
        .current_dir(root)
        .env("DUBCHAIN_FUZZ_CASES", cases.to_string())
        .args(["test", "--workspace", "--no-fail-fast", "--", "fuzz::"])
        .status()
        .context("running the fuzz suite")?;
    let outcome = if status.success() {
        "every property held".to_owned()
    } else {
        format!("FAILED ({status}); the failing input is in the test output")
    };
    record_last_run(
        &root.join("docs/fuzzing.md"),
        "## Last run",
        &format!(
            "`cargo xtask fuzz {cases}` on {}: {cases} cases per property, {outcome}, in {:.0} s.",
            today(),
            started.elapsed().as_secs_f64()
        ),
    )?;
    if !status.success() {
        bail!("the fuzz suite failed");
    }
    Ok(())
}

/// `kills` times: `chain produce` with group commit (`storage_background_fsync`) and
/// `storage_write_batching`, killed with SIGKILL after a varying number of committed
/// blocks, then `chain check` on its data directory: the store must be consistent, its
/// head at or past the last block the killed process reported committed. The outcome is
/// recorded under "Last crash run" in `docs/benchmarks.md`.
fn crash(root: &Path, kills: Option<&str>) -> Result<()> {
    use std::io::BufRead;
    let kills = count_arg(kills, 100, "kills")?;
    let plugin_dir = assemble_plugins(root)?;
    let exe = build_host(root)?;
    let work = target_dir(root).join("tmp/crash");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let plugins = ["storage_background_fsync", "storage_write_batching"];
    let perf = |args: &[&str]| {
        let mut cmd = Command::new(&exe);
        cmd.arg("--plugin-dir").arg(&plugin_dir);
        cmd.arg("--state-dir").arg(work.join("state"));
        for p in plugins {
            cmd.args(["--enable", p]);
        }
        cmd.args(args)
            .args(["--txs-per-block", "64", "--accounts", "200", "--data-dir"])
            .arg(work.join("db"));
        cmd
    };
    let started = std::time::Instant::now();
    let mut last_seen = 0u64;
    for kill in 0..kills {
        let mut child = perf(&["chain", "produce", "--blocks", "1000000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("the child's output")?;
        // 1 to 12 more blocks each time, varying where in a block the kill lands.
        let more = 1 + (kill * 7) % 12;
        let mut seen_now = 0;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line?;
            if let Some(h) = line
                .strip_prefix("committed block ")
                .and_then(|r| r.split(' ').next())
                .and_then(|h| h.parse::<u64>().ok())
            {
                last_seen = h;
                seen_now += 1;
                if seen_now >= more {
                    break;
                }
            }
        }
        child.kill()?;
        child.wait()?;
        let out = perf(&["chain", "check"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let head: Option<u64> = text
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|h| h.parse().ok());
        if !out.status.success()
            || !text.contains("consistent")
            || head.is_none_or(|h| h < last_seen)
        {
            bail!(
                "kill {}: after block {last_seen} was reported committed, `chain check` said: {text}{}",
                kill + 1,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let chain_s = started.elapsed().as_secs_f64();
    let race = commit_race_kills(&exe, &plugin_dir, &work, kills)?;
    record_last_run(
        &root.join("docs/benchmarks.md"),
        "## Last crash run",
        &format!(
            "`cargo xtask crash {kills}` on {}: {kills} SIGKILLs of `chain produce` with {}; every block reported committed was there after each (last: block {last_seen}), and `chain check` found the store consistent every time; {chain_s:.0} s. Then {race}",
            today(),
            plugins.join(" and "),
        ),
    )?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// `kills` SIGKILLs of `chain commit-race` (8 committers on one store, every commit made
/// durable by `storage_background_fsync`'s group commit), each after a varying number of
/// acknowledgements; after each, every commit the process acknowledged (read from its
/// output, to the last line it wrote) must be in the reopened store, each committer's
/// records without a gap. Answers the sentence for the record.
fn commit_race_kills(exe: &Path, plugin_dir: &Path, work: &Path, kills: u64) -> Result<String> {
    use std::io::BufRead;
    const COMMITTERS: usize = 8;
    let db = work.join("race");
    let race = |args: &[&str]| {
        let mut cmd = Command::new(exe);
        cmd.arg("--plugin-dir").arg(plugin_dir);
        cmd.arg("--state-dir").arg(work.join("state"));
        cmd.args([
            "--enable",
            "storage_background_fsync",
            "chain",
            "commit-race",
        ]);
        cmd.args(["--committers", &COMMITTERS.to_string(), "--data-dir"])
            .arg(&db)
            .args(args);
        cmd
    };
    let started = std::time::Instant::now();
    let mut acked_total = 0u64;
    for kill in 0..kills {
        let mut child = race(&[])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("the child's output")?;
        // 5 to 400 acknowledgements, varying where among the committers the kill lands.
        let before_kill = 5 + (kill * 97) % 396;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let mut acked = [None::<u64>; COMMITTERS];
        let mut note = |line: &str| {
            let mut words = line.split(' ').skip(1).map(str::parse::<u64>);
            if let (Some(Ok(t)), Some(Ok(seq))) = (words.next(), words.next()) {
                if let Some(a) = acked.get_mut(t as usize) {
                    *a = Some(a.map_or(seq, |m: u64| m.max(seq)));
                }
                acked_total += 1;
            }
        };
        for _ in 0..before_kill {
            match lines.next() {
                Some(line) => note(&line?),
                None => break,
            }
        }
        child.kill()?;
        // What it wrote before it died was acknowledged too.
        for line in lines {
            note(&line?);
        }
        child.wait()?;
        let out = race(&["--check"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let held: Vec<u64> = text
            .lines()
            .filter_map(|l| l.strip_prefix("committer "))
            .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
            .collect();
        let lost = acked
            .iter()
            .enumerate()
            .find(|(t, a)| a.is_some_and(|seq| held.get(*t).is_none_or(|&n| n <= seq)));
        if !out.status.success() || held.len() != COMMITTERS || lost.is_some() {
            bail!(
                "commit race, kill {}: acknowledged {acked:?}, the store holds {held:?}: {text}{}",
                kill + 1,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let _ = std::fs::remove_dir_all(&db);
    Ok(format!(
        "{kills} SIGKILLs of `chain commit-race` (8 committers on one store, group commit by storage_background_fsync), after 5 to 400 acknowledgements each: all {acked_total} acknowledged commits were in the reopened store, every committer's records without a gap; {:.0} s.",
        started.elapsed().as_secs_f64()
    ))
}

/// The state-growth curve: `dubchain-perf bench --no-micro` (the chain on fresh stores, each
/// run its own hosts, baseline and plugin runs alternating) at each genesis size, with
/// `storage_incremental_root` on the plugin side and nothing else, so the curve is the
/// state root's. Writes "## State growth" in `docs/benchmarks.md`: per size, the median
/// block latency (mempool, execution and storage of the proposer's block) and the storage
/// stage per block on both sides, and how much each grew from the smallest size.
fn growth(root: &Path, sizes: &[String]) -> Result<()> {
    let sizes: Vec<u64> = if sizes.is_empty() {
        vec![10_000, 30_000, 100_000]
    } else {
        sizes
            .iter()
            .map(|s| count_arg(Some(s), 0, "accounts"))
            .collect::<Result<_>>()?
    };
    let plugin_dir = assemble_plugins(root)?;
    let exe = build_host(root)?;
    let work = target_dir(root).join("tmp/growth");
    let started = std::time::Instant::now();
    let (blocks, runs) = (12u64, 3usize);
    // Per size: block latency p50 (ms) and storage per block (ms), baseline then plugin.
    let mut rows: Vec<(u64, [f64; 4], bool)> = Vec::new();
    for &accounts in &sizes {
        let out = work.join(accounts.to_string());
        let _ = std::fs::remove_dir_all(&out);
        eprintln!("state growth: {accounts} accounts");
        run(Command::new(&exe)
            .current_dir(root)
            .arg("--plugin-dir")
            .arg(&plugin_dir)
            .arg("--state-dir")
            .arg(work.join("state"))
            .args([
                "--profile",
                "baseline",
                "--enable",
                "storage_incremental_root",
            ])
            .args(["bench", "--no-micro", "--accounts", &accounts.to_string()])
            .args(["--blocks", &blocks.to_string(), "--runs", &runs.to_string()])
            .arg("--out")
            .arg(&out))?;
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("bench.json"))?)?;
        let system = &report["system"];
        let row = |name: &str, side: &str| -> Result<f64> {
            let values: Vec<f64> = system["rows"]
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["name"] == name))
                .and_then(|r| r[side].as_array())
                .context("bench.json has no such system row")?
                .iter()
                .filter_map(serde_json::Value::as_f64)
                .collect();
            Ok(median(values))
        };
        let per_block = blocks as f64;
        rows.push((
            accounts,
            [
                row("block latency p50", "baseline")?,
                row("block latency p50", "plugins")?,
                row("storage", "baseline")? / per_block,
                row("storage", "plugins")? / per_block,
            ],
            system["identical"].as_bool().unwrap_or(false),
        ));
    }
    let first = rows.first().map(|r| r.1).unwrap_or_default();
    let mut text = format!(
        "`cargo xtask growth` on {}: `dubchain-perf --profile baseline --enable storage_incremental_root bench --no-micro --accounts N --blocks {blocks} --runs {runs}` (256 transactions per block, fresh stores and hosts per run, sides alternating); medians over the runs; {:.0} s.\n\n| accounts | block latency p50, baseline ms | with storage_incremental_root ms | storage stage per block, baseline ms | with storage_incremental_root ms | identical chains |\n|---|---|---|---|---|---|\n",
        today(),
        started.elapsed().as_secs_f64()
    );
    for (accounts, v, same) in &rows {
        text.push_str(&format!(
            "| {accounts} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
            v[0],
            v[1],
            v[2],
            v[3],
            if *same { "yes" } else { "**NO**" }
        ));
    }
    if let (Some((small, ..)), Some((large, last, _))) = (rows.first(), rows.last()) {
        let grew = |i: usize| last[i] / first[i].max(1e-9);
        text.push_str(&format!(
            "\nFrom {small} to {large} accounts the baseline's block latency grew {:.2}x (its storage stage {:.2}x); with storage_incremental_root {:.2}x (storage {:.2}x).",
            grew(0),
            grew(2),
            grew(1),
            grew(3)
        ));
    }
    record_last_run(&root.join("docs/benchmarks.md"), "## State growth", &text)?;
    if rows.iter().any(|r| !r.2) {
        bail!("the two sides reached different chains");
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A task's optional count argument (`what` names it in the error), or `default`. Never
/// 0: a run of no cases, kills or accounts would record in the docs that nothing failed.
fn count_arg(arg: Option<&str>, default: u64, what: &str) -> Result<u64> {
    let Some(a) = arg else {
        return Ok(default);
    };
    match a.parse::<u64>() {
        Ok(0) => bail!("{what} `0`: expected a whole number, 1 or more (a run of none would be recorded as one in which nothing failed)"),
        Ok(n) => Ok(n),
        Err(e) => Err(e).with_context(|| format!("{what} `{a}`: expected a whole number, 1 or more")),
    }
}

/// Replaces the section `heading` of `doc` (up to the next `## ` heading, or the end) with
/// `text`, or appends it.
fn record_last_run(doc: &Path, heading: &str, text: &str) -> Result<()> {
    let old = std::fs::read_to_string(doc).with_context(|| format!("reading {}", doc.display()))?;
    let section = format!("{heading}\n\n{text}\n");
    let new = match old.find(&format!("{heading}\n")) {
        // The section in place: up to the next heading of its level, or the end.
        Some(at) => {
            let body = at + heading.len();
            let end = old[body..]
                .find("\n## ")
                .map_or(old.len(), |i| body + i + 1);
            format!(
                "{}{section}{}",
                &old[..at],
                if end < old.len() {
                    format!("\n{}", &old[end..])
                } else {
                    String::new()
                }
            )
        }
        None => format!("{}\n\n{section}", old.trim_end()),
    };
    std::fs::write(doc, new).with_context(|| format!("writing {}", doc.display()))
}

/// Today's date (UTC), as `date` gives it.
fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Runs `.ci/install-deps`, which installs missing system packages (libclang for RocksDB's
/// bindings) and does nothing when all are present.
fn install_system_deps(root: &Path) -> Result<()> {
    if cfg!(target_os = "linux") {
        run(Command::new("bash").arg(root.join(".ci/install-deps")))?;
    }
    Ok(())
}

/// The checkout this task runs for. `cargo run` (behind `cargo xtask`) sets
/// `CARGO_MANIFEST_DIR` at run time; it is preferred over the compile-time value because a
/// target directory shared by several checkouts may hand back an xtask built in another.
fn project_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .expect("xtask lives in the root")
        .to_owned()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Builds every crate under `plugins/` as in `tests/build.rs` (same flags and target
/// directory, so the two share one build) and copies each library with its manifest into
/// `target/dubchain/plugins/`. Returns that directory.
fn assemble_plugins(root: &Path) -> Result<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("plugins"))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    eprintln!("building {} plugins (release)", names.len());
    let mut cmd = Command::new(cargo());
    cmd.current_dir(root)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
            "--target-dir",
        ])
        .arg(target_dir(root).join("plugin-build"))
        .stdout(Stdio::piped());
    for n in &names {
        cmd.args(["-p", n]);
    }
    let out = cmd.spawn()?.wait_with_output()?;
    if !out.status.success() {
        bail!("building the plugins failed");
    }
    let dest = root.join("target/dubchain/plugins");
    std::fs::create_dir_all(&dest)?;
    let mut copied = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_cdylib = msg["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if msg["reason"] != "compiler-artifact" || !is_cdylib {
            continue;
        }
        let name = msg["target"]["name"]
            .as_str()
            .unwrap_or_default()
            .replace('-', "_");
        let Some(lib) = msg["filenames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(std::env::consts::DLL_SUFFIX))
        else {
            continue;
        };
        let manifest = root.join("manifests").join(format!("{name}.toml"));
        if !manifest.is_file() {
            bail!("plugin `{name}` has no manifest at {}", manifest.display());
        }
        let file = Path::new(lib).file_name().expect("a file name");
        // Write to a temporary name and rename, so a running host never sees half a file.
        let tmp = dest.join(format!(".{}.tmp", file.to_string_lossy()));
        std::fs::copy(lib, &tmp)?;
        std::fs::rename(&tmp, dest.join(file))?;
        std::fs::copy(&manifest, dest.join(format!("{name}.toml")))?;
        copied += 1;
    }
    eprintln!("assembled {copied} plugins in {}", dest.display());
    Ok(dest)
}

/// Builds `dubchain-perf` (the tests' build) and returns its path.
fn build_host(root: &Path) -> Result<PathBuf> {
    eprintln!("building dubchain-perf");
    run(Command::new(cargo()).current_dir(root).args([
        "test",
        "--no-run",
        "--workspace",
        "--quiet",
    ]))?;
    Ok(target_dir(root)
        .join("debug")
        .join(format!("dubchain-perf{}", std::env::consts::EXE_SUFFIX)))
}

fn perf(root: &Path, args: &[String]) -> Result<()> {
    let plugin_dir = assemble_plugins(root)?;
    let exe = build_host(root)?;
    run(Command::new(exe)
        .current_dir(root)
        .arg("--plugin-dir")
        .arg(&plugin_dir)
        .args(args))
}

fn main_job(root: &Path, args: &[String]) -> Result<()> {
    let plugin_dir = assemble_plugins(root)?;
    // The very build the tests use (`cargo test --no-run --workspace` unifies features the
    // same way), so RocksDB's C++ is compiled once for both. Dependencies and the host are
    // optimised in the dev profile (see Cargo.toml).
    let exe = build_host(root)?;
    let perf = |extra: &[&str]| {
        let mut cmd = Command::new(&exe);
        cmd.current_dir(root)
            .arg("--plugin-dir")
            .arg(&plugin_dir)
            .args(["--profile", "production", "--state-dir"])
            .arg(root.join("target/dubchain/state"))
            .args(extra);
        cmd
    };
    // The list is for reading: a plugin that fails to load there is refused by `run` next,
    // with its reason, and a broken manifest of someone else's is only a line on stderr.
    perf(&["plugins", "list", "--load"])
        .status()
        .context("running dubchain-perf plugins list")?;
    println!();
    let mut run_cmd = perf(&["run", "--out"]);
    run_cmd.arg(root.join("target/dubchain")).args(args);
    run(&mut run_cmd)
}

fn test(root: &Path, args: &[String]) -> Result<()> {
    let has_nextest = Command::new(cargo())
        .args(["nextest", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_nextest {
        // nextest does not run doctests: run them first, so the suite's summary closes the output.
        run(Command::new(cargo())
            .current_dir(root)
            .args(["test", "--doc", "--workspace"]))?;
        run(Command::new(cargo())
            .current_dir(root)
            .args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(args))
    } else {
        run(Command::new(cargo())
            .current_dir(root)
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(args))
    }
}

#[cfg(test)]
mod tests {
    use super::count_arg;

    #[test]
    fn a_count_of_none_is_refused_since_its_run_would_be_recorded_as_clean() {
        assert_eq!(count_arg(None, 100, "kills").unwrap(), 100);
        assert_eq!(count_arg(Some("40"), 100, "kills").unwrap(), 40);
        for bad in ["0", "abc", "-1", ""] {
            let e = format!("{:#}", count_arg(Some(bad), 100, "cases").unwrap_err());
            assert!(
                e.starts_with(&format!(
                    "cases `{bad}`: expected a whole number, 1 or more"
                )),
                "{e}"
            );
        }
    }
}
