//! The benchmark report in three forms: JSON (the results as they are, schema
//! [`crate::SCHEMA`]), Markdown (tables, for pull requests and `docs/`), and one
//! self-contained HTML file (tables and inline SVG plots, no scripts, no external
//! resources): ratios with their intervals against the promises, block latency
//! distributions, and the history of ratios across runs.

use std::fmt::Write;

use dubchain_host::measure::median;

use crate::{fingerprint::Fingerprint, regress::Verdict, BenchResults, HistoryEntry};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn ms(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        median(&mut v.to_vec()) * 1e3
    }
}

/// A goal or a promise as a column shows it: `>= 5x`, or `-` for none.
pub(crate) fn at_least(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!(">= {x}x"))
}

pub(crate) fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

/// Rows of the micro table: id, slot, workload, baseline ms, plugin ms, allocations per
/// run of each side, the case's own figure on each side, ratio, catalogue goal, goal met, promise, promise met, identical.
fn micro_rows(r: &BenchResults) -> Vec<Vec<String>> {
    r.micro
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.plugin.clone(),
                m.workload.clone(),
                format!("{:.3}", ms(&m.baseline_s)),
                format!("{:.3}", ms(&m.plugin_s)),
                m.allocations
                    .map_or("not counted".into(), |[b, p]| format!("{b} / {p}")),
                m.extra.as_ref().map_or("-".into(), |e| {
                    format!("{}: {} / {}", e.name, e.values[0], e.values[1])
                }),
                format!(
                    "{:.2}x [{:.2}, {:.2}]",
                    m.ratio.median, m.ratio.low, m.ratio.high
                ),
                at_least(m.goal),
                m.goal.map_or("-".into(), |g| yes(m.ratio.low >= g).into()),
                at_least(m.promise),
                m.met.map_or("-".into(), |b| yes(b).into()),
                yes(m.identical).into(),
            ]
        })
        .collect()
}

const MICRO_HEAD: [&str; 13] = [
    "case",
    "plugin",
    "workload",
    "baseline ms",
    "plugin ms",
    "allocations, baseline / plugin",
    "also, baseline / plugin",
    "ratio [95% CI]",
    "catalogue goal",
    "goal met",
    "promise",
    "promise met",
    "identical",
];

fn system_rows(r: &BenchResults) -> Vec<Vec<String>> {
    let Some(s) = &r.system else {
        return Vec::new();
    };
    let med = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            median(&mut v.to_vec())
        }
    };
    let (b, p) = (&s.baseline, &s.plugins);
    let mib = |x: Option<u64>| {
        x.map_or("-".to_owned(), |v| {
            format!("{:.1} MiB", v as f64 / 1048576.0)
        })
    };
    // Per stage and overall: medians of the runs, and the per-run ratios' geometric mean
    // with its 95% interval (results saved before the rows existed show the pooled figures).
    let mut rows: Vec<Vec<String>> = s
        .rows
        .iter()
        .map(|row| {
            vec![
                row.name.clone(),
                format!("{:.2} {}", med(&row.baseline), row.unit),
                format!("{:.2} {}", med(&row.plugins), row.unit),
                format!("{} {}", row.ratio_text(), row.verdict()),
            ]
        })
        .collect();
    if rows.is_empty() {
        rows.push(vec![
            "block latency p50".into(),
            format!("{:.2} ms", b.latency_p50_ms),
            format!("{:.2} ms", p.latency_p50_ms),
            format!("{:.2}x", b.latency_p50_ms / p.latency_p50_ms.max(1e-9)),
        ]);
        rows.push(vec![
            "throughput".into(),
            format!("{:.0} tx/s", med(&b.throughput_tps)),
            format!("{:.0} tx/s", med(&p.throughput_tps)),
            format!(
                "{:.2}x",
                med(&p.throughput_tps) / med(&b.throughput_tps).max(1e-9)
            ),
        ]);
    }
    rows.extend([
        vec![
            "CPU per run".into(),
            format!(
                "{:.2} s ({:.2} cores)",
                med(&b.cpu_s),
                med(&b.cpu_s) / med(&b.wall_s).max(1e-9)
            ),
            format!(
                "{:.2} s ({:.2} cores)",
                med(&p.cpu_s),
                med(&p.cpu_s) / med(&p.wall_s).max(1e-9)
            ),
            format!("{:.2}x", med(&b.cpu_s) / med(&p.cpu_s).max(1e-9)),
        ],
        vec![
            "peak RSS (whole process)".into(),
            mib(b.peak_rss_bytes),
            mib(p.peak_rss_bytes),
            "-".into(),
        ],
    ]);
    rows.push(vec![
        "Rust heap, host and plugins: peak rise / allocations (an untimed run, counted)".into(),
        b.heap.map_or("not counted".into(), |h| {
            format!(
                "{:.1} MiB / {}",
                h.peak_bytes as f64 / 1048576.0,
                h.allocations
            )
        }),
        p.heap.map_or("not counted".into(), |h| {
            format!(
                "{:.1} MiB / {}",
                h.peak_bytes as f64 / 1048576.0,
                h.allocations
            )
        }),
        "-".into(),
    ]);
    rows
}

