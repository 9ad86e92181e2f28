//! `dubchain-perf run`, the main job: the chain produced by the node on the baselines and
//! with the session's plugins, every node on a freshly loaded host, runs alternating (see
//! [`crate::system`]); then each plugin alone on its slot's workloads (see [`crate::micro`]),
//! the enabled ones and then those the profile leaves off, so that every plugin in the
//! directory has a figure; `run.json` and `run.md` written. The command line prints [`MainJob`]; nothing here prints.

use std::path::{Path, PathBuf};

use dubchain_host::{session::Session, Host};
use dubchain_node::gen::WorkloadConfig;

use crate::{
    fingerprint::Fingerprint,
    micro::{self, MicroOptions},
    suite,
    system::{self, SystemOptions},
    MicroResult, StageRow, SystemResult,
};

/// What the main job runs.
#[derive(Debug, Clone)]
pub struct MainJobOptions {
    pub workload: WorkloadConfig,
    pub blocks: u64,
    pub runs: usize,
    pub data_dir: PathBuf,
    pub micro: MicroOptions,
    /// Go on when the plan has problems or a plugin fails to load.
    pub allow_missing: bool,
    pub out: PathBuf,
    /// The network stage's node processes (none: no network stage).
    pub network: Option<system::NodeProcesses>,
}

/// Why the main job ran nothing.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("the plan has {} problem(s):\n{}\nnothing was run; fix the plan (`dubchain-perf plugins plan`) or pass --allow-missing to run without the plugins it leaves out", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Plan { problems: Vec<String> },
    #[error("nothing was run: {} failed to load; fix it or pass --allow-missing to compare without it", missing.join(", "))]
    Load { missing: Vec<String> },
    #[error("nothing was run: {} {} asked for but not in the plugin directory {}; add it, correct the name, or pass --allow-missing to compare without it", absent.join(", "), if absent.len() == 1 { "is" } else { "are" }, dir.display())]
    Absent {
        /// Each with a "did you mean" where a plugin's name is close.
        absent: Vec<String>,
        dir: PathBuf,
    },
    /// `run.json` and `run.md` could not be written where asked.
    #[error("nothing was run: --out {0}")]
    Out(String),
    /// The nodes' stores cannot go where asked ([`system::scratch_refusal`]).
    #[error("nothing was run: {0}")]
    DataDir(String),
}

/// The session's plugins applied to a fresh host, before anything runs.
pub struct Prepared {
    pub host: Host,
    /// Load errors and plan problems, one line each (printed whatever happens next).
    pub errors: Vec<String>,
    /// Plugins that are not loaded (their slots run on the baselines).
    pub missing: Vec<String>,
    pub plan_ok: bool,
}

/// Applies the plan; a plan with problems, a plugin that fails to load or one asked for
/// that is not in the plugin directory refuses the run unless `allow_missing`, and so do
/// an `out` directory the reports cannot be written in and a `data_dir` the nodes' stores
/// may not go in. With
/// `awaiting` (`run --watch`, which loads plugins as they are dropped in) a plugin asked
/// for in advance of its package is not refused, only counted missing.
pub fn prepare(
    s: &Session, allow_missing: bool, awaiting: bool, (out, data_dir): (&Path, &Path),
) -> Result<Prepared, (Vec<String>, Refusal)> {
    dubchain_host::files::writable_dir(out).map_err(|e| (Vec::new(), Refusal::Out(e)))?;
    if let Some(why) = system::scratch_refusal(data_dir) {
        return Err((Vec::new(), Refusal::DataDir(why)));
    }
    let absent = absent(s);
    if !absent.is_empty() && !allow_missing && !awaiting {
        let dir = s.options.plugin_dir.clone();
        let absent = absent
            .iter()
            .map(|n| format!("{n}{}", s.did_you_mean(n)))
            .collect();
        return Err((Vec::new(), Refusal::Absent { absent, dir }));
    }
    let host = s.host();
    let (errors, missing) = match s.apply(&host) {
        Ok(report) => (
            report.failed.iter().map(ToString::to_string).collect(),
            report
                .failed
                .iter()
                .map(|e| e.plugin().to_owned())
                .collect::<Vec<_>>(),
        ),
        Err(problems) => {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            if !allow_missing {
                return Err((Vec::new(), Refusal::Plan { problems }));
            }
            let errors = problems.iter().map(|p| format!("plan: {p}")).collect();
            (errors, s.resolution.enabled().map(str::to_owned).collect())
        }
    };
    if !missing.is_empty() && !allow_missing {
        return Err((errors, Refusal::Load { missing }));
    }
    Ok(Prepared {
        host,
        errors,
        missing: missing.into_iter().chain(absent).collect(),
        plan_ok: s.resolution.is_ok(),
    })
}

