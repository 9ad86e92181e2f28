//! Instruction counts under callgrind: a repeatable figure for CI gates on noisy machines.
//!
//! Each micro case is run by a child `dubchain-perf bench-child` under
//! `valgrind --tool=callgrind`, twice per side: once with `--iterations 0` (setup, plugin
//! load and one warm-up call) and once with `--iterations K`. The difference divided by K
//! is the instruction count of one call in steady state, with everything else subtracted,
//! so no symbol names or client requests are needed. Threads (rayon) are serialised by
//! valgrind: the count is total work, not elapsed time, which is what a gate on a noisy
//! machine wants; parallel speed-ups show up in the timed suite instead.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::{micro::Side, InstrResult};

/// Whether `valgrind` can be run.
pub fn available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// How to start a child of a bench run (a callgrind count, or a process of `bench
/// --processes`): the `dubchain-perf` executable and the arguments that select the same
/// plugin directory, configuration, profile and workload sizes as the parent.
#[derive(Debug, Clone)]
pub struct Child {
    pub exe: PathBuf,
    /// Global options (`--plugin-dir ...`), placed before the subcommand.
    pub global_args: Vec<String>,
    /// Workload options (`--signatures ...`), placed after `bench-child`.
    pub workload_args: Vec<String>,
    /// Where the child's files go (callgrind's outputs, a process's report).
    pub scratch: PathBuf,
}

/// The last lines a failed child wrote on standard error, newest first, on one line.
pub fn stderr_tail(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .take(5)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The instructions of a callgrind output file (`summary:` or `totals:` line, first event).
pub fn parse_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

fn count(child: &Child, id: &str, side: Side, iterations: u32) -> Result<u64, String> {
    std::fs::create_dir_all(&child.scratch)
        .map_err(|e| format!("{}: {e}", child.scratch.display()))?;
    let side_name = match side {
        Side::Baseline => "baseline",
        Side::Plugin => "plugin",
    };
    let out = child
        .scratch
        .join(format!("callgrind.{id}.{side_name}.{iterations}.out"));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg("--")
        .arg(&child.exe)
        .args(&child.global_args)
        .arg("bench-child")
        .args(["--case", id, "--side", side_name])
        .args(["--iterations", &iterations.to_string()])
        .args(&child.workload_args)
        .output()
        .map_err(|e| format!("running valgrind: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "callgrind run of {id} ({side_name}) failed: {}",
            stderr_tail(&output.stderr)
        ));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    parse_total(&text).ok_or_else(|| format!("{}: no instruction total", out.display()))
}

/// Instructions of one call of case `id` on `side`: (run with K calls - run with none) / K,
/// or `None` when the K calls did not add measurably to the setup (a call so cheap, a
/// cache hit for example, that the setup's own variation hides it).
pub fn per_call(child: &Child, id: &str, side: Side, k: u32) -> Result<Option<u64>, String> {
    let setup = count(child, id, side, 0)?;
    let with = count(child, id, side, k)?;
    let added = with.saturating_sub(setup) / u64::from(k.max(1));
    Ok((added > 0).then_some(added))
}

/// Counts every case of `plan` (`(id, plugin label, promise)`) on both sides.
pub fn run(
    child: &Child, plan: &[(String, String, Option<f64>)], k: u32,
    mut progress: impl FnMut(usize, usize, &str),
) -> Result<Vec<InstrResult>, String> {
    let mut out = Vec::new();
    for (i, (id, plugin, promise)) in plan.iter().enumerate() {
        progress(i, plan.len(), id);
        let b = per_call(child, id, Side::Baseline, k)?;
        let p = per_call(child, id, Side::Plugin, k)?;
        let note = match (b, p) {
            (Some(_), Some(_)) => None,
            _ => Some(format!(
                "a call added no measurable instructions to the setup with {k} call(s); raise --instr-iterations"
            )),
        };
        let (b, p) = (b.unwrap_or(0), p.unwrap_or(0));
        out.push(InstrResult {
            id: id.clone(),
            plugin: plugin.clone(),
            baseline_ir: b,
            plugin_ir: p,
            ratio: if note.is_none() {
                b as f64 / p as f64
            } else {
                0.0
            },
            promise: *promise,
            note,
        });
    }
    progress(plan.len(), plan.len(), "");
    Ok(out)
}

/// A scratch directory for callgrind files under `out`.
pub fn scratch(out: &Path) -> PathBuf {
    out.join("callgrind")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_total_of_a_callgrind_file() {
        let text = "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nfn=main\n0 12\nsummary: 123456789\ntotals: 123456789\n";
        assert_eq!(parse_total(text), Some(123_456_789));
        assert_eq!(parse_total("events: Ir\n"), None);
    }
}
