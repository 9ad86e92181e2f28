//! Records the optimisation level this crate is compiled at: the host's crates share it
//! (the workspace's `Cargo.toml` gives them one setting), and a benchmark's fingerprint
//! says it, so that nobody has to guess what a `debug` profile name means.
fn main() {
    println!(
        "cargo:rustc-env=DUBCHAIN_OPT_LEVEL={}",
        std::env::var("OPT_LEVEL").unwrap_or_else(|_| "unknown".into())
    );
}
