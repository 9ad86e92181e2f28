//! `plugin new`, `plugin verify` (and its hidden child): writing and checking a plugin.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result};
use dubchain_host::scaffold;
use dubchain_instruments::verify;

use crate::BadInput;

pub fn new(name: &str, slot: &str, dir: &Path, source_root: Option<PathBuf>) -> Result<ExitCode> {
    let root = source_root.unwrap_or_else(scaffold::default_source_root);
    let created = match scaffold::new_plugin(dir, name, slot, &root) {
        Ok(created) => created,
        Err(refused @ scaffold::ScaffoldError::Refused(_)) => {
            eprintln!("error: {refused}");
            return Ok(ExitCode::from(2));
        }
        Err(failed) => return Err(failed.into()),
    };
    println!("created {} ({slot})", created.display());
    println!(
        "next: cd {} && cargo test && cargo build --release && dubchain-perf plugin verify .",
        created.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn verify(path: &Path, library: Option<&Path>) -> Result<ExitCode> {
    let (manifest, library) = verify::locate(path, library).map_err(BadInput)?;
    println!(
        "verifying {} with {}",
        manifest.display(),
        library.display()
    );
    let exe = std::env::current_exe().context("locating dubchain-perf")?;
    let ok = verify::run_parent(&exe, &manifest, &library, &mut std::io::stdout())?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The verdict travels in the checks; a non-zero exit means the child crashed.
/// The child side of an isolated plugin: see `dubchain_host::isolate`.
pub fn serve(manifest: &Path, deadlines: dubchain_host::loader::Deadlines) -> Result<ExitCode> {
    let m = dubchain_host::manifest::read(manifest)?;
    let config = std::env::var("DUBCHAIN_PLUGIN_CONFIG").unwrap_or_default();
    let runtime = dubchain_host::host::isolated_runtime_dir();
    let served = dubchain_host::isolate::serve(
        &m,
        &config,
        &runtime,
        deadlines,
        std::io::stdin().lock(),
        std::io::stdout().lock(),
    );
    let _ = std::fs::remove_dir_all(&runtime);
    served.map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}

pub fn verify_child(
    manifest: &Path, library: &Path, quick_ratio: Option<&str>,
) -> Result<ExitCode> {
    verify::run_child(manifest, library, quick_ratio);
    Ok(ExitCode::SUCCESS)
}