const INSTR_HEAD: [&str; 5] = ["case", "baseline", "plugin", "ratio", "promise"];

fn instruction_rows(r: &BenchResults) -> Vec<Vec<String>> {
    let row = |i: &crate::InstrResult| {
        let ratio = i.note.clone().unwrap_or_else(|| format!("{:.2}x", i.ratio));
        let (baseline, plugin) = (i.baseline_ir.to_string(), i.plugin_ir.to_string());
        vec![i.id.clone(), baseline, plugin, ratio, at_least(i.promise)]
    };
    r.instructions.iter().map(row).collect()
}

const BUDGET_HEAD: [&str; 6] = [
    "budget",
    "metric",
    "value",
    "threshold",
    "severity",
    "status",
];

fn budget_rows(r: &BenchResults) -> Vec<Vec<String>> {
    r.budgets
        .iter()
        .map(|o| {
            vec![
                o.budget.name.clone(),
                o.budget.metric.clone(),
                o.value.map_or("not measured".into(), |v| {
                    format!("{v:.3} {}", o.budget.unit)
                }),
                format!("{} {}", o.budget.threshold, o.budget.unit),
                format!("{:?}", o.budget.severity).to_lowercase(),
                match (o.value, o.violated) {
                    (None, _) => "not checked",
                    (Some(_), true) => "VIOLATED",
                    (Some(_), false) => "ok",
                }
                .into(),
            ]
        })
        .collect()
}

const CHANGE_HEAD: [&str; 5] = ["series", "saved", "now", "now/saved [95% CI]", "verdict"];

/// A median of a compared series with its unit, seconds scaled to stay readable (a cache
/// hit's 80 µs is not "0.0001 s").
fn amount(v: f64, unit: &str) -> String {
    match unit {
        "s" if v < 1e-3 => format!("{:.2} µs", v * 1e6),
        "s" if v < 1.0 => format!("{:.3} ms", v * 1e3),
        "instructions" => format!("{v:.0} {unit}"),
        _ => format!("{v:.4} {unit}"),
    }
}

fn change_rows(c: &crate::Comparison) -> Vec<Vec<String>> {
    c.changes
        .iter()
        .map(|ch| {
            vec![
                ch.series.clone(),
                amount(ch.old_median, &ch.unit),
                amount(ch.new_median, &ch.unit),
                format!(
                    "{:.3} [{:.3}, {:.3}]",
                    ch.ratio.median, ch.ratio.low, ch.ratio.high
                ),
                match ch.verdict {
                    Verdict::Regression => "REGRESSION",
                    Verdict::Improvement => "improvement",
                    Verdict::NoChange => "no change",
                }
                .into(),
            ]
        })
        .collect()
}

