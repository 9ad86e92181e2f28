//! Shared setup of the benchmarks: a host with the first-party plugins loaded from the
//! assembled plugin directory (`cargo xtask bench` builds it first).

use std::path::PathBuf;

use dubchain_host::session::{Session, SessionOptions};

/// The plugin directory: `DUBCHAIN_PLUGIN_DIR`, else `target/dubchain/plugins` at the root.
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("DUBCHAIN_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("root")
                .join("target/dubchain/plugins")
        })
}

/// A session over the plugin directory with `enable` enabled (and nothing else); panics with
/// the reason if the directory is unusable.
pub fn session_with(enable: &[&str]) -> Session {
    let session = Session::open(SessionOptions {
        plugin_dir: plugin_dir(),
        profile: "development".into(),
        enable: enable.iter().map(|s| (*s).to_owned()).collect(),
        state_dir: std::env::temp_dir().join("dubchain-bench-state-unused"),
        ..SessionOptions::default()
    })
    .expect("built-in configuration");
    assert!(
        session.manifest_errors.is_empty() && session.resolution.is_ok(),
        "plugin directory {} is not usable (run `cargo xtask plugins`): {:?} {:?}",
        plugin_dir().display(),
        session.manifest_errors,
        session.resolution.problems
    );
    session
}

/// A host with `enable` loaded, each plugin given `config`; panics with the reason if a
/// plugin is missing or fails to load.
pub fn host_with(enable: &[&str], config: &str) -> dubchain_host::Host {
    let session = session_with(enable);
    let host = session.host();
    let report = host
        .apply(&session.manifests, &session.resolution, |_| {
            config.to_owned()
        })
        .expect("resolution checked by session_with");
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    host
}
