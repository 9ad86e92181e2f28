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

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = project_root();
    if matches!(
        task.as_str(),
        "plugins" | "run" | "test" | "bench" | "perf" | "lint" | "fuzz" | "crash"
    ) {
        install_system_deps(&root)?;
    }
    match task.as_str() {
        "plugins" => assemble_plugins(&root).map(|_| ()),
        "run" => main_job(&root, &rest),
        "perf" => perf(&root, &rest),
        "test" => test(&root, &rest),
        "lint" => lint(&root),
        "fuzz" => fuzz(&root, rest.first().map(String::as_str)),
        "crash" => crash(&root, rest.first().map(String::as_str)),
        "bench" => {
            assemble_plugins(&root)?;
            run(Command::new(cargo())
                .current_dir(&root)
                .args(["bench", "-p", "dubchain-benches"])
                .args(&rest))
        }
        _ => {
            eprintln!(
                "usage: cargo xtask <plugins | run [ARGS] | test [ARGS] | lint | fuzz [CASES] | crash [KILLS] | bench [ARGS] | perf ARGS>"
            );
            bail!("unknown task `{task}`")
        }
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
    record_last_run(
        &root.join("docs/benchmarks.md"),
        "## Last crash run",
        &format!(
            "`cargo xtask crash {kills}` on {}: {kills} SIGKILLs of `chain produce` with {}; every block reported committed was there after each (last: block {last_seen}), and `chain check` found the store consistent every time; {:.0} s.",
            today(),
            plugins.join(" and "),
            started.elapsed().as_secs_f64()
        ),
    )?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// A task's optional count argument (`what` names it in the error), or `default`.
fn count_arg(arg: Option<&str>, default: u64, what: &str) -> Result<u64> {
    arg.map_or(Ok(default), |a| {
        a.parse()
            .with_context(|| format!("{what} `{a}`: expected a whole number"))
    })
}

/// Replaces the section `heading` that ends `doc` (or appends it) with `text`.
fn record_last_run(doc: &Path, heading: &str, text: &str) -> Result<()> {
    let old = std::fs::read_to_string(doc).with_context(|| format!("reading {}", doc.display()))?;
    let head = old.split(heading).next().unwrap_or(&old).trim_end();
    std::fs::write(doc, format!("{head}\n\n{heading}\n\n{text}\n"))
        .with_context(|| format!("writing {}", doc.display()))
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
    run(&mut perf(&["plugins", "list", "--load"]))?;
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
