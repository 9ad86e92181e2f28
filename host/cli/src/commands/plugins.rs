//! `plugins list`, `plugins plan`, `plugins why`: what is in the plugin directory, what
//! the resolver decided and why.

use std::process::ExitCode;

use anyhow::Result;
use dubchain_host::{host::PluginState, resolve::Reason, session::Session};

use crate::print;

/// The table of plugins. Without `load` no plugin code runs (no library is opened): the
/// states are the plan's. Fails if a manifest in the directory could not be read or a plugin
/// failed to load: the table shows what is valid, the exit status that not all of it is. (A
/// missing directory is no failure: there is nothing to list, and the line says so.)
pub fn list(s: &Session, load: bool, verbose: bool) -> Result<ExitCode> {
    print::manifest_errors(s);
    let broken = broken_manifests(s);
    let status = |failed: bool| {
        if !broken && !failed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    };
    let host = load.then(|| print::loaded_host(s));
    let state = |name: &str| match &host {
        Some(host) => host.plugin_state(name).to_string(),
        None => match s.resolution.decisions.get(name) {
            Some(d) if d.enabled => "enabled".to_owned(),
            _ => "disabled".to_owned(),
        },
    };
    println!("plugin directory: {}", s.options.plugin_dir.display());
    println!(
        "profile: {} ({})  feature set: {}",
        s.options.profile, s.config.source, s.resolution.feature_set_id
    );
    if s.manifests.is_empty() {
        // A path that is there but is no directory has had its error line; building
        // plugins would not help it.
        if !s.options.plugin_dir.exists() || s.options.plugin_dir.is_dir() {
            println!("no plugins found; build them with `cargo xtask plugins`");
        }
        return Ok(status(false));
    }
    let mut rows = vec![[
        "name",
        "version",
        "subsystem",
        "provides",
        "depends",
        "conflicts",
        "uses",
        "state",
    ]
    .map(String::from)
    .to_vec()];
    for m in &s.manifests {
        let provides: Vec<String> = m
            .provides
            .iter()
            .map(|p| format!("{}@{}", p.slot, p.version))
            .collect();
        let depends: Vec<String> = m
            .depends
            .iter()
            .map(|d| format!("{} {}", d.name, d.version))
            .collect();
        let conflicts: Vec<String> = m.conflicts.iter().map(|c| c.name.clone()).collect();
        let uses: Vec<String> = m.uses.iter().map(|u| u.slot.clone()).collect();
        let dash = |v: Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(", ")
            }
        };
        rows.push(vec![
            m.name.clone(),
            m.version.to_string(),
            m.subsystem.clone(),
            dash(provides),
            dash(depends),
            dash(conflicts),
            dash(uses),
            state(&m.name),
        ]);
    }
    print::table(&rows);
    let Some(host) = host else {
        println!("(the plan's states; nothing was loaded: `plugins list --load` loads the plan and shows what loading gives)");
        return Ok(status(false));
    };
    let mut failed = false;
    for m in &s.manifests {
        if let PluginState::Failed(why) = host.plugin_state(&m.name) {
            println!("\n{}: failed: {why}", m.name);
            failed = true;
        }
        if verbose {
            if let Some((mapped, sha, built)) = host.live_library(&m.name) {
                println!(
                    "\n{}: {}\n  mapped from {}\n  sha256 {sha}\n  built by {built}",
                    m.name,
                    m.library.display(),
                    mapped.display()
                );
            }
        }
    }
    Ok(status(failed))
}

/// Whether a manifest in the directory could not be read (a missing or unreadable
/// directory is not counted: there is nothing in it to fix, and its line says so).
fn broken_manifests(s: &Session) -> bool {
    s.manifest_errors
        .iter()
        .any(|e| e.path != s.options.plugin_dir)
}