/// The sections that are a title and one table, the same in every format, in order; a
/// section with nothing to show is left out.
fn plain_sections(
    r: &BenchResults,
) -> Vec<(&'static str, &'static [&'static str], Vec<Vec<String>>)> {
    let mut sections = Vec::new();
    if !r.instructions.is_empty() {
        sections.push((
            "Instructions (callgrind, per call, setup subtracted)",
            &INSTR_HEAD[..],
            instruction_rows(r),
        ));
    }
    if !r.budgets.is_empty() {
        sections.push(("Budgets", &BUDGET_HEAD[..], budget_rows(r)));
    }
    sections
}

fn md_table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | ").replace('\n', " "));
    }
    out.push('\n');
}

/// The fingerprint as one Markdown line: machine, build, configuration profile and plugin
/// set (every report that carries one opens with it).
pub fn fingerprint_line(f: &Fingerprint, profile: &str) -> String {
    format!(
        "fingerprint `{}`: {} ({} cores, {} GiB, {}); host {} built by {} ({}, cargo profile {}: {}){}; profile `{}`, feature set `{}` [{}]",
        f.id,
        f.machine.cpu,
        f.machine.cores,
        f.machine.memory_gib,
        f.machine.os,
        f.build.host_version,
        f.build.rustc,
        f.build.target,
        f.build.profile,
        f.build.optimisation,
        f.build.commit.as_ref().map(|c| format!(", commit {c}")).unwrap_or_default(),
        profile,
        f.plugins.feature_set_id,
        f.plugins.plugins.join(", ")
    )
}

/// How many processes the micro rounds were pooled from (`bench --processes`; 1: this one).
fn pooled_processes(r: &BenchResults) -> usize {
    r.micro.iter().map(|m| m.processes).max().unwrap_or(1)
}

