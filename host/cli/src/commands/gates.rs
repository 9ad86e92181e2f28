//! `gates export`, `gates import`, `gates reset`: the effective gate settings as JSON, moved
//! between hosts.

use std::{collections::BTreeMap, path::Path, process::ExitCode};

use anyhow::{Context, Result};
use dubchain_host::{
    config::GatesFile,
    session::{Session, SessionOptions},
};

use crate::print;

fn versions(s: &Session) -> BTreeMap<String, String> {
    s.manifests
        .iter()
        .map(|m| (m.name.clone(), m.version.to_string()))
        .collect()
}

pub fn export(s: &Session, file: &Path) -> Result<ExitCode> {
    // As a shell redirection would: a mistyped directory is not made.
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(crate::BadInput(format!(
                "{}: there is no directory {}; create it, or name a file in a directory that exists",
                file.display(),
                dir.display()
            ))
            .into());
        }
    }
    print::manifest_errors(s);
    if !s.resolution.is_ok() {
        eprintln!(
            "error: the plan has {} problem(s); fix them before exporting:",
            s.resolution.problems.len()
        );
        for p in &s.resolution.problems {
            eprintln!("  - {p}");
        }
        return Ok(ExitCode::from(2));
    }
    let gates = GatesFile::from_resolution(&s.options.profile, &s.resolution, &versions(s));
    gates
        .write(file)
        .with_context(|| format!("writing {}", file.display()))?;
    let on = gates.gates.values().filter(|g| g.enabled).count();
    println!(
        "wrote {} ({} gates, {on} on, feature set {})",
        file.display(),
        gates.gates.len(),
        gates.feature_set_id
    );
    Ok(ExitCode::SUCCESS)
}

pub fn import(options: SessionOptions, file: &Path) -> Result<ExitCode> {
    let dir = &options.state_dir;
    if dir.exists() && !dir.is_dir() {
        return Err(crate::BadInput(format!(
            "--state-dir {}: not a directory; give a directory for the host's state (it is made if missing)",
            dir.display()
        ))
        .into());
    }
    let s = Session::open_with_gates(options, Some(file)).map_err(crate::Refused)?;
    print::manifest_errors(&s);
    let (_, gates) = s.imported.as_ref().expect("opened with gates");
    for (name, gate) in &gates.gates {
        if let Some(m) = s.manifest(name) {
            if m.version.to_string() != gate.version {
                eprintln!(
                    "warning: {}: `{name}` was exported at version {}, the plugin directory has {}",
                    file.display(),
                    gate.version,
                    m.version
                );
            }
        }
    }
    if !s.resolution.is_ok() {
        eprintln!(
            "{}: importing these gates gives a plan with {} problem(s):",
            file.display(),
            s.resolution.problems.len()
        );
        for p in &s.resolution.problems {
            eprintln!("  - {p}");
        }
        eprintln!("nothing was imported");
        return Ok(ExitCode::from(2));
    }
    let target = s.options.state_dir.join("gates.json");
    gates
        .write(&target)
        .with_context(|| format!("writing {}", target.display()))?;
    println!(
        "imported {} into {} (feature set {})",
        file.display(),
        target.display(),
        s.resolution.feature_set_id
    );
    Ok(ExitCode::SUCCESS)
}

pub fn reset(options: &SessionOptions) -> Result<ExitCode> {
    let path = options.state_dir.join("gates.json");
    if path.exists() {
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        println!("removed imported gates {}", path.display());
    } else {
        println!("no imported gates at {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