pub fn plan(s: &Session) -> Result<ExitCode> {
    print::manifest_errors(s);
    let r = &s.resolution;
    println!("profile: {} ({})", s.options.profile, s.config.source);
    if let Some((path, _)) = &s.imported {
        println!("imported gates: {}", path.display());
    }
    println!("feature set: {}", r.feature_set_id);
    println!("\nenabled:");
    for name in r.enabled() {
        println!(
            "  {name}: {}",
            r.decisions[name]
                .reasons
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    println!("\nslots (bottom to top, over the baseline):");
    for info in dubchain_plugin_api::slots::ALL {
        let stack = r
            .stacks
            .get(info.id)
            .map(|v| v.join(" > "))
            .unwrap_or_default();
        let kind = format!("{:?}", info.kind).to_lowercase();
        let stack = if stack.is_empty() {
            "baseline".to_owned()
        } else {
            format!("baseline > {stack}")
        };
        println!("  {} ({kind}): {stack}", info.id);
    }
    let edges = edges(s);
    if !edges.is_empty() {
        println!("\ndeclared relations of the enabled plugins:");
        for e in edges {
            println!("  {e}");
        }
    }
    if !r.suggestions.is_empty() {
        println!("\nsuggestions (never problems):");
        for sug in &r.suggestions {
            println!("  - {sug}");
        }
    }
    if r.problems.is_empty() && !broken_manifests(s) {
        println!("\nno problems");
        return Ok(ExitCode::SUCCESS);
    }
    if !r.problems.is_empty() {
        println!(
            "\n{} problem(s); this plan cannot be applied and the running set would stay as it is:",
            r.problems.len()
        );
        for p in &r.problems {
            println!("  - {p}");
        }
    }
    Ok(ExitCode::FAILURE)
}

pub fn why(s: &Session, name: &str) -> Result<ExitCode> {
    let Some(decision) = s.resolution.decisions.get(name) else {
        let known: Vec<&str> = s.manifests.iter().map(|m| m.name.as_str()).collect();
        return Err(crate::BadInput(format!(
            "no plugin named `{name}` in {}{} (found: {})",
            s.options.plugin_dir.display(),
            s.did_you_mean(name),
            known.join(", ")
        ))
        .into());
    };
    println!("{name} is {}", if decision.enabled { "ON" } else { "OFF" });
    explain(s, name, 1, &mut Vec::new());
    for line in relations(s, name, decision.enabled) {
        println!("  - {line}");
    }
    for sug in s.resolution.suggestions.iter().filter(|x| x.plugin == name) {
        println!("  - suggestion: {sug}");
    }
    let problems: Vec<_> = s
        .resolution
        .problems
        .iter()
        .filter(|p| p.plugins().contains(&name))
        .collect();
    if !problems.is_empty() {
        println!("problems involving {name} (the plan cannot be applied until they are fixed):");
        for p in problems {
            println!("  - {p}");
        }
    }
    if decision.enabled && s.resolution.is_ok() {
        let host = print::loaded_host(s);
        match host.plugin_state(name) {
            PluginState::Failed(e) => {
                println!("but loading it failed, so its slots answer from the baseline: {e}")
            }
            state => println!("after loading: {state}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn explain(s: &Session, name: &str, depth: usize, seen: &mut Vec<String>) {
    if seen.iter().any(|n| n == name) {
        return;
    }
    seen.push(name.to_owned());
    let indent = "  ".repeat(depth);
    for reason in &s.resolution.decisions[name].reasons {
        println!("{indent}- {reason}");
        if let Reason::RequiredBy { plugin, .. } = reason {
            explain(s, plugin, depth + 1, seen);
        }
    }
}

/// The stack that answers `slot` under the plan, as `plugins plan` prints it.
fn stack_text(s: &Session, slot: &str) -> String {
    match s.resolution.stacks.get(slot) {
        Some(stack) if !stack.is_empty() => format!("baseline > {}", stack.join(" > ")),
        _ => "baseline".to_owned(),
    }
}

/// The declared edges whose source is enabled: `depends`, `uses` (with the stack that
/// serves the slot) and `conflicts`.
fn edges(s: &Session) -> Vec<String> {
    let r = &s.resolution;
    let mut out = Vec::new();
    for m in s.manifests.iter().filter(|m| r.decisions[&m.name].enabled) {
        for d in &m.depends {
            out.push(format!(
                "{} depends on {} {} ({})",
                m.name, d.name, d.version, d.reason
            ));
        }
        for u in &m.uses {
            out.push(format!(
                "{} uses {} ({}); served by {}",
                m.name,
                u.slot,
                u.reason,
                stack_text(s, &u.slot)
            ));
        }
        for c in &m.conflicts {
            out.push(format!(
                "{} conflicts with {} ({})",
                m.name, c.name, c.reason
            ));
        }
    }
    out
}

/// What `name`'s declared relations mean under the plan: the slots it calls and who serves
/// them, the enabled plugins that call a slot it provides (and what they get while it is
/// off), and the enabled plugins that recommend it.
fn relations(s: &Session, name: &str, enabled: bool) -> Vec<String> {
    let r = &s.resolution;
    let Some(me) = s.manifests.iter().find(|m| m.name == name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for u in &me.uses {
        out.push(format!(
            "calls {} through host services ({}); served by {}",
            u.slot,
            u.reason,
            stack_text(s, &u.slot)
        ));
    }
    let on = |m: &&dubchain_host::manifest::Manifest| r.decisions[&m.name].enabled;
    for provide in &me.provides {
        for user in s.manifests.iter().filter(on) {
            for u in user.uses.iter().filter(|u| u.slot == provide.slot) {
                if enabled {
                    out.push(format!(
                        "serves `{}`, which calls {} ({})",
                        user.name, u.slot, u.reason
                    ));
                } else {
                    out.push(format!(
                        "while it is off, `{}` (which calls {}: {}) is served by {}",
                        user.name,
                        u.slot,
                        u.reason,
                        stack_text(s, &u.slot)
                    ));
                }
            }
        }
    }
    for user in s.manifests.iter().filter(on) {
        for rec in user.recommends.iter().filter(|x| x.name == name) {
            out.push(format!(
                "recommended by `{}` ({}){}",
                user.name,
                rec.reason,
                if enabled {
                    ""
                } else {
                    "; `plugins plan` suggests turning it on"
                }
            ));
        }
    }
    out
}
