//! Builds every plugin and fixture plugin as a `cdylib`, in release, in a cargo invocation
//! and target directory of its own, and hands their paths to the tests as
//! `DUBCHAIN_LIB_<crate name>` compile-time variables.
//!
//! A separate invocation with another profile than the tests is the point: it is how users
//! build plugins, and it proves the stable ABI across builds.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_owned();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // <target>/<profile>/build/<pkg>/out -> <target>/plugin-build
    let target_dir = out_dir.ancestors().nth(4).unwrap().join("plugin-build");

    let mut packages = crate_names(&root.join("plugins"));
    packages.extend(crate_names(&manifest_dir.join("fixtures")));
    for dir in [
        "plugins",
        "tests/fixtures",
        "plugin-api/src",
        "plugin-api/Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--message-format=json-render-diagnostics",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        // Under `cargo clippy` the plugins are linted as workspace members; this build is
        // the plain one, shared with the tests' build.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS");
    for p in &packages {
        cmd.args(["-p", p]);
    }
    let output = cmd.output().expect("running cargo to build the plugins");
    if !output.status.success() {
        panic!(
            "building the plugins failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact"
            || !msg["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        {
            continue;
        }
        let name = msg["target"]["name"].as_str().unwrap().replace('-', "_");
        let lib = msg["filenames"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f.as_str())
            .find(|f| f.ends_with(std::env::consts::DLL_SUFFIX))
            .expect("a cdylib artifact");
        println!("cargo:rustc-env=DUBCHAIN_LIB_{name}={lib}");
    }
    println!(
        "cargo:rustc-env=DUBCHAIN_MANIFESTS={}",
        root.join("manifests").display()
    );
}

fn crate_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