/// The report as Markdown.
pub fn markdown(r: &BenchResults) -> String {
    let mut out = String::new();
    let f = &r.fingerprint;
    let _ = writeln!(
        out,
        "# DubChain benchmark run{}\n",
        r.label
            .as_ref()
            .map(|l| format!(" `{l}`"))
            .unwrap_or_default()
    );
    let _ = writeln!(out, "{}\n", fingerprint_line(f, &r.profile));
    if !r.micro.is_empty() {
        let processes = pooled_processes(r);
        if processes > 1 {
            let _ = writeln!(
                out,
                "## Microbenchmarks (baseline and plugin interleaved, in each of {processes} fresh processes)\n"
            );
        } else {
            out += "## Microbenchmarks (baseline and plugin interleaved, one process)\n\n";
        }
        md_table(&mut out, &MICRO_HEAD, &micro_rows(r));
        let _ = writeln!(
            out,
            "{}.\n",
            dubchain_host::measure::case_table_note(processes)
        );
        if processes > 1 {
            let _ = writeln!(
                out,
                "The rounds of the {processes} processes are pooled: each ratio is their median, and its 95% interval a two-level bootstrap (processes drawn with replacement, then rounds within each), as wide as the processes disagree.\n"
            );
        }
        let fewest = r.micro.iter().map(|m| m.rounds).min().unwrap_or(0);
        if let Some(note) = dubchain_host::measure::few_rounds_note(fewest) {
            let _ = writeln!(out, "Note: {note}.\n");
        }
    }
    if let Some(s) = &r.system {
        let _ = writeln!(
            out,
            "## System benchmark: {} blocks x {} transactions, {} validators, seed {}, {} runs per side, alternating\n",
            s.blocks, s.txs_per_block, s.validators, s.seed, s.runs
        );
        md_table(
            &mut out,
            &["metric", "baselines", "plugins", "speed-up"],
            &system_rows(r),
        );
        let _ = writeln!(
            out,
            "same chain on both sides in every run: {}\n",
            yes(s.identical)
        );
    }
    for (title, head, rows) in plain_sections(r) {
        let _ = writeln!(out, "## {title}\n");
        md_table(&mut out, head, &rows);
    }
    if let Some(c) = &r.comparison {
        let _ = writeln!(
            out,
            "## Against saved run `{}` (fingerprint `{}`; regression = 95% interval of new/old above {:.0}% slower)\n",
            c.against,
            c.against_fingerprint.id,
            c.threshold * 100.0
        );
        for m in &c.mismatches {
            let _ = writeln!(out, "- fingerprint differs (compared on request): {m}");
        }
        md_table(&mut out, &CHANGE_HEAD, &change_rows(c));
        if !c.not_compared.is_empty() {
            let _ = writeln!(
                out,
                "Not compared (measured by one run only, or on another workload):\n"
            );
            for n in &c.not_compared {
                let _ = writeln!(out, "- {n}");
            }
            out.push('\n');
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// SVG

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
];

/// Ratios with their 95% intervals on a log scale, the promise as a red tick, 1x as a
/// grey line.
pub fn ratio_plot(r: &BenchResults) -> String {
    let rows = &r.micro;
    if rows.is_empty() {
        return String::new();
    }
    let (left, width, row_h) = (300.0, 760.0, 28.0);
    let height = 40.0 + row_h * rows.len() as f64;
    let lo = rows
        .iter()
        .map(|m| m.ratio.low)
        .fold(0.5_f64, f64::min)
        .max(0.01);
    let hi = rows
        .iter()
        .map(|m| m.ratio.high.max(m.promise.unwrap_or(0.0)))
        .fold(2.0_f64, f64::max)
        * 1.2;
    let x =
        |v: f64| left + (v.max(lo).ln() - lo.ln()) / (hi.ln() - lo.ln()) * (width - left - 20.0);
    let mut s = format!(
        r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="speed-up ratios"><title>Speed-up (baseline time / plugin time), 95% intervals</title>"#
    );
    // Axis ticks at powers of two.
    let mut t = 2f64.powi(lo.log2().floor() as i32);
    while t <= hi {
        if t >= lo {
            let _ = write!(
                s,
                r##"<line x1="{0:.1}" y1="20" x2="{0:.1}" y2="{1:.1}" stroke="{2}" stroke-width="1"/><text x="{0:.1}" y="14" font-size="11" text-anchor="middle">{3}x</text>"##,
                x(t),
                height - 10.0,
                if (t - 1.0).abs() < 1e-9 {
                    "#888"
                } else {
                    "#e5e5e5"
                },
                if t < 1.0 {
                    format!("{t:.2}")
                } else {
                    format!("{t:.0}")
                }
            );
        }
        t *= 2.0;
    }
    for (i, m) in rows.iter().enumerate() {
        let y = 36.0 + row_h * i as f64;
        let color = match m.met {
            Some(true) => "#2ca02c",
            Some(false) => "#d62728",
            None => "#1f77b4",
        };
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end">{}</text><line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}" stroke-width="3"/><circle cx="{:.1}" cy="{y:.1}" r="5" fill="{color}"><title>{}: {:.2}x [{:.2}, {:.2}]</title></circle>"#,
            left - 10.0,
            y + 4.0,
            esc(&m.id),
            x(m.ratio.low),
            x(m.ratio.high),
            x(m.ratio.median),
            esc(&m.id),
            m.ratio.median,
            m.ratio.low,
            m.ratio.high
        );
        if let Some(p) = m.promise {
            let _ = write!(
                s,
                r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#d62728" stroke-width="2" stroke-dasharray="3,2"><title>promised {p}x</title></line>"##,
                x(p),
                y - 9.0,
                y + 9.0
            );
        }
    }
    s += "</svg>";
    s
}

/// Empirical distribution (ECDF) of block creation latency, baselines against plugins.
pub fn latency_plot(r: &BenchResults) -> String {
    let Some(sys) = &r.system else {
        return String::new();
    };
    let (w, h, pad) = (760.0, 300.0, 50.0);
    let max = sys
        .baseline
        .block_latency_ms
        .iter()
        .chain(&sys.plugins.block_latency_ms)
        .copied()
        .fold(1e-3_f64, f64::max)
        * 1.05;
    let x = |v: f64| pad + v / max * (w - pad - 20.0);
    let y = |q: f64| h - pad + 10.0 - q * (h - pad - 20.0);
    let mut s = format!(
        r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="block latency distribution"><title>Block creation latency, cumulative distribution</title>"#
    );
    for i in 0..=5 {
        let v = max * f64::from(i) / 5.0;
        let _ = write!(
            s,
            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#e5e5e5"/><text x="{0:.1}" y="{3:.1}" font-size="11" text-anchor="middle">{v:.1} ms</text>"##,
            x(v),
            y(0.0),
            y(1.0),
            h - 18.0
        );
    }
    for q in [0.0, 0.5, 0.99] {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{q}</text><line x1="{pad}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="#eee"/>"##,
            pad - 4.0,
            y(q),
            w - 20.0
        );
    }
    for (name, v, color) in [
        ("baselines", &sys.baseline.block_latency_ms, "#888888"),
        ("plugins", &sys.plugins.block_latency_ms, "#1f77b4"),
    ] {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        let points: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(i, t)| format!("{:.1},{:.1}", x(*t), y((i + 1) as f64 / n)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"><title>{name}</title></polyline>"#,
            points.join(" ")
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{0:.1}" y="28" width="12" height="4" fill="#888888"/><text x="{1:.1}" y="34" font-size="12">baselines</text><rect x="{0:.1}" y="46" width="12" height="4" fill="#1f77b4"/><text x="{1:.1}" y="52" font-size="12">plugins</text></svg>"##,
        pad + 10.0,
        pad + 28.0
    );
    s
}

/// Median ratio of each micro case across the runs in the history (oldest left).
pub fn history_plot(history: &[HistoryEntry]) -> String {
    if history.len() < 2 {
        return String::new();
    }
    let mut ids: Vec<&String> = history.iter().flat_map(|h| h.ratios.keys()).collect();
    ids.sort();
    ids.dedup();
    ids.truncate(PALETTE.len());
    let (w, h, pad) = (760.0, 280.0, 50.0);
    let max = history
        .iter()
        .flat_map(|e| e.ratios.values())
        .copied()
        .fold(1.0_f64, f64::max)
        * 1.1;
    let n = history.len();
    let x = |i: usize| pad + i as f64 / (n - 1) as f64 * (w - pad - 220.0);
    let y = |v: f64| h - pad + 10.0 - v / max * (h - pad - 20.0);
    let mut s = format!(
        r#"<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="history of ratios"><title>Speed-up ratio per run, oldest left</title>"#
    );
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let _ = write!(
            s,
            r##"<line x1="{pad}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#eee"/><text x="{2:.1}" y="{3:.1}" font-size="11" text-anchor="end">{v:.1}x</text>"##,
            y(v),
            w - 220.0,
            pad - 4.0,
            y(v) + 4.0
        );
    }
    for (k, id) in ids.iter().enumerate() {
        let color = PALETTE[k];
        let points: Vec<String> = history
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                e.ratios
                    .get(*id)
                    .map(|v| format!("{:.1},{:.1}", x(i), y(*v)))
            })
            .collect();
        let _ = write!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"><title>{}</title></polyline><rect x="{:.1}" y="{:.1}" width="12" height="4" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            points.join(" "),
            esc(id),
            w - 210.0,
            20.0 + 16.0 * k as f64,
            w - 192.0,
            26.0 + 16.0 * k as f64,
            esc(id)
        );
    }
    for (i, e) in history.iter().enumerate() {
        let label = e.label.clone().unwrap_or_else(|| format!("#{}", i + 1));
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
            x(i),
            h - 18.0,
            esc(&label)
        );
    }
    s += "</svg>";
    s
}