/// The plugins the session asks to enable (the last word on each: profile, gates or command
/// line) that the plugin directory has no readable manifest for. Elsewhere such a request
/// is a warning and the slots keep the baseline; a comparison that asked for a plugin and
/// ran without it would answer another question than the one asked.
fn absent(s: &Session) -> Vec<String> {
    let mut last = std::collections::BTreeMap::new();
    for r in &s.requests {
        last.insert(r.name.as_str(), r.enable);
    }
    last.into_iter()
        .filter(|&(name, enable)| enable && s.manifest(name).is_none())
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The main job's figures.
pub struct MainJob {
    pub chains: SystemResult,
    pub slots: Vec<MicroResult>,
    /// The plugins the profile leaves off, each alone ([`micro::run_off`]): in no chain run.
    pub off: Vec<MicroResult>,
    /// Plugins left off that did not load, so have no row: `(name, the load error)`.
    pub off_not_loaded: Vec<(String, String)>,
    pub missing: Vec<String>,
    pub markdown: String,
    /// Where `run.json` was written.
    pub json: PathBuf,
}

impl MainJob {
    /// The first disagreement with the baselines, if any: the job fails on it.
    pub fn disagreement(&self) -> Option<String> {
        if !self.chains.identical {
            return Some(
                "the runs with plugins did not reach the same chain as the baselines".to_owned(),
            );
        }
        self.slots
            .iter()
            .chain(&self.off)
            .find(|r| !r.identical)
            .map(|r| {
                format!(
                    "{} answered differently from the baseline on `{}`",
                    r.plugin, r.id
                )
            })
    }
}

/// Runs the chain comparison and the per-slot table; `progress(done, total)` after each
/// chain run.
pub fn run(
    s: &Session, prepared: &Prepared, o: &MainJobOptions, progress: impl FnMut(usize, usize),
) -> Result<MainJob, String> {
    let fresh = || -> Result<Host, String> {
        if prepared.plan_ok {
            s.loaded_host(o.allow_missing)
        } else {
            Ok(s.host())
        }
    };
    let system_options = SystemOptions {
        workload: o.workload.clone(),
        blocks: o.blocks,
        runs: o.runs,
        data_dir: o.data_dir.clone(),
        network: o.network.clone(),
        catch_up: true,
        count_allocations: false,
    };
    let chains = system::run(&|| Ok(s.host()), &fresh, &system_options, progress)?;
    let (slots, (off, off_not_loaded)) = if prepared.plan_ok {
        let slots =
            micro::run_except(s, &prepared.host, &o.micro, &prepared.missing, |_, _, _| {})?;
        let off = micro::run_off(s, &o.micro, &slots);
        (slots, off)
    } else {
        Default::default()
    };
    let markdown = markdown(
        s,
        &chains,
        [&slots, &off],
        &prepared.missing,
        o.workload.seed,
    );
    let json = write(
        s,
        o,
        &chains,
        [&slots, &off],
        &off_not_loaded,
        &prepared.missing,
        &markdown,
    )?;
    Ok(MainJob {
        chains,
        slots,
        off,
        off_not_loaded,
        missing: prepared.missing.clone(),
        markdown,
        json,
    })
}

fn write(
    s: &Session, o: &MainJobOptions, chains: &SystemResult, [slots, off]: [&[MicroResult]; 2],
    off_not_loaded: &[(String, String)], missing: &[String], markdown: &str,
) -> Result<PathBuf, String> {
    let io = |path: &Path, e: std::io::Error| format!("writing {}: {e}", path.display());
    std::fs::create_dir_all(&o.out).map_err(|e| io(&o.out, e))?;
    let json = serde_json::json!({
        "feature_set_id": s.resolution.feature_set_id,
        "profile": s.options.profile,
        "seed": o.workload.seed,
        "fingerprint": Fingerprint::current(suite::plugin_set(s)),
        "missing": missing,
        "runs_per_side": chains.runs_per_side,
        "rows": chains.rows,
        "cluster": {
            "baselines": chains.baseline.cluster,
            "plugins": chains.plugins.cluster,
        },
        "chain": chains.chain,
        "identical": chains.identical,
        "slots": slots,
        "off": off,
        "off_not_loaded": off_not_loaded
            .iter()
            .map(|(plugin, error)| serde_json::json!({ "plugin": plugin, "error": error }))
            .collect::<Vec<_>>(),
    });
    let md_path = o.out.join("run.md");
    std::fs::write(&md_path, markdown).map_err(|e| io(&md_path, e))?;
    let json_path = o.out.join("run.json");
    let bytes = serde_json::to_vec_pretty(&json).map_err(|e| e.to_string())?;
    std::fs::write(&json_path, bytes).map_err(|e| io(&json_path, e))?;
    Ok(json_path)
}

/// The network row node by node: the header and a row per node of each side (medians over
/// the runs); only the header where there was no run over TCP.
pub fn cluster_rows(r: &SystemResult) -> Vec<Vec<String>> {
    let header = [
        "side",
        "node",
        "sent tx / block / vote",
        "sent MB",
        "received tx / block / vote",
        "received MB",
        "send queue peak",
        "peer threads",
        "propose ms",
        "blocks ms",
        "votes ms",
        "admission ms",
        "admission CPU ms, thread / process",
        "admission batches",
        "decode ms",
        "waiting ms",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    let kinds = |t: &dubchain_node::net::KindTraffic| {
        format!(
            "{} / {} / {}",
            t.tx.messages, t.block.messages, t.vote.messages
        )
    };
    let mb = |t: &dubchain_node::net::KindTraffic| format!("{:.2}", t.total().bytes as f64 / 1e6);
    for (name, side) in [("baselines", &r.baseline), ("plugins", &r.plugins)] {
        for n in &side.cluster {
            rows.push(vec![
                name.to_owned(),
                n.node.to_string(),
                kinds(&n.sent),
                mb(&n.sent),
                kinds(&n.received),
                mb(&n.received),
                n.queue_peak
                    .map_or("(transport)".to_owned(), |q| q.to_string()),
                n.threads.to_string(),
                format!("{:.1}", n.propose_ms),
                format!("{:.1}", n.blocks_ms),
                format!("{:.1}", n.votes_ms),
                format!("{:.1}", n.admission_ms),
                format!(
                    "{:.1} / {:.1}",
                    n.admission_cpu_ms, n.admission_process_cpu_ms
                ),
                n.admission_batches.to_string(),
                format!("{:.1}", n.decode_ms),
                format!("{:.1}", n.wait_ms),
            ]);
        }
    }
    rows
}

/// The stage table's header and rows (what the command line prints and `run.md` holds).
pub fn stage_rows(r: &SystemResult) -> Vec<Vec<String>> {
    let header = [
        "stage",
        "baselines",
        "plugins",
        "speed-up [95% interval]",
        "verdict",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for row in &r.rows {
        rows.push(vec![
            row.name.clone(),
            format!("{:.2} {}", StageRow::median(&row.baseline), row.unit),
            format!("{:.2} {}", StageRow::median(&row.plugins), row.unit),
            row.ratio_text(),
            row.verdict().to_owned(),
        ]);
    }
    rows
}

/// One line on whether every run reached the same chain.
pub fn chain_verdict(r: &SystemResult) -> String {
    match (&r.chain, r.identical) {
        (Some(ch), true) => format!(
            "same chain in all {} runs: block {:?}, state root {:?}, on the proposer, the validator, every TCP node and the catch-up node",
            r.runs_per_side * 2,
            ch.last_block,
            ch.state_root
        ),
        _ => "DIFFERENT CHAINS: some run did not reach the baselines' chain".to_owned(),
    }
}

/// How the stage figures were made, printed under the table.
pub fn method_note(r: &SystemResult) -> String {
    format!(
        "(medians of {} runs per side, alternating B P, P B, ...; each ratio is the geometric mean of the per-run ratios (run i of each side paired) with a 95% Student-t interval on their logarithms, \"no change\" when it contains 1; host and plugins are built with the same optimisation settings, see the fingerprint in run.json)",
        r.runs_per_side
    )
}

/// The per-slot table's header and rows.
pub fn slot_rows(slots: &[MicroResult]) -> Vec<Vec<String>> {
    let head = [
        "case",
        "plugin",
        "speed-up [95% interval]",
        "catalogue goal",
        "goal met",
        "promise",
        "promise met",
        "identical",
    ];
    let mut rows = vec![head.map(String::from).to_vec()];
    for r in slots {
        rows.push(vec![
            r.id.clone(),
            r.plugin.clone(),
            format!(
                "{:.2}x [{:.2}, {:.2}]",
                r.ratio.median, r.ratio.low, r.ratio.high
            ),
            crate::report::at_least(r.goal),
            r.goal
                .map_or("-", |g| crate::report::yes(r.ratio.low >= g))
                .to_owned(),
            crate::report::at_least(r.promise),
            r.met.map_or("-", crate::report::yes).to_owned(),
            crate::report::yes(r.identical).to_owned(),
        ]);
    }
    rows
}

/// `run.md`: the verdict, the stage table, the network row node by node, and the
/// per-plugin tables (the enabled plugins', then those the profile leaves off).
fn markdown(
    s: &Session, r: &SystemResult, [slots, off]: [&[MicroResult]; 2], missing: &[String], seed: u64,
) -> String {
    let mut md = format!(
        "# DubChain run\n\nfeature set `{}` (profile `{}`), seed {seed}, {} runs per side\n\n{}\n\n",
        s.resolution.feature_set_id,
        s.options.profile,
        r.runs_per_side,
        chain_verdict(r)
    );
    if !missing.is_empty() {
        md += &format!("Missing (ran on baselines): {}\n\n", missing.join(", "));
    }
    md += &markdown_table(&stage_rows(r));
    md += &format!("\n{}\n", method_note(r));
    let nodes = cluster_rows(r);
    if nodes.len() > 1 {
        md += "\nThe network row, node by node (medians over the runs):\n\n";
        md += &markdown_table(&nodes);
    }
    if !slots.is_empty() {
        md += "\nEach plugin alone on its own host, on its slot's workloads:\n\n";
        md += &markdown_table(&slot_rows(slots));
    }
    if !off.is_empty() {
        md += &format!(
            "\nThe plugins profile `{}` leaves off, each alone on its own host (in no chain run above):\n\n",
            s.options.profile
        );
        md += &markdown_table(&slot_rows(off));
    }
    if !slots.is_empty() || !off.is_empty() {
        md += &format!("\n{}.\n", dubchain_host::measure::CASE_TABLE_NOTE);
    }
    md
}

/// A header row and body rows as a Markdown table.
fn markdown_table(rows: &[Vec<String>]) -> String {
    let Some((head, body)) = rows.split_first() else {
        return String::new();
    };
    let mut md = format!("| {} |\n|{}\n", head.join(" | "), "---|".repeat(head.len()));
    for row in body {
        md += &format!("| {} |\n", row.join(" | "));
    }
    md
}
