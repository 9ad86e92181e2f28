//! `dubchain-perf bench`: runs the micro, system and instruction benchmarks, checks
//! budgets, compares with a saved run, and writes the reports.

use std::{
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use dubchain_host::{session::Session, Host};

use crate::{
    budget, callgrind,
    fingerprint::{Fingerprint, PluginSet},
    micro::{self, MicroOptions, Side},
    report,
    system::{self, SystemOptions},
    BenchResults, SCHEMA,
};

/// What `bench` does.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub micro: Option<MicroOptions>,
    pub system: Option<SystemOptions>,
    /// Count instructions under callgrind, with this child and K calls per count.
    pub instructions: Option<(callgrind::Child, u32)>,
    pub budgets: Option<PathBuf>,
    pub save_baseline: Option<String>,
    pub baseline: Option<String>,
    pub allow_fingerprint_mismatch: bool,
    /// Slowdown beyond which an interval counts as a regression (0.05 = 5%).
    pub threshold: f64,
    /// Fail when a plugin's promised speed-up is not met.
    pub require_promises: bool,
    /// Where reports, saved runs and the history go.
    pub out: PathBuf,
    /// Also measure each isolatable plugin in a child process (`isolated.` rows).
    pub isolation: bool,
    /// Run the micro cases again in fresh processes started as this child says, this many
    /// besides this one, and pool their rounds (`bench --processes`).
    pub more_processes: Option<(callgrind::Child, usize)>,
}

/// A bench run that could not start (bad budgets, unknown or incomparable saved run).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

/// What a bench run produced, and why it fails, if it does.
pub struct Outcome {
    pub results: BenchResults,
    /// Reasons for a non-zero exit: answers that differ, error budgets violated,
    /// regressions, unmet promises (with `require_promises`).
    pub failures: Vec<String>,
    /// Files written.
    pub written: Vec<PathBuf>,
}

/// The session's enabled plugins, for the fingerprint.
pub fn plugin_set(s: &Session) -> PluginSet {
    let mut plugins: Vec<String> = s
        .resolution
        .enabled()
        .map(|n| {
            format!(
                "{n}@{}",
                s.manifest(n).map_or("?".into(), |m| m.version.to_string())
            )
        })
        .collect();
    plugins.sort();
    PluginSet {
        feature_set_id: s.resolution.feature_set_id.clone(),
        plugins,
    }
}