fn html_table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    out.push_str("<table><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let class = match c.as_str() {
                "NO" | "VIOLATED" | "REGRESSION" => " class=\"bad\"",
                "yes" | "ok" | "improvement" => " class=\"good\"",
                _ => "",
            };
            let _ = write!(out, "<td{class}>{}</td>", esc(c));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// The report as one self-contained HTML page.
pub fn html(r: &BenchResults, history: &[HistoryEntry]) -> String {
    let md = markdown(r);
    let title = md.lines().next().unwrap_or("").trim_start_matches("# ");
    let mut out = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0;font-size:13px}}td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}\
         th{{background:#f5f5f5}}.bad{{color:#b00;font-weight:bold}}.good{{color:#070}}svg.plot{{display:block;margin:1em 0;max-width:100%;height:auto}}\
         code{{background:#f5f5f5;padding:1px 4px}}</style></head><body><h1>{}</h1>",
        esc(title),
        esc(title)
    );
    let f = &r.fingerprint;
    let _ = write!(
        out,
        "<p>fingerprint <code>{}</code>: {} ({} cores, {} GiB, {}); host {} built by {} ({}, cargo profile {}: {}); profile <code>{}</code>, feature set <code>{}</code> [{}]</p>",
        esc(&f.id), esc(&f.machine.cpu), f.machine.cores, f.machine.memory_gib, esc(&f.machine.os),
        esc(&f.build.host_version), esc(&f.build.rustc), esc(&f.build.target), esc(&f.build.profile),
        esc(&f.build.optimisation),
        esc(&r.profile), esc(&f.plugins.feature_set_id), esc(&f.plugins.plugins.join(", "))
    );
    if !r.micro.is_empty() {
        let processes = pooled_processes(r);
        let _ = write!(
            out,
            "<h2>Microbenchmarks</h2><p>Baseline time / plugin time per case, interleaved rounds in {}; bars are 95% bootstrap intervals, red ticks the manifests' promises (green: met, red: not met).</p>",
            if processes > 1 {
                format!("each of {processes} fresh processes, pooled (processes drawn, then rounds)")
            } else {
                "one process".to_owned()
            }
        );
        out += &ratio_plot(r);
        html_table(&mut out, &MICRO_HEAD, &micro_rows(r));
        let _ = write!(
            out,
            "<p>{}.</p>",
            esc(dubchain_host::measure::case_table_note(processes))
        );
    }
    if let Some(s) = &r.system {
        let _ = write!(
            out,
            "<h2>System benchmark</h2><p>{} blocks x {} transactions, {} validators, seed {}, {} runs per side, alternating. Same chain on both sides in every run: <b>{}</b>.</p>",
            s.blocks, s.txs_per_block, s.validators, s.seed, s.runs, yes(s.identical)
        );
        out += &latency_plot(r);
        html_table(
            &mut out,
            &["metric", "baselines", "plugins", "speed-up"],
            &system_rows(r),
        );
    }
    for (title, head, rows) in plain_sections(r) {
        let _ = write!(out, "<h2>{}</h2>", esc(title));
        html_table(&mut out, head, &rows);
    }
    if let Some(c) = &r.comparison {
        let _ = write!(
            out,
            "<h2>Against saved run <code>{}</code></h2>",
            esc(&c.against)
        );
        html_table(&mut out, &CHANGE_HEAD, &change_rows(c));
        if !c.not_compared.is_empty() {
            out += "<p>Not compared (measured by one run only, or on another workload):</p><ul>";
            for n in &c.not_compared {
                let _ = write!(out, "<li>{}</li>", esc(n));
            }
            out += "</ul>";
        }
    }
    let plot = history_plot(history);
    if !plot.is_empty() {
        out += "<h2>History</h2><p>Median speed-up of each case in every run recorded in <code>history.jsonl</code>.</p>";
        out += &plot;
    }
    out += "</body></html>\n";
    out
}
