//! What every command prints the same way: tables (comfy-table), progress bars on stderr
//! (indicatif; drawn only on a terminal), the session's manifest errors, load failures.

use std::sync::Mutex;

use comfy_table::{presets::NOTHING, CellAlignment, ContentArrangement, Table};
use dubchain_host::{session::Session, Host};
use indicatif::{ProgressBar, ProgressStyle};

/// Prints `rows` (the first is the header) as a table.
pub fn table(rows: &[Vec<String>]) {
    let Some((header, body)) = rows.split_first() else {
        return;
    };
    let mut t = Table::new();
    // No borders, a dashed line under the header, two spaces between columns: rows start
    // with their first cell, so they read (and grep) as plain text.
    let mut style: Vec<char> = NOTHING.chars().collect();
    style[5] = '-';
    style[6] = ' ';
    t.load_preset(&style.into_iter().collect::<String>())
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    for row in body {
        t.add_row(row);
    }
    for column in t.column_iter_mut() {
        column.set_padding((0, 2));
        column.set_cell_alignment(CellAlignment::Left);
    }
    for line in t.lines() {
        println!("{}", line.trim_end());
    }
}

/// Manifests that did not parse, resolver warnings and configuration names that match no
/// plugin, on stderr.
pub fn manifest_errors(s: &Session) {
    for e in &s.manifest_errors {
        if e.path == s.options.plugin_dir {
            // The directory itself: its message says what follows (the command goes on,
            // on the baselines), so it is a warning.
            eprintln!("warning: {e}");
        } else {
            eprintln!("error: {e} (skipped; the other plugins are unaffected; correct it, docs/manifest.md has every key, or move it out of the plugin directory)");
        }
    }
    for w in &s.resolution.warnings {
        eprintln!("warning: {w}");
    }
    for w in s.config_warnings() {
        eprintln!("warning: {w}");
    }
}

/// Applies the session's plan to a fresh host; problems are printed, not fatal.
pub fn loaded_host(s: &Session) -> Host {
    let host = s.host();
    match s.apply(&host) {
        Ok(report) => {
            for e in &report.failed {
                eprintln!("error: {e}");
            }
        }
        Err(problems) => {
            eprintln!(
                "the plan has {} problem(s); nothing was loaded:",
                problems.len()
            );
            for p in &problems {
                eprintln!("  - {p}");
            }
        }
    }
    host
}

fn bar(label: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg:.dim}")
            .expect("a valid template")
            .progress_chars("#>-"),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// A progress bar of `total` steps: call the closure with the steps done.
pub fn progress(label: &str, total: u64) -> impl FnMut(usize, usize) {
    let bar = bar(label, total);
    move |done, _| {
        bar.set_position(done as u64);
        if done as u64 >= total {
            bar.finish();
        }
    }
}

/// One bar per stage of the bench suite: `(stage, done, total, what)`.
pub fn stage_progress() -> impl Fn(&str, usize, usize, &str) {
    let current: Mutex<Option<(String, ProgressBar)>> = Mutex::new(None);
    move |stage, done, total, what| {
        let mut current = current.lock().unwrap_or_else(|e| e.into_inner());
        if current.as_ref().is_none_or(|(s, _)| s != stage) {
            if let Some((_, old)) = current.take() {
                old.finish();
            }
            *current = Some((stage.to_owned(), bar(stage, total as u64)));
        }
        let (_, bar) = current.as_ref().expect("set above");
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(what.to_owned());
        if done >= total {
            bar.finish();
        }
    }
}