/// The budgets in `path`, checked against what this run can measure: every metric known
/// (a typo costs a second, not a run), and at least one that this run will measure.
fn load_budgets(
    path: &Path, planned: &[micro::Planned], o: &BenchOptions,
) -> Result<Vec<budget::Budget>, Refused> {
    let b = budget::load(path).map_err(|e| Refused(e.to_string()))?;
    let mut known = BenchResults::system_metric_catalogue();
    for (id, ..) in planned {
        for (what, unit) in [("ratio", "x"), ("ratio_low", "x"), ("plugin_time", "ms")] {
            known.insert(
                format!("micro.{id}.{what}"),
                crate::Metric::new(0.0, unit, crate::Better::Higher),
            );
        }
        known.insert(
            format!("instructions.{id}.ratio"),
            crate::Metric::new(0.0, "x", crate::Better::Higher),
        );
        known.insert(
            format!("instructions.{id}.plugin"),
            crate::Metric::new(0.0, "instructions", crate::Better::Lower),
        );
    }
    budget::validate(&b, &known, path).map_err(|errs| {
        Refused(
            errs.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    // A budget gate that can check nothing must not pass: refused, with what
    // would measure them.
    let measured = |metric: &str| match metric.split('.').next() {
        Some("system") => o.system.is_some(),
        Some("instructions") => o.instructions.is_some() && o.micro.is_some(),
        _ => o.micro.is_some(),
    };
    if !b.is_empty() && !b.iter().any(|b| measured(&b.metric)) {
        return Err(Refused(format!(
            "{}: none of its {} budget(s) is on a metric this run measures (system.* need the system run, micro.* the microbenchmarks, instructions.* --instructions); drop the --no-* flag that skips them, or give budgets on what this run measures",
            path.display(),
            b.len()
        )));
    }
    Ok(b)
}

/// Refuses `--require-promises` where no promise is measured: it would pass having
/// checked nothing.
fn promises_measured(planned: &[micro::Planned], o: &BenchOptions) -> Result<(), Refused> {
    if !planned.iter().any(|(.., promise)| promise.is_some()) {
        return Err(Refused(format!(
            "--require-promises: this run measures no promised speed-up ({}); enable a plugin whose manifest promises one, or drop the flag",
            if o.micro.is_none() {
                "the microbenchmarks are skipped"
            } else {
                "no enabled plugin's manifest promises one"
            }
        )));
    }
    Ok(())
}

/// Refuses, before anything is measured, a comparison with saved run `name` that would
/// compare a series on another workload than it was saved with (the flags that size the
/// workloads differ), or that would compare nothing at all: a regression gate that
/// compared nothing must not pass.
fn comparable(
    saved: &BenchResults, name: &str, planned: &[micro::Planned], o: &BenchOptions,
) -> Result<(), Refused> {
    let mut differ = Vec::new();
    let mut common = 0;
    for (id, _, case, _) in planned {
        let workload = &case.workload;
        match saved.micro.iter().find(|m| &m.id == id) {
            Some(m) if &m.workload != workload => differ.push(format!(
                "micro.{id}: saved `{}`, now `{workload}`",
                m.workload
            )),
            Some(_) => common += 1,
            None => {}
        }
    }
    if let (Some(old), Some(now)) = (&saved.system, &o.system) {
        let now = system::describe(now);
        match &old.workload {
            Some(w) if *w != now => differ.push(format!("system: saved `{w}`, now `{now}`")),
            _ => common += 1,
        }
    }
    let again = "run with the flags the saved run was made with, or save this run as a new \
                 baseline (--save-baseline NAME) and compare later runs with it";
    if !differ.is_empty() {
        return Err(Refused(format!(
            "refusing to compare with saved run `{name}`: {} of its workloads differ from this run's:\n  {}\n{again}",
            differ.len(),
            differ.join("\n  ")
        )));
    }
    if common == 0 {
        let has = |r: &mut Vec<String>, what: &str, n: usize| {
            if n > 0 {
                r.push(format!("{n} {what}"));
            }
        };
        let mut old = Vec::new();
        has(&mut old, "micro case(s)", saved.micro.len());
        has(&mut old, "system run", usize::from(saved.system.is_some()));
        return Err(Refused(format!(
            "refusing to compare with saved run `{name}`: it has nothing this run measures (it holds {}; this run plans {} micro case(s){}); {again}",
            if old.is_empty() { "no results".to_owned() } else { old.join(" and ") },
            planned.len(),
            if o.system.is_some() { " and a system run" } else { " and no system run" }
        )));
    }
    Ok(())
}

/// Runs the suite on the session's plugin set.
/// `progress(stage, done, total, what)` after each step of each stage (`micro`, `system`,
/// `callgrind`).
pub fn run(
    s: &Session, host: &Host, o: &BenchOptions, progress: &dyn Fn(&str, usize, usize, &str),
) -> Result<Outcome, Refused> {
    // Everything that can refuse the run is checked before anything is measured, against
    // the micro cases it plans.
    dubchain_host::files::writable_dir(&o.out).map_err(|e| Refused(format!("--out {e}")))?;
    let planned = o
        .micro
        .as_ref()
        .map(|m| micro::plan(s, m))
        .unwrap_or_default();
    let budgets = match &o.budgets {
        Some(path) => load_budgets(path, &planned, o)?,
        None => Vec::new(),
    };
    let fingerprint = Fingerprint::current(plugin_set(s));
    let saved = match &o.baseline {
        Some(name) => {
            let saved = crate::load_saved(&o.out, name).map_err(Refused)?;
            let mismatches = saved.fingerprint.mismatches(&fingerprint);
            if !mismatches.is_empty() && !o.allow_fingerprint_mismatch {
                return Err(Refused(format!(
                    "refusing to compare with saved run `{name}`: its fingerprint {} differs from this run's {}:\n  {}\n\
                     results from another machine, build configuration or plugin set are not comparable; \
                     pass --allow-fingerprint-mismatch to compare anyway",
                    saved.fingerprint.id,
                    fingerprint.id,
                    mismatches.join("\n  ")
                )));
            }
            comparable(&saved, name, &planned, o)?;
            Some(saved)
        }
        None => None,
    };
    if o.require_promises {
        promises_measured(&planned, o)?;
    }
    if o.instructions.is_some() && !callgrind::available() {
        return Err(Refused(
            "--instructions needs valgrind (callgrind) on PATH; install valgrind or drop the flag"
                .into(),
        ));
    }

    let mut micro = match &o.micro {
        Some(m) => micro::run(s, host, m, |i, n, id| progress("micro", i, n, id))
            .map_err(|e| Refused(format!("microbenchmarks: {e}")))?,
        None => Vec::new(),
    };
    if let (Some((child, more)), Some(m)) = (&o.more_processes, &o.micro) {
        pool_processes(&mut micro, child, *more, m.rounds, |i, n| {
            progress("processes", i, n, "micro cases in a fresh process")
        })?;
    }
    if let (true, Some(m)) = (o.isolation, &o.micro) {
        micro.extend(
            micro::run_isolated(s, m, |i, n, id| progress("isolated", i, n, id))
                .map_err(|e| Refused(format!("isolated microbenchmarks: {e}")))?,
        );
    }
    let system = match &o.system {
        Some(sys) => Some(
            system::run(&|| Ok(s.host()), &|| s.loaded_host(false), sys, |i, n| {
                progress("system", i, n, "chain runs")
            })
            .map_err(Refused)?,
        ),
        None => None,
    };
    let instructions = match (&o.instructions, &o.micro) {
        (Some((child, k)), Some(_)) => {
            let plan: Vec<(String, String, Option<f64>)> = planned
                .iter()
                .map(|(id, label, _, promise)| (id.clone(), label.clone(), *promise))
                .collect();
            callgrind::run(child, &plan, *k, |i, n, id| progress("callgrind", i, n, id))
                .map_err(Refused)?
        }
        _ => Vec::new(),
    };

    let mut results = BenchResults {
        schema: SCHEMA.to_owned(),
        label: o.save_baseline.clone(),
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        fingerprint,
        profile: s.options.profile.clone(),
        micro,
        system,
        instructions,
        budgets: Vec::new(),
        comparison: None,
    };
    results.budgets = budget::check(&budgets, &results.metrics());
    if let (Some(saved), Some(name)) = (&saved, &o.baseline) {
        results.comparison = Some(crate::compare(saved, &results, name, o.threshold));
    }

    let mut failures = Vec::new();
    for m in &results.micro {
        if !m.identical {
            failures.push(format!(
                "{}: the plugin's answers differ from the baseline's",
                m.id
            ));
        }
        if o.require_promises && m.met == Some(false) {
            failures.push(format!(
                "{}: promised >= {}x, measured {:.2}x [{:.2}, {:.2}]",
                m.id,
                m.promise.unwrap_or_default(),
                m.ratio.median,
                m.ratio.low,
                m.ratio.high
            ));
        }
    }
    if let Some(sys) = &results.system {
        if !sys.identical {
            failures.push("system: the run with plugins reached a different chain".into());
        }
    }
    for b in &results.budgets {
        if b.violated && b.budget.severity == budget::Severity::Error {
            failures.push(format!("budget: {}", b.message));
        }
    }
    if let Some(c) = &results.comparison {
        for r in c.regressions() {
            failures.push(format!(
                "regression against `{}`: {} is {:.1}% slower [95% CI {:.1}%, {:.1}%]",
                c.against,
                r.series,
                (r.ratio.median - 1.0) * 100.0,
                (r.ratio.low - 1.0) * 100.0,
                (r.ratio.high - 1.0) * 100.0
            ));
        }
    }
    let written = write(&results, &o.out, o.save_baseline.as_deref())
        .map_err(|e| Refused(format!("writing reports under {}: {e}", o.out.display())))?;
    Ok(Outcome {
        results,
        failures,
        written,
    })
}

/// `bench --processes`: runs the micro cases again in `more` fresh processes (`bench
/// --no-system` with the same plugin set and sizes, each writing its report under the
/// child's scratch directory) and pools each case's rounds with this process's. Every
/// process has a bias of its own (memory layout, hash seeds, where RocksDB's files fell)
/// that its rounds do not average out, so the interval becomes the two-level bootstrap of
/// [`dubchain_host::measure::bootstrap_clustered`]: as wide as the processes disagree.
fn pool_processes(
    micro: &mut [crate::MicroResult], child: &callgrind::Child, more: usize, rounds: usize,
    progress: impl Fn(usize, usize),
) -> Result<(), Refused> {
    let mut clusters: Vec<Vec<Vec<f64>>> = micro.iter().map(|m| vec![m.round_ratios()]).collect();
    for k in 1..=more {
        progress(k - 1, more);
        let out = child.scratch.join(format!("process-{k}"));
        let refused = |what: String| {
            Refused(format!(
                "--processes, process {} of {}: {what}",
                k + 1,
                more + 1
            ))
        };
        let ran = std::process::Command::new(&child.exe)
            .args(&child.global_args)
            .args(["bench", "--no-system", "--rounds", &rounds.to_string()])
            .args(&child.workload_args)
            .arg("--out")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .map_err(|e| refused(format!("could not start {}: {e}", child.exe.display())))?;
        // Exit 1 is a run that measured and found a failure (answers that differ): its
        // report says which, and is pooled like any other.
        if !matches!(ran.status.code(), Some(0 | 1)) {
            let tail = callgrind::stderr_tail(&ran.stderr);
            return Err(refused(format!("{} ({tail})", ran.status)));
        }
        let path = out.join("bench.json");
        let r: BenchResults = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .map_err(|e| refused(format!("reading {}: {e}", path.display())))?;
        for (m, c) in micro.iter_mut().zip(&mut clusters) {
            let theirs = r
                .micro
                .iter()
                .find(|x| x.id == m.id)
                .ok_or_else(|| refused(format!("it ran no case `{}`", m.id)))?;
            c.push(theirs.round_ratios());
            m.identical &= theirs.identical;
            m.baseline_s.extend(&theirs.baseline_s);
            m.plugin_s.extend(&theirs.plugin_s);
        }
        let _ = std::fs::remove_dir_all(&out);
    }
    progress(more, more);
    let _ = std::fs::remove_dir(&child.scratch);
    for (m, c) in micro.iter_mut().zip(clusters) {
        m.ratio = dubchain_host::measure::bootstrap_clustered(&c, 2_000, 0x5eed);
        m.rounds = m.baseline_s.len();
        m.processes = c.len();
        m.met = m.promise.map(|p| m.ratio.low >= p);
    }
    Ok(())
}

/// Writes `bench.json`, `bench.md` and `bench.html` under `out`, the saved run if asked,
/// and a line of history.
pub fn write(r: &BenchResults, out: &Path, save: Option<&str>) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    crate::append_history(out, r)?;
    let history = crate::read_history(out);
    let mut written = Vec::new();
    for (name, body) in [
        ("bench.json", r.to_json()),
        ("bench.md", report::markdown(r)),
        ("bench.html", report::html(r, &history)),
    ] {
        let p = out.join(name);
        std::fs::write(&p, body)?;
        written.push(p);
    }
    if let Some(name) = save {
        let p = crate::saved_path(out, name);
        std::fs::create_dir_all(p.parent().expect("saved runs have a directory"))?;
        // Written to a temporary name and renamed: a crash never leaves half a baseline.
        dubchain_host::files::write_atomic(&p, r.to_json().as_bytes())?;
        written.push(p);
    }
    Ok(written)
}

/// The child side of the instruction count: runs case `id` once to warm up, then
/// `iterations` more times, and nothing else.
pub fn child(
    s: &Session, host: &Host, o: &MicroOptions, id: &str, side: Side, iterations: u32,
) -> Result<(), String> {
    let (_, label, case, _) = micro::plan(s, o)
        .into_iter()
        .find(|(i, ..)| i == id)
        .ok_or_else(|| format!("no micro case `{id}` for this plugin set"))?;
    let own = micro::row_host(s, id, &label)?;
    let host = own.as_ref().unwrap_or(host);
    let input = micro::Input::new(&case, o).for_host(host);
    for _ in 0..=iterations {
        micro::run_once(&case, side, host, &input).undo();
    }
    Ok(())
}
